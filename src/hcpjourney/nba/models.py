"""Response, affinity, timing, progression and logging-policy models.

History is logged bandit feedback: each outbound touch is an action (channel,
content, timing) the company took in a context (the HCP and its recent
contacts), with a reward (engaged or not) observed only for that action.

**Response model** -- P(engage | HCP, channel, content, timing) is a logistic
mixed model fitted as one penalised (ridge) logistic regression on a sparse
design, which is the MAP estimate of a model with Gaussian random effects:

    logit p = b0 + channel[c] + sum_attr content[attr, value]            (fixed)
              + kind_weekday[k, wd] + kind_hour[k, weekend, hour]
              + channel x (decile, missing decile, KOL) + fatigue * recent
              + segment x (channel, theme, tonality, format, kind x daypart)  (when `segments` exists)
              + stage x channel                                             (when stages exist)
              + hcp[h] + hcp_channel[h, c] + hcp_attr[h, attr, value]       (random, per HCP)
              + hcp_time[h, k, daypart]

Each block has a prior standard deviation (``BLOCK_SD``); a column scaled by
its block's sd under a unit ridge penalty gives exactly that prior. The
per-HCP effects are the **affinities** (content: theme, tonality, format,
aesthetics, key message; channel; time of day); the fixed effects are what
peers share. Engagement probabilities for a whole HCP x action grid are sums
of gathered effects (numpy, no per-row Python).

**Timing** -- for each HCP and kind of channel (digital, personal) the best
local (weekday, hour) among the slots the logging policy actually used
(support: no extrapolation to hours nobody was ever contacted) and outside the
quiet hours.

**Progression** -- from the journey analytics (``stage_entries``): for HCPs in
stage s at a touch of channel c, P(next stage within the horizon | engaged) -
P(... | not engaged), smoothed and floored at 0.

**Logging policy** -- propensities when history does not record them:
P(channel | HCP) (the HCP's channel mix shrunk to the population's), times
P(content | channel, month), times P(slot | kind).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from hcpjourney.nba.catalogue import ActionType
from hcpjourney.nba.history import CONTENT_ATTRIBUTES, ContentVocab, Hcps, Touches

KINDS: tuple[str, ...] = ("digital", "personal")
# local hour -> daypart: night, early, morning, lunch, afternoon, evening, late
DAYPART_EDGES = (0, 5, 8, 12, 14, 17, 20)
DAYPART_NAMES = ("night", "early", "morning", "lunch", "afternoon", "evening", "late")
N_DAYPARTS = len(DAYPART_EDGES)
DAYPART_OF_HOUR = np.searchsorted(np.asarray(DAYPART_EDGES), np.arange(24), side="right") - 1
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
N_SLOTS = 7 * 24

BLOCK_SD: dict[str, float] = {
    "type": 3.0, "attr": 1.0, "time_wd": 1.0, "time_hr": 1.0, "type_decile": 1.0,
    "type_dmiss": 1.0, "type_kol": 1.0, "recent": 1.0, "seg_type": 1.5, "seg_attr": 0.5,
    "seg_time": 0.5, "stage_type": 1.0,
    "hcp": 0.4, "hcp_type": 0.7, "hcp_attr": 0.3, "hcp_attr_minor": 0.15, "hcp_time": 0.3,
}
MAJOR_ATTRIBUTES = ("theme", "tonality", "format")
SEG_ATTRIBUTES = ("theme", "tonality", "format")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def slot_of(weekday: np.ndarray, hour: np.ndarray) -> np.ndarray:
    return np.asarray(weekday, dtype=np.int64) * 24 + np.asarray(hour, dtype=np.int64)


def ridge_logistic(X: sp.spmatrix, y: np.ndarray, sample_weight: np.ndarray | None = None, *,
                   max_iter: int = 50, rtol: float = 1e-4, max_cg: int = 250
                   ) -> tuple[np.ndarray, float, np.ndarray]:
    """Minimise sum_i s_i logloss(y_i, x_i w + b) + |w|^2 / 2 (b unpenalised).

    Truncated Newton: each step solves H s = -g by conjugate gradients with a
    Jacobi preconditioner (Hessian-vector products are two sparse products), then
    backtracks. Stops when the gradient norm falls below ``rtol`` times its start.
    Returns (w, b, s_i p_i (1 - p_i) at the solution).
    """
    Xc = sp.csr_matrix(X)
    XT = Xc.T.tocsr()
    X2T = Xc.multiply(Xc).T.tocsr()
    m, n = Xc.shape
    yv = np.asarray(y, dtype=float)
    sw = np.ones(m) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    w = np.zeros(n)
    b = 0.0

    def loss(w_: np.ndarray, b_: float) -> tuple[float, np.ndarray]:
        z_ = Xc @ w_ + b_
        return float(np.sum(sw * (np.logaddexp(0.0, z_) - yv * z_)) + 0.5 * w_ @ w_), z_

    f, z = loss(w, b)
    g0 = None
    d = sw * 0.25
    for _ in range(max_iter):
        p = sigmoid(z)
        r = sw * (p - yv)
        gw = XT @ r + w
        gb = float(r.sum())
        gnorm = float(np.sqrt(gw @ gw + gb * gb))
        g0 = gnorm if g0 is None else g0
        d = sw * p * (1.0 - p)
        if gnorm <= rtol * g0 or gnorm == 0.0:
            break
        mw = X2T @ d + 1.0
        mb = float(d.sum()) + 1e-12
        sw_, sb = np.zeros(n), 0.0
        rw, rb = -gw, -gb
        zw, zb = rw / mw, rb / mb
        pw, pb = zw.copy(), zb
        rz = float(rw @ zw + rb * zb)
        eta = min(0.5, np.sqrt(gnorm / g0)) * gnorm
        for _k in range(max_cg):
            u = d * (Xc @ pw + pb)
            hw, hb = XT @ u + pw, float(u.sum())
            php = float(pw @ hw + pb * hb)
            if php <= 0:
                break
            alpha = rz / php
            sw_ += alpha * pw
            sb += alpha * pb
            rw -= alpha * hw
            rb -= alpha * hb
            if np.sqrt(rw @ rw + rb * rb) <= eta:
                break
            zw, zb = rw / mw, rb / mb
            rz_new = float(rw @ zw + rb * zb)
            beta = rz_new / rz
            rz = rz_new
            pw = zw + beta * pw
            pb = zb + beta * pb
        slope = float(gw @ sw_ + gb * sb)
        step = 1.0
        while True:
            f_new, z_new = loss(w + step * sw_, b + step * sb)
            if f_new <= f + 1e-4 * step * slope or step < 1e-6:
                break
            step *= 0.5
        w = w + step * sw_
        b = b + step * sb
        f, z = f_new, z_new
    p = sigmoid(z)
    return w, float(b), sw * p * (1.0 - p)


@dataclass
class Space:
    """The vocabularies a model was fitted with."""

    types: tuple[ActionType, ...]
    attr_sizes: dict[str, int]
    n_hcps: int
    n_segments: int = 0
    n_stages: int = 0

    @property
    def n_types(self) -> int:
        return len(self.types)

    @property
    def type_kind(self) -> np.ndarray:
        return np.array([KINDS.index(t.kind) for t in self.types], dtype=np.int64)


@dataclass
class Rows:
    """Model inputs for a set of (HCP, action, time) rows."""

    hix: np.ndarray
    type_code: np.ndarray
    attrs: dict[str, np.ndarray]  # attribute -> value code (-1 none)
    weekday: np.ndarray
    hour: np.ndarray
    recent: np.ndarray

    @classmethod
    def from_touches(cls, t: Touches, vocab: ContentVocab) -> Rows:
        return cls(t.hix, t.type_code, {a: vocab.attribute_codes(a, t.content)
                                         for a in CONTENT_ATTRIBUTES},
                   t.weekday, t.hour, t.recent.astype(float))


@dataclass
class _Block:
    name: str
    offset: int
    shape: tuple[int, ...]
    sd: float

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


def _hcp_feats(hcps: Hcps, hix: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred decile, missing-decile flag and KOL flag (of rows ``hix``, default all)."""
    d = hcps.decile if hix is None else hcps.decile[hix]
    kol = hcps.is_kol if hix is None else hcps.is_kol[hix]
    dec = np.where(np.isnan(d), 0.0, (d - 5.5) / 4.5)
    return dec, np.isnan(d).astype(float), kol.astype(float)


