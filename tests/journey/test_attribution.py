"""Attribution against independent plain-Python references: paths built row by row,
Markov chains solved by fixed-point iteration (not a linear solve), Shapley values by
the full subset formula (not the closed form), and a hand-solved example."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import ibis
import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import Workspace
from hcpjourney.errors import HcpjError
from hcpjourney.journey import attribution as attr
from hcpjourney.journey.outcomes import adoption_times
from hcpjourney.simulate import simulate

PRODUCT = "cardiozen"
CONV, NULL, START = "__conv__", "__null__", "__start__"


# ---------------------------------------------------------------- references
def ref_paths(
    events: list[dict[str, Any]], adopted: dict[str, datetime]
) -> dict[str, tuple[list[str], bool]]:
    """CONTRACT section 4 paths: (collapsed channels before adoption, converted)."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in events:
        by[r["hcp_id"]].append(r)
    out = {}
    for h, evs in by.items():
        evs.sort(key=lambda r: (r["ts"], r["event_id"]))
        at = adopted.get(h)
        path: list[str] = []
        for r in evs:
            if at is not None and not r["ts"] < at:
                break
            if not path or path[-1] != r["channel"]:
                path.append(r["channel"])
        out[h] = (path, at is not None)
    return out


def chain_probability(
    paths: dict[str, tuple[list[str], bool]], order: int, removed: str | None
) -> float:
    """P(conversion) of the order-k chain by fixed-point iteration; states holding
    ``removed`` convert with probability 0."""
    counts: dict[Any, Counter[Any]] = defaultdict(Counter)
    for path, conv in paths.values():
        states: list[Any] = [START] + [tuple(path[max(0, i - order + 1): i + 1]) for i in range(len(path))]
        for a, b in itertools.pairwise(states):
            counts[a][b] += 1
        counts[states[-1]][CONV if conv else NULL] += 1
    x: dict[Any, float] = defaultdict(float)
    x[CONV] = 1.0
    for _ in range(100_000):
        delta = 0.0
        for s, nxt in counts.items():
            if removed is not None and s != START and removed in s:
                continue
            total = sum(nxt.values())
            v = sum(c * (0.0 if (removed is not None and isinstance(t, tuple) and removed in t) else x[t])
                    for t, c in nxt.items()) / total
            delta = max(delta, abs(v - x[s]))
            x[s] = v
        if delta < 1e-15:
            break
    return x[START]


def ref_removal_effects(paths: dict[str, tuple[list[str], bool]], order: int) -> dict[str, float]:
    p = chain_probability(paths, order, None)
    channels = sorted({c for path, _ in paths.values() for c in path})
    return {c: 1 - chain_probability(paths, order, c) / p for c in channels}


def ref_shapley(paths: dict[str, tuple[list[str], bool]]) -> dict[str, float]:
    """Shapley value with v(S) = conversions of paths whose channel set is within S (subset sums)."""
    players = sorted({c for path, conv in paths.values() if conv for c in path})
    n = len(players)
    bit = {c: 1 << i for i, c in enumerate(players)}
    v = [0.0] * (1 << n)
    for path, conv in paths.values():
        if conv and path:
            v[sum(bit[c] for c in set(path))] += 1
    for i in range(n):  # v(S) = sum of exact-set counts over subsets of S
        for mask in range(1 << n):
            if mask & (1 << i):
                v[mask] += v[mask ^ (1 << i)]
    fact = [math.factorial(k) for k in range(n + 1)]
    out = {}
    for i, c in enumerate(players):
        phi = 0.0
        for mask in range(1 << n):
            if not mask & (1 << i):
                s = bin(mask).count("1")
                phi += fact[s] * fact[n - s - 1] / fact[n] * (v[mask | (1 << i)] - v[mask])
        out[c] = phi
    return out


def ref_heuristics(paths: dict[str, tuple[list[str], bool]]) -> dict[str, dict[str, float]]:
    first: Counter[str] = Counter()
    last: Counter[str] = Counter()
    linear: dict[str, float] = defaultdict(float)
    for path, conv in paths.values():
        if not conv or not path:
            continue
        first[path[0]] += 1
        last[path[-1]] += 1
        for c in path:
            linear[c] += 1 / len(path)
    return {"first_touch": dict(first), "last_touch": dict(last), "linear": dict(linear)}


def shares(d: dict[str, float]) -> dict[str, float]:
    total = sum(d.values())
    return {k: v / total for k, v in d.items()}


