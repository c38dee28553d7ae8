"""The numpy paths over a table's stored order (paths.stored_runs: variant_arrays,
variant_table, and attribution's _stored_counts) against the engine paths and plain
Python references, on small stored tables built to hit their edge cases: ties on
ts, single-event cases, null case / activity / ts, HCPs adopting before (or at)
their first event, adopters without events, repeated adoption rows, and a forced
fingerprint collision. Each test first checks that the fast path was taken."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pytest

from hcpjourney import engine as engines
from hcpjourney.journey import attribution as attr
from hcpjourney.journey import paths

KW: dict[str, Any] = {"case": "case", "activity": "act", "ts": "ts", "tiebreak": "eid"}
T0 = datetime(2024, 1, 1)


def _stored(tmp_path: Path, data: dict[str, list[Any]], order: list[str] | None = None) -> engines.Engine:
    """An engine with ``data`` stored sorted by (case, ts, eid), like the warehouse's events."""
    e = engines.DuckDBEngine(tmp_path / "w.duckdb")
    e.create("ev", ibis.memtable(data), order_by=order or ["case", "ts", "eid"])
    return e


def _random_events(seed: int, *, nulls: bool) -> dict[str, list[Any]]:
    """Cases of 1..8 events over 3 activities (so sequences repeat), many ts ties; with
    ``nulls``, some null activities, timestamps and cases."""
    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"case": [], "act": [], "ts": [], "eid": [], "ch": []}
    eid = 0
    for c in range(rng.randint(5, 40)):
        for _ in range(rng.choice([1, 1, 2, 3, 5, 8])):
            eid += 1
            act: str | None = rng.choice(["a", "b", "c:d"])
            ts: datetime | None = T0 + timedelta(seconds=rng.randint(0, 6))
            case: str | None = f"h{c:02d}"
            if nulls and rng.random() < 0.1:
                act = None
            if nulls and rng.random() < 0.05:
                ts = None
            if nulls and rng.random() < 0.03:
                case = None
            rows["case"].append(case)
            rows["act"].append(act)
            rows["ts"].append(ts)
            rows["eid"].append(f"e{eid}")  # compared as text: e10 < e9
            rows["ch"].append(None if act is None else act.split(":")[0])
    return rows


def _variant_counts(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], int]:
    return {tuple(r["variant"]): r["count"] for r in rows}


# -------------------------------------------------------------------- variants
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("nulls", [False, True])
def test_variant_arrays_and_table_equal_the_engine_path(tmp_path: Path, seed: int, nulls: bool) -> None:
    e = _stored(tmp_path, _random_events(seed, nulls=nulls))
    t = e.table("ev")
    assert paths.stored_runs(t, **{k: v for k, v in KW.items() if k != "tiebreak"}) is not None
    exact = e.to_pyarrow(paths.variants(t, **KW)).to_pylist()  # sorting, no stored order
    arr = paths.variant_arrays(t, presorted=True, **KW).to_pylist()
    want = {tuple(r["variant"].split(" -> ")): r["count"] for r in exact}
    assert _variant_counts(arr) == want
    assert [(r["n_events"], r["count"]) for r in arr] == [
        (len(r["variant"]), r["count"]) for r in arr
    ]
    assert sum(r["share"] for r in arr) == pytest.approx(1.0)
    # same rows, same order (count desc, then text), as the lazy variants()
    assert paths.variant_table(t, presorted=True, **KW).to_pylist() == exact
    e.close()


def test_variant_ties_are_ordered_by_first_case(tmp_path: Path) -> None:
    data = {
        "case": ["b", "b", "a", "c", "c", "d"],
        "act": ["y", "x", "z", "y", "x", "z"],
        "ts": [T0, T0, T0, T0, T0 + timedelta(seconds=1), T0],
        "eid": ["e9", "e10", "e1", "e2", "e3", "e4"],  # b: x (e10) before y (e9)
    }
    e = _stored(tmp_path, data)
    arr = paths.variant_arrays(e.table("ev"), presorted=True, **KW).to_pylist()
    # (z) twice, then (x, y) and (y, x) once each: (x, y) first, its case b is stored before c
    assert [(r["variant"], r["count"]) for r in arr] == [
        (["z"], 2), (["x", "y"], 1), (["y", "x"], 1)
    ]
    e.close()


