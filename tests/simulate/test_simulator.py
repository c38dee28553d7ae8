"""Tests of the synthetic-world simulator: contract validity, truth and calibration."""

from __future__ import annotations

import filecmp
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hcpjourney.contract.npi import is_valid_npi
from hcpjourney.contract.schemas import (
    BOOL,
    BY_NAME,
    INT,
    NUMBER,
    PERIOD,
    TABLES,
    TIMESTAMP,
)
from hcpjourney.simulate import (
    OUTBOUND_CHANNELS,
    SEGMENTS,
    ResponseModel,
    SimulationError,
    simulate,
    true_engagement_probability,
)

N_HCPS = 1500
SEED = 7
START = "2025-01-01"
T0 = pd.Timestamp("2025-01-01", tz="UTC")
T1 = pd.Timestamp("2026-01-01", tz="UTC")
DAY_S = 86400
FILES = ("hcps", "interactions", "content", "consents", "outcomes", "feedback", "relationships")
TOUCH_ROWS = {
    ("email", "sent"), ("sms", "sent"), ("webinar", "sent"),
    ("f2f_visit", "completed"), ("f2f_visit", "declined"),
    ("remote_visit", "completed"), ("remote_visit", "declined"),
    ("phone", "completed"), ("phone", "declined"),
    ("msl_meeting", "completed"), ("msl_meeting", "declined"),
}
DIGITAL = {("email", "opened"), ("web", "visited"), ("web", "viewed"), ("portal", "visited"),
           ("portal", "downloaded")}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("drop")
    calls: list[tuple[int, int]] = []
    summary = simulate(N_HCPS, out, seed=SEED, start=START,
                       progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (N_HCPS, N_HCPS)
    assert summary.n_persons == N_HCPS
    assert summary.counts["interactions"] > 50 * N_HCPS
    return out


@pytest.fixture(scope="module")
def data(drop: Path) -> dict[str, pd.DataFrame]:
    d = {name: _read(drop / f"{name}.csv") for name in FILES}
    d["persons"] = _read(drop / "_truth" / "persons.csv")
    d["segments"] = _read(drop / "_truth" / "segments.csv")
    d["traits"] = pd.read_csv(drop / "_truth" / "person_traits.csv")
    return d


@pytest.fixture(scope="module")
def events(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Interactions with true person, UTC seconds and local time of the person."""
    ev = data["interactions"].merge(data["persons"][["record_id", "person_id"]], on="record_id")
    tr = data["traits"][["person_id", "utc_offset_hours"]]
    ev = ev.merge(tr, on="person_id")
    ts = pd.to_datetime(ev["ts"], utc=True, format="ISO8601")
    ev["t"] = (ts - T0).dt.total_seconds().astype(np.int64)
    local = ev["t"] + ev["utc_offset_hours"].astype(np.int64) * 3600
    ev["local_hour"] = (local % DAY_S) // 3600
    ev["local_weekday"] = ((local // DAY_S) + T0.weekday()) % 7
    return ev.sort_values(["person_id", "t", "event_id"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# contract validity
# ---------------------------------------------------------------------------------------

def test_files_and_columns(drop: Path) -> None:
    for name in FILES:
        header = (drop / f"{name}.csv").read_text(encoding="utf-8").split("\n", 1)[0]
        cols = [c.strip('"') for c in header.split(",")]
        assert cols == BY_NAME[name].names, name
    assert (drop / "journey.yaml").is_file()
    for f in ("persons.csv", "segments.csv", "person_traits.csv", "response_model.json",
              "world.json"):
        assert (drop / "_truth" / f).is_file()


def test_every_row_is_valid(data: dict[str, pd.DataFrame]) -> None:
    now = pd.Timestamp(datetime.now(UTC))
    record_ids = set(data["hcps"]["record_id"])
    for spec in TABLES:
        df = data[spec.name]
        assert len(df) > 0, spec.name
        for col in spec.columns:
            v = df[col.name]
            present = v != ""
            if col.required:
                assert present.all(), f"{spec.name}.{col.name} has empty required values"
            vals = v[present]
            if col.enum is not None:
                bad = set(vals) - set(col.enum)
                assert not bad, f"{spec.name}.{col.name}: {bad}"
            if col.npi:
                assert vals.map(is_valid_npi).all(), f"{spec.name}.{col.name}: bad NPI"
            if col.references_record:
                assert vals.isin(record_ids).all(), f"{spec.name}.{col.name}: unknown record"
            if col.type == INT:
                iv = vals.astype(int)
                if col.int_range:
                    assert iv.between(*col.int_range).all()
            if col.type == NUMBER:
                assert np.isfinite(vals.astype(float)).all()
            if col.type == BOOL:
                assert set(vals) <= {"true", "false"}
            if col.type == PERIOD:
                assert vals.str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])").all()
                assert (vals >= "2025-01").all() and (vals <= "2025-12").all()
            if col.type == TIMESTAMP:
                assert vals.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all(), col.name
                ts = pd.to_datetime(vals, utc=True, format="ISO8601")
                assert (ts >= T0).all() and (ts < T1).all(), f"{spec.name}.{col.name}"
                assert (ts <= now).all()
    # keys are unique
    for spec in TABLES:
        assert not data[spec.name].duplicated(list(spec.key)).any(), spec.name
    # feedback refers to real events
    fb_ev = data["feedback"]["event_id"]
    assert fb_ev[fb_ev != ""].isin(set(data["interactions"]["event_id"])).all()
    # interactions refer to content in the library, and only while it was approved and valid
    ev = data["interactions"]
    c = data["content"].set_index("content_id")
    used = ev[ev["content_id"] != ""]
    assert used["content_id"].isin(c.index).all()
    cu = c.loc[used["content_id"]]
    assert cu["mlr_status"].isin(["approved", "expired"]).all()
    ts = pd.to_datetime(used["ts"], utc=True).to_numpy()
    appr = pd.to_datetime(cu["approved_at"], utc=True).to_numpy()
    exp = pd.to_datetime(cu["expires_at"].replace("", None), utc=True).to_numpy()
    assert (ts >= appr).all()
    assert ((ts <= exp) | pd.isna(exp)).all()


def test_records_match_the_source_of_each_interaction(data: dict[str, pd.DataFrame]) -> None:
    ev = data["interactions"].merge(data["hcps"][["record_id", "source"]], on="record_id")
    src = ev.groupby("channel")["source"].agg(lambda s: set(s))
    assert src["web"] == {"web"} and src["portal"] == {"web"}
    assert src["payment"] == {"open_payments"}
    assert src["webinar"] == {"events"} and src["congress"] == {"events"}
    for ch in ("email", "f2f_visit", "phone", "sms", "msl_meeting", "remote_visit"):
        assert src[ch] == {"crm"}, ch
    assert ev["event_id"].is_unique
    # fields filled sensibly
    pay = ev[ev["channel"] == "payment"]
    assert (pay["value_usd"] != "").all()
    assert ev.loc[ev["channel"] == "msl_meeting", "team"].eq("medical").all()
    owners = ev.loc[ev["channel"].isin(["f2f_visit", "msl_meeting"]), "owner_id"]
    assert (owners != "").all()
    assert owners.str.match(r"^(REP|MSL|KAM)\d+$").all()
    done = ev[(ev["channel"] == "f2f_visit") & (ev["action"] == "completed")]
    assert (done["duration_s"] != "").all()
    assert set(ev["direction"]) == {"inbound", "outbound"}


def test_hcp_records_look_real(data: dict[str, pd.DataFrame]) -> None:
    h = data["hcps"]
    assert h["record_id"].str.match(r"^(crm|op|evt|web|svy):[0-9a-f]+$").all()
    assert set(h["source"]) == {"crm", "open_payments", "events", "web", "survey"}
    for src in ("crm", "open_payments"):
        assert (h.loc[h["source"] == src, "npi"] != "").all()
    web_npi = (h.loc[h["source"] == "web", "npi"] != "").mean()
    assert web_npi < 0.2
    prof = h.loc[h["profession"] != "", "profession"].value_counts(normalize=True)
    assert prof.idxmax() == "physician" and prof["physician"] > 0.6
    spec = h.loc[h["source"] == "crm", "specialty"].value_counts(normalize=True)
    assert spec.idxmax() == "Cardiology"
    crm = h[h["source"] == "crm"]
    assert crm["decile"].replace("", None).dropna().astype(int).between(1, 10).all()
    kol = (crm["is_kol"] == "true").mean()
    assert 0.02 < kol < 0.09
    assert crm["organization"].nunique() >= 50
    assert (crm["country"] == "US").all()


# ---------------------------------------------------------------------------------------
# truth
# ---------------------------------------------------------------------------------------

def test_truth_identity_duplicates_and_namesakes(data: dict[str, pd.DataFrame]) -> None:
    h, persons = data["hcps"], data["persons"]
    assert set(persons["record_id"]) == set(h["record_id"])
    assert persons["record_id"].is_unique
    n_persons = persons["person_id"].nunique()
    assert n_persons == N_HCPS
    assert len(h) > 1.5 * n_persons
    per = persons.groupby("person_id").size()
    assert per.min() >= 1 and per.max() <= 3
    # name variants across a person's records: nicknames, case and typos
    m = h.merge(persons[["record_id", "person_id"]], on="record_id")
    firsts = m[m["first_name"] != ""].groupby("person_id")["first_name"].nunique()
    assert (firsts > 1).mean() > 0.1
    assert (m["first_name"] == "Bill").any() or (m["first_name"] == "Bob").any()
    # namesakes: different persons with the same first and last name and different NPIs
    crm = m[(m["source"] == "crm") & (m["npi"] != "")].copy()
    crm["name"] = crm["first_name"].str.lower() + " " + crm["last_name"].str.lower()
    g = crm.groupby("name").agg(persons=("person_id", "nunique"), npis=("npi", "nunique"))
    assert (g["persons"] >= 2).sum() >= 5
    assert (g.loc[g["persons"] >= 2, "npis"] >= 2).all()
    tr = data["traits"]
    assert tr["namesake_of"].notna().sum() >= 10


def test_truth_segments(data: dict[str, pd.DataFrame]) -> None:
    s = data["segments"]
    assert set(s["segment"]) == set(SEGMENTS)
    w = s[[f"w_{x}" for x in SEGMENTS]].astype(float)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-3)
    mixed = s["secondary_segment"] != ""
    assert 0.10 < mixed.mean() < 0.20
    pw = s.loc[mixed, "segment_weight"].astype(float)
    assert pw.between(0.6, 0.8).all()
    assert s.loc[~mixed, "segment_weight"].astype(float).eq(1.0).all()


def test_response_model_round_trip(drop: Path) -> None:
    m = ResponseModel.from_json(drop / "_truth" / "response_model.json")
    a = m.probability("digital_self_educator", "email", "efficacy", "clinical",
                      "email_template", 18, 3)
    b = true_engagement_probability("digital_self_educator", "email", "efficacy", "clinical",
                                    "email_template", 18, 3)
    assert isinstance(b, float)
    assert a[0] == pytest.approx(b)
    world = json.loads((drop / "_truth" / "world.json").read_text())
    assert world["n_persons"] == N_HCPS


def test_true_engagement_probability_behaves() -> None:
    p = true_engagement_probability
    for ch in OUTBOUND_CHANNELS:
        for seg in SEGMENTS:
            v = p(seg, ch)
            assert isinstance(v, float) and 0.0 < v < 1.0
    assert p("traditional_in_person", "f2f_visit") > p("digital_self_educator", "f2f_visit")
    assert p("digital_self_educator", "email") > p("traditional_in_person", "email")
    assert p("evidence_driven_medical", "msl_meeting") > p("overwhelmed_low_engagement",
                                                             "msl_meeting")
    # content, tonality, timing and fatigue matter
    assert p("evidence_driven_medical", "email", tonality="clinical") > p(
        "evidence_driven_medical", "email", tonality="promotional")
    assert p("digital_self_educator", "email", hour=18, weekday=1) > p(
        "digital_self_educator", "email", hour=3, weekday=1)
    assert p("overwhelmed_low_engagement", "email", recent_contacts=0) > p(
        "overwhelmed_low_engagement", "email", recent_contacts=10)
    mix = p({"traditional_in_person": 0.6, "digital_self_educator": 0.4}, "f2f_visit")
    lo, hi = sorted([p("digital_self_educator", "f2f_visit"),
                     p("traditional_in_person", "f2f_visit")])
    assert lo < mix < hi
    vec = p(["traditional_in_person", "digital_self_educator"], "email", hour=[9, 18])
    assert isinstance(vec, np.ndarray) and vec.shape == (2,)
    with pytest.raises(ValueError):
        p("traditional_in_person", "web")


def _recent_contacts(ev: pd.DataFrame) -> pd.Series:
    """Outbound touches to the same person in the 30 days before each touch row."""
    pairs = list(zip(ev["channel"], ev["action"], strict=True))
    touch = ev[[pr in TOUCH_ROWS for pr in pairs]]
    codes = touch["person_id"].astype("category").cat.codes.to_numpy().astype(np.int64)
    key = codes * (1 << 34) + touch["t"].to_numpy()
    order = np.argsort(key, kind="stable")
    ks = key[order]
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size)
    rc = pos - np.searchsorted(ks, key - 30 * DAY_S, side="left")
    return pd.Series(rc, index=touch.index)


def test_observed_responses_match_the_true_model(drop: Path, data: dict[str, pd.DataFrame],
                                                 events: pd.DataFrame) -> None:
    """Completion of rep visits equals the mean true probability of those visits."""
    m = ResponseModel.from_json(drop / "_truth" / "response_model.json")
    rc = _recent_contacts(events)
    ev = events.loc[rc.index].assign(recent=rc)
    tr = data["traits"].set_index("person_id")
    segw = data["segments"].set_index("person_id")[[f"w_{s}" for s in SEGMENTS]].astype(float)
    content = data["content"].set_index("content_id")
    for ch, success in (("f2f_visit", "completed"), ("msl_meeting", "completed"),
                        ("remote_visit", "completed")):
        v = ev[ev["channel"] == ch]
        pid = v["person_id"]
        c = content.reindex(v["content_id"])
        prob = m.probability(
            segw.loc[pid].to_numpy(), ch,
            theme=c["theme"].to_numpy(), tonality=c["tonality"].to_numpy(),
            format=c["format"].to_numpy(), hour=v["local_hour"].to_numpy(),
            recent_contacts=v["recent"].to_numpy(), weekday=v["local_weekday"].to_numpy(),
            decile=tr.loc[pid, "decile"].fillna(5.5).to_numpy(),
            fatigue=tr.loc[pid, "fatigue"].to_numpy(),
            person_offset=(tr.loc[pid, f"offset_{ch}"] + tr.loc[pid, "intercept"]).to_numpy(),
        )
        observed = (v["action"] == success).mean()
        assert observed == pytest.approx(prob.mean(), abs=0.03), ch
    # the segment-level probability (typical member, no person terms) is close too
    seg = data["segments"].set_index("person_id")
    pure = seg.index[seg["secondary_segment"] == ""]
    v = ev[(ev["channel"] == "f2f_visit") & ev["person_id"].isin(pure)]
    c = content.reindex(v["content_id"])
    typical = true_engagement_probability(
        seg.loc[v["person_id"], "segment"].to_numpy(), "f2f_visit", c["theme"].to_numpy(),
        c["tonality"].to_numpy(), c["format"].to_numpy(), v["local_hour"].to_numpy(),
        v["recent"].to_numpy(), weekday=v["local_weekday"].to_numpy(),
        decile=tr.loc[v["person_id"], "decile"].fillna(5.5).to_numpy(), model=m)
    by_seg = pd.DataFrame({"segment": seg.loc[v["person_id"], "segment"].to_numpy(),
                           "observed": (v["action"] == "completed").to_numpy(),
                           "typical": typical})
    agg = by_seg.groupby("segment")[["observed", "typical"]].mean()
    assert np.allclose(agg["observed"], agg["typical"], atol=0.08), agg
    assert agg["observed"].idxmax() == "traditional_in_person"


# ---------------------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------------------

def test_email_open_rate(data: dict[str, pd.DataFrame]) -> None:
    em = data["interactions"]
    em = em[em["channel"] == "email"]["action"].value_counts()
    rate = em["opened"] / em["delivered"]
    assert 0.12 <= rate <= 0.20
    assert em["bounced"] > 0 and em["clicked"] < em["opened"]


def test_webinar_no_show(data: dict[str, pd.DataFrame]) -> None:
    w = data["interactions"]
    w = w[w["channel"] == "webinar"]["action"].value_counts()
    no_show = 1 - w["attended"] / w["registered"]
    assert no_show == pytest.approx(0.5, abs=0.10)
    assert w["registered"] < w["sent"]


def test_most_hcps_prefer_in_person(data: dict[str, pd.DataFrame],
                                    events: pd.DataFrame) -> None:
    tr = data["traits"]
    share = (tr["top_channel"] == "f2f_visit").mean()
    assert share == pytest.approx(0.65, abs=0.07)
    # and it shows in the data: those HCPs complete more rep visits
    f2f = events[events["channel"] == "f2f_visit"]
    top = set(tr.loc[tr["top_channel"] == "f2f_visit", "person_id"])
    done = f2f["action"].eq("completed").groupby(f2f["person_id"].isin(top)).mean()
    assert done[True] > done[False] + 0.05
    # the attitude survey agrees
    fb = data["feedback"].merge(data["persons"], on="record_id")
    q = fb[fb["question"].str.contains("in-person visits")]
    s = q["score"].astype(float).groupby(q["person_id"].isin(top)).mean()
    assert s[True] > s[False] + 0.8


def test_digital_consumption_peaks_on_weekday_evenings(events: pd.DataFrame) -> None:
    pairs = list(zip(events["channel"], events["action"], strict=True))
    d = events[[p in DIGITAL for p in pairs]]
    wk = d[d["local_weekday"] < 5]
    hist = np.bincount(wk["local_hour"], minlength=24)
    assert hist.argmax() in (17, 18, 19)
    block = [hist[h:h + 3].sum() for h in range(22)]
    assert int(np.argmax(block)) == 17
    per_weekday = len(wk) / 5
    per_weekend_day = (len(d) - len(wk)) / 2
    assert per_weekday > 1.3 * per_weekend_day


def test_responses_fall_with_contact_frequency(events: pd.DataFrame) -> None:
    rc = _recent_contacts(events)
    v = events.loc[rc.index].assign(recent=rc)
    v = v[v["channel"].isin(["f2f_visit", "remote_visit", "phone"])]
    bins = pd.cut(v["recent"], [-1, 1, 3, 5, 7, 1000])
    rate = v["action"].eq("completed").groupby(bins, observed=True).mean()
    assert rate.is_monotonic_decreasing
    assert rate.iloc[0] - rate.iloc[-1] > 0.06


def test_overwhelmed_share_and_survey(data: dict[str, pd.DataFrame]) -> None:
    tr = data["traits"]
    share = tr["overwhelmed"].mean()
    assert 0.55 <= share <= 0.62
    fb = data["feedback"].merge(data["persons"], on="record_id")
    q = fb[fb["question"].str.contains("too much information")]
    per = q.groupby("person_id")["score"].apply(lambda s: s.astype(float).max())
    assert (per >= 4).mean() == pytest.approx(share, abs=0.1)
    comments = fb.loc[fb["comment"] != "", "comment"].str.lower()
    assert comments.str.contains("too many|overwhelmed|overload|too much").sum() >= 10
    assert comments.str.contains("helpful|excellent|great").sum() >= 10
    nps = fb.loc[fb["instrument"] == "nps", "score"].astype(float)
    assert nps.between(0, 10).all() and nps.nunique() > 5
    dims = fb.loc[fb["dimension"] != ""]
    assert set(dims["dimension"]) == {"relevant", "consumable", "accessible", "connective",
                                      "purposeful"}
    assert (dims["event_id"] != "").all()


def test_consents_content_outcomes_network(data: dict[str, pd.DataFrame]) -> None:
    cs = data["consents"]
    out = cs[cs["status"] == "opt_out"]
    assert len(out) > 0
    assert out["channel"].value_counts().idxmax() == "email"
    assert set(cs["purpose"]) >= {"promotional", "medical"}
    # no promotional email after the latest opt-out
    latest = cs[(cs["channel"] == "email") & (cs["purpose"] == "promotional")].sort_values("ts")
    latest = latest.groupby("record_id").tail(1)
    opted = latest[latest["status"] == "opt_out"].set_index("record_id")["ts"]
    ev = data["interactions"]
    sent = ev[(ev["channel"] == "email") & (ev["action"] == "sent") & (ev["team"] != "medical")
              & ev["record_id"].isin(opted.index)]
    assert (sent["ts"].to_numpy() < opted.loc[sent["record_id"]].to_numpy()).all()
    c = data["content"]
    assert 40 <= len(c) <= 80
    st = c["mlr_status"].value_counts()
    assert st.idxmax() == "approved" and len(st) >= 4
    appr = c[c["mlr_status"] == "approved"]
    assert (appr["expires_at"] != "").any() and (appr["expires_at"] == "").any()
    o = data["outcomes"]
    assert set(o["product"]) == {"cardiozen", "vasotrex"}
    assert (o.loc[o["product"] == "cardiozen", "nrx"].astype(float) > 0).any()
    r = data["relationships"]
    indeg = r["dst_record_id"].value_counts()
    hubs = indeg.head(max(5, len(indeg) // 100)).index
    kol = data["hcps"].set_index("record_id")["is_kol"]
    assert (kol.reindex(hubs) == "true").mean() > 0.6
    assert indeg.iloc[0] > 10 * indeg.median()
    assert set(r["kind"]) == {"coauthor", "referral", "affiliation", "speaker_attendee",
                              "advisory_peer"}


# ---------------------------------------------------------------------------------------
# journey funnel
# ---------------------------------------------------------------------------------------

def _funnel(drop: Path, data: dict[str, pd.DataFrame], events: pd.DataFrame) -> pd.DataFrame:
    """Stage entry per person, computed directly from the files and journey.yaml."""
    journey = yaml.safe_load((drop / "journey.yaml").read_text())
    window = journey.get("conversion_window_days")
    wnd = window * DAY_S if window else None
    persons = data["persons"]
    o = data["outcomes"].merge(persons, on="record_id")
    o = o[(o["product"] == journey["product"]) & (o["nrx"].astype(float) > 0)]
    first = o.groupby("person_id")["period"].min()
    happens = (pd.PeriodIndex(first.to_numpy(), freq="M") + 1).to_timestamp().tz_localize("UTC")
    adopt = pd.Series(((happens - T0).total_seconds()).astype(np.int64), index=first.index)
    entries = pd.DataFrame(index=sorted(persons["person_id"].unique()))
    prev: pd.Series | None = None
    for st in journey["stages"]:
        cand = pd.Series(dtype=float)
        items = st["enter_on"]
        ev_items = [i for i in items if "outcome" not in i]
        if ev_items:
            mask = np.zeros(len(events), dtype=bool)
            for it in ev_items:
                mk = np.ones(len(events), dtype=bool)
                for k, v in it.items():
                    mk &= (events[k] == str(v)).to_numpy()
                mask |= mk
            e = events[mask]
            if prev is not None:
                pv = prev.reindex(e["person_id"]).to_numpy()
                ok = ~np.isnan(pv) & (e["t"].to_numpy() >= pv)
                if wnd:
                    ok &= e["t"].to_numpy() <= pv + wnd
                e = e[ok]
            cand = e.groupby("person_id")["t"].min().astype(float)
        if any("outcome" in i for i in items):
            a = adopt.astype(float)
            if prev is not None:
                pv = prev.reindex(a.index).to_numpy()
                ok = ~np.isnan(pv) & (a.to_numpy() >= pv)
                if wnd:
                    ok &= a.to_numpy() <= pv + wnd
                a = a[ok]
            cand = pd.concat([cand, a]).groupby(level=0).min()
        entries[st["id"]] = cand
        prev = entries[st["id"]].dropna()
    return entries


def test_funnel_shape_and_truth(drop: Path, data: dict[str, pd.DataFrame],
                                events: pd.DataFrame) -> None:
    entries = _funnel(drop, data, events)
    counts = entries.notna().sum()
    assert list(counts.index) == ["awareness", "consideration", "decision", "adoption",
                                  "advocacy"]
    assert counts.is_monotonic_decreasing and counts.nunique() == 5
    assert counts["awareness"] > 0.6 * N_HCPS
    assert counts["adoption"] < 0.35 * N_HCPS
    assert 0 < counts["advocacy"] < 0.1 * N_HCPS
    # the truth file gives the same entries
    tr = data["traits"].set_index("person_id")
    for st in counts.index:
        truth = pd.to_datetime(tr[f"{st}_at"], utc=True, format="ISO8601")
        truth_s = (truth - T0).dt.total_seconds()
        mine = entries[st].reindex(truth_s.index)
        assert (truth_s.isna() == mine.isna()).all(), st
        both = truth_s.notna()
        assert np.allclose(truth_s[both].to_numpy(), mine[both].to_numpy()), st


def test_adoption_follows_decision_touchpoints(data: dict[str, pd.DataFrame],
                                               events: pd.DataFrame) -> None:
    tr = data["traits"]
    presc = tr[tr["profession"].isin(["physician", "nurse_practitioner",
                                      "physician_assistant"])]
    decided = presc["decision_at"].notna()
    adopted = presc["adoption_period"].notna()
    assert adopted[decided].mean() > 2 * adopted[~decided].mean()


# ---------------------------------------------------------------------------------------
# determinism and arguments
# ---------------------------------------------------------------------------------------

def test_deterministic_per_seed(tmp_path: Path) -> None:
    a = simulate(300, tmp_path / "a", seed=3, events_per_hcp=30)
    b = simulate(300, tmp_path / "b", seed=3, events_per_hcp=30)
    c = simulate(300, tmp_path / "c", seed=4, events_per_hcp=30)
    assert a.counts == b.counts
    names = [f"{n}.csv" for n in FILES] + ["journey.yaml"]
    truth = ["persons.csv", "segments.csv", "person_traits.csv", "response_model.json"]
    _match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names,
                                               shallow=False)
    assert not mismatch and not errors
    _match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a" / "_truth",
                                               tmp_path / "b" / "_truth", truth, shallow=False)
    assert not mismatch and not errors
    _m, mismatch, _e = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", names, shallow=False)
    assert {"hcps.csv", "interactions.csv"} <= set(mismatch)
    assert c.n_persons == 300


def test_volume_follows_events_per_hcp(tmp_path: Path) -> None:
    s = simulate(300, tmp_path / "v", seed=1, events_per_hcp=20)
    assert 10 * 300 < s.counts["interactions"] < 35 * 300


def test_window_must_be_in_the_past(tmp_path: Path) -> None:
    with pytest.raises(SimulationError):
        simulate(10, tmp_path / "f", start="2099-01-01")
    with pytest.raises(SimulationError):
        simulate(0, tmp_path / "f")
    s = simulate(50, tmp_path / "m", seed=2, start="2024-03-01", months=6, events_per_hcp=20)
    ev = _read(tmp_path / "m" / "interactions.csv")
    ts = pd.to_datetime(ev["ts"], utc=True)
    assert ts.min() >= pd.Timestamp("2024-03-01", tz="UTC")
    assert ts.max() < pd.Timestamp("2024-09-01", tz="UTC")
    assert s.n_persons == 50
