"""Journey paths at 10M events vs pm4py (discover_dfg, get_variants), same data, one run.

Data: ``hcpj simulate --hcps 100000`` (about 9.6M interactions; cached in
bench/out/drop_100000_1, shared with ingest_bench.py). To keep set-up to a
minute instead of a full ingest + identity build, the events table is built
directly from the drop's interactions.csv with the simulator's true identity
(``_truth/persons.csv``: record_id -> person_id) as ``hcp_id`` -- what a perfect
``hcpj build`` would give -- stored sorted by (hcp_id, ts, event_id) like the
warehouse's ``events``; adoption (CONTRACT) from outcomes.csv the same way. It
is cached in bench/out/journey_100000_1/warehouse.duckdb.

Peer: pm4py 2.7 (AGPL; bench/test only) on a pandas DataFrame of the same
events in the same order (sorted by case, ts, event_id: the CONTRACT order),
with case = hcp_id, activity = channel:action:

- ``pm4py.discover_dfg`` vs our ``paths.transitions`` (plus start/end activities);
- ``pm4py.get_variants`` vs our ``paths.variant_arrays`` (the engine path
  ``paths.variants`` is printed beside it for reference).

Ours and pm4py run in turn within each round (ours, peer, ours, ...), so a busy
spell of a shared machine falls on both; wall and CPU seconds are printed, with
the load average.

Each side is timed from the events table in its own memory (a DuckDB table for
ours, a DataFrame for pm4py) to the result in Python; both outputs are checked
to agree exactly before a ratio is printed. Then every journey query (paths and
first-order attribution) is timed at full size, median of ``--repeat`` runs.

    .venv/bin/python bench/journey_bench.py                  # 100k HCPs, ~9.6M events
    .venv/bin/python bench/journey_bench.py --peer-events 2000000   # pm4py on a subset
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import ibis  # noqa: E402
from common import (  # noqa: E402
    alternate,
    cpu_seconds,
    ensure_drop,
    load_avg,
    open_engine,
    timed,
    truth_events,
)

from hcpjourney.engine import DuckDBEngine  # noqa: E402
from hcpjourney.journey import attribution, paths  # noqa: E402
from hcpjourney.journey.outcomes import outcome_time  # noqa: E402

PRODUCT = "cardiozen"


def ensure_warehouse(hcps: int, seed: int) -> Path:
    """bench/out/journey_{hcps}_{seed}/warehouse.duckdb with tables events and adoptions."""
    target = HERE / "out" / f"journey_{hcps}_{seed}" / "warehouse.duckdb"
    if target.exists():
        return target
    drop = ensure_drop(hcps, seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    print(f"building events from {drop.name}/interactions.csv (cached in {target.parent.name})", flush=True)
    t = time.perf_counter()
    eng = open_engine(tmp, read_only=False)
    try:
        con = eng.backend
        persons = con.read_csv(str(drop / "_truth" / "persons.csv"), table_name="persons_csv")
        ix = con.read_csv(
            str(drop / "interactions.csv"), table_name="interactions_csv", all_varchar=True
        )
        ids = persons.select(record_id=persons.record_id, hcp_id=persons.person_id)
        eng.create("events", truth_events(ix, ids), order_by=["hcp_id", "ts", "event_id"])
        oc = con.read_csv(str(drop / "outcomes.csv"), table_name="outcomes_csv", all_varchar=True)
        o = oc.inner_join(ids, "record_id")
        o = o.filter((o.nrx.cast("float64") > 0) & (o["product"] == PRODUCT))
        o = o.mutate(at=outcome_time(o.period))
        adoptions = o.group_by("hcp_id").aggregate(adopted_at=o.at.min())
        eng.create("adoptions", adoptions, order_by=["hcp_id"])
        n = eng.count(eng.table("events"))
    finally:
        eng.close()
    tmp.rename(target)
    print(f"  {n:,} events in {time.perf_counter() - t:.0f}s", flush=True)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hcps", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5, help="runs per timing (median)")
    ap.add_argument("--peer-events", type=int, default=0,
                    help="run pm4py on the first cases holding about this many events (0: all)")
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()

    wh = ensure_warehouse(args.hcps, args.seed)
    eng = open_engine(wh, read_only=True)
    ev = eng.table("events")
    ad = eng.table("adoptions")
    n_events = eng.count(ev)
    print(f"{n_events:,} events, {eng.count(ev.select('hcp_id').distinct()):,} HCPs; {load_avg()}")

    if not args.no_peer:
        compare_with_pm4py(eng, ev, args.peer_events, args.repeat)

    # ------------------------------------------------------- every journey query
    print(f"\njourney queries at {n_events:,} events (median of {args.repeat}):")
    first = eng.to_pyarrow(ev.select("channel", "action").limit(1)).to_pylist()[0]
    anchor = f"{first['channel']}:{first['action']}"
    stage_entries = _stage_entries(ev)
    pre = {"presorted": True}  # events is stored sorted by (hcp_id, ts, event_id)
    queries: dict[str, Callable[[], Any]] = {
        "transitions": lambda: eng.to_pyarrow(paths.transitions(ev, **pre)),
        "variants, all (variant_arrays, Arrow lists)": lambda: paths.variant_arrays(ev, **pre),
        "variants (top 20)": lambda: eng.to_pyarrow(paths.variants(ev, top=20, **pre)),
        "start activities": lambda: eng.to_pyarrow(paths.start_activities(ev, **pre)),
        "end activities": lambda: eng.to_pyarrow(paths.end_activities(ev, **pre)),
        f"steps_after({anchor}, 3)": lambda: eng.to_pyarrow(paths.steps_after(ev, anchor, 3, **pre)),
        f"steps_before({anchor}, 3, first)": lambda: eng.to_pyarrow(
            paths.steps_before(ev, anchor, 3, occurrence="first", **pre)
        ),
        "stage_flows": lambda: eng.to_pyarrow(paths.stage_flows(stage_entries)),
        "transitions over topic": lambda: eng.to_pyarrow(paths.transitions(ev, activity="topic", **pre)),
        "attribution (first-order Markov)": lambda: attribution.markov_attribution(ev, ad, **pre),
        "attribution_table (all methods)": lambda: attribution.attribution_table(ev, ad, **pre),
    }
    # not product queries: what `hcpj build` runs once to store the variants table, and
    # the engine paths kept for tables without a stored order
    reference: dict[str, Callable[[], Any]] = {
        "variants, all as text (variant_table; build)": lambda: paths.variant_table(ev, **pre),
        "variants() lazy, all, text (engine path)": lambda: eng.to_pyarrow(paths.variants(ev, **pre)),
        "transitions, sorting (presorted=False)": lambda: eng.to_pyarrow(paths.transitions(ev)),
    }
    for title, group in (("journey queries", queries), ("reference rows (not product queries)", reference)):
        print(f"  {title}:")
        for name, fn in group.items():
            c = cpu_seconds()
            secs, _ = timed(fn, args.repeat)
            cpu = (cpu_seconds() - c) / args.repeat
            mark = ("ok" if secs <= 1.0 else "OVER 1 s") if group is queries else ""
            print(f"  {name:<46} {secs:7.3f} s (cpu {cpu:.3f} s) {mark}  [load {os.getloadavg()[0]:.2f}]",
                  flush=True)
    print(f"({load_avg()})")


def _stage_entries(ev: ibis.Table) -> ibis.Table:
    """A stage_entries-like table from the journey.yaml's event stages (first entry per HCP)."""
    stages = [
        ("awareness", 1, (ev.channel == "email") & (ev.action == "opened")),
        ("consideration", 2, (ev.channel == "webinar") & (ev.action == "attended")),
        ("decision", 3, (ev.channel == "f2f_visit") & (ev.action == "completed")),
        ("advocacy", 4, (ev.channel == "congress") & (ev.action == "attended")),
    ]
    parts = []
    for name, idx, cond in stages:
        hit = ev.filter(cond)
        parts.append(
            hit.group_by("hcp_id").aggregate(entered_at=hit.ts.min()).mutate(
                stage=ibis.literal(name), stage_index=ibis.literal(idx)
            )
        )
    return parts[0].union(*parts[1:])


