"""World-level parts of the simulation, shared by every chunk of persons.

The observation window, accounts (organisations), field staff, the content
library and the company's schedule (email campaigns, webinars, congresses).
All of it is drawn from a generator seeded by ``seed`` alone, so it does not
depend on how persons are chunked.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from hcpjourney.contract.schemas import CONTENT_FORMATS
from hcpjourney.errors import HcpjError
from hcpjourney.simulate import params as P

DAY = 86400
EXPIRY_MARGIN = 21 * DAY


class SimulationError(HcpjError, ValueError):
    """A simulation request that cannot be honoured (bad window, bad size)."""


@dataclass(frozen=True)
class Window:
    """The observation window [t0, t1) in UTC epoch seconds, with its months."""

    t0: int
    t1: int
    start_weekday: int  # 0 = Monday, of the first day
    slot_starts: np.ndarray  # month slot boundaries, len = n_slots + 1 (last = t1)
    periods: tuple[str, ...]  # YYYY-MM of each slot

    @property
    def n_days(self) -> int:
        return (self.t1 - self.t0) // DAY

    @property
    def n_slots(self) -> int:
        return len(self.periods)

    def slot_of(self, ts: np.ndarray) -> np.ndarray:
        s = np.searchsorted(self.slot_starts, ts, side="right") - 1
        return np.clip(s, 0, self.n_slots - 1)

    def weekday_of_day(self, day: np.ndarray) -> np.ndarray:
        return (self.start_weekday + np.asarray(day)) % 7

    @staticmethod
    def make(start: str, months: int, now: datetime | None = None) -> Window:
        try:
            d0 = date.fromisoformat(str(start)[:10])
        except ValueError as exc:
            raise SimulationError(f"start must be an ISO date like 2025-01-01, got {start!r}") from exc
        if months < 1:
            raise SimulationError("months must be at least 1")
        end = _add_months(d0, months)
        t0 = int(datetime(d0.year, d0.month, d0.day, tzinfo=UTC).timestamp())
        t1 = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp())
        now = now or datetime.now(UTC)
        if t1 > now.timestamp():
            raise SimulationError(
                f"the window {d0.isoformat()} + {months} months ends {end.isoformat()}, which is "
                "not in the past; choose an earlier start or fewer months"
            )
        # slots are calendar months clipped to the window
        starts = [t0]
        cur_y, cur_m = d0.year, d0.month
        per = [f"{cur_y:04d}-{cur_m:02d}"]
        while True:
            cur_y, cur_m = (cur_y + 1, 1) if cur_m == 12 else (cur_y, cur_m + 1)
            ts = int(datetime(cur_y, cur_m, 1, tzinfo=UTC).timestamp())
            if ts >= t1:
                break
            starts.append(ts)
            per.append(f"{cur_y:04d}-{cur_m:02d}")
        starts.append(t1)
        return Window(t0, t1, d0.weekday(), np.asarray(starts, dtype=np.int64), tuple(per))

    def closed_slots(self) -> np.ndarray:
        """Month slots whose calendar month has closed by t1 (outcome periods)."""
        out = []
        for i, per in enumerate(self.periods):
            nxt = _add_months(date(int(per[:4]), int(per[5:]), 1), 1)
            if int(datetime(nxt.year, nxt.month, 1, tzinfo=UTC).timestamp()) <= self.t1:
                out.append(i)
        return np.asarray(out, dtype=np.int64)


def _add_months(d: date, k: int) -> date:
    y = d.year + (d.month - 1 + k) // 12
    m = (d.month - 1 + k) % 12 + 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


@dataclass
class Orgs:
    name: list[str]
    city: np.ndarray  # index into params.CITIES
    address: list[str]
    postal: list[str]
    domain: list[str]
    weight: np.ndarray  # size, sums to 1
    rep: np.ndarray  # rep index
    kam: np.ndarray  # key account manager index


@dataclass
class Content:
    ids: list[str]
    title: list[str]
    fmt: np.ndarray  # index in CONTENT_FORMATS
    theme: np.ndarray  # index in THEMES
    tone: np.ndarray  # index in TONALITIES
    aesthetics: list[str]
    key_message: list[str]
    product: list[str | None]
    audience: list[str]
    language: list[str]
    length_minutes: list[float]
    status: list[str]
    approved_at: np.ndarray  # epoch s or -1
    expires_at: np.ndarray  # epoch s or -1
    # group -> (n_slots, max_items) table of valid item indices, and counts per slot
    groups: dict[str, tuple[np.ndarray, np.ndarray]]


GROUP_FORMATS: dict[str, tuple[str, ...]] = {
    "email": ("email_template",),
    "rep": ("detail_aid", "slide_deck", "infographic"),
    "msl": ("slide_deck", "article"),
    "webinar": ("webinar_recording",),
    "web": ("article", "video", "infographic", "podcast"),
    "portal": ("article", "video", "podcast", "infographic", "slide_deck",
               "webinar_recording", "detail_aid"),
}


@dataclass
class Schedule:
    """Company-planned activities (world level)."""

    campaign_ids: list[str]  # vocabulary for campaign_id codes
    # email campaigns
    em_ts: np.ndarray
    em_content: np.ndarray
    em_campaign: np.ndarray
    em_team: np.ndarray  # 0 commercial, 1 medical
    em_reach: np.ndarray
    # webinars
    wb_ts: np.ndarray
    wb_content: np.ndarray
    wb_campaign: np.ndarray
    wb_team: np.ndarray
    # congresses
    cg_day: np.ndarray
    cg_name: list[str]
    cg_campaign: np.ndarray
    # advisory boards
    ab_day: np.ndarray
    ab_campaign: np.ndarray


@dataclass
class World:
    seed: int
    n_hcps: int
    window: Window
    volume: float
    orgs: Orgs
    n_reps: int
    n_msls: int
    n_kams: int
    owner_ids: list[str]  # reps, then MSLs, then KAMs
    content: Content
    schedule: Schedule
    topics: list[str]

    def rep_owner(self, rep: np.ndarray) -> np.ndarray:
        return np.asarray(rep, dtype=np.int64)

    def msl_owner(self, msl: np.ndarray) -> np.ndarray:
        return self.n_reps + np.asarray(msl, dtype=np.int64)

    def kam_owner(self, kam: np.ndarray) -> np.ndarray:
        return self.n_reps + self.n_msls + np.asarray(kam, dtype=np.int64)

    def topic_code(self, name: str) -> int:
        return self.topics.index(name)


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _make_orgs(rng: np.random.Generator, n_orgs: int, n_reps: int, n_kams: int) -> Orgs:
    cw = np.array([c[5] for c in P.CITIES])
    city = rng.choice(len(P.CITIES), size=n_orgs, p=cw / cw.sum())
    names: list[str] = []
    addrs: list[str] = []
    postals: list[str] = []
    domains: list[str] = []
    seen: set[str] = set()
    for i in range(n_orgs):
        _st, st_name, cname, zip3, _tz, _w = P.CITIES[int(city[i])]
        for _attempt in range(20):
            pat = P.ORG_PATTERNS[int(rng.integers(len(P.ORG_PATTERNS)))]
            name = pat.format(
                city=cname, state_name=st_name,
                saint=P.SAINTS[int(rng.integers(len(P.SAINTS)))],
                surname=P.LAST_NAMES[int(rng.integers(len(P.LAST_NAMES)))].replace("'", ""),
                surname2=P.LAST_NAMES[int(rng.integers(len(P.LAST_NAMES)))].replace("'", ""),
            )
            if name not in seen:
                break
        else:
            name = f"{name} {i}"
        seen.add(name)
        names.append(name)
        addrs.append(f"{int(rng.integers(10, 9900))} {P.STREETS[int(rng.integers(len(P.STREETS)))]}")
        postals.append(f"{zip3}{int(rng.integers(0, 100)):02d}")
        words = [w for w in re.split(r"[^A-Za-z]+", name) if w]
        dom = "".join(w[0] for w in words).lower() + _slug(cname)[:8]
        domains.append(f"{dom}{'health' if i % 3 == 0 else 'med'}.org")
    ranks = rng.permutation(n_orgs) + 1
    w = 1.0 / ranks**0.8
    return Orgs(
        name=names, city=city, address=addrs, postal=postals, domain=domains,
        weight=w / w.sum(), rep=rng.integers(0, n_reps, n_orgs),
        kam=rng.integers(0, n_kams, n_orgs),
    )


def _make_content(rng: np.random.Generator, window: Window) -> Content:
    fmts = list(CONTENT_FORMATS)
    themes = list(P.THEMES)
    tones = list(P.TONALITIES)
    span = window.t1 - window.t0
    # base set: always approved from the first day, never expiring, covering every group
    base = [
        ("email_template", t, tn) for t, tn in zip(
            themes, ("clinical", "clinical", "promotional", "conversational", "empathetic",
                     "empathetic"), strict=True)
    ] + [
        ("detail_aid", "efficacy", "clinical"), ("detail_aid", "access", "promotional"),
        ("detail_aid", "dosing", "conversational"), ("slide_deck", "efficacy", "clinical"),
        ("article", "safety", "clinical"), ("webinar_recording", "efficacy", "clinical"),
        ("webinar_recording", "patient_support", "empathetic"), ("video", "dosing", "conversational"),
        ("infographic", "disease_awareness", "empathetic"), ("podcast", "patient_support",
                                                              "conversational"),
    ]
    n_total = int(rng.integers(40, 81))
    fmt_w = np.array([0.16, 0.14, 0.08, 0.1, 0.12, 0.12, 0.18, 0.1])
    items: list[tuple[str, str, str, str]] = [(f, t, tn, "approved") for f, t, tn in base]
    statuses = ("approved", "expired", "draft", "in_review", "withdrawn")
    st_w = np.array([0.70, 0.11, 0.06, 0.07, 0.06])
    for j in range(n_total - len(base)):
        f = fmts[int(rng.choice(len(fmts), p=fmt_w / fmt_w.sum()))]
        t = themes[int(rng.integers(len(themes)))]
        tn = tones[int(rng.integers(len(tones)))]
        # every MLR status occurs at least once
        st = statuses[j + 1] if j < 4 else statuses[int(rng.choice(len(statuses), p=st_w))]
        items.append((f, t, tn, st))
    n = len(items)
    approved_at = np.full(n, -1, dtype=np.int64)
    expires_at = np.full(n, -1, dtype=np.int64)
    c = Content(
        ids=[], title=[], fmt=np.zeros(n, np.int64), theme=np.zeros(n, np.int64),
        tone=np.zeros(n, np.int64), aesthetics=[], key_message=[], product=[], audience=[],
        language=[], length_minutes=[], status=[], approved_at=approved_at,
        expires_at=expires_at, groups={},
    )
    length_by_fmt = {
        "article": (4, 12), "video": (2, 8), "podcast": (12, 35), "detail_aid": (3, 6),
        "infographic": (1, 2), "slide_deck": (10, 25), "email_template": (1, 3),
        "webinar_recording": (30, 60),
    }
    for i, (f, t, tn, st) in enumerate(items):
        c.ids.append(f"cz-{i + 1:04d}")
        c.fmt[i] = fmts.index(f)
        c.theme[i] = themes.index(t)
        c.tone[i] = tones.index(tn)
        c.aesthetics.append(P.AESTHETICS[int(rng.integers(len(P.AESTHETICS)))])
        msgs = P.KEY_MESSAGES[t]
        msg = msgs[int(rng.integers(len(msgs)))]
        c.key_message.append(msg)
        patient = t == "patient_support" and f in ("article", "video", "infographic") \
            and i >= len(base) and rng.random() < 0.5
        c.audience.append("patient" if patient else "hcp")
        c.language.append("es" if patient and rng.random() < 0.3 else "en")
        c.product.append(None if t == "disease_awareness" else P.PRODUCT)
        label = f.replace("_", " ").title()
        c.title.append(f"{t.replace('_', ' ').title()} {label}: {msg}")
        lo, hi = length_by_fmt[f]
        c.length_minutes.append(float(rng.integers(lo, hi + 1)))
        c.status.append(st)
        if i < len(base):
            approved_at[i] = window.t0
        elif st in ("approved", "expired", "withdrawn"):
            if rng.random() < 0.4:
                approved_at[i] = window.t0
            else:
                approved_at[i] = window.t0 + int(rng.uniform(0.02, 0.8) * span)
            if st == "expired" or (st == "approved" and rng.random() < 0.25):
                lo_e = approved_at[i] + 45 * DAY
                hi_e = window.t1 - DAY
                if lo_e < hi_e:
                    expires_at[i] = int(rng.integers(lo_e, hi_e))
                elif st == "expired":
                    expires_at[i] = max(approved_at[i] + 3600, window.t1 - 3600)
    # validity per month slot and content group
    usable = np.array([s in ("approved", "expired") for s in c.status]) & (approved_at >= 0)
    hcp = np.array([a == "hcp" for a in c.audience])
    for g, gf in GROUP_FORMATS.items():
        in_g = np.isin(c.fmt, [fmts.index(x) for x in gf]) & usable
        if g in ("rep", "msl", "email", "webinar"):
            in_g &= hcp
        if g == "msl":
            in_g &= c.tone != tones.index("promotional")
        rows = []
        for s in range(window.n_slots):
            lo_t, hi_t = window.slot_starts[s], window.slot_starts[s + 1]
            # still valid three weeks after the month for follow-ups (opens, attendance)
            ok = in_g & (approved_at <= lo_t) & ((expires_at < 0)
                                                 | (expires_at >= hi_t + EXPIRY_MARGIN))
            rows.append(np.flatnonzero(ok))
        width = max(1, max(len(r) for r in rows))
        table = np.full((window.n_slots, width), -1, dtype=np.int64)
        counts = np.zeros(window.n_slots, dtype=np.int64)
        for s, r in enumerate(rows):
            table[s, : len(r)] = r
            counts[s] = len(r)
        if np.any(counts == 0):  # pragma: no cover - the base set covers every group
            raise RuntimeError(f"content group {g} has a month without approved content")
        c.groups[g] = (table, counts)
    return c


def pick_uniform(rng: np.random.Generator, content: Content, group: str,
                 slot: np.ndarray) -> np.ndarray:
    table, counts = content.groups[group]
    k = (rng.random(slot.size) * counts[slot]).astype(np.int64)
    return table[slot, k]


def _make_schedule(rng: np.random.Generator, window: Window, content: Content,
                   months: int, volume: float) -> Schedule:
    camp: list[str] = []
    scale = months / 12.0
    # email campaigns: twice a month at a fixed UTC send time (so local hours differ)
    n_em = max(1, round(24 * scale * volume))
    fr = (np.arange(n_em) + rng.uniform(0.1, 0.9, n_em)) / n_em
    em_ts = np.zeros(n_em, dtype=np.int64)
    et_hours = np.array([7, 8, 10, 12, 14, 16, 17, 18, 19, 20])
    for i in range(n_em):
        day = int(fr[i] * (window.n_days - 2)) + 1
        while window.weekday_of_day(np.asarray(day)) >= 5:
            day += 1
        day = min(day, window.n_days - 2)
        et = int(et_hours[int(rng.integers(len(et_hours)))])
        em_ts[i] = window.t0 + day * DAY + (et + 5) * 3600 + int(rng.integers(0, 1800))
    em_ts = np.minimum(em_ts, window.t1 - 6 * 3600)
    em_team = (rng.random(n_em) < 0.15).astype(np.int64)
    em_content = pick_uniform(rng, content, "email", window.slot_of(em_ts))
    em_campaign = np.zeros(n_em, dtype=np.int64)
    per_count: dict[str, int] = {}
    for i in range(n_em):
        per = window.periods[int(window.slot_of(em_ts[i:i + 1])[0])].replace("-", "")
        per_count[per] = per_count.get(per, 0) + 1
        em_campaign[i] = len(camp)
        camp.append(f"CZ-EM-{per}-{per_count[per]:02d}")
    em_reach = rng.uniform(0.55, 0.9, n_em)
    # webinars: evening ET (23:30 UTC) on weekdays
    n_wb = max(1, round(10 * scale * volume))
    wfr = (np.arange(n_wb) + rng.uniform(0.2, 0.8, n_wb)) / n_wb
    wb_ts = np.zeros(n_wb, dtype=np.int64)
    for i in range(n_wb):
        day = max(15, int(wfr[i] * (window.n_days - 3)))
        day = min(day, window.n_days - 3)
        while window.weekday_of_day(np.asarray(day)) >= 5:
            day -= 1
        wb_ts[i] = window.t0 + day * DAY + 23 * 3600 + 1800
    # chosen when the invitations go out (up to two weeks before the live session)
    wb_content = pick_uniform(rng, content, "webinar", window.slot_of(wb_ts - 15 * DAY))
    wb_team = (rng.random(n_wb) < 0.4).astype(np.int64)
    wb_campaign = np.arange(len(camp), len(camp) + n_wb)
    camp += [f"CZ-WB-{i + 1:02d}" for i in range(n_wb)]
    # congresses
    n_cg = max(1, round(3 * scale))
    cfr = np.array([0.22, 0.62, 0.86]) if n_cg == 3 else (np.arange(n_cg) + 0.5) / n_cg
    cg_day = np.clip((cfr * window.n_days).astype(np.int64), 1, max(1, window.n_days - 5))
    cg_name = [P.CONGRESSES[i % len(P.CONGRESSES)] for i in range(n_cg)]
    cg_campaign = np.arange(len(camp), len(camp) + n_cg)
    camp += [f"CONG-{i + 1:02d}" for i in range(n_cg)]
    # advisory boards
    n_ab = max(1, round(2 * scale))
    ab_day = np.clip(((np.arange(n_ab) + 0.4) / n_ab * window.n_days).astype(np.int64), 1,
                     max(1, window.n_days - 2))
    ab_campaign = np.arange(len(camp), len(camp) + n_ab)
    camp += [f"CZ-AB-{i + 1:02d}" for i in range(n_ab)]
    camp.append("CZ-REP-EMAIL")
    camp.append("CZ-SMS")
    camp.append("CZ-SPEAKER")
    return Schedule(
        campaign_ids=camp, em_ts=em_ts, em_content=em_content, em_campaign=em_campaign,
        em_team=em_team, em_reach=em_reach, wb_ts=wb_ts, wb_content=wb_content,
        wb_campaign=wb_campaign, wb_team=wb_team, cg_day=cg_day, cg_name=cg_name,
        cg_campaign=cg_campaign, ab_day=ab_day, ab_campaign=ab_campaign,
    )


def make_world(seed: int, n_hcps: int, start: str, months: int, events_per_hcp: float,
               now: datetime | None = None) -> World:
    if n_hcps < 1:
        raise SimulationError("n_hcps must be at least 1")
    if not events_per_hcp > 0:
        raise SimulationError("events_per_hcp must be positive")
    window = Window.make(start, months, now)
    if window.n_days < 28:
        raise SimulationError("the window must span at least 28 days")
    # separate streams, so the content library and schedule do not depend on n_hcps
    r_org, r_content, r_sched = (np.random.default_rng(s) for s in
                                 np.random.SeedSequence([seed, 0x5EED]).spawn(3))
    volume = events_per_hcp / 100.0
    n_orgs = int(np.clip(n_hcps // 15, 20, 600))
    n_reps = max(3, math.ceil(n_hcps / 180))
    n_msls = max(2, math.ceil(n_hcps / 1500))
    n_kams = max(1, math.ceil(n_hcps / 4000))
    orgs = _make_orgs(r_org, n_orgs, n_reps, n_kams)
    owner_ids = ([f"REP{i + 1:04d}" for i in range(n_reps)]
                 + [f"MSL{i + 1:03d}" for i in range(n_msls)]
                 + [f"KAM{i + 1:03d}" for i in range(n_kams)])
    content = _make_content(r_content, window)
    schedule = _make_schedule(r_sched, window, content, months, volume)
    topics = (list(dict.fromkeys(P.TOPIC_BY_THEME.values())) + list(P.MEDICAL_INQUIRY_TOPICS)
              + list(schedule.cg_name) + [
                  "Food and Beverage", "Speaker fee", "Consulting fee", "starter samples",
                  "advisory board",
              ])
    topics = list(dict.fromkeys(topics))
    return World(
        seed=seed, n_hcps=n_hcps, window=window, volume=volume, orgs=orgs, n_reps=n_reps,
        n_msls=n_msls, n_kams=n_kams, owner_ids=owner_ids, content=content,
        schedule=schedule, topics=topics,
    )
