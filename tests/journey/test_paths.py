"""Paths (transitions, variants, start/end, steps after/before, Sankey flows) against
plain-Python reference computations over the same rows of a simulated world."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import Workspace
from hcpjourney.errors import HcpjError
from hcpjourney.journey import paths
from hcpjourney.simulate import simulate

START, END = paths.START, paths.END


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("paths_world")
    simulate(250, root / "drop", seed=5)
    ws = services.init_workspace(root / "ws")
    services.ingest(ws, [root / "drop"])
    services.build(ws)
    return ws


@pytest.fixture(scope="module")
def eng(world: Workspace) -> Iterator[engines.Engine]:
    e = engines.connect(world)
    yield e
    e.close()


@pytest.fixture(scope="module")
def rows(eng: engines.Engine) -> list[dict[str, Any]]:
    ev = eng.table("events")
    return eng.to_pyarrow(ev.select("hcp_id", "event_id", "ts", "channel", "action", "topic")).to_pylist()


def sequences(
    rows: list[dict[str, Any]], activity: Any = None, case: str = "hcp_id"
) -> dict[Any, list[tuple[str, datetime]]]:
    """Reference: each case's (activity, ts) in CONTRACT order (ts, then event_id as text)."""
    by_case: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        act = f"{r['channel']}:{r['action']}" if activity is None else r[activity]
        if act is None or r[case] is None or r["ts"] is None:
            continue
        by_case[r[case]].append({**r, "_act": act})
    out = {}
    for c, evs in by_case.items():
        evs.sort(key=lambda r: (r["ts"], r["event_id"]))
        out[c] = [(r["_act"], r["ts"]) for r in evs]
    return out


def ref_transitions(seqs: dict[Any, list[tuple[str, datetime]]]) -> dict[tuple[str, str], tuple[int, Any]]:
    gaps: dict[tuple[str, str], list[float]] = defaultdict(list)
    counts: Counter[tuple[str, str]] = Counter()
    for seq in seqs.values():
        counts[(START, seq[0][0])] += 1
        counts[(seq[-1][0], END)] += 1
        for (a, ta), (b, tb) in itertools.pairwise(seq):
            counts[(a, b)] += 1
            gaps[(a, b)].append((tb - ta).total_seconds())
    return {k: (n, statistics.median(gaps[k]) if k in gaps else None) for k, n in counts.items()}


def as_transitions(eng: engines.Engine, expr: ibis.Table) -> dict[tuple[str, str], tuple[int, Any]]:
    out = {}
    for r in eng.to_pyarrow(expr).to_pylist():
        key = (r["from_activity"], r["to_activity"])
        assert key not in out, f"duplicate pair {key}"
        out[key] = (r["count"], r["median_seconds"])
    return out


