"""Paths over time-ordered events: transitions, variants, start/end activities,
the steps after or before an activity, and Sankey flows between stages.

Every function takes an Ibis table of events and the names of its columns, so
the same code runs on the warehouse ``events`` table and on any event log (see
:func:`hcpjourney.ingest.eventlog.read_eventlog_table`):

``case``
    the column that groups events into one journey (``hcp_id``; a trace id).
``activity``
    ``None`` for the CONTRACT's activity ``channel || ':' || action``; a column
    name (``"topic"``, ``"activity"``); or a sequence of column names joined
    with ``':'``.
``ts`` and ``tiebreak``
    each case's events are ordered by ``ts``, then ``tiebreak`` (CONTRACT:
    ``event_id``); ``tiebreak=None`` orders by ``ts`` alone, which leaves the
    order of same-instant events to the engine.

Events with a null case, activity or timestamp take no part (as in pm4py,
which drops such rows when a log is formatted).

``presorted=True`` (every function but :func:`stage_flows`) says the events are
a table stored sorted by (case, ts, tiebreak) on an engine whose scans keep the
stored order, as DuckDB does for the warehouse ``events`` table (or a filter or
projection of it; not a join): each case's order is then read from storage with
order-preserving windows (``OVER ()``) instead of a sort. Results are identical;
the tests check both ways. Where the engine gives a stored table's row order
(:func:`hcpjourney.engine.stored_order`), fingerprints read it in parallel
instead, and all variants (:func:`variant_arrays`, :func:`variant_table`) and
attribution are computed in numpy from one small integer per event
(:func:`stored_runs`). Activities are grouped and windowed by a 64-bit key (see
:func:`_activity_key`) and spelled out once per result row. Engine functions
used by name through Ibis builtins: ``hash`` (64-bit, DuckDB), ``epoch_us`` and
``chr``.

The results are lazy Ibis tables (nothing runs until they are executed or
written), except where noted. Definitions:

- :func:`transitions`: one row per directly-follows pair (``from_activity``,
  ``to_activity``) over each case's ordered events, with ``count`` and the exact
  median gap in seconds (``median_seconds``; the mean of the two middle gaps
  for an even count), plus ``__start__ -> first activity`` and ``last activity
  -> __end__`` edges whose ``median_seconds`` is null (CONTRACT section 4).
- :func:`variants`: the distinct activity sequences of the cases with their
  number of cases and share of all cases (pm4py's variants).
- :func:`start_activities` / :func:`end_activities`: first / last activity of
  each case, counted.
- :func:`steps_after` / :func:`steps_before`: for each occurrence (or each
  case's first / last occurrence) of an activity, what the 1st..n-th event
  after (before) it was.
- :func:`stage_flows`: Sankey links stage -> next stage entered, or stage ->
  ``(dropped)``, from a table of stage entries.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hcpjourney.engine import Engine, hash64, rows_in, stored_order
from hcpjourney.errors import HcpjError

START = "__start__"
END = "__end__"
DROPPED = "(dropped)"
ACTIVITY_SEPARATOR = ":"
VARIANT_SEPARATOR = " -> "
DEFAULT_ACTIVITY: tuple[str, ...] = ("channel", "action")

TRANSITIONS = "transitions"
VARIANTS = "variants"
TRANSITION_COLUMNS: tuple[str, ...] = ("from_activity", "to_activity", "count", "median_seconds")
VARIANT_COLUMNS: tuple[str, ...] = ("variant", "n_events", "count", "share")

Activity = str | Sequence[str] | None

# internal column names (leading underscore: never clash with a user's columns)
_CASE, _ACT, _TS, _TB = "_case", "_act", "_ts", "_tb"


def _require(events: ir.Table, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in events.columns]
    if missing:
        raise HcpjError(
            f"events have no column {', '.join(repr(m) for m in missing)}; "
            f"available: {', '.join(events.columns)}"
        )


def activity_columns(events: ir.Table, activity: Activity = None) -> tuple[str, ...]:
    """The column(s) an activity is made of (``channel, action`` by default)."""
    cols = (
        DEFAULT_ACTIVITY if activity is None
        else (activity,) if isinstance(activity, str)
        else tuple(activity)
    )
    if not cols:
        raise HcpjError("activity: name at least one column")
    _require(events, cols)
    return cols


def _join_activity(parts: Sequence[ir.StringValue]) -> ir.StringValue:
    out = parts[0]
    for p in parts[1:]:
        out = out.concat(ACTIVITY_SEPARATOR, p)
    return out


def activity_value(events: ir.Table, activity: Activity = None) -> ir.StringValue:
    """The activity expression: ``channel:action`` by default, else the named column(s)."""
    return _join_activity([events[c].cast("string") for c in activity_columns(events, activity)])


def ordered_events(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
) -> ir.Table:
    """``_case, _act, _ts, _tb`` of the events that take part (no null case, activity or ts)."""
    _require(events, [case, ts, *([tiebreak] if tiebreak else [])])
    act = activity_value(events, activity)
    t = events.select(
        **{
            _CASE: events[case],
            _ACT: act,
            _TS: events[ts],
            _TB: events[tiebreak] if tiebreak else ibis.literal(0),
        }
    )
    return t.filter(t[_CASE].notnull(), t[_ACT].notnull(), t[_TS].notnull())


def _window(t: ir.Table, *, descending: bool = False) -> Any:
    order = [t[_TS].desc(), t[_TB].desc()] if descending else [t[_TS], t[_TB]]
    return ibis.window(group_by=t[_CASE], order_by=order)


def _neighbour(
    t: ir.Table, col: str, k: int, *, presorted: bool, descending: bool = False
) -> ir.Value:
    """The value of ``col`` k events later (k < 0: earlier) in the same case, else null.

    Sorting: a window partitioned by case, ordered by ts then tiebreak.
    Presorted: an order-preserving window over the stored order (no sort), with
    the case compared to keep the value within the case.
    """
    if presorted:
        w = ibis.window()
        shift = (lambda v: v.lead(k)) if k > 0 else (lambda v: v.lag(-k))
        same = shift(t[_CASE]).over(w) == t[_CASE]
        return ibis.ifelse(same, shift(t[col]).over(w), ibis.null(t[col].type()))
    w = _window(t, descending=descending)
    return (t[col].lead(k) if k > 0 else t[col].lag(-k)).over(w)


def _seconds(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.FloatingValue:
    """Exact gap in seconds (microsecond difference, so no float rounding of epochs)."""
    return later.delta(earlier, unit="microsecond").cast("float64") / 1e6


@ibis.udf.scalar.builtin(name="hash")
def _hash_two(a: str, b: str) -> dt.UInt64:
    """The engine's 64-bit hash of two values (DuckDB ``hash(a, b)``)."""


