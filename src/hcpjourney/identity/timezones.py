"""Local time of an HCP, from the golden record's US state.

Standard-time UTC offsets (hours; no daylight saving) of each US state's
majority zone. HCPs of an unknown state take the most common offset among the
HCPs asked about (ties: the smaller offset).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from hcpjourney.engine import Engine

STATE_UTC_OFFSET: dict[str, int] = {
    **dict.fromkeys(("CT", "DC", "DE", "FL", "GA", "IN", "KY", "MA", "MD", "ME", "MI", "NC",
                     "NH", "NJ", "NY", "OH", "PA", "RI", "SC", "VA", "VT", "WV"), -5),
    **dict.fromkeys(("AL", "AR", "IA", "IL", "KS", "LA", "MN", "MO", "MS", "ND", "NE", "OK",
                     "SD", "TN", "TX", "WI"), -6),
    **dict.fromkeys(("AZ", "CO", "ID", "MT", "NM", "UT", "WY"), -7),
    **dict.fromkeys(("CA", "NV", "OR", "WA"), -8),
    "AK": -9, "HI": -10, "PR": -4, "VI": -4, "GU": 10,
}


def with_utc_offset(engine: Engine, hcps: ir.Table) -> ir.Table:
    """``hcps`` (with a nullable ``state`` column) plus ``utc_offset`` in hours."""
    states = ibis.memtable(
        {"_state": list(STATE_UTC_OFFSET), "_offset": list(STATE_UTC_OFFSET.values())}
    )
    j = hcps.mutate(_state=hcps.state.upper().strip()).left_join(states, "_state")
    known = j.filter(j._offset.notnull())
    mode = known.group_by("_offset").aggregate(n=known.count()).order_by(
        [ibis.desc("n"), "_offset"]).limit(1)
    rows = engine.to_pyarrow(mode).to_pylist()
    fallback = int(rows[0]["_offset"]) if rows else 0
    return j.select(*hcps.columns, utc_offset=ibis.coalesce(j._offset, fallback).cast("int64"))
