"""The potential x behaviour targeting matrix, with counts and adoption per cell.

Rows are potential tiers (``hcp_potential.potential_tier``: high, medium, low,
unknown); columns are either

- ``engagement``: tiers of engaged events per HCP (``segment_features.n_engaged``)
  by ``cume_dist``: ``low`` up to 1/3, ``medium`` up to 2/3, ``high`` above (ties
  share a tier, so the split is deterministic); or
- ``segment``: the HCP's most likely segment (``segment_assignments``).

Every cell of the cross product is present (``hcps`` 0 when empty):
``hcps``, ``adopters`` (HCPs with an adoption: the first outcome of ``product``
with nrx > 0, any product when None, as in CONTRACT section 4),
``adoption_rate`` = adopters / hcps (empty for an empty cell) and
``share`` = hcps / all HCPs. Table ``segment_grid`` stacks both axes, told apart
by ``behaviour_axis``.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import HcpjError, NotBuiltError
from hcpjourney.segment.features import SEGMENT_FEATURES
from hcpjourney.segment.potential import POTENTIAL, TIERS

SEGMENT_GRID = "segment_grid"
ASSIGNMENTS = "segment_assignments"
AXES: tuple[str, ...] = ("engagement", "segment")
ENGAGEMENT_TIERS: tuple[str, ...] = ("high", "medium", "low")
GRID_COLUMNS: tuple[str, ...] = (
    "behaviour_axis", "potential_tier", "behaviour", "hcps", "adopters", "adoption_rate", "share",
    "potential_order", "behaviour_order",
)


def _adopters(engine: Engine, product: str | None) -> ir.Table | None:
    if not engine.has_table(schemas.OUTCOMES.name) or not engine.has_table("identities"):
        return None
    from hcpjourney.journey.outcomes import adoption_times

    return adoption_times(engine, product).select("hcp_id", _adopted=ibis.literal(1, "int64"))


def _behaviour(engine: Engine, axis: str) -> tuple[ir.Table, list[str]]:
    """hcp_id, behaviour for every HCP with features, and the ordered behaviour values."""
    if axis == "engagement":
        f = engine.table(SEGMENT_FEATURES)
        cd = ibis.cume_dist().over(order_by=f.n_engaged)
        t = f.select("hcp_id", _cd=cd)
        b = ibis.ifelse(t._cd <= 1 / 3, "low", ibis.ifelse(t._cd <= 2 / 3, "medium", "high"))
        return t.select("hcp_id", behaviour=b), list(ENGAGEMENT_TIERS)
    if axis == "segment":
        a = engine.table(ASSIGNMENTS)
        values = sorted((str(r["segment"]) for r in engine.to_pyarrow(
            a.select("segment").distinct()).to_pylist()), key=_segment_key)
        return a.select("hcp_id", behaviour=a.segment), values
    raise HcpjError(f"unknown grid axis '{axis}'; use one of {', '.join(AXES)}")


def _segment_key(label: str) -> tuple[int, str]:
    if len(label) > 1 and label[0] == "S" and label[1:].isdigit():
        return int(label[1:]), ""
    return 10**9, label


def targeting_grid(engine: Engine, *, behaviour: str = "engagement",
                   product: str | None = None) -> ir.Table:
    """The potential x ``behaviour`` grid as an expression (columns :data:`GRID_COLUMNS`)."""
    for name in (POTENTIAL, SEGMENT_FEATURES):
        if not engine.has_table(name):
            raise NotBuiltError("no segments yet: run `hcpj build` first")
    beh, values = _behaviour(engine, behaviour)
    pot = engine.table(POTENTIAL).select("hcp_id", "potential_tier")
    j = pot.inner_join(beh, "hcp_id")
    adopt = _adopters(engine, product)
    if adopt is not None:
        j = j.left_join(adopt, "hcp_id").select("hcp_id", "potential_tier", "behaviour", "_adopted")
        j = j.mutate(_adopted=ibis.coalesce(j._adopted, 0))
    else:
        j = j.mutate(_adopted=ibis.literal(0, "int64"))
    counts = j.group_by(["potential_tier", "behaviour"]).aggregate(
        hcps=j.count(), adopters=j._adopted.sum())
    total = float(engine.count(j))
    cells = ibis.memtable({
        "potential_tier": [t for t in TIERS for _ in values],
        "behaviour": [v for _ in TIERS for v in values],
        "potential_order": [i for i, _ in enumerate(TIERS) for _ in values],
        "behaviour_order": [k for _ in TIERS for k, _ in enumerate(values)],
    }, schema={"potential_tier": "string", "behaviour": "string", "potential_order": "int64",
               "behaviour_order": "int64"})
    g = cells.left_join(counts, ["potential_tier", "behaviour"])
    hcps = ibis.coalesce(g.hcps, 0)
    adopters = ibis.coalesce(g.adopters, 0).cast("float64").cast("int64")
    out = g.select(
        behaviour_axis=ibis.literal(behaviour), potential_tier=g.potential_tier,
        behaviour=g.behaviour, hcps=hcps, adopters=adopters,
        adoption_rate=ibis.ifelse(hcps > 0, adopters / hcps.nullif(0), ibis.null("float64")),
        share=(hcps / total) if total > 0 else ibis.null("float64"),
        potential_order=g.potential_order, behaviour_order=g.behaviour_order,
    )
    return out.select(*GRID_COLUMNS)


def build_grid(engine: Engine, *, product: str | None = None) -> ir.Table:
    """Write ``segment_grid``: both axes stacked, ordered by axis, potential, behaviour."""
    parts = [targeting_grid(engine, behaviour=ax, product=product) for ax in AXES
             if ax != "segment" or engine.has_table(ASSIGNMENTS)]
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return engine.create(SEGMENT_GRID, out,
                         order_by=["behaviour_axis", "potential_order", "behaviour_order"])


def grid_rows(engine: Engine, *, behaviour: str = "engagement") -> list[dict[str, object]]:
    """Rows of the stored grid for one axis, in matrix order."""
    if not engine.has_table(SEGMENT_GRID):
        raise NotBuiltError("no segment grid yet: run `hcpj build` first")
    g = engine.table(SEGMENT_GRID)
    g = g.filter(g.behaviour_axis == behaviour).order_by(["potential_order", "behaviour_order"])
    return list(engine.to_pyarrow(g).to_pylist())
