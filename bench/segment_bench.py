"""Segment features + mixture fit at 100k HCPs / ~10M events vs scikit-learn, one run.

Data: ``hcpj simulate --hcps 100000`` (about 9.6M interactions; cached in
bench/out/drop_100000_1, shared with ingest_bench.py and journey_bench.py). To
keep set-up to a minute or two instead of a full ingest + identity build, the
warehouse tables the segment build reads are made directly from the drop's
CSV files with the simulator's true identity (``_truth/persons.csv``:
record_id -> person_id) as ``hcp_id`` -- what a perfect ``hcpj build`` would
give: ``events`` (stored sorted by hcp_id, ts, event_id like the warehouse's),
``identities``, ``golden`` (one row per person: state, profession, specialty,
decile from ``_truth/person_traits.csv``), ``hcps`` (record_id, source),
``content``, ``feedback`` and ``outcomes``. Cached in bench/out/segment_100000_1/warehouse.duckdb.

Timed (median of ``--repeat`` runs):

- **features**: :func:`hcpjourney.segment.features.build_features` run by the
  engine into a table, then pulled to numpy (one wide row per HCP);
- **fit**: :class:`hcpjourney.segment.mixture.LatentClassMixture` with the number of
  segments chosen (BIC + split-half stability over k = 2..8) and with k fixed;
- target: features + fit <= 60 s.

Peers on the same data in the same run:

- features: pandas -- the events table as a DataFrame (loaded outside the timer),
  the same counts with ``groupby`` + ``pivot`` (response counts per channel,
  channel mix, local hour, content theme, topic): the ratio is pandas seconds /
  our seconds for comparable work (pandas does a subset of our features);
- fit: ``sklearn.mixture.GaussianMixture`` with default settings (full covariance,
  one init, k-means start) and the same k on the standardised model matrix
  (:func:`hcpjourney.segment.features.model_matrix`), and the adjusted Rand index
  of each model's labels against the simulator's true segments.

    .venv/bin/python bench/segment_bench.py                # 100k HCPs
    .venv/bin/python bench/segment_bench.py --repeat 1 --no-peer
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import numpy as np  # noqa: E402
from common import ensure_drop, load_avg, open_engine, timed, truth_events  # noqa: E402


def ensure_warehouse(hcps: int, seed: int) -> Path:
    """bench/out/segment_{hcps}_{seed}/warehouse.duckdb with the tables the segment build reads."""
    target = HERE / "out" / f"segment_{hcps}_{seed}" / "warehouse.duckdb"
    if target.exists():
        return target
    drop = ensure_drop(hcps, seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    print(f"building the warehouse from {drop.name} (cached in {target.parent.name})", flush=True)
    t = time.perf_counter()
    eng = open_engine(tmp, read_only=False)
    try:
        con = eng.backend
        persons = con.read_csv(str(drop / "_truth" / "persons.csv"), table_name="persons_csv")
        ids = eng.create("identities", persons.select(record_id=persons.record_id,
                                                       hcp_id=persons.person_id),
                         order_by=["hcp_id", "record_id"])
        ix = con.read_csv(str(drop / "interactions.csv"), table_name="interactions_csv",
                          all_varchar=True)
        eng.create("events", truth_events(ix, ids), order_by=["hcp_id", "ts", "event_id"])
        tr = con.read_csv(str(drop / "_truth" / "person_traits.csv"), table_name="traits_csv",
                          all_varchar=True)
        golden = tr.select(
            hcp_id=tr.person_id, npi=tr.npi, first_name=tr.first_name, last_name=tr.last_name,
            profession=tr.profession, specialty=tr.specialty, state=tr.state,
            decile=tr.decile.cast("int64"), is_kol=tr.is_kol.lower() == "true",
        )
        eng.create("golden", golden, order_by=["hcp_id"])
        # source systems of the records (the inbound volumes are read where a source
        # records the channel)
        hc = con.read_csv(str(drop / "hcps.csv"), table_name="hcps_csv", all_varchar=True)
        eng.create("hcps", hc.select("record_id", "source"), order_by=["record_id"])
        ct = con.read_csv(str(drop / "content.csv"), table_name="content_csv", all_varchar=True)
        eng.create("content", ct, order_by=["content_id"])
        fb = con.read_csv(str(drop / "feedback.csv"), table_name="feedback_csv", all_varchar=True)
        eng.create("feedback", fb.mutate(score=fb.score.cast("float64"),
                                         ts=fb.ts.cast("timestamp('UTC')").cast("timestamp")),
                   order_by=["record_id"])
        oc = con.read_csv(str(drop / "outcomes.csv"), table_name="outcomes_csv", all_varchar=True)
        eng.create("outcomes", oc.mutate(nrx=oc.nrx.cast("float64"), trx=oc.trx.cast("float64")),
                   order_by=["record_id"])
        n = eng.count(eng.table("events"))
    finally:
        eng.close()
    tmp.rename(target)
    print(f"  {n:,} events in {time.perf_counter() - t:.0f}s", flush=True)
    return target


def pandas_features(df: Any, offsets: Any, content: Any) -> dict[str, Any]:
    """The peer: the same count families with pandas groupby + unstack (a subset of ours)."""
    import pandas as pd

    out = {}
    cad = df.groupby(["hcp_id", "channel", "action", "direction"], observed=True).size()
    out["cad"] = cad.unstack(["channel", "action", "direction"], fill_value=0)
    timed = df[(df["direction"] == "inbound") | df["action"].isin(
        ["opened", "clicked", "viewed", "visited", "downloaded", "replied"])]
    off = timed["hcp_id"].map(offsets).fillna(-5).astype("int64")
    local = timed["ts"] + pd.to_timedelta(off, unit="h")
    hours = pd.DataFrame({"hcp_id": timed["hcp_id"], "h": local.dt.hour,
                          "weekend": local.dt.day_of_week >= 5})
    out["hour"] = hours.groupby(["hcp_id", "h"], observed=True).size().unstack(fill_value=0)
    out["day"] = hours.groupby(["hcp_id", "weekend"], observed=True).size().unstack(fill_value=0)
    eng = df[df["action"].isin(["opened", "clicked", "visited", "viewed", "downloaded", "registered",
                                "attended", "requested", "replied", "completed"])
             | (df["direction"] == "inbound")]
    eng = eng[eng["content_id"].notna()].merge(content, on="content_id", how="inner")
    for attr in ("theme", "tonality", "format"):
        out[attr] = eng.groupby(["hcp_id", attr], observed=True).size().unstack(fill_value=0)
    out["topic"] = df.groupby(["hcp_id", "topic"], observed=True).size().unstack(fill_value=0)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hcps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--prepare-only", action="store_true")
    args = p.parse_args()
    wh = ensure_warehouse(args.hcps, args.seed)
    if args.prepare_only:
        return
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    from hcpjourney.segment.build import default_model
    from hcpjourney.segment.features import build_features, model_matrix
    from hcpjourney.segment.mixture import infer_blocks

    print(f"machine: {load_avg()}", flush=True)
    eng = open_engine(wh, read_only=False)
    n_events = eng.count(eng.table("events"))
    print(f"data: {eng.count(eng.table('golden')):,} HCPs, {n_events:,} events", flush=True)

    def features() -> Any:
        fs = build_features(eng)
        excl = default_model(fs).exclude
        needed = sorted({c for b in infer_blocks(fs.table.columns, exclude=excl)
                         for c in b.columns})
        return fs, eng.to_pyarrow(fs.table.select("hcp_id", *needed).order_by("hcp_id"))

    t_feat, (fs, tbl) = timed(features, args.repeat)
    X = tbl.drop(["hcp_id"])
    ids = [str(x) for x in tbl.column("hcp_id").to_pylist()]
    print(f"features: {t_feat:.1f}s ({tbl.num_rows:,} HCPs x {len(fs.columns)} features, "
          f"{X.num_columns} model columns)", flush=True)

    def fit(k: int | None) -> Any:
        m = default_model(fs, k, random_state=0).fit(X)
        return m, m.transform(X), m.predict_proba(X)

    t_auto, (m_auto, _share, _) = timed(lambda: fit(None), args.repeat)
    k = m_auto.n_segments_
    t_fixed, (_m, share_k, post_k) = timed(lambda: fit(k), args.repeat)
    total = t_feat + t_auto
    print(f"fit, k chosen (BIC + stability over 2..8 -> k={k}): {t_auto:.1f}s", flush=True)
    print(f"fit, k={k} given: {t_fixed:.1f}s", flush=True)
    verdict = "met" if total <= 60 else "NOT met"
    print(f"features + fit (k chosen): {total:.1f}s -- target 60s {verdict}", flush=True)

    truth = _truth(ensure_drop(args.hcps, args.seed), ids)
    if truth is not None:
        y, mixed = truth
        lab = share_k.argmax(axis=1)
        top = share_k.max(axis=1)
        print(f"ours: ARI vs true segment {adjusted_rand_score(y, lab):.3f} (membership), "
              f"{adjusted_rand_score(y, post_k.argmax(axis=1)):.3f} (posterior); mean top share "
              f"mixtures {top[mixed].mean():.3f} vs pure {top[~mixed].mean():.3f}", flush=True)
        if k != 5:
            _m5, share5, post5 = fit(5)
            print(f"ours at k=5 (the simulator's number of segments): ARI "
                  f"{adjusted_rand_score(y, share5.argmax(axis=1)):.3f} (membership), "
                  f"{adjusted_rand_score(y, post5.argmax(axis=1)):.3f} (posterior)", flush=True)
    if args.no_peer:
        return
    # ---- peers on the same data -------------------------------------------------------
    df = eng.to_pyarrow(eng.table("events").select(
        "hcp_id", "ts", "channel", "action", "direction", "content_id", "topic")).to_pandas()
    for c in ("hcp_id", "channel", "action", "direction", "content_id", "topic"):
        df[c] = df[c].astype("category")
    from hcpjourney.identity.timezones import STATE_UTC_OFFSET

    g = eng.to_pyarrow(eng.table("golden").select("hcp_id", "state")).to_pandas()
    offsets = g.set_index("hcp_id")["state"].map(STATE_UTC_OFFSET)
    content = eng.to_pyarrow(eng.table("content").select(
        "content_id", "theme", "tonality", "format")).to_pandas()
    t_pd, _ = timed(lambda: pandas_features(df, offsets, content), args.repeat)
    print(f"peer features, pandas groupby/unstack (a subset of the same counts, data already "
          f"in memory): {t_pd:.1f}s -> ratio pandas/ours {t_pd / t_feat:.2f}x", flush=True)

    full = eng.to_pyarrow(fs.table.order_by("hcp_id"))
    cols = {n: full.column(n).to_numpy(zero_copy_only=False).astype(float)
            for n in full.column_names if n != "hcp_id"}
    mm = model_matrix(cols, fs.columns, full.column("hcp_id").to_numpy(zero_copy_only=False))

    def gmm() -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return GaussianMixture(k, random_state=0).fit(mm.X)

    t_gmm, gm = timed(gmm, args.repeat)
    print(f"peer fit, sklearn GaussianMixture(n_components={k}) defaults on the standardised "
          f"{mm.X.shape[1]}-column model matrix: {t_gmm:.1f}s -> ratio GMM/ours(k given) "
          f"{t_gmm / t_fixed:.2f}x", flush=True)
    if truth is not None:
        y, _ = truth
        print(f"peer: ARI vs true segment {adjusted_rand_score(y, gm.predict(mm.X)):.3f}",
              flush=True)
    eng.close()


def _truth(drop: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    import csv

    path = drop / "_truth" / "segments.csv"
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as f:
        rows = {r["person_id"]: r for r in csv.DictReader(f)}
    y = np.array([rows[h]["segment"] for h in ids], dtype=object)
    mixed = np.array([bool(rows[h]["secondary_segment"]) for h in ids])
    return y, mixed


if __name__ == "__main__":
    main()
