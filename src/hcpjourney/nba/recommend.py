"""Next best actions: ``hcpj recommend --as-of DATE --out FILE`` and the Python API.

Pipeline, all as of the start of the recommendation week (``as_of``, 00:00 UTC):

1. catalogue: action types x content, minus content not approved / expired /
   not yet approved at ``as_of``, quiet periods, team/purpose mismatches;
2. history: logged touches before ``as_of`` (rewards linked), contacts in the
   7/30 days before, optional ``stage_entries`` and ``segments``;
3. models: response (engagement) and affinity model, timing, journey progression;
   an action type without response history to learn from (fewer than
   ``MIN_TYPE_TOUCHES`` touches with known outcome, or only one outcome seen)
   stays eligible but is scored at the lowest engagement rate observed on any
   channel (``FALLBACK_P`` when there is none), and its reason says so;
4. eligibility by construction: consent as of, pressure budget, recent skips;
5. value and ranking among eligible actions only; exploration when configured;
6. with ``capacity``: the optimal allocation (OR-Tools min-cost flow), one action per HCP;
7. explanations; the warehouse table ``recommendations`` (plus ``nba_affinity``
   and ``nba_timing``), and an export when asked.

``recommendations`` columns: hcp_id, rank, action, channel, content_id, team,
score, expected_uplift, reason (CONTRACT section 4), then p_engage,
expected_progression, stage, weekday, hour (local), send_at (UTC), timing,
drivers, blocked, propensity, explored, purpose, resource, policy, as_of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pyarrow as pa

from hcpjourney.engine import Engine
from hcpjourney.errors import HcpjError, NotBuiltError
from hcpjourney.nba import history as H
from hcpjourney.nba.allocate import allocate, parse_capacity
from hcpjourney.nba.catalogue import (
    Action,
    Catalogue,
    action_types,
    build_catalogue,
)
from hcpjourney.nba.eligibility import Eligibility, consent_status, eligibility_from_state, skipped_matrix
from hcpjourney.nba.explain import reasons
from hcpjourney.nba.feedback import FeedbackRecord, skip_touches
from hcpjourney.nba.models import (
    CONTENT_ATTRIBUTES,
    DAYPART_NAMES,
    KINDS,
    N_DAYPARTS,
    WEEKDAYS,
    ActionCodes,
    LoggingPolicy,
    Progression,
    ResponseModel,
    TimeGroups,
    best_timing,
    time_groups,
)
from hcpjourney.nba.ranking import Values, explore_epsilon, rank, thompson, uplift_of, values
from hcpjourney.nba.settings import NbaSettings

RECOMMENDATIONS = "recommendations"
AFFINITY = "nba_affinity"
TIMING = "nba_timing"
CONTRACT_COLUMNS: tuple[str, ...] = (
    "hcp_id", "rank", "action", "channel", "content_id", "team", "score", "expected_uplift", "reason",
)
MIN_TYPE_TOUCHES = 30
FALLBACK_P = 0.01  # engagement assumed for unscorable types when no type has history


def parse_as_of(value: str | date | datetime) -> datetime:
    """--as-of as a naive UTC datetime at 00:00 (a date, or an ISO timestamp)."""
    if isinstance(value, datetime):
        d = value
    elif isinstance(value, date):
        d = datetime(value.year, value.month, value.day)
    else:
        try:
            d = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise HcpjError(f"--as-of '{value}' is not a date; use YYYY-MM-DD") from None
    if d.tzinfo is not None:
        from datetime import UTC

        d = d.astimezone(UTC).replace(tzinfo=None)
    return datetime(d.year, d.month, d.day)


def action_codes(actions: Sequence[Action], types: Sequence[Any], vocab: H.ContentVocab) -> ActionCodes:
    names = [t.name for t in types]
    attrs: dict[str, np.ndarray] = {}
    for a in CONTENT_ATTRIBUTES:
        pos = {v: i for i, v in enumerate(vocab.values[a])}
        attrs[a] = np.array([pos.get(str(getattr(x, a)), -1) if getattr(x, a) is not None else -1
                             for x in actions], dtype=np.int64)
    return ActionCodes(
        np.array([names.index(x.action) for x in actions], dtype=np.int64),
        np.array([KINDS.index(x.kind) for x in actions], dtype=np.int64),
        attrs,
    )


@dataclass
class Fitted:
    """Everything needed to decide for any HCP as of one date."""

    settings: NbaSettings
    as_of: datetime
    catalogue: Catalogue
    codes: ActionCodes
    vocab: H.ContentVocab
    hcps: H.Hcps
    model: ResponseModel
    progression: Progression
    allowed: np.ndarray  # K x N_SLOTS
    groups: TimeGroups
    status: np.ndarray  # n x G consent status
    skipped: np.ndarray  # n x A
    logging: LoggingPolicy | None = None
    touches: H.Touches | None = None
    notes: list[str] = field(default_factory=list)

    def eligibility(self, hix: np.ndarray | None = None) -> Eligibility:
        skipped = self.skipped if hix is None else self.skipped[hix]
        status = self.status if hix is None else self.status[hix]
        return eligibility_from_state(self.hcps, self.catalogue, self.settings, status,
                                      self.catalogue.groups(), skipped, hix)


def fit(engine: Engine, settings: NbaSettings, as_of: datetime,
        feedback: Sequence[FeedbackRecord] = ()) -> Fitted:
    """Load the history as of ``as_of`` and fit every model."""
    if not engine.has_table("events"):
        raise NotBuiltError("no events yet: run `hcpj build` first")
    hcps_table = H.register_hcps(engine)
    rows = H.content_rows(engine)
    vocab = H.content_vocab(rows)
    types = action_types(settings)
    cat = build_catalogue(rows, settings, as_of, history=H.content_team_history(engine, as_of),
                          types=types)
    touches = H.load_touches(engine, hcps_table, types, vocab, as_of, settings.history_days)
    t_expr = H.touches_expr(engine, types, as_of - timedelta(days=31), as_of)
    hcps = H.load_hcps(engine, hcps_table, t_expr, as_of)
    # types the history can score: enough touches, both outcomes seen
    T = len(types)
    tr = touches.subset(touches.trainable)
    n_t = np.bincount(tr.type_code, minlength=T)
    pos_t = np.bincount(tr.type_code, weights=tr.reward.astype(float), minlength=T)
    scorable = (n_t >= MIN_TYPE_TOUCHES) & (pos_t > 0) & (pos_t < n_t)
    notes = [f"{t.name}: too little response history to learn from ({int(n_t[i])} touches with a "
             "known outcome); scored at the lowest channel rate"
             for i, t in enumerate(types) if not scorable[i]]
    train = tr.subset(scorable[tr.type_code])
    weights = np.ones(train.size)
    if feedback:
        st, sw = skip_touches(feedback, hcps, cat, vocab, types, as_of)
        ok = scorable[st.type_code] if st.size else np.zeros(0, dtype=bool)
        if ok.any():
            train = H.Touches.concat([train, st.subset(ok)])
            weights = np.concatenate([weights, sw[ok]])
    model = ResponseModel.fit(train, hcps, types, vocab, sample_weight=weights)
    # types without response history stay eligible, scored at the lowest observed channel rate
    rates = model.channel_rate[scorable] if model.channel_rate is not None else np.zeros(0)
    rates = rates[np.isfinite(rates)]
    floor = float(rates.min()) if rates.size else FALLBACK_P
    model.fallback = np.where(scorable, np.nan, floor)
    codes = action_codes(cat.actions, types, vocab)
    progression = Progression.fit(train, hcps, T, settings.progression_horizon_days)
    allowed = model.allowed_slots([settings.allowed_hour(h) for h in range(24)])
    status = consent_status(engine, hcps_table, cat.groups(), hcps.n, as_of)
    skipped = skipped_matrix(hcps, cat, [r.as_dict() for r in feedback], settings, as_of)
    logging = LoggingPolicy.fit(touches, hcps.n, model.space.type_kind)
    return Fitted(settings, as_of, cat, codes, vocab, hcps, model, progression, allowed,
                  time_groups(model, allowed), status, skipped, logging, touches, notes)


# ------------------------------------------------------------------ output
def _send_at(as_of: datetime, slot: np.ndarray, utc_offset: np.ndarray) -> np.ndarray:
    """UTC datetime64[s] of the first local (weekday, hour) of ``slot`` in the week from as_of."""
    wd0 = as_of.weekday()
    wd, hr = slot // 24, slot % 24
    day = (wd - wd0) % 7
    base = np.datetime64(as_of, "s")
    local = base + (day * 86_400 + hr * 3600).astype("timedelta64[s]")
    return local - (utc_offset * 3600).astype("timedelta64[s]")


@dataclass
class Decisions:
    """Recommendation rows before they become a table."""

    rows: np.ndarray  # index into the scored HCPs
    hix: np.ndarray
    rank: np.ndarray
    action: np.ndarray
    score: np.ndarray
    uplift: np.ndarray
    p: np.ndarray
    prog: np.ndarray
    propensity: np.ndarray
    explored: np.ndarray


def decide(fitted: Fitted, *, hix: np.ndarray | None = None, top_k: int | None = None,
           capacity: Mapping[str, int] | None = None, exploration: str | None = None,
           seed: int | None = None) -> tuple[Decisions, Eligibility, Values, Any, str]:
    """Rank (or allocate) for HCPs ``hix`` (default all): rows, eligibility, values, timing, policy."""
    s = fitted.settings
    hix = np.arange(fitted.hcps.n) if hix is None else np.asarray(hix, dtype=np.int64)
    k = top_k or s.top_k
    mode = (exploration or s.exploration).lower()
    rng = np.random.default_rng(s.seed if seed is None else seed)
    elig = fitted.eligibility(hix)
    group = fitted.codes.type_code if s.one_per_action else None
    if mode == "thompson":
        order, prop, timing, val = thompson(fitted.model, fitted.hcps, fitted.codes, fitted.groups,
                                            fitted.progression, s, elig.mask, k, rng, hix=hix,
                                            group=group)
        explored = np.zeros(hix.size, dtype=bool)
    else:
        timing = best_timing(fitted.model, fitted.hcps, fitted.groups, hix)
        val = values(fitted.model, fitted.hcps, fitted.codes, timing, fitted.progression, s, hix)
        order = rank(val.value, elig.mask, k, group)
        if mode == "epsilon" and s.epsilon > 0:
            order, prop, explored = explore_epsilon(order, elig.mask, s.epsilon, rng)
        else:
            prop = np.where(order[:, 0] >= 0, 1.0, np.nan)
            explored = np.zeros(hix.size, dtype=bool)
    policy = "greedy" if mode == "none" else mode
    if capacity:
        chosen = allocate(val.value, elig.mask, fitted.catalogue, capacity)
        order = np.full((hix.size, 1), -1, dtype=np.int64)
        order[:, 0] = chosen
        prop = np.where(chosen >= 0, 1.0, np.nan)
        explored = np.zeros(hix.size, dtype=bool)
        policy = "capacity"
    up = uplift_of(val.value, elig.mask, order)
    r_idx, c_idx = np.nonzero(order >= 0)
    act = order[r_idx, c_idx]
    dec = Decisions(
        rows=r_idx, hix=hix[r_idx], rank=c_idx + 1, action=act,
        score=val.value[r_idx, act], uplift=up[r_idx, c_idx], p=val.p[r_idx, act],
        prog=val.progression[r_idx, act],
        propensity=np.where(c_idx == 0, prop[r_idx], np.nan),
        explored=explored[r_idx] & (c_idx == 0),
    )
    return dec, elig, val, timing, policy


def to_table(fitted: Fitted, dec: Decisions, elig: Eligibility, timing: Any, policy: str) -> pa.Table:
    cat = fitted.catalogue
    acts = cat.actions
    hc = fitted.hcps
    if dec.action.size:
        info = reasons(fitted.model, hc, cat, fitted.codes, fitted.vocab, timing, fitted.progression,
                       elig, dec.rows, dec.hix, dec.action, dec.p, dec.prog,
                       fitted.settings.opt_in_required, dec.explored)
    else:
        info = {k: pa.array([], pa.string()) for k in ("reason", "drivers", "timing", "blocked")}
    kind = fitted.codes.kind[dec.action] if dec.action.size else np.zeros(0, dtype=np.int64)
    slot = timing.slot[dec.rows, kind] if dec.action.size else np.zeros(0, dtype=np.int64)
    send_at = _send_at(fitted.as_of, slot, hc.utc_offset[dec.hix])
    stage_names = np.array([None, *hc.stage_names], dtype=object)
    stage = stage_names[np.minimum(hc.stage[dec.hix], len(hc.stage_names))]

    def pick(attr: str) -> list[Any]:
        col = np.array([getattr(a, attr) for a in acts] or [None], dtype=object)
        return col[dec.action].tolist() if dec.action.size else []

    def f64(x: np.ndarray) -> pa.Array:
        x = np.asarray(x, dtype=float)
        return pa.array(x, type=pa.float64(), mask=~np.isfinite(x))

    wd_names = np.array(WEEKDAYS, dtype=object)
    table = pa.table({
        "hcp_id": pa.array(hc.ids[dec.hix].tolist(), pa.string()),
        "rank": pa.array(dec.rank, pa.int64()),
        "action": pa.array(pick("action"), pa.string()),
        "channel": pa.array(pick("channel"), pa.string()),
        "content_id": pa.array(pick("content_id"), pa.string()),
        "team": pa.array(pick("team"), pa.string()),
        "score": f64(dec.score),
        "expected_uplift": f64(dec.uplift),
        "reason": info["reason"],
        "p_engage": f64(dec.p),
        "expected_progression": f64(dec.prog),
        "stage": pa.array(stage.tolist(), pa.string()),
        "weekday": pa.array(wd_names[slot // 24].tolist(), pa.string()),
        "hour": pa.array(slot % 24, pa.int64()),
        "send_at": pa.array(send_at.astype("datetime64[us]"), pa.timestamp("us")),
        "timing": info["timing"],
        "drivers": info["drivers"],
        "blocked": info["blocked"],
        "propensity": f64(dec.propensity),
        "explored": pa.array(dec.explored, pa.bool_()),
        "purpose": pa.array(pick("purpose"), pa.string()),
        "resource": pa.array(pick("resource"), pa.string()),
        "policy": pa.array([policy] * dec.action.size, pa.string()),
        "as_of": pa.array([fitted.as_of] * dec.action.size, pa.timestamp("us")),
    })
    order = np.lexsort((dec.rank, dec.hix))
    return table.take(pa.array(order))


def affinity_table(fitted: Fitted) -> pa.Table:
    """Best value per content attribute for each HCP with history, and its effect (logit)."""
    m, hc, voc = fitted.model, fitted.hcps, fitted.vocab
    seen = np.flatnonzero(m.hcp_touches.sum(axis=1) > 0) if m.hcp_touches is not None else \
        np.zeros(0, dtype=np.int64)
    cols: dict[str, list[Any]] = {"hcp_id": [], "attribute": [], "value": [], "effect": [],
                                  "peer_effect": []}
    ids, att, val, eff, peer = [], [], [], [], []
    for a in CONTENT_ATTRIBUTES:
        if not voc.values[a]:
            continue
        fixed = m.effects[f"attr:{a}"]
        tot = fixed[None, :] + m.effects[f"hcp_attr:{a}"][seen]
        if f"seg_attr:{a}" in m.effects and hc.segments is not None:
            tot = tot + hc.segments[seen] @ m.effects[f"seg_attr:{a}"]
        best = np.argmax(tot, axis=1)
        ids.append(hc.ids[seen])
        att.append(np.full(seen.size, a, dtype=object))
        val.append(np.array(voc.values[a], dtype=object)[best])
        eff.append(tot[np.arange(seen.size), best])
        peer.append(fixed[best])
    if ids:
        cols = {"hcp_id": np.concatenate(ids).tolist(), "attribute": np.concatenate(att).tolist(),
                "value": np.concatenate(val).tolist(), "effect": np.concatenate(eff).tolist(),
                "peer_effect": np.concatenate(peer).tolist()}
    return pa.table({"hcp_id": pa.array(cols["hcp_id"], pa.string()),
                     "attribute": pa.array(cols["attribute"], pa.string()),
                     "value": pa.array(cols["value"], pa.string()),
                     "effect": pa.array(cols["effect"], pa.float64()),
                     "peer_effect": pa.array(cols["peer_effect"], pa.float64())})


def timing_table(fitted: Fitted, timing: Any) -> pa.Table:
    """Best local weekday/hour per HCP and kind of channel, with the daypart."""
    hc = fitted.hcps
    n = hc.n
    K = len(KINDS)
    slot = timing.slot.reshape(-1)
    hix = np.repeat(np.arange(n), K)
    kind = np.tile(np.arange(K), n)
    dp_names = np.array(DAYPART_NAMES, dtype=object)
    from hcpjourney.nba.models import DAYPART_OF_HOUR

    return pa.table({
        "hcp_id": pa.array(hc.ids[hix].tolist(), pa.string()),
        "kind": pa.array(np.array(KINDS, dtype=object)[kind].tolist(), pa.string()),
        "weekday": pa.array(np.array(WEEKDAYS, dtype=object)[slot // 24].tolist(), pa.string()),
        "hour": pa.array(slot % 24, pa.int64()),
        "daypart": pa.array(dp_names[DAYPART_OF_HOUR[slot % 24] % N_DAYPARTS].tolist(), pa.string()),
        "effect": pa.array(timing.effect.reshape(-1).astype(float), pa.float64()),
    })


def recommend(
    engine: Engine,
    settings: NbaSettings | Mapping[str, Any] | None,
    as_of: str | date | datetime,
    *,
    capacity: str | Mapping[str, int] | None = None,
    top_k: int | None = None,
    exploration: str | None = None,
    seed: int | None = None,
    feedback: Sequence[FeedbackRecord] = (),
    write: bool = True,
    notes: list[str] | None = None,
) -> pa.Table:
    """Next best actions for the week starting ``as_of``; writes ``recommendations`` when ``write``.

    ``notes`` (when given) receives one line per thing a user should know (e.g. an
    action type scored without response history).
    """
    s = settings if isinstance(settings, NbaSettings) else NbaSettings.from_settings(settings)
    when = parse_as_of(as_of)
    limits = parse_capacity(capacity)
    fitted = fit(engine, s, when, feedback)
    if notes is not None:
        notes.extend(fitted.notes)
    dec, elig, _val, timing, policy = decide(fitted, top_k=top_k, capacity=limits,
                                             exploration=exploration, seed=seed)
    table = to_table(fitted, dec, elig, timing, policy)
    if write:
        with engine.transaction():
            engine.create(RECOMMENDATIONS, ibis.memtable(table), order_by=["hcp_id", "rank"])
            engine.create(AFFINITY, ibis.memtable(affinity_table(fitted)),
                          order_by=["hcp_id", "attribute"])
            full = timing if timing.slot.shape[0] == fitted.hcps.n else best_timing(
                fitted.model, fitted.hcps, fitted.groups)
            engine.create(TIMING, ibis.memtable(timing_table(fitted, full)), order_by=["hcp_id", "kind"])
    return table


@dataclass
class RecommendSummary:
    rows: int
    hcps: int
    as_of: datetime
    out: Path | None
    notes: list[str]


def recommend_workspace(ws: Any, as_of: str | date | datetime, *, out: Path | None = None,
                        capacity: str | Mapping[str, int] | None = None, top_k: int | None = None,
                        exploration: str | None = None, seed: int | None = None) -> RecommendSummary:
    """The use case behind ``hcpj recommend``: reads [nba] settings and rep feedback, writes
    ``recommendations`` and, with ``out``, exports it (.csv or .parquet)."""
    from hcpjourney import engine as engines
    from hcpjourney.config import CONFIG_FILE
    from hcpjourney.nba.feedback import feedback as read_feedback

    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        raise HcpjError(f"--out {out}: use a .csv or .parquet file name")
    s = NbaSettings.from_settings(ws.settings, where=str(ws.root / CONFIG_FILE))
    fb = read_feedback(ws.app_db_url)
    notes: list[str] = []
    eng = engines.connect(ws)
    try:
        table = recommend(eng, s, as_of, capacity=capacity, top_k=top_k, exploration=exploration,
                          seed=seed, feedback=fb, notes=notes)
        if out is not None:
            eng.export(eng.table(RECOMMENDATIONS).order_by(["hcp_id", "rank"]), out)
    finally:
        eng.close()
    return RecommendSummary(table.num_rows, len(set(table.column("hcp_id").to_pylist())),
                            parse_as_of(as_of), out, notes)


class Decider:
    """In-process decisions for one HCP at a time (e.g. behind an API call).

    Built once from a :class:`Fitted`; ``decide(hcp_id)`` ranks that HCP's
    eligible actions with the same rules and models as the batch run.
    """

    def __init__(self, fitted: Fitted) -> None:
        self.fitted = fitted

    @classmethod
    def load(cls, engine: Engine, settings: NbaSettings | Mapping[str, Any] | None,
             as_of: str | date | datetime, feedback: Sequence[FeedbackRecord] = ()) -> Decider:
        """Fit once as of ``as_of``; then ``decide`` answers in well under a millisecond."""
        s = settings if isinstance(settings, NbaSettings) else NbaSettings.from_settings(settings)
        return cls(fit(engine, s, parse_as_of(as_of), feedback))

    def decide(self, hcp_id: str, top_k: int | None = None) -> list[dict[str, Any]]:
        f = self.fitted
        h = f.hcps.lookup([hcp_id])
        if h[0] < 0:
            raise HcpjError(f"unknown HCP '{hcp_id}'")
        elig = f.eligibility(h)
        tim = best_timing(f.model, f.hcps, f.groups, h)
        val = values(f.model, f.hcps, f.codes, tim, f.progression, f.settings, h)
        group = f.codes.type_code if f.settings.one_per_action else None
        order = rank(val.value, elig.mask, top_k or f.settings.top_k, group)[0]
        out: list[dict[str, Any]] = []
        for r, a in enumerate(order.tolist()):
            if a < 0:
                break
            act = f.catalogue.actions[a]
            slot = int(tim.slot[0, f.codes.kind[a]])
            out.append({"hcp_id": hcp_id, "rank": r + 1, "action": act.action, "channel": act.channel,
                        "content_id": act.content_id, "team": act.team,
                        "score": float(val.value[0, a]), "p_engage": float(val.p[0, a]),
                        "weekday": WEEKDAYS[slot // 24], "hour": slot % 24})
        return out