@pytest.mark.parametrize("both", [False, True])
def test_a_fingerprint_collision_falls_back_to_exact_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, both: bool
) -> None:
    # with base 1 (every weight 1) a fingerprint is the sum of codes: permutations collide
    monkeypatch.setattr(paths, "_POLY_BASE", 1)
    if both:
        monkeypatch.setattr(paths, "_position_weights", lambda n: np.ones(max(n, 1), dtype=np.uint64))
    data = {"case": ["a", "a", "b", "b", "c", "c"], "act": ["x", "y", "y", "x", "x", "y"],
            "ts": [T0 + timedelta(seconds=i % 2) for i in range(6)], "eid": [f"e{i}" for i in range(6)]}
    e = _stored(tmp_path, data)
    t = e.table("ev")
    runs = paths.stored_runs(t, case="case", activity="act", ts="ts")
    assert runs is not None
    # the check caught the collision: the second fingerprint, or (both) the engine path
    assert (paths._group_runs(runs) is None) == both
    arr = paths.variant_arrays(t, presorted=True, **KW).to_pylist()
    assert _variant_counts(arr) == {("x", "y"): 2, ("y", "x"): 1}
    e.close()


def test_polynomial_fingerprints_do_not_depend_on_where_a_case_is_stored() -> None:
    rng = np.random.default_rng(7)
    seq = rng.integers(0, 9, 300).astype(np.int32)
    codes = np.concatenate([rng.integers(0, 9, 5).astype(np.int32), seq, seq, seq[:-1]])
    starts = np.array([0, 5, 305, 605])
    fp = paths._poly_fingerprints(codes, starts)
    assert fp[1] == fp[2] and fp[1] != fp[3]
    lens = np.diff(np.append(starts, len(codes)))
    wfp = paths._weighted_fingerprints(codes, starts, lens)
    assert wfp[1] == wfp[2] and wfp[1] != wfp[3]


def test_a_table_not_stored_by_case_takes_the_engine_path(tmp_path: Path) -> None:
    data = _random_events(1, nulls=False)
    e = _stored(tmp_path, data, order=["ts", "eid"])  # cases interleaved in storage
    t = e.table("ev")
    assert paths.stored_runs(t, case="case", activity="act", ts="ts") is None
    exact = e.to_pyarrow(paths.variants(t, **KW)).to_pylist()
    want = {tuple(r["variant"].split(" -> ")): r["count"] for r in exact}
    assert _variant_counts(paths.variant_arrays(t, presorted=True, **KW).to_pylist()) == want
    e.close()


def test_stored_runs_codes_and_names(tmp_path: Path) -> None:
    data = {"case": ["a", "a", "a", "b", None], "act": ["x", None, "y:1", "x", "x"],
            "ts": [T0, T0, T0, None, T0], "eid": ["e1", "e2", "e3", "e4", "e5"]}
    e = _stored(tmp_path, data)
    runs = paths.stored_runs(e.table("ev"), case="case", activity="act", ts="ts", with_ts=True)
    assert runs is not None
    # b's only event has no ts and the null case's takes no part: one case, a: x, y:1
    assert runs.names.to_pylist() == ["x", "y:1"]
    assert runs.codes.tolist() == [0, 1]
    assert runs.starts.tolist() == [0]
    assert runs.ts is not None and len(runs.ts) == 2
    e.close()


# ------------------------------------------------------------------ attribution
def _ref_paths(data: dict[str, list[Any]], adopted: dict[str, datetime]) -> dict[str, tuple[list[str], bool]]:
    """CONTRACT paths, row by row (events with a null case, channel or ts take no part)."""
    by: dict[str, list[tuple[datetime, str, str]]] = {}
    for c, ch, ts, eid in zip(data["case"], data["ch"], data["ts"], data["eid"], strict=True):
        if c is None or ch is None or ts is None:
            continue
        by.setdefault(c, []).append((ts, eid, ch))
    out = {}
    for c, evs in by.items():
        at = adopted.get(c)
        path: list[str] = []
        for ts, _, ch in sorted(evs):
            if at is not None and not ts < at:
                break
            if not path or path[-1] != ch:
                path.append(ch)
        out[c] = (path, at is not None)
    return out


