"""Persons (true identities) and their source records in hcps.csv, one chunk at a time."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from hcpjourney.contract.npi import make_npi
from hcpjourney.simulate import params as P
from hcpjourney.simulate.response import PREF_CHANNELS, ResponseModel, calibrate_top_f2f
from hcpjourney.simulate.world import DAY, Orgs, World

SRC_CRM, SRC_OP, SRC_EVENTS, SRC_WEB, SRC_SURVEY = range(5)
CH = {c: i for i, c in enumerate(PREF_CHANNELS)}
_PROFESSIONS = [p[0] for p in P.PROFESSION_MIX]


@dataclass
class People:
    """One chunk of true persons, as arrays (index = position in the chunk)."""

    gidx: np.ndarray  # global person index
    seg: np.ndarray  # primary segment
    seg2: np.ndarray  # secondary segment or -1
    W: np.ndarray  # n x S segment weights
    gender: np.ndarray
    first: list[str]
    middle: list[str]
    last: list[str]
    profession: np.ndarray  # index in _PROFESSIONS
    credential: list[str]
    specialty: list[str]
    prescriber: np.ndarray
    cardio: np.ndarray
    decile: np.ndarray  # 1..10, 0 = none
    kol: np.ndarray
    org: np.ndarray
    city: np.ndarray
    tz: np.ndarray  # hours
    npi: list[str]
    work_email: list[str]
    personal_email: list[str]
    phone: list[str]
    overwhelmed: np.ndarray
    fatigue: np.ndarray
    intercept: np.ndarray
    offset: np.ndarray  # n x C person channel offsets (beyond segment preference)
    pref: np.ndarray  # n x C total channel preference = W @ channel_pref + offset
    top_channel: np.ndarray
    has: np.ndarray  # n x 5 bool, per source
    rep: np.ndarray
    msl: np.ndarray
    kam: np.ndarray
    namesake_of: np.ndarray  # global index of the person whose name was copied, or -1

    @property
    def n(self) -> int:
        return int(self.gidx.size)

    @property
    def decile_or_mid(self) -> np.ndarray:
        return np.where(self.decile > 0, self.decile, 5.5).astype(float)


def _choice_weighted(rng: np.random.Generator, pairs: tuple[tuple[str, float], ...],
                     size: int) -> list[str]:
    names = [p[0] for p in pairs]
    w = np.array([p[1] for p in pairs], dtype=float)
    idx = rng.choice(len(names), size=size, p=w / w.sum())
    return [names[int(i)] for i in idx]


def make_people(rng: np.random.Generator, world: World, model: ResponseModel,
                gidx: np.ndarray) -> People:
    n = gidx.size
    prm = model.params
    S = len(model.segments)
    # profession, credential, specialty
    pw = np.array([p[1] for p in P.PROFESSION_MIX])
    prof = rng.choice(len(pw), size=n, p=pw / pw.sum())
    credential = [""] * n
    specialty = [""] * n
    for k, (pname, _w, creds) in enumerate(P.PROFESSION_MIX):
        idx = np.flatnonzero(prof == k)
        if idx.size == 0:
            continue
        creds_k = _choice_weighted(rng, creds, idx.size)
        specs_k = _choice_weighted(rng, P.SPECIALTY_MIX[pname], idx.size)
        for j, i in enumerate(idx.tolist()):
            credential[i] = creds_k[j]
            specialty[i] = specs_k[j]
    prescriber = np.isin(prof, [_PROFESSIONS.index(p) for p in P.PRESCRIBERS])
    cardio = np.array([s in P.CARDIO_SPECIALTIES for s in specialty])
    physician = prof == _PROFESSIONS.index("physician")
    dec_raw = rng.normal(5.0 + 1.4 * cardio - 1.2 * (~physician), 2.3)
    decile = np.where(prescriber, np.clip(np.rint(dec_raw), 1, 10), 0).astype(np.int64)
    kol_score = 0.45 * decile + 1.3 * cardio + rng.gumbel(size=n)
    kol = physician & (kol_score >= np.quantile(kol_score[physician], 0.936)
                       if physician.any() else False)
    # segments: KOLs lean peer-influenced / evidence-driven
    shares = np.asarray(prm["segment_shares"], dtype=float)
    kol_shares = np.array([0.15, 0.10, 0.35, 0.05, 0.35])
    u = rng.random(n)
    seg = np.where(
        kol,
        np.searchsorted(np.cumsum(kol_shares / kol_shares.sum()), u, side="right"),
        np.searchsorted(np.cumsum(shares / shares.sum()), u, side="right"),
    ).clip(0, S - 1)
    mixed = rng.random(n) < prm["mixed_share"]
    seg2 = np.where(mixed, (seg + rng.integers(1, S, n)) % S, -1)
    lo, hi = prm["mixed_primary_weight"]
    w1 = np.where(mixed, rng.uniform(lo, hi, n), 1.0)
    W = np.zeros((n, S))
    W[np.arange(n), seg] = w1
    W[np.flatnonzero(mixed), seg2[mixed]] += 1.0 - w1[mixed]
    # names
    gender = rng.integers(0, 2, n)
    fi = rng.integers(0, len(P.FEMALE_FIRST), n)
    mi = rng.integers(0, len(P.MALE_FIRST), n)
    first = [P.MALE_FIRST[int(mi[i])] if gender[i] else P.FEMALE_FIRST[int(fi[i])]
             for i in range(n)]
    has_mid = rng.random(n) < 0.6
    mids = rng.integers(0, len(P.MIDDLE_NAMES), n)
    middle = [P.MIDDLE_NAMES[int(mids[i])] if has_mid[i] else "" for i in range(n)]
    # Zipf-like surname frequencies
    ln_w = 1.0 / (np.arange(len(P.LAST_NAMES)) + 3.0) ** 0.7
    li = rng.choice(len(P.LAST_NAMES), size=n, p=ln_w / ln_w.sum())
    last = [P.LAST_NAMES[int(i)] for i in li]
    # organisation and place
    org = rng.choice(len(world.orgs.weight), size=n, p=world.orgs.weight)
    city = world.orgs.city[org]
    # namesakes: copy first + last name of another person in the chunk
    namesake_of = np.full(n, -1, dtype=np.int64)
    if n >= 4:
        k = max(2, round(0.012 * n))
        src = rng.choice(n, size=k, replace=False)
        dst = rng.choice(n, size=k, replace=False)
        used: set[int] = set()
        for a, b in zip(src.tolist(), dst.tolist(), strict=True):
            if a == b or a in used or b in used:
                continue
            used.update((a, b))
            first[b], last[b], gender[b] = first[a], last[a], gender[a]
            namesake_of[b] = int(gidx[a])
            if city[b] == city[a]:
                other = np.flatnonzero(world.orgs.city != city[a])
                if other.size:
                    org[b] = int(other[int(rng.integers(other.size))])
                    city[b] = world.orgs.city[org[b]]
            if specialty[b] == specialty[a] and prescriber[b]:
                alts = [s for s, _ in P.SPECIALTY_MIX[_PROFESSIONS[int(prof[b])]]
                        if s != specialty[a]]
                specialty[b] = alts[int(rng.integers(len(alts)))]
                cardio[b] = specialty[b] in P.CARDIO_SPECIALTIES
    tz = np.array([P.CITIES[int(c)][4] for c in city], dtype=np.int64)
    # identifiers: a bijection of the global index keeps NPIs unique across chunks
    body = 100000000 + (gidx.astype(np.int64) * 7919 + 1237 * (world.seed % 100003)) % 900000000
    npi = [make_npi(int(b)) for b in body]
    work_email = []
    personal_email = []
    phone = []
    pe_dom = rng.integers(0, len(P.PERSONAL_EMAIL_DOMAINS), n)
    pe_num = rng.integers(1, 99, n)
    area = rng.integers(201, 990, n)
    line = rng.integers(0, 10000, n)
    for i in range(n):
        f = "".join(ch for ch in first[i].lower() if ch.isalpha())
        la = "".join(ch for ch in last[i].lower() if ch.isalpha())
        work_email.append(f"{f[:1]}{la}@{world.orgs.domain[int(org[i])]}")
        sep = "." if pe_num[i] % 2 else ""
        num = str(int(pe_num[i])) if pe_num[i] % 3 else ""
        personal_email.append(f"{f}{sep}{la}{num}@{P.PERSONAL_EMAIL_DOMAINS[int(pe_dom[i])]}")
        phone.append(f"({int(area[i])}) 555-{int(line[i]):04d}")
    # behavioural traits
    pov = W @ np.asarray(prm["overwhelmed_prob"], dtype=float)
    overwhelmed = rng.random(n) < pov
    shape = float(prm["fatigue_shape"])
    fmean = np.where(overwhelmed, prm["fatigue_overwhelmed"], prm["fatigue_other"])
    fatigue = rng.gamma(shape, fmean / shape)
    intercept = rng.normal(0.0, prm["person_intercept_sd"], n)
    cp = model.channel_pref()
    seg_pref = W @ cp
    offset = rng.normal(0.0, prm["person_channel_sd"], (n, len(PREF_CHANNELS)))
    pref = seg_pref + offset
    # calibrate the single most preferred channel: f2f_visit with a segment-given probability
    f2f = CH["f2f_visit"]
    top_f2f = rng.random(n) < (W @ np.asarray(prm["top_f2f_prob"], dtype=float))
    m_lo, m_hi = prm["top_f2f_margin"]
    margin = rng.uniform(float(m_lo), float(m_hi), n)
    new_f2f = calibrate_top_f2f(pref, top_f2f, margin)
    offset[:, f2f] += new_f2f - pref[:, f2f]
    pref[:, f2f] = new_f2f
    top_channel = pref.argmax(axis=1)
    # source systems that know the person (1..3 records)
    seg_events = np.array([0.25, 0.45, 0.6, 0.15, 0.4])
    seg_web = np.array([0.15, 0.75, 0.35, 0.15, 0.45])
    p_crm = np.where(prescriber, np.where(cardio, 0.92, 0.85), 0.5)
    p_op = np.where(prescriber, 0.12 + 0.025 * decile, 0.0)
    p_op = np.where(kol, 0.95, p_op)
    p_ev = np.where(kol, 0.85, W @ seg_events)
    p_web = W @ seg_web
    p_svy = np.full(n, 0.18)
    has = rng.random((n, 5)) < np.stack([p_crm, p_op, p_ev, p_web, p_svy], axis=1)
    for row in np.flatnonzero(has.sum(axis=1) > 3).tolist():
        cand = [j for j in range(1, 5) if has[row, j]]
        rng.shuffle(cand)
        for j in cand[: int(has[row].sum()) - 3]:
            has[row, j] = False
    none = has.sum(axis=1) == 0
    has[none, SRC_WEB] = rng.random(int(none.sum())) < 0.5
    has[none & ~has[:, SRC_WEB], SRC_EVENTS] = True
    # field force
    rep = world.orgs.rep[org]
    kam = world.orgs.kam[org]
    msl = (city * 7 + 3) % world.n_msls
    return People(
        gidx=gidx, seg=seg, seg2=seg2, W=W, gender=gender, first=first, middle=middle, last=last,
        profession=prof, credential=credential, specialty=specialty, prescriber=prescriber,
        cardio=cardio, decile=decile, kol=kol, org=org, city=city, tz=tz, npi=npi,
        work_email=work_email, personal_email=personal_email, phone=phone,
        overwhelmed=overwhelmed, fatigue=fatigue, intercept=intercept, offset=offset,
        pref=pref, top_channel=top_channel, has=has, rep=rep, msl=msl, kam=kam,
        namesake_of=namesake_of,
    )


# ---------------------------------------------------------------------------------------
# source records
# ---------------------------------------------------------------------------------------

_KEYS = "qwertyuiopasdfghjklzxcvbnm"


def _typo(r: random.Random, s: str) -> str:
    letters = [i for i, ch in enumerate(s) if ch.isalpha()]
    if len(letters) < 4:
        return s
    i = letters[r.randrange(1, len(letters))]
    op = r.randrange(4)
    ch = s[i]
    if op == 0:  # substitute
        new = _KEYS[r.randrange(len(_KEYS))]
        if new == ch.lower():
            new = "e" if ch.lower() != "e" else "a"
        return s[:i] + (new.upper() if ch.isupper() else new) + s[i + 1:]
    if op == 1:  # delete
        return s[:i] + s[i + 1:]
    if op == 2:  # insert (double a letter)
        return s[:i] + ch + s[i:]
    j = i - 1 if i > 0 else i + 1  # transpose with the previous character
    if not s[j].isalpha():
        return s[:i] + s[i + 1:]
    a, b = sorted((i, j))
    return s[:a] + s[b] + s[a] + s[b + 1:]


def _punct(r: random.Random, s: str) -> str:
    if "'" in s:
        return s.replace("'", "" if r.random() < 0.6 else " ")
    if "-" in s:
        return s.replace("-", " ") if r.random() < 0.6 else s.split("-")[0]
    if " " in s:
        return s.replace(" ", "")
    return s


def _nick(r: random.Random, s: str) -> str:
    opts = P.NICKNAMES.get(s)
    return opts[r.randrange(len(opts))] if opts else s


def _org_variant(r: random.Random, s: str) -> str:
    out = s
    if "St. " in out and r.random() < 0.5:
        out = out.replace("St. ", "Saint ")
    if out.endswith(" PLLC"):
        out = out[:-5]
    if "&" in out and r.random() < 0.5:
        out = out.replace("&", "and")
    if r.random() < 0.2:
        out = out.replace("'", "")
    return out


@dataclass
class Records:
    ids: list[str]
    person: np.ndarray  # chunk-local person index
    source: np.ndarray  # source code
    rows: dict[str, list[object]]  # hcps.csv columns
    of: np.ndarray  # 5 x n: record index per source, -1 when absent
    rep_record: np.ndarray  # representative record per person (crm if any)


class IdCounters:
    """Global, chunk-order record counters (deterministic per seed)."""

    def __init__(self, seed: int) -> None:
        self.count = dict.fromkeys(P.SOURCES, 0)
        self.salt = (seed * 2654435761) % (1 << 24)

    def next_id(self, source: str) -> str:
        c = self.count[source]
        self.count[source] = c + 1
        if source == "crm":
            return f"crm:{c + 1:06d}"
        if source == "open_payments":
            return f"op:{1000000 + (c * 48271 + self.salt) % 9000000}"
        if source == "events":
            return f"evt:{c + 1:07d}"
        if source == "web":
            width = 6 if c < (1 << 24) else 10
            mod = (1 << 24) if width == 6 else (1 << 40)
            return f"web:{(c * 2654435761 + self.salt) % mod:0{width}x}"
        return f"svy:{c + 1:06d}"


def make_records(rng: np.random.Generator, world: World, people: People,
                 counters: IdCounters, hcps_columns: list[str]) -> Records:
    r = random.Random(int(rng.integers(0, 2**63 - 1)))
    win = world.window
    n = people.n
    rows: dict[str, list[object]] = {c: [] for c in hcps_columns}
    ids: list[str] = []
    person: list[int] = []
    source: list[int] = []
    of = np.full((5, n), -1, dtype=np.int64)
    orgs = world.orgs
    # records are issued per source in a shuffled person order so ids carry no identity
    order = [rng.permutation(n) for _ in range(5)]
    for s_idx, src in enumerate(P.SOURCES):
        for i in order[s_idx]:
            i = int(i)
            if not people.has[i, s_idx]:
                continue
            rid = counters.next_id(src)
            of[s_idx, i] = len(ids)
            ids.append(rid)
            person.append(i)
            source.append(s_idx)
            rec = _record_fields(r, src, people, i, orgs)
            if src == "crm":
                upd = win.t0 + r.randrange(0, 6 * 3600)
            else:
                upd = win.t0 + r.randrange(DAY, max(2 * DAY, win.t1 - win.t0 - DAY))
            rec["updated_at"] = upd
            rec["record_id"] = rid
            rec["source"] = src
            for c in hcps_columns:
                rows[c].append(rec.get(c))
    rep_record = np.where(of[SRC_CRM] >= 0, of[SRC_CRM], of.max(axis=0))
    for s_idx in (SRC_OP, SRC_EVENTS, SRC_WEB, SRC_SURVEY):
        rep_record = np.where(rep_record >= 0, rep_record, of[s_idx])
    return Records(ids=ids, person=np.asarray(person, dtype=np.int64),
                   source=np.asarray(source, dtype=np.int64), rows=rows, of=of,
                   rep_record=rep_record)


def _record_fields(r: random.Random, src: str, pp: People, i: int,
                   orgs: Orgs) -> dict[str, object]:
    first, middle, last = pp.first[i], pp.middle[i], pp.last[i]
    o = int(pp.org[i])
    st, _sn, city, _z, _tz, _w = P.CITIES[int(pp.city[i])]
    prof = _PROFESSIONS[int(pp.profession[i])]
    dec = int(pp.decile[i]) if pp.decile[i] > 0 else None
    rec: dict[str, object] = {}
    f: str | None

    def mid(p_full: float, p_init: float) -> str | None:
        if not middle:
            return None
        u = r.random()
        if u < p_full:
            return middle
        if u < p_full + p_init:
            return middle[0] + ("." if r.random() < 0.5 else "")
        return None

    if src == "crm":
        f = _nick(r, first) if r.random() < 0.04 else first
        la = _typo(r, last) if r.random() < 0.02 else last
        u = r.random()
        email = pp.work_email[i] if u < 0.85 else (pp.personal_email[i] if u < 0.95 else None)
        rec.update(
            npi=pp.npi[i], first_name=f, middle_name=mid(0.4, 0.4), last_name=la,
            credential=pp.credential[i], profession=prof, specialty=pp.specialty[i],
            organization=orgs.name[o], address_line1=orgs.address[o], city=city, state=st,
            postal_code=orgs.postal[o], country="US", email=email,
            phone=pp.phone[i] if r.random() < 0.8 else None, decile=dec,
            is_kol=bool(pp.kol[i]),
        )
    elif src == "open_payments":
        la = _typo(r, last) if r.random() < 0.03 else last
        rec.update(
            npi=pp.npi[i], first_name=first.upper(), middle_name=(mid(0.5, 0.3) or "").upper()
            or None, last_name=la.upper(), profession=prof,
            specialty=P.OPEN_PAYMENTS_SPECIALTY.get(pp.specialty[i], pp.specialty[i]),
            address_line1=orgs.address[o].upper(), city=city.upper(), state=st,
            postal_code=orgs.postal[o], country="US",
        )
    elif src in ("events", "web", "survey"):
        p_nick = {"events": 0.35, "web": 0.3, "survey": 0.15}[src]
        f = _nick(r, first) if r.random() < p_nick else first
        u = r.random()
        if src == "web" and u < 0.02:
            f = None
        elif src in ("events", "web") and u < (0.05 if src == "events" else 0.12):
            f = first[0] + ("." if r.random() < 0.5 else "")
        la = last
        if r.random() < {"events": 0.06, "web": 0.07, "survey": 0.08}[src]:
            la = _typo(r, la)
        if r.random() < 0.3:
            la = _punct(r, la)
        if src == "web":
            u = r.random()
            if u < 0.1:
                la, f = la.lower(), (f.lower() if f else f)
            elif u < 0.13:
                la, f = la.upper(), (f.upper() if f else f)
        elif src == "events" and r.random() < 0.05:
            la, f = la.lower(), (f.lower() if f else f)
        p_npi = {"events": 0.15, "web": 0.05, "survey": 0.1}[src]
        u = r.random()
        if src == "web":
            email = pp.personal_email[i] if u < 0.6 else (pp.work_email[i] if u < 0.95 else None)
        elif src == "events":
            email = pp.personal_email[i] if u < 0.5 else (pp.work_email[i] if u < 0.9 else None)
        else:
            email = pp.work_email[i] if u < 0.4 else (pp.personal_email[i] if u < 0.7 else None)
        probs = {
            "events": dict(cred=0.5, prof=0.6, spec=0.7, org=0.6, city=0.8, state=0.85,
                           postal=0.3, country=0.9, phone=0.3),
            "web": dict(cred=0.3, prof=0.4, spec=0.5, org=0.2, city=0.4, state=0.6,
                        postal=0.5, country=0.6, phone=0.1),
            "survey": dict(cred=0.2, prof=0.7, spec=0.8, org=0.1, city=0.5, state=0.7,
                           postal=0.1, country=0.5, phone=0.0),
        }[src]
        rec.update(
            npi=pp.npi[i] if r.random() < p_npi else None,
            first_name=f,
            middle_name=mid(0.0, 0.15) if src == "events" else None,
            last_name=la,
            credential=pp.credential[i] if r.random() < probs["cred"] else None,
            profession=prof if r.random() < probs["prof"] else None,
            specialty=pp.specialty[i] if r.random() < probs["spec"] else None,
            organization=_org_variant(r, orgs.name[o]) if r.random() < probs["org"] else None,
            city=city if r.random() < probs["city"] else None,
            state=st if r.random() < probs["state"] else None,
            postal_code=orgs.postal[o] if r.random() < probs["postal"] else None,
            country="US" if r.random() < probs["country"] else None,
            email=email,
            phone=pp.phone[i] if r.random() < probs["phone"] else None,
        )
    return rec
