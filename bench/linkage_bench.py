"""Identity resolution at scale: hcpjourney's linker vs Splink 5 with default-style settings.

For each size (HCP records: 100k, 300k, 1M by default) the simulator writes a
drop (``events_per_hcp=1``; ~1.98 records per person), a subprocess ingests its
hcps.csv into a fresh workspace, and then, each in its own subprocess:

- ours: ``hcpjourney.identity.resolve.resolve`` inside a warehouse transaction,
  exactly what ``hcpj build`` runs (normalise, prior, u sampling, EM, predict,
  constrained clustering, stable ids, tables written);
- peer: Splink 5 on the same normalised records with Splink's library
  comparisons (NameComparison, EmailComparison, ExactMatch, PostcodeComparison),
  the same blocking rules, u sampling and EM on the name and e-mail blocks, then
  ``cluster_pairwise_predictions_at_threshold`` (0.9). ``--no-peer`` skips it.

Peak memory is the child's ru_maxrss (os.wait4). Pairs scored per second uses
the exact number of blocked pairs (counted after the run, not timed). Pairwise
precision and recall are against the simulator's truth.

    python bench/linkage_bench.py                    # 100k, 300k, 1M
    python bench/linkage_bench.py --sizes 100000 --no-peer
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDS_PER_PERSON = 1.98  # measured on the simulator at 600k persons

INGEST = r"""
import json, sys, time
from pathlib import Path
from hcpjourney import services
ws = services.init_workspace(sys.argv[1])
t = time.perf_counter()
results, _ = services.ingest(ws, [Path(sys.argv[2]) / "hcps.csv"])
print(json.dumps({"seconds": time.perf_counter() - t, "records": results[0].loaded}))
"""

OURS = r"""
import json, sys, time
from hcpjourney import engine as engines
from hcpjourney.config import Workspace
from hcpjourney.identity.resolve import resolve
ws = Workspace.open(sys.argv[1])
eng = engines.connect(ws)
t = time.perf_counter()
with eng.transaction():
    s = resolve(eng)
secs = time.perf_counter() - t
eng.close()
print(json.dumps({"seconds": secs, "records": s.records, "hcps": s.hcps,
                  "pairs_at_floor": s.pairs_scored, "pairs_linked": s.pairs_linked,
                  "phases": s.seconds}))
"""

PEER = r"""
import json, logging, sys, time
import pyarrow as pa
import duckdb
from splink import Linker, SettingsCreator, block_on
import splink.comparison_library as cl
from splink.backends.duckdb import DuckDBAPI
from hcpjourney.identity.linkage import BLOCKING
from hcpjourney.identity.normalise import INPUT_COLUMNS, linkage_table
logging.getLogger("splink").setLevel(logging.ERROR)
con = duckdb.connect(sys.argv[1] + "/warehouse.duckdb")
t = time.perf_counter()
raw = con.execute(f"SELECT {', '.join(INPUT_COLUMNS)} FROM hcps ORDER BY record_id").arrow()
raw = raw.read_all() if hasattr(raw, "read_all") else raw
data = linkage_table(raw)
api = DuckDBAPI(connection=con)
sdf = api.register(data, table_name="__splink__peer_input")
settings = SettingsCreator(
    link_type="dedupe_only", unique_id_column_name="record_id",
    comparisons=[
        cl.ExactMatch("npi"), cl.EmailComparison("email"), cl.ExactMatch("phone"),
        cl.NameComparison("first_name"), cl.NameComparison("last_name"),
        cl.PostcodeComparison("zip5"), cl.ExactMatch("city"), cl.ExactMatch("state"),
        cl.ExactMatch("specialty"), cl.ExactMatch("organization"), cl.ExactMatch("credential"),
    ],
    blocking_rules_to_generate_predictions=[block_on(*r) for r in BLOCKING],
    retain_matching_columns=False,
)
linker = Linker(sdf, settings, log_level=None)
n = data.num_rows
linker.training.estimate_probability_two_random_records_match(
    [block_on("first_name", "last_name", "zip5"), block_on("email")], recall=0.7)
linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
linker.training.estimate_parameters_using_expectation_maximisation(
    block_on("first_name", "last_name"), max_pairs=1e6)
linker.training.estimate_parameters_using_expectation_maximisation(
    block_on("email"), max_pairs=1e6)
pred = linker.inference.predict(threshold_match_probability=0.5)
clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, 0.9)
ids = clusters.as_duckdbpyrelation().select("record_id, cluster_id").arrow()
ids = ids.read_all() if hasattr(ids, "read_all") else ids
secs = time.perf_counter() - t
con.execute("CREATE OR REPLACE TABLE peer_identities AS SELECT record_id, "
            "CAST(cluster_id AS VARCHAR) AS hcp_id FROM ids")
print(json.dumps({"seconds": secs, "records": n}))
"""

COUNT = r"""
import json, logging, sys, time
from hcpjourney import engine as engines
from hcpjourney.config import Workspace
from hcpjourney.identity import linkage
from hcpjourney.identity.normalise import INPUT_COLUMNS, linkage_table
logging.getLogger("splink").setLevel(logging.ERROR)
ws = Workspace.open(sys.argv[1])
eng = engines.connect(ws)
t = time.perf_counter()
raw = eng.to_pyarrow(eng.table("hcps").select(*INPUT_COLUMNS))
n = linkage.candidate_pairs(eng, linkage_table(raw))
print(json.dumps({"candidate_pairs": n, "seconds": time.perf_counter() - t}))
"""

ACCURACY = r"""
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1] + "/warehouse.duckdb", read_only=True)
con.execute("CREATE TEMP TABLE truth AS SELECT record_id, person_id FROM read_csv(?)",
            [sys.argv[2] + "/_truth/persons.csv"])
out = {}
for name, table in (("ours", "identities"), ("peer", "peer_identities")):
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
                       [table]).fetchone()[0]:
        continue
    q = f'''
    WITH j AS (SELECT i.hcp_id, t.person_id FROM {table} i JOIN truth t USING (record_id)),
    p AS (SELECT count(*) AS c FROM j GROUP BY hcp_id),
    t AS (SELECT count(*) AS c FROM j GROUP BY person_id),
    b AS (SELECT count(*) AS c FROM j GROUP BY hcp_id, person_id)
    SELECT (SELECT sum(c * (c - 1) / 2) FROM p), (SELECT sum(c * (c - 1) / 2) FROM t),
           (SELECT sum(c * (c - 1) / 2) FROM b)'''
    pred, true, both = con.execute(q).fetchone()
    prec, rec = both / max(pred, 1), both / max(true, 1)
    out[name] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / max(prec + rec, 1e-12)}
print(json.dumps(out))
"""


def ensure_drop(records: int, seed: int, root: Path) -> Path:
    persons = max(1, round(records / RECORDS_PER_PERSON))
    drop = root / f"linkage_{persons}_{seed}"
    if not (drop / "hcps.csv").exists():
        from hcpjourney.simulate import simulate

        print(f"simulating {persons:,} people (~{records:,} records) into {drop}", flush=True)
        t = time.perf_counter()
        simulate(persons, drop, seed=seed, events_per_hcp=1)
        print(f"  simulated in {time.perf_counter() - t:.0f}s", flush=True)
    return drop


def run(code: str, *args: str) -> tuple[dict[str, object], float]:
    """Run ``code`` in a child; its last stdout line (JSON) and peak RSS in GiB."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=err,
                                text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"child failed ({proc.returncode}):\n{err.read()[-3000:]}")
        lines = out.read().strip().splitlines()
    return json.loads(lines[-1]), usage.ru_maxrss / (1 << 20)


