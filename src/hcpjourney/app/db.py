"""The app database: user-made state (journey maps, plans, review decisions, users, audit).

SQLAlchemy 2 over SQLite by default or PostgreSQL in a team deployment; the
schema is owned by Alembic migrations shipped inside the package.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hcpjourney.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = sa.MetaData()

app_meta = sa.Table(
    "app_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("resource", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(256)),
    sa.Column("detail", sa.Text),
)


identity_decisions = sa.Table(
    "identity_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pair_id", sa.String(64), nullable=False),
    sa.Column("record_id_l", sa.String(256), nullable=False),
    sa.Column("record_id_r", sa.String(256), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),  # match | distinct
    sa.Column("note", sa.Text),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("decided_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("decision IN ('match', 'distinct')", name="ck_identity_decision"),
    sa.Index("ix_identity_decisions_pair", "pair_id"),
)


def connect(url: str) -> sa.Engine:
    try:
        return sa.create_engine(url, future=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"app database URL '{_safe(url)}' is not usable: {exc}") from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid URL>"


def _alembic_config(engine: sa.Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection_engine"] = engine
    return cfg


def upgrade(url: str) -> str:
    """Create or migrate the app database at ``url`` to the newest schema; returns the revision."""
    engine = connect(url)
    try:
        command.upgrade(_alembic_config(engine), "head")
        return current_revision(engine) or ""
    except sa.exc.OperationalError as exc:
        raise ConfigError(
            f"cannot reach the app database {_safe(url)}: {str(exc.orig).strip().splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def audit(
    engine: sa.Engine,
    actor: str,
    action: str,
    resource: str,
    resource_id: str | None = None,
    detail: str | None = None,
) -> None:
    """Record who did what to which resource (never the personal data itself)."""
    with engine.begin() as conn:
        conn.execute(
            audit_log.insert().values(
                ts=datetime.now(UTC).replace(tzinfo=None),
                actor=actor, action=action, resource=resource,
                resource_id=resource_id, detail=detail,
            )
        )
