"""Stages and the funnel, exactly as CONTRACT section 4 defines them.

* Stage 1 is entered at the first event matching it; stage k at the first
  matching event at or after the entry into stage k-1 and, where a conversion
  window is set (the map's ``conversion_window_days``, or the stage's own), no
  later than that many days after it. Events are ordered by ``ts`` then
  ``event_id``; the event that entered a stage is the first in that order.
* A stage with ``enter_on: [{outcome: nrx}]`` is entered at the HCP's adoption
  (:func:`hcpjourney.journey.outcomes.adoption_times`, for the map's product):
  one outcome "event" per HCP at its ``at`` time, with no event_id. At the same
  instant an interaction comes before the outcome.
* ``stages``: the furthest stage each HCP entered, and when.
* ``funnel``: hcps per stage; conversion_from_previous = hcps(k) / hcps(k-1)
  (1.0 for stage 1, empty when no HCP entered stage k-1); median_days_from_previous
  = the exact median of entry(k) - entry(k-1) in days (empty for stage 1 and
  for stages nobody entered). Stages nobody entered appear with hcps 0.

Everything is an Ibis expression run by the engine: one filtered read of
``events`` per ``enter_on`` rule (equalities the scan itself applies), and one
join of each stage's candidate events with the previous stage's entries; at
10M events the whole of :func:`stage_entries` is a few hundred milliseconds on
two cores.

Breakdowns (:func:`funnel_by`): a funnel per value of a per-HCP attribute:
``specialty``, ``profession``, ``region`` (golden ``state``), ``account``
(golden ``organization``) or any other golden column; ``source``: the source
system of the record whose event entered stage 1 (``unknown`` when stage 1 was
entered by an outcome); ``segment``: the HCP's most likely segment in the
``segments`` table (ties: the first segment name); ``persona``: the persona of
the map whose ``segments`` list holds the HCP's most likely segment. HCPs
without a value are grouped under ``unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import ConfigError, HcpjError, NotBuiltError
from hcpjourney.identity.golden import GOLDEN
from hcpjourney.journey.model import JourneyMap, Stage
from hcpjourney.journey.outcomes import adoption_times

EVENTS = "events"
SEGMENTS = "segments"
PROFILES = "profiles"
STAGE_ENTRIES = "stage_entries"
STAGES = "stages"
FUNNEL = "funnel"

STAGE_ENTRY_COLUMNS: tuple[str, ...] = ("hcp_id", "stage", "stage_index", "entered_at", "event_id")
STAGES_COLUMNS: tuple[str, ...] = ("hcp_id", "stage", "entered_at", "stage_index")
FUNNEL_COLUMNS: tuple[str, ...] = (
    "stage", "hcps", "conversion_from_previous", "median_days_from_previous", "stage_index",
)
UNKNOWN = "unknown"  # group of HCPs without a value in a breakdown
US_PER_DAY = 86_400 * 1_000_000

# breakdown name -> golden column
GOLDEN_BREAKDOWNS: dict[str, str] = {
    "specialty": "specialty",
    "profession": "profession",
    "region": "state",
    "state": "state",
    "account": "organization",
    "organization": "organization",
}
BREAKDOWNS: tuple[str, ...] = (
    "segment", "persona", "specialty", "profession", "region", "account", "source",
)


# -------------------------------------------------------------------- matching
def rule_events(events: ir.Table, stage: Stage, columns: Sequence[str]) -> ir.Table | None:
    """``columns`` of the events matching any of the stage's event rules.

    One filtered read per rule, unioned: a conjunction of equalities is pushed
    into the scan, which is many times faster than one OR of conjunctions.
    An event matching two rules of the stage appears twice (harmless: callers
    take the first by time).
    """
    parts = [
        events.filter([events[key] == value for key, value in rule.fields]).select(*columns)
        for rule in stage.enter_on
        if rule.outcome is None
    ]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return out


def stage_candidates(engine: Engine, jmap: JourneyMap, index: int) -> ir.Table:
    """hcp_id, ts, event_id of everything that enters stage ``index`` (0-based) if reached."""
    stage = jmap.stages[index]
    ev = engine.table(EVENTS)
    ts_type = ev.ts.type()
    parts: list[ir.Table] = []
    matched = rule_events(ev, stage, ("hcp_id", "ts", "event_id"))
    if matched is not None:
        parts.append(matched)
    if stage.is_outcome:
        a = adoption_times(engine, jmap.product)
        parts.append(a.select("hcp_id", ts=a.adopted_at.cast(ts_type),
                              event_id=ibis.null("string")))
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return out


def _first(c: ir.Table, keys: list[str]) -> ir.Table:
    """Per ``keys``: the first candidate by (ts, event_id), an outcome (no event_id) last."""
    return c.group_by(keys).aggregate(
        entered_at=c.ts.min(),
        event_id=c.event_id.first(order_by=[c.ts, c.event_id], include_null=True),
    )


def window_interval(days: float) -> ir.IntervalScalar:
    us = round(days * US_PER_DAY)
    if us % 1_000_000 == 0:
        return ibis.interval(seconds=us // 1_000_000)
    return ibis.interval(microseconds=us)


def stage_entries(engine: Engine, jmap: JourneyMap) -> ir.Table:
    """Every stage each HCP entered: hcp_id, stage, stage_index (1-based), entered_at, event_id."""
    jmap.require_measurable()
    if not engine.has_table(EVENTS):
        raise NotBuiltError("no events yet: run `hcpj build` first")
    parts: list[ir.Table] = []
    prev: ir.Table | None = None
    for i, stage in enumerate(jmap.stages):
        cand = stage_candidates(engine, jmap, i)
        if prev is None:
            first = _first(cand, ["hcp_id"])
        else:
            p = prev.select(hcp_id="hcp_id", prev_at="entered_at")
            j = cand.inner_join(p, "hcp_id")
            ok = j.ts >= j.prev_at
            w = jmap.window_days(i)
            if w is not None:
                ok &= j.ts <= j.prev_at + window_interval(w)
            first = _first(j.filter(ok), ["hcp_id"])
        entries = first.select(
            "hcp_id",
            stage=ibis.literal(stage.id),
            stage_index=ibis.literal(i + 1, "int64"),
            entered_at="entered_at",
            event_id="event_id",
        )
        parts.append(entries)
        prev = entries
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return out


def furthest_stages(entries: ir.Table) -> ir.Table:
    """The contract's ``stages``: hcp_id, stage, entered_at (+ stage_index) of the furthest stage."""
    last = entries.stage_index.max().over(group_by="hcp_id")
    e = entries.filter(entries.stage_index == last)
    return e.select(*STAGES_COLUMNS)


