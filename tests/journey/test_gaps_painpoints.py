"""Designed vs measured touchpoints, channel gaps and pain points, against plain-Python
recomputations over the warehouse rows of a simulated world (with its true segments)."""

from __future__ import annotations

import csv
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.errors import HcpjError
from hcpjourney.journey import gaps as G
from hcpjourney.journey import painpoints as P
from hcpjourney.journey import stages as S
from hcpjourney.journey.model import JourneyMap, load_journey
from hcpjourney.simulate import simulate

N_HCPS = 400
US = timedelta(microseconds=1)
FAILED = {"declined", "bounced", "unsubscribed"}
CONTACT = {"sent", "completed", "declined"}
RESPONSE = {"opened", "clicked", "attended", "replied", "completed", "downloaded", "viewed",
            "visited", "requested"}
ENGAGE = {"email": "opened", "sms": "clicked", "webinar": "registered", "f2f_visit": "completed",
          "remote_visit": "completed", "phone": "completed", "msl_meeting": "completed"}


class World:
    def __init__(self, root: Path) -> None:
        drop = root / "drop"
        simulate(N_HCPS, drop, seed=3, events_per_hcp=60.0)
        self.ws = services.init_workspace(root / "ws")
        services.ingest(self.ws, [drop])
        services.build(self.ws)
        self.jmap = load_journey(drop / "journey.yaml")
        self.eng = engines.connect(self.ws)
        e = self.eng
        S.build_journey(e, self.jmap)
        self.entries_t = e.table(S.STAGE_ENTRIES)
        self.entries = e.to_pyarrow(self.entries_t).to_pylist()
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in e.to_pyarrow(e.table("events")).to_pylist():
            self.events[r["hcp_id"]].append(r)
        self.hcp_of = {r["record_id"]: r["hcp_id"]
                       for r in e.to_pyarrow(e.table("identities")).to_pylist()}
        self.golden = {r["hcp_id"]: r for r in e.to_pyarrow(e.table("golden")).to_pylist()}
        self.segment = self._true_segments(drop)

    def _true_segments(self, drop: Path) -> dict[str, str]:
        """A segments table from the simulator's truth: the HCP's person's segment weights."""
        truth = drop / "_truth"
        with open(truth / "persons.csv", encoding="utf-8") as fh:
            person = {r["record_id"]: r["person_id"] for r in csv.DictReader(fh)}
        with open(truth / "segments.csv", encoding="utf-8") as fh:
            seg = {r["person_id"]: r for r in csv.DictReader(fh)}
        votes: dict[str, Counter[str]] = defaultdict(Counter)
        for rec, h in self.hcp_of.items():
            votes[h][person[rec]] += 1
        rows = []
        for h, c in votes.items():
            p = seg[c.most_common(1)[0][0]]
            rows += [{"hcp_id": h, "segment": k[2:], "probability": float(v)}
                     for k, v in p.items() if k.startswith("w_") and float(v) > 0]
        self.eng.create(S.SEGMENTS, ibis.memtable(rows))
        best: dict[str, tuple[float, str]] = {}
        for r in rows:
            cur = best.get(r["hcp_id"])
            if cur is None or r["probability"] > cur[0] or (
                    r["probability"] == cur[0] and r["segment"] < cur[1]):
                best[r["hcp_id"]] = (r["probability"], r["segment"])
        return {h: v[1] for h, v in best.items()}

    def entry_map(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {(r["hcp_id"], r["stage_index"]): r for r in self.entries}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("gaps_world"))
    yield w
    w.eng.close()


# ------------------------------------------------------------ lead-ins
def ref_lead_in(world: World, lookback_days: float = 90) -> dict[tuple[int, str, str | None],
                                                                  tuple[set[str], int]]:
    """(stage_index, channel, action or None) -> (HCPs, events) over the lead-in windows."""
    at = world.entry_map()
    out: dict[tuple[int, str, str | None], tuple[set[str], int]] = {}

    def add(key: tuple[int, str, str | None], h: str) -> None:
        hs, n = out.get(key, (set(), 0))
        hs.add(h)
        out[key] = (hs, n + 1)

    by_hcp: dict[str, list[tuple[int, tuple[Any, ...]]]] = defaultdict(list)
    for (h, k), e in sorted(at.items()):
        key = (e["entered_at"], 0, e["event_id"]) if e["event_id"] else (e["entered_at"], 1, "")
        by_hcp[h].append((k, key))
    for h, keys in by_hcp.items():
        first_at = at[(h, 1)]["entered_at"]
        for r in world.events.get(h, []):
            if r["action"] in FAILED or r["ts"] < first_at - timedelta(days=lookback_days):
                continue
            ev_key = (r["ts"], 0, r["event_id"])
            # the first stage (in stage order) whose entry is at or after the event
            k = next((k for k, key in keys if ev_key <= key), None)
            if k is None:
                continue
            add((k, r["channel"], r["action"]), h)
            add((k, r["channel"], None), h)
    return out


