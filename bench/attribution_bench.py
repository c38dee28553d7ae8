"""Markov attribution from events, end to end: ours (exact) vs Polars paths + ChannelAttribution.

Data: the 10M-event simulated warehouse of journey_bench.py (events + adoptions,
cached in bench/out/journey_100000_1).

- **ours**: ``attribution.markov_attribution(events, adoptions, presorted=True)``:
  one channel code and timestamp per event and one adoption time per HCP from
  DuckDB (the stored order), CONTRACT paths and first-order transition counts in
  numpy, then the absorbing chain solved exactly.
- **peer**: the same paths built with Polars from the same events held in a
  Polars DataFrame (join adoption, keep ts < adopted_at, sort by hcp_id, ts,
  event_id, collapse repeats, join with ">", count conversions / nulls per path),
  then ``ChannelAttribution.markov_model(order=1, out_more=True)`` (GPL; bench
  only), which estimates removal effects by simulating paths.

Loading the events into each side's memory is not timed; the sides run in turn
within each round, and wall and CPU seconds are printed. Checks before the ratio:
the Polars paths give exactly our chain (our exact solve on them equals ours end to
end, 1e-9), and ChannelAttribution's removal effects are compared with the exact ones
on the paths it was given (it cannot take the empty path of HCPs that adopted before
any event, so those are left out of its input and of that comparison).

    .venv/bin/python bench/attribution_bench.py --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from common import alternate, load_avg, open_engine  # noqa: E402
from journey_bench import ensure_warehouse  # noqa: E402

from hcpjourney.journey import attribution  # noqa: E402

SEP = ">"


def polars_paths(events: Any, adoptions: Any) -> Any:
    """path (channels joined by SEP, '' for the empty path), conversions, nulls."""
    import polars as pl

    e = events.join(adoptions, on="hcp_id", how="left")
    e = e.filter(pl.col("adopted_at").is_null() | (pl.col("ts") < pl.col("adopted_at")))
    e = e.sort(["hcp_id", "ts", "event_id"])
    e = e.filter(pl.col("channel") != pl.col("channel").shift(1).over("hcp_id").fill_null(""))
    per = e.group_by("hcp_id").agg(pl.col("channel").str.join(SEP).alias("path"))
    cases = events.select("hcp_id").unique().join(adoptions, on="hcp_id", how="left")
    per = cases.join(per, on="hcp_id", how="left").with_columns(
        pl.col("path").fill_null(""), pl.col("adopted_at").is_not_null().alias("conv")
    )
    return per.group_by("path").agg(
        pl.col("conv").sum().alias("total_conversions"),
        (~pl.col("conv")).sum().alias("total_null"),
    )


def counts_from_paths(rows: list[dict[str, Any]], *, include_empty: bool) -> list[tuple[str, str, int]]:
    c: Counter[tuple[str, str]] = Counter()
    for r in rows:
        chans = r["path"].split(SEP) if r["path"] else []
        if not chans and not include_empty:
            continue
        states = [attribution.START, *chans]
        for a, b in itertools.pairwise(states):
            c[(a, b)] += r["total_conversions"] + r["total_null"]
        c[(states[-1], attribution.ADOPTION)] += r["total_conversions"]
        c[(states[-1], attribution.NULL)] += r["total_null"]
    return [(a, b, n) for (a, b), n in c.items() if n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hcps", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import ChannelAttribution as ca
    import polars as pl

    eng = open_engine(ensure_warehouse(args.hcps, args.seed), read_only=True)
    ev, ad = eng.table("events"), eng.table("adoptions")
    n = eng.count(ev)
    print(f"{n:,} events, {eng.count(ad):,} adopters; {load_avg()}", flush=True)

    # ------------------------------------------------------ ours, then the peer
    events = pl.from_arrow(eng.to_pyarrow(ev.select("hcp_id", "event_id", "ts", "channel")))
    adoptions = pl.from_arrow(eng.to_pyarrow(ad))

    def peer() -> tuple[Any, Any]:
        p = polars_paths(events, adoptions)
        data = p.filter(pl.col("path") != "").to_pandas()
        with contextlib.redirect_stdout(io.StringIO()):
            res = ca.markov_model(
                data, "path", "total_conversions", var_null="total_null", order=1, out_more=True,
                sep=SEP, verbose=False, flg_pro=False,
            )
        return p, res

    # run in turn within each round (ours, table, peer, ours, ...): a busy spell of a
    # shared machine falls on every side
    timings = alternate({
        "ours": lambda: attribution.markov_attribution(ev, ad, presorted=True),
        "table": lambda: attribution.attribution_table(ev, ad, presorted=True),
        "peer": peer,
    }, args.repeat)
    t_ours, c_ours, ours = timings["ours"]
    t_table, c_table, table = timings["table"]
    t_peer, c_peer, (paths_pl, res) = timings["peer"]

    # --------------------------------------------------------------- checks
    rows = paths_pl.to_dicts()
    same = attribution.markov_removal_effects(counts_from_paths(rows, include_empty=True))
    diff_paths = max(abs(same.removal_effects[c] - ours.removal_effects[c]) for c in ours.removal_effects)
    if set(same.removal_effects) != set(ours.removal_effects) or diff_paths > 1e-9:
        raise SystemExit(f"Polars paths do not give our chain (max difference {diff_paths:.3g})")
    exact = attribution.markov_removal_effects(counts_from_paths(rows, include_empty=False))
    re = res["removal_effects"] if isinstance(res, dict) else res[2]
    col = "removal_effect" if "removal_effect" in re.columns else "removal_effects_conversion"
    ca_re = dict(zip(re["channel_name"], re[col], strict=True))
    empties = sum(r["total_conversions"] + r["total_null"] for r in rows if not r["path"])

    print(f"\nremoval effects (CA input: {len(rows) - (1 if empties else 0):,} distinct paths; "
          f"{empties:,} empty-path HCPs left out of it)")
    head = f"{'ours (exact)':>14}{'exact on CA input':>19}{'ChannelAttribution':>20}{'diff':>9}"
    print(f"  {'channel':<18}{head}")
    worst = 0.0
    for c in sorted(ours.removal_effects, key=lambda c: -ours.removal_effects[c]):
        d = ca_re.get(c, float("nan")) - exact.removal_effects[c]
        worst = max(worst, abs(d))
        print(f"  {c:<18}{ours.removal_effects[c]:>14.4f}{exact.removal_effects[c]:>19.4f}"
              f"{ca_re.get(c, float('nan')):>20.4f}{d:>+9.4f}")
    print(f"  largest |ChannelAttribution - exact| = {worst:.4f} (simulation noise and truncation)")

    print(f"\nmedians of {args.repeat}, wall (cpu):")
    print(f"ours, markov_attribution end to end : {t_ours:7.3f} s ({c_ours:.3f} s)")
    print(f"ours, attribution_table (all methods): {t_table:7.3f} s ({c_table:.3f} s)")
    print(f"Polars paths + ChannelAttribution   : {t_peer:7.3f} s ({c_peer:.3f} s)")
    print(f"ratio (peer / ours)                 : {t_peer / t_ours:7.1f}x (target >= 4x; "
          f"cpu {c_peer / c_ours:.1f}x)")
    print(f"({load_avg()})")
    del table


if __name__ == "__main__":
    main()
