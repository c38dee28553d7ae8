"""The true response model of the synthetic world.

An outbound touch (an email, a rep visit, a webinar invitation ...) succeeds with
probability ``sigmoid(logit)`` where the logit is additive:

    logit = channel_intercept[channel]
          + sum_s w_s * ( segment_intercept[s] + channel_pref[s, channel]
                          + theme_effect[s, theme] + tonality_effect[s, tonality]
                          + format_effect[s, format] + hour_fit[s, kind(channel), weekend, hour] )
          + decile_coef * (decile - 5.5)
          - fatigue * recent_contacts
          + person_offset[channel] + person_intercept

``w`` are the HCP's segment weights (one-hot for a pure member of a segment,
two non-zero weights for a mixture). ``recent_contacts`` counts the company's
outbound touches to the HCP (all channels) in the ``fatigue_window_days``
before the touch. ``hour`` is the HCP's local hour (timestamps in the data
are UTC; local = UTC + the standard-time offset of the HCP's state, no DST).

What "success" means per channel is :data:`ENGAGE_ACTION` (email opened given
delivered, rep visit completed rather than declined, webinar invitation
registered ...). The simulator draws every outbound outcome through
:meth:`ResponseModel.logit`, so the probabilities given here are exactly the
ones the data was generated with (up to the person-level random terms, which
are written to ``_truth/person_traits.csv``).

How distinct the segments are: segment recovery (issue 5) can only be as good as
what the data show of each HCP, about 35 company touches and a few dozen of its own
events a year. With segment channel preferences 0.5-2 logits apart and person
noise N(0, 0.45), even the true preference vectors classified only ~80% of people
(ARI 0.78) and the observed data ARI 0.37. The segments are therefore personas in
the strong sense the seeds describe (a rep-loyal traditionalist, an evening
digital reader, an early-morning evidence seeker): outbound channel preferences
2-5 logits apart, content (theme, tonality, format) effects up to about 1.5
logits, more marked hour profiles, person noise N(0, 0.15) on channels and on
the intercept. The intercepts and the overwhelmed fatigue are
re-calibrated so that the seeds' figures hold (65% prefer in-person, email opens
12-20%, responses fall with contact frequency).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcpjourney.contract.schemas import CONTENT_FORMATS
from hcpjourney.simulate.params import THEMES, TONALITIES

SEGMENTS: tuple[str, ...] = (
    "traditional_in_person",
    "digital_self_educator",
    "peer_influenced_congress",
    "overwhelmed_low_engagement",
    "evidence_driven_medical",
)
# Company-initiated channels whose response the model gives.
OUTBOUND_CHANNELS: tuple[str, ...] = (
    "f2f_visit", "remote_visit", "phone", "email", "sms", "webinar", "msl_meeting",
)
# Channels a person has a preference for (outbound + HCP-initiated ones).
PREF_CHANNELS: tuple[str, ...] = (*OUTBOUND_CHANNELS, "web", "portal", "congress")
ENGAGE_ACTION: dict[str, str] = {
    "f2f_visit": "completed",
    "remote_visit": "completed",
    "phone": "completed",
    "email": "opened",
    "sms": "clicked",
    "webinar": "registered",
    "msl_meeting": "completed",
}
CHANNEL_KIND: dict[str, str] = {
    "f2f_visit": "personal",
    "remote_visit": "personal",
    "phone": "personal",
    "email": "digital",
    "sms": "digital",
    "webinar": "digital",
    "msl_meeting": "personal",
    "web": "digital",
    "portal": "digital",
    "congress": "personal",
}
KINDS: tuple[str, ...] = ("digital", "personal")

_DIGITAL_WEEKDAY = (
    0.15, 0.08, 0.05, 0.04, 0.05, 0.15, 0.45, 0.9, 1.0, 0.8, 0.7, 0.75,
    1.1, 0.95, 0.7, 0.7, 0.9, 2.2, 2.6, 2.4, 1.6, 1.1, 0.6, 0.3,
)
_DIGITAL_WEEKEND = (
    0.15, 0.08, 0.05, 0.04, 0.04, 0.08, 0.2, 0.5, 0.9, 1.1, 1.3, 1.3,
    1.1, 1.0, 0.9, 0.9, 1.0, 1.1, 1.2, 1.3, 1.2, 0.9, 0.5, 0.3,
)
_PERSONAL_WEEKDAY = (
    0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.3, 1.0, 1.1, 1.0, 1.1,
    1.5, 1.2, 0.9, 0.9, 1.0, 0.6, 0.2, 0.05, 0.02, 0.02, 0.02, 0.02,
)
_PERSONAL_WEEKEND = tuple(0.05 for _ in range(24))

# Per-segment multiplicative tweaks of the base hour profiles {hour: factor}.
_DIGITAL_TWEAKS: tuple[dict[int, float], ...] = (
    {12: 2.0, 13: 1.7, 17: 0.6, 18: 0.6, 19: 0.6},  # traditional: lunch break reader
    {17: 1.4, 18: 1.5, 19: 1.5, 21: 2.2, 22: 2.6},  # digital: evenings
    {},  # peer-influenced
    {8: 0.5, 12: 0.5, 20: 1.4, 21: 2.0},  # overwhelmed: late catch-up
    {6: 4.8, 7: 2.2, 17: 1.1, 18: 1.1},  # evidence: early mornings
)
_PERSONAL_TWEAKS: tuple[dict[int, float], ...] = (
    {12: 1.7, 13: 1.4},  # lunch-and-learn
    {16: 1.4, 17: 2.2},
    {},
    {8: 0.4, 9: 0.5, 16: 1.4},
    {7: 4.0, 8: 1.7},
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _hour_profiles(
    base_weekday: Sequence[float],
    base_weekend: Sequence[float],
    tweaks: Sequence[dict[int, float]],
) -> list[list[list[float]]]:
    out = []
    for tw in tweaks:
        wd = [v * tw.get(h, 1.0) for h, v in enumerate(base_weekday)]
        we = [v * tw.get(h, 1.0) for h, v in enumerate(base_weekend)]
        out.append([wd, we])
    return out


def calibrate_top_f2f(pref: np.ndarray, top_f2f: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """New f2f_visit column of ``pref`` (n x PREF_CHANNELS) so that f2f_visit is the single
    most preferred channel exactly where ``top_f2f`` is true (by ``margin`` logits)."""
    f2f = PREF_CHANNELS.index("f2f_visit")
    best_other = np.delete(pref, f2f, axis=1).max(axis=1)
    return np.where(top_f2f, np.maximum(pref[:, f2f], best_other + margin),
                    np.minimum(pref[:, f2f], best_other - margin))


def _mean_person_offsets(p: dict[str, Any], draws: int = 40000) -> list[list[float]]:
    """Average person offset per segment and channel implied by the top-f2f calibration.

    Person offsets are N(0, person_channel_sd) noise, except that f2f_visit is moved
    to make it (or stop it being) the person's top channel; the mean of that move is
    what a typical member of a pure segment carries. Fixed random stream: deterministic.
    """
    rng = np.random.default_rng(20250101)
    cp = np.asarray(p["channel_pref"], dtype=float)
    f2f = PREF_CHANNELS.index("f2f_visit")
    out = np.zeros_like(cp)
    for s in range(cp.shape[0]):
        z = rng.normal(0.0, p["person_channel_sd"], (draws, cp.shape[1]))
        pref = cp[s] + z
        top = rng.random(draws) < p["top_f2f_prob"][s]
        lo, hi = p["top_f2f_margin"]
        margin = rng.uniform(float(lo), float(hi), draws)
        out[s, f2f] = float(np.mean(calibrate_top_f2f(pref, top, margin) - pref[:, f2f]))
    return np.round(out, 4).tolist()


def _default_params() -> dict[str, Any]:
    p = _base_params()
    p["mean_person_offset"] = _mean_person_offsets(p)
    return p


def _base_params() -> dict[str, Any]:
    return {
        "segments": list(SEGMENTS),
        "segment_shares": [0.32, 0.20, 0.16, 0.17, 0.15],
        # 15% of people are blends of two segments, "mostly X with some Y": the primary
        # segment's weight is uniform in 60-80% (a 50/50 person would have no primary
        # segment to recover; blends drawn 50-70% did, and capped segment recovery)
        "mixed_share": 0.15,
        "mixed_primary_weight": [0.6, 0.8],
        "channels": list(PREF_CHANNELS),
        "themes": list(THEMES),
        "tonalities": list(TONALITIES),
        "formats": list(CONTENT_FORMATS),
        # outbound: logit of success; inbound (web, portal): log of yearly visits;
        # congress: logit of attending one congress
        "channel_intercept": {
            "f2f_visit": -0.3, "remote_visit": 0.35, "phone": 0.05, "email": -2.6,
            "sms": -2.0, "webinar": -1.7, "msl_meeting": 1.35,
            "web": 2.2, "portal": 1.1, "congress": -2.6,
        },
        "segment_intercept": [0.0, 0.1, 0.1, -0.5, 0.0],
        # segment x channel (PREF_CHANNELS order: f2f_visit, remote_visit, phone, email, sms,
        # webinar, msl_meeting | web, portal, congress). Outbound columns differ by 2-5
        # logits between segments, HCP-initiated ones (which also set visit volumes) by
        # about 2-3: see the module docstring for why the segments are this distinct.
        "channel_pref": [
            [3.3, -1.2, 1.7, -1.0, -1.0, -2.0, -1.1, -1.2, -1.2, -0.5],
            [-1.5, 1.8, -1.3, 2.1, 1.4, 1.9, -0.8, 1.8, 1.5, -0.5],
            [2.2, 1.0, -0.4, 0.6, 0.2, 2.5, 1.8, 0.0, 0.0, 2.0],
            [0.0, -0.9, -0.7, -1.9, -1.3, -2.6, -2.0, -0.8, -1.1, -1.3],
            [3.0, 0.3, -0.7, 0.9, -1.0, 1.0, 3.7, 0.7, 1.2, 0.6],
        ],
        # segment x theme (efficacy, safety, access, dosing, patient_support, disease_awareness)
        "theme_effect": [
            [0.4, 0.3, 0.5, 0.5, -0.2, -0.7],
            [0.4, 0.0, -0.1, 0.2, 0.7, 0.8],
            [0.1, -0.3, -0.4, -0.4, 0.7, 0.5],
            [-0.8, -0.3, 1.1, 0.5, 0.7, -1.0],
            [1.3, 1.2, -1.0, 0.2, -1.1, 0.2],
        ],
        # segment x tonality (clinical, empathetic, promotional, conversational)
        "tonality_effect": [
            [0.3, -0.2, 1.0, 0.2],
            [0.3, 0.1, -0.5, 0.5],
            [-0.3, 0.7, 0.1, 0.8],
            [-0.9, 1.0, -0.8, 0.2],
            [1.5, -0.8, -1.4, -1.0],
        ],
        # segment x format (CONTENT_FORMATS order: article, video, podcast, detail_aid,
        # infographic, slide_deck, email_template, webinar_recording)
        "format_effect": [
            [-0.4, -0.8, -1.1, 1.2, 0.3, 0.3, 0.0, -1.0],
            [0.5, 1.0, 0.7, -0.9, 0.6, -0.3, 0.0, 0.8],
            [-0.1, 0.7, 0.7, -0.3, -0.3, 0.3, 0.0, 1.1],
            [-1.3, 0.1, 0.4, 0.0, 1.2, -1.2, 0.0, -1.0],
            [1.4, -0.5, -0.2, 0.0, -0.9, 1.2, 0.0, 0.5],
        ],
        # hour profiles: kind -> segment -> [weekday, weekend] -> 24 relative intensities
        "hour_profile": {
            "digital": _hour_profiles(_DIGITAL_WEEKDAY, _DIGITAL_WEEKEND, _DIGITAL_TWEAKS),
            "personal": _hour_profiles(_PERSONAL_WEEKDAY, _PERSONAL_WEEKEND, _PERSONAL_TWEAKS),
        },
        "hour_coef": {"digital": 0.5, "personal": 0.6},
        "hour_fit_clip": [-2.5, 0.8],
        "decile_coef": 0.04,
        "fatigue_window_days": 30,
        # probability a member of each segment feels overwhelmed, and the per-contact
        # logit penalty (mean of a gamma distribution) for overwhelmed / other people
        # (0.08 for the others since the 60-80% blends: at 0.06 the fall of rep-visit
        # completion with recent contacts was within noise)
        "overwhelmed_prob": [0.56, 0.46, 0.52, 0.95, 0.47],
        "fatigue_overwhelmed": 0.25,
        "fatigue_other": 0.08,
        "fatigue_shape": 4.0,
        # probability that a member's single most preferred channel is f2f_visit
        "top_f2f_prob": [0.97, 0.05, 0.55, 0.90, 0.55],
        "top_f2f_margin": [0.05, 0.5],
        "person_intercept_sd": 0.15,
        "person_channel_sd": 0.15,
        # monthly hazard of a first cardiozen prescription (prescribers with a CRM or
        # Open Payments record): logit = intercept + decile_coef*(decile-5.5) + cardio_coef*
        # cardiology + W.segment_effect + 0.5*person_intercept + touch_coef*log1p(decision-
        # stage touches so far) + decision_coef*[in decision stage, within the conversion
        # window] + consideration_coef*[in consideration stage]
        "adoption": {
            "intercept": -5.6, "decile_coef": 0.22, "cardio_coef": 0.6, "touch_coef": 0.3,
            "decision_coef": 2.4, "consideration_coef": 0.5,
            "segment_effect": [0.2, 0.0, 0.1, -0.4, 0.1],
        },
        # follow-on steps
        "click_given_open": {"intercept": -1.85, "content_fit_coef": 1.0},
        "webinar_attend_given_registered": {
            "intercept": 0.2, "overwhelmed_coef": -0.6, "pref_coef": 0.4,
        },
    }


@dataclass(frozen=True)
class ResponseModel:
    """Parameters of the true response model, with vectorised probabilities."""

    params: dict[str, Any] = field(default_factory=_default_params)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def default(cls) -> ResponseModel:
        return cls(_default_params())

    @classmethod
    def from_json(cls, path: str | Path) -> ResponseModel:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data.get("params", data))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["description"] = (__doc__ or "").strip()
        d["engage_action"] = dict(ENGAGE_ACTION)
        d["channel_kind"] = dict(CHANNEL_KIND)
        return d

    # ---- vocabularies -------------------------------------------------------------
    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.params["segments"])

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.params["channels"])

    def _arr(self, key: str) -> np.ndarray:
        return np.asarray(self.params[key], dtype=float)

    def channel_pref(self) -> np.ndarray:
        """segment x channel preference matrix (PREF_CHANNELS order)."""
        return self._arr("channel_pref")

    def intercepts(self) -> np.ndarray:
        ci = self.params["channel_intercept"]
        return np.array([ci[c] for c in self.channels], dtype=float)

    def hour_fit_table(self) -> np.ndarray:
        """kind x segment x weekend(0/1) x hour -> additive logit term."""
        lo, hi = self.params["hour_fit_clip"]
        out = np.zeros((len(KINDS), len(self.segments), 2, 24))
        for k, kind in enumerate(KINDS):
            prof = np.asarray(self.params["hour_profile"][kind], dtype=float)  # S x 2 x 24
            mean = prof[:, 0, :].mean(axis=1)[:, None, None]
            out[k] = self.params["hour_coef"][kind] * np.clip(np.log(prof / mean), lo, hi)
        return out

    def kind_codes(self) -> np.ndarray:
        return np.array([KINDS.index(CHANNEL_KIND[c]) for c in self.channels], dtype=np.int64)

    def mean_fatigue(self) -> np.ndarray:
        p = self._arr("overwhelmed_prob")
        return p * self.params["fatigue_overwhelmed"] + (1 - p) * self.params["fatigue_other"]

    # ---- the model ----------------------------------------------------------------
    def logit_codes(
        self,
        weights: np.ndarray,
        channel: np.ndarray,
        theme: np.ndarray | None = None,
        tonality: np.ndarray | None = None,
        fmt: np.ndarray | None = None,
        hour: np.ndarray | None = None,
        weekend: np.ndarray | None = None,
        recent_contacts: np.ndarray | float = 0.0,
        decile: np.ndarray | float | None = None,
        fatigue: np.ndarray | float | None = None,
        person_offset: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Logit of success with every categorical input given as integer codes.

        ``weights`` is (k, S); the other arrays have length k (or broadcast).
        A code of -1 (or ``None`` for the whole argument) means "no effect".
        ``person_offset`` (the person's channel offset plus intercept, as written to
        ``person_traits.csv``) defaults to the segment's average person offset.
        """
        w = np.atleast_2d(np.asarray(weights, dtype=float))
        ch = np.asarray(channel, dtype=np.int64)
        k = max(w.shape[0], ch.size)
        w = np.broadcast_to(w, (k, w.shape[1]))
        ch = np.broadcast_to(ch, (k,))
        out = self.intercepts()[ch].copy()
        seg_part = self.channel_pref()[:, ch].T + self._arr("segment_intercept")[None, :]
        for codes, key in ((theme, "theme_effect"), (tonality, "tonality_effect"),
                           (fmt, "format_effect")):
            if codes is None:
                continue
            c = np.broadcast_to(np.asarray(codes, dtype=np.int64), (k,))
            table = self._arr(key)  # S x V
            eff = table[:, np.maximum(c, 0)].T  # k x S
            seg_part = seg_part + np.where((c >= 0)[:, None], eff, 0.0)
        if hour is not None:
            h = np.broadcast_to(np.asarray(hour, dtype=np.int64), (k,))
            we = (np.zeros(k, dtype=np.int64) if weekend is None
                  else np.broadcast_to(np.asarray(weekend, dtype=np.int64), (k,)))
            kinds = self.kind_codes()[ch]
            hf = self.hour_fit_table()  # kinds x S x 2 x 24
            eff = hf[kinds, :, we, np.maximum(h, 0)]  # k x S
            seg_part = seg_part + np.where((h >= 0)[:, None], eff, 0.0)
        out = out + (w * seg_part).sum(axis=1)
        if decile is not None:
            out = out + self.params["decile_coef"] * (np.asarray(decile, dtype=float) - 5.5)
        fat = (w @ self.mean_fatigue()) if fatigue is None else np.asarray(fatigue, dtype=float)
        out = out - fat * np.asarray(recent_contacts, dtype=float)
        if person_offset is None:
            mo = np.asarray(self.params.get("mean_person_offset", np.zeros((w.shape[1], 1))))
            person_offset = (w * mo[:, ch].T).sum(axis=1) if mo.shape[1] > 1 else 0.0
        out = out + np.asarray(person_offset, dtype=float)
        return np.asarray(out, dtype=float)

    def weights_of(self, segment: str | Sequence[str] | np.ndarray | dict[str, float]) -> np.ndarray:
        """Segment weights (k, S) from a name, a list of names, a dict or an array."""
        segs = self.segments
        if isinstance(segment, str):
            w = np.zeros((1, len(segs)))
            w[0, segs.index(segment)] = 1.0
            return w
        if isinstance(segment, dict):
            w = np.zeros((1, len(segs)))
            for name, v in segment.items():
                w[0, segs.index(name)] = float(v)
            return w
        arr = np.asarray(segment)
        if arr.dtype.kind in "USO":
            names = [str(x) for x in arr.ravel()]
            w = np.zeros((len(names), len(segs)))
            w[np.arange(len(names)), [segs.index(n) for n in names]] = 1.0
            return w
        return np.atleast_2d(arr.astype(float))

    def probability(
        self,
        segment: str | Sequence[str] | np.ndarray | dict[str, float],
        channel: str | Sequence[str] | np.ndarray,
        theme: str | Sequence[str | None] | np.ndarray | None = None,
        tonality: str | Sequence[str | None] | np.ndarray | None = None,
        format: str | Sequence[str | None] | np.ndarray | None = None,
        hour: int | Sequence[int] | np.ndarray | None = None,
        recent_contacts: float | Sequence[float] | np.ndarray = 0.0,
        *,
        weekday: int | Sequence[int] | np.ndarray | None = None,
        decile: float | Sequence[float] | np.ndarray | None = None,
        fatigue: float | Sequence[float] | np.ndarray | None = None,
        person_offset: float | Sequence[float] | np.ndarray | None = None,
    ) -> np.ndarray:
        """True success probability (see :data:`ENGAGE_ACTION`) for named inputs.

        Every argument may be a scalar or a sequence (broadcast together).
        ``hour`` is the HCP's local hour 0..23 and ``weekday`` 0=Monday..6=Sunday;
        ``fatigue`` defaults to the segment's mean fatigue; ``decile`` to the middle;
        ``person_offset`` to the segment's average (a typical member of the segment).
        """
        w = self.weights_of(segment)
        ch = _codes(channel, self.channels, strict=True)
        if np.any(np.isin(ch, [self.channels.index(c) for c in ("web", "portal", "congress")])):
            raise ValueError("probabilities are defined for outbound channels only: "
                             + ", ".join(OUTBOUND_CHANNELS))
        th = None if theme is None else _codes(theme, tuple(self.params["themes"]))
        tn = None if tonality is None else _codes(tonality, tuple(self.params["tonalities"]))
        fm = None if format is None else _codes(format, tuple(self.params["formats"]))
        hr = None if hour is None else np.asarray(hour, dtype=np.int64) % 24
        we = None if weekday is None else (np.asarray(weekday, dtype=np.int64) % 7 >= 5)
        arrays = [a for a in (ch, th, tn, fm, hr, we) if a is not None]
        k = max([w.shape[0]] + [np.asarray(a).size for a in arrays]
                + [np.asarray(recent_contacts).size])
        lg = self.logit_codes(
            w, np.broadcast_to(ch, (k,)), th, tn, fm, hr, we,
            np.asarray(recent_contacts, dtype=float),
            None if decile is None else np.asarray(decile, dtype=float),
            None if fatigue is None else np.asarray(fatigue, dtype=float),
            None if person_offset is None else np.asarray(person_offset, dtype=float),
        )
        return _sigmoid(lg)

    # ---- follow-on steps ------------------------------------------------------------
    def click_probability(self, content_fit: np.ndarray) -> np.ndarray:
        p = self.params["click_given_open"]
        return _sigmoid(p["intercept"] + p["content_fit_coef"] * np.asarray(content_fit))

    def attend_probability(self, overwhelmed: np.ndarray, pref_offset: np.ndarray) -> np.ndarray:
        p = self.params["webinar_attend_given_registered"]
        return _sigmoid(p["intercept"] + p["overwhelmed_coef"] * np.asarray(overwhelmed, float)
                        + p["pref_coef"] * np.asarray(pref_offset, float))


