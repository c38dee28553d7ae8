"""Outcome timing shared by stages and attribution (CONTRACT section 4).

An outcome row happens at 00:00 UTC on the first day of the month after its
``period`` (the month's data is known when it closes). Adoption is the first
outcome of the journey's product (any product if none is named) with nrx > 0.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.identity.golden import identities


def outcome_time(period: ir.StringValue) -> ir.TimestampValue:
    """00:00 UTC on the first day of the month after ``period`` (YYYY-MM)."""
    first = (period + "-01").cast("date")
    return (first + ibis.interval(months=1)).cast("timestamp")


def resolved_outcomes(engine: Engine) -> ir.Table:
    """outcomes joined to hcp_id, with ``at`` = when each row happens."""
    o = engine.table(schemas.OUTCOMES.name).inner_join(identities(engine), "record_id")
    return o.select("hcp_id", "record_id", "product", "period", "nrx", "trx",
                    at=outcome_time(o.period))


def adoption_times(engine: Engine, product: str | None = None) -> ir.Table:
    """hcp_id, adopted_at: each HCP's first outcome with nrx > 0 (of ``product`` if named)."""
    o = resolved_outcomes(engine)
    hit = o.nrx > 0
    if product is not None:
        hit &= o["product"] == product
    o = o.filter(hit)
    return o.group_by("hcp_id").aggregate(adopted_at=o.at.min())