@ibis.udf.scalar.builtin(name="hash")
def _hash_after(key: dt.UInt64, value: str) -> dt.UInt64:
    """The engine's 64-bit hash of a key and one more value."""


@ibis.udf.scalar.builtin(name="hash")
def _hash_number(value: dt.UInt64) -> dt.UInt64:
    """The engine's 64-bit hash of an unsigned 64-bit integer."""


@ibis.udf.scalar.builtin(name="epoch_us")
def _epoch_us(value: dt.timestamp) -> dt.Int64:
    """Microseconds since the epoch (DuckDB ``epoch_us``)."""


_ROW = "_row"  # a row's position in storage (engine.stored_order)
_KEY = "_k"  # an activity's 64-bit key (hash of its column values)


def _activity_key(parts: Sequence[ir.StringValue]) -> ir.Value:
    """A 64-bit key per activity: the engine's hash of its column value(s).

    Why: windows and groupings over a 64-bit integer cost a fraction of those
    over text (at 10M events, a directly-follows count over two text columns
    took 3-4 times as long), and no ``channel || ':' || action`` is built per
    event; activities are spelled out once per result row from the key's
    column values (``arbitrary``). Two different activities share a key only by
    a 64-bit hash collision (about n**2 / 2**65 for n distinct activities:
    below 1e-13 for a thousand); the tests compare every result with exact
    text-based references.
    """
    if len(parts) == 1:
        return hash64(parts[0])
    key = _hash_two(parts[0], parts[1])
    for p in parts[2:]:
        key = _hash_after(key, p)
    return key


def keyed_events(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    keep: Sequence[str] = (),
) -> tuple[ir.Table, list[str]]:
    """``_case, _ts, _tb, _k, _a0..`` (+ ``keep``) of the events that take part, and the
    names of the activity part columns ``_a0..`` (text)."""
    cols = activity_columns(events, activity)
    _require(events, [case, ts, *([tiebreak] if tiebreak else [])])
    acts = [f"_a{i}" for i in range(len(cols))]
    t = events.select(
        **{_CASE: events[case], _TS: events[ts], _TB: events[tiebreak] if tiebreak else ibis.literal(0)},
        **{a: events[c].cast("string") for a, c in zip(acts, cols, strict=True)},
        **{k: events[k] for k in keep},
    )
    t = t.filter(t[_CASE].notnull(), t[_TS].notnull(), *(t[a].notnull() for a in acts))
    return t.mutate(**{_KEY: _activity_key([t[a] for a in acts])}), acts


def activity_names(
    events: ir.Table, *, activity: Activity = None, case: str = "hcp_id", ts: str = "ts"
) -> ir.Table:
    """``_k, _name``: every activity's key and text, from its own scan of ``events``.

    Built from ``events`` rather than from a table a presorted window reads, so
    that no relation is shared between the two: a shared relation becomes a
    common table expression, which DuckDB may materialise without keeping the
    stored order an ``OVER ()`` window relies on.
    """
    cols = activity_columns(events, activity)
    t = events.filter(events[case].notnull(), events[ts].notnull(), *(events[c].notnull() for c in cols))
    t = t.select(**{f"_a{i}": t[c].cast("string") for i, c in enumerate(cols)})
    t = t.mutate(**{_KEY: _activity_key([t[f"_a{i}"] for i in range(len(cols))])})
    g = t.group_by(_KEY).aggregate(**{f"_a{i}": t[f"_a{i}"].arbitrary() for i in range(len(cols))})
    return g.select(_KEY, _name=_join_activity([g[f"_a{i}"] for i in range(len(cols))]))


