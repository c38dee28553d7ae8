"""Stages and funnel (CONTRACT section 4) against an independent plain-Python recomputation.

The reference reads rows from the warehouse (events, outcomes, identities) and
applies the contract's words literally, one HCP at a time; the product's
Ibis queries must give exactly the same entries, counts and (to the
microsecond) medians, on a simulated world and on a hand-written drop of edge
cases.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import Workspace
from hcpjourney.contract.npi import make_npi
from hcpjourney.errors import HcpjError
from hcpjourney.identity.profiles import PROFILE_COLUMNS, PROFILE_EXTRAS
from hcpjourney.journey import stages as S
from hcpjourney.journey.model import JourneyMap, load_journey
from hcpjourney.simulate import simulate

N_HCPS = 400
US = timedelta(microseconds=1)
MATCH_KEYS = ("channel", "action", "team", "direction", "content_id", "topic")


# ------------------------------------------------------------------ reference
def _outcome_at(period: str) -> datetime:
    y, m = map(int, period.split("-"))
    return datetime(y + (m == 12), m % 12 + 1, 1)


class Ref:
    """Plain-Python stages over rows pulled from the warehouse."""

    def __init__(self, eng: engines.Engine) -> None:
        ev = eng.to_pyarrow(eng.table("events")).to_pylist()
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in ev:
            self.events[r["hcp_id"]].append(r)
        for rows in self.events.values():
            rows.sort(key=lambda r: (r["ts"], r["event_id"]))
        hcp_of = {r["record_id"]: r["hcp_id"]
                  for r in eng.to_pyarrow(eng.table("identities")).to_pylist()}
        self.outcomes = [dict(r, hcp_id=hcp_of[r["record_id"]])
                         for r in eng.to_pyarrow(eng.table("outcomes")).to_pylist()
                         if r["record_id"] in hcp_of]
        self.hcps = sorted(set(hcp_of.values()))

    def adoption(self, product: str | None) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        for o in self.outcomes:
            if o["nrx"] is not None and o["nrx"] > 0 and (product is None or o["product"] == product):
                at = _outcome_at(o["period"])
                if o["hcp_id"] not in out or at < out[o["hcp_id"]]:
                    out[o["hcp_id"]] = at
        return out

    def entries(self, jmap: JourneyMap) -> set[tuple[str, str, int, datetime, str | None]]:
        adopt = self.adoption(jmap.product)
        out = set()
        for hcp in self.hcps:
            prev: datetime | None = None
            for k, stage in enumerate(jmap.stages):
                cands: list[tuple[datetime, int, str]] = []
                for r in self.events.get(hcp, []):
                    if any(rule.outcome is None and all(r[key] == v for key, v in rule.fields)
                           for rule in stage.enter_on):
                        cands.append((r["ts"], 0, r["event_id"]))
                if stage.is_outcome and hcp in adopt:
                    cands.append((adopt[hcp], 1, ""))  # at one instant, events come first
                if prev is not None:
                    w = jmap.window_days(k)
                    cands = [c for c in cands if c[0] >= prev
                             and (w is None or c[0] <= prev + timedelta(days=w))]
                if not cands:
                    break
                ts, kind, eid = min(cands)
                out.add((hcp, stage.id, k + 1, ts, eid if kind == 0 else None))
                prev = ts
        return out


def ref_funnel(entries: set[tuple[str, str, int, datetime, str | None]], jmap: JourneyMap,
               group: dict[str, str] | None = None) -> dict[tuple[str, str], tuple[int, float, float]]:
    """(group, stage) -> (hcps, conversion, median µs) ; group '' without a breakdown."""
    at = {(h, k): ts for h, _, k, ts, _ in entries}
    groups = {(group or {}).get(h, S.UNKNOWN) if group is not None else "" for h, *_ in entries}
    out = {}
    for g in groups:
        prev_n = None
        for k, stage in enumerate(jmap.stages, start=1):
            hs = [h for (h, kk) in at if kk == k
                  and (group is None or group.get(h, S.UNKNOWN) == g)]
            n = len(hs)
            conv = 1.0 if k == 1 else (n / prev_n if prev_n else float("nan"))
            gaps = [(at[(h, k)] - at[(h, k - 1)]) // US for h in hs] if k > 1 else []
            med = statistics.median(gaps) if gaps else float("nan")
            out[(g, stage.id)] = (n, conv, med)
            prev_n = n
    return out


def _same(a: float | None, b: float) -> bool:
    if b != b:  # nan
        return a is None or a != a
    return a is not None and abs(a - b) < 1e-9 * max(1.0, abs(b))


def assert_funnel(rows: list[dict[str, Any]], ref: dict[tuple[str, str], tuple[int, float, float]],
                  by: str | None = None) -> None:
    got = {}
    for r in rows:
        got[(r[by] if by else "", r["stage"])] = r
    assert set(got) == set(ref)
    for key, (n, conv, med_us) in ref.items():
        r = got[key]
        assert r["hcps"] == n, key
        assert _same(r["conversion_from_previous"], conv), (key, r, conv)
        med = r["median_days_from_previous"]
        if med_us != med_us:
            assert med is None or med != med, key
        else:  # medians to the microsecond (far tighter than a second)
            assert abs(med * 86_400_000_000 - med_us) < 1.0, (key, med, med_us)


def _entries_set(eng: engines.Engine, expr: Any) -> set[tuple[str, str, int, datetime, str | None]]:
    return {(r["hcp_id"], r["stage"], r["stage_index"], r["entered_at"], r["event_id"])
            for r in eng.to_pyarrow(expr).to_pylist()}


# ---------------------------------------------------------------- simulated
class World:
    def __init__(self, root: Path) -> None:
        self.drop = root / "drop"
        simulate(N_HCPS, self.drop, seed=5, events_per_hcp=60.0)
        self.ws: Workspace = services.init_workspace(root / "ws")
        services.ingest(self.ws, [self.drop])
        services.build(self.ws)
        self.jmap = load_journey(self.drop / "journey.yaml")
        with self.engine() as eng:
            self.ref = Ref(eng)

    def engine(self) -> Any:
        return services.warehouse(self.ws)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("journey_world"))


@pytest.fixture(scope="module")
def eng(world: World) -> Iterator[engines.Engine]:
    with world.engine() as e:
        yield e


def test_stage_entries_match_the_reference_exactly(world: World, eng: engines.Engine) -> None:
    got = _entries_set(eng, S.stage_entries(eng, world.jmap))
    ref = world.ref.entries(world.jmap)
    assert got == ref
    per_stage = defaultdict(int)
    for _, s, *_ in ref:
        per_stage[s] += 1
    # a real funnel: every stage reached, each by fewer HCPs
    counts = [per_stage[s] for s in world.jmap.stage_ids]
    assert all(c > 0 for c in counts) and counts == sorted(counts, reverse=True)
    # the adoption stage is entered by an outcome, without an event
    assert all((eid is None) == (s == "adoption") for _, s, _, _, eid in ref)


def test_funnel_matches_the_reference(world: World, eng: engines.Engine) -> None:
    entries = S.stage_entries(eng, world.jmap)
    rows = eng.to_pyarrow(S.funnel(entries, world.jmap)).to_pylist()
    assert [r["stage"] for r in rows] == world.jmap.stage_ids
    assert list(rows[0]) == list(S.FUNNEL_COLUMNS)
    assert rows[0]["conversion_from_previous"] == 1.0
    assert rows[0]["median_days_from_previous"] is None
    assert_funnel(rows, ref_funnel(world.ref.entries(world.jmap), world.jmap))


@pytest.mark.parametrize(
    "variant",
    ["no_window", "short_window", "stage_window", "any_product", "outcome_first", "mixed_rule"],
)
def test_variants_of_the_map_match_the_reference(world: World, eng: engines.Engine,
                                                 variant: str) -> None:
    d = world.jmap.to_dict()
    if variant == "no_window":
        del d["conversion_window_days"]
    elif variant == "short_window":
        d["conversion_window_days"] = 7.5
    elif variant == "stage_window":
        d["stages"][2]["conversion_window_days"] = 20
    elif variant == "any_product":
        del d["product"]
    elif variant == "outcome_first":
        d["stages"] = [d["stages"][3], d["stages"][0], d["stages"][1]]
    elif variant == "mixed_rule":
        d["stages"][3]["enter_on"] = [{"outcome": "nrx"}, {"channel": "sample", "action": "delivered"}]
        d["stages"][1]["enter_on"].append({"topic": "dosing"})
    jmap = JourneyMap.from_dict(d)
    entries = S.stage_entries(eng, jmap)
    ref = world.ref.entries(jmap)
    assert _entries_set(eng, entries) == ref
    assert_funnel(eng.to_pyarrow(S.funnel(entries, jmap)).to_pylist(), ref_funnel(ref, jmap))


def test_furthest_stage_per_hcp(world: World, eng: engines.Engine) -> None:
    ref = world.ref.entries(world.jmap)
    best: dict[str, tuple[int, str, datetime]] = {}
    for h, s, k, ts, _ in ref:
        if h not in best or k > best[h][0]:
            best[h] = (k, s, ts)
    got = eng.to_pyarrow(S.furthest_stages(S.stage_entries(eng, world.jmap))).to_pylist()
    assert len(got) == len(best)
    assert {r["hcp_id"]: (r["stage_index"], r["stage"], r["entered_at"]) for r in got} == best


def _golden(eng: engines.Engine) -> dict[str, dict[str, Any]]:
    return {r["hcp_id"]: r for r in eng.to_pyarrow(eng.table("golden")).to_pylist()}


@pytest.mark.parametrize(("by", "column"), [("profession", "profession"), ("region", "state"),
                                            ("account", "organization"), ("specialty", "specialty"),
                                            ("decile", "decile")])
def test_breakdowns_by_golden_columns(world: World, eng: engines.Engine, by: str, column: str) -> None:
    golden = _golden(eng)
    group = {h: str(g[column]) for h, g in golden.items() if g[column] is not None}
    ref = ref_funnel(world.ref.entries(world.jmap), world.jmap, group)
    rows = eng.to_pyarrow(S.funnel_by(eng, world.jmap, by)).to_pylist()
    assert_funnel(rows, ref, by)
    assert len({r[by] for r in rows}) > 1


def test_breakdown_by_source_of_the_first_entry(world: World, eng: engines.Engine) -> None:
    src = {r["record_id"]: r["source"] for r in eng.to_pyarrow(eng.table("hcps")).to_pylist()}
    rec = {r["event_id"]: r["record_id"] for h in world.ref.events.values() for r in h}
    ref_entries = world.ref.entries(world.jmap)
    group = {h: src[rec[eid]] for h, _, k, _, eid in ref_entries if k == 1 and eid is not None}
    rows = eng.to_pyarrow(S.funnel_by(eng, world.jmap, "source")).to_pylist()
    assert_funnel(rows, ref_funnel(ref_entries, world.jmap, group), "source")
    assert {r["source"] for r in rows} >= {"crm", "web"}


def test_breakdown_by_segment_and_persona(world: World, eng: engines.Engine) -> None:
    eng.drop("segments")  # the build's own segments: this test writes its own below
    with pytest.raises(HcpjError, match="no segments table"):
        S.funnel_by(eng, world.jmap, "segment")
    hcps = world.ref.hcps
    names = ["alpha", "beta", "gamma"]
    rows = []
    for i, h in enumerate(hcps):
        if i % 7 == 0:
            continue  # some HCPs have no segment
        probs = [0.2, 0.3, 0.5] if i % 3 == 0 else [0.6, 0.2, 0.2] if i % 3 == 1 else [0.4, 0.4, 0.2]
        rows += [{"hcp_id": h, "segment": n, "probability": p} for n, p in zip(names, probs, strict=True)]
    import ibis

    eng.create(S.SEGMENTS, ibis.memtable(rows))
    try:
        best = {}
        for r in rows:
            cur = best.get(r["hcp_id"])
            if cur is None or (r["probability"], -names.index(r["segment"])) > cur[0]:
                best[r["hcp_id"]] = ((r["probability"], -names.index(r["segment"])), r["segment"])
        group = {h: v[1] for h, v in best.items()}
        assert {"alpha", "gamma"} <= set(group.values())  # i%3==2 ties alpha/beta: alpha wins
        assert "beta" not in set(group.values())
        ref_entries = world.ref.entries(world.jmap)
        got = eng.to_pyarrow(S.funnel_by(eng, world.jmap, "segment")).to_pylist()
        assert_funnel(got, ref_funnel(ref_entries, world.jmap, group), "segment")
        with pytest.raises(HcpjError, match="links no persona"):
            S.funnel_by(eng, world.jmap, "persona")
        d = world.jmap.to_dict()
        d["personas"] = [{"id": "digital", "segments": ["alpha"]},
                         {"id": "classic", "segments": ["gamma", "beta"]}]
        pmap = JourneyMap.from_dict(d)
        persona = {h: {"alpha": "digital", "gamma": "classic", "beta": "classic"}[s]
                   for h, s in group.items()}
        got = eng.to_pyarrow(S.funnel_by(eng, pmap, "persona")).to_pylist()
        assert_funnel(got, ref_funnel(ref_entries, pmap, persona), "persona")
    finally:
        eng.drop(S.SEGMENTS)


def test_unknown_breakdown_is_a_clear_error(world: World, eng: engines.Engine) -> None:
    with pytest.raises(HcpjError, match="cannot break the funnel down by 'email'"):
        S.funnel_by(eng, world.jmap, "email")
    with pytest.raises(HcpjError, match="no column 'specialty'"):
        S.funnel(S.stage_entries(eng, world.jmap), world.jmap, by="specialty")


def test_build_journey_writes_tables_and_fills_profile_stage(world: World, eng: engines.Engine) -> None:
    summary = S.build_journey(eng, world.jmap)
    ref = world.ref.entries(world.jmap)
    assert _entries_set(eng, eng.table(S.STAGE_ENTRIES)) == ref
    furthest: dict[str, tuple[int, str]] = {}
    for h, s, k, _, _ in ref:
        if h not in furthest or k > furthest[h][0]:
            furthest[h] = (k, s)
    assert summary.hcps_in_journey == len(furthest)
    assert [r["hcps"] for r in summary.funnel] == [
        sum(1 for e in ref if e[2] == k) for k in range(1, 6)]
    stages = eng.to_pyarrow(eng.table(S.STAGES)).to_pylist()
    assert list(stages[0])[:3] == ["hcp_id", "stage", "entered_at"]
    assert {r["hcp_id"]: r["stage"] for r in stages} == {h: v[1] for h, v in furthest.items()}
    f = eng.to_pyarrow(eng.table(S.FUNNEL)).to_pylist()
    assert list(f[0])[:4] == ["stage", "hcps", "conversion_from_previous", "median_days_from_previous"]
    assert [r["stage"] for r in f] == world.jmap.stage_ids
    prof = eng.table("profiles")
    assert tuple(prof.columns) == PROFILE_COLUMNS + PROFILE_EXTRAS
    rows = eng.to_pyarrow(prof).to_pylist()
    assert len(rows) == len(world.ref.hcps)
    assert {r["hcp_id"]: r["stage"] for r in rows} == {
        h: (furthest[h][1] if h in furthest else None) for h in world.ref.hcps}
    assert [r["hcp_id"] for r in rows] == sorted(r["hcp_id"] for r in rows)


# ---------------------------------------------------------------- edge cases
T0 = datetime(2024, 1, 1, 10, 0, 0)
EDGE_MAP = """
name: Edge cases
product: cardiozen
stages:
  - id: aware
    enter_on: [{channel: email, action: opened}]
  - id: consider
    enter_on: [{channel: webinar, action: attended}]
  - id: adopt
    enter_on: [{outcome: nrx}]
  - id: advocate
    enter_on: [{channel: congress, action: attended}]
