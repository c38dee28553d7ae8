"""The app database is created and migrated by `hcpj init`, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from hcpjourney import services
from hcpjourney.app import db
from hcpjourney.config import Workspace
from hcpjourney.errors import ConfigError, WorkspaceError


def _tables(url: str) -> set[str]:
    eng = sa.create_engine(url)
    try:
        return set(sa.inspect(eng).get_table_names())
    finally:
        eng.dispose()


def test_init_creates_sqlite_app_db_at_head(tmp_path: Path) -> None:
    ws = services.init_workspace(tmp_path / "ws")
    assert (tmp_path / "ws" / "app.db").is_file()
    assert (tmp_path / "ws" / "hcpj.toml").is_file()
    assert ws.warehouse_path.is_file()
    assert {"app_meta", "audit_log", "alembic_version"} <= _tables(ws.app_db_url)
    eng = db.connect(ws.app_db_url)
    assert db.current_revision(eng) == db.head_revision()
    db.audit(eng, actor="alice", action="read", resource="hcps", resource_id="H1")
    with eng.connect() as conn:
        rows = conn.execute(sa.select(db.audit_log.c.actor, db.audit_log.c.resource)).all()
    assert rows == [("alice", "hcps")]
    # init twice keeps the workspace and its data
    services.init_workspace(tmp_path / "ws")
    with eng.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.audit_log)).scalar() == 1
    eng.dispose()





def test_init_with_postgres_app_db(tmp_path: Path, pg_url: str) -> None:
    ws = services.init_workspace(tmp_path / "ws", app_db=pg_url)
    assert ws.app_db_url == pg_url
    assert Workspace.open(tmp_path / "ws").app_db_url == pg_url
    assert {"app_meta", "audit_log", "alembic_version"} <= _tables(pg_url)


def test_unreachable_app_db_is_a_clear_error(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    with pytest.raises(ConfigError) as err:
        services.init_workspace(tmp_path / "ws", app_db=url)
    assert "cannot reach the app database" in str(err.value)
    assert "secret" not in str(err.value)


def test_open_non_workspace_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="hcpj init"):
        Workspace.open(tmp_path)
