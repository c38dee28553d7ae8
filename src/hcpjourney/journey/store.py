"""Journey maps in the app database: several maps per workspace, every change a version.

A map is keyed by its slug (from its name: "Cardiology HCP journey" ->
``cardiology-hcp-journey``). Saving a map whose text differs from its latest
version adds version n+1 (the text is kept exactly as given, comments
included); saving the same text again adds nothing and returns the latest
version. Every new version is written to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from hcpjourney.app import db
from hcpjourney.errors import HcpjError
from hcpjourney.journey.model import JourneyMap, slugify

AUDIT_RESOURCE = "journey_map"
_RETRIES = 3

# Declared by migration 0003; kept here (not in app.db.metadata) as the journey store's own table.
metadata = sa.MetaData()
journey_maps = sa.Table(
    "journey_maps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("slug", sa.String(128), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("map_type", sa.String(32), nullable=False),
    sa.Column("yaml", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("note", sa.Text),
    sa.UniqueConstraint("slug", "version", name="uq_journey_maps_slug_version"),
)


class JourneyMapNotFound(HcpjError):
    """No map (or no such version of it) is stored."""


@dataclass(frozen=True)
class MapVersion:
    slug: str
    name: str
    version: int
    map_type: str
    created_at: datetime
    created_by: str
    note: str | None = None


@dataclass(frozen=True)
class StoredMap(MapVersion):
    yaml: str = ""

    @property
    def map(self) -> JourneyMap:
        return JourneyMap.from_yaml(self.yaml, source=f"journey map '{self.slug}' v{self.version}")


@dataclass(frozen=True)
class MapSummary:
    slug: str
    name: str
    map_type: str
    latest_version: int
    versions: int
    created_at: datetime  # of the first version
    updated_at: datetime  # of the latest version
    updated_by: str


def _has_table(engine: sa.Engine) -> bool:
    return sa.inspect(engine).has_table(journey_maps.name)


def _key(name: str) -> str:
    return slugify(name)


def save_map(
    url: str,
    jmap: JourneyMap | str,
    actor: str,
    *,
    slug: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> int:
    """Store ``jmap`` (a JourneyMap or YAML text) as the map's next version; returns the version.

    The text is validated first. Unchanged text adds no version. ``slug`` keeps
    the versions of a renamed map together (default: the slug of its name).
    """
    if isinstance(jmap, str):
        text = jmap
        parsed = JourneyMap.from_yaml(text)
    else:
        parsed = jmap
        text = jmap.to_yaml()
    key = slugify(slug) if slug else parsed.slug
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    db.upgrade(url)
    engine = db.connect(url)
    t = journey_maps
    try:
        for attempt in range(_RETRIES):
            try:
                with engine.begin() as conn:
                    latest = conn.execute(
                        sa.select(t.c.version, t.c.yaml).where(t.c.slug == key)
                        .order_by(t.c.version.desc()).limit(1)
                    ).first()
                    if latest is not None and latest.yaml == text:
                        return int(latest.version)
                    version = 1 if latest is None else int(latest.version) + 1
                    conn.execute(t.insert().values(
                        slug=key, name=parsed.name, version=version, map_type=parsed.type,
                        yaml=text, created_at=when, created_by=actor, note=note,
                    ))
                break
            except sa.exc.IntegrityError:  # someone saved the same map at the same moment
                if attempt == _RETRIES - 1:
                    raise HcpjError(
                        f"journey map '{key}' is being saved by someone else; try again"
                    ) from None
        db.audit(engine, actor=actor, action="journey.save", resource=AUDIT_RESOURCE,
                 resource_id=f"{key}@{version}", detail=f"version {version} of {key}")
    finally:
        engine.dispose()
    return version


def _rows(url: str, stmt: sa.Select[tuple[object, ...]]) -> list[sa.RowMapping]:
    engine = db.connect(url)
    try:
        if not _has_table(engine):
            return []
        with engine.connect() as conn:
            return list(conn.execute(stmt).mappings().all())
    finally:
        engine.dispose()


def _version(r: sa.RowMapping) -> MapVersion:
    return MapVersion(slug=r["slug"], name=r["name"], version=int(r["version"]),
                      map_type=r["map_type"], created_at=r["created_at"],
                      created_by=r["created_by"], note=r["note"])


def map_versions(url: str, name: str) -> list[MapVersion]:
    """Every version of the map ``name`` (its name or slug), oldest first."""
    t = journey_maps
    cols = [t.c.slug, t.c.name, t.c.version, t.c.map_type, t.c.created_at, t.c.created_by, t.c.note]
    rows = _rows(url, sa.select(*cols).where(t.c.slug == _key(name)).order_by(t.c.version))
    if not rows:
        raise JourneyMapNotFound(f"no journey map '{name}'; `list_maps` shows the stored maps")
    return [_version(r) for r in rows]


def get_map(url: str, name: str, version: int | None = None) -> StoredMap:
    """The map ``name`` (its name or slug) at ``version`` (default: the latest)."""
    t = journey_maps
    stmt = sa.select(t).where(t.c.slug == _key(name))
    if version is None:
        stmt = stmt.order_by(t.c.version.desc()).limit(1)
    else:
        stmt = stmt.where(t.c.version == version)
    rows = _rows(url, stmt)
    if not rows:
        if version is not None:
            have = [v.version for v in map_versions(url, name)]
            raise JourneyMapNotFound(
                f"journey map '{name}' has no version {version}; it has versions "
                f"{', '.join(map(str, have))}"
            )
        raise JourneyMapNotFound(f"no journey map '{name}'; `list_maps` shows the stored maps")
    r = rows[0]
    v = _version(r)
    return StoredMap(**{**v.__dict__, "yaml": r["yaml"]})


def list_maps(url: str) -> list[MapSummary]:
    """One line per stored map (by slug), with its latest version."""
    t = journey_maps
    agg = (
        sa.select(
            t.c.slug,
            sa.func.max(t.c.version).label("latest"),
            sa.func.count().label("n"),
            sa.func.min(t.c.created_at).label("first_at"),
        )
        .group_by(t.c.slug)
        .subquery()
    )
    stmt = (
        sa.select(t.c.slug, t.c.name, t.c.map_type, t.c.version, t.c.created_at, t.c.created_by,
                  agg.c.n, agg.c.first_at)
        .join(agg, (agg.c.slug == t.c.slug) & (agg.c.latest == t.c.version))
        .order_by(t.c.slug)
    )
    return [
        MapSummary(slug=r["slug"], name=r["name"], map_type=r["map_type"],
                   latest_version=int(r["version"]), versions=int(r["n"]),
                   created_at=r["first_at"], updated_at=r["created_at"],
                   updated_by=r["created_by"])
        for r in _rows(url, stmt)
    ]