# ----------------------------------------------------------------- transitions
def transitions(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    presorted: bool = False,
    medians: bool = True,
) -> ir.Table:
    """Directly-follows counts: from_activity, to_activity, count, median_seconds.

    ``medians=False`` leaves ``median_seconds`` null everywhere and skips the
    exact-median aggregation, the costliest part (a process map of counts only,
    as pm4py's ``discover_dfg`` gives).

    Includes ``__start__ -> a`` (a case's first activity) and ``a -> __end__``
    (its last) edges with a null ``median_seconds``. ``median_seconds`` is the
    exact median (DuckDB ``quantile_cont``, not an approximation) of the gaps
    between the two events of each occurrence of the pair.

    ``presorted=True`` says ``events`` is a table stored sorted by (case, ts,
    tiebreak) on an engine whose scans keep the stored order (DuckDB; the
    warehouse's ``events`` table, or a filter of it): the order is then taken
    from the storage instead of sorting, several times faster. Do not use it on
    joins or on tables stored in another order.

    One pass: every event closes the edge from its predecessor (or from
    ``__start__``); the ``-> __end__`` counts follow from the aggregated edges
    (events of an activity minus those followed by another event).
    """
    t, acts = keyed_events(events, case=case, activity=activity, ts=ts, tiebreak=tiebreak)
    # grouping by the activities' 64-bit keys and spelling them out after
    # aggregation saves a string concatenation and text hashing per event
    if medians:  # gaps in whole microseconds: exact, and cheaper than timestamp arithmetic
        t = t.mutate(_us=_epoch_us(t[_TS]))
        gap = {"_pus": _neighbour(t, "_us", -1, presorted=presorted)}
    else:
        gap = {}
    e = t.mutate(**gap, _pk=_neighbour(t, _KEY, -1, presorted=presorted))
    median = (e._us - e._pus).median() / 1e6 if medians else ibis.null("float64")
    g = e.group_by(["_pk", _KEY]).aggregate(
        count=e.count(), median_seconds=median, **{a: e[a].arbitrary() for a in acts}
    )
    g = g.mutate(to_activity=_join_activity([g[a] for a in acts]))
    # every activity closes at least one edge (from its predecessor or __start__),
    # so the edges' targets name every key
    names = g.group_by(_nk=g[_KEY]).aggregate(_from=g.to_activity.arbitrary())
    into = g.left_join(names, g._pk == names._nk)
    into = into.select(
        from_activity=ibis.ifelse(into._pk.isnull(), START, into._from),
        to_activity=into.to_activity,
        count=into["count"],
        median_seconds=into.median_seconds,
    )
    ins = into.group_by(activity=into.to_activity).aggregate(n_in=into["count"].sum())
    outs = into.filter(into.from_activity != START)
    outs = outs.group_by(activity=outs.from_activity).aggregate(n_out=outs["count"].sum())
    ends = ins.left_join(outs, "activity")
    ends = ends.select(
        from_activity=ends.activity,
        to_activity=ibis.literal(END),
        count=ends.n_in - ibis.coalesce(ends.n_out, 0),
        median_seconds=ibis.null("float64"),
    )
    ends = ends.filter(ends["count"] > 0)
    return into.union(ends).select(*TRANSITION_COLUMNS)


def start_activities(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    presorted: bool = False,
) -> ir.Table:
    """activity, count: how many cases start with each activity."""
    return _boundary(events, case, activity, ts, tiebreak, presorted, last=False)


def end_activities(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    presorted: bool = False,
) -> ir.Table:
    """activity, count: how many cases end with each activity."""
    return _boundary(events, case, activity, ts, tiebreak, presorted, last=True)


def _boundary(
    events: ir.Table, case: str, activity: Activity, ts: str, tiebreak: str | None, presorted: bool,
    *, last: bool,
) -> ir.Table:
    e, acts = keyed_events(events, case=case, activity=activity, ts=ts, tiebreak=tiebreak)
    if presorted:
        w = ibis.window()
        e = e.mutate(_other=(e[_CASE].lead() if last else e[_CASE].lag()).over(w))
        e = e.filter(e._other.isnull() | (e._other != e[_CASE]))
    else:
        e = e.mutate(_n=ibis.row_number().over(_window(e, descending=last)))
        e = e.filter(e._n == 0)
    g = e.group_by(e[_KEY]).aggregate(count=e.count(), **{a: e[a].arbitrary() for a in acts})
    return g.select(activity=_join_activity([g[a] for a in acts]), count=g["count"])


# -------------------------------------------------------------------- variants
KEY_SEPARATOR = "\x1f"  # joins activities into a variant's grouping key


def case_sequences(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    presorted: bool = False,
) -> ir.Table:
    """case, key, n_events: each case's ordered activities joined by ``KEY_SEPARATOR``."""
    e = ordered_events(events, case=case, activity=activity, ts=ts, tiebreak=tiebreak)
    if presorted:
        e = e.mutate(_rn=ibis.row_number().over(ibis.window()))
        order: list[ir.Value] = [e._rn]
    else:
        order = [e[_TS], e[_TB]]
    return e.group_by(case=e[_CASE]).aggregate(
        key=e[_ACT].group_concat(KEY_SEPARATOR, order_by=order), n_events=e.count()
    )


def case_fingerprints(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    presorted: bool = False,
) -> ir.Table:
    """case, fp1, fp2, n_events: a 128-bit fingerprint of each case's activity sequence.

    Each event hashes (activity key, position in its case) twice, mixing the
    position into the activity's 64-bit key before a second hash; a case's fingerprints are the
    XOR of its events' hashes. Two different sequences of the same length share
    both only by chance (about 2**-128 per pair).
    """
    stored = _stored_dense(events, case, activity, ts) if presorted else None
    if stored is not None:
        return _fingerprints(stored, case=case, activity=activity, ts=ts, tiebreak=tiebreak)
    kw: dict[str, Any] = {"case": case, "activity": activity, "ts": ts, "tiebreak": tiebreak}
    if presorted:
        e, _ = keyed_events(events, **kw)
        w = ibis.window()
        e = e.mutate(_rn=ibis.row_number().over(w), _other=e[_CASE].lag().over(w))
        start = e._other.isnull() | (e._other != e[_CASE])
        e = e.mutate(_start=ibis.ifelse(start, e._rn, ibis.null("int64")))
        e = e.mutate(_pos=e._rn - e._start.max().over(ibis.window(rows=(None, 0))))
    else:
        e, _ = keyed_events(events, **kw)
        e = e.mutate(_pos=ibis.row_number().over(_window(e)))
    return _fold(e)


def _stored_dense(events: ir.Table, case: str, activity: Activity, ts: str) -> ir.Table | None:
    """``events`` with its stored row order (``_row``) when every row takes part (no
    null case, activity or ts: checked now, one scan), else None.

    Why: a case's positions are read as stored row - its first stored row, which
    counts a left-out row as a position; the fingerprint of a case with gaps
    would differ from that of the same sequence without them.
    """
    stored = stored_order(events, _ROW)
    if stored is None:
        return None
    cols = activity_columns(events, activity)
    missing = ibis.or_(events[case].isnull(), events[ts].isnull(), *(events[c].isnull() for c in cols))
    return stored if int(events.filter(missing).count().execute()) == 0 else None


