"""Pain points measured from the data: weak stages, stalled HCPs, bad feedback, contact fatigue.

Stage health (:func:`stage_health`)
    Per stage: entrants, how many moved on to the next stage, conversion_to_next
    (moved_on / hcps), and the dwell of those that moved on (days from entry to
    the next stage's entry: median and ``percentile``-th percentile, linear
    interpolation). ``low_conversion`` when conversion_to_next <
    ``min_conversion`` (default 0.4); ``long_dwell`` when the median dwell >
    ``max_median_days`` (default 60). The final stage has no next stage and is
    never flagged.

Stalled HCPs (:func:`stalled_hcps`)
    HCPs whose furthest stage is not the final one and whose days in it as of
    ``as_of`` exceed the ``percentile``-th percentile (default 90) of the dwell of
    HCPs that did move on from that stage. A stage nobody moved on from has no
    threshold and lists nobody. ``window_closed`` says the stage's conversion
    window for the next stage has passed (the HCP can no longer convert under the
    map's rules).

Negative feedback (:func:`negative_feedback`, :func:`negative_feedback_summary`)
    Feedback rows joined to the HCP through the record's identity and to the rated
    touchpoint through ``event_id``. A response is negative when its score is at
    most its instrument's threshold: nps <= 6 (detractors), csat <= 2 (of 5); other
    instruments only when given in ``thresholds``. The stage is the one the HCP was
    in at the feedback's ``ts`` (the latest stage entered at or before it; ``none``
    before the journey's first stage).

Contact fatigue (:func:`contact_pressure`, :func:`contact_fatigue`)
    Per HCP and calendar month (or week): outbound contacts and responses
    (definitions of :mod:`hcpjourney.journey.gaps`). Binned by contacts in the
    period: the raw response rate, and the response relative to what the same
    HCP gives the same channel mix, which falls below 1 where more contact buys
    less response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import HcpjError
from hcpjourney.identity.golden import identities
from hcpjourney.journey.gaps import contacts_and_responses
from hcpjourney.journey.model import JourneyMap
from hcpjourney.journey.stages import EVENTS, US_PER_DAY, stage_list, step_days, window_interval

DEFAULT_THRESHOLDS: dict[str, float] = {"nps": 6, "csat": 2}
NO_STAGE = "none"
DEFAULT_BINS: tuple[int, ...] = (1, 2, 3, 4, 6, 10)  # lower edges: 1, 2, 3, 4-5, 6-9, 10+


def _dwell(entries: ir.Table) -> ir.Table:
    """stage_index (of the stage left), hcp_id, dwell_us: time from its entry to the next one's."""
    s = step_days(entries)
    s = s.filter(s.prev_at.notnull())
    return s.select("hcp_id", stage_index=s.stage_index - 1, dwell_us=s.us_from_previous)


def stage_health(
    entries: ir.Table,
    jmap: JourneyMap,
    *,
    min_conversion: float = 0.4,
    max_median_days: float = 60,
    percentile: float = 90,
) -> ir.Table:
    """stage, stage_index, hcps, moved_on, conversion_to_next, median_dwell_days,
    p_dwell_days, low_conversion, long_dwell."""
    _check_percentile(percentile)
    hcps = entries.group_by("stage_index").aggregate(hcps=entries.count())
    d = _dwell(entries)
    dw = d.group_by("stage_index").aggregate(
        moved_on=d.count(), med=d.dwell_us.median(), pq=d.dwell_us.quantile(percentile / 100)
    )
    g = stage_list(jmap).left_join(hcps, "stage_index").left_join(dw, "stage_index")
    n = ibis.coalesce(g.hcps, 0)
    moved = ibis.coalesce(g.moved_on, 0)
    last = g.stage_index == len(jmap.stages)
    conv = ibis.ifelse(last | (n == 0), ibis.null("float64"), moved.cast("float64") / n.cast("float64"))
    med = g.med.cast("float64") / US_PER_DAY
    out = g.select(
        "stage", "stage_index", hcps=n.cast("int64"),
        moved_on=ibis.ifelse(last, ibis.null("int64"), moved.cast("int64")),
        conversion_to_next=conv, median_dwell_days=med,
        p_dwell_days=g.pq.cast("float64") / US_PER_DAY,
    )
    return out.mutate(
        low_conversion=ibis.coalesce(out.conversion_to_next < min_conversion, False),
        long_dwell=ibis.coalesce(out.median_dwell_days > max_median_days, False),
    ).order_by("stage_index")


def _check_percentile(p: float) -> None:
    if not 0 < p < 100:
        raise HcpjError(f"percentile must be between 0 and 100 (exclusive), not {p}")


def data_end(engine: Engine) -> datetime:
    """The latest event time: the default ``as_of`` for stalled HCPs."""
    ev = engine.table(EVENTS)
    value = engine.execute(ev.ts.max())
    if value is None:
        raise HcpjError("no events yet: ingest interactions and run `hcpj build`")
    return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value