# ---------------------------------------------------------------------- funnel
def stage_list(jmap: JourneyMap) -> ir.Table:
    return ibis.memtable(
        {"stage": jmap.stage_ids, "stage_index": list(range(1, len(jmap.stages) + 1))},
        schema={"stage": "string", "stage_index": "int64"},
    )


def step_days(entries: ir.Table, keys: list[str] | None = None) -> ir.Table:
    """Each entry with the previous stage's entry: ``+ prev_at``, ``us_from_previous`` (µs)."""
    keys = keys or []
    p = entries.select("hcp_id", stage_index=entries.stage_index + 1, prev_at=entries.entered_at)
    j = entries.left_join(p, ["hcp_id", "stage_index"]).select(
        *entries.columns, "prev_at"
    )
    return j.mutate(us_from_previous=j.entered_at.delta(j.prev_at, unit="microsecond"))


def funnel(entries: ir.Table, jmap: JourneyMap, by: str | None = None) -> ir.Table:
    """The funnel of ``entries`` (from :func:`stage_entries`), one per value of column ``by``.

    Columns: [by,] stage, hcps, conversion_from_previous, median_days_from_previous, stage_index.
    """
    keys: list[str] = []
    if by is not None:
        if by not in entries.columns:
            raise HcpjError(
                f"the stage entries have no column '{by}'; use funnel_by(engine, jmap, '{by}') "
                "to attach a breakdown"
            )
        keys = [by]
    s = step_days(entries, keys)
    agg = s.group_by([*keys, "stage_index"]).aggregate(
        hcps=s.hcp_id.nunique(),
        median_us=s.us_from_previous.median(),
    )
    grid = stage_list(jmap)
    if keys:
        groups = entries.select(*keys).distinct()
        grid = groups.cross_join(grid)
    full = grid.left_join(agg, [*keys, "stage_index"]).select(
        *keys, "stage", "stage_index", "hcps", "median_us"
    )
    hcps = ibis.coalesce(full.hcps, 0)
    full = full.mutate(hcps=hcps)
    w = ibis.window(group_by=keys or None, order_by="stage_index")
    prev = full.hcps.lag().over(w)
    conv = (
        ibis.cases(
            (full.stage_index == 1, ibis.literal(1.0)),
            (prev > 0, full.hcps.cast("float64") / prev.cast("float64")),
            else_=ibis.null("float64"),
        )
    )
    out = full.select(
        *keys,
        "stage",
        hcps=full.hcps.cast("int64"),
        conversion_from_previous=conv,
        median_days_from_previous=(full.median_us.cast("float64") / US_PER_DAY),
        stage_index="stage_index",
    )
    return out.order_by([*keys, "stage_index"])


