"""Helpers the benchmarks share: the cached simulated drop, a benchmark engine, the
events table a perfect identity build would give, and timing."""

from __future__ import annotations

import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import ibis  # noqa: E402
import ibis.expr.types as ir  # noqa: E402

from hcpjourney.engine import DuckDBEngine  # noqa: E402


def ensure_drop(hcps: int, seed: int) -> Path:
    """bench/out/drop_{hcps}_{seed}: a simulated drop, made once and reused."""
    drop = HERE / "out" / f"drop_{hcps}_{seed}"
    if not (drop / "interactions.csv").exists():
        from hcpjourney.simulate import simulate

        print(f"simulating {hcps:,} HCPs into {drop} (cached for later runs)", flush=True)
        t = time.perf_counter()
        simulate(hcps, drop, seed=seed)
        print(f"  simulated in {time.perf_counter() - t:.0f}s", flush=True)
    return drop


def open_engine(path: Path, *, read_only: bool) -> DuckDBEngine:
    """Our DuckDB engine with room for 10M-event work and no progress bar."""
    eng = DuckDBEngine(path, read_only=read_only, memory_limit="6GB")
    eng.backend.raw_sql("SET enable_progress_bar = false")
    return eng


def truth_events(interactions: ir.Table, ids: ir.Table) -> ir.Table:
    """The warehouse ``events`` columns of a drop's interactions.csv (read as text), with
    ``ids`` (record_id -> hcp_id, the simulator's true identity) as the resolution:
    what a perfect ``hcpj build`` would give, without the ingest and identity work."""
    j = interactions.inner_join(ids, "record_id")
    return j.select(
        "hcp_id", "event_id", "record_id",
        ts=j.ts.cast("timestamp('UTC')").cast("timestamp"),
        channel=j.channel, action=j.action, direction=j.direction, team=j.team,
        owner_id=j.owner_id, content_id=j.content_id, campaign_id=j.campaign_id,
        duration_s=j.duration_s.cast("float64"), value_usd=j.value_usd.cast("float64"),
        topic=j.topic, attributes=ibis.null("string"),
    )


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` runs, and the last result."""
    times = []
    out: Any = None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads, DuckDB's too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def alternate(
    fns: dict[str, Callable[[], Any]], repeat: int, peer_repeat: dict[str, int] | None = None
) -> dict[str, tuple[float, float, Any]]:
    """Median wall and CPU seconds of each function and its last result, the functions
    run in turn within each round so that a busy spell of a shared machine falls on
    every side; the order rotates from round to round (what runs right after the
    peer pays for the memory the peer handed back). ``peer_repeat`` caps a slow
    side's runs."""
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, Any] = {}
    names = list(fns)
    for i in range(repeat):
        for name in names[i % len(names):] + names[:i % len(names)]:
            fn = fns[name]
            if i >= (peer_repeat or {}).get(name, repeat):
                continue
            gc.collect()
            c, t = cpu_seconds(), time.perf_counter()
            outs[name] = fn()
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(cpu_seconds() - c)
    return {k: (statistics.median(walls[k]), statistics.median(cpus[k]), outs[k]) for k in fns}


def load_avg() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