conversion_window_days: 30
"""


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def edge(module_factory: Any) -> Iterator[tuple[engines.Engine, dict[str, str]]]:
    people = ["Ames", "Brook", "Clay", "Dunn", "Eddy", "Frost"]
    hcps = [[f"crm:{i}", "crm", make_npi(100000000 + 7919 * i), "Pat", name, "physician",
             "Cardiology"] for i, name in enumerate(people)]
    ev: list[list[str]] = []

    def add(eid: str, rec: int, ts: datetime, channel: str, action: str) -> None:
        ev.append([eid, f"crm:{rec}", _iso(ts), channel, action])

    # 0: tie at one ts -> the smaller event_id enters; a webinar before entry does not count;
    #    adoption 12 days after consider; congress 43 days after adoption: outside the window
    add("a2", 0, T0, "email", "opened")
    add("a1", 0, T0, "email", "opened")
    add("a0", 0, T0 - timedelta(days=12), "webinar", "attended")
    add("a3", 0, datetime(2024, 1, 20, 8, 0, 0), "webinar", "attended")
    add("a4", 0, datetime(2024, 3, 15, 9, 0, 0), "congress", "attended")
    # 1: adopted before its first event: never in adopt (a later nrx month does not count)
    add("b1", 1, datetime(2024, 1, 5, 9, 0, 0), "email", "opened")
    add("b2", 1, datetime(2024, 1, 10, 9, 0, 0), "webinar", "attended")
    add("b3", 1, datetime(2024, 1, 12, 9, 0, 0), "congress", "attended")
    # 2: consider entered at the very instant of aware (at or after), smaller event_id
    add("c9", 2, datetime(2024, 2, 1, 12, 0, 0), "email", "opened")
    add("c1", 2, datetime(2024, 2, 1, 12, 0, 0), "webinar", "attended")
    # 3: no aware event: in no stage
    add("d1", 3, T0, "webinar", "attended")
    # 4: the window is inclusive: exactly 30 days is in, the second webinar is later
    add("e1", 4, T0, "email", "opened")
    add("e2", 4, T0 + timedelta(days=30), "webinar", "attended")
    add("e3", 4, T0 + timedelta(days=30, seconds=1), "webinar", "attended")
    # 5: a webinar 1 s after the 30-day window: stays in aware
    add("f1", 5, T0, "email", "opened")
    add("f2", 5, T0 + timedelta(days=30, seconds=1), "webinar", "attended")
    outcomes = [
        ["crm:0", "cardiozen", "2024-01", "1", "1"],    # at 2024-02-01: adopt
        ["crm:0", "otherzen", "2023-06", "5", "5"],     # another product: ignored
        ["crm:1", "cardiozen", "2023-11", "2", "2"],    # at 2023-12-01, before any event
        ["crm:1", "cardiozen", "2024-01", "1", "1"],
        ["crm:2", "cardiozen", "2024-02", "0", "3"],    # nrx 0: not adoption
    ]
    drop = module_factory.drop("edge")
    drop.csv("hcps.csv", ["record_id", "source", "npi", "first_name", "last_name", "profession",
                          "specialty"], hcps)
    drop.csv("interactions.csv", ["event_id", "record_id", "ts", "channel", "action"], ev)
    drop.csv("outcomes.csv", ["record_id", "product", "period", "nrx", "trx"], outcomes)
    wh = module_factory.workspace("edge")
    wh.ingest(drop.path)
    services.build(wh.ws)
    with wh.engine() as e:
        ids = {r["record_id"]: r["hcp_id"] for r in e.to_pyarrow(e.table("identities")).to_pylist()}
        assert len(set(ids.values())) == len(people)
        yield e, ids


def test_edge_cases_give_the_hand_computed_entries(edge: tuple[engines.Engine, dict[str, str]]) -> None:
    e, ids = edge
    jmap = JourneyMap.from_yaml(EDGE_MAP)
    h = [ids[f"crm:{i}"] for i in range(6)]
    expected = {
        (h[0], "aware", 1, T0, "a1"),
        (h[0], "consider", 2, datetime(2024, 1, 20, 8), "a3"),
        (h[0], "adopt", 3, datetime(2024, 2, 1), None),
        (h[1], "aware", 1, datetime(2024, 1, 5, 9), "b1"),
        (h[1], "consider", 2, datetime(2024, 1, 10, 9), "b2"),
        (h[2], "aware", 1, datetime(2024, 2, 1, 12), "c9"),
        (h[2], "consider", 2, datetime(2024, 2, 1, 12), "c1"),
        (h[4], "aware", 1, T0, "e1"),
        (h[4], "consider", 2, T0 + timedelta(days=30), "e2"),
        (h[5], "aware", 1, T0, "f1"),
    }
    entries = S.stage_entries(e, jmap)
    assert _entries_set(e, entries) == expected
    assert Ref(e).entries(jmap) == expected  # the reference agrees with the hand computation
    rows = e.to_pyarrow(S.funnel(entries, jmap)).to_pylist()
    assert [(r["stage"], r["hcps"]) for r in rows] == [
        ("aware", 5), ("consider", 4), ("adopt", 1), ("advocate", 0)]
    assert rows[1]["conversion_from_previous"] == pytest.approx(4 / 5)
    assert rows[2]["conversion_from_previous"] == pytest.approx(1 / 4)
    assert rows[3]["conversion_from_previous"] == 0.0
    assert rows[3]["median_days_from_previous"] is None
    # consider: 18 d 22 h, 5 d, 0, 30 d -> median of the middle two
    gaps_s = sorted([18 * 86400 + 22 * 3600, 5 * 86400, 0, 30 * 86400])
    assert rows[1]["median_days_from_previous"] * 86400 == pytest.approx(
        (gaps_s[1] + gaps_s[2]) / 2, abs=1e-6)
    assert rows[2]["median_days_from_previous"] * 86400 == pytest.approx(
        (datetime(2024, 2, 1) - datetime(2024, 1, 20, 8)).total_seconds(), abs=1e-6)
    stages = {r["hcp_id"]: r["stage"] for r in e.to_pyarrow(S.furthest_stages(entries)).to_pylist()}
    assert stages == {h[0]: "adopt", h[1]: "consider", h[2]: "consider", h[4]: "consider",
                      h[5]: "aware"}


def test_edge_cases_without_window_or_product(edge: tuple[engines.Engine, dict[str, str]]) -> None:
    e, ids = edge
    d = JourneyMap.from_yaml(EDGE_MAP).to_dict()
    del d["conversion_window_days"]
    del d["product"]
    jmap = JourneyMap.from_dict(d)
    got = _entries_set(e, S.stage_entries(e, jmap))
    h0, h1, h5 = ids["crm:0"], ids["crm:1"], ids["crm:5"]
    # any product: crm:0 adopted otherzen in 2023-06 (before its events), so never enters adopt
    assert not any(x[0] == h0 and x[2] >= 3 for x in got)
    assert (h5, "consider", 2, T0 + timedelta(days=30, seconds=1), "f2") in got
    assert not any(x[0] == h1 and x[2] >= 3 for x in got)
    assert got == Ref(e).entries(jmap)


def test_one_event_can_enter_two_stages(edge: tuple[engines.Engine, dict[str, str]]) -> None:
    e, ids = edge
    jmap = JourneyMap.from_dict({"name": "x", "stages": [
        {"id": "any_email", "enter_on": [{"channel": "email"}]},
        {"id": "opened", "enter_on": [{"channel": "email", "action": "opened"}]},
    ]})
    got = _entries_set(e, S.stage_entries(e, jmap))
    assert (ids["crm:0"], "any_email", 1, T0, "a1") in got
    assert (ids["crm:0"], "opened", 2, T0, "a1") in got
    assert got == Ref(e).entries(jmap)


def test_unmeasurable_map_and_missing_build_are_clear_errors(
        edge: tuple[engines.Engine, dict[str, str]], tmp_path: Path) -> None:
    e, _ = edge
    jmap = JourneyMap.from_dict({"name": "x", "type": "future_state",
                                 "stages": [{"id": "dream"}]})
    with pytest.raises(HcpjError, match="no enter_on"):
        S.stage_entries(e, jmap)
    empty = engines.DuckDBEngine(tmp_path / "empty.duckdb")
    try:
        with pytest.raises(HcpjError, match="hcpj build"):
            S.stage_entries(empty, JourneyMap.from_yaml(EDGE_MAP))
    finally:
        empty.close()


@pytest.mark.parametrize("lookback", [90, 5])
def test_edge_lead_ins_each_event_counts_for_the_first_stage_at_or_after_it(
        edge: tuple[engines.Engine, dict[str, str]], lookback: int) -> None:
    from hcpjourney.journey import gaps as G

    e, _ = edge
    jmap = JourneyMap.from_yaml(EDGE_MAP)
    entries = S.stage_entries(e, jmap)
    got = {(r["event_id"], r["stage_index"]) for r in e.to_pyarrow(
        G.lead_in_events(e, entries, lookback_days=lookback)).to_pylist()}
    expected = {("a1", 1), ("a2", 2), ("a3", 2), ("b1", 1), ("b2", 2),
                ("c1", 1), ("c9", 1),  # consider was entered at aware's instant: empty lead-in
                ("e1", 1), ("e2", 2), ("f1", 1)}
    if lookback == 90:
        expected.add(("a0", 1))  # 12 days before aware's entry
    assert got == expected
    m = {(r["stage_index"], r["channel"], r["action"]): (r["hcps"], r["events"])
         for r in e.to_pyarrow(G.measured_touchpoints(e, entries, lookback_days=lookback)).to_pylist()}
    assert m[(2, "webinar", None)] == (3, 3)
    assert m[(2, "email", "opened")] == (1, 1)
    assert m[(1, "webinar", None)] == ((2, 2) if lookback == 90 else (1, 1))
