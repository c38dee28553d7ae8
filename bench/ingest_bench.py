"""Validated ingest of simulated interactions vs DuckDB's own CSV load, interleaved.

Peer: DuckDB ``CREATE TABLE t AS SELECT * FROM read_csv(FILE) ORDER BY record_id, ts``
on the same file (no validation, no quarantine, no keys). Ours: ``hcpj ingest`` of
the same interactions.csv into a workspace that already holds the drop's hcps,
which validates every rule of the contract, keys and stores sorted.

Each run is a fresh subprocess, so peak memory (ru_maxrss) is per run. Runs
alternate ours/peer to share machine noise. Prints the speed ratio
(peer seconds / our seconds; target >= 0.7) and the peak memory (target <= 4 GiB).

    python bench/ingest_bench.py --hcps 100000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ensure_drop  # noqa: E402

OURS = r"""
import json, resource, sys, time
from pathlib import Path
from hcpjourney.config import Workspace
from hcpjourney import services
ws = Workspace.init(sys.argv[1])
services.ingest(ws, [Path(sys.argv[2]) / "hcps.csv"])
t = time.perf_counter()
results, _ = services.ingest(ws, [Path(sys.argv[2]) / "interactions.csv"])
secs = time.perf_counter() - t
r = results[0]
print(json.dumps({"seconds": secs, "rows": r.loaded, "quarantined": r.quarantined,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

PEER = r"""
import json, resource, sys, time
import duckdb
con = duckdb.connect(sys.argv[1] + "/peer.duckdb")
t = time.perf_counter()
con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?) ORDER BY record_id, ts",
            [sys.argv[2] + "/interactions.csv"])
secs = time.perf_counter() - t
rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
print(json.dumps({"seconds": secs, "rows": rows,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run(code: str, drop: Path) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="hcpj-bench-"))
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(work), str(drop)],
            check=True, capture_output=True, text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hcps", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    drop = ensure_drop(args.hcps, args.seed)
    size = (drop / "interactions.csv").stat().st_size
    ours, peer = [], []
    for i in range(args.repeat):
        o = run(OURS, drop)
        p = run(PEER, drop)
        ours.append(o)
        peer.append(p)
        print(f"run {i + 1}: ours {o['seconds']:.1f}s ({o['peak_kib'] / 2**20:.2f} GiB), "
              f"duckdb {p['seconds']:.1f}s ({p['peak_kib'] / 2**20:.2f} GiB)", flush=True)
    o_s = statistics.median(r["seconds"] for r in ours)
    p_s = statistics.median(r["seconds"] for r in peer)
    o_mem = max(r["peak_kib"] for r in ours) / 2**20
    p_mem = max(r["peak_kib"] for r in peer) / 2**20
    print()
    print(f"interactions.csv: {ours[0]['rows']:,} rows loaded by us, {peer[0]['rows']:,} by duckdb, "
          f"{size / 2**30:.2f} GiB, {ours[0]['quarantined']:,} quarantined")
    print(f"median seconds: ours {o_s:.1f}, duckdb {p_s:.1f}")
    print(f"speed ratio (duckdb time / our time): {p_s / o_s:.2f}x   target >= 0.70x")
    print(f"peak memory: ours {o_mem:.2f} GiB, duckdb {p_mem:.2f} GiB   target ours <= 4 GiB")


if __name__ == "__main__":
    main()