@pytest.mark.parametrize("lookback", [90, 10])
def test_measured_touchpoints_match_the_reference(world: World, lookback: int) -> None:
    ref = ref_lead_in(world, lookback)
    entrants = Counter(r["stage_index"] for r in world.entries)
    got = world.eng.to_pyarrow(
        G.measured_touchpoints(world.eng, world.entries_t, lookback_days=lookback)).to_pylist()
    assert {(r["stage_index"], r["channel"], r["action"]): (r["hcps"], r["events"]) for r in got} == {
        k: (len(v[0]), v[1]) for k, v in ref.items()}
    for r in got:
        assert r["entrants"] == entrants[r["stage_index"]]
        assert r["share"] == pytest.approx(r["hcps"] / r["entrants"])
        assert r["stage"] == world.jmap.stage_ids[r["stage_index"] - 1]
    # every non-outcome entry's own event is in its lead-in
    assert all(ref[(k, ch, None)] for (k, ch, _a) in ref)


def test_designed_vs_measured_classifies_every_touchpoint(world: World) -> None:
    ref = ref_lead_in(world)
    entrants = Counter(r["stage_index"] for r in world.entries)
    min_share, frequent = 0.05, 0.25
    got = world.eng.to_pyarrow(G.designed_vs_measured(world.eng, world.jmap, world.entries_t,
                                                      min_share=min_share,
                                                      frequent_share=frequent)).to_pylist()
    expected = []
    for k, stage in enumerate(world.jmap.stages, start=1):
        n = entrants[k]
        designed = world.jmap.designed_touchpoints(stage.id)
        for d in designed:
            hcps = len(ref.get((k, d.channel, d.action), (set(), 0))[0]) if d.channel else 0
            status = ("unmatched" if d.channel is None
                      else "used" if hcps / n >= min_share else "unused")
            expected.append((stage.id, d.text, True, hcps, status))
        chans = {d.channel for d in designed}
        for (kk, ch, act), (hs, _) in ref.items():
            if kk == k and act is None and ch not in chans:
                status = "undesigned_frequent" if len(hs) / n >= frequent else "undesigned"
                expected.append((stage.id, ch, False, len(hs), status))
    assert sorted((r["stage"], r["touchpoint"], r["designed"], r["hcps"], r["status"]) for r in got) \
        == sorted(expected)
    statuses = {r["status"] for r in got}
    assert {"used", "unmatched", "undesigned_frequent"} <= statuses
    # the decision stage's designed "rep visit" is the f2f visit that most often leads in
    rep = next(r for r in got if r["stage"] == "decision" and r["touchpoint"] == "rep visit")
    assert rep["channel"] == "f2f_visit" and rep["status"] == "used" and rep["share"] > 0.5


# ------------------------------------------------------------ channel gap
def ref_channel_gap(world: World, group: dict[str, str], min_contacts: int, min_gap: float
                    ) -> dict[tuple[str, str], dict[str, Any]]:
    cnt: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for h, rows in world.events.items():
        g = group.get(h, S.UNKNOWN)
        for r in rows:
            ch = r["channel"]
            if ch in ("payment", "sample"):
                continue
            outbound = r["direction"] in (None, "outbound")
            c = cnt[(g, ch)]
            if outbound and r["action"] in CONTACT:
                c[0] += 1
            if (ENGAGE.get(ch) == r["action"]) or (ch not in ENGAGE and outbound
                                                   and r["action"] in RESPONSE):
                c[1] += 1
    kept = {k: v for k, v in cnt.items() if v[0] >= min_contacts}
    out = {}
    for g in {k[0] for k in kept}:
        mine = {k: v for k, v in kept.items() if k[0] == g}
        tc = sum(v[0] for v in mine.values())
        tr = sum(v[1] for v in mine.values())
        rates = {k: v[1] / v[0] for k, v in mine.items()}
        trate = sum(rates.values())
        for k, (c, r) in mine.items():
            share = c / tc
            rshare = rates[k] / trate
            gap = rshare - share
            out[k] = {"contacts": c, "responses": r, "response_rate": rates[k],
                      "lift": rates[k] / (tr / tc), "contact_share": share, "response_share": rshare,
                      "gap": gap, "status": "under_used" if gap >= min_gap
                      else "over_used" if gap <= -min_gap else "balanced"}
    return out