def stalled_hcps(
    entries: ir.Table,
    jmap: JourneyMap,
    as_of: datetime,
    *,
    percentile: float = 90,
) -> ir.Table:
    """hcp_id, stage, stage_index, entered_at, days_in_stage, threshold_days, window_closed."""
    _check_percentile(percentile)
    d = _dwell(entries)
    thr = d.group_by("stage_index").aggregate(thr_us=d.dwell_us.quantile(percentile / 100))
    last = entries.stage_index.max().over(group_by="hcp_id")
    cur = entries.filter(entries.stage_index == last)
    cur = cur.filter(cur.stage_index < len(jmap.stages))
    at = ibis.literal(as_of, type=entries.entered_at.type())
    in_stage = at.delta(cur.entered_at, unit="microsecond")
    cur = cur.mutate(in_us=in_stage)
    j = cur.inner_join(thr, "stage_index")
    j = j.filter(j.in_us > j.thr_us)
    closed: ir.BooleanValue = ibis.literal(False)
    for i in range(1, len(jmap.stages)):
        w = jmap.window_days(i)  # window for entering stage i+1 (0-based i) from stage i
        if w is not None:
            closed = closed | ((j.stage_index == i) & (j.entered_at + window_interval(w) < at))
    return j.select(
        "hcp_id", "stage", "stage_index", "entered_at",
        days_in_stage=j.in_us.cast("float64") / US_PER_DAY,
        threshold_days=j.thr_us.cast("float64") / US_PER_DAY,
        window_closed=closed,
    ).order_by([ibis.desc("days_in_stage"), "hcp_id"])


# ------------------------------------------------------------------- feedback
def negative_feedback(
    engine: Engine,
    entries: ir.Table,
    *,
    thresholds: Mapping[str, float] | None = None,
) -> ir.Table:
    """Negative responses: response_id, hcp_id, ts, instrument, score, threshold, dimension,
    comment, event_id, channel, action, stage, stage_index (0 before the first stage)."""
    th = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    if not th:
        raise HcpjError("give at least one instrument threshold, e.g. {'nps': 6}")
    fb = engine.table(schemas.FEEDBACK.name).inner_join(identities(engine), "record_id")
    tt = ibis.memtable({"instrument": list(th), "threshold": [float(v) for v in th.values()]},
                       schema={"instrument": "string", "threshold": "float64"})
    fb = fb.inner_join(tt, "instrument")
    fb = fb.filter(fb.score.notnull() & (fb.score <= fb.threshold))
    fb = fb.select("response_id", "hcp_id", "ts", "instrument", "score", "threshold",
                   "dimension", "comment", "event_id")
    ev = engine.table(EVENTS).select("event_id", "channel", "action")
    fb = fb.left_join(ev, "event_id").select(*fb.columns, "channel", "action")
    return _with_stage_at(fb, entries)


def _with_stage_at(rows: ir.Table, entries: ir.Table) -> ir.Table:
    """``rows`` (hcp_id, ts, response_id, ...) + stage, stage_index the HCP was in at ts."""
    e = entries.select("hcp_id", s_index="stage_index", s_at="entered_at")
    j = rows.left_join(e, [rows.hcp_id == e.hcp_id, rows.ts >= e.s_at])
    best = j.group_by("response_id").aggregate(stage_index=ibis.coalesce(j.s_index.max(), 0))
    names = entries.select("stage_index", "stage").distinct()
    out = rows.inner_join(best, "response_id").left_join(names, "stage_index")
    return out.select(*rows.columns, stage=ibis.coalesce(out.stage, NO_STAGE),
                      stage_index=out.stage_index)


def negative_feedback_summary(
    engine: Engine,
    entries: ir.Table,
    *,
    thresholds: Mapping[str, float] | None = None,
) -> ir.Table:
    """Per stage (at feedback time) and rated channel: responses, negative, negative_share.

    ``responses`` counts every scored response of the instruments that have a
    threshold; ``channel`` is ``none`` for feedback that rates no touchpoint.
    """
    th = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    fb = engine.table(schemas.FEEDBACK.name).inner_join(identities(engine), "record_id")
    fb = fb.filter(fb.instrument.isin(list(th)) & fb.score.notnull())
    tt = ibis.memtable({"instrument": list(th), "threshold": [float(v) for v in th.values()]},
                       schema={"instrument": "string", "threshold": "float64"})
    fb = fb.inner_join(tt, "instrument")
    fb = fb.select("response_id", "hcp_id", "ts", "event_id", neg=fb.score <= fb.threshold)
    ev = engine.table(EVENTS).select("event_id", "channel")
    fb = fb.left_join(ev, "event_id").select(*fb.columns, "channel")
    s = _with_stage_at(fb, entries)
    s = s.mutate(channel=ibis.coalesce(s.channel, NO_STAGE))
    agg = s.group_by(["stage_index", "stage", "channel"]).aggregate(
        responses=s.count(), negative=s.neg.sum().cast("int64")
    )
    return agg.mutate(
        negative_share=agg.negative.cast("float64") / agg.responses.cast("float64")
    ).order_by(["stage_index", ibis.desc("negative"), "channel"])


