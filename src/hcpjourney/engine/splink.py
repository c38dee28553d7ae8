"""Splink on the warehouse's own DuckDB connection.

The identity code builds Splink settings and drives training and prediction;
this module supplies the database API Splink runs on, so that nothing outside
``engine/`` touches DuckDB. Splink's working tables (``__splink__*``) live in
the warehouse only while a session is open and are dropped when it closes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from hcpjourney.engine.duckdb import DuckDBEngine

_PREFIX = "__splink__"


@contextmanager
def splink_session(engine: DuckDBEngine, *, memory_limit: str | None = None) -> Iterator[Any]:
    """A Splink database API over ``engine``'s connection; working tables dropped on exit.

    ``memory_limit`` (DuckDB syntax, e.g. "4GB") caps DuckDB's memory while the
    session is open; larger joins spill to the warehouse's temporary folder.
    """
    from splink.backends.duckdb import DuckDBAPI

    con = engine._raw
    api = DuckDBAPI(connection=con)
    old_limit = None
    if memory_limit is not None:
        old_limit = con.execute("SELECT current_setting('memory_limit')").fetchone()
        con.execute(f"SET memory_limit = '{memory_limit}'")
    try:
        yield api
    finally:
        if old_limit is not None:
            con.execute(f"SET memory_limit = '{old_limit[0]}'")
        drop_working_tables(engine)


def drop_working_tables(engine: DuckDBEngine) -> None:
    """Drop every table and view Splink left in the warehouse."""
    con = engine._raw
    # Arrow tables Splink registered on the connection are temporary views
    for (name,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE temporary AND starts_with(view_name, ?)",
        [_PREFIX],
    ).fetchall():
        con.unregister(name)
    for name, kind in con.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE starts_with(table_name, ?)", [_PREFIX]
    ).fetchall():
        verb = "VIEW" if kind == "VIEW" else "TABLE"
        con.execute(f'DROP {verb} IF EXISTS "{name}"')


def arrow_of(splink_frame: Any) -> pa.Table:
    """A Splink result table as Arrow."""
    rel = splink_frame.as_duckdbpyrelation()
    return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