class Design:
    """Column layout of the sparse design matrix."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.blocks: dict[str, _Block] = {}
        T, K = space.n_types, len(KINDS)
        self._add("type", (T,), BLOCK_SD["type"])
        for a in CONTENT_ATTRIBUTES:
            self._add(f"attr:{a}", (space.attr_sizes[a],), BLOCK_SD["attr"])
        self._add("time_wd", (K, 7), BLOCK_SD["time_wd"])
        self._add("time_hr", (K, 2, 24), BLOCK_SD["time_hr"])
        self._add("type_decile", (T,), BLOCK_SD["type_decile"])
        self._add("type_dmiss", (T,), BLOCK_SD["type_dmiss"])
        self._add("type_kol", (T,), BLOCK_SD["type_kol"])
        self._add("recent", (1,), BLOCK_SD["recent"])
        G = space.n_segments
        if G:
            self._add("seg_type", (G, T), BLOCK_SD["seg_type"])
            for a in SEG_ATTRIBUTES:
                self._add(f"seg_attr:{a}", (G, space.attr_sizes[a]), BLOCK_SD["seg_attr"])
            self._add("seg_time", (G, K, 2, N_DAYPARTS), BLOCK_SD["seg_time"])
        if space.n_stages:
            self._add("stage_type", (space.n_stages + 1, T), BLOCK_SD["stage_type"])
        n = space.n_hcps
        self._add("hcp", (n,), BLOCK_SD["hcp"])
        self._add("hcp_type", (n, T), BLOCK_SD["hcp_type"])
        for a in CONTENT_ATTRIBUTES:
            sd = BLOCK_SD["hcp_attr"] if a in MAJOR_ATTRIBUTES else BLOCK_SD["hcp_attr_minor"]
            self._add(f"hcp_attr:{a}", (n, space.attr_sizes[a]), sd)
        self._add("hcp_time", (n, K, N_DAYPARTS), BLOCK_SD["hcp_time"])

    def _add(self, name: str, shape: tuple[int, ...], sd: float) -> None:
        off = sum(b.size for b in self.blocks.values())
        self.blocks[name] = _Block(name, off, shape, sd)

    @property
    def n_columns(self) -> int:
        return sum(b.size for b in self.blocks.values())

    def matrix(self, rows: Rows, hcps: Hcps) -> tuple[sp.csr_matrix, np.ndarray]:
        """(X scaled by block sd, raw values) for ``rows``."""
        r_list: list[np.ndarray] = []
        c_list: list[np.ndarray] = []
        v_list: list[np.ndarray] = []
        m = rows.hix.size
        idx = np.arange(m)
        kind = self.space.type_kind[rows.type_code]
        weekend = (rows.weekday >= 5).astype(np.int64)
        dp = DAYPART_OF_HOUR[rows.hour]
        dec, miss, kol = _hcp_feats(hcps)
        h = rows.hix
        t = rows.type_code

        def put(name: str, flat: np.ndarray, val: np.ndarray | float = 1.0,
                mask: np.ndarray | None = None) -> None:
            b = self.blocks[name]
            v = np.broadcast_to(np.asarray(val, dtype=float), (m,))
            ok = (mask if mask is not None else np.ones(m, dtype=bool)) & (v != 0)
            r_list.append(idx[ok])
            c_list.append(b.offset + flat[ok])
            v_list.append(v[ok])

        T, K = self.space.n_types, len(KINDS)
        put("type", t)
        for a in CONTENT_ATTRIBUTES:
            c = rows.attrs[a]
            put(f"attr:{a}", np.maximum(c, 0), 1.0, c >= 0)
        put("time_wd", kind * 7 + rows.weekday)
        put("time_hr", (kind * 2 + weekend) * 24 + rows.hour)
        put("type_decile", t, dec[h])
        put("type_dmiss", t, miss[h])
        put("type_kol", t, kol[h])
        put("recent", np.zeros(m, dtype=np.int64), rows.recent / 5.0)
        G = self.space.n_segments
        if G and hcps.segments is not None:
            S = hcps.segments[h]
            for g in range(G):
                put("seg_type", g * T + t, S[:, g])
                for a in SEG_ATTRIBUTES:
                    c = rows.attrs[a]
                    V = self.space.attr_sizes[a]
                    put(f"seg_attr:{a}", g * V + np.maximum(c, 0), S[:, g], c >= 0)
                put("seg_time", ((g * K + kind) * 2 + weekend) * N_DAYPARTS + dp, S[:, g])
        if self.space.n_stages:
            put("stage_type", np.minimum(hcps.stage[h], self.space.n_stages) * T + t)
        put("hcp", h)
        put("hcp_type", h * T + t)
        for a in CONTENT_ATTRIBUTES:
            c = rows.attrs[a]
            V = self.space.attr_sizes[a]
            put(f"hcp_attr:{a}", h * V + np.maximum(c, 0), 1.0, c >= 0)
        put("hcp_time", (h * K + kind) * N_DAYPARTS + dp)
        r = np.concatenate(r_list)
        c = np.concatenate(c_list)
        v = np.concatenate(v_list)
        raw = sp.csr_matrix((v, (r, c)), shape=(m, self.n_columns))
        scale = np.empty(self.n_columns)
        for b in self.blocks.values():
            scale[b.offset:b.offset + b.size] = b.sd
        return raw @ sp.diags(scale), scale


@dataclass
class ResponseModel:
    """Fitted effects (see the module docstring); ``effects[name]`` has the block's shape."""

    space: Space
    intercept: float
    effects: dict[str, np.ndarray]
    variances: dict[str, np.ndarray] = field(default_factory=dict)
    support: np.ndarray | None = None  # K x N_SLOTS: logged touches per local slot
    channel_rate: np.ndarray | None = None  # T: population engagement rate per type
    hcp_rate: np.ndarray | None = None  # n x T: engagements / touches per HCP (nan: none)
    hcp_touches: np.ndarray | None = None  # n x T
    n_train: int = 0
    fallback: np.ndarray | None = None  # T: fixed probability for types without history (nan: model)

    # ---------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, touches: Touches, hcps: Hcps, types: Sequence[ActionType], vocab: ContentVocab,
            *, sample_weight: np.ndarray | None = None, max_iter: int = 50) -> ResponseModel:
        space = Space(tuple(types), {a: max(1, len(vocab.values[a])) for a in CONTENT_ATTRIBUTES},
                      hcps.n, 0 if hcps.segments is None else hcps.segments.shape[1],
                      len(hcps.stage_names))
        design = Design(space)
        rows = Rows.from_touches(touches, vocab)
        y = touches.reward.astype(int)
        T = space.n_types
        n_t = np.bincount(touches.type_code, minlength=T).astype(float)
        e_t = np.bincount(touches.type_code, weights=y, minlength=T)
        rate = np.where(n_t > 0, e_t / np.maximum(n_t, 1), np.nan)
        flat = touches.hix * T + touches.type_code
        ht = np.bincount(flat, minlength=hcps.n * T).reshape(hcps.n, T).astype(float)
        he = np.bincount(flat, weights=y, minlength=hcps.n * T).reshape(hcps.n, T)
        support = np.zeros((len(KINDS), N_SLOTS))
        kind = space.type_kind[touches.type_code]
        np.add.at(support, (kind, slot_of(touches.weekday, touches.hour)), 1.0)
        effects: dict[str, np.ndarray] = {}
        variances: dict[str, np.ndarray] = {}
        if touches.size == 0 or len(np.unique(y)) < 2:
            effects = {name: np.zeros(b.shape) for name, b in design.blocks.items()}
            p0 = float(y.mean()) if y.size else 0.05
            p0 = min(max(p0, 1e-3), 1 - 1e-3)
            return cls(space, float(np.log(p0 / (1 - p0))), effects, {}, support, rate,
                       np.where(ht > 0, he / np.maximum(ht, 1), np.nan), ht, int(y.size))
        X, scale = design.matrix(rows, hcps)
        coef, b0, d = ridge_logistic(X, y.astype(float), sample_weight, max_iter=max_iter)
        w = coef * scale
        raw = X @ sp.diags(1.0 / scale)
        info = np.asarray(raw.multiply(raw).T @ d).ravel()
        var = scale ** 2 / (1.0 + scale ** 2 * info)
        for name, b in design.blocks.items():
            effects[name] = w[b.offset:b.offset + b.size].reshape(b.shape)
            variances[name] = var[b.offset:b.offset + b.size].reshape(b.shape)
        return cls(space, b0, effects, variances, support, rate,
                   np.where(ht > 0, he / np.maximum(ht, 1), np.nan), ht, int(y.size))

    # ---------------------------------------------------------------- scoring
    def logit_rows(self, rows: Rows, hcps: Hcps) -> np.ndarray:
        """Logit of engagement for explicit (HCP, action, time) rows."""
        X, scale = Design(self.space).matrix(rows, hcps)
        w = np.concatenate([self.effects[name].ravel() for name in Design(self.space).blocks])
        return np.asarray(X @ (w / scale)).ravel() + self.intercept

    def sampled(self, rng: np.random.Generator) -> ResponseModel:
        """One Thompson draw: effects + N(0, posterior variance) (diagonal Laplace approximation)."""
        eff = {k: v + rng.standard_normal(v.shape) * np.sqrt(self.variances.get(k, np.zeros(v.shape)))
               for k, v in self.effects.items()}
        return ResponseModel(self.space, self.intercept, eff, self.variances, self.support,
                             self.channel_rate, self.hcp_rate, self.hcp_touches, self.n_train,
                             self.fallback)

    def allowed_slots(self, allowed_hour: Sequence[bool], min_share: float = 0.002,
                      min_count: float = 3.0) -> np.ndarray:
        """K x N_SLOTS: slots with logging support for the kind, outside quiet hours."""
        sup = self.support if self.support is not None else np.ones((len(KINDS), N_SLOTS))
        total = sup.sum(axis=1, keepdims=True)
        ok = (sup >= np.maximum(min_count, min_share * total)) & (total > 0)
        hours = np.tile(np.asarray(allowed_hour, dtype=bool), 7)
        ok &= hours[None, :]
        # a kind nobody was contacted through: any allowed weekday slot
        none = ~ok.any(axis=1)
        if none.any():
            wk = np.repeat(np.arange(7) < 5, 24) & hours
            ok[none] = wk[None, :]
        return ok


