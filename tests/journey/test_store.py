"""Journey maps stored with versions in the app database, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from hcpjourney import services
from hcpjourney.app import db
from hcpjourney.errors import ConfigError
from hcpjourney.journey import store
from hcpjourney.journey.model import JourneyMap
from hcpjourney.simulate import journey_template


@pytest.fixture
def url(app_db_url: str) -> str:
    return app_db_url


def _audit(url: str) -> list[tuple[str, str, str, str | None]]:
    eng = db.connect(url)
    try:
        with eng.connect() as conn:
            t = db.audit_log
            rows = conn.execute(sa.select(t.c.actor, t.c.action, t.c.resource, t.c.resource_id)
                                .order_by(t.c.id)).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]
    finally:
        eng.dispose()


def _count(url: str) -> int:
    eng = db.connect(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(store.journey_maps))
                       .scalar_one())
    finally:
        eng.dispose()


def test_versions_are_kept_and_unchanged_text_adds_none(url: str) -> None:
    text = "# our cardiology map\n" + journey_template()
    t0 = datetime(2025, 3, 1, 9, 0, 0)
    assert store.list_maps(url) == []  # before the database even has the table
    assert store.save_map(url, text, "alice", now=t0) == 1
    assert store.save_map(url, text, "bob") == 1  # same text: no new version
    assert _count(url) == 1
    changed = text.replace("conversion_window_days: 180", "conversion_window_days: 90")
    assert store.save_map(url, changed, "bob", note="shorter window") == 2
    latest = store.get_map(url, "Cardiology HCP journey")
    assert (latest.version, latest.created_by, latest.note) == (2, "bob", "shorter window")
    assert latest.yaml == changed  # exactly as written, comments included
    assert latest.map.conversion_window_days == 90
    first = store.get_map(url, "cardiology-hcp-journey", version=1)
    assert first.yaml == text and first.created_by == "alice" and first.created_at == t0
    assert first.map == JourneyMap.from_yaml(text)
    vs = store.map_versions(url, "cardiology-hcp-journey")
    assert [(v.version, v.created_by, v.map_type) for v in vs] == [
        (1, "alice", "current_state"), (2, "bob", "current_state")]
    assert _audit(url) == [
        ("alice", "journey.save", "journey_map", "cardiology-hcp-journey@1"),
        ("bob", "journey.save", "journey_map", "cardiology-hcp-journey@2"),
    ]


def test_several_maps_per_workspace(url: str) -> None:
    store.save_map(url, journey_template(), "alice")
    future = JourneyMap.from_dict({
        "name": "Cardiology future state", "type": "future_state",
        "stages": [{"id": "aware", "touchpoints": ["HCP portal"]}, {"id": "adopt"}],
    })
    assert store.save_map(url, future, "carol") == 1
    assert store.save_map(url, future, "carol") == 1  # its YAML is stable
    future2 = JourneyMap.from_dict({**future.to_dict(), "goal": "Start patients earlier"})
    assert store.save_map(url, future2, "carol") == 2
    maps = store.list_maps(url)
    assert [(m.slug, m.name, m.map_type, m.latest_version, m.versions, m.updated_by) for m in maps] == [
        ("cardiology-future-state", "Cardiology future state", "future_state", 2, 2, "carol"),
        ("cardiology-hcp-journey", "Cardiology HCP journey", "current_state", 1, 1, "alice"),
    ]
    assert maps[0].created_at <= maps[0].updated_at
    assert store.get_map(url, "Cardiology future state").map.goal == "Start patients earlier"


def test_a_renamed_map_keeps_its_history_under_one_slug(url: str) -> None:
    d = JourneyMap.from_yaml(journey_template()).to_dict()
    assert store.save_map(url, JourneyMap.from_dict(d), "alice", slug="cardio") == 1
    d["name"] = "Cardiology journey 2026"
    assert store.save_map(url, JourneyMap.from_dict(d), "alice", slug="cardio") == 2
    assert [v.name for v in store.map_versions(url, "cardio")] == [
        "Cardiology HCP journey", "Cardiology journey 2026"]


def test_errors_name_what_exists(url: str) -> None:
    with pytest.raises(store.JourneyMapNotFound, match="no journey map 'nope'"):
        store.get_map(url, "nope")
    store.save_map(url, journey_template(), "alice")
    with pytest.raises(store.JourneyMapNotFound, match="has no version 7; it has versions 1"):
        store.get_map(url, "cardiology-hcp-journey", version=7)
    with pytest.raises(store.JourneyMapNotFound):
        store.map_versions(url, "nope")
    with pytest.raises(ConfigError, match="unknown map type"):
        store.save_map(url, "name: x\ntype: dream\nstages: [{id: a}]\n", "alice")
    assert _count(url) == 1


def test_migration_0003_is_reversible(url: str) -> None:
    assert db.upgrade(url) == db.head_revision()
    eng = db.connect(url)
    try:
        assert sa.inspect(eng).has_table("journey_maps")
        cols = {c["name"] for c in sa.inspect(eng).get_columns("journey_maps")}
        assert cols == {"id", "slug", "name", "version", "map_type", "yaml", "created_at",
                        "created_by", "note"}
        command.downgrade(db._alembic_config(eng), "0002")
        assert not sa.inspect(eng).has_table("journey_maps")
        assert db.current_revision(eng) == "0002"
    finally:
        eng.dispose()
    assert db.upgrade(url) == db.head_revision()


def test_duplicate_version_is_refused_by_the_database(url: str) -> None:
    store.save_map(url, journey_template(), "alice")
    eng = db.connect(url)
    try:
        with pytest.raises(sa.exc.IntegrityError), eng.begin() as conn:
            conn.execute(store.journey_maps.insert().values(
                slug="cardiology-hcp-journey", name="x", version=1, map_type="current_state",
                yaml="x", created_at=datetime(2025, 1, 1), created_by="mallory"))
    finally:
        eng.dispose()


def test_workspace_init_creates_the_table(tmp_path: Path) -> None:
    ws = services.init_workspace(tmp_path / "ws")
    eng = db.connect(ws.app_db_url)
    try:
        assert sa.inspect(eng).has_table("journey_maps")
    finally:
        eng.dispose()