def _fingerprints(
    stored: ir.Table, *, case: str, activity: Activity, ts: str, tiebreak: str | None, first: bool = False
) -> ir.Table:
    """case_fingerprints from a table with its stored row order (``_row``): positions
    = stored row - the case's first stored row, a parallel aggregation and join
    instead of windows over the stored order. ``first``: also ``_first``, the
    case's first stored row."""
    e, _ = keyed_events(stored, case=case, activity=activity, ts=ts, tiebreak=tiebreak, keep=[_ROW])
    # the first rows from a relation of their own (every row takes part, see
    # _stored_dense): a relation read twice would become a common table
    # expression, which DuckDB materialises whole before the join
    other = stored.rename(_fr=_ROW)
    firsts = other.group_by(_fc=other[case]).aggregate(_first=other._fr.min())
    e = e.inner_join(firsts, e[_CASE] == firsts._fc)
    e = e.mutate(_pos=e[_ROW] - e._first)
    return _fold(e, first=first)


def _fold(e: ir.Table, *, first: bool = False) -> ir.Table:
    """Each case's fingerprints from its events' keys and positions (``_k``, ``_pos``)."""
    h = e[_KEY]
    k1 = _hash_number(h ^ e._pos.cast("uint64"))
    k2 = _hash_number(h ^ (e._pos * 2654435761 + 97531).cast("uint64"))
    extra = {"_first": e._first.min()} if first else {}
    return e.group_by(case=e[_CASE]).aggregate(
        fp1=k1.bit_xor(), fp2=k2.bit_xor(), n_events=e.count(), **extra
    )


def variants(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    top: int | None = None,
    sep: str = VARIANT_SEPARATOR,
    as_list: bool = False,
    presorted: bool = False,
) -> ir.Table:
    """variant, n_events, count, share: distinct paths, most frequent first.

    ``variant`` is the activities joined with ``sep`` (or, with
    ``as_list=True``, the array of activities). All variants (``top=None``):
    cases are grouped by the exact sequence (one code character per activity,
    see :func:`_coded_variants`), never by the ``sep``-joined text, so an
    activity holding ``sep`` cannot merge two variants. ``top=N``: cases are
    grouped by a 128-bit fingerprint of the
    sequence (:func:`case_fingerprints`) and the sequence is spelled out only
    for the variants that can be among the N most frequent, which is much
    faster on large logs. ``share`` is count / number of cases. Ties in count
    are ordered by the variant text. ``presorted``: see :func:`transitions`.
    """
    if top is not None and top < 1:
        raise HcpjError(f"top must be at least 1, not {top}")
    kw: dict[str, Any] = {
        "case": case, "activity": activity, "ts": ts, "tiebreak": tiebreak, "presorted": presorted
    }
    if top is None:
        v = _coded_variants(events, **kw)
    else:
        fp = case_fingerprints(events, **kw)
        g = fp.group_by("fp1", "fp2", "n_events").aggregate(count=fp.count(), rep=fp.case.min())
        g = g.mutate(share=g["count"].cast("float64") / g["count"].sum().over(ibis.window()))
        nth = g.order_by(ibis.desc("count")).limit(1, offset=top - 1).select("count").as_scalar()
        cand = g.filter(g["count"] >= ibis.coalesce(nth, 0))
        reps = cand.select(rep="rep")
        seqs = case_sequences(events.semi_join(reps, events[case] == reps.rep), **{**kw, "presorted": False})
        v = cand.inner_join(seqs, cand.rep == seqs.case).select("key", "n_events", "count", "share")
        v = v.mutate(activities=v.key.split(KEY_SEPARATOR))
    v = v.mutate(_text=v.activities.join(sep))
    v = v.order_by([ibis.desc("count"), "_text"])
    if top is not None:
        v = v.limit(top)
    variant = v.activities if as_list else v._text
    return v.select(variant=variant, n_events=v.n_events, count=v["count"], share=v.share)


def variant_arrays(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    presorted: bool = False,
) -> pa.Table:
    """Every variant, computed now, as an Arrow table: variant (a list of
    dictionary-encoded activities), n_events, count, share.

    The fast way to get all the variants of a large log, when nearly every case
    is its own variant and the output is as large as the input. With
    ``presorted`` events on an engine that gives the stored row order
    (:func:`hcpjourney.engine.stored_order`: the warehouse ``events`` table),
    the engine hands over only one small integer per event and one row per case
    (:func:`stored_runs`), and cases are grouped in numpy (:func:`_group_runs`:
    a fingerprint per case, then every case checked against its group's first
    case, so the groups are exact); otherwise it returns :func:`variants`
    (``as_list=True``) run now.

    Same variants and counts as :func:`variants`; most frequent first, but ties
    in count are ordered by their first case in stored order (in the CONTRACT
    order, the first case id), not by the variant's text.
    """
    kw: dict[str, Any] = {"case": case, "activity": activity, "ts": ts, "tiebreak": tiebreak}
    runs = stored_runs(events, case=case, activity=activity, ts=ts) if presorted else None
    grouped = _group_runs(runs) if runs is not None else None
    if runs is None or grouped is None:
        return variants(events, as_list=True, presorted=presorted, **kw).to_pyarrow()
    return _variant_lists(runs, *grouped)