@dataclass
class ActionCodes:
    """Per-action codes of a catalogue, for grid scoring."""

    type_code: np.ndarray  # A
    kind: np.ndarray  # A
    attrs: dict[str, np.ndarray]  # attribute -> A codes (-1 none)


@dataclass
class Timing:
    """Best slot per HCP and kind: time effect (n x K) and slot (n x K, weekday*24+hour)."""

    effect: np.ndarray
    slot: np.ndarray


@dataclass
class TimeGroups:
    """Per kind: the (weekend, daypart) groups with an allowed slot, each group's best slot
    by the fixed time effects, and that slot's fixed effect."""

    groups: list[np.ndarray]  # per kind: group ids (weekend * N_DAYPARTS + daypart)
    best_slot: list[np.ndarray]  # per kind: slot (weekday * 24 + hour) per group
    fixed: list[np.ndarray]  # per kind: fixed effect per group


def time_groups(model: ResponseModel, allowed: np.ndarray) -> TimeGroups:
    e = model.effects
    wd = np.repeat(np.arange(7), 24)
    hr = np.tile(np.arange(24), 7)
    we = (wd >= 5).astype(np.int64)
    grp = we * N_DAYPARTS + DAYPART_OF_HOUR[hr]
    out = TimeGroups([], [], [])
    for k in range(len(KINDS)):
        fixed = np.where(allowed[k], e["time_wd"][k, wd] + e["time_hr"][k, we, hr], -np.inf)
        gs, slots, vals = [], [], []
        for g in range(2 * N_DAYPARTS):
            m = np.flatnonzero((grp == g) & np.isfinite(fixed))
            if m.size:
                j = int(m[np.argmax(fixed[m])])
                gs.append(g)
                slots.append(j)
                vals.append(float(fixed[j]))
        out.groups.append(np.asarray(gs, dtype=np.int64))
        out.best_slot.append(np.asarray(slots, dtype=np.int64))
        out.fixed.append(np.asarray(vals, dtype=float))
    return out


