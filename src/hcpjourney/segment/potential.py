"""Prescribing potential per HCP: decile, patient-volume proxies, a score and a tier.

``hcp_potential`` (one row per HCP of ``golden``):

- ``vendor_decile``: the ``decile`` column of the HCP's golden record (a data
  vendor's 1..10 ranking), when present;
- ``market_trx``, ``market_nrx``: total prescriptions of every product in
  ``outcomes`` (the market, a patient-volume proxy); ``rx_months``: months with
  any prescription; ``products``: distinct products prescribed; ``brand_trx``:
  prescriptions of ``product`` (when named);
- ``outcome_decile``: ``ceil(10 * cume_dist(market_trx))`` over the HCPs with
  market_trx > 0 (ties share a decile, so it is deterministic);
- ``decile`` = vendor_decile, else outcome_decile; ``decile_source`` says which;
- ``potential_score`` in [0, 1]: the mean of the available components
  ``(vendor_decile - 0.5) / 10`` and ``cume_dist(market_trx)``;
- ``potential_tier``: ``high`` (decile 8-10), ``medium`` (4-7), ``low`` (1-3),
  ``unknown`` (no decile).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import NotBuiltError
from hcpjourney.identity.golden import GOLDEN

POTENTIAL = "hcp_potential"
TIERS: tuple[str, ...] = ("high", "medium", "low", "unknown")
POTENTIAL_COLUMNS: tuple[str, ...] = (
    "hcp_id", "decile", "decile_source", "potential_score", "potential_tier", "vendor_decile",
    "outcome_decile", "market_trx", "market_nrx", "brand_trx", "rx_months", "products",
)


def tier_of(decile: ir.IntegerValue) -> ir.StringValue:
    """high (8-10), medium (4-7), low (1-3), unknown (no decile)."""
    return ibis.ifelse(decile >= 8, "high", ibis.ifelse(
        decile >= 4, "medium", ibis.ifelse(decile >= 1, "low", "unknown"))).fill_null("unknown")


def potential_table(engine: Engine, *, product: str | None = None) -> ir.Table:
    """The ``hcp_potential`` expression (see the module docstring)."""
    if not engine.has_table(GOLDEN):
        raise NotBuiltError("no golden records yet: run `hcpj build` first")
    g = engine.table(GOLDEN)
    base = g.select("hcp_id", vendor_decile=ibis.ifelse(
        (g.decile >= 1) & (g.decile <= 10), g.decile.cast("int64"), ibis.null("int64")))
    if engine.has_table(schemas.OUTCOMES.name) and engine.has_table("identities"):
        from hcpjourney.journey.outcomes import resolved_outcomes

        o = resolved_outcomes(engine)
        brand = (o["product"] == product) if product is not None else ibis.literal(False)
        per = o.group_by("hcp_id").aggregate(
            market_trx=o.trx.sum(), market_nrx=o.nrx.sum(),
            brand_trx=o.trx.sum(where=brand),
            rx_months=o.period.nunique(where=o.trx > 0),
            products=o["product"].nunique(where=o.trx > 0),
        )
        active = per.filter(per.market_trx > 0)
        ranked = active.select("hcp_id", _cd=ibis.cume_dist().over(order_by=active.market_trx))
        per = per.left_join(ranked, "hcp_id").select(*per.columns, "_cd")
        j = base.left_join(per, "hcp_id")
        t = j.select(
            "hcp_id", "vendor_decile",
            market_trx=ibis.coalesce(j.market_trx, 0.0), market_nrx=ibis.coalesce(j.market_nrx, 0.0),
            brand_trx=ibis.coalesce(j.brand_trx, 0.0) if product is not None else ibis.null("float64"),
            rx_months=ibis.coalesce(j.rx_months, 0).cast("int64"),
            products=ibis.coalesce(j.products, 0).cast("int64"),
            _cd=j._cd,
        )
    else:
        t = base.mutate(market_trx=ibis.literal(0.0), market_nrx=ibis.literal(0.0),
                        brand_trx=ibis.null("float64"), rx_months=ibis.literal(0, "int64"),
                        products=ibis.literal(0, "int64"), _cd=ibis.null("float64"))
    outcome_decile = ibis.ifelse(t._cd.notnull(), (t._cd * 10).ceil().clip(1, 10).cast("int64"),
                                 ibis.null("int64"))
    vendor_part = (t.vendor_decile.cast("float64") - 0.5) / 10.0
    n_parts = t.vendor_decile.notnull().cast("int64") + t._cd.notnull().cast("int64")
    score_sum = ibis.coalesce(vendor_part, 0.0) + ibis.coalesce(t._cd, 0.0)
    t = t.mutate(outcome_decile=outcome_decile)
    decile = ibis.coalesce(t.vendor_decile, t.outcome_decile)
    out = t.select(
        "hcp_id",
        decile=decile,
        decile_source=ibis.ifelse(t.vendor_decile.notnull(), "vendor", ibis.ifelse(
            t.outcome_decile.notnull(), "outcomes", ibis.null("string"))),
        potential_score=ibis.ifelse(n_parts > 0, score_sum / n_parts, ibis.null("float64")),
        potential_tier=tier_of(decile),
        vendor_decile=t.vendor_decile,
        outcome_decile=t.outcome_decile,
        market_trx=t.market_trx, market_nrx=t.market_nrx, brand_trx=t.brand_trx,
        rx_months=t.rx_months, products=t.products,
    )
    return out.select(*POTENTIAL_COLUMNS)


def build_potential(engine: Engine, *, product: str | None = None) -> ir.Table:
    """Write ``hcp_potential`` (sorted by hcp_id) and return it."""
    return engine.create(POTENTIAL, potential_table(engine, product=product), order_by=["hcp_id"])
