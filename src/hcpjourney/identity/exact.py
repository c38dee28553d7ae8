"""Deterministic identities: records sharing a checksum-valid NPI are one HCP.

This is the foundation's resolver; probabilistic linkage replaces it. The
hcp_id is derived from the group's stable key (its NPI, or its record_id when
it has none), so the same underlying records keep the same hcp_id across builds.
"""

from __future__ import annotations

import hashlib

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from hcpjourney.engine import Engine

IDENTITIES = "identities"
IDENTITY_SCHEMA = ibis.schema([("record_id", "string"), ("hcp_id", "string")])


def hcp_id_for(key: str) -> str:
    """A short stable identifier from a group key (never reveals the key)."""
    return "H" + hashlib.sha256(key.encode()).hexdigest()[:12]


def resolve_exact(engine: Engine) -> ir.Table:
    """Write and return the identities table (record_id, hcp_id)."""
    hcps = engine.table("hcps")
    keyed = hcps.select(
        "record_id",
        key=ibis.ifelse(hcps.npi.notnull(), "npi:" + hcps.npi, "rec:" + hcps.record_id),
    )
    data = engine.to_pyarrow(keyed)
    keys = data.column("key").to_pylist()
    ids = pa.array([hcp_id_for(k) for k in keys], pa.string())
    out = pa.table({"record_id": data.column("record_id"), "hcp_id": ids})
    return engine.create(IDENTITIES, ibis.memtable(out), order_by=["hcp_id", "record_id"])
