"""The engine layer: the only code that knows DuckDB (and, later, Spark).

Everything else works on Ibis expressions over the tables an engine exposes.
"""

from __future__ import annotations

from hcpjourney.config import Workspace
from hcpjourney.engine.duckdb import (
    LINE,
    RAW,
    DuckDBEngine,
    NotClean,
    Progress,
    hash64,
    rows_in,
    stored_order,
)
from hcpjourney.errors import ConfigError

Engine = DuckDBEngine

__all__ = ["LINE", "RAW", "DuckDBEngine", "Engine", "NotClean", "Progress", "connect",
           "hash64", "rows_in", "stored_order"]


def connect(ws: Workspace, *, read_only: bool = False) -> Engine:
    """Open the workspace's warehouse with its configured engine."""
    if ws.engine_name != "duckdb":
        raise ConfigError(
            f"engine '{ws.engine_name}' is not available in this version; "
            "set engine = \"duckdb\" in hcpj.toml"
        )
    return DuckDBEngine(ws.warehouse_path, read_only=read_only, memory_limit=ws.memory_limit)