@pytest.mark.parametrize("by", ["segment", "profession"])
def test_channel_gap_matches_the_reference(world: World, by: str) -> None:
    group = world.segment if by == "segment" else {
        h: g["profession"] for h, g in world.golden.items() if g["profession"] is not None}
    ref = ref_channel_gap(world, group, 20, 0.05)
    got = world.eng.to_pyarrow(G.channel_gap(world.eng, world.jmap, by=by)).to_pylist()
    assert {(r[by], r["channel"]) for r in got} == set(ref)
    for r in got:
        x = ref[(r[by], r["channel"])]
        assert (r["contacts"], r["responses"], r["status"]) == (
            x["contacts"], x["responses"], x["status"])
        for c in ("response_rate", "lift", "contact_share", "response_share", "gap"):
            assert r[c] == pytest.approx(x[c], rel=1e-9, abs=1e-12), c
    if by == "segment":
        # the default grouping is the segment once a segments table exists
        default = world.eng.to_pyarrow(G.channel_gap(world.eng, world.jmap)).to_pylist()
        assert len(default) == len(got)
        for a, b in zip(default, got, strict=True):  # parallel float sums: last-digit noise
            assert a.keys() == b.keys()
            for c, v in b.items():
                assert a[c] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), c
        rate = {(r["segment"], r["channel"]): r["response_rate"] for r in got}
        # the simulator's digital self-educators open e-mail far more than traditional HCPs,
        # and the overwhelmed open least
        assert rate[("digital_self_educator", "email")] > 1.5 * rate[("traditional_in_person", "email")]
        assert rate[("overwhelmed_low_engagement", "email")] == min(
            v for (s, ch), v in rate.items() if ch == "email")


