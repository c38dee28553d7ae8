"""Response, timing, progression and logging-policy models on data with planted effects."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.nba import history as H
from hcpjourney.nba.catalogue import DEFAULT_TYPES, action_types
from hcpjourney.nba.models import (
    BLOCK_SD,
    DAYPART_OF_HOUR,
    KINDS,
    LoggingPolicy,
    Progression,
    ResponseModel,
    Rows,
    best_timing,
    ridge_logistic,
    sigmoid,
    slot_of,
)
from hcpjourney.nba.settings import NbaSettings

TYPES = tuple(t for t in DEFAULT_TYPES if t.name in ("email", "f2f_visit", "msl_meeting"))


def _hcps(n: int, rng: np.random.Generator) -> H.Hcps:
    return H.Hcps(ids=np.array([f"H{i:04d}" for i in range(n)], dtype=object),
                  utc_offset=np.full(n, -5), decile=rng.integers(1, 11, n).astype(float),
                  is_kol=np.zeros(n, dtype=bool), contacts_7d=np.zeros(n, dtype=np.int64),
                  contacts_30d=np.zeros(n, dtype=np.int64), stage=np.zeros(n, dtype=np.int64))


def _vocab() -> H.ContentVocab:
    rows = [{"content_id": f"c{i}", "theme": th, "tonality": "clinical", "format": "detail_aid",
             "aesthetics": None, "key_message": None}
            for i, th in enumerate(["efficacy", "safety", "access"])]
    return H.content_vocab(rows)


def test_ridge_logistic_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    y = (rng.random(400) < sigmoid(X @ np.array([1.0, -2, 0.5, 0, 0, 3]) - 0.5)).astype(float)
    sw = rng.uniform(0.5, 2.0, 400)
    w, b, _ = ridge_logistic(X, y, sw, rtol=1e-10, max_iter=100)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(X, y, sample_weight=sw)
    assert np.allclose(w, ref.coef_.ravel(), atol=1e-4)
    assert b == pytest.approx(float(ref.intercept_[0]), abs=1e-4)


@pytest.fixture(scope="module")
def planted() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    n, m = 300, 40_000
    hc = _hcps(n, rng)
    voc = _vocab()
    type_eff = np.array([-1.5, 1.0, 0.3])
    hcp_type = rng.normal(0, 0.8, (n, 3))
    theme_eff = np.array([0.4, 0.0, -0.4])
    # digital engagement peaks in the evening, personal at lunch
    hour_eff = np.zeros((2, 24))
    hour_eff[0, 17:20] = 0.8
    hour_eff[1, 12:14] = 0.6
    hix = np.sort(rng.integers(0, n, m))
    t = rng.integers(0, 3, m)
    content = np.where(t == 0, -1, rng.integers(0, 3, m))
    wd = rng.integers(0, 5, m)
    hr = rng.integers(7, 21, m)
    kind = np.array([KINDS.index(x.kind) for x in TYPES])[t]
    theme = voc.attribute_codes("theme", content)
    lg = (type_eff[t] + hcp_type[hix, t] + np.where(theme >= 0, theme_eff[np.maximum(theme, 0)], 0)
          + hour_eff[kind, hr])
    y = (rng.random(m) < sigmoid(lg)).astype(np.int8)
    ts = np.sort(rng.integers(0, 10**7, m))
    touches = H.Touches(hix=hix, type_code=t, content=content, ts=ts, weekday=wd, hour=hr, reward=y,
                        team=np.zeros(m, dtype=np.int64), recent=np.zeros(m, dtype=np.int64),
                        trainable=np.ones(m, dtype=bool), propensity=np.full(m, np.nan))
    model = ResponseModel.fit(touches, hc, TYPES, voc)
    return {"model": model, "hc": hc, "voc": voc, "type_eff": type_eff, "hcp_type": hcp_type,
            "theme_eff": theme_eff, "touches": touches, "logit": lg}


def test_response_model_recovers_planted_effects(planted: dict[str, Any]) -> None:
    model: ResponseModel = planted["model"]
    e = model.effects
    t = planted["touches"]
    fitted = model.logit_rows(Rows.from_touches(t, planted["voc"]), planted["hc"])
    truth = planted["logit"]
    assert np.corrcoef(fitted, truth)[0, 1] > 0.9
    # channel levels (the mean logit per channel), up to a constant
    got = np.array([fitted[t.type_code == k].mean() for k in range(3)])
    want = np.array([truth[t.type_code == k].mean() for k in range(3)])
    assert np.allclose(got - got.mean(), want - want.mean(), atol=0.15)
    th = e["attr:theme"] + e["hcp_attr:theme"].mean(axis=0)
    assert np.allclose(th - th.mean(), planted["theme_eff"], atol=0.15)
    # per-HCP channel affinities
    r = np.corrcoef(e["hcp_type"].ravel(), planted["hcp_type"].ravel())[0, 1]
    assert r > 0.75
    # time of day: digital best in the evening, personal at lunch
    allowed = model.allowed_slots([7 <= h <= 20 for h in range(24)])
    tim = best_timing(model, planted["hc"], allowed)
    dig = tim.slot[:, 0] % 24
    per = tim.slot[:, 1] % 24
    assert np.mean((dig >= 17) & (dig <= 19)) > 0.9
    assert np.mean((per >= 12) & (per <= 13)) > 0.9
    assert set(DAYPART_OF_HOUR[per].tolist()) <= {3, 4}
    # support: never a slot nobody was contacted in (weekends, night)
    assert not allowed[:, slot_of(np.array([5, 6]), np.array([12, 12]))].any()
    assert not allowed[:, slot_of(np.array([1]), np.array([3]))].any()


def test_logged_rates_and_posterior(planted: dict[str, Any]) -> None:
    model: ResponseModel = planted["model"]
    t = planted["touches"]
    for k in range(3):
        assert model.channel_rate[k] == pytest.approx(t.reward[t.type_code == k].mean())
    h = int(t.hix[0])
    mine = (t.hix == h) & (t.type_code == 1)
    assert model.hcp_touches[h, 1] == mine.sum()
    assert model.hcp_rate[h, 1] == pytest.approx(t.reward[mine].mean())
    # HCPs with more data have tighter posteriors
    n_h = np.bincount(t.hix, minlength=300)
    v = model.variances["hcp"]
    assert np.corrcoef(n_h, v)[0, 1] < -0.2
    assert np.all(v < BLOCK_SD["hcp"] ** 2)
    draw = model.sampled(np.random.default_rng(0))
    assert not np.allclose(draw.effects["hcp_type"], model.effects["hcp_type"])


def test_recent_counts_reference() -> None:
    rng = np.random.default_rng(1)
    hix = np.sort(rng.integers(0, 5, 300))
    ts = np.concatenate([np.sort(rng.integers(0, 200, (hix == h).sum())) for h in range(5)])
    counted = rng.random(300) < 0.7
    got = H.recent_counts(hix, ts, 30, counted)
    want = [sum(1 for j in range(300) if hix[j] == hix[i] and ts[i] - 30 <= ts[j] < ts[i] and counted[j])
            for i in range(300)]
    assert got.tolist() == want


def test_logging_policy_propensities() -> None:
    rng = np.random.default_rng(3)
    m, n = 5000, 20
    hix = np.sort(rng.integers(0, n, m))
    t = rng.choice(3, m, p=[0.6, 0.3, 0.1])
    content = np.where(t == 2, -1, rng.integers(0, 4, m))
    ts = np.full(m, 86_400 * 45)  # one month
    touches = H.Touches(hix=hix, type_code=t, content=content, ts=ts, weekday=rng.integers(0, 5, m),
                        hour=rng.integers(8, 18, m), reward=np.zeros(m, dtype=np.int8),
                        team=np.zeros(m, dtype=np.int64), recent=np.zeros(m, dtype=np.int64),
                        trainable=np.ones(m, dtype=bool), propensity=np.full(m, np.nan))
    kinds = np.array([0, 1, 1])
    lp = LoggingPolicy.fit(touches, n, kinds)
    assert np.allclose(lp.p_type.sum(axis=1), 1.0)
    assert np.allclose(lp.p_type.mean(axis=0), [0.6, 0.3, 0.1], atol=0.03)
    pc = lp.propensity(touches, "content")
    pch = lp.propensity(touches, "channel")
    for k, c in [(0, 1), (1, 3)]:
        sel = (t == k) & (content == c)
        freq = sel.sum() / (t == k).sum()
        assert np.allclose(pc[sel] / pch[sel], freq)
    assert np.allclose(pc[t == 2], pch[t == 2])  # no content: the channel's propensity
    rec = touches.propensity.copy()
    rec[:10] = 0.5
    touches.propensity = rec
    assert np.all(lp.propensity(touches, "full")[:10] == 0.5)  # recorded propensities win


def test_progression_delta() -> None:
    rng = np.random.default_rng(5)
    n, m = 2000, 2000
    hc = _hcps(n, rng)
    hc.stage_names = ["awareness", "consideration"]
    entry = np.full((n, 2), np.inf)
    entry[:, 0] = 0.0  # everyone aware at t=0
    hix = np.arange(m)
    ts = np.full(m, 1000)
    reward = (rng.random(m) < 0.5).astype(np.int8)
    moves = rng.random(m) < np.where(reward == 1, 0.5, 0.1)
    entry[hix[moves], 1] = 1000 + 86_400 * 10
    hc.stage_entry = entry
    touches = H.Touches(hix=hix, type_code=np.zeros(m, dtype=np.int64), content=np.full(m, -1), ts=ts,
                        weekday=np.zeros(m, dtype=np.int64), hour=np.full(m, 10), reward=reward,
                        team=np.zeros(m, dtype=np.int64), recent=np.zeros(m, dtype=np.int64),
                        trainable=np.ones(m, dtype=bool), propensity=np.full(m, np.nan))
    pr = Progression.fit(touches, hc, 1, horizon_days=30)
    assert pr.delta[1, 0] == pytest.approx(0.4, abs=0.05)
    assert pr.delta[0, 0] == 0.0 and pr.delta[2, 0] == 0.0
    assert Progression.fit(touches, hc, 1, horizon_days=5).delta[1, 0] == pytest.approx(0.0, abs=0.01)
    # the touch that itself enters the next stage (entry at the touch's own time) is a progression
    entry[:, 1] = np.where(reward == 1, 1000.0, np.inf)
    assert Progression.fit(touches, hc, 1, horizon_days=5).delta[1, 0] > 0.9


def test_rewards_are_linked_to_the_touch_they_answer(factory: Any) -> None:
    wh = factory.workspace()
    drop = factory.drop()
    drop.csv("hcps.csv", ["record_id", "source", "last_name"], [["crm:1", "crm", "Smith"],
                                                                ["crm:2", "crm", "Jones"]])
    head = ["event_id", "record_id", "ts", "channel", "action", "direction", "content_id", "campaign_id",
            "propensity"]

    def ev(i: str, rec: str, day: float, ch: str, act: str, c: str = "c1", camp: str = "k1") -> list[str]:
        ts = (datetime(2025, 3, 1) + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return [i, rec, ts, ch, act, "outbound", c, camp, "0.25" if i == "s1" else ""]

    rows = [
        ev("s1", "crm:1", 0, "email", "sent"), ev("o1", "crm:1", 1, "email", "opened"),  # 1
        ev("s2", "crm:1", 2, "email", "sent"), ev("s3", "crm:1", 3, "email", "sent"),
        ev("o3", "crm:1", 4, "email", "opened"),  # after s3: answers s3, not s2
        ev("s4", "crm:1", 10, "email", "sent", camp="k2"),
        ev("o4", "crm:1", 25, "email", "opened", camp="k2"),  # 15 days later: too late
        ev("s5", "crm:2", 0, "email", "sent"), ev("o5", "crm:2", 1, "email", "opened", camp="k9"),
        ev("v1", "crm:2", 2, "f2f_visit", "completed", c=""),
        ev("v2", "crm:2", 3, "f2f_visit", "declined", c=""),
        ev("s6", "crm:2", 40, "email", "sent"),  # outcome not known yet at as-of
    ]
    drop.csv("interactions.csv", head, rows)
    wh.ingest(drop.path)
    services.build(wh.ws)
    types = action_types(NbaSettings())
    eng = engines.connect(wh.ws)
    try:
        ht = H.register_hcps(eng)
        voc = H.content_vocab(H.content_rows(eng))
        as_of = datetime(2025, 3, 1) + timedelta(days=45)
        t = H.load_touches(eng, ht, types, voc, as_of, 365)
        ids = {r["record_id"]: r["hcp_id"] for r in eng.to_pyarrow(eng.table("identities")).to_pylist()}
        hc = H.load_hcps(eng, ht, None, as_of)
    finally:
        eng.close()
    h1 = int(hc.lookup([ids["crm:1"]])[0])
    names = [x.name for x in types]
    got = sorted((int(h == h1), names[k], int(r), bool(tr))
                 for h, k, r, tr in zip(t.hix, t.type_code, t.reward, t.trainable, strict=True))
    assert got == sorted([
        (1, "email", 1, True), (1, "email", 0, True), (1, "email", 1, True), (1, "email", 0, True),
        (0, "email", 0, True), (0, "f2f_visit", 1, True), (0, "f2f_visit", 0, True),
        (0, "email", 0, False),
    ])
    # a propensity column of the interactions file is the touch's recorded logging propensity
    assert sorted(np.nan_to_num(t.propensity, nan=-1).tolist()) == [-1] * 7 + [0.25]
    # contacts before each touch (30 days): crm:1's fourth email had three before it
    mine = t.recent[t.hix == h1]
    assert mine.tolist() == [0, 1, 2, 3]