def best_timing(model: ResponseModel, hcps: Hcps, allowed: np.ndarray | TimeGroups,
                hix: np.ndarray | None = None) -> Timing:
    """Best local slot per HCP (rows ``hix``, default all) and kind of channel."""
    e = model.effects
    tg = allowed if isinstance(allowed, TimeGroups) else time_groups(model, allowed)
    hix = np.arange(hcps.n) if hix is None else np.asarray(hix)
    n = hix.size
    K = len(KINDS)
    eff = np.empty((n, K), dtype=np.float32)
    best = np.empty((n, K), dtype=np.int64)
    for k in range(K):
        ok = tg.groups[k]
        if ok.size == 0:
            eff[:, k] = 0.0
            best[:, k] = 2 * 24 + 12
            continue
        gw, gd = ok // N_DAYPARTS, ok % N_DAYPARTS
        tot = np.empty((n, ok.size), dtype=np.float32)
        tot[:] = tg.fixed[k].astype(np.float32)[None, :]
        tot += e["hcp_time"][hix][:, k, gd].astype(np.float32)
        if "seg_time" in e and hcps.segments is not None:
            st = e["seg_time"][:, k, gw, gd]  # G x groups
            tot += (hcps.segments[hix] @ st).astype(np.float32)
        arg = np.argmax(tot, axis=1)
        eff[:, k] = tot[np.arange(n), arg]
        best[:, k] = tg.best_slot[k][arg]
    return Timing(eff, best)