# ------------------------------------------------------------ hand-solved case
def tiny() -> tuple[ibis.Table, ibis.Table]:
    d = datetime
    rows = [
        # h1: A, A (collapsed), adopts on 01-03, then B after adoption (cut) -> A, conv
        ("h1", "e1", d(2024, 1, 1), "A"), ("h1", "e2", d(2024, 1, 2), "A"), ("h1", "e3", d(2024, 1, 4), "B"),
        # h2: A, B, B -> null
        ("h2", "e4", d(2024, 1, 1), "A"), ("h2", "e5", d(2024, 1, 2), "B"), ("h2", "e6", d(2024, 1, 3), "B"),
        # h3: B -> conv
        ("h3", "e7", d(2024, 1, 1), "B"),
        # h4: A then B at the same instant, ordered by event_id as text ("e10" < "e9") -> A, B, conv
        ("h4", "e9", d(2024, 1, 1), "B"), ("h4", "e10", d(2024, 1, 1), "A"),
        # h5: its only event is at the adoption instant (not before) -> empty path, conv
        ("h5", "e11", d(2024, 2, 1), "A"),
    ]
    events = ibis.memtable(
        {k: [r[i] for r in rows] for i, k in enumerate(("hcp_id", "event_id", "ts", "channel"))}
    )
    adoptions = ibis.memtable(
        {
            "hcp_id": ["h1", "h3", "h4", "h5", "h6"],  # h6 has no events: left out
            "adopted_at": [d(2024, 1, 3), d(2024, 3, 1), d(2024, 3, 1), d(2024, 2, 1), d(2024, 1, 1)],
        }
    )
    return events, adoptions


def test_hand_solved_example() -> None:
    events, adoptions = tiny()
    first = attr.markov_attribution(events, adoptions)
    # START: A 3, B 1, conv 1; A: conv 1, B 2; B: conv 2, null 1
    assert first.conversion_probability == pytest.approx(4 / 5, abs=1e-12)
    assert first.removal_effects == pytest.approx({"A": 7 / 12, "B": 1 / 2}, abs=1e-12)
    assert first.shares == pytest.approx({"A": 7 / 13, "B": 6 / 13}, abs=1e-12)
    second = attr.markov_attribution(events, adoptions, order=2)
    assert second.conversion_probability == pytest.approx(4 / 5, abs=1e-12)
    assert second.removal_effects == pytest.approx({"A": 1 / 2, "B": 1 / 2}, abs=1e-12)

    table = attr.attribution_table(events, adoptions)
    assert list(table.columns) == [
        "channel", "removal_effect", "share", "markov_order_2", "shapley", "first_touch",
        "last_touch", "linear",
    ]
    got = table.set_index("channel").to_dict("index")
    assert got["A"] == pytest.approx(
        {"removal_effect": 7 / 12, "share": 7 / 13, "markov_order_2": 0.5, "shapley": 0.5,
         "first_touch": 2 / 3, "last_touch": 1 / 3, "linear": 0.5}, abs=1e-12)
    assert got["B"] == pytest.approx(
        {"removal_effect": 1 / 2, "share": 6 / 13, "markov_order_2": 0.5, "shapley": 0.5,
         "first_touch": 1 / 3, "last_touch": 2 / 3, "linear": 0.5}, abs=1e-12)
    assert list(table["channel"]) == ["A", "B"]  # highest share first
    assert table.attrs["converting_paths"] == 3


def test_removal_effects_from_counts() -> None:
    counts = [
        ("__start__", "A", 3), ("__start__", "B", 1), ("__start__", "adoption", 1),
        ("A", "adoption", 1), ("A", "B", 2), ("B", "adoption", 2), ("B", "__null__", 1),
    ]
    res = attr.markov_removal_effects(counts)
    assert res.removal_effects == pytest.approx({"A": 7 / 12, "B": 1 / 2}, abs=1e-12)


def test_no_conversion_gives_zero_effects() -> None:
    events, _ = tiny()
    none = ibis.memtable({"hcp_id": ["zz"], "adopted_at": [datetime(2024, 1, 1)]})
    res = attr.markov_attribution(events, none)
    assert res.conversion_probability == 0.0
    assert res.removal_effects == {"A": 0.0, "B": 0.0}
    assert res.shares == {"A": 0.0, "B": 0.0}


def test_errors() -> None:
    events, adoptions = tiny()
    with pytest.raises(HcpjError, match="2 or more"):
        attr.attribution_table(events, adoptions, order=1)
    with pytest.raises(HcpjError, match="at least 1"):
        attr.markov_attribution(events, adoptions, order=0)
    with pytest.raises(HcpjError, match="events have no column 'channel'"):
        attr.markov_attribution(events.rename(ch="channel"), adoptions)
    with pytest.raises(HcpjError, match="adoptions have no column 'adopted_at'"):
        attr.markov_attribution(events, adoptions.rename(at="adopted_at"))


# ---------------------------------------------------------- simulated world
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("attribution_world")
    simulate(300, root / "drop", seed=3)
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
def events_rows(eng: engines.Engine) -> list[dict[str, Any]]:
    ev = eng.table("events")
    return eng.to_pyarrow(ev.select("hcp_id", "event_id", "ts", "channel")).to_pylist()