def bench_size(records: int, seed: int, data_root: Path, peer: bool) -> dict[str, object]:
    drop = ensure_drop(records, seed, data_root)
    work = Path(tempfile.mkdtemp(prefix="hcpj-linkbench-"))
    try:
        ws = str(work / "ws")
        ing, ing_rss = run(INGEST, ws, str(drop))
        print(f"[{records:,}] ingested {ing['records']:,} records in {ing['seconds']:.1f}s "
              f"(peak {ing_rss:.2f} GiB)", flush=True)
        ours, ours_rss = run(OURS, ws)
        phases = {k: round(float(v), 1) for k, v in dict(ours["phases"]).items()}  # type: ignore[call-overload]
        print(f"[{records:,}] ours: {ours['seconds']:.1f}s, peak {ours_rss:.2f} GiB, "
              f"{ours['hcps']:,} HCPs; phases {phases}", flush=True)
        result: dict[str, object] = {"records": ing["records"], "ingest_s": ing["seconds"],
                                     "ours_s": ours["seconds"], "ours_peak_gib": ours_rss,
                                     "ours_phases": phases, "hcps": ours["hcps"],
                                     "pairs_at_floor": ours["pairs_at_floor"]}
        if peer:
            pr, pr_rss = run(PEER, ws)
            print(f"[{records:,}] peer: {pr['seconds']:.1f}s, peak {pr_rss:.2f} GiB", flush=True)
            result.update(peer_s=pr["seconds"], peer_peak_gib=pr_rss)
        cnt, _ = run(COUNT, ws)
        result["candidate_pairs"] = cnt["candidate_pairs"]
        acc, _ = run(ACCURACY, ws, str(drop))
        result["accuracy"] = acc
        secs = float(ours["seconds"])  # type: ignore[arg-type]
        pairs = int(cnt["candidate_pairs"])  # type: ignore[call-overload]
        result["pairs_per_s"] = pairs / secs
        result["predict_pairs_per_s"] = pairs / max(phases.get("predict", secs), 1e-9)
        print(f"[{records:,}] {pairs:,} blocked pairs: {pairs / secs:,.0f} pairs/s end to end, "
              f"{result['predict_pairs_per_s']:,.0f} pairs/s in predict; accuracy {acc}",
              flush=True)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, default=HERE / "out",
                    help="folder for simulated drops (cached between runs)")
    ap.add_argument("--no-peer", action="store_true", help="skip the Splink default-style peer")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    results = [bench_size(n, args.seed, args.data, not args.no_peer) for n in args.sizes]
    print("\nrecords    ours_s  peak_GiB  blocked_pairs   pairs/s   peer_s  peer/ours  "
          "P_ours  R_ours  P_peer  R_peer")
    base = None
    for r in results:
        acc = dict(r["accuracy"])  # type: ignore[call-overload]
        o, p = acc.get("ours", {}), acc.get("peer", {})
        peer_s = r.get("peer_s")
        ratio = f"{float(peer_s) / float(r['ours_s']):9.2f}" if peer_s else "        -"  # type: ignore[arg-type]
        print(f"{r['records']:>9,} {r['ours_s']:8.1f} {r['ours_peak_gib']:9.2f} "
              f"{r['candidate_pairs']:>14,} {r['pairs_per_s']:>9,.0f} "
              f"{(f'{peer_s:8.1f}' if peer_s else '       -')} {ratio}  "
              f"{o.get('precision', float('nan')):.3f}   {o.get('recall', float('nan')):.3f}   "
              f"{p.get('precision', float('nan')):.3f}   {p.get('recall', float('nan')):.3f}")
        base = base or r
    if len(results) > 1 and base is not None:
        print("\ngrowth from the smallest size: " + ", ".join(
            f"{r['records']:,}: x{float(r['records']) / float(base['records']):.1f} records -> "  # type: ignore[arg-type]
            f"x{float(r['ours_s']) / float(base['ours_s']):.1f} time"  # type: ignore[arg-type]
            for r in results[1:]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