# -------------------------------------------------------------- contact fatigue
def contact_pressure(engine: Engine, *, period: str = "month") -> ir.Table:
    """hcp_id, period_start, contacts, responses, expected: per HCP and calendar week or month.

    Only channels with at least one contact take part. ``expected`` is the
    responses the period's contacts would get at each channel's overall
    response rate (so that channel mix does not pass for fatigue).
    """
    if period not in ("week", "month"):
        raise HcpjError(f"period must be week or month, not '{period}'")
    unit = "W" if period == "week" else "M"
    cr = contacts_and_responses(engine.table(EVENTS))
    cr = cr.filter(cr.is_contact | cr.is_response)
    rates = cr.group_by("channel").aggregate(
        n=cr.is_contact.sum(), rate=cr.is_response.sum().cast("float64") / cr.is_contact.sum()
    )
    rates = rates.filter(rates.n > 0).select("channel", "rate")
    x = cr.inner_join(rates, "channel")
    x = x.mutate(period_start=x.ts.truncate(unit))
    return x.group_by(["hcp_id", "period_start"]).aggregate(
        contacts=x.is_contact.sum().cast("int64"),
        responses=x.is_response.sum().cast("int64"),
        expected=(x.is_contact.cast("float64") * x.rate).sum(),
    )


def contact_fatigue(
    engine: Engine,
    *,
    period: str = "month",
    bins: Sequence[int] = DEFAULT_BINS,
    groups: ir.Table | None = None,
) -> ir.Table:
    """Response by contacts per HCP-period.

    Columns: [group,] bin, min_contacts, max_contacts (null: open-ended),
    hcp_periods, hcps, contacts, responses, response_rate (responses /
    contacts), expected_responses and relative_response (responses /
    expected). ``expected_responses`` adjusts for channel mix (each contact at
    its channel's overall rate) and for the HCP (scaled by the HCP's own
    responses over its expected ones across all periods), so a
    relative_response falling below 1 as contacts rise is fatigue: the same
    HCP answers less when contacted more. Periods without contacts are left
    out. ``groups``: optional (hcp_id, group) table for one curve per group.
    """
    edges = sorted({int(b) for b in bins})
    if not edges or edges[0] < 1:
        raise HcpjError("contact bins are lower edges of at least 1, e.g. 1, 2, 3, 4, 6, 10")
    p = contact_pressure(engine, period=period)
    h = p.group_by("hcp_id").aggregate(_r=p.responses.sum(), _e=p.expected.sum())
    h = h.filter(h._e > 0).select("hcp_id", _f=h._r.cast("float64") / h._e)
    p = p.inner_join(h, "hcp_id")
    p = p.filter(p.contacts > 0).mutate(adj=p.expected * p._f)
    keys: list[str] = []
    if groups is not None:
        gcol = next(c for c in groups.columns if c != "hcp_id")
        p = p.left_join(groups.select("hcp_id", group=groups[gcol]), "hcp_id")
        p = p.mutate(group=ibis.coalesce(p.group.cast("string"), "unknown"))
        keys = ["group"]
    lo = ibis.cases(*[(p.contacts >= e, e) for e in reversed(edges)], else_=edges[0])
    p = p.mutate(min_contacts=lo.cast("int64"))
    agg = p.group_by([*keys, "min_contacts"]).aggregate(
        hcp_periods=p.count(), hcps=p.hcp_id.nunique(), contacts=p.contacts.sum(),
        responses=p.responses.sum(), expected_responses=p.adj.sum(),
    )
    nxt = {e: (edges[k + 1] - 1 if k + 1 < len(edges) else None) for k, e in enumerate(edges)}
    hi_t = ibis.memtable({"min_contacts": edges, "max_contacts": [nxt[e] for e in edges]},
                         schema={"min_contacts": "int64", "max_contacts": "int64"})
    j = agg.inner_join(hi_t, "min_contacts")
    label = ibis.ifelse(
        j.max_contacts.isnull(), j.min_contacts.cast("string") + "+",
        ibis.ifelse(j.max_contacts == j.min_contacts, j.min_contacts.cast("string"),
                    j.min_contacts.cast("string") + "-" + j.max_contacts.cast("string")),
    )
    return j.select(
        *keys, bin=label, min_contacts="min_contacts", max_contacts="max_contacts",
        hcp_periods="hcp_periods", hcps="hcps", contacts=j.contacts.cast("int64"),
        responses=j.responses.cast("int64"),
        response_rate=j.responses.cast("float64") / j.contacts.cast("float64"),
        expected_responses="expected_responses",
        relative_response=j.responses.cast("float64") / j.expected_responses,
    ).order_by([*keys, "min_contacts"])
