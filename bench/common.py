"""Helpers the benchmarks share: the cached simulated drop and a benchmark engine."""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

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