def base_logits(model: ResponseModel, hcps: Hcps, codes: ActionCodes,
                hix: np.ndarray | None = None) -> np.ndarray:
    """n x A logits of engagement without the time term (float32)."""
    e = model.effects
    hix = np.arange(hcps.n) if hix is None else np.asarray(hix)
    t = codes.type_code
    const = model.intercept + e["type"][t].astype(float)
    for a, c in codes.attrs.items():
        const = const + np.where(c >= 0, e[f"attr:{a}"][np.maximum(c, 0)], 0.0)
    dec, miss, kol = _hcp_feats(hcps, hix)
    out = np.empty((hix.size, t.size), dtype=np.float32)
    out[:] = const.astype(np.float32)[None, :]
    out += np.outer(dec, e["type_decile"][t]).astype(np.float32)
    out += np.outer(miss, e["type_dmiss"][t]).astype(np.float32)
    out += np.outer(kol, e["type_kol"][t]).astype(np.float32)
    out += (e["recent"][0] * hcps.contacts_30d[hix] / 5.0).astype(np.float32)[:, None]
    if "seg_type" in e and hcps.segments is not None:
        seg_a = e["seg_type"][:, t].copy()  # G x A
        for a in SEG_ATTRIBUTES:
            c = codes.attrs[a]
            seg_a += np.where(c >= 0, e[f"seg_attr:{a}"][:, np.maximum(c, 0)], 0.0)
        out += (hcps.segments[hix] @ seg_a).astype(np.float32)
    if "stage_type" in e:
        st = np.minimum(hcps.stage[hix], e["stage_type"].shape[0] - 1)
        out += e["stage_type"][st][:, t].astype(np.float32)
    out += e["hcp"][hix].astype(np.float32)[:, None]
    out += e["hcp_type"][hix][:, t].astype(np.float32)
    for a, c in codes.attrs.items():
        if (c >= 0).any():
            block = e[f"hcp_attr:{a}"]
            g = block[hix][:, np.maximum(c, 0)]
            out += np.where((c >= 0)[None, :], g, 0.0).astype(np.float32)
    return out