def variant_table(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    sep: str = VARIANT_SEPARATOR,
    presorted: bool = False,
) -> pa.Table:
    """:func:`variants` (all of them, as text) computed now: the same rows in the same
    order (count descending, then variant text), as an Arrow table.

    Why a second function: :func:`variants` is a lazy expression and groups the
    cases in the engine (several seconds at 10M events, when nearly every case is
    its own variant); this one groups them with :func:`variant_arrays`' numpy path
    where the engine gives the stored order, then joins each variant's
    activities once. What ``hcpj build`` stores as the ``variants`` table.
    """
    kw: dict[str, Any] = {"case": case, "activity": activity, "ts": ts, "tiebreak": tiebreak}
    runs = stored_runs(events, case=case, activity=activity, ts=ts) if presorted else None
    grouped = _group_runs(runs) if runs is not None else None
    if runs is None or grouped is None:
        return variants(events, sep=sep, presorted=presorted, **kw).to_pyarrow()
    lists = _variant_lists(runs, *grouped)
    v = lists.column("variant").combine_chunks()
    values = v.values.dictionary.take(v.values.indices)
    text = pc.binary_join(pa.ListArray.from_arrays(v.offsets, values), sep)
    out = lists.set_column(0, "variant", text)
    order = pc.sort_indices(out, sort_keys=[("count", "descending"), ("variant", "ascending")])
    return out.take(order)


# ---------------------------------------------------- stored runs (numpy paths)
@dataclass(frozen=True)
class StoredRuns:
    """Each case's taking-part events as small integers, in stored order.

    ``codes``: the activity code (int32) of every event that takes part, the
    cases one after another in stored order; ``starts``: the index in ``codes``
    of each case's first event (ascending; only cases with at least one event);
    ``names``: the activity text of each code. ``ts``: the events' timestamps as
    int64 in the unit of the ``ts`` column (with ``with_ts``). ``values``: each
    case's value from ``case_values`` (aligned with ``starts``; null where the
    case has none), cast to the ``ts`` column's type.
    """

    codes: np.ndarray
    starts: np.ndarray
    names: pa.Array
    ts: np.ndarray | None = None
    values: pa.Array | None = None

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(np.append(self.starts, len(self.codes)))


def stored_runs(
    events: ir.Table,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    with_ts: bool = False,
    case_values: ir.Table | None = None,
) -> StoredRuns | None:
    """The events of a table stored sorted by (case, ts, tiebreak) as :class:`StoredRuns`,
    or None when the engine cannot give the stored order or a case's rows are not
    one block of stored rows.

    Why: the journey queries that touch every event (all variants, attribution)
    spent their time on text (activities and case ids moved through windows,
    group-bys and lists). Here the engine reads, in parallel, one 64-bit
    activity key per stored row (null where the event takes no part: null case,
    activity or ts) and one row per case (its first and last stored row, and
    ``case_values``' ``_v`` joined on ``_case``), and the rest is vectorised:
    keys become dense codes (Arrow dictionary encoding, codes in order of first
    appearance) and each code is spelled out once, from its first row.
    """
    cols = activity_columns(events, activity)
    _require(events, [case, ts])
    stored = stored_order(events, _ROW)
    if stored is None:
        return None
    s = stored.filter(stored[case].notnull())
    per = s.group_by(_c=s[case]).aggregate(_lo=s[_ROW].min(), _hi=s[_ROW].max(), _n=s.count())
    if case_values is not None:
        j = per.left_join(case_values, per._c == case_values[_CASE])
        per = j.select("_lo", "_hi", "_n", _v=j._v.cast(events[ts].type()))
    else:
        per = per.select("_lo", "_hi", "_n")
    ranges = per.to_pyarrow()
    lo = ranges.column("_lo").to_numpy().astype(np.int64)
    hi = ranges.column("_hi").to_numpy().astype(np.int64)
    n = ranges.column("_n").to_numpy()
    if not np.array_equal(hi - lo + 1, n):
        return None  # some case's rows are not one block: not stored sorted by case
    key = _activity_key([events[c].cast("string") for c in cols])
    # non-null counts of the whole table cost next to nothing
    counts = events.aggregate(
        _all=events.count(), **{f"_{i}": events[c].count() for i, c in enumerate([case, ts, *cols])}
    ).to_pyarrow().to_pylist()[0]
    if len(set(counts.values())) > 1:
        # some rows take no part: their key is null (a test per row, so only when needed)
        ok = ibis.and_(events[case].notnull(), events[ts].notnull(), *(events[c].notnull() for c in cols))
        key = ibis.ifelse(ok, key, ibis.null("uint64"))
    rows = events.select(_k=key, **({"_t": events[ts]} if with_ts else {})).to_pyarrow()
    by_row = np.argsort(lo, kind="stable")
    lo, hi = lo[by_row], hi[by_row]
    enc = pc.dictionary_encode(rows.column("_k").combine_chunks())
    idx = enc.indices
    kept: np.ndarray | None = None
    if idx.null_count:
        valid = idx.is_valid().to_numpy(zero_copy_only=False)
        codes = pc.drop_null(idx).to_numpy()
        cum = np.zeros(len(valid) + 1, dtype=np.int64)
        np.cumsum(valid, out=cum[1:])
        first, end = cum[lo], cum[hi + 1]
        kept = np.flatnonzero(valid)
    else:
        codes = idx.to_numpy()
        first, end = lo, hi + 1
    has = end > first
    starts = first[has]
    t = None
    if with_ts:
        col = rows.column("_t").combine_chunks()
        if not (pa.types.is_timestamp(col.type) or pa.types.is_integer(col.type)):
            return None
        tv = pc.cast(col, pa.int64()).fill_null(0).to_numpy()
        t = tv[kept] if kept is not None else tv
    values = None
    if case_values is not None:
        v = ranges.column("_v").combine_chunks().take(pa.array(by_row[has]))
        values = pc.cast(v, pa.int64()) if pa.types.is_timestamp(v.type) else v
    names = _code_names(stored, activity, codes, kept, len(enc.dictionary))
    return StoredRuns(codes=codes.astype(np.int32, copy=False), starts=starts, names=names,
                      ts=t, values=values)