def _adoptions(data: dict[str, list[Any]], seed: int) -> dict[str, datetime]:
    """Adopters: some mid-path, some at or before their first event (empty paths), some
    after their last, and ghosts without events."""
    rng = random.Random(seed)
    cases = sorted({c for c in data["case"] if c is not None})
    out = {}
    for c in cases:
        r = rng.random()
        if r < 0.2:
            out[c] = T0  # at the earliest instant: empty path
        elif r < 0.5:
            out[c] = T0 + timedelta(seconds=rng.randint(1, 7))
    out["ghost"] = T0
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("nulls", [False, True])
def test_attribution_stored_counts_equal_engine_and_reference(tmp_path: Path, seed: int, nulls: bool) -> None:
    data = _random_events(seed, nulls=nulls)
    adopted = _adoptions(data, seed)
    e = _stored(tmp_path, data)
    ev = e.table("ev")
    ad = ibis.memtable({"case": list(adopted), "adopted_at": list(adopted.values())})
    kw: dict[str, Any] = {"case": "case", "channel": "ch", "ts": "ts", "tiebreak": "eid"}
    fast = attr._stored_counts(ev, ad, case="case", channel="ch", ts="ts", adopted_at="adopted_at",
                               orders=[1, 2, 3], credits=True)
    assert fast is not None
    ref = _ref_paths(data, adopted)
    if not any(conv for _, conv in ref.values()):
        pytest.skip("no adopter among the cases")
    for order in (1, 2, 3):
        t = attr.touches(ev, ad, order=order, **kw)
        engine_rows = attr.chain_counts(t, order).to_pyarrow().to_pylist()
        want = sorted((r["src"], r["dst"], r["count"]) for r in engine_rows)
        got = sorted(zip(fast.chains[order]["src"], fast.chains[order]["dst"],
                         fast.chains[order]["count"].astype(int), strict=True))
        assert got == want, order
        # and the chain is the reference paths' chain
        a = attr.markov_attribution(ev, ad, order=order, presorted=True, **kw)
        b = attr.markov_attribution(ev, ad, order=order, **kw)
        assert a.removal_effects == pytest.approx(b.removal_effects, abs=1e-12)
        assert a.conversion_probability == pytest.approx(b.conversion_probability, abs=1e-12)
    pre = attr.attribution_table(ev, ad, presorted=True, **kw).set_index("channel")
    srt = attr.attribution_table(ev, ad, **kw).set_index("channel")
    assert list(pre.index) == list(srt.index)
    for col in srt.columns:
        assert list(pre[col]) == pytest.approx(list(srt[col]), abs=1e-12), col
    conv_paths = [p for p, conv in ref.values() if conv and p]
    assert pre.attrs["converting_paths"] == len(conv_paths)
    first = {c: sum(1 for p in conv_paths if p[0] == c) / len(conv_paths) for c in pre.index} \
        if conv_paths else {}
    for c in pre.index:
        assert pre.loc[c, "first_touch"] == pytest.approx(first.get(c, 0.0), abs=1e-12)
    e.close()


def test_attribution_repeated_adoption_rows_count_the_first(tmp_path: Path) -> None:
    data = {"case": ["h1", "h1", "h1", "h2", "h2"], "ch": ["A", "B", "A", "B", "A"],
            "ts": [T0 + timedelta(days=i) for i in (0, 1, 2, 0, 1)],
            "eid": ["e1", "e2", "e3", "e4", "e5"]}
    e = _stored(tmp_path, data)
    ev = e.table("ev")
    # h1 adopts on day 2 (twice listed, and later again): path A, B
    days = [T0 + timedelta(days=d) for d in (2, 2, 9)]
    ad = ibis.memtable({"case": ["h1", "h1", "h1"], "adopted_at": days})
    fast = attr._stored_counts(ev, ad, case="case", channel="ch", ts="ts", adopted_at="adopted_at",
                               orders=[1], credits=True)
    assert fast is not None
    got = sorted(zip(fast.chains[1]["src"], fast.chains[1]["dst"], fast.chains[1]["count"].astype(int),
                     strict=True))
    assert got == sorted([
        ("__start__", "A", 1), ("A", "B", 1), ("B", "adoption", 1),  # h1: A, B -> adoption
        ("__start__", "B", 1), ("B", "A", 1), ("A", "__null__", 1),  # h2: B, A -> null
    ])
    e.close()