def engagement(model: ResponseModel, hcps: Hcps, codes: ActionCodes, timing: Timing,
               hix: np.ndarray | None = None) -> np.ndarray:
    """n x A probability of engagement at each HCP's best slot for the action's kind."""
    lg = base_logits(model, hcps, codes, hix)
    lg += timing.effect[:, codes.kind]
    p = sigmoid(lg).astype(np.float32)
    if model.fallback is not None:
        fb = model.fallback[codes.type_code]
        fixed = np.flatnonzero(np.isfinite(fb))
        if fixed.size:
            p[:, fixed] = fb[fixed].astype(np.float32)[None, :]
    return p


# ----------------------------------------------------------------- progression
@dataclass
class Progression:
    """delta[s, t]: extra probability of entering stage s+1 when an HCP in stage s engages."""

    delta: np.ndarray  # (S+1) x T
    stage_names: list[str]
    n: np.ndarray  # (S+1) x T x 2 touches (not engaged, engaged)

    @classmethod
    def empty(cls, n_types: int) -> Progression:
        return cls(np.zeros((1, n_types)), [], np.zeros((1, n_types, 2)))

    @classmethod
    def fit(cls, touches: Touches, hcps: Hcps, n_types: int, horizon_days: int,
            strength: float = 20.0) -> Progression:
        if hcps.stage_entry is None or not hcps.stage_names or touches.size == 0:
            return cls.empty(n_types)
        entry = hcps.stage_entry  # n x S
        S = entry.shape[1]
        e = entry[touches.hix]  # m x S
        ts = touches.ts.astype(float)
        # stages entered before the touch (entries are monotone); the touch itself may be
        # the event that enters the next stage (a completed visit entering "decision")
        cur = (e < ts[:, None]).sum(axis=1)
        has_next = cur < S
        nxt = np.where(has_next, e[np.arange(e.shape[0]), np.minimum(cur, S - 1)], np.inf)
        prog = has_next & (nxt >= ts) & (nxt <= ts + horizon_days * 86_400.0)
        ok = touches.trainable & has_next
        s_, t_, y_, r_ = cur[ok], touches.type_code[ok], prog[ok].astype(float), touches.reward[ok]
        cnt = np.zeros((S + 1, n_types, 2))
        hit = np.zeros((S + 1, n_types, 2))
        np.add.at(cnt, (s_, t_, r_), 1.0)
        np.add.at(hit, (s_, t_, r_), y_)
        base = (hit.sum(axis=(1, 2)) + 1.0) / (cnt.sum(axis=(1, 2)) + 2.0)  # per stage
        rate = (hit + strength * base[:, None, None]) / (cnt + strength)
        delta = np.maximum(0.0, rate[:, :, 1] - rate[:, :, 0])
        delta[S] = 0.0
        return cls(delta, list(hcps.stage_names), cnt)