# ------------------------------------------------------------ stage health, stalled
def _dwell(world: World) -> dict[int, list[int]]:
    at = world.entry_map()
    out: dict[int, list[int]] = defaultdict(list)
    for (h, k), e in at.items():
        nxt = at.get((h, k + 1))
        if nxt is not None:
            out[k].append((nxt["entered_at"] - e["entered_at"]) // US)
    return out


def test_stage_health_matches_the_reference(world: World) -> None:
    dwell = _dwell(world)
    n = Counter(r["stage_index"] for r in world.entries)
    got = world.eng.to_pyarrow(P.stage_health(world.entries_t, world.jmap, min_conversion=0.5,
                                              max_median_days=40, percentile=80)).to_pylist()
    k_last = len(world.jmap.stages)
    assert [r["stage"] for r in got] == world.jmap.stage_ids
    for r in got:
        k = r["stage_index"]
        assert r["hcps"] == n[k]
        if k == k_last:
            assert r["moved_on"] is None and r["conversion_to_next"] is None
            assert not r["low_conversion"] and not r["long_dwell"]
            continue
        assert r["moved_on"] == len(dwell[k]) == n[k + 1]
        assert r["conversion_to_next"] == pytest.approx(n[k + 1] / n[k])
        med = statistics.median(dwell[k]) / 86_400e6
        p80 = float(np.percentile(np.array(dwell[k], dtype=float), 80)) / 86_400e6
        assert r["median_dwell_days"] == pytest.approx(med, abs=1e-9)
        assert r["p_dwell_days"] == pytest.approx(p80, abs=1e-9)
        assert r["low_conversion"] == (n[k + 1] / n[k] < 0.5)
        assert r["long_dwell"] == (med > 40)
    assert any(r["low_conversion"] for r in got) and any(r["long_dwell"] for r in got)


@pytest.mark.parametrize("percentile", [90, 50])
def test_stalled_hcps_match_the_reference(world: World, percentile: int) -> None:
    as_of = P.data_end(world.eng)
    assert as_of == max(r["ts"] for rows in world.events.values() for r in rows)
    dwell = _dwell(world)
    thr = {k: float(np.percentile(np.array(v, dtype=float), percentile)) for k, v in dwell.items()}
    last: dict[str, dict[str, Any]] = {}
    for r in world.entries:
        if r["hcp_id"] not in last or r["stage_index"] > last[r["hcp_id"]]["stage_index"]:
            last[r["hcp_id"]] = r
    window = world.jmap.conversion_window_days
    assert window is not None
    expected = {}
    for h, r in last.items():
        k = r["stage_index"]
        if k == len(world.jmap.stages) or k not in thr:
            continue
        in_us = (as_of - r["entered_at"]) // US
        if in_us > thr[k]:
            expected[h] = (r["stage"], in_us / 86_400e6, thr[k] / 86_400e6,
                           r["entered_at"] + timedelta(days=window) < as_of)
    got = world.eng.to_pyarrow(P.stalled_hcps(world.entries_t, world.jmap, as_of,
                                              percentile=percentile)).to_pylist()
    assert len(got) == len(expected) > 0
    for r in got:
        stage, days, t, closed = expected[r["hcp_id"]]
        assert r["stage"] == stage and r["window_closed"] == closed
        assert r["days_in_stage"] == pytest.approx(days, abs=1e-9)
        assert r["threshold_days"] == pytest.approx(t, abs=1e-9)
    assert [r["days_in_stage"] for r in got] == sorted((r["days_in_stage"] for r in got), reverse=True)
    with pytest.raises(HcpjError, match="percentile"):
        P.stalled_hcps(world.entries_t, world.jmap, as_of, percentile=100)


# ------------------------------------------------------------ feedback
def _feedback(world: World) -> list[dict[str, Any]]:
    rows = world.eng.to_pyarrow(world.eng.table("feedback")).to_pylist()
    return [dict(r, hcp_id=world.hcp_of[r["record_id"]]) for r in rows if r["record_id"] in world.hcp_of]


def _stage_at(world: World, h: str, ts: datetime) -> int:
    ks = [r["stage_index"] for r in world.entries if r["hcp_id"] == h and r["entered_at"] <= ts]
    return max(ks, default=0)


def test_negative_feedback_is_tied_to_stage_and_touchpoint(world: World) -> None:
    channel = {r["event_id"]: r["channel"] for rows in world.events.values() for r in rows}
    th = {"nps": 6, "csat": 2}
    fb = _feedback(world)
    neg = {r["response_id"]: (r["hcp_id"], _stage_at(world, r["hcp_id"], r["ts"]),
                              channel.get(r["event_id"]))
           for r in fb if r["instrument"] in th and r["score"] is not None
           and r["score"] <= th[r["instrument"]]}
    got = world.eng.to_pyarrow(P.negative_feedback(world.eng, world.entries_t)).to_pylist()
    assert {r["response_id"]: (r["hcp_id"], r["stage_index"], r["channel"]) for r in got} == neg
    assert len(neg) > 20 and {k for _, k, _ in neg.values()} >= {0, 1}
    names = ["none", *world.jmap.stage_ids]
    assert all(r["stage"] == names[r["stage_index"]] for r in got)

    summary: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in fb:
        if r["instrument"] in th and r["score"] is not None:
            s = summary[(_stage_at(world, r["hcp_id"], r["ts"]), channel.get(r["event_id"]) or "none")]
            s[0] += 1
            s[1] += r["score"] <= th[r["instrument"]]
    got_s = world.eng.to_pyarrow(P.negative_feedback_summary(world.eng, world.entries_t)).to_pylist()
    assert {(r["stage_index"], r["channel"]): [r["responses"], r["negative"]] for r in got_s} == summary
    # a named survey counts once given a threshold
    custom = world.eng.to_pyarrow(P.negative_feedback(
        world.eng, world.entries_t, thresholds={"hcp_attitudes": 1})).to_pylist()
    assert len(custom) == sum(1 for r in fb if r["instrument"] == "hcp_attitudes"
                              and r["score"] is not None and r["score"] <= 1) > 0


# ------------------------------------------------------------ contact fatigue
def _period(ts: datetime, period: str) -> date:
    d = ts.date()
    return d.replace(day=1) if period == "month" else d - timedelta(days=d.weekday())


@pytest.mark.parametrize("period", ["month", "week"])
def test_contact_fatigue_matches_the_reference(world: World, period: str) -> None:
    flags = []
    for h, rows in world.events.items():
        for r in rows:
            ch = r["channel"]
            if ch in ("payment", "sample"):
                continue
            outbound = r["direction"] in (None, "outbound")
            c = outbound and r["action"] in CONTACT
            resp = ENGAGE.get(ch) == r["action"] or (ch not in ENGAGE and outbound
                                                     and r["action"] in RESPONSE)
            if c or resp:
                flags.append((h, ch, _period(r["ts"], period), c, resp))
    by_ch: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, ch, _, c, resp in flags:
        by_ch[ch][0] += c
        by_ch[ch][1] += resp
    rate = {ch: v[1] / v[0] for ch, v in by_ch.items() if v[0] > 0}
    per: dict[tuple[str, date], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for h, ch, p, c, resp in flags:
        if ch in rate:
            x = per[(h, p)]
            x[0] += c
            x[1] += resp
            x[2] += c * rate[ch]
    hr: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (h, _), x in per.items():
        hr[h][0] += x[1]
        hr[h][1] += x[2]
    edges = [1, 2, 3, 4, 6, 10]
    bins: dict[int, list[Any]] = {}
    for (h, _), (c, r, ex) in per.items():
        if c == 0 or hr[h][1] == 0:
            continue
        lo = max(e for e in edges if e <= c)
        b = bins.setdefault(lo, [0, set(), 0, 0, 0.0])
        b[0] += 1
        b[1].add(h)
        b[2] += c
        b[3] += r
        b[4] += ex * hr[h][0] / hr[h][1]
    got = world.eng.to_pyarrow(P.contact_fatigue(world.eng, period=period)).to_pylist()
    assert [r["min_contacts"] for r in got] == sorted(bins)
    for r in got:
        b = bins[r["min_contacts"]]
        assert (r["hcp_periods"], r["hcps"], r["contacts"], r["responses"]) == (
            b[0], len(b[1]), b[2], b[3])
        assert r["expected_responses"] == pytest.approx(b[4], rel=1e-9)
        assert r["response_rate"] == pytest.approx(b[3] / b[2])
    labels = {r["min_contacts"]: r["bin"] for r in got}
    assert labels[1] == "1" and labels.get(4, "4-5") == "4-5"
    if period == "month":
        # the simulator's fatigue: the same HCP answers less when contacted more (the
        # least-contacted months sit near 1, within a few percent either way)
        big = [r for r in got if r["hcp_periods"] >= 50]
        assert big[0]["relative_response"] > big[-1]["relative_response"] + 0.05
        assert big[-1]["relative_response"] < 0.95


def test_contact_fatigue_per_segment_and_bad_options(world: World) -> None:
    seg = S.most_likely_segment(world.eng)
    got = world.eng.to_pyarrow(P.contact_fatigue(world.eng, groups=seg)).to_pylist()
    assert {r["group"] for r in got} <= set(world.segment.values()) | {S.UNKNOWN}
    overall = world.eng.to_pyarrow(P.contact_fatigue(world.eng)).to_pylist()
    for b in overall:  # the groups add up to the whole
        parts = [r for r in got if r["min_contacts"] == b["min_contacts"]]
        assert sum(r["contacts"] for r in parts) == b["contacts"]
        assert sum(r["hcp_periods"] for r in parts) == b["hcp_periods"]
    with pytest.raises(HcpjError, match="week or month"):
        P.contact_fatigue(world.eng, period="day")
    with pytest.raises(HcpjError, match="lower edges"):
        P.contact_fatigue(world.eng, bins=[0, 3])


def test_designed_vs_measured_on_a_map_with_user_touchpoint_channels(world: World) -> None:
    d = world.jmap.to_dict()
    d["touchpoint_channels"] = {"access hub": "phone", "podcast": "web:viewed"}
    jmap = JourneyMap.from_dict(d)
    got = world.eng.to_pyarrow(G.designed_vs_measured(world.eng, jmap, world.entries_t)).to_pylist()
    hub = next(r for r in got if r["touchpoint"] == "access hub")
    pod = next(r for r in got if r["touchpoint"] == "podcast")
    assert hub["channel"] == "phone" and hub["status"] in ("used", "unused")
    assert (pod["channel"], pod["action"], pod["activity"]) == ("web", "viewed", "web:viewed")
    ref = ref_lead_in(world)
    assert pod["hcps"] == len(ref.get((2, "web", "viewed"), (set(), 0))[0])
    # phone is designed now, so it is no longer reported as undesigned in the decision stage
    assert not any(r["stage"] == "decision" and not r["designed"] and r["channel"] == "phone"
                   for r in got)
