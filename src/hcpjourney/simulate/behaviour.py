"""Touchpoints, journey progression, prescribing, consents and feedback for one chunk.

Everything is vectorised over events with numpy; Python loops run only over
channels, months and stages, never over events.

Conventions: timestamps are UTC epoch seconds; a person's local time is UTC plus
the standard-time offset of their state (no daylight saving). ``direction`` is
the direction of the touchpoint as a whole: every row of a company-initiated
touch (email sent/opened/clicked, webinar invitation/registration/attendance,
visits, samples, payments) is ``outbound``; HCP-initiated ones (web, portal,
social, medical inquiries, congress attendance) are ``inbound``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hcpjourney.contract.schemas import (
    ACTIONS,
    CHANNELS,
    DIRECTIONS,
    QUALITY_DIMENSIONS,
    TEAMS,
)
from hcpjourney.simulate import params as P
from hcpjourney.simulate.population import (
    CH,
    SRC_CRM,
    SRC_EVENTS,
    SRC_OP,
    SRC_SURVEY,
    SRC_WEB,
    People,
    Records,
)
from hcpjourney.simulate.response import KINDS, ResponseModel
from hcpjourney.simulate.world import DAY, World

CHN = {c: i for i, c in enumerate(CHANNELS)}
ACT = {a: i for i, a in enumerate(ACTIONS)}
TEAM = {t: i for i, t in enumerate(TEAMS)}
DIR = {d: i for i, d in enumerate(DIRECTIONS)}
OUT, INB = DIR["outbound"], DIR["inbound"]
COMM, MED, MA = TEAM["commercial"], TEAM["medical"], TEAM["market_access"]
CONSENT_SOURCES: tuple[str, ...] = (
    "crm", "web_form", "event_registration", "email_unsubscribe", "preference_center",
)

# Overall volume calibration: with events_per_hcp=100 the mean number of
# interaction rows per person is about 100.
VOLUME_CAL = 1.75

FIELDS = ("pidx", "ts", "channel", "action", "src", "direction", "team", "owner", "content",
          "campaign", "duration", "value", "topic")
_INT_FIELDS = {"pidx": np.int64, "ts": np.int64, "channel": np.int8, "action": np.int8,
               "src": np.int8, "direction": np.int8, "team": np.int8, "owner": np.int32,
               "content": np.int32, "campaign": np.int32, "topic": np.int32}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class EventBuffer:
    """Collects interaction rows as column arrays."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, pidx: np.ndarray, ts: np.ndarray, channel: str, action: str | np.ndarray,
            src: int | np.ndarray, direction: int, *, team: int | np.ndarray = -1,
            owner: int | np.ndarray = -1, content: int | np.ndarray = -1,
            campaign: int | np.ndarray = -1, duration: float | np.ndarray = np.nan,
            value: float | np.ndarray = np.nan, topic: int | np.ndarray = -1) -> None:
        k = int(np.asarray(pidx).size)
        if k == 0:
            return
        act = ACT[action] if isinstance(action, str) else action
        vals: dict[str, Any] = dict(pidx=pidx, ts=ts, channel=CHN[channel], action=act, src=src,
                                    direction=direction, team=team, owner=owner,
                                    content=content, campaign=campaign, duration=duration,
                                    value=value, topic=topic)
        part = {}
        for f in FIELDS:
            dt = _INT_FIELDS.get(f, np.float64)
            part[f] = np.broadcast_to(np.asarray(vals[f]).astype(dt, copy=False), (k,))
        self.parts.append(part)

    def concat(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return {f: np.zeros(0, dtype=_INT_FIELDS.get(f, np.float64)) for f in FIELDS}
        return {f: np.concatenate([p[f] for p in self.parts]) for f in FIELDS}


@dataclass
class ChunkResult:
    events: dict[str, np.ndarray]  # sorted by person, ts; plus "event_no" (0..k-1)
    stage_entry: np.ndarray  # n x n_stages epoch seconds, -1 when not entered
    adoption_slot: np.ndarray  # n, -1 when not adopted
    outcomes: dict[str, np.ndarray]
    consents: dict[str, np.ndarray]
    feedback: dict[str, Any]
    stats: dict[str, float] = field(default_factory=dict)


class ChunkSimulator:
    def __init__(self, rng: np.random.Generator, world: World, model: ResponseModel,
                 people: People, recs: Records, stages: list[dict[str, Any]],
                 window_days: int | None) -> None:
        self.rng = rng
        self.window_days = window_days
        self.world = world
        self.win = world.window
        self.model = model
        self.pp = people
        self.recs = recs
        self.stages = stages
        self.n = people.n
        self.vol = world.volume * VOLUME_CAL
        self.scale = self.win.n_days / 365.0
        prm = model.params
        self.prm = prm
        self.seg_int = people.W @ np.asarray(prm["segment_intercept"], dtype=float)
        self.base_eng = self.seg_int + people.intercept
        self.has = people.has
        self.content = world.content
        # hour sampling tables
        self.hour_cdf: dict[str, np.ndarray] = {}
        for kind in KINDS:
            prof = np.asarray(prm["hour_profile"][kind], dtype=float)  # S x 2 x 24
            self.hour_cdf[kind] = np.cumsum(prof / prof.sum(axis=2, keepdims=True), axis=2)
        base = np.asarray(prm["hour_profile"]["personal"], dtype=float)[2, 0]
        self.office_cdf = np.cumsum(base / base.sum())
        nd = self.win.n_days
        days = np.arange(nd)
        wk = self.win.weekday_of_day(days)
        self.workdays = days[(wk < 5) & (days >= 1)]
        if self.workdays.size == 0:  # pragma: no cover - windows are >= 28 days
            self.workdays = days[days >= 1]
        dw = np.where(wk < 5, 1.0, 0.45)
        dw[0] = 0.0
        self.digital_day_cdf = np.cumsum(dw / dw.sum())
        theme_eff = np.asarray(prm["theme_effect"], dtype=float)
        tone_eff = np.asarray(prm["tonality_effect"], dtype=float)
        fmt_eff = np.asarray(prm["format_effect"], dtype=float)
        c = self.content
        # person x content fit (content effects of the person's segment mix)
        self.fit = people.W @ (theme_eff[:, c.theme] + tone_eff[:, c.tone] + fmt_eff[:, c.fmt])
        self.theme_fit = people.W @ theme_eff[:, c.theme]
        self.buf = EventBuffer()
        self.stats: dict[str, float] = {}

    # ---- sampling helpers --------------------------------------------------------------
    def _seg_draw(self, pidx: np.ndarray) -> np.ndarray:
        cw = np.cumsum(self.pp.W[pidx], axis=1)
        u = self.rng.random(pidx.size)
        return np.minimum((u[:, None] > cw).sum(axis=1), cw.shape[1] - 1)

    def _hour(self, pidx: np.ndarray, weekend: np.ndarray, kind: str) -> np.ndarray:
        seg = self._seg_draw(pidx)
        cdf = self.hour_cdf[kind][seg, weekend.astype(np.int64)]
        u = self.rng.random(pidx.size)
        return np.minimum((u[:, None] > cdf).sum(axis=1), 23)

    def _office_hour(self, k: int) -> np.ndarray:
        u = self.rng.random(k)
        return np.minimum(np.searchsorted(self.office_cdf, u, side="right"), 23)

    def _utc(self, pidx: np.ndarray, day: np.ndarray, sec: np.ndarray) -> np.ndarray:
        return (self.win.t0 + day.astype(np.int64) * DAY + sec.astype(np.int64)
                - self.pp.tz[pidx] * 3600)

    def _local(self, pidx: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray, np.ndarray]:
        rel = ts - self.win.t0 + self.pp.tz[pidx] * 3600
        day = rel // DAY
        sec = rel % DAY
        weekend = self.win.weekday_of_day(day) >= 5
        return day, sec, sec // 3600, weekend

    def _repeat(self, rate: np.ndarray) -> np.ndarray:
        k = self.rng.poisson(np.maximum(rate, 0.0))
        return np.repeat(np.arange(self.n), k)

    def _workday_ts(self, pidx: np.ndarray) -> np.ndarray:
        day = self.workdays[self.rng.integers(0, self.workdays.size, pidx.size)]
        sec = self._office_hour(pidx.size) * 3600 + self.rng.integers(0, 3600, pidx.size)
        return self._utc(pidx, day, sec)

    def _digital_ts(self, pidx: np.ndarray) -> np.ndarray:
        day = np.searchsorted(self.digital_day_cdf, self.rng.random(pidx.size), side="right")
        day = np.minimum(day, self.win.n_days - 1)
        weekend = self.win.weekday_of_day(day) >= 5
        hour = self._hour(pidx, weekend, "digital")
        return self._utc(pidx, day, hour * 3600 + self.rng.integers(0, 3600, pidx.size))

    def _next_consumption(self, pidx: np.ndarray, after: np.ndarray) -> np.ndarray:
        """When a person next reads something sent at ``after`` (digital hour profile)."""
        day, sec, _h, _we = self._local(pidx, after)
        k = self.rng.choice(np.array([0, 1, 2, 3, 5]), size=pidx.size,
                            p=[0.55, 0.25, 0.1, 0.06, 0.04])
        d2 = day + k
        weekend = self.win.weekday_of_day(d2) >= 5
        hour = self._hour(pidx, weekend, "digital")
        cand = d2 * DAY + hour * 3600 + self.rng.integers(0, 3600, pidx.size)
        cand = np.where(cand <= day * DAY + sec + 60, cand + DAY, cand)
        return self.win.t0 + cand - self.pp.tz[pidx] * 3600

    def _pick_pref(self, group: str, pidx: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Content chosen by the HCP: Gumbel-max over the valid items' fit."""
        table, counts = self.content.groups[group]
        slot = self.win.slot_of(ts)
        out = np.full(pidx.size, -1, dtype=np.int64)
        for s in np.unique(slot):
            m = np.flatnonzero(slot == s)
            items = table[s, : counts[s]]
            score = 1.5 * self.fit[pidx[m]][:, items] + self.rng.gumbel(size=(m.size, items.size))
            out[m] = items[score.argmax(axis=1)]
        return out

    def _pick_company(self, group: str, ts: np.ndarray) -> np.ndarray:
        table, counts = self.content.groups[group]
        slot = self.win.slot_of(ts)
        k = (self.rng.random(ts.size) * counts[slot]).astype(np.int64)
        return table[slot, k]

    def _topic_of(self, content: np.ndarray) -> np.ndarray:
        names = [P.TOPIC_BY_THEME[P.THEMES[int(t)]] for t in self.content.theme]
        codes = np.array([self.world.topic_code(x) for x in names], dtype=np.int64)
        return np.where(content >= 0, codes[np.maximum(content, 0)], -1)

    # ---- consents ----------------------------------------------------------------------
    def decide_consents(self) -> None:
        rng, n, pp = self.rng, self.n, self.pp
        crm = self.has[:, SRC_CRM]
        ow = pp.overwhelmed
        self.email_out_start = crm & (rng.random(n) < np.where(ow, 0.12, 0.05))
        later = crm & ~self.email_out_start & (rng.random(n) < np.where(ow, 0.09, 0.03))
        tau = self.win.t0 + rng.integers(15 * DAY, max(16 * DAY, self.win.t1 - self.win.t0 - DAY),
                                         n)
        self.email_tau = np.where(later, tau, self.win.t1 + 1)
        self.email_until = np.where(self.email_out_start, self.win.t0, self.email_tau)
        self.sms_in = crm & (rng.random(n) < 0.4)
        self.sms_out = crm & ~self.sms_in & (rng.random(n) < 0.1)
        self.f2f_out = crm & (rng.random(n) < 0.03)
        self.phone_out = crm & (rng.random(n) < 0.05)
        self.remote_out = crm & (rng.random(n) < 0.02)
        self.med_email_in = crm & (rng.random(n) < 0.7)
        u = rng.random(n)
        self.msl_in = crm & (u < 0.6)
        self.msl_out = crm & (u > 0.97)

    def consent_rows(self) -> dict[str, np.ndarray]:
        rng, t0 = self.rng, self.win.t0
        rows: dict[str, list[np.ndarray]] = {k: [] for k in
                                             ("rec", "channel", "status", "ts", "purpose", "source")}

        def add(mask: np.ndarray, src: int, channel: str, status: int, purpose: int,
                ts: np.ndarray, source: int) -> None:
            idx = np.flatnonzero(mask)
            if idx.size == 0:
                return
            rows["rec"].append(self.recs.of[src, idx])
            rows["channel"].append(np.full(idx.size, CHN[channel], np.int64))
            rows["status"].append(np.full(idx.size, status, np.int64))
            rows["purpose"].append(np.full(idx.size, purpose, np.int64))
            rows["ts"].append(np.asarray(ts)[idx] if np.ndim(ts) else np.full(idx.size, ts))
            rows["source"].append(np.full(idx.size, source, np.int64))

        n = self.n
        crm = self.has[:, SRC_CRM]
        init = t0 + rng.integers(0, 6 * 3600, n)
        opt_in, opt_out = 0, 1  # CONSENT_STATUSES order
        promo, med = 0, 1  # CONSENT_PURPOSES order
        s_crm, s_web, s_evt, s_unsub, s_pref = range(5)  # CONSENT_SOURCES order
        add(crm & ~self.email_out_start, SRC_CRM, "email", opt_in, promo, init, s_crm)
        add(self.email_out_start, SRC_CRM, "email", opt_out, promo, init, s_crm)
        add(crm & ~self.f2f_out, SRC_CRM, "f2f_visit", opt_in, promo, init, s_crm)
        add(self.f2f_out, SRC_CRM, "f2f_visit", opt_out, promo, init, s_crm)
        add(crm & ~self.phone_out, SRC_CRM, "phone", opt_in, promo, init, s_crm)
        add(self.phone_out, SRC_CRM, "phone", opt_out, promo, init, s_crm)
        add(crm & ~self.remote_out, SRC_CRM, "remote_visit", opt_in, promo, init, s_crm)
        add(self.remote_out, SRC_CRM, "remote_visit", opt_out, promo, init, s_crm)
        add(self.sms_in, SRC_CRM, "sms", opt_in, promo, init, s_crm)
        add(self.sms_out, SRC_CRM, "sms", opt_out, promo, init, s_crm)
        add(self.med_email_in, SRC_CRM, "email", opt_in, med, init, s_crm)
        add(self.msl_in, SRC_CRM, "msl_meeting", opt_in, med, init, s_crm)
        add(self.msl_out, SRC_CRM, "msl_meeting", opt_out, med, init, s_crm)
        later = self.email_tau <= self.win.t1
        add(later & self.unsub_linked, SRC_CRM, "email", opt_out, promo, self.unsub_ts, s_unsub)
        add(later & ~self.unsub_linked, SRC_CRM, "email", opt_out, promo, self.unsub_ts, s_pref)
        early = t0 + rng.integers(DAY, 14 * DAY, n)
        ok = ~self.email_out_start
        add(ok & self.has[:, SRC_WEB], SRC_WEB, "email", opt_in, promo, early, s_web)
        add(ok & self.has[:, SRC_EVENTS], SRC_EVENTS, "email", opt_in, promo, early, s_evt)
        if not rows["rec"]:
            return {k: np.zeros(0, np.int64) for k in rows}
        return {k: np.concatenate(v) for k, v in rows.items()}

    # ---- outbound touches --------------------------------------------------------------
    def outbound(self) -> dict[str, np.ndarray]:
        rng, pp, w, win, n = self.rng, self.pp, self.world, self.win, self.n
        sch = w.schedule
        crm = self.has[:, SRC_CRM]
        dec = pp.decile_or_mid
        vol, sc = self.vol, self.scale
        parts: list[dict[str, np.ndarray]] = []

        def part(pidx: np.ndarray, ts: np.ndarray, ch: str, src: int, *,
                 content: np.ndarray | int = -1, team: np.ndarray | int = COMM,
                 owner: np.ndarray | int = -1, campaign: np.ndarray | int = -1,
                 topic: np.ndarray | int = -1) -> None:
            k = pidx.size
            d = {
                "pidx": pidx, "ts": ts, "ch": np.full(k, CH[ch]), "src": np.full(k, src),
                "content": np.broadcast_to(np.asarray(content), (k,)),
                "team": np.broadcast_to(np.asarray(team), (k,)),
                "owner": np.broadcast_to(np.asarray(owner), (k,)),
                "campaign": np.broadcast_to(np.asarray(campaign), (k,)),
                "topic": np.broadcast_to(np.asarray(topic), (k,)),
            }
            parts.append({kk: np.asarray(v, dtype=np.int64) for kk, v in d.items()})

        # email campaigns (marketing, no owner)
        n_em = sch.em_ts.size
        target = np.where(pp.prescriber, np.clip(0.8 + 0.03 * (dec - 5.5), 0.4, 1.0), 0.55)
        m = crm[:, None] & (rng.random((n, n_em)) < sch.em_reach[None, :] * target[:, None])
        pi, ci = np.nonzero(m)
        ts = sch.em_ts[ci] + rng.integers(0, 1800, ci.size)
        # promotional emails respect the promotional consent, medical ones the medical
        keep = np.where(sch.em_team[ci] == 1, self.med_email_in[pi], ts < self.email_until[pi])
        pi, ci, ts = pi[keep], ci[keep], ts[keep]
        part(pi, ts, "email", SRC_CRM, content=sch.em_content[ci],
             team=np.where(sch.em_team[ci] == 1, MED, COMM), campaign=sch.em_campaign[ci],
             topic=self._topic_of(sch.em_content[ci]))
        # rep-triggered emails
        camp = w.schedule.campaign_ids
        pi = self._repeat(np.where(crm, vol * 3.0 * sc, 0.0))
        ts = self._workday_ts(pi)
        keep = ts < self.email_until[pi]
        pi, ts = pi[keep], ts[keep]
        cont = self._pick_company("email", ts)
        part(pi, ts, "email", SRC_CRM, content=cont, owner=w.rep_owner(pp.rep[pi]),
             campaign=camp.index("CZ-REP-EMAIL"), topic=self._topic_of(cont))
        # rep visits (f2f), some by key account managers (market access)
        rate = np.where(pp.prescriber, 2.5 + 0.9 * dec, 2.0) * (1 + 0.4 * pp.kol)
        pi = self._repeat(np.where(crm & ~self.f2f_out, vol * rate * sc, 0.0))
        ts = self._workday_ts(pi)
        cont = self._pick_company("rep", ts)
        kam = (pp.decile[pi] >= 8) & (rng.random(pi.size) < 0.15)
        part(pi, ts, "f2f_visit", SRC_CRM, content=cont, team=np.where(kam, MA, COMM),
             owner=np.where(kam, w.kam_owner(pp.kam[pi]), w.rep_owner(pp.rep[pi])),
             topic=self._topic_of(cont))
        # remote visits
        pi = self._repeat(np.where(crm & ~self.remote_out, vol * (0.8 + 0.2 * dec) * sc, 0.0))
        ts = self._workday_ts(pi)
        cont = self._pick_company("rep", ts)
        part(pi, ts, "remote_visit", SRC_CRM, content=cont, owner=w.rep_owner(pp.rep[pi]),
             topic=self._topic_of(cont))
        # phone calls
        pi = self._repeat(np.where(crm & ~self.phone_out, vol * 1.8 * sc, 0.0))
        ts = self._workday_ts(pi)
        kam = (pp.decile[pi] >= 7) & (rng.random(pi.size) < 0.2)
        th = rng.integers(0, len(P.THEMES), pi.size)
        th = np.where(kam, P.THEMES.index("access"), th)
        tcodes = np.array([w.topic_code(P.TOPIC_BY_THEME[t]) for t in P.THEMES])
        part(pi, ts, "phone", SRC_CRM, team=np.where(kam, MA, COMM),
             owner=np.where(kam, w.kam_owner(pp.kam[pi]), w.rep_owner(pp.rep[pi])),
             topic=tcodes[th])
        # SMS
        pi = self._repeat(np.where(self.sms_in, vol * 5.0 * sc, 0.0))
        ts = self._workday_ts(pi)
        part(pi, ts, "sms", SRC_CRM, campaign=camp.index("CZ-SMS"))
        # MSL meetings
        ev = pp.W[:, 4]
        rate = 0.25 + 0.12 * dec * pp.cardio + 2.0 * pp.kol + 1.0 * ev
        pi = self._repeat(np.where(crm & ~self.msl_out, vol * rate * sc, 0.0))
        ts = self._workday_ts(pi)
        cont = self._pick_company("msl", ts)
        part(pi, ts, "msl_meeting", SRC_CRM, content=cont, team=MED,
             owner=w.msl_owner(pp.msl[pi]), topic=self._topic_of(cont))
        # webinar invitations (events platform)
        n_wb = sch.wb_ts.size
        m = self.has[:, SRC_EVENTS][:, None] & (rng.random((n, n_wb)) < 0.55)
        pi, wi = np.nonzero(m)
        ts = sch.wb_ts[wi] - rng.integers(6 * DAY, 14 * DAY, wi.size)
        ts = np.maximum(ts, win.t0 + 12 * 3600 + rng.integers(0, 3600, wi.size))
        ts = np.minimum(ts, sch.wb_ts[wi] - 3600)
        part(pi, ts, "webinar", SRC_EVENTS, content=sch.wb_content[wi],
             team=np.where(sch.wb_team[wi] == 1, MED, COMM), campaign=sch.wb_campaign[wi],
             topic=self._topic_of(sch.wb_content[wi]))
        t = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        keep = (t["ts"] >= win.t0) & (t["ts"] < win.t1)
        t = {k: v[keep] for k, v in t.items()}
        order = np.lexsort((t["ts"], t["pidx"]))
        t = {k: v[order] for k, v in t.items()}
        # recent contacts: outbound touches in the fatigue window before each touch
        key = t["pidx"] * (1 << 34) + (t["ts"] - win.t0)
        wnd = int(self.prm["fatigue_window_days"]) * DAY
        t["recent"] = np.arange(key.size) - np.searchsorted(key, key - wnd, side="left")
        # response
        _d, _s, hour, weekend = self._local(t["pidx"], t["ts"])
        c = self.content
        has_c = t["content"] >= 0
        ci = np.maximum(t["content"], 0)
        th = np.where(has_c, c.theme[ci], -1)
        tn = np.where(has_c, c.tone[ci], -1)
        fm = np.where(has_c, c.fmt[ci], -1)
        p_idx = t["pidx"]
        off = pp.offset[p_idx, t["ch"]] + pp.intercept[p_idx]
        logit = self.model.logit_codes(
            pp.W[p_idx], t["ch"], th, tn, fm, hour, weekend, t["recent"].astype(float),
            pp.decile_or_mid[p_idx], pp.fatigue[p_idx], off,
        )
        t["p"] = _sigmoid(logit)
        t["success"] = rng.random(key.size) < t["p"]
        t["fit"] = np.where(has_c, self.fit[p_idx, ci], 0.0)
        return t

    def expand_outbound(self, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Turn touches into interaction rows; returns arrays needed later."""
        rng, pp, w, b = self.rng, self.pp, self.world, self.buf
        t1 = self.win.t1
        ch = t["ch"]
        info: dict[str, np.ndarray] = {}

        def sel(mask: np.ndarray) -> dict[str, np.ndarray]:
            return {k: v[mask] for k, v in t.items()}

        def common(s: dict[str, np.ndarray]) -> dict[str, Any]:
            return dict(team=s["team"], owner=s["owner"], content=s["content"],
                        campaign=s["campaign"], topic=s["topic"])

        # email
        e = sel(ch == CH["email"])
        k = e["pidx"].size
        b.add(e["pidx"], e["ts"], "email", "sent", SRC_CRM, OUT, **common(e))
        bad = rng.random(self.n) < 0.03
        bounce = rng.random(k) < np.where(bad[e["pidx"]], 0.6, 0.012)
        dts = e["ts"] + rng.integers(1, 90, k)
        m = bounce
        b.add(e["pidx"][m], dts[m], "email", "bounced", SRC_CRM, OUT,
              **{kk: v[m] for kk, v in common(e).items()})
        m = ~bounce
        b.add(e["pidx"][m], dts[m], "email", "delivered", SRC_CRM, OUT,
              **{kk: v[m] for kk, v in common(e).items()})
        opened = ~bounce & e["success"]
        ots = self._next_consumption(e["pidx"], dts)
        opened &= ots < t1
        m = opened
        b.add(e["pidx"][m], ots[m], "email", "opened", SRC_CRM, OUT,
              **{kk: v[m] for kk, v in common(e).items()})
        clicked = opened & (rng.random(k) < self.model.click_probability(e["fit"]))
        cts = ots + rng.integers(5, 180, k)
        clicked &= cts < t1
        m = clicked
        b.add(e["pidx"][m], cts[m], "email", "clicked", SRC_CRM, OUT,
              **{kk: v[m] for kk, v in common(e).items()})
        info["click_pidx"], info["click_ts"] = e["pidx"][clicked], cts[clicked]
        self.stats["email_delivered"] = float((~bounce).sum())
        self.stats["email_opened"] = float(opened.sum())
        self.stats["email_clicked"] = float(clicked.sum())
        # unsubscribe: attached to the last email delivered before the opt-out time
        self.unsub_ts = self.email_tau.copy()
        self.unsub_linked = np.zeros(self.n, dtype=bool)
        later = np.flatnonzero(self.email_tau <= t1)
        if later.size:
            ok = ~bounce & (dts < self.email_tau[e["pidx"]])
            idx = np.flatnonzero(ok)
            # e is sorted by person then ts: the last ok email per person
            pid = e["pidx"][idx]
            is_last = np.append(pid[1:] != pid[:-1], True) if pid.size else pid.astype(bool)
            last = np.full(self.n, -1, dtype=np.int64)
            last[pid[is_last]] = idx[is_last]
            has_last = last[later] >= 0
            # an unsubscribe link is used within two weeks of the email; later opt-outs
            # come through the preference centre (consent row only)
            recent = np.zeros(later.size, dtype=bool)
            recent[has_last] = (self.email_tau[later[has_last]]
                                - dts[last[later[has_last]]]) <= 14 * DAY
            has_last &= recent
            self.unsub_linked = np.zeros(self.n, dtype=bool)
            self.unsub_linked[later[has_last]] = True
            li = last[later[has_last]]
            u_ts = np.maximum(self.email_tau[later[has_last]], dts[li] + 60)
            u_ts = np.minimum(u_ts, t1 - 1)
            self.unsub_ts[later[has_last]] = u_ts
            b.add(e["pidx"][li], u_ts, "email", "unsubscribed", SRC_CRM, OUT,
                  **{kk: v[li] for kk, v in common(e).items()})
        # sms
        s = sel(ch == CH["sms"])
        k = s["pidx"].size
        b.add(s["pidx"], s["ts"], "sms", "sent", SRC_CRM, OUT, **common(s))
        dl = rng.random(k) < 0.99
        dts = s["ts"] + rng.integers(1, 30, k)
        b.add(s["pidx"][dl], dts[dl], "sms", "delivered", SRC_CRM, OUT,
              **{kk: v[dl] for kk, v in common(s).items()})
        cl = dl & s["success"]
        cts = dts + rng.integers(30, 4 * 3600, k)
        cl &= cts < t1
        b.add(s["pidx"][cl], cts[cl], "sms", "clicked", SRC_CRM, OUT,
              **{kk: v[cl] for kk, v in common(s).items()})
        # visits and calls: completed or declined
        dur_med = {"f2f_visit": 420, "remote_visit": 900, "phone": 240, "msl_meeting": 2400}
        for cname in ("f2f_visit", "remote_visit", "phone", "msl_meeting"):
            v = sel(ch == CH[cname])
            k = v["pidx"].size
            ok = v["success"]
            dur = np.clip(np.rint(dur_med[cname] * rng.lognormal(0, 0.45, k)), 60, 4 * 3600)
            b.add(v["pidx"][ok], v["ts"][ok], cname, "completed", SRC_CRM, OUT,
                  duration=dur[ok], **{kk: x[ok] for kk, x in common(v).items()})
            b.add(v["pidx"][~ok], v["ts"][~ok], cname, "declined", SRC_CRM, OUT,
                  **{kk: x[~ok] for kk, x in common(v).items()})
            self.stats[f"{cname}_attempts"] = float(k)
            self.stats[f"{cname}_completed"] = float(ok.sum())
            info[f"{cname}_done_pidx"] = v["pidx"][ok]
            info[f"{cname}_done_ts"] = v["ts"][ok]
            if cname == "f2f_visit":
                pi, ts0 = v["pidx"][ok], v["ts"][ok] + dur[ok].astype(np.int64)
                owner = v["owner"][ok]
                smp = pp.prescriber[pi] & (rng.random(pi.size) < 0.3) & (ts0 < t1)
                b.add(pi[smp], ts0[smp], "sample", "delivered", SRC_CRM, OUT, team=COMM,
                      owner=owner[smp], topic=w.topic_code("starter samples"))
                meal = self.has[pi, SRC_OP] & (rng.random(pi.size) < 0.15) & (ts0 < t1)
                val = np.round(rng.uniform(12, 45, pi.size), 2)
                b.add(pi[meal], ts0[meal], "payment", "completed", SRC_OP, OUT, team=COMM,
                      owner=owner[meal], value=val[meal],
                      topic=w.topic_code("Food and Beverage"))
        # webinars
        wv = sel(ch == CH["webinar"])
        k = wv["pidx"].size
        b.add(wv["pidx"], wv["ts"], "webinar", "sent", SRC_EVENTS, OUT, **common(wv))
        sch = w.schedule
        live_of = np.zeros(len(sch.campaign_ids), dtype=np.int64)
        live_of[sch.wb_campaign] = sch.wb_ts
        live = live_of[wv["campaign"]]
        reg = wv["success"]
        rts = wv["ts"] + (rng.uniform(0.05, 0.9, k) * (live - wv["ts"])).astype(np.int64)
        b.add(wv["pidx"][reg], rts[reg], "webinar", "registered", SRC_EVENTS, OUT,
              **{kk: x[reg] for kk, x in common(wv).items()})
        pa = self.model.attend_probability(pp.overwhelmed[wv["pidx"]],
                                           pp.offset[wv["pidx"], CH["webinar"]])
        att = reg & (rng.random(k) < pa)
        ats = live + rng.integers(-300, 900, k)
        att &= ats < t1
        dur = np.rint(rng.uniform(0.35, 1.0, k) * 3600)
        b.add(wv["pidx"][att], ats[att], "webinar", "attended", SRC_EVENTS, OUT,
              duration=dur[att], **{kk: x[att] for kk, x in common(wv).items()})
        self.stats["webinar_invited"] = float(k)
        self.stats["webinar_registered"] = float(reg.sum())
        self.stats["webinar_attended"] = float(att.sum())
        info["webinar_att_pidx"] = wv["pidx"][att]
        info["webinar_att_ts"] = ats[att]
        return info

    # ---- HCP-initiated behaviour ----------------------------------------------------------
    def inbound(self, info: dict[str, np.ndarray]) -> None:
        rng, pp, b, w = self.rng, self.pp, self.buf, self.world
        t1 = self.win.t1
        ci = self.model.params["channel_intercept"]
        web = self.has[:, SRC_WEB]
        vol, sc = self.vol, self.scale
        # web sessions (organic + email click-throughs for known web users)
        rate = np.where(web, vol * sc * np.exp(ci["web"] + pp.pref[:, CH["web"]]
                                               + self.base_eng), 0.0)
        pi = self._repeat(rate)
        ts = self._digital_ts(pi)
        cp, cts = info["click_pidx"], info["click_ts"]
        ct = web[cp]
        pi = np.concatenate([pi, cp[ct]])
        ts = np.concatenate([ts, cts[ct] + rng.integers(2, 30, int(ct.sum()))])
        keep = ts < t1
        pi, ts = pi[keep], ts[keep]
        b.add(pi, ts, "web", "visited", SRC_WEB, INB, team=COMM)
        nv = rng.poisson(1.2, pi.size)
        vp = np.repeat(pi, nv)
        step = rng.integers(20, 240, vp.size)
        cum = np.cumsum(step)
        offs = cum - np.repeat(np.concatenate([[0], cum])[np.cumsum(nv) - nv], nv)
        vts = np.repeat(ts, nv) + offs
        keep = vts < t1
        vp, vts = vp[keep], vts[keep]
        cont = self._pick_pref("web", vp, vts)
        dur = np.clip(np.rint(90 * rng.lognormal(0, 0.7, vp.size)), 5, 1800)
        b.add(vp, vts, "web", "viewed", SRC_WEB, INB, team=COMM, content=cont, duration=dur,
              topic=self._topic_of(cont))
        # portal: visits and downloads
        rate = np.where(web, vol * sc * np.exp(ci["portal"] + pp.pref[:, CH["portal"]]
                                               + self.base_eng), 0.0)
        pi = self._repeat(rate)
        ts = self._digital_ts(pi)
        b.add(pi, ts, "portal", "visited", SRC_WEB, INB, team=COMM)
        nd = (rng.random(pi.size) < 0.55).astype(np.int64) + rng.poisson(0.25, pi.size)
        dp = np.repeat(pi, nd)
        dts = np.repeat(ts, nd) + rng.integers(20, 600, dp.size)
        keep = dts < t1
        dp, dts = dp[keep], dts[keep]
        cont = self._pick_pref("portal", dp, dts)
        b.add(dp, dts, "portal", "downloaded", SRC_WEB, INB, team=COMM, content=cont,
              topic=self._topic_of(cont))
        # social
        rate = np.where(web, vol * sc * 1.0 * np.exp(0.6 * pp.pref[:, CH["web"]]
                                                     + self.base_eng), 0.0)
        pi = self._repeat(rate)
        ts = self._digital_ts(pi)
        cont = self._pick_pref("web", pi, ts)
        b.add(pi, ts, "social", "viewed", SRC_WEB, INB, team=COMM, content=cont,
              topic=self._topic_of(cont))
        # medical inquiries (recorded in CRM, or via the web form)
        can = self.has[:, SRC_CRM] | web
        rate = np.where(can, vol * sc * 0.3 * np.exp(0.9 * pp.pref[:, CH["msl_meeting"]]
                                                     + self.base_eng), 0.0)
        pi = self._repeat(rate)
        ts = self._workday_ts(pi)
        mp, mts = info["msl_meeting_done_pidx"], info["msl_meeting_done_ts"]
        fol = rng.random(mp.size) < 0.12
        pi = np.concatenate([pi, mp[fol]])
        ts = np.concatenate([ts, mts[fol] + rng.integers(DAY, 14 * DAY, int(fol.sum()))])
        keep = ts < t1
        pi, ts = pi[keep], ts[keep]
        src = np.where(self.has[pi, SRC_CRM], SRC_CRM, SRC_WEB)
        tcode = np.array([w.topic_code(x) for x in P.MEDICAL_INQUIRY_TOPICS])
        topic = tcode[rng.integers(0, tcode.size, pi.size)]
        b.add(pi, ts, "medical_inquiry", "requested", src, INB, team=MED, topic=topic)

    def congress(self, adopt_ts: np.ndarray) -> None:
        rng, pp, b, w = self.rng, self.pp, self.buf, self.world
        sch = w.schedule
        win = self.win
        ci = self.model.params["channel_intercept"]
        evt = self.has[:, SRC_EVENTS]
        attended = 0
        for k in range(sch.cg_day.size):
            start = win.t0 + int(sch.cg_day[k]) * DAY
            adopted = (adopt_ts >= 0) & (adopt_ts <= start)
            lg = (ci["congress"] + pp.pref[:, CH["congress"]] + self.base_eng + 1.6 * pp.kol
                  + 1.5 * adopted + np.log(max(self.world.volume, 1e-3)) * 0.5)
            go = evt & (rng.random(self.n) < _sigmoid(lg))
            pi = np.flatnonzero(go)
            day = np.minimum(sch.cg_day[k] + rng.integers(0, 4, pi.size), win.n_days - 1)
            sec = np.clip(self._office_hour(pi.size), 8, 17) * 3600 + rng.integers(0, 3600,
                                                                                  pi.size)
            ts = self._utc(pi, day, sec)
            keep = ts < win.t1
            pi, ts = pi[keep], ts[keep]
            med = rng.random(pi.size) < np.where(adopted[pi], 0.85, 0.65)
            dur = np.rint(rng.uniform(1800, 7200, pi.size))
            b.add(pi, ts, "congress", "attended", SRC_EVENTS, INB,
                  team=np.where(med, MED, COMM), campaign=sch.cg_campaign[k], duration=dur,
                  topic=w.topic_code(sch.cg_name[k]))
            attended += pi.size
        self.stats["congress_attended"] = float(attended)
        # advisory boards (KOLs, medical) with honoraria
        crm = self.has[:, SRC_CRM]
        for k in range(sch.ab_day.size):
            pi = np.flatnonzero(pp.kol & crm & (rng.random(self.n) < 0.4))
            day = np.full(pi.size, int(sch.ab_day[k]))
            ts = self._utc(pi, day, np.full(pi.size, 9 * 3600) + rng.integers(0, 1800, pi.size))
            keep = ts < win.t1
            pi, ts = pi[keep], ts[keep]
            b.add(pi, ts, "advisory_board", "attended", SRC_CRM, OUT, team=MED,
                  owner=w.msl_owner(pp.msl[pi]), campaign=sch.ab_campaign[k],
                  duration=np.rint(rng.uniform(3, 6, pi.size)) * 3600,
                  topic=w.topic_code("advisory board"))
            paid = self.has[pi, SRC_OP]
            pts = ts + 8 * 3600
            paid &= pts < win.t1
            b.add(pi[paid], pts[paid], "payment", "completed", SRC_OP, OUT, team=MED,
                  owner=w.msl_owner(pp.msl[pi[paid]]), campaign=sch.ab_campaign[k],
                  value=np.round(rng.uniform(1000, 3000, int(paid.sum())), 2),
                  topic=w.topic_code("Consulting fee"))
        # speaker programmes (KOLs) with fees
        op = self.has[:, SRC_OP]
        pi = self._repeat(np.where(pp.kol & op, self.vol * 1.0 * self.scale, 0.0))
        ts = self._workday_ts(pi)
        b.add(pi, ts, "payment", "completed", SRC_OP, OUT, team=COMM,
              owner=w.rep_owner(pp.rep[pi]),
              campaign=self.world.schedule.campaign_ids.index("CZ-SPEAKER"),
              value=np.round(rng.uniform(1500, 4000, pi.size), 2),
              topic=w.topic_code("Speaker fee"))

    # ---- journey stages -------------------------------------------------------------------
    def _match(self, ev: dict[str, np.ndarray], item: dict[str, Any]) -> np.ndarray:
        m = np.ones(ev["pidx"].size, dtype=bool)
        for key, val in item.items():
            if key == "channel":
                m &= ev["channel"] == CHN.get(str(val), -99)
            elif key == "action":
                m &= ev["action"] == ACT.get(str(val), -99)
            elif key == "team":
                m &= ev["team"] == TEAM.get(str(val), -99)
            elif key == "direction":
                m &= ev["direction"] == DIR.get(str(val), -99)
            elif key == "content_id":
                ids = self.content.ids
                m &= ev["content"] == (ids.index(str(val)) if str(val) in ids else -99)
            elif key == "topic":
                tp = self.world.topics
                m &= ev["topic"] == (tp.index(str(val)) if str(val) in tp else -99)
            else:
                m &= False
        return m

    def stage_entries(self, ev: dict[str, np.ndarray], adopt_ts: np.ndarray | None,
                      upto: int | None = None) -> np.ndarray:
        """Entry time per person and stage by the journey rules (events sorted by pidx, ts)."""
        n_st = len(self.stages) if upto is None else upto
        out = np.full((self.n, len(self.stages)), -1, dtype=np.int64)
        window = self.window_days * DAY if self.window_days else None
        for k in range(n_st):
            st = self.stages[k]
            items = st.get("enter_on") or []
            prev = out[:, k - 1] if k > 0 else None
            cand_ts = np.full(self.n, -1, dtype=np.int64)
            ev_items = [it for it in items if "outcome" not in it]
            if ev_items:
                m = np.zeros(ev["pidx"].size, dtype=bool)
                for it in ev_items:
                    m |= self._match(ev, it)
                if prev is not None:
                    pv = prev[ev["pidx"]]
                    m &= (pv >= 0) & (ev["ts"] >= pv)
                    if window:
                        m &= ev["ts"] <= pv + window
                idx = np.flatnonzero(m)
                pid, first = np.unique(ev["pidx"][idx], return_index=True)
                cand_ts[pid] = ev["ts"][idx[first]]
            if any("outcome" in it for it in items) and adopt_ts is not None:
                a = adopt_ts.copy()
                ok = a >= 0
                if prev is not None:
                    ok &= (prev >= 0) & (a >= prev)
                    if window:
                        ok &= a <= prev + window
                a = np.where(ok, a, -1)
                cand_ts = np.where((cand_ts < 0) | ((a >= 0) & (a < cand_ts)), a, cand_ts)
            out[:, k] = cand_ts
        return out

    # ---- prescribing -------------------------------------------------------------------
    def adoption(self, ev: dict[str, np.ndarray], entry: np.ndarray) -> tuple[np.ndarray,
                                                                             np.ndarray]:
        rng, pp, win = self.rng, self.pp, self.win
        ap = self.prm["adoption"]
        slots = win.closed_slots()
        n = self.n
        adopt_slot = np.full(n, -1, dtype=np.int64)
        adopt_ts = np.full(n, -1, dtype=np.int64)
        if slots.size == 0:
            return adopt_slot, adopt_ts
        close = np.array([win.slot_starts[s + 1] for s in slots], dtype=np.int64)
        # decision-stage touches (rules of the decision stage + MSL meetings)
        dec_k = self.decision_stage
        dm = np.zeros(ev["pidx"].size, dtype=bool)
        for it in self.stages[dec_k].get("enter_on") or []:
            if "outcome" not in it:
                dm |= self._match(ev, it)
        dm |= self._match(ev, {"channel": "msl_meeting", "action": "completed"})
        idx = np.flatnonzero(dm)
        sl = np.searchsorted(close, ev["ts"][idx], side="right")  # first close after the touch
        cnt = np.zeros((n, slots.size + 1))
        np.add.at(cnt, (ev["pidx"][idx], sl), 1.0)
        cum = np.cumsum(cnt, axis=1)[:, : slots.size]
        d_ent = entry[:, dec_k]
        c_ent = entry[:, dec_k - 1] if dec_k > 0 else np.full(n, -1)
        within = (d_ent[:, None] >= 0) & (d_ent[:, None] < close[None, :]) & (
            close[None, :] <= d_ent[:, None] + (self.window_days or 10_000) * DAY)
        cons = (c_ent[:, None] >= 0) & (c_ent[:, None] < close[None, :])
        seg_b = pp.W @ np.asarray(ap["segment_effect"], dtype=float)
        lg = (ap["intercept"] + ap["decile_coef"] * (pp.decile_or_mid - 5.5)
              + ap["cardio_coef"] * pp.cardio + seg_b + 0.5 * pp.intercept)[:, None]
        lg = lg + ap["touch_coef"] * np.log1p(cum) + ap["decision_coef"] * within \
            + ap["consideration_coef"] * cons
        eligible = pp.prescriber & ((self.recs.of[SRC_CRM] >= 0) | (self.recs.of[SRC_OP] >= 0))
        hit = (rng.random(lg.shape) < _sigmoid(lg)) & eligible[:, None]
        anyhit = hit.any(axis=1)
        first = hit.argmax(axis=1)
        adopt_slot = np.where(anyhit, slots[first], -1)
        adopt_ts = np.where(anyhit, close[first], -1)
        return adopt_slot, adopt_ts

    def outcomes(self, adopt_slot: np.ndarray) -> dict[str, np.ndarray]:
        rng, pp, win = self.rng, self.pp, self.win
        slots = win.closed_slots()
        n = self.n
        rec = np.where(self.recs.of[SRC_CRM] >= 0, self.recs.of[SRC_CRM], self.recs.of[SRC_OP])
        eligible = pp.prescriber & (rec >= 0)
        dec = pp.decile_or_mid
        # competitor: every eligible prescriber, every month
        lam_c = (0.4 + 0.5 * dec * np.where(pp.cardio, 1.5, 0.6)) * eligible
        pi = np.repeat(np.arange(n), slots.size)
        si = np.tile(slots, n)
        keep = eligible[pi]
        pi, si = pi[keep], si[keep]
        adopted_before = (adopt_slot[pi] >= 0) & (si > adopt_slot[pi])
        nrx = rng.poisson(lam_c[pi] * np.where(adopted_before, 0.8, 1.0))
        trx = nrx + rng.poisson(2.5 * lam_c[pi])
        comp = {"pidx": pi, "slot": si, "product": np.zeros(pi.size, np.int64), "nrx": nrx,
                "trx": trx}
        # cardiozen: from the adoption month on
        ad = np.flatnonzero(adopt_slot >= 0)
        nmon = (slots[None, :] >= adopt_slot[ad][:, None]).sum(axis=1).astype(np.int64)
        pi = np.repeat(ad, nmon)
        start = np.repeat(adopt_slot[ad], nmon)
        k = np.arange(pi.size) - np.repeat(np.cumsum(nmon) - nmon, nmon)
        si = start + k
        lam = 0.3 + 0.22 * dec[pi] * np.where(pp.cardio[pi], 1.4, 0.8)
        nrx = rng.poisson(lam)
        nrx = np.where(k == 0, np.maximum(nrx, 1), nrx)
        excl = np.cumsum(nrx) - nrx
        cum_prev = excl - np.repeat(excl[np.cumsum(nmon) - nmon], nmon)
        trx = nrx + rng.binomial(cum_prev, 0.75)
        cz = {"pidx": pi, "slot": si, "product": np.ones(pi.size, np.int64), "nrx": nrx,
              "trx": trx}
        out = {kk: np.concatenate([comp[kk], cz[kk]]) for kk in comp}
        out["rec"] = rec[out["pidx"]]
        return out

    # ---- feedback ----------------------------------------------------------------------
    def feedback(self, ev: dict[str, np.ndarray], event_ids_offset: int,
                 adopt_slot: np.ndarray) -> dict[str, Any]:
        rng, pp, win = self.rng, self.pp, self.win
        rows: dict[str, list[np.ndarray]] = {k: [] for k in (
            "pidx", "rec", "ts", "instrument", "question", "score", "comment", "event",
            "dimension")}
        q_names = ["csat", *P.DIMENSION_QUESTIONS, "nps", *P.ATTITUDE_QUESTIONS]
        comments = (list(P.POSITIVE_COMMENTS) + list(P.NEUTRAL_COMMENTS)
                    + list(P.NEGATIVE_COMMENTS) + list(P.OVERLOAD_COMMENTS))
        npos, nneu, nneg = (len(P.POSITIVE_COMMENTS), len(P.NEUTRAL_COMMENTS),
                            len(P.NEGATIVE_COMMENTS))
        nover = len(P.OVERLOAD_COMMENTS)

        def comment_codes(score: np.ndarray, lo: float, hi: float, ow: np.ndarray,
                          p: float) -> np.ndarray:
            k = score.size
            c = np.full(k, -1, dtype=np.int64)
            has = rng.random(k) < p
            pos = score >= hi
            neg = score <= lo
            c = np.where(has & pos, rng.integers(0, npos, k), c)
            c = np.where(has & ~pos & ~neg, npos + rng.integers(0, nneu, k), c)
            c = np.where(has & neg, npos + nneu + rng.integers(0, nneg, k), c)
            over = has & ow & ~pos & (rng.random(k) < 0.65)
            return np.where(over, npos + nneu + nneg + rng.integers(0, nover, k), c)

        # post-interaction CSAT with the five quality dimensions
        rated = (
            self._match(ev, {"channel": "f2f_visit", "action": "completed"})
            | self._match(ev, {"channel": "remote_visit", "action": "completed"})
            | self._match(ev, {"channel": "msl_meeting", "action": "completed"})
            | self._match(ev, {"channel": "webinar", "action": "attended"})
        )
        idx = np.flatnonzero(rated & (rng.random(rated.size) < 0.06))
        ts = ev["ts"][idx] + rng.integers(3600, 48 * 3600, idx.size)
        keep = ts < win.t1
        idx, ts = idx[keep], ts[keep]
        pi = ev["pidx"][idx]
        cont = ev["content"][idx]
        fit = np.where(cont >= 0, self.fit[pi, np.maximum(cont, 0)], 0.0)
        tfit = np.where(cont >= 0, self.theme_fit[pi, np.maximum(cont, 0)], 0.0)
        chpref = np.zeros(idx.size)
        for cname in ("f2f_visit", "remote_visit", "msl_meeting", "webinar"):
            m = ev["channel"][idx] == CHN[cname]
            chpref[m] = pp.pref[pi[m], CH[cname]]
        ow = pp.overwhelmed[pi]
        q = 3.5 + 0.9 * fit + 0.3 * chpref - 0.8 * ow + rng.normal(0, 0.8, idx.size)
        dims = {
            "relevant": q + 0.8 * tfit,
            "consumable": q - 0.6 * ow,
            "accessible": q + 0.2,
            "connective": q + 0.3 * (ev["channel"][idx] != CHN["remote_visit"]),
            "purposeful": q + 0.5 * tfit,
        }
        rec = self.recs.of[ev["src"][idx], pi]
        eno = event_ids_offset + idx
        for qi, (name, val) in enumerate([("csat", q), *dims.items()]):
            sc = np.clip(np.rint(val + (rng.normal(0, 0.5, idx.size) if qi else 0)), 1, 5)
            rows["pidx"].append(pi)
            rows["rec"].append(rec)
            rows["ts"].append(ts + qi)
            rows["instrument"].append(np.full(idx.size, 0))
            rows["question"].append(np.full(idx.size, q_names.index(name)))
            rows["score"].append(sc)
            rows["comment"].append(comment_codes(sc, 2, 4, ow, 0.35) if qi == 0
                                   else np.full(idx.size, -1))
            rows["event"].append(eno)
            rows["dimension"].append(
                np.full(idx.size, QUALITY_DIMENSIONS.index(name) if qi else -1))
        # relationship surveys: NPS and attitudes, one or two waves
        svy = np.flatnonzero(self.has[:, SRC_SURVEY])
        resp = rng.random((svy.size, 2)) < 0.65
        resp[~resp.any(axis=1), int(rng.integers(0, 2))] = True
        span = win.t1 - win.t0
        for wave, frac in enumerate((0.35, 0.8)):
            pi = svy[resp[:, wave]]
            k = pi.size
            ts = win.t0 + int(frac * span) + rng.integers(0, 10 * DAY, k)
            ts = np.minimum(ts, win.t1 - 3600)
            ow = pp.overwhelmed[pi]
            adopted = adopt_slot[pi] >= 0
            nps = np.clip(np.rint(7.0 + 1.3 * adopted + 0.6 * pp.intercept[pi] - 1.8 * ow
                                  + rng.normal(0, 1.4, k)), 0, 10)
            rec = self.recs.of[SRC_SURVEY, pi]
            att = {
                "overload": np.where(ow, rng.choice([3, 4, 5], k, p=[0.06, 0.44, 0.5]),
                                     rng.choice([1, 2, 3, 4], k, p=[0.3, 0.4, 0.24, 0.06])),
                "in_person": np.clip(np.rint(np.where(pp.top_channel[pi] == CH["f2f_visit"],
                                                      4.3, 2.6) + rng.normal(0, 0.7, k)), 1, 5),
                "digital": np.clip(np.rint(2.4 + 2.2 * pp.W[pi, 1] + rng.normal(0, 0.7, k)),
                                   1, 5),
                "peer": np.clip(np.rint(2.6 + 2.0 * pp.W[pi, 2] + rng.normal(0, 0.7, k)), 1, 5),
                "evidence": np.clip(np.rint(3.0 + 1.8 * pp.W[pi, 4] + rng.normal(0, 0.7, k)),
                                    1, 5),
            }
            for qi, (name, val) in enumerate([("nps", nps), *att.items()]):
                rows["pidx"].append(pi)
                rows["rec"].append(rec)
                rows["ts"].append(ts + qi)
                rows["instrument"].append(np.full(k, 1 if qi == 0 else 2))
                rows["question"].append(np.full(k, q_names.index(name)))
                rows["score"].append(val.astype(float))
                rows["comment"].append(comment_codes(val.astype(float), 6, 9, ow, 0.5)
                                       if qi == 0 else np.full(k, -1))
                rows["event"].append(np.full(k, -1))
                rows["dimension"].append(np.full(k, -1))
        out: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()}
        order = np.lexsort((out["ts"], out["pidx"]))
        out = {k: v[order] for k, v in out.items()}
        questions = [P.CSAT_QUESTION, *P.DIMENSION_QUESTIONS.values(), P.NPS_QUESTION,
                     *P.ATTITUDE_QUESTIONS.values()]
        out["_questions"] = questions
        out["_comments"] = comments
        out["_instruments"] = ["csat", "nps", "hcp_attitudes"]
        return out

    # ---- orchestration --------------------------------------------------------------------
    @property
    def decision_stage(self) -> int:
        for k, st in enumerate(self.stages):
            if any("outcome" in it for it in st.get("enter_on") or []):
                return max(0, k - 1)
        return max(0, len(self.stages) - 1)

    def run(self, event_offset: int) -> ChunkResult:
        self.decide_consents()
        touches = self.outbound()
        info = self.expand_outbound(touches)
        self.inbound(info)
        ev = self._sorted(self.buf.concat())
        entry = self.stage_entries(ev, None, upto=self.decision_stage + 1)
        adopt_slot, adopt_ts = self.adoption(ev, entry)
        self.congress(adopt_ts)
        ev = self._sorted(self.buf.concat())
        entry = self.stage_entries(ev, adopt_ts)
        fb = self.feedback(ev, event_offset, adopt_slot)
        outc = self.outcomes(adopt_slot)
        cons = self.consent_rows()
        self.stats["touches"] = float(touches["pidx"].size)
        self.stats["events"] = float(ev["pidx"].size)
        return ChunkResult(events=ev, stage_entry=entry, adoption_slot=adopt_slot,
                           outcomes=outc, consents=cons, feedback=fb, stats=self.stats)

    def _sorted(self, ev: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows inside the window (later ones are not observed yet), by person and time."""
        inside = np.flatnonzero((ev["ts"] >= self.win.t0) & (ev["ts"] < self.win.t1))
        order = inside[np.lexsort((inside, ev["ts"][inside], ev["pidx"][inside]))]
        return {k: v[order] for k, v in ev.items()}