def _codes(values: Any, vocab: tuple[str, ...], strict: bool = False) -> np.ndarray:
    if isinstance(values, str) or values is None:
        values = [values]
    arr = np.asarray(values, dtype=object).ravel()
    out = np.empty(arr.size, dtype=np.int64)
    for i, v in enumerate(arr):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            if strict:
                raise ValueError("a value is required")
            out[i] = -1
        elif isinstance(v, int | np.integer):
            out[i] = int(v)
        elif str(v) in vocab:
            out[i] = vocab.index(str(v))
        elif strict:
            raise ValueError(f"unknown value {v!r}; expected one of {', '.join(vocab)}")
        else:
            out[i] = -1
    return out


DEFAULT_MODEL = ResponseModel.default()


def true_engagement_probability(
    segment: str | Sequence[str] | np.ndarray | dict[str, float],
    channel: str | Sequence[str] | np.ndarray,
    theme: str | Sequence[str | None] | np.ndarray | None = None,
    tonality: str | Sequence[str | None] | np.ndarray | None = None,
    format: str | Sequence[str | None] | np.ndarray | None = None,
    hour: int | Sequence[int] | np.ndarray | None = None,
    recent_contacts: float | Sequence[float] | np.ndarray = 0.0,
    *,
    weekday: int | Sequence[int] | np.ndarray | None = None,
    decile: float | Sequence[float] | np.ndarray | None = None,
    fatigue: float | Sequence[float] | np.ndarray | None = None,
    model: ResponseModel | None = None,
) -> float | np.ndarray:
    """TRUE probability that an HCP of ``segment`` engages with an outbound touch.

    ``segment`` is a segment name, a ``{segment: weight}`` mixture, or arrays of
    either; ``channel`` one of :data:`OUTBOUND_CHANNELS`; engagement means the
    action in :data:`ENGAGE_ACTION` (email opened, visit completed, webinar
    registered ...). ``hour`` is local time, ``recent_contacts`` the number of
    outbound touches in the previous 30 days. Returns a float for scalar inputs.
    Pass ``model=ResponseModel.from_json(drop / "_truth/response_model.json")``
    to evaluate against a drop's written parameters.
    """
    m = model or DEFAULT_MODEL
    p = m.probability(segment, channel, theme, tonality, format, hour, recent_contacts,
                      weekday=weekday, decile=decile, fatigue=fatigue)
    scalar = all(
        a is None or np.isscalar(a) or isinstance(a, dict | str)
        for a in (segment, channel, theme, tonality, format, hour, recent_contacts,
                  weekday, decile, fatigue)
    )
    return float(p[0]) if scalar and p.size == 1 else p