def assert_same_transitions(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, (n, med) in want.items():
        assert got[k][0] == n, k
        if med is None:
            assert got[k][1] is None, k
        else:
            assert got[k][1] == pytest.approx(med, abs=1e-6), k


# -------------------------------------------------------------- transitions
def test_transitions_match_reference(eng: engines.Engine, rows: list[dict[str, Any]]) -> None:
    want = ref_transitions(sequences(rows))
    got = as_transitions(eng, paths.transitions(eng.table("events")))
    assert_same_transitions(got, want)
    # the world is rich enough for the test to mean something
    assert sum(n for (a, _), (n, _) in want.items() if a == START) == len(sequences(rows))
    assert len(want) > 100


@pytest.mark.parametrize("presorted", [False, True])
def test_counts_only_transitions(eng: engines.Engine, rows: list[dict[str, Any]], presorted: bool) -> None:
    want = ref_transitions(sequences(rows))
    got = as_transitions(eng, paths.transitions(eng.table("events"), medians=False,
                                                presorted=presorted))
    assert {k: n for k, (n, _) in got.items()} == {k: n for k, (n, _) in want.items()}
    assert all(m is None for _, m in got.values())


def test_transitions_over_another_activity_column(eng: engines.Engine, rows: list[dict[str, Any]]) -> None:
    # topic is null on some events: those take no part
    want = ref_transitions(sequences(rows, activity="topic"))
    got = as_transitions(eng, paths.transitions(eng.table("events"), activity="topic"))
    assert_same_transitions(got, want)
    # a sequence of columns is joined with ':' (the default is channel, action)
    both = as_transitions(eng, paths.transitions(eng.table("events"), activity=["channel", "action"]))
    assert both == as_transitions(eng, paths.transitions(eng.table("events")))


def test_presorted_streaming_equals_sorting(eng: engines.Engine) -> None:
    ev = eng.table("events")  # stored sorted by (hcp_id, ts, event_id)
    assert as_transitions(eng, paths.transitions(ev, presorted=True)) == as_transitions(
        eng, paths.transitions(ev)
    )
    a = eng.to_pyarrow(paths.variants(ev, presorted=True)).to_pylist()
    b = eng.to_pyarrow(paths.variants(ev)).to_pylist()
    assert a == b


TINY = {
    # case a: a tie at 10s broken by event_id as TEXT ("e10" < "e9"); case b: gaps 0 and 60
    "case": ["a", "a", "a", "a", "b", "b", "b", "c"],
    "act": ["x", "y", "z", "x", "x", "y", "x", "z"],
    "ts": [
        datetime(2024, 1, 1, 0, 0, 0), datetime(2024, 1, 1, 0, 0, 10), datetime(2024, 1, 1, 0, 0, 10),
        datetime(2024, 1, 1, 0, 0, 10, 500000), datetime(2024, 1, 2), datetime(2024, 1, 2, 0, 1),
        datetime(2024, 1, 2, 0, 1), datetime(2024, 1, 3),
    ],
    "eid": ["e1", "e9", "e10", "e11", "e2", "e3", "e4", "e5"],
}
TINY_KW: dict[str, Any] = {"case": "case", "activity": "act", "ts": "ts", "tiebreak": "eid"}


def test_tiebreak_is_event_id_text_and_median_is_exact() -> None:
    t = ibis.memtable(TINY)
    got = {
        (r["from_activity"], r["to_activity"]): (r["count"], r["median_seconds"])
        for r in paths.transitions(t, **TINY_KW).to_pyarrow().to_pylist()
    }
    # a: x(0s) z(10s, e10) y(10s, e9) x(10.5s); b: x y(60s) x(60s, e4)
    assert got == {
        (START, "x"): (2, None), (START, "z"): (1, None),
        ("x", "z"): (1, 10.0), ("z", "y"): (1, 0.0), ("y", "x"): (2, 0.25),  # median of 0.5 and 0
        ("x", "y"): (1, 60.0),
        ("x", END): (2, None), ("z", END): (1, None),
    }


def test_missing_column_is_a_clear_error() -> None:
    t = ibis.memtable(TINY)
    with pytest.raises(HcpjError, match="no column 'hcp_id'"):
        paths.transitions(t, activity="act", ts="ts", tiebreak="eid")
    with pytest.raises(HcpjError, match="no column 'channel'"):
        paths.variants(t, case="case", ts="ts", tiebreak="eid")


# ----------------------------------------------------------------- variants
def test_variants_match_reference(eng: engines.Engine, rows: list[dict[str, Any]]) -> None:
    seqs = sequences(rows)
    ref = Counter(tuple(a for a, _ in seq) for seq in seqs.values())
    got = eng.to_pyarrow(paths.variants(eng.table("events"), as_list=True)).to_pylist()
    assert {tuple(r["variant"]): r["count"] for r in got} == dict(ref)
    assert sum(r["count"] for r in got) == len(seqs)
    for r in got:
        assert r["share"] == pytest.approx(r["count"] / len(seqs))
        assert r["n_events"] == len(r["variant"])
    counts = [r["count"] for r in got]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("presorted", [False, True])
def test_top_variants_are_the_first_of_all(eng: engines.Engine, presorted: bool) -> None:
    ev = eng.table("events")
    full = eng.to_pyarrow(paths.variants(ev, presorted=presorted)).to_pylist()
    for top in (1, 3, 7):
        assert eng.to_pyarrow(paths.variants(ev, top=top, presorted=presorted)).to_pylist() == full[:top]
    over = eng.to_pyarrow(paths.variants(ev, top=len(full) + 5, presorted=presorted)).to_pylist()
    assert over == full


def test_case_fingerprints_separate_sequences(eng: engines.Engine, rows: list[dict[str, Any]]) -> None:
    seqs = sequences(rows)
    fps = eng.to_pyarrow(paths.case_fingerprints(eng.table("events"), presorted=True)).to_pylist()
    by_fp: dict[tuple[int, int, int], set[tuple[str, ...]]] = defaultdict(set)
    for r in fps:
        by_fp[(r["fp1"], r["fp2"], r["n_events"])].add(tuple(a for a, _ in seqs[r["case"]]))
    assert all(len(v) == 1 for v in by_fp.values())
    assert len(by_fp) == len({tuple(a for a, _ in s) for s in seqs.values()})


def test_variants_text_top_and_ties() -> None:
    t = ibis.memtable(
        {
            "case": ["1", "1", "2", "2", "3", "3", "4", "5"],
            "act": ["a", "b", "a", "b", "b", "a", "c", "c"],
            "ts": [datetime(2024, 1, 1, 0, 0, i) for i in range(8)],
            "eid": [f"e{i}" for i in range(8)],
        }
    )
    got = paths.variants(t, **TINY_KW).to_pyarrow().to_pylist()
    assert [(r["variant"], r["count"], r["share"]) for r in got] == [
        ("a -> b", 2, 0.4), ("c", 2, 0.4), ("b -> a", 1, 0.2),
    ]
    # "a -> b" and "b -> a" hold the same activities: the fingerprints of top=N tell them apart
    assert paths.variants(t, top=3, **TINY_KW).to_pyarrow().to_pylist() == got
    top = paths.variants(t, top=1, sep=",", **TINY_KW).to_pyarrow().to_pylist()
    assert [(r["variant"], r["count"]) for r in top] == [("a,b", 2)]
    with pytest.raises(HcpjError, match="top must be at least 1"):
        paths.variants(t, top=0, **TINY_KW)


def test_start_and_end_activities(eng: engines.Engine, rows: list[dict[str, Any]]) -> None:
    seqs = sequences(rows)
    ev = eng.table("events")
    starts = {r["activity"]: r["count"] for r in eng.to_pyarrow(paths.start_activities(ev)).to_pylist()}
    ends = {r["activity"]: r["count"] for r in eng.to_pyarrow(paths.end_activities(ev)).to_pylist()}
    assert starts == dict(Counter(seq[0][0] for seq in seqs.values()))
    assert ends == dict(Counter(seq[-1][0] for seq in seqs.values()))


# --------------------------------------------------------- steps after / before
def ref_steps(
    seqs: dict[Any, list[tuple[str, datetime]]], anchor: str, n: int, occurrence: str, after: bool
) -> dict[tuple[int, str], int]:
    out: Counter[tuple[int, str]] = Counter()
    for seq in seqs.values():
        acts = [a for a, _ in seq]
        pos = [i for i, a in enumerate(acts) if a == anchor]
        if occurrence == "first":
            pos = pos[:1]
        elif occurrence == "last":
            pos = pos[-1:]
        for p in pos:
            for k in range(1, n + 1):
                j = p + k if after else p - k
                if 0 <= j < len(acts):
                    out[(k, acts[j])] += 1
                else:
                    out[(k, END if after else START)] += 1
                    break
    return dict(out)


@pytest.mark.parametrize("occurrence", ["every", "first", "last"])
@pytest.mark.parametrize("after", [True, False])
def test_steps_after_and_before(
    eng: engines.Engine, rows: list[dict[str, Any]], occurrence: str, after: bool
) -> None:
    seqs = sequences(rows)
    anchor = "webinar:attended"
    want = ref_steps(seqs, anchor, 3, occurrence, after)
    fn = paths.steps_after if after else paths.steps_before
    got = eng.to_pyarrow(fn(eng.table("events"), anchor, 3, occurrence=occurrence)).to_pylist()
    assert {(r["step"], r["activity"]): r["count"] for r in got} == want
    n_anchors = sum(c for (k, _), c in want.items() if k == 1)
    assert n_anchors > 10
    for r in got:
        assert r["share"] == pytest.approx(r["count"] / n_anchors)


def test_steps_errors() -> None:
    t = ibis.memtable(TINY)
    with pytest.raises(HcpjError, match="n must be at least 1"):
        paths.steps_after(t, "x", 0, **TINY_KW)
    with pytest.raises(HcpjError, match="occurrence must be one of"):
        paths.steps_before(t, "x", 2, occurrence="some", **TINY_KW)


# ------------------------------------------------------------------ Sankey
def test_stage_flows() -> None:
    d = datetime(2024, 1, 1)
    entries = ibis.memtable(
        {
            "hcp_id": ["a", "a", "a", "b", "b", "c", "d", "d"],
            "stage": ["aware", "consider", "decide", "aware", "consider", "aware", "aware", "decide"],
            "stage_index": [1, 2, 3, 1, 2, 1, 1, 3],
            "entered_at": [d, d + timedelta(1), d + timedelta(2), d, d, d, d, d + timedelta(5)],
        }
    )
    got = [
        (r["source"], r["target"], r["count"])
        for r in paths.stage_flows(entries).to_pyarrow().to_pylist()
    ]
    assert got == [
        ("aware", "consider", 2), ("aware", "decide", 1), ("aware", paths.DROPPED, 1),
        ("consider", "decide", 1), ("consider", paths.DROPPED, 1),
    ]
    # with a later last stage, those who reached "decide" dropped there
    more = paths.stage_flows(entries, last_stage_index=4).to_pyarrow().to_pylist()
    assert ("decide", paths.DROPPED, 2) in [(r["source"], r["target"], r["count"]) for r in more]


def test_stage_flows_reference_on_world(eng: engines.Engine, rows: list[dict[str, Any]]) -> None:
    """Entries = first email:opened, then first webinar:attended at or after it (a small funnel)."""
    ev = eng.table("events")
    first_open = ev.filter((ev.channel == "email") & (ev.action == "opened"))
    s1 = first_open.group_by("hcp_id").aggregate(entered_at=first_open.ts.min())
    att = ev.filter((ev.channel == "webinar") & (ev.action == "attended")).inner_join(s1, "hcp_id")
    att = att.filter(att.ts >= att.entered_at)
    s2 = att.group_by("hcp_id").aggregate(entered_at=att.ts.min())
    entries = s1.mutate(stage=ibis.literal("aware"), stage_index=1).union(
        s2.mutate(stage=ibis.literal("consider"), stage_index=2)
    )
    flows = eng.to_pyarrow(paths.stage_flows(entries)).to_pylist()
    got = {(r["source"], r["target"]): r["count"] for r in flows}
    seqs = sequences(rows)
    opened = {c for c, s in seqs.items() if any(a == "email:opened" for a, _ in s)}
    went_on = set()
    for c in opened:
        s = seqs[c]
        t0 = min(t for a, t in s if a == "email:opened")
        if any(a == "webinar:attended" and t >= t0 for a, t in s):
            went_on.add(c)
    assert got == {
        ("aware", "consider"): len(went_on),
        ("aware", paths.DROPPED): len(opened) - len(went_on),
    }
    assert went_on and opened - went_on


# --------------------------------------------------------------- warehouse
def test_build_transitions_writes_tables(eng: engines.Engine, rows: list[dict[str, Any]]) -> None:
    tr, var = paths.build_transitions(eng)
    assert tuple(tr.columns) == paths.TRANSITION_COLUMNS
    assert_same_transitions(as_transitions(eng, eng.table("transitions")), ref_transitions(sequences(rows)))
    v = eng.to_pyarrow(eng.table("variants").order_by("rank")).to_pylist()
    assert [r["rank"] for r in v] == list(range(1, len(v) + 1))
    assert tuple(var.columns) == ("rank", *paths.VARIANT_COLUMNS)
    assert sum(r["count"] for r in v) == len(sequences(rows))
    # the stored table (numpy path) holds the lazy variants()' rows in its order
    lazy = eng.to_pyarrow(paths.variants(eng.table("events"))).to_pylist()
    assert [{k: r[k] for k in paths.VARIANT_COLUMNS} for r in v] == lazy


def test_build_transitions_needs_events(tmp_path: Path) -> None:
    ws = services.init_workspace(tmp_path / "empty")
    with services.warehouse(ws) as e, pytest.raises(HcpjError, match="run `hcpj build` first"):
        paths.build_transitions(e)


# ------------------------------------------------- fast paths on stored tables
SMALL = {
    # ties on ts (broken by eid as text), single-event cases, a null activity
    # (case d: its null event takes no part), activities holding ':'
    "case": ["a", "a", "a", "a", "b", "b", "b", "c", "d", "d", "d", "e", "f", "f"],
    "act": ["x", "y", "z", "x", "x", "y", "x", "z", "x", None, "y", "x:1", "x", "y"],
    "ts": [datetime(2024, 1, 1, 0, 0, s) for s in (0, 10, 10, 11, 0, 5, 5, 0, 0, 1, 2, 0, 3, 3)],
    "eid": ["e1", "e9", "e10", "e11", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e12", "e13", "e14"],
}


def _stored(tmp_path: Path, data: dict[str, list[Any]], name: str = "ev") -> engines.Engine:
    """An engine with ``data`` stored sorted by (case, ts, eid), like the warehouse's events."""
    e = engines.DuckDBEngine(tmp_path / "w.duckdb")
    e.create(name, ibis.memtable(data), order_by=["case", "ts", "eid"])
    return e


def test_stored_order_is_the_position_in_storage(tmp_path: Path) -> None:
    e = _stored(tmp_path, SMALL)
    t = e.table("ev")
    s = engines.stored_order(t, "_row")
    assert s is not None
    got = e.to_pyarrow(s.select("case", "eid", "_row")).to_pylist()
    assert [r["_row"] for r in got] == list(range(len(SMALL["case"])))
    # not for a filter, an in-memory table, or a table with deleted rows (gaps)
    assert engines.stored_order(t.filter(t.case == "a")) is None
    assert engines.stored_order(ibis.memtable(SMALL)) is None
    e._raw.execute("DELETE FROM ev WHERE eid = 'e3'")
    assert engines.stored_order(e.table("ev")) is None
    e.close()


@pytest.mark.parametrize("drop_null", [False, True])
def test_presorted_fast_paths_equal_sorting_on_small_stored_table(tmp_path: Path, drop_null: bool) -> None:
    data = SMALL
    if drop_null:  # no null activity: fingerprints use the stored row order
        keep = [i for i, a in enumerate(SMALL["act"]) if a is not None]
        data = {k: [v[i] for i in keep] for k, v in SMALL.items()}
    e = _stored(tmp_path, data)
    t = e.table("ev")
    kw = TINY_KW
    for fn in (paths.transitions, paths.start_activities, paths.end_activities):
        a = e.to_pyarrow(fn(t, presorted=True, **kw)).to_pylist()
        b = e.to_pyarrow(fn(t, **kw)).to_pylist()
        key = sorted(a, key=str)
        assert key == sorted(b, key=str), fn.__name__
    full = e.to_pyarrow(paths.variants(t, presorted=True, **kw)).to_pylist()
    assert full == e.to_pyarrow(paths.variants(t, **kw)).to_pylist()
    # a: x z y x (tie at 10s: e10 before e9); b: x y x; c/e single events; d: x y
    want = {("x", "z", "y", "x"): 1, ("x", "y", "x"): 1, ("z",): 1, ("x", "y"): 2, ("x:1",): 1}
    assert {tuple(r["variant"].split(" -> ")): r["count"] for r in full} == want
    for top in (1, 2, 5):
        assert e.to_pyarrow(paths.variants(t, top=top, presorted=True, **kw)).to_pylist() == full[:top]
    arr = paths.variant_arrays(t, presorted=True, **kw).to_pylist()
    assert {tuple(r["variant"]): r["count"] for r in arr} == want
    assert [r["count"] for r in arr] == sorted((r["count"] for r in arr), reverse=True)
    assert sum(r["share"] for r in arr) == pytest.approx(1.0)
    for after in (True, False):
        fn = paths.steps_after if after else paths.steps_before
        for occ in OCCURRENCES:
            a = e.to_pyarrow(fn(t, "x", 2, occurrence=occ, presorted=True, **kw)).to_pylist()
            assert a == e.to_pyarrow(fn(t, "x", 2, occurrence=occ, **kw)).to_pylist()
    e.close()


OCCURRENCES = paths.OCCURRENCES


def test_variant_arrays_equal_variants_on_world(eng: engines.Engine) -> None:
    ev = eng.table("events")
    exact = eng.to_pyarrow(paths.variants(ev, as_list=True, presorted=True)).to_pylist()
    fast = paths.variant_arrays(ev, presorted=True)
    assert pa_type_is_dictionary_list(fast)
    got = {tuple(r["variant"]): (r["count"], r["n_events"]) for r in fast.to_pylist()}
    assert got == {tuple(r["variant"]): (r["count"], r["n_events"]) for r in exact}
    # the fingerprints' groups equal the exact (sequence) groups
    assert len(got) == len(exact)


def pa_type_is_dictionary_list(table: Any) -> bool:
    import pyarrow as pa

    typ = table.schema.field("variant").type
    return pa.types.is_list(typ) and pa.types.is_dictionary(typ.value_type)


def test_steps_anchor_over_columns_holding_the_separator() -> None:
    t = ibis.memtable({
        "case": ["1", "1", "1", "2", "2"],
        "a": ["x:y", "x", "q", "x:y", "x"],
        "b": ["z", "y:z", "r", "z", "w"],
        "ts": [datetime(2024, 1, 1, 0, 0, i) for i in range(5)],
        "eid": [f"e{i}" for i in range(5)],
    })
    kw: dict[str, Any] = {"case": "case", "activity": ["a", "b"], "ts": "ts", "tiebreak": "eid"}
    # "x:y:z" is both (x:y, z) and (x, y:z): every occurrence is an anchor
    got = paths.steps_after(t, "x:y:z", 1, **kw).to_pyarrow().to_pylist()
    assert {(r["activity"], r["count"]) for r in got} == {("x:y:z", 1), ("q:r", 1), ("x:w", 1)}
