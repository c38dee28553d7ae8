"""Channel attribution of adoption (CONTRACT section 4), exact.

Paths (CONTRACT): an HCP's path is the ``channel`` of each of its events in
order (``ts``, then ``event_id``), consecutive repeats collapsed, cut before
adoption for HCPs that adopted (events with ``ts < adopted_at``); an HCP that
adopted before its first event has the empty path ``__start__ -> adoption``;
HCPs without events are left out. A path ends in ``adoption`` (the HCP
adopted) or ``__null__``.

Methods, side by side in :func:`attribution_table`:

``removal_effect``, ``share`` — first-order Markov (the CONTRACT's definition)
    The absorbing chain ``__start__ -> channels -> adoption | __null__`` with
    transition probabilities = transition counts over all paths, normalised per
    state. P(adoption) is the absorption probability from ``__start__``,
    solved exactly as a linear system (I - Q) x = r, not by simulating paths.
    removal_effect(c) = 1 - P(adoption with c removed) / P(adoption), where
    removing c sends every transition into c to ``__null__``;
    share = removal_effect / sum of removal effects.
    (ChannelAttribution's ``markov_model`` estimates the same quantities by
    simulating a bounded number of bounded-length paths, so its figures carry
    simulation noise and a truncation bias; these are exact.)
``markov_order_k`` — k-th order Markov share
    States are the last (up to) k channels of the path (a path's first k-1
    states are shorter tuples, i.e. padded with ``__start__``). Removing c
    sends every transition into a state that contains c to ``__null__``: a
    path that touches c does not convert. Shares as above. Order 1 equals the
    first-order model.
``shapley`` — Shapley value over channel sets
    Characteristic function v(S) = number of converting paths whose set of
    channels is a subset of S (Zhao et al. 2018, "Shapley value methods for
    attribution modeling in online advertising"). Since v is a sum of
    unanimity games, the Shapley value has the closed form
    phi(c) = sum over converting paths containing c of 1 / |channels of the path|,
    computed in the engine; shown as a share of all converting (non-empty)
    paths.
``first_touch`` / ``last_touch`` / ``linear``
    Each converting non-empty path gives one credit to its first channel, its
    last channel (the last before adoption), or 1/n to each of its n collapsed
    touches; shown as shares.

Empty-path adopters count in P(adoption) (they convert whatever is removed) but
give no credit in the heuristic and Shapley columns.

Transition counts and credits: with ``presorted=True`` on a table whose stored
row order the engine gives (the warehouse ``events``), the engine hands over one
channel code and timestamp per event and the paths are built and counted in
numpy (:func:`_stored_counts`); otherwise they are aggregated in the engine
(:func:`touches`, then :func:`chain_counts` / :func:`heuristic_credits`), reading
the stored order with order-preserving windows when ``presorted`` or sorting.
Either way only the small state-by-state count matrix is solved
(:func:`markov_removal_effects`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits

from hcpjourney.engine import Engine
from hcpjourney.errors import HcpjError
from hcpjourney.journey.outcomes import adoption_times

START = "__start__"
ADOPTION = "adoption"
NULL = "__null__"
ATTRIBUTION = "attribution"
CONTRACT_COLUMNS: tuple[str, ...] = ("channel", "removal_effect", "share")
STATE_SEPARATOR = "\x1f"  # joins the channels of a k-th order state (never in a channel name)
_DENSE_LIMIT = 1500  # states up to which the chain is solved densely

_CASE, _CH, _TS, _TB, _AT = "_case", "_ch", "_ts", "_tb", "_at"


@dataclass
class MarkovResult:
    """Exact removal effects of one Markov model."""

    order: int
    conversion_probability: float
    removal_effects: dict[str, float] = field(default_factory=dict)

    @property
    def shares(self) -> dict[str, float]:
        total = sum(self.removal_effects.values())
        if total <= 0:
            return {c: 0.0 for c in self.removal_effects}
        return {c: v / total for c, v in self.removal_effects.items()}


# ---------------------------------------------------------------------- paths
def touches(
    events: ir.Table,
    adoptions: ir.Table,
    *,
    case: str = "hcp_id",
    channel: str = "channel",
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    adopted_at: str = "adopted_at",
    order: int = 1,
    presorted: bool = False,
) -> ir.Table:
    """The collapsed touches of every path, with what the chains and credits need.

    One row per event whose channel differs from the previous event's (the
    first event of a case included), before any cut, with ``_case, _ch, _ts``;
    ``_p1 .. _p{order}`` (the previous collapsed touches' channels, null before
    the path's start); ``_nts`` (the next touch's ts, null for the case's last);
    ``_at`` (adopted_at, null if the HCP did not adopt). Collapsing commutes
    with the cut (the cut keeps a prefix of the events), so the cut is applied
    to touches afterwards: a touch is on the path when ``_ts < _at``, and is the
    path's last touch when, further, the next touch is missing or not before
    ``_at``. An adopter whose first touch is not before ``_at`` has the empty
    path.

    ``presorted``: ``events`` is stored sorted by (case, ts, tiebreak) on an
    engine whose scans keep the stored order (the warehouse ``events``): the
    order is read from storage rather than sorted (see paths.transitions).
    """
    if order < 1:
        raise HcpjError(f"Markov order must be at least 1, not {order}")
    for name, t, cols in (
        ("events", events, [case, channel, ts, *([tiebreak] if tiebreak else [])]),
        ("adoptions", adoptions, [case, adopted_at]),
    ):
        missing = [c for c in cols if c not in t.columns]
        if missing:
            raise HcpjError(f"{name} have no column {', '.join(map(repr, missing))}")
    e = events.select(
        **{
            _CASE: events[case], _CH: events[channel].cast("string"), _TS: events[ts],
            _TB: events[tiebreak] if tiebreak else ibis.literal(0),
        }
    )
    e = e.filter(e[_CASE].notnull(), e[_CH].notnull(), e[_TS].notnull())
    e = e.mutate(_p1=_previous(e, _CH, 1, presorted))
    kept = e.filter(e._p1.isnull() | (e._p1 != e[_CH]))
    more = {f"_p{i}": _previous(kept, _CH, i, presorted) for i in range(2, order + 1)}
    kept = kept.mutate(**more, _nts=_previous(kept, _TS, -1, presorted))
    a = adoptions.select(**{_CASE: adoptions[case], _AT: adoptions[adopted_at]})
    a = a.filter(a[_AT].notnull())
    j = kept.left_join(a, _CASE)
    return j.select(_CASE, _CH, _TS, *(f"_p{i}" for i in range(1, order + 1)), "_nts", _AT)


def _previous(t: ir.Table, col: str, k: int, presorted: bool) -> ir.Value:
    """``col`` of the k-th previous row of the same case (k < 0: next), else null."""
    if presorted:
        w = ibis.window()
        shift = (lambda v: v.lag(k)) if k > 0 else (lambda v: v.lead(-k))
        same = shift(t[_CASE]).over(w) == t[_CASE]
        return ibis.ifelse(same, shift(t[col]).over(w), ibis.null(t[col].type()))
    w = ibis.window(group_by=t[_CASE], order_by=[t[_TS], t[_TB]])
    return (t[col].lag(k) if k > 0 else t[col].lead(-k)).over(w)


def _flags(t: ir.Table) -> dict[str, ir.BooleanValue]:
    converted = t[_AT].notnull()
    on_path = ~converted | (t[_TS] < t[_AT])
    last = on_path & (t._nts.isnull() | (converted & (t._nts >= t[_AT])))
    empty = converted & t._p1.isnull() & (t[_TS] >= t[_AT])
    return {"_on": on_path, "_last": last, "_empty": empty, "_conv": converted}


def chain_counts(t: ir.Table, order: int = 1) -> ir.Table:
    """src, dst, count of the order-k chain from :func:`touches` rows (k-tuples joined by
    STATE_SEPARATOR; a path's first states are shorter, i.e. padded with __start__)."""
    if order < 1:
        raise HcpjError(f"Markov order must be at least 1, not {order}")
    prev = [f"_p{i}" for i in range(order, 0, -1)]  # oldest first
    g = t.mutate(**_flags(t))
    agg = g.group_by(["_on", "_last", "_empty", "_conv", *prev, _CH]).aggregate(n=g.count())
    sep = ibis.literal(STATE_SEPARATOR)
    # concat_ws skips nulls: the states of a path's first touches are shorter tuples
    state = sep.join([*(agg[p] for p in prev[1:]), agg[_CH]])
    src = ibis.ifelse(agg._p1.isnull(), START, sep.join([agg[p] for p in prev]))
    agg = agg.mutate(_state=state, _src=src)
    on = agg.filter(agg._on)
    inner = on.select(src=on._src, dst=on._state, n=on.n)
    last = agg.filter(agg._last)
    ends = last.select(src=last._state, dst=ibis.ifelse(last._conv, ADOPTION, NULL), n=last.n)
    empty = agg.filter(agg._empty)
    empties = empty.select(src=ibis.literal(START), dst=ibis.literal(ADOPTION), n=empty.n)
    edges = inner.union(ends, empties)
    return edges.group_by("src", "dst").aggregate(count=edges.n.sum())


# --------------------------------------------------------------------- solving
def markov_removal_effects(
    counts: pd.DataFrame | Sequence[tuple[str, str, int]], *, order: int = 1
) -> MarkovResult:
    """Exact removal effects from transition counts (src, dst, count).

    States other than ``__start__``, ``adoption`` and ``__null__`` are channels
    (order 1) or k-tuples joined by ``STATE_SEPARATOR``; a channel is removed by
    sending every transition into a state that contains it to ``__null__``.
    """
    if isinstance(counts, pd.DataFrame):
        rows = list(zip(counts["src"], counts["dst"], counts["count"], strict=True))
    else:
        rows = list(counts)
    states = sorted({s for s, _, _ in rows} | {d for _, d, _ in rows} - {ADOPTION, NULL} | {START})
    index = {s: i for i, s in enumerate(states)}
    n = len(states)
    src = np.array([index[s] for s, _, _ in rows], dtype=np.int64)
    cnt = np.array([float(c) for _, _, c in rows])
    totals = np.bincount(src, weights=cnt, minlength=n)
    to_adopt = np.array([d == ADOPTION for _, d, _ in rows])
    transient = np.array([d not in (ADOPTION, NULL) for _, d, _ in rows])
    dst = np.array([index.get(d, -1) for _, d, _ in rows], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = np.where(totals[src] > 0, cnt / totals[src], 0.0)
    r = np.bincount(src[to_adopt], weights=prob[to_adopt], minlength=n)
    qs, qd, qp = src[transient], dst[transient], prob[transient]

    channels_of = {s: set(s.split(STATE_SEPARATOR)) for s in states if s != START}
    channels = sorted(set().union(*channels_of.values())) if channels_of else []

    def absorb(keep: np.ndarray) -> float:
        """P(adoption from __start__) with the states where keep is False made null."""
        ok = keep[qs] & keep[qd]
        sub = np.flatnonzero(keep)
        pos = np.full(n, -1, dtype=np.int64)
        pos[sub] = np.arange(sub.size)
        x = _solve(pos[qs[ok]], pos[qd[ok]], qp[ok], r[sub], sub.size)
        return float(x[pos[index[START]]])

    everything = np.ones(n, dtype=bool)
    # one BLAS thread: these systems are small (hundreds of states), and a threaded
    # solve on a busy 2-core machine took 130 ms instead of 0.6 ms (n = 225)
    with threadpool_limits(limits=1, user_api="blas"):
        p = absorb(everything)
        effects: dict[str, float] = {}
        for c in channels:
            keep = everything.copy()
            for s, chans in channels_of.items():
                if c in chans:
                    keep[index[s]] = False
            effects[c] = 1.0 - absorb(keep) / p if p > 0 else 0.0
    return MarkovResult(order=order, conversion_probability=p, removal_effects=effects)


def _solve(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    """x with (I - Q) x = r, Q given as coordinates (summed where repeated)."""
    if n <= _DENSE_LIMIT:
        a = np.eye(n)
        np.add.at(a, (rows, cols), -vals)
        return np.linalg.solve(a, r)
    try:
        from scipy.sparse import coo_matrix, identity
        from scipy.sparse.linalg import spsolve
    except ImportError:  # pragma: no cover - scipy is present wherever pm4py or sklearn is
        raise HcpjError(
            f"a Markov chain of {n} states needs scipy; install scipy or lower the Markov order"
        ) from None
    q = coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsc()
    return np.asarray(spsolve((identity(n, format="csc") - q), r))


# ----------------------------------------------------------------- heuristics
def heuristic_credits(t: ir.Table) -> ir.Table:
    """channel, first_touch, last_touch, linear, shapley: credits (conversions) per channel,
    from :func:`touches` rows, over converting non-empty paths."""
    g = t.mutate(**_flags(t))
    g = g.filter(g._conv & g._on)
    per = g.group_by(_CASE, _CH).aggregate(
        n=g.count(),
        first=g._p1.isnull().cast("int64").sum(),
        last=g._last.cast("int64").sum(),
    )
    per_case = per.group_by(_CASE).aggregate(n_touches=per.n.sum(), n_channels=per.count())
    j = per.inner_join(per_case, _CASE)
    return j.group_by(channel=j[_CH]).aggregate(
        first_touch=j["first"].sum().cast("float64"),
        last_touch=j["last"].sum().cast("float64"),
        linear=(j.n.cast("float64") / j.n_touches).sum(),
        shapley=(1.0 / j.n_channels.cast("float64")).sum(),
    )


# ------------------------------------------------------------- stored-order path
_PAIR_LIMIT = 1 << 26  # (states + 3) ** 2 up to which transition pairs are counted by bincount


@dataclass
class _Counts:
    """What the methods need, from :func:`_stored_counts`: transition counts per Markov
    order (src, dst, count) and credits per channel (first_touch, last_touch,
    linear, shapley)."""

    chains: dict[int, pd.DataFrame]
    credits: pd.DataFrame


def _stored_counts(
    events: ir.Table,
    adoptions: ir.Table,
    *,
    case: str,
    channel: str,
    ts: str,
    adopted_at: str,
    orders: Sequence[int],
    credits: bool,
) -> _Counts | None:
    """Chain counts and credits from the stored order with numpy, or None when the
    engine cannot give the stored order (then the engine path runs).

    Why: building every path in the engine (windows, group-bys and joins over the
    channel text of 10M events) took about 1 s; here the engine hands over one
    channel code and timestamp per event and one row per HCP (its adoption time,
    the first of its adoption rows), and paths, collapsed touches, the order-k
    states and the credits are vectorised over those integers (see
    :func:`hcpjourney.journey.paths.stored_runs`). Same definitions as
    :func:`touches` / :func:`chain_counts` / :func:`heuristic_credits`; the tests
    compare both.
    """
    from hcpjourney.journey.paths import stored_runs

    a = adoptions.filter(adoptions[adopted_at].notnull())
    a = a.group_by(**{_CASE: a[case]}).aggregate(_v=a[adopted_at].min())
    runs = stored_runs(events, case=case, activity=channel, ts=ts, with_ts=True, case_values=a)
    if runs is None or runs.ts is None or runs.values is None:
        return None
    k = len(runs.names)
    base = k + 1  # a state's digits: 0 = none (a path's first states are shorter), else code + 1
    top = max(orders)
    if (base ** top + 3) ** 2 >= 2 ** 63:
        return None  # too many states to number pairs of them in 64 bits: the engine counts
    c, starts, lens = runs.codes, runs.starts, runs.lengths
    n_cases, m = len(starts), len(c)
    conv = runs.values.is_valid().to_numpy(zero_copy_only=False)
    # the path's events: every event of a non-adopter; an adopter's before adoption
    # (compared on the adopters' events only)
    on = np.ones(m, dtype=bool)
    adopters = np.flatnonzero(conv)
    if adopters.size:
        at = runs.values.take(pa.array(adopters)).to_numpy()
        a_lens = lens[adopters]
        rows = np.repeat(starts[adopters] - (np.cumsum(a_lens) - a_lens), a_lens)
        rows += np.arange(len(rows), dtype=rows.dtype)
        on[rows] = runs.ts[rows] < np.repeat(at, a_lens)
        del rows
    first_row = np.zeros(m, dtype=bool)
    first_row[starts] = True
    touch = first_row.copy()
    np.not_equal(c[1:], c[:-1], out=touch[1:])
    touch |= first_row
    touch &= on
    del on
    p = np.flatnonzero(touch)  # the path's touches (consecutive repeats collapsed)
    del touch
    tc = c[p]  # int32: narrow temporaries, fewer page faults
    tfirst = first_row[p]
    del first_row
    # the case of each touch: a path's first touch is its case's first event
    on_len = np.zeros(n_cases, dtype=np.int64)  # touches on each path
    with_path = np.searchsorted(starts, p[tfirst])
    heads = np.flatnonzero(tfirst)
    on_len[with_path] = np.diff(np.append(heads, len(p)))
    case_of = np.repeat(with_path.astype(np.int32), on_len[with_path])
    del p
    tlast = np.ones(len(tc), dtype=bool)
    tlast[:-1] = tfirst[1:]
    tconv = conv[case_of]
    empty = int(np.count_nonzero(conv & (on_len == 0)))

    text = [str(x) for x in runs.names.to_pylist()]
    src, dst, n = _chain_pairs(tc, tfirst, tlast, tconv, empty, top, base)
    chains = {order: _chain_frame(src, dst, n, order, top, base, text) for order in orders}
    credit = pd.DataFrame(columns=["first_touch", "last_touch", "linear", "shapley"])
    if credits:
        credit = _credit_frame(tc, tfirst, tlast, tconv, case_of, on_len, k, text)
    return _Counts(chains=chains, credits=credit)


def _chain_pairs(
    tc: np.ndarray, tfirst: np.ndarray, tlast: np.ndarray, tconv: np.ndarray, empty: int,
    order: int, base: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """src, dst, count of the order-k chain over the path touches (``tc``: channel codes,
    ``tfirst`` / ``tlast``: a path's first / last touch, ``tconv``: its case converted),
    states as numbers: the codes + 1 of a state's last k touches as base-``base``
    digits, newest lowest (0 where the path has fewer touches: its first states are
    shorter tuples); then base**k, +1, +2 for __start__, adoption, __null__."""
    n_states = base ** order
    width = n_states + 3
    kind = np.int32 if width * width < 2**31 else np.int64  # narrow when pairs fit
    state: np.ndarray = tc.astype(kind)
    state += 1
    same = np.ones(len(tc), dtype=bool)
    for i in range(1, order):
        # touch t - i is on the same path when none of touches t-i+1 .. t begins a path
        same[i - 1:] &= ~tfirst[:len(tc) - i + 1]
        older: np.ndarray = np.zeros_like(state)
        older[i:] = tc[:-i]
        older[i:] += 1
        older[~same] = 0
        older *= base ** i
        state += older
    start, adopt, null = n_states, n_states + 1, n_states + 2
    src = np.empty_like(state)
    src[0:1] = start
    src[1:] = state[:-1]
    src[tfirst] = start
    src *= width
    src += state  # the pair (src, state) as one number
    ends = state[tlast] * width + np.where(tconv[tlast], adopt, null)
    if width * width <= _PAIR_LIMIT:
        counts = np.bincount(src, minlength=width * width)
        counts += np.bincount(ends, minlength=width * width)
        hit = np.flatnonzero(counts)
        n = counts[hit]
    else:
        hit, n = np.unique(np.concatenate((src, ends)), return_counts=True)
    hit = hit.astype(np.int64)
    if empty:
        hit = np.append(hit, start * width + adopt)
        n = np.append(n, empty)
    return hit // width, hit % width, n


def _chain_frame(
    src: np.ndarray, dst: np.ndarray, n: np.ndarray, order: int, top: int, base: int,
    text: list[str],
) -> pd.DataFrame:
    """src, dst, count (text) of the order-``order`` chain from :func:`_chain_pairs`' order
    ``top`` >= ``order``: a state's newest ``order`` channels are its lowest digits, so
    the lower-order chain is the higher one's counts summed over those digits."""
    special = base ** top
    names = {special: START, special + 1: ADOPTION, special + 2: NULL}

    def project(v: np.ndarray) -> np.ndarray:
        return np.where(v >= special, v, v % base ** order)

    s, d = project(src), project(dst)
    key = s * (special + 3) + d
    uniq, inverse = np.unique(key, return_inverse=True)
    total = np.bincount(inverse, weights=n, minlength=len(uniq)).astype(np.int64)

    def spell(code: int) -> str:
        if code in names:
            return names[code]
        digits = []
        while code:
            code, digit = divmod(code, base)
            if digit:
                digits.append(text[digit - 1])
        return STATE_SEPARATOR.join(reversed(digits))

    us, ud = uniq // (special + 3), uniq % (special + 3)
    spelled = {int(v): spell(int(v)) for v in np.unique(np.concatenate((us, ud)))}
    return pd.DataFrame({
        "src": [spelled[int(v)] for v in us],
        "dst": [spelled[int(v)] for v in ud],
        "count": total,
    })


def _credit_frame(
    tc: np.ndarray, tfirst: np.ndarray, tlast: np.ndarray, tconv: np.ndarray,
    case_of: np.ndarray, on_len: np.ndarray, k: int, text: list[str],
) -> pd.DataFrame:
    """first_touch, last_touch, linear, shapley credits per channel over converting paths."""
    cc, cf, cl, cases = tc[tconv], tfirst[tconv], tlast[tconv], case_of[tconv]
    first = np.bincount(cc[cf], minlength=k).astype(np.float64)
    last = np.bincount(cc[cl], minlength=k).astype(np.float64)
    linear = np.bincount(cc, weights=1.0 / on_len[cases], minlength=k)
    # Shapley: each converting path gives 1 / (its distinct channels) to each of them
    heads = np.flatnonzero(cf)
    if k <= 63:
        masks = np.bitwise_or.reduceat(np.left_shift(np.uint64(1), cc.astype(np.uint64)), heads) \
            if len(heads) else np.zeros(0, dtype=np.uint64)
        weight = 1.0 / np.bitwise_count(masks).astype(np.float64)
        shapley = np.array([weight[(masks >> np.uint64(j)) & np.uint64(1) == 1].sum() for j in range(k)])
    else:
        pairs = np.unique(cases.astype(np.int64) * k + cc)
        per_case = np.bincount(pairs // k)
        shapley = np.bincount(pairs % k, weights=1.0 / per_case[pairs // k], minlength=k)
    out = pd.DataFrame({"first_touch": first, "last_touch": last, "linear": linear,
                        "shapley": shapley}, index=pd.Index(text, name="channel"))
    return out[(first > 0) | (last > 0) | (linear > 0)]


# ----------------------------------------------------------------------- tables
def markov_attribution(
    events: ir.Table,
    adoptions: ir.Table,
    *,
    case: str = "hcp_id",
    channel: str = "channel",
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    adopted_at: str = "adopted_at",
    order: int = 1,
    presorted: bool = False,
) -> MarkovResult:
    """Exact Markov removal effects of ``order`` from events and adoptions (hcp_id, adopted_at).

    ``presorted`` on a stored table whose row order the engine gives (the
    warehouse ``events``): counted in numpy from the stored order
    (:func:`_stored_counts`); otherwise in the engine (:func:`touches`,
    :func:`chain_counts`). Same counts either way.
    """
    if order < 1:
        raise HcpjError(f"Markov order must be at least 1, not {order}")
    fast = _stored_counts(
        events, adoptions, case=case, channel=channel, ts=ts, adopted_at=adopted_at,
        orders=[order], credits=False,
    ) if presorted and _has_columns(events, adoptions, case, channel, ts, tiebreak, adopted_at) else None
    if fast is not None:
        counts = fast.chains[order]
    else:
        t = touches(
            events, adoptions, case=case, channel=channel, ts=ts, tiebreak=tiebreak,
            adopted_at=adopted_at, order=order, presorted=presorted,
        )
        counts = chain_counts(t, order).to_pyarrow().to_pandas()
    if counts.empty:
        raise HcpjError("no events to attribute: ingest interactions and run `hcpj build` first")
    return markov_removal_effects(counts, order=order)


def attribution_table(
    events: ir.Table,
    adoptions: ir.Table,
    *,
    case: str = "hcp_id",
    channel: str = "channel",
    ts: str = "ts",
    tiebreak: str | None = "event_id",
    adopted_at: str = "adopted_at",
    order: int = 2,
    presorted: bool = False,
) -> pd.DataFrame:
    """Every method side by side, one row per channel on any path.

    Columns: channel, removal_effect, share (CONTRACT, first-order Markov), then
    ``markov_order_{order}`` (share), shapley, first_touch, last_touch, linear
    (shares of converting paths); sorted by share, highest first. ``attrs``
    holds ``conversion_probability`` and ``converting_paths``.
    """
    if order < 2:
        raise HcpjError(
            f"order (the higher Markov order shown beside the first) must be 2 or more, not {order}"
        )
    fast = _stored_counts(
        events, adoptions, case=case, channel=channel, ts=ts, adopted_at=adopted_at,
        orders=[1, order], credits=True,
    ) if presorted and _has_columns(events, adoptions, case, channel, ts, tiebreak, adopted_at) else None
    if fast is not None:
        first_counts, higher_counts, credits = fast.chains[1], fast.chains[order], fast.credits
    else:
        first_counts, higher_counts, credits = _engine_counts(
            events, adoptions, case=case, channel=channel, ts=ts, tiebreak=tiebreak,
            adopted_at=adopted_at, order=order, presorted=presorted,
        )
    if first_counts.empty:
        raise HcpjError("no events to attribute: ingest interactions and run `hcpj build` first")
    first = markov_removal_effects(first_counts, order=1)
    higher = markov_removal_effects(higher_counts, order=order)
    return _side_by_side(first, higher, credits, order)


def _has_columns(
    events: ir.Table, adoptions: ir.Table, case: str, channel: str, ts: str, tiebreak: str | None,
    adopted_at: str,
) -> bool:
    """Whether the inputs have the named columns (if not, the engine path says which not)."""
    need = [case, channel, ts, *([tiebreak] if tiebreak else [])]
    return all(c in events.columns for c in need) and all(
        c in adoptions.columns for c in (case, adopted_at)
    )


def _engine_counts(
    events: ir.Table, adoptions: ir.Table, *, case: str, channel: str, ts: str,
    tiebreak: str | None, adopted_at: str, order: int, presorted: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """First-order and order-k chain counts and credits, all computed in the engine."""
    t = touches(
        events, adoptions, case=case, channel=channel, ts=ts, tiebreak=tiebreak,
        adopted_at=adopted_at, order=order, presorted=presorted,
    )
    # one query, so the engine computes the touches once for the three aggregations
    parts = [
        chain_counts(t, 1).select(kind=ibis.literal("first"), src="src", dst="dst", count="count"),
        chain_counts(t, order).select(kind=ibis.literal("higher"), src="src", dst="dst", count="count"),
    ]
    credit = heuristic_credits(t)
    null_f = ibis.null("float64")
    both = [
        p.mutate(first_touch=null_f, last_touch=null_f, linear=null_f, shapley=null_f) for p in parts
    ]
    both.append(
        credit.select(
            kind=ibis.literal("credit"), src=credit.channel, dst=ibis.null("string"),
            count=ibis.null("int64"), first_touch=credit.first_touch, last_touch=credit.last_touch,
            linear=credit.linear, shapley=credit.shapley,
        )
    )
    res = both[0].union(*both[1:]).to_pyarrow().to_pandas()
    first_counts = res[res["kind"] == "first"][["src", "dst", "count"]]
    higher_counts = res[res["kind"] == "higher"][["src", "dst", "count"]]
    credits = res[res["kind"] == "credit"].rename(columns={"src": "channel"}).set_index("channel")
    return first_counts, higher_counts, credits


def _side_by_side(
    first: MarkovResult, higher: MarkovResult, credits: pd.DataFrame, order: int
) -> pd.DataFrame:
    """The attribution table from the two Markov models and the credits per channel."""
    channels = sorted(first.removal_effects)
    out = pd.DataFrame({"channel": channels})
    out["removal_effect"] = [first.removal_effects[c] for c in channels]
    shares = first.shares
    out["share"] = [shares[c] for c in channels]
    hshares = higher.shares
    out[f"markov_order_{order}"] = [hshares.get(c, 0.0) for c in channels]
    converting = float(credits["first_touch"].sum()) if not credits.empty else 0.0
    for col in ("shapley", "first_touch", "last_touch", "linear"):
        vals = credits[col] if col in credits else pd.Series(dtype="float64")
        out[col] = [
            float(vals.get(c, 0.0)) / converting if converting > 0 else 0.0 for c in channels
        ]
    out = out.sort_values(["share", "channel"], ascending=[False, True], ignore_index=True)
    out.attrs["conversion_probability"] = first.conversion_probability
    out.attrs["converting_paths"] = round(converting)
    return out


def build_attribution(engine: Engine, product: str | None = None, *, order: int = 2) -> ir.Table:
    """Write warehouse table ``attribution`` (CONTRACT columns first, the other methods after).

    Adoption is the first outcome of ``product`` (any product if None) with nrx > 0.
    ``events`` is stored sorted by (hcp_id, ts, event_id), so the stored order is used.
    """
    if not engine.has_table("events"):
        raise HcpjError("no events yet: run `hcpj build` first")
    table = attribution_table(
        engine.table("events"), adoption_times(engine, product), order=order, presorted=True
    )
    return engine.create(ATTRIBUTION, ibis.memtable(table), order_by=["channel"])