def _code_names(
    stored: ir.Table, activity: Activity, codes: np.ndarray, kept: np.ndarray | None, k: int
) -> pa.Array:
    """The text of codes 0..k-1, from the stored row where each first appears (codes
    are numbered in order of first appearance, so a running maximum finds them)."""
    if k == 0:
        return pa.array([], pa.string())
    # read in growing chunks: every activity usually appears within the first rows
    at = np.zeros(k, dtype=np.int64)
    top, lo, step = -1, 0, 1 << 16
    while top < k - 1:
        run = np.maximum(np.maximum.accumulate(codes[lo:lo + step]), top)
        prev = np.empty_like(run)
        prev[0] = top
        prev[1:] = run[:-1]
        new = np.flatnonzero(run > prev)
        at[run[new]] = lo + new
        top = int(run[-1])
        lo, step = lo + step, step * 2
    rows = kept[at] if kept is not None else at
    expr = stored.select(_ROW, _name=activity_value(stored, activity))
    got = rows_in(expr, _ROW, rows.tolist())
    if got is None:  # pragma: no cover - stored_order is DuckDB's, and so is rows_in
        got = expr.filter(expr[_ROW].isin(rows.tolist())).to_pyarrow()
    text = dict(zip(got.column(_ROW).to_pylist(), got.column("_name").to_pylist(), strict=True))
    return pa.array([text[int(r)] for r in rows], pa.string())


_WEIGHTS: dict[int, np.ndarray] = {}