@pytest.fixture(scope="module")
def adopted(eng: engines.Engine) -> dict[str, datetime]:
    """Reference adoption computed here from outcomes and identities (CONTRACT section 4)."""
    ids = {r["record_id"]: r["hcp_id"] for r in eng.to_pyarrow(eng.table("identities")).to_pylist()}
    out: dict[str, datetime] = {}
    for o in eng.to_pyarrow(eng.table("outcomes")).to_pylist():
        if o["product"] != PRODUCT or not (o["nrx"] or 0) > 0:
            continue
        y, m = map(int, o["period"].split("-"))
        at = datetime(y + m // 12, m % 12 + 1, 1)  # first day of the next month
        h = ids[o["record_id"]]
        out[h] = min(out.get(h, at), at)
    return out


@pytest.fixture(scope="module")
def extra(events_rows: list[dict[str, Any]], adopted: dict[str, datetime]) -> dict[str, datetime]:
    """Adoptions added to exercise every branch: non-adopters made to adopt at their first
    event (empty path), and adopters without any event (left out)."""
    first: dict[str, datetime] = {}
    for r in events_rows:
        first[r["hcp_id"]] = min(first.get(r["hcp_id"], r["ts"]), r["ts"])
    others = sorted(h for h in first if h not in adopted)[:5]
    out = {h: first[h] for h in others}
    out.update({f"ghost-{i}": datetime(2025, 3, 1) for i in range(3)})
    return out


@pytest.fixture(scope="module")
def ref(
    events_rows: list[dict[str, Any]], adopted: dict[str, datetime], extra: dict[str, datetime]
) -> dict[str, tuple[list[str], bool]]:
    paths = ref_paths(events_rows, {**adopted, **extra})
    assert any(conv and not p for p, conv in paths.values()), "no empty-path adopter"
    assert any(conv and p for p, conv in paths.values())
    assert any(not conv for p, conv in paths.values())
    assert not any(h.startswith("ghost-") for h in paths)
    return paths


@pytest.fixture(scope="module")
def table(eng: engines.Engine, extra: dict[str, datetime]) -> Any:
    more = ibis.memtable({"hcp_id": list(extra), "adopted_at": list(extra.values())})
    adoptions = adoption_times(eng, PRODUCT).union(more)
    return attr.attribution_table(eng.table("events"), adoptions, order=2)


def test_world_first_order_removal_effects(table: Any, ref: dict[str, tuple[list[str], bool]]) -> None:
    want = ref_removal_effects(ref, 1)
    got = dict(zip(table["channel"], table["removal_effect"], strict=True))
    assert set(got) == set(want)
    for c in want:
        assert got[c] == pytest.approx(want[c], abs=1e-6), c
    got_share = dict(zip(table["channel"], table["share"], strict=True))
    assert got_share == pytest.approx(shares(want), abs=1e-6)


def test_world_second_order(table: Any, ref: dict[str, tuple[list[str], bool]]) -> None:
    want = shares(ref_removal_effects(ref, 2))
    got = dict(zip(table["channel"], table["markov_order_2"], strict=True))
    assert got == pytest.approx(want, abs=1e-6)


def test_world_presorted_equals_sorting_and_order_k_at_k1(eng: engines.Engine) -> None:
    ev, ad = eng.table("events"), adoption_times(eng, PRODUCT)
    sort = attr.chain_counts(attr.touches(ev, ad, order=2), 1).to_pyarrow().to_pylist()
    pre = attr.chain_counts(attr.touches(ev, ad, presorted=True), 1).to_pyarrow().to_pylist()
    key = sorted((r["src"], r["dst"], r["count"]) for r in sort)
    assert key == sorted((r["src"], r["dst"], r["count"]) for r in pre)
    a = attr.markov_attribution(ev, ad)
    b = attr.markov_attribution(ev, ad, presorted=True)
    assert a.removal_effects == pytest.approx(b.removal_effects, abs=1e-12)
    two = attr.chain_counts(attr.touches(ev, ad, order=2, presorted=True), 2).to_pyarrow().to_pylist()
    assert sorted((r["src"], r["dst"], r["count"]) for r in two) == sorted(
        (r["src"], r["dst"], r["count"])
        for r in attr.chain_counts(attr.touches(ev, ad, order=2), 2).to_pyarrow().to_pylist()
    )


def test_world_shapley_and_heuristics(table: Any, ref: dict[str, tuple[list[str], bool]]) -> None:
    shap = shares(ref_shapley(ref))
    heur = ref_heuristics(ref)
    rows = table.set_index("channel").to_dict("index")
    for c, r in rows.items():
        assert r["shapley"] == pytest.approx(shap.get(c, 0.0), abs=1e-9), c
        for m in ("first_touch", "last_touch", "linear"):
            assert r[m] == pytest.approx(shares(heur[m]).get(c, 0.0), abs=1e-9), (c, m)
    for m in ("share", "markov_order_2", "shapley", "first_touch", "last_touch", "linear"):
        assert table[m].sum() == pytest.approx(1.0)


def test_build_attribution_writes_the_table(eng: engines.Engine) -> None:
    out = attr.build_attribution(eng, PRODUCT)
    table = attr.attribution_table(eng.table("events"), adoption_times(eng, PRODUCT))
    assert list(out.columns)[:3] == list(attr.CONTRACT_COLUMNS)
    stored = eng.to_pyarrow(out).to_pandas().set_index("channel").sort_index()
    expect = table.set_index("channel").sort_index()
    assert list(stored.index) == list(expect.index)
    for col in expect.columns:
        assert list(stored[col]) == pytest.approx(list(expect[col]), abs=1e-12)
