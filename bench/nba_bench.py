"""Next best action at scale: 1M HCPs x 20 candidate actions, and single-HCP decisions.

Data (generated, cached nowhere: it takes seconds): a warehouse (DuckDB through
our engine, in memory) holding ``golden`` (1M HCPs with state, decile, KOL),
``identities``, ``consents`` (about 1.6 rows per HCP, opt-outs included, some
after the as-of date), ``events`` (about 3 outbound contacts per HCP in the 40
days before the as-of: the pressure budget) and a ``content`` library whose
approved, unexpired items give exactly 20 candidate actions (email x6, sms,
f2f_visit x4, remote_visit x4, phone_call, webinar_invitation, msl_meeting x3).
The response model is synthetic (random effects of the fitted shape for every
HCP: fitting is not what is timed here).

Timed, ours (the same functions ``hcpj recommend`` runs):

1. eligibility: HCP index, catalogue at the as-of, contacts in the 7/30 days
   before (engine), consent as of (engine: latest row per HCP/channel/purpose),
   the HCP x action mask (numpy);
2. scoring: best slot per HCP and kind, engagement probability and value (numpy);
3. ranking: top 3 per HCP among eligible actions, one per action type, and uplift.

Peer: the same three steps written the usual way with pandas (cross join of
HCPs and actions, merges with the consent and contact tables, vectorised score
columns, ``groupby().rank``), on the same data; by default on the first
``--peer-hcps`` HCPs (memory), compared per HCP.

Single-HCP decisions: ``Decider.decide(hcp_id)`` in process for random HCPs
(p50/p99 over ``--decisions``), vs the pandas peer filtering its frames for one HCP.

    .venv/bin/python bench/nba_bench.py                     # 1M HCPs
    .venv/bin/python bench/nba_bench.py --hcps 200000 --peer-hcps 200000
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import ibis  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from hcpjourney.engine import DuckDBEngine  # noqa: E402
from hcpjourney.nba import history as H  # noqa: E402
from hcpjourney.nba.catalogue import action_types, build_catalogue  # noqa: E402
from hcpjourney.nba.eligibility import consent_status, eligibility_from_state  # noqa: E402
from hcpjourney.nba.models import (  # noqa: E402
    CONTENT_ATTRIBUTES,
    N_SLOTS,
    Design,
    Progression,
    ResponseModel,
    Space,
    best_timing,
    time_groups,
)
from hcpjourney.nba.ranking import rank, uplift_of, values  # noqa: E402
from hcpjourney.nba.recommend import Decider, Fitted, action_codes, decide, to_table  # noqa: E402
from hcpjourney.nba.settings import NbaSettings  # noqa: E402

AS_OF = datetime(2025, 10, 6)
STATES = ["NY", "MA", "TX", "IL", "CA", "CO", "FL", "WA"]
CONTENT = (
    [(f"em{i}", "email_template", th, tn) for i, (th, tn) in enumerate(
        [("efficacy", "clinical"), ("safety", "clinical"), ("access", "promotional"),
         ("dosing", "conversational"), ("patient_support", "empathetic"),
         ("disease_awareness", "empathetic")])]
    + [(f"da{i}", "detail_aid", th, "clinical") for i, th in enumerate(
        ["efficacy", "safety", "access", "dosing"])]
    + [("wb0", "webinar_recording", "efficacy", "clinical")]
    + [(f"ar{i}", "article", th, "clinical") for i, th in enumerate(["efficacy", "safety", "dosing"])]
)
BLOCKED = [("old", "email_template", "safety", "clinical", "expired"),
           ("dr", "detail_aid", "dosing", "clinical", "draft")]
CONSENT_GROUPS = [("email", "promotional"), ("sms", "promotional"), ("f2f_visit", "promotional"),
                  ("remote_visit", "promotional"), ("phone", "promotional"), ("webinar", "promotional"),
                  ("msl_meeting", "medical")]
CONTACT_CH = [("email", "sent"), ("f2f_visit", "completed"), ("phone", "declined"), ("sms", "sent"),
              ("msl_meeting", "completed")]


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make_data(n: int, seed: int) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"H{i:08d}" for i in range(n)], dtype=object)
    golden = pa.table({
        "hcp_id": ids.tolist(),
        "state": np.array(STATES, dtype=object)[rng.integers(0, len(STATES), n)].tolist(),
        "decile": rng.integers(1, 11, n),
        "is_kol": rng.random(n) < 0.03,
    })
    identities = pa.table({"record_id": [f"crm:{i}" for i in range(n)], "hcp_id": ids.tolist()})
    # consents: each HCP a few rows; ~8% opt-outs; some after the as-of
    k = rng.poisson(1.6, n)
    who = np.repeat(np.arange(n), k)
    g = rng.integers(0, len(CONSENT_GROUPS), who.size)
    days = rng.integers(-300, 30, who.size)
    status = np.where(rng.random(who.size) < 0.08, "opt_out", "opt_in")
    t0 = np.datetime64(AS_OF, "s")
    consents = pa.table({
        "record_id": [f"crm:{i}" for i in who],
        "channel": np.array([c for c, _ in CONSENT_GROUPS], dtype=object)[g].tolist(),
        "status": status.tolist(),
        "ts": pa.array(t0 + (days * 86_400 + rng.integers(0, 86_400, who.size)).astype("timedelta64[s]")),
        "purpose": np.array([p for _, p in CONSENT_GROUPS], dtype=object)[g].tolist(),
        "source": ["crm"] * who.size,
    })
    # contacts in the 40 days before the as-of
    k = rng.poisson(3.0, n)
    who = np.repeat(np.arange(n), k)
    c = rng.integers(0, len(CONTACT_CH), who.size)
    ts = t0 - (rng.integers(1, 40 * 86_400, who.size)).astype("timedelta64[s]")
    events = pa.table({
        "hcp_id": ids[who].tolist(),
        "event_id": [f"e{i}" for i in range(who.size)],
        "record_id": [f"crm:{i}" for i in who],
        "ts": pa.array(ts),
        "channel": np.array([x for x, _ in CONTACT_CH], dtype=object)[c].tolist(),
        "action": np.array([y for _, y in CONTACT_CH], dtype=object)[c].tolist(),
        "direction": ["outbound"] * who.size,
        "team": np.where(c == 4, "medical", "commercial").tolist(),
        "content_id": pa.nulls(who.size, pa.string()),
        "campaign_id": pa.nulls(who.size, pa.string()),
    })
    rows = [(cid, f, th, tn, "approved") for cid, f, th, tn in CONTENT] + BLOCKED
    content = pa.table({
        "content_id": [r[0] for r in rows], "title": [r[0] for r in rows],
        "format": [r[1] for r in rows], "theme": [r[2] for r in rows], "tonality": [r[3] for r in rows],
        "aesthetics": ["clean"] * len(rows), "key_message": [f"km {r[2]}" for r in rows],
        "audience": ["hcp"] * len(rows), "mlr_status": [r[4] for r in rows],
        "approved_at": pa.array([datetime(2025, 1, 1)] * len(rows)),
        "expires_at": pa.array([datetime(2025, 6, 1) if r[4] == "expired" else None for r in rows],
                               pa.timestamp("us")),
        "attributes": ['{"purpose": "medical"}' if r[0].startswith("ar") else None for r in rows],
    })
    return {"golden": golden, "identities": identities, "consents": consents, "events": events,
            "content": content}


def synthetic_model(space: Space, rng: np.random.Generator) -> ResponseModel:
    eff: dict[str, np.ndarray] = {}
    for name, b in Design(space).blocks.items():
        eff[name] = (rng.normal(0, b.sd * 0.5, b.shape)).astype(np.float32)
    support = np.zeros((2, N_SLOTS))
    for wd in range(5):
        support[:, wd * 24 + 8: wd * 24 + 20] = 100
    return ResponseModel(space, -0.5, eff, {}, support, np.full(space.n_types, 0.3), None, None, 0)


def ours(eng: DuckDBEngine, settings: NbaSettings, seed: int) -> tuple[dict[str, float], Fitted, Any]:
    times: dict[str, float] = {}
    t = time.perf_counter()
    ht = H.register_hcps(eng)
    rows = H.content_rows(eng)
    vocab = H.content_vocab(rows)
    types = action_types(settings)
    cat = build_catalogue(rows, settings, AS_OF, history=H.content_team_history(eng, AS_OF), types=types)
    hcps = H.load_hcps(eng, ht, H.touches_expr(eng, types, AS_OF - timedelta(days=31), AS_OF), AS_OF)
    groups = cat.groups()
    status = consent_status(eng, ht, groups, hcps.n, AS_OF)
    elig = eligibility_from_state(hcps, cat, settings, status, groups)
    times["eligibility"] = time.perf_counter() - t
    space = Space(types, {a: max(1, len(vocab.values[a])) for a in CONTENT_ATTRIBUTES}, hcps.n)
    model = synthetic_model(space, np.random.default_rng(seed))
    codes = action_codes(cat.actions, types, vocab)
    allowed = model.allowed_slots([settings.allowed_hour(h) for h in range(24)])
    tg = time_groups(model, allowed)
    prog = Progression.empty(len(types))
    t = time.perf_counter()
    tim = best_timing(model, hcps, tg)
    val = values(model, hcps, codes, tim, prog, settings)
    times["scoring"] = time.perf_counter() - t
    t = time.perf_counter()
    order = rank(val.value, elig.mask, settings.top_k, codes.type_code)
    up = uplift_of(val.value, elig.mask, order)
    times["ranking"] = time.perf_counter() - t
    times["total"] = times["eligibility"] + times["scoring"] + times["ranking"]
    fitted = Fitted(settings, AS_OF, cat, codes, vocab, hcps, model, prog, allowed, tg, status,
                    np.zeros(elig.mask.shape, dtype=bool))
    print(f"  candidate actions: {len(cat)}; eligible pairs {int(elig.mask.sum()):,} of "
          f"{elig.mask.size:,}; HCPs with an action: {int((order[:, 0] >= 0).sum()):,}")
    return times, fitted, (order, up, val, tim)


def peer(data: dict[str, pa.Table], fitted: Fitted, n: int, settings: NbaSettings) -> tuple[float, Any]:
    """Eligibility + scoring + ranking with pandas on the first n HCPs (same model, same data)."""
    import pandas as pd

    t = time.perf_counter()
    m = fitted.model
    e = m.effects
    cat = fitted.catalogue
    ids = fitted.hcps.ids[:n]
    hc = pd.DataFrame({"hcp_id": ids, "hix": np.arange(n)})
    acts = pd.DataFrame({"a": [a.index for a in cat.actions], "channel": [a.channel for a in cat.actions],
                         "purpose": [a.purpose for a in cat.actions],
                         "t": fitted.codes.type_code, "kind": fitted.codes.kind,
                         **{f"c_{k}": v for k, v in fitted.codes.attrs.items()}})
    # consent as of: latest row per HCP/channel/purpose (opt_out wins ties)
    cons = data["consents"].to_pandas()
    ident = data["identities"].to_pandas()
    cons = cons[cons.ts <= pd.Timestamp(AS_OF)].merge(ident, on="record_id")
    cons = cons[cons.hcp_id.isin(set(ids))]
    cons["oo"] = cons.status == "opt_out"
    cons = cons.sort_values(["hcp_id", "channel", "purpose", "ts", "oo"])
    latest = cons.groupby(["hcp_id", "channel", "purpose"], as_index=False).last()
    out = latest[latest.status == "opt_out"][["hcp_id", "channel", "purpose"]].assign(blocked=True)
    ev = data["events"].to_pandas()
    ev = ev[(ev.ts < pd.Timestamp(AS_OF)) & (ev.ts >= pd.Timestamp(AS_OF - timedelta(days=30)))]
    ev = ev[ev.hcp_id.isin(set(ids))]
    c30 = ev.groupby("hcp_id").size().rename("c30")
    c7 = ev[ev.ts >= pd.Timestamp(AS_OF - timedelta(days=7))].groupby("hcp_id").size().rename("c7")
    grid = hc.merge(acts, how="cross")
    grid = grid.merge(out, on=["hcp_id", "channel", "purpose"], how="left")
    grid = grid.merge(c7, left_on="hcp_id", right_index=True, how="left").merge(
        c30, left_on="hcp_id", right_index=True, how="left")
    grid["c7"] = grid["c7"].fillna(0)
    grid["c30"] = grid["c30"].fillna(0)
    ok = grid.blocked.isna() & (grid.c7 + 1 <= settings.contacts_per_week) & (
        grid.c30 + 1 <= settings.contacts_per_month)
    grid = grid[ok].copy()
    # score: the same additive model, column by column
    h, tt, k = grid.hix.to_numpy(), grid.t.to_numpy(), grid.kind.to_numpy()
    dec = (fitted.hcps.decile[:n] - 5.5) / 4.5
    lg = m.intercept + e["type"][tt] + e["hcp"][h] + e["hcp_type"][h, tt] + e["type_decile"][tt] * dec[h]
    lg += e["type_kol"][tt] * fitted.hcps.is_kol[:n][h] + e["recent"][0] * fitted.hcps.contacts_30d[:n][h] / 5
    for a in CONTENT_ATTRIBUTES:
        c = grid[f"c_{a}"].to_numpy()
        lg += np.where(c >= 0, e[f"attr:{a}"][np.maximum(c, 0)] + e[f"hcp_attr:{a}"][h, np.maximum(c, 0)], 0)
    tim = best_timing(m, fitted.hcps, fitted.groups, np.arange(n))  # the same timing search
    lg += tim.effect[h, k]
    grid["score"] = 1 / (1 + np.exp(-lg))
    best = grid.sort_values(["hcp_id", "t", "score"], ascending=[True, True, False]).drop_duplicates(
        ["hcp_id", "t"])
    best["rank"] = best.groupby("hcp_id").score.rank(ascending=False, method="first")
    top = best[best["rank"] <= settings.top_k]
    return time.perf_counter() - t, top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hcps", type=int, default=1_000_000)
    ap.add_argument("--peer-hcps", type=int, default=200_000)
    ap.add_argument("--decisions", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    settings = NbaSettings.from_settings({"nba": {"actions": {"sample": {"enabled": False}}}})
    t = time.perf_counter()
    data = make_data(args.hcps, args.seed)
    eng = DuckDBEngine(None, memory_limit="6GB")
    for name, tab in data.items():
        eng.create(name, ibis.memtable(tab))
    print(f"data: {args.hcps:,} HCPs, {data['consents'].num_rows:,} consents, "
          f"{data['events'].num_rows:,} contact events ({time.perf_counter() - t:.1f}s to make)")
    gc.collect()
    times, fitted, (order, _up, _val, _tim) = ours(eng, settings, args.seed)
    print(f"ours: eligibility {times['eligibility']:.1f}s, scoring {times['scoring']:.1f}s, "
          f"ranking {times['ranking']:.1f}s; total {times['total']:.1f}s (target <= 60s); "
          f"peak RSS {rss_gib():.2f} GiB")
    # not in the target: explanations and the output table (what `hcpj recommend` adds)
    t0 = time.perf_counter()
    dec, elig, _v, tim, pol = decide(fitted)
    table = to_table(fitted, dec, elig, tim, pol)
    print(f"  (+ explanations and the {table.num_rows:,}-row recommendations table: "
          f"{time.perf_counter() - t0:.1f}s)")
    del table, dec, elig, _v, tim
    gc.collect()
    # single-HCP decisions
    d = Decider(fitted)
    rng = np.random.default_rng(args.seed)
    pick = fitted.hcps.ids[rng.integers(0, fitted.hcps.n, args.decisions)]
    lat = []
    for h in pick:
        t0 = time.perf_counter()
        d.decide(str(h))
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1000
    print(f"single-HCP decision in process: p50 {np.percentile(lat_ms, 50):.2f} ms, "
          f"p99 {np.percentile(lat_ms, 99):.2f} ms (target p99 <= 10 ms)")
    # the peer on a prefix of the same HCPs
    n_peer = min(args.peer_hcps, fitted.hcps.n)
    gc.collect()
    p_sec, top = peer(data, fitted, n_peer, settings)
    mine = {(str(fitted.hcps.ids[h]), int(a)) for h in range(n_peer) for a in order[h, :1] if a >= 0}
    theirs = {(r.hcp_id, int(r.a)) for r in top[top["rank"] == 1].itertuples()}
    agree = len(mine & theirs) / max(1, len(mine | theirs))
    per_ours = times["total"] / fitted.hcps.n
    per_peer = p_sec / n_peer
    print(f"peer (pandas cross join + merges + groupby rank) on {n_peer:,} HCPs: {p_sec:.1f}s; "
          f"rank-1 agreement {agree:.3f}")
    print(f"ratio (peer seconds per HCP / ours): {per_peer / per_ours:.1f}x; peak RSS {rss_gib():.2f} GiB")
    eng.close()


if __name__ == "__main__":
    main()