def _position_weights(n: int) -> np.ndarray:
    """n odd 64-bit weights, one per position in a case, the same in every run."""
    have = _WEIGHTS.get(0)
    if have is None or len(have) < n:
        rng = np.random.default_rng(0x6A6F75726E6579)
        size = max(n, 1024)
        have = rng.integers(0, 1 << 63, size=size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        _WEIGHTS[0] = have
    return have


def _positions(starts: np.ndarray, lens: np.ndarray, m: int) -> np.ndarray:
    """Each event's position in its case (0, 1, ...), as int32 when it fits."""
    kind = np.int32 if m < 2**31 else np.int64
    # a running sum of steps of 1, set back to 0 at each case's start: one array
    pos = np.ones(m, dtype=kind)
    if len(starts):
        pos[starts[1:]] = 1 - lens[:-1]
        pos[starts[0]] = 0
    np.cumsum(pos, out=pos)
    return pos


_POLY_BASE = 0x9E3779B97F4A7C15  # odd, so its powers are invertible modulo 2**64


def _poly_fingerprints(codes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """sum(code * B**position) modulo 2**64 per case, with no position array: the sum
    over global rows g of code * B**g, times the inverse of B**(case's first row).
    Cheap (one 64-bit array), but polynomial fingerprints modulo 2**64 can be made to
    collide by structured sequences (Thue-Morse), so :func:`_group_runs` checks them
    and falls back to :func:`_weighted_fingerprints`."""
    power = np.full(len(codes), _POLY_BASE, dtype=np.uint64)
    power[0] = 1
    np.cumprod(power, out=power)  # B**g, wrapping modulo 2**64
    first = power[starts]
    np.multiply(power, codes.view(np.uint32), out=power)
    fp = np.add.reduceat(power, starts)
    del power
    inverse = first.copy()  # Newton's iteration for 1 / first modulo 2**64: 3, 6, ... 96 bits
    for _ in range(5):
        inverse *= np.uint64(2) - first * inverse
    return fp * inverse


def _weighted_fingerprints(codes: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """sum(weight[position] * code) modulo 2**64 per case, with independent random
    odd weights per position (no structure to collide with)."""
    pos = _positions(starts, lens, len(codes))
    weighted = _position_weights(int(lens.max()))[pos]
    del pos
    np.multiply(weighted, codes.view(np.uint32), out=weighted)
    return np.add.reduceat(weighted, starts)


def _group_runs(runs: StoredRuns) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(first case's start, length, number of cases) of every variant, most frequent
    first, ties by first case in stored order; None if the fingerprints collided.

    Cases are grouped by (fingerprint, length) (:func:`_poly_fingerprints`, then
    :func:`_weighted_fingerprints` if those collided), and every case that is not
    its group's first is compared event by event with that first case, so the
    groups are exactly the distinct sequences; if both fingerprints collide (the
    second about 2**-58 per pair of sequences) it returns None and the caller
    takes the exact engine path. Only the few cases that repeat an earlier
    sequence are read twice.
    """
    codes, starts = runs.codes, runs.starts
    n_cases = len(starts)
    if n_cases == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    lens = runs.lengths
    for fingerprint in (
        lambda: _poly_fingerprints(codes, starts), lambda: _weighted_fingerprints(codes, starts, lens)
    ):
        grouped = _exact_groups(codes, starts, lens, fingerprint())
        if grouped is not None:
            return grouped
    return None


def _exact_groups(
    codes: np.ndarray, starts: np.ndarray, lens: np.ndarray, fp: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Cases grouped by (fingerprint, length), each checked against its group's first
    case (None if one differs): see :func:`_group_runs`."""
    n_cases = len(starts)
    order = np.lexsort((starts, lens, fp))
    f, ln = fp[order], lens[order]
    new = np.ones(n_cases, dtype=bool)
    new[1:] = (f[1:] != f[:-1]) | (ln[1:] != ln[:-1])
    group_sorted = np.cumsum(new) - 1
    rep = starts[order][new]
    count = np.bincount(group_sorted)
    group_of = np.empty(n_cases, dtype=np.int64)
    group_of[order] = group_sorted
    rep_of = rep[group_of]
    repeat = np.flatnonzero(rep_of != starts)
    if repeat.size:
        rl = lens[repeat]
        within = np.arange(int(rl.sum()), dtype=np.int64) - np.repeat(np.cumsum(rl) - rl, rl)
        mine = np.repeat(starts[repeat], rl) + within
        theirs = np.repeat(rep_of[repeat], rl) + within
        if not np.array_equal(codes[mine], codes[theirs]):
            return None
    by = np.lexsort((rep, -count))
    return rep[by], ln[new][by], count[by]


def _variant_lists(runs: StoredRuns, rep: np.ndarray, n: np.ndarray, count: np.ndarray) -> pa.Table:
    """variant (list of dictionary-encoded activities), n_events, count, share."""
    offsets = np.zeros(len(n) + 1, dtype=np.int64)
    np.cumsum(n, out=offsets[1:])
    rows = _positions(offsets[:-1], n, int(offsets[-1]))
    rows += np.repeat((rep).astype(rows.dtype), n)
    acts = pa.DictionaryArray.from_arrays(pa.array(runs.codes[rows]), runs.names)
    total = float(count.sum()) or 1.0
    return pa.table({
        "variant": pa.ListArray.from_arrays(pa.array(offsets), acts),
        "n_events": pa.array(n, pa.int64()),
        "count": pa.array(count, pa.int64()),
        "share": pa.array(count / total, pa.float64()),
    })


@ibis.udf.scalar.builtin(name="chr")
def _chr(code: int) -> str:  # type: ignore[empty-body]
    """The character of a Unicode code point (DuckDB ``chr``)."""


_CODE_BASE = 0xE000  # first code point of activity codes: past the surrogates, ~1.05M codes
_PACK = 1 << 21  # > the number of codes


def _coded_variants(
    events: ir.Table, *, case: str, activity: Activity, ts: str, tiebreak: str | None, presorted: bool
) -> ir.Table:
    """activities, n_events, count, share of every variant, grouping cases exactly.

    Each distinct activity is given a one-character code (a Unicode code point
    from U+E000 on: up to about 1.05 million activities); a case's key is its
    codes in order, so keys are short, and the activities are spelled out once
    per variant by indexing the code-ordered list of activities. The codes are
    collected unordered with their order packed in (order * 2**21 + code) and
    each case's list is sorted afterwards, which is cheaper than an ordered
    aggregate.
    """
    kw: dict[str, Any] = {"case": case, "activity": activity, "ts": ts, "tiebreak": tiebreak}
    d = activity_names(events, activity=activity, case=case, ts=ts)
    d = d.mutate(_idx=ibis.row_number().over(ibis.window(order_by=d._name)))
    # an order key per event: the stored row (read in parallel), the stored row
    # number (an order-preserving window), or the position in the case (a sort)
    stored = stored_order(events, _ROW) if presorted else None
    if stored is not None:
        e, _ = keyed_events(stored, keep=[_ROW], **kw)
        e = e.mutate(_rn=e[_ROW])
    else:
        e, _ = keyed_events(events, **kw)
        e = e.mutate(_rn=ibis.row_number().over(ibis.window() if presorted else _window(e)))
    j = e.inner_join(d, _KEY)
    # (order, code) packed in one integer and collected unordered, then each
    # case's small list is sorted: cheaper than an ordered aggregate
    packed = j._rn * _PACK + j._idx
    per_case = j.group_by(j[_CASE]).aggregate(_packed=packed.collect(), n_events=j.count())
    per_case = per_case.mutate(
        _key=per_case._packed.sort().map(lambda x: _chr((x % _PACK + _CODE_BASE).cast("int32"))).join("")
    )
    v = per_case.group_by("_key", "n_events").aggregate(count=per_case.count())
    v = v.mutate(share=v["count"].cast("float64") / v["count"].sum().over(ibis.window()))
    codes = d.aggregate(_acts=d._name.collect(order_by=d._idx))
    vm = v.cross_join(codes)
    return vm.select(
        activities=vm._key.split("").map(lambda c: vm._acts[c.ascii_str() - _CODE_BASE]),
        n_events=vm.n_events, count=vm["count"], share=vm.share,
    )


# ------------------------------------------------------------ steps after / before
OCCURRENCES = ("every", "first", "last")


def steps_after(
    events: ir.Table,
    anchor: str,
    n: int = 3,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    occurrence: str = "every",
    presorted: bool = False,
) -> ir.Table:
    """step, activity, count, share: what happens in the ``n`` events after ``anchor``.

    Anchors are the events whose activity equals ``anchor``: every occurrence
    (default), or only each case's ``first`` (or ``last``) one. For step k
    (1..n) the row counts anchors whose k-th following event has that activity;
    an anchor whose case ended after k-1 following events counts once as
    ``__end__`` at step k and is not counted at later steps. ``share`` =
    count / number of anchors, so the shares of one step sum to the fraction of
    anchors still under way at that step.
    """
    return _steps(events, anchor, n, case, activity, ts, tiebreak, occurrence, presorted, after=True)


def steps_before(
    events: ir.Table,
    anchor: str,
    n: int = 3,
    *,
    case: str = "hcp_id",
    activity: Activity = None,
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    occurrence: str = "every",
    presorted: bool = False,
) -> ir.Table:
    """step, activity, count, share: the ``n`` events before ``anchor`` (mirror of
    :func:`steps_after`; step k is the k-th event before, ``__start__`` where the
    case began k-1 events before)."""
    return _steps(events, anchor, n, case, activity, ts, tiebreak, occurrence, presorted, after=False)


def _steps(
    events: ir.Table,
    anchor: str,
    n: int,
    case: str,
    activity: Activity,
    ts: str,
    tiebreak: str | None,
    occurrence: str,
    presorted: bool,
    *,
    after: bool,
) -> ir.Table:
    if n < 1:
        raise HcpjError(f"n must be at least 1, not {n}")
    if occurrence not in OCCURRENCES:
        raise HcpjError(f"occurrence must be one of {', '.join(OCCURRENCES)}, not '{occurrence}'")
    e, acts = keyed_events(events, case=case, activity=activity, ts=ts, tiebreak=tiebreak)
    cols: dict[str, ir.Value] = {}
    for k in range(1, n + 1):
        cols[f"_s{k}"] = _neighbour(e, _KEY, k if after else -k, presorted=presorted)
    cols["_pos"] = ibis.row_number().over(ibis.window() if presorted else _window(e))
    e = e.mutate(**cols)
    a = e.filter(_is_activity(e, acts, anchor))
    if occurrence != "every":
        first = occurrence == "first"
        pick = a.group_by(_CASE).aggregate(_k=a._pos.min() if first else a._pos.max())
        a = a.semi_join(pick, [a[_CASE] == pick[_CASE], a._pos == pick._k])
    # one aggregation over the anchors, by the keys of the n following
    # activities; the steps are then read off that (small) table and named
    steps_cols = [f"_s{k}" for k in range(1, n + 1)]
    combos = a.group_by(steps_cols).aggregate(_n=a.count())
    parts = []
    for k in range(1, n + 1):
        reached = ibis.literal(True) if k == 1 else combos[f"_s{k - 1}"].notnull()
        parts.append(
            combos.filter(reached).select(
                step=ibis.literal(k, "int64"), _key=combos[f"_s{k}"], _n=combos._n
            )
        )
    steps = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    out = steps.group_by("step", "_key").aggregate(count=steps._n.sum())
    names = activity_names(events, activity=activity, case=case, ts=ts)
    out = out.left_join(names, out._key == names[_KEY])
    boundary = END if after else START
    out = out.select(
        "step", activity=ibis.ifelse(out._key.isnull(), boundary, out._name), count=out["count"]
    )
    anchors = combos._n.sum().as_scalar()
    out = out.mutate(share=out["count"].cast("float64") / anchors.cast("float64"))
    return out.order_by(["step", ibis.desc("count"), "activity"])


def _is_activity(t: ir.Table, acts: Sequence[str], text: str) -> ir.BooleanValue:
    """The activity of each row equals ``text``, compared part by part (no joined text
    is built per event): ``text`` split at ``':'`` into as many parts as there are
    activity columns, in every way it can be (a part may hold ``':'`` itself)."""
    if len(acts) == 1:
        return t[acts[0]] == text
    pieces = text.split(ACTIVITY_SEPARATOR)
    conds = []
    for cut in itertools.combinations(range(1, len(pieces)), len(acts) - 1):
        bounds = (0, *cut, len(pieces))
        values = [ACTIVITY_SEPARATOR.join(pieces[bounds[i]:bounds[i + 1]]) for i in range(len(acts))]
        conds.append(ibis.and_(*(t[a] == v for a, v in zip(acts, values, strict=True))))
    return ibis.or_(*conds) if conds else ibis.literal(False)


# ----------------------------------------------------------------- Sankey flows
def stage_flows(
    entries: ir.Table,
    *,
    case: str = "hcp_id",
    stage: str = "stage",
    stage_index: str = "stage_index",
    entered_at: str = "entered_at",
    last_stage_index: int | None = None,
) -> ir.Table:
    """source, target, source_index, target_index, count: Sankey links between stages.

    ``entries`` holds one row per (case, stage entered). Each entry links to the
    next stage the case entered (by stage index, then entry time), or to
    ``(dropped)`` when the case entered no later stage and the stage is not the
    last one (``last_stage_index``, by default the highest index in
    ``entries``); the last stage has no outgoing link. ``target_index`` is null
    for ``(dropped)``.
    """
    _require(entries, [case, stage, stage_index, entered_at])
    t = entries.select(
        _case=entries[case], _stage=entries[stage].cast("string"),
        _idx=entries[stage_index].cast("int64"), _at=entries[entered_at],
    )
    w = ibis.window(group_by=t._case, order_by=[t._idx, t._at])
    t = t.mutate(_next=t._stage.lead().over(w), _next_idx=t._idx.lead().over(w))
    final = (
        ibis.literal(last_stage_index, "int64") if last_stage_index is not None
        else t._idx.max().over(ibis.window())
    )
    t = t.mutate(_final=final)
    links = t.filter(t._next.notnull() | (t._idx < t._final))
    links = links.mutate(
        target=ibis.coalesce(links._next, DROPPED), target_index=links._next_idx
    )
    out = links.group_by(
        source=links._stage, target=links.target, source_index=links._idx,
        target_index=links.target_index,
    ).aggregate(count=links.count())
    return out.order_by(["source_index", out.target_index.isnull(), "target_index", "target"])


# ----------------------------------------------------------------- warehouse
def build_transitions(engine: Engine, *, events_table: str = "events") -> tuple[ir.Table, ir.Table]:
    """Write warehouse tables ``transitions`` and ``variants`` from ``events`` (CONTRACT order).

    ``events`` is stored sorted by (hcp_id, ts, event_id), so the stored order is used
    (``variants`` through :func:`variant_table`).
    """
    if not engine.has_table(events_table):
        raise HcpjError("no events yet: run `hcpj build` first")
    ev = engine.table(events_table)
    tr = engine.create(
        TRANSITIONS, transitions(ev, presorted=True), order_by=["from_activity", "to_activity"]
    )
    # computed now (the numpy path where the stored order is available), in the
    # order of variants(): count descending, then variant text
    var = variant_table(ev, presorted=True)
    var = var.add_column(0, "rank", pa.array(np.arange(1, var.num_rows + 1, dtype=np.int64)))
    vt = engine.create(VARIANTS, ibis.memtable(var.select(["rank", *VARIANT_COLUMNS])), order_by=["rank"])
    return tr, vt
