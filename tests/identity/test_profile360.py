"""The 360 profile (hcpjourney.profile) and the profiles export on a simulated drop,
checked against pandas recomputations from the drop's own CSV files."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import hcpjourney
from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import Workspace
from hcpjourney.contract.npi import is_valid_npi
from hcpjourney.errors import HcpjError, NotBuiltError
from hcpjourney.identity.golden import DEFAULT_SOURCE_TRUST, GOLDEN_FIELDS
from hcpjourney.identity.profile360 import Profile360, UnknownHcpError, load_profile
from hcpjourney.identity.profiles import PROFILE_COLUMNS
from hcpjourney.simulate import simulate

CONTRACT_PROFILE_COLUMNS = [
    "hcp_id", "npi", "first_name", "last_name", "specialty", "profession", "n_records",
    "first_seen", "last_seen", "n_interactions", "stage", "segment",
]
N_HCPS = 500


class World:
    def __init__(self, root: Path) -> None:
        self.drop = root / "drop"
        simulate(N_HCPS, self.drop, seed=11, events_per_hcp=40.0)
        self.ws = services.init_workspace(root / "ws")
        services.ingest(self.ws, [self.drop])
        services.build(self.ws)
        services.export(self.ws, "identities", root / "identities.parquet")
        services.export(self.ws, "profiles", root / "profiles.parquet")
        services.export(self.ws, "profiles", root / "profiles.csv")
        services.export(self.ws, "golden", root / "golden.parquet")
        self.root = root
        ids = pq.read_table(root / "identities.parquet").to_pandas()
        self.hcp_of = dict(zip(ids.record_id, ids.hcp_id, strict=True))
        self.identities = ids
        self.profiles = pq.read_table(root / "profiles.parquet").to_pandas()
        self.golden = pq.read_table(root / "golden.parquet").to_pandas()

    def csv(self, name: str, ts: tuple[str, ...] = ()) -> pd.DataFrame:
        df = pd.read_csv(self.drop / f"{name}.csv", dtype=str, keep_default_na=False)
        df = df.replace({"": None})
        for c in ts:
            df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601").dt.tz_convert(None)
        return df

    def with_hcp(self, df: pd.DataFrame, col: str = "record_id", out: str = "hcp_id") -> pd.DataFrame:
        df = df.copy()
        df[out] = df[col].map(self.hcp_of)
        return df


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("p360"))


@pytest.fixture(scope="module")
def events(world: World) -> pd.DataFrame:
    ev = world.with_hcp(world.csv("interactions", ts=("ts",)))
    for c in ("duration_s", "value_usd"):
        ev[c] = pd.to_numeric(ev[c])
    return ev


@pytest.fixture(scope="module")
def sample_ids(world: World, events: pd.DataFrame) -> list[str]:
    """HCPs worth looking at: most records, most peers, most consents, no events, random."""
    picks: list[str] = []
    p = world.profiles
    picks += p.sort_values(["n_records", "hcp_id"], ascending=[False, True]).hcp_id[:3].tolist()
    rel = world.with_hcp(world.csv("relationships"), "src_record_id", "src")
    picks += rel.src.value_counts().index[:2].tolist()
    cons = world.with_hcp(world.csv("consents"))
    picks += cons.hcp_id.value_counts().index[:2].tolist()
    picks += p[p.n_interactions == 0].hcp_id[:1].tolist()
    fb = world.with_hcp(world.csv("feedback"))
    picks += fb.hcp_id.value_counts().index[:1].tolist()
    rng = random.Random(5)
    picks += rng.sample(sorted(p.hcp_id), 5)
    return list(dict.fromkeys(picks))


@pytest.fixture(scope="module")
def profiles(world: World, sample_ids: list[str]) -> dict[str, Profile360]:
    eng = engines.connect(world.ws, read_only=True)
    try:
        return {h: load_profile(eng, h) for h in sample_ids}
    finally:
        eng.close()


# ------------------------------------------------------------- profiles export
def test_profiles_export_has_the_contract_columns_first_and_one_row_per_hcp(world: World):
    csv_cols = list(pd.read_csv(world.root / "profiles.csv", nrows=1).columns)
    assert csv_cols[: len(CONTRACT_PROFILE_COLUMNS)] == CONTRACT_PROFILE_COLUMNS
    assert tuple(CONTRACT_PROFILE_COLUMNS) == PROFILE_COLUMNS
    p = world.profiles
    assert p.hcp_id.is_unique
    assert set(p.hcp_id) == set(world.identities.hcp_id)
    assert p.stage.isna().all()  # no journey map measured in this build
    # the build's segmentation fills segment with each HCP's most likely segment
    services.export(world.ws, "segment_assignments", world.root / "seg.parquet")
    seg = pq.read_table(world.root / "seg.parquet").to_pandas()
    filled = {h: s for h, s in zip(p.hcp_id, p.segment, strict=True) if isinstance(s, str)}
    assert filled == dict(zip(seg.hcp_id, seg.segment, strict=True)) and filled
    # records: every record is counted once, in its HCP
    assert p.n_records.sum() == len(world.identities)
    assert (p.set_index("hcp_id").n_records
            == world.identities.groupby("hcp_id").size().reindex(p.hcp_id).values).all()


def test_n_interactions_first_and_last_seen_match_the_events(world: World, events: pd.DataFrame):
    p = world.profiles.set_index("hcp_id")
    assert p.n_interactions.sum() == len(events)
    g = events.groupby("hcp_id").ts.agg(["size", "min", "max"])
    assert (p.n_interactions.reindex(g.index) == g["size"]).all()
    assert (p.first_seen.reindex(g.index) == g["min"]).all()
    assert (p.last_seen.reindex(g.index) == g["max"]).all()
    no_events = p.index.difference(g.index)
    assert (p.n_interactions[no_events] == 0).all() and p.first_seen[no_events].isna().all()


def test_profile_extras_consent_and_feedback_counts(world: World):
    p = world.profiles.set_index("hcp_id")
    cons = world.with_hcp(world.csv("consents", ts=("ts",)))
    state = _latest_consents(cons)
    counts = state.groupby(["hcp_id", "status"]).size().unstack(fill_value=0)
    assert (p.consents_opt_in.reindex(counts.index) == counts["opt_in"]).all()
    assert p.consents_opt_in.sum() == (state.status == "opt_in").sum()
    assert p.consents_opt_out.sum() == (state.status == "opt_out").sum()
    fb = world.with_hcp(world.csv("feedback")).dropna(subset=["hcp_id"])
    assert p.n_feedback.sum() == len(fb)


# ---------------------------------------------------------------- golden oracle
def _clean(s: pd.Series) -> pd.Series:
    s = s.str.strip()
    return s.where(s.notna() & (s != ""), None)


def test_golden_equals_a_pandas_survivorship_recomputation(world: World):
    h = world.with_hcp(world.csv("hcps", ts=("updated_at",)))
    trust = {s: i for i, s in enumerate(DEFAULT_SOURCE_TRUST)}
    h["_trust"] = h.source.str.strip().str.lower().map(trust).fillna(len(trust))
    h = h.sort_values(["hcp_id", "_trust", "updated_at", "record_id"],
                      ascending=[True, True, False, True], na_position="last")
    text = [f for f in GOLDEN_FIELDS if f not in ("decile", "is_kol")]
    for f in text:
        h[f] = _clean(h[f])
    h["npi"] = h.npi.where(h.npi.map(lambda v: v is not None and is_valid_npi(v)), None)
    h["specialty"] = _clean(h.specialty.str.replace(r"^.*\|", "", regex=True))
    h["decile"] = pd.to_numeric(h.decile)
    h["is_kol"] = h.is_kol.map({"true": True, "false": False})
    expect = h.groupby("hcp_id")[[*text, "decile"]].first()  # first non-null in rank order
    kol = h.dropna(subset=["is_kol"]).groupby("hcp_id").is_kol.any()
    got = world.golden.set_index("hcp_id").reindex(expect.index)
    for f in text:
        mism = (got[f].fillna("<null>") != expect[f].fillna("<null>")).sum()
        assert mism == 0, f
    assert (got.decile.fillna(-1).astype(int) == expect.decile.fillna(-1).astype(int)).all()
    assert (got.is_kol.reindex(kol.index) == kol).all()
    assert got.is_kol.drop(kol.index).isna().all()
    # the simulated drop holds taxonomy paths, several sources and disagreeing spellings
    assert h.groupby("hcp_id").source.nunique().max() >= 3


# -------------------------------------------------------------------- profile()
def test_profile_public_api_and_golden(world: World, sample_ids: list[str]):
    assert "profile" in hcpjourney.__all__
    hcp = sample_ids[0]
    p = hcpjourney.profile(world.ws.root, hcp)  # a folder path works as well as a Workspace
    assert isinstance(p, Profile360)
    assert p.hcp_id == hcp
    g = world.golden.set_index("hcp_id").loc[hcp]
    for f in GOLDEN_FIELDS:
        want = g[f]
        have = p.golden[f]
        assert (have is None and pd.isna(want)) or have == want, f
    rec_ids = {r["record_id"] for r in p.records}
    assert rec_ids == set(world.identities[world.identities.hcp_id == hcp].record_id)
    assert len(p.records) >= 2
    assert [r["survivorship_rank"] for r in p.records] == list(range(len(p.records)))
    assert p.records[0]["record_id"] == p.lineage["last_name"]["record_id"]
    for f, lin in p.lineage.items():
        assert lin["record_id"] in rec_ids
        src = next(r for r in p.records if r["record_id"] == lin["record_id"])
        assert lin["source"] == src["source"]
        assert lin["source_value"] == (None if src[f] is None else str(src[f]).strip().lower()
                                       if isinstance(src[f], bool) else str(src[f]).strip())
    assert p.summary["n_records"] == len(p.records)
    d = p.to_dict()
    assert set(d) >= {"golden", "lineage", "records", "timeline", "consent", "outcomes",
                      "feedback", "feedback_summary", "network", "summary"}
    assert d["timeline"] == p.timeline and d["timeline"] is not p.timeline


def test_repr_shows_no_personal_data(profiles: dict[str, Profile360]):
    for p in profiles.values():
        text = repr(p)
        assert p.hcp_id in text
        for f in ("first_name", "last_name", "email", "phone", "address_line1"):
            v = p.golden[f]
            if v:
                assert v not in text


def test_timeline_is_the_hcps_events_in_ts_event_id_order(
    profiles: dict[str, Profile360], events: pd.DataFrame
):
    seen_empty = False
    for hcp, p in profiles.items():
        want = events[events.hcp_id == hcp].sort_values(["ts", "event_id"])
        got = pd.DataFrame(p.timeline, columns=[*want.columns.drop("hcp_id"), "source"])
        seen_empty |= want.empty
        assert got.event_id.tolist() == want.event_id.tolist(), hcp
        if want.empty:
            continue
        assert got.ts.tolist() == want.ts.tolist()
        for c in ("record_id", "channel", "action", "direction", "team", "content_id"):
            assert _nulls(got[c]) == _nulls(want[c]), c
        assert np.allclose(got.duration_s.astype(float), want.duration_s, equal_nan=True)
        assert got.source.notna().all()
        assert len(p.timeline) == p.summary["n_interactions"]
    assert seen_empty
    assert sum(len(p.timeline) for p in profiles.values()) > 200


def _nulls(s: pd.Series) -> list[Any]:
    return [None if pd.isna(v) else v for v in s]


def _latest_consents(cons: pd.DataFrame) -> pd.DataFrame:
    """Latest row per (hcp, channel, purpose); at one instant opt_out wins, then record_id."""
    c = cons.assign(_out=cons.status == "opt_out")
    c = c.sort_values(["ts", "_out", "record_id"], ascending=[True, True, False])
    return c.groupby(["hcp_id", "channel", "purpose"]).tail(1)


def test_consent_state_is_the_latest_row_per_channel_and_purpose(
    world: World, profiles: dict[str, Profile360]
):
    cons = world.with_hcp(world.csv("consents", ts=("ts",)))
    state = _latest_consents(cons)
    multi = 0
    for hcp, p in profiles.items():
        want = {(r.channel, r.purpose): (r.status, r.ts, r.record_id)
                for r in state[state.hcp_id == hcp].itertuples()}
        got = {(c["channel"], c["purpose"]): (c["status"], c["ts"], c["record_id"])
               for c in p.consent}
        assert got == want, hcp
        rows = cons[cons.hcp_id == hcp]
        multi += int(len(rows) > len(want))
    assert multi > 0  # some sampled HCP had superseded consent rows


def test_consent_tie_at_one_instant_is_won_by_opt_out():
    from hcpjourney.identity.profiles import latest_consents

    rows = pd.DataFrame({
        "hcp_id": ["H1", "H1", "H1", "H2"],
        "channel": ["email"] * 4,
        "purpose": ["promotional"] * 4,
        "status": ["opt_in", "opt_out", "opt_in", "opt_in"],
        "ts": pd.to_datetime(["2025-01-02", "2025-01-02", "2025-01-01", "2025-01-01"]),
        "record_id": ["a", "b", "c", "d"],
        "source": ["crm"] * 4,
    })
    import ibis

    out = latest_consents(ibis.memtable(rows)).to_pandas().sort_values("hcp_id")
    assert out.status.tolist() == ["opt_out", "opt_in"]
    assert out.record_id.tolist() == ["b", "d"]


def test_outcomes_by_month_are_sums_over_the_hcps_records(
    world: World, profiles: dict[str, Profile360]
):
    out = world.with_hcp(world.csv("outcomes"))
    for c in ("nrx", "trx"):
        out[c] = pd.to_numeric(out[c])
    sums = out.groupby(["hcp_id", "product", "period"])[["nrx", "trx"]].sum(min_count=1)
    checked = 0
    for hcp, p in profiles.items():
        want = sums.loc[hcp] if hcp in sums.index.get_level_values(0) else sums.iloc[:0]
        got = [(o["product"], o["period"]) for o in p.outcomes]
        assert got == sorted(want.index.tolist()), hcp
        for o in p.outcomes:
            w = want.loc[(o["product"], o["period"])]
            for c in ("nrx", "trx"):
                assert (o[c] is None and pd.isna(w[c])) or math.isclose(o[c], w[c]), (hcp, c)
            checked += 1
    assert checked > 20


def test_feedback_lists_the_hcps_responses_in_order_with_summaries(
    world: World, profiles: dict[str, Profile360]
):
    fb = world.with_hcp(world.csv("feedback", ts=("ts",)))
    fb["score"] = pd.to_numeric(fb.score)
    total = 0
    for hcp, p in profiles.items():
        want = fb[fb.hcp_id == hcp].sort_values(["ts", "response_id"])
        assert [r["response_id"] for r in p.feedback] == want.response_id.tolist()
        assert [r["dimension"] for r in p.feedback] == _nulls(want.dimension)
        total += len(want)
        by_inst = want.dropna(subset=["instrument"]).groupby("instrument").score.agg(["size", "mean"])
        got = {r["instrument"]: (r["responses"], r["mean_score"])
               for r in p.feedback_summary["by_instrument"]}
        assert set(got) == set(by_inst.index)
        for inst, (n, mean) in got.items():
            assert n == by_inst.loc[inst, "size"]
            assert math.isclose(mean, by_inst.loc[inst, "mean"])
    assert total > 0


def _network_oracle(rel: pd.DataFrame, hcp: str) -> dict[str, Any]:
    e = rel[((rel.src == hcp) | (rel.dst == hcp)) & (rel.src != rel.dst)].copy()
    e["out"] = e.src == hcp
    e["peer"] = np.where(e.out, e.dst, e.src)

    def measures(t: pd.DataFrame) -> dict[str, Any]:
        o, i = t[t.out], t[~t.out]
        return {
            "edges_out": len(o), "edges_in": len(i),
            "weight_out": float(o.weight.sum()), "weight_in": float(i.weight.sum()),
            "out_degree": o.peer.nunique(), "in_degree": i.peer.nunique(),
            "distinct_peers": t.peer.nunique(),
        }

    return {**measures(e), "by_kind": {k: measures(g) for k, g in e.groupby("kind")}}


def test_network_summary_maps_both_ends_to_hcp_ids(world: World, profiles: dict[str, Profile360]):
    rel = world.csv("relationships")
    rel["weight"] = pd.to_numeric(rel.weight).fillna(1.0)
    rel["kind"] = rel.kind.fillna("unspecified")
    rel = world.with_hcp(world.with_hcp(rel, "src_record_id", "src"), "dst_record_id", "dst")
    nonzero = 0
    for hcp, p in profiles.items():
        want = _network_oracle(rel, hcp)
        got = {k: v for k, v in p.network.items() if k != "top_peers"}
        assert got.keys() == want.keys()
        for k in want:
            if k == "by_kind":
                assert got[k].keys() == want[k].keys(), hcp
                for kind in want[k]:
                    assert got[k][kind] == pytest.approx(want[k][kind]), (hcp, kind)
            else:
                assert got[k] == pytest.approx(want[k]), (hcp, k)
        top = p.network["top_peers"]
        assert len(top) == min(10, want["distinct_peers"])
        weights = [t["weight"] for t in top]
        assert weights == sorted(weights, reverse=True)
        assert all(t["peer_hcp_id"] != hcp for t in top)
        nonzero += want["distinct_peers"] > 0
    assert nonzero >= 3


# ---------------------------------------------------------------------- errors
def test_unknown_hcp_id_raises_a_clear_error(world: World):
    with pytest.raises(UnknownHcpError) as exc:
        hcpjourney.profile(world.ws, "H-no-such-hcp")
    assert isinstance(exc.value, HcpjError)
    msg = str(exc.value)
    assert "H-no-such-hcp" in msg and "hcpj export profiles" in msg and "\n" not in msg
    with pytest.raises(UnknownHcpError):
        hcpjourney.profile(world.ws, "   ")
    with pytest.raises(UnknownHcpError, match="no HCP has hcp_id"):
        hcpjourney.profile(world.ws, "H' OR '1'='1")  # a value, never SQL


def test_profile_before_build_says_to_build(tmp_path: Path):
    ws = services.init_workspace(tmp_path / "ws")
    with pytest.raises(NotBuiltError, match="hcpj build"):
        hcpjourney.profile(ws, "H123")


def test_profile_of_a_folder_that_is_not_a_workspace(tmp_path: Path):
    with pytest.raises(HcpjError, match="not an hcpjourney workspace"):
        hcpjourney.profile(tmp_path, "H123")


def test_workspace_object_and_path_give_the_same_profile(world: World, sample_ids: list[str]):
    h = sample_ids[1]
    a = hcpjourney.profile(world.ws, h).to_dict()
    b = hcpjourney.profile(str(Workspace.open(world.ws.root).root), h).to_dict()
    assert a == b