# ------------------------------------------------------------------- pm4py
def compare_with_pm4py(eng: DuckDBEngine, ev: ibis.Table, peer_events: int, repeat: int) -> None:
    import pandas as pd

    os.environ.setdefault("PM4PY_SHOW_PROGRESS_BAR", "False")
    import pm4py

    sub = ev
    if peer_events:
        # whole cases, in hcp_id order, until about peer_events events
        per = ev.group_by("hcp_id").aggregate(n=ev.count())
        per = per.mutate(cum=per.n.sum().over(ibis.window(order_by="hcp_id", rows=(None, 0))))
        keep = per.filter(per.cum <= peer_events).select("hcp_id")
        sub = ev.semi_join(keep, "hcp_id")
    n = eng.count(sub)
    print(f"\npm4py comparison on {n:,} events ({load_avg()})")
    t = time.perf_counter()
    df = eng.to_pyarrow(
        sub.select(
            **{
                "case:concept:name": sub.hcp_id,
                "concept:name": sub.channel.concat(":", sub.action),
                "time:timestamp": sub.ts,
                "event_id": sub.event_id,
            }
        ).order_by(["case:concept:name", "time:timestamp", "event_id"])
    ).to_pandas()
    df["time:timestamp"] = pd.to_datetime(df["time:timestamp"], utc=True)
    print(f"  pandas frame for pm4py built in {time.perf_counter() - t:.1f}s (not timed)")
    ours_ev = sub
    presorted = not peer_events  # a semi-join does not keep the stored order: sort then

    # ---------------------------------------------------------------- transitions
    def ours_dfg() -> dict[tuple[str, str], int]:
        # counts only, what discover_dfg gives (medians are timed separately below)
        tab = eng.to_pyarrow(
            paths.transitions(ours_ev, presorted=presorted, medians=False)).to_pylist()
        return {(r["from_activity"], r["to_activity"]): r["count"] for r in tab}

    def ours_with_medians() -> Any:
        return eng.to_pyarrow(paths.transitions(ours_ev, presorted=presorted))

    def peer_dfg() -> tuple[dict, dict, dict]:
        return pm4py.discover_dfg(df)

    peer_repeat = max(1, min(repeat, 3))
    res = alternate({"ours": ours_dfg, "peer": peer_dfg}, repeat, {"peer": peer_repeat})
    (t_ours, c_ours, dfg_ours), (t_peer, c_peer, (dfg, starts, ends)) = res["ours"], res["peer"]
    expected = dict(dfg)
    expected.update({(paths.START, a): c for a, c in starts.items()})
    expected.update({(a, paths.END): c for a, c in ends.items()})
    agree = dfg_ours == {k: int(v) for k, v in expected.items()}
    t_med, _ = timed(ours_with_medians, repeat)
    print(f"  transitions (counts, as discover_dfg): ours {t_ours:.3f}s (cpu {c_ours:.3f}s), "
          f"pm4py.discover_dfg {t_peer:.2f}s (cpu {c_peer:.2f}s), ratio {t_peer / t_ours:.1f}x "
          f"(target >= 20x; cpu ratio {c_peer / c_ours:.1f}x); outputs agree: {agree}; ours with "
          f"exact median gaps too: {t_med:.3f}s ({t_peer / t_med:.1f}x)  [{load_avg()}]", flush=True)
    if not agree:
        raise SystemExit("transitions differ from pm4py's")

    # ---------------------------------------------------------------- variants
    # ours: every variant as an Arrow table of dictionary-encoded activity lists
    # (paths.variant_arrays: numpy over the stored order; on a subset, which is a
    # semi-join without a stored order, it runs the engine path)
    def ours_variants() -> Any:
        return paths.variant_arrays(ours_ev, presorted=presorted)

    def ours_engine_variants() -> Any:  # the lazy engine path, for reference
        return eng.to_pyarrow(paths.variants(ours_ev, as_list=True, presorted=presorted))

    def peer_variants() -> dict[tuple[str, ...], int]:
        return pm4py.get_variants(df)

    res = alternate({"ours": ours_variants, "peer": peer_variants}, repeat, {"peer": peer_repeat})
    (t_ours, c_ours, var_table), (t_peer, c_peer, var_peer) = res["ours"], res["peer"]
    want = {tuple(k): int(v) for k, v in var_peer.items()}
    tab = var_table.to_pydict()
    var_ours = {tuple(v): c for v, c in zip(tab["variant"], tab["count"], strict=True)}
    agree = var_ours == want
    print(f"  variants (variant_arrays): ours {t_ours:.3f}s (cpu {c_ours:.3f}s), pm4py.get_variants "
          f"{t_peer:.2f}s (cpu {c_peer:.2f}s), ratio {t_peer / t_ours:.1f}x (target >= 20x; cpu "
          f"ratio {c_peer / c_ours:.1f}x); outputs agree: {agree} ({len(var_ours):,} variants)  "
          f"[{load_avg()}]", flush=True)
    if not agree:
        raise SystemExit("variants differ from pm4py's")
    t_eng, eng_table = timed(ours_engine_variants, max(1, min(repeat, 3)))
    tab = eng_table.to_pydict()
    agree = {tuple(v): c for v, c in zip(tab["variant"], tab["count"], strict=True)} == want
    print(f"  variants, engine path (paths.variants, lazy; reference): {t_eng:.3f}s, ratio "
          f"{t_peer / t_eng:.1f}x; outputs agree: {agree}", flush=True)
    if not agree:
        raise SystemExit("variants (engine path) differ from pm4py's")


if __name__ == "__main__":
    main()