# ----------------------------------------------------------------- breakdowns
def most_likely_segment(engine: Engine) -> ir.Table:
    """hcp_id, segment: each HCP's most probable segment (ties: the first name)."""
    if not engine.has_table(SEGMENTS):
        raise NotBuiltError(
            "no segments table yet: build segments first, or break down by profession or specialty"
        )
    sg = engine.table(SEGMENTS)
    w = ibis.window(group_by="hcp_id", order_by=[sg.probability.desc(), sg.segment])
    r = sg.mutate(_n=ibis.row_number().over(w))
    return r.filter(r._n == 0).select("hcp_id", "segment")


def hcp_groups(engine: Engine, jmap: JourneyMap, by: str, entries: ir.Table | None = None) -> ir.Table:
    """hcp_id, ``by``: the breakdown value of each HCP (see the module text)."""
    if by == "segment":
        g = most_likely_segment(engine)
        return g.select("hcp_id", segment=g.segment)
    if by == "persona":
        mapping = [(seg, p.id) for p in jmap.personas for seg in p.segments]
        if not mapping:
            raise ConfigError(
                f"journey map '{jmap.name}' links no persona to segments; add "
                "personas: [{id: ..., segments: [...]}] to break down by persona"
            )
        seen: dict[str, str] = {}
        for seg, pid in mapping:
            seen.setdefault(seg, pid)
        m = ibis.memtable({"segment": list(seen), "persona": list(seen.values())},
                          schema={"segment": "string", "persona": "string"})
        g = most_likely_segment(engine)
        j = g.left_join(m, "segment")
        return j.select("hcp_id", persona=j.persona)
    if by == "source":
        if entries is None:
            raise HcpjError("a breakdown by source needs the stage entries")
        first = entries.filter(entries.stage_index == 1).select("hcp_id", "event_id")
        ev = engine.table(EVENTS).select("event_id", "record_id")
        hc = engine.table(schemas.HCPS.name).select("record_id", "source")
        j = first.left_join(ev, "event_id").left_join(hc, "record_id")
        return j.select("hcp_id", source=j.source)
    col = GOLDEN_BREAKDOWNS.get(by, by)
    if not engine.has_table(GOLDEN):
        raise NotBuiltError("no golden records yet: run `hcpj build` first")
    golden = engine.table(GOLDEN)
    if col not in golden.columns or col in ("hcp_id", "email", "phone", "first_name", "last_name",
                                            "middle_name", "address_line1", "npi"):
        raise HcpjError(
            f"cannot break the funnel down by '{by}'; use one of {', '.join(BREAKDOWNS)} "
            "or a golden record column such as decile or country"
        )
    return golden.select("hcp_id", **{by: golden[col].cast("string")})


def with_groups(engine: Engine, jmap: JourneyMap, entries: ir.Table, by: str) -> ir.Table:
    """``entries`` with column ``by`` (the HCP's breakdown value, ``unknown`` when absent)."""
    g = hcp_groups(engine, jmap, by, entries)
    j = entries.left_join(g, "hcp_id")
    return j.select(*entries.columns, **{by: ibis.coalesce(j[by], UNKNOWN)})


def funnel_by(engine: Engine, jmap: JourneyMap, by: str, entries: ir.Table | None = None) -> ir.Table:
    """One funnel per breakdown value; ``entries`` default to :func:`stage_entries`."""
    e = entries if entries is not None else stage_entries(engine, jmap)
    return funnel(with_groups(engine, jmap, e, by), jmap, by=by)


# ---------------------------------------------------------------------- build
@dataclass
class JourneySummary:
    map_name: str
    hcps_in_journey: int  # HCPs that entered at least stage 1
    funnel: list[dict[str, object]]


def build_journey(engine: Engine, jmap: JourneyMap, *, fill_profiles: bool = True) -> JourneySummary:
    """Write ``stage_entries``, ``stages`` and ``funnel``; fill ``profiles.stage``."""
    entries = engine.create(STAGE_ENTRIES, stage_entries(engine, jmap),
                            order_by=["hcp_id", "stage_index"])
    stages = engine.create(STAGES, furthest_stages(entries), order_by=["hcp_id"])
    f = engine.create(FUNNEL, funnel(entries, jmap), order_by=["stage_index"])
    if fill_profiles and engine.has_table(PROFILES):
        fill_profile_stage(engine, stages)
    rows = engine.to_pyarrow(f.order_by("stage_index")).to_pylist()
    return JourneySummary(jmap.name, engine.count(stages), rows)


def fill_profile_stage(engine: Engine, stages: ir.Table) -> None:
    """Rewrite ``profiles`` with ``stage`` = the furthest stage (column order kept)."""
    prof = engine.table(PROFILES)
    st = stages.select("hcp_id", _stage="stage")
    j = prof.left_join(st, "hcp_id")
    cols = {c: (j._stage if c == "stage" else j[c]) for c in prof.columns}
    engine.rewrite_sorted(PROFILES, j.select(**cols), order_by=["hcp_id"])