# ---------------------------------------------------------------- logging policy
@dataclass
class LoggingPolicy:
    """Estimated propensities of the logged actions (when history does not record them)."""

    p_type: np.ndarray  # n x T
    content_keys: np.ndarray  # sorted keys (type, month, content) packed in int64
    content_p: np.ndarray  # P(content | type, month) per key
    p_slot: np.ndarray  # K x N_SLOTS
    type_kind: np.ndarray

    @staticmethod
    def _pack(t: np.ndarray, month: np.ndarray, content: np.ndarray) -> np.ndarray:
        return (t.astype(np.int64) << 40) + (month.astype(np.int64) << 20) + content.astype(np.int64)

    @classmethod
    def fit(cls, touches: Touches, n_hcps: int, type_kind: np.ndarray, strength: float = 5.0
            ) -> LoggingPolicy:
        T = type_kind.size
        flat = touches.hix * T + touches.type_code
        cnt = np.bincount(flat, minlength=n_hcps * T).reshape(n_hcps, T).astype(float)
        glob = (cnt.sum(axis=0) + 0.5) / (cnt.sum() + 0.5 * T)
        p_type = (cnt + strength * glob[None, :]) / (cnt.sum(axis=1, keepdims=True) + strength)
        month = touches.ts // (30 * 86_400)
        has = touches.content >= 0
        keys = cls._pack(touches.type_code[has], month[has], touches.content[has])
        uniq, counts = np.unique(keys, return_counts=True)
        group = uniq >> 20  # (type, month)
        g_uniq, g_inv = np.unique(group, return_inverse=True)
        g_tot = np.bincount(g_inv, weights=counts, minlength=g_uniq.size)
        content_p = counts / g_tot[g_inv]
        kind = type_kind[touches.type_code]
        slots = np.zeros((len(KINDS), N_SLOTS))
        np.add.at(slots, (kind, slot_of(touches.weekday, touches.hour)), 1.0)
        p_slot = slots / np.maximum(slots.sum(axis=1, keepdims=True), 1.0)
        return cls(p_type, uniq, content_p, p_slot, type_kind)

    def propensity(self, touches: Touches, level: str = "channel") -> np.ndarray:
        """P(logged action | context) at ``level``: channel, content (channel x content) or full
        (channel x content x slot). Recorded propensities win where present."""
        p = self.p_type[touches.hix, touches.type_code]
        if level in ("content", "full") and self.content_keys.size:
            month = touches.ts // (30 * 86_400)
            key = self._pack(touches.type_code, month, np.maximum(touches.content, 0))
            pos = np.minimum(np.searchsorted(self.content_keys, key), self.content_keys.size - 1)
            found = (self.content_keys[pos] == key) & (touches.content >= 0)
            p = p * np.where(found, self.content_p[pos], 1.0)
        if level == "full":
            p = p * self.p_slot[self.type_kind[touches.type_code],
                                slot_of(touches.weekday, touches.hour)]
        rec = touches.propensity
        return np.where(np.isfinite(rec) & (rec > 0), rec, p)
