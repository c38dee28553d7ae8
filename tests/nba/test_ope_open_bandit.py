"""Off-policy evaluation on the real Open Bandit logs (ZOZOTOWN) and on a bandit with known values."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from hcpjourney.errors import HcpjError
from hcpjourney.nba.ope import evaluate_policy
from realdata_path import REALDATA

REAL = REALDATA / "open_bandit"
BTS = REAL / "bts" / "all.csv"
RANDOM = REAL / "random" / "all.csv"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_uniform_policy_from_bts_logs() -> None:
    bts = _rows(BTS)
    # the truth: the uniform-random policy's observed CTR on its own logs
    rnd = _rows(RANDOM)
    truth = sum(int(r["click"]) for r in rnd) / len(rnd)
    assert truth == pytest.approx(0.0038)
    # plain IPW by hand: pi(a) = 1/80 at each position, over the recorded propensities
    n_items = len({r["item_id"] for r in bts})
    hand = sum((1 / n_items) / float(r["propensity_score"]) * int(r["click"]) for r in bts) / len(bts)
    assert n_items == 80 and hand == pytest.approx(0.00236, abs=5e-6)
    res = evaluate_policy(BTS, "uniform")
    assert not res.estimated_propensities
    assert res.n == len(bts)
    assert res.estimates["ipw"].value == pytest.approx(hand, rel=1e-12)
    assert res.estimates["snipw"].value == pytest.approx(0.00233, abs=5e-6)
    for name in ("ipw", "snipw", "dr"):
        e = res.estimates[name]
        assert e.lo < truth < e.hi, (name, e)
        assert e.lo < e.value < e.hi
    assert res.logged_value == pytest.approx(0.0042)
    # percentile bootstrap intervals agree
    boot = evaluate_policy(BTS, "uniform", bootstrap=300, seed=2)
    assert all(e.contains(truth) for e in boot.estimates.values())


def test_logged_policy_is_the_observed_mean() -> None:
    res = evaluate_policy(RANDOM, "logged")
    for e in res.estimates.values():
        assert e.value == pytest.approx(0.0038)


def test_known_values_and_estimated_propensities() -> None:
    """A 4-armed bandit with a skewed logging policy: the estimates find the target's value."""
    rng = np.random.default_rng(0)
    n = 40_000
    mu = np.array([0.1, 0.3, 0.5, 0.7])
    logging = np.array([0.55, 0.25, 0.15, 0.05])
    a = rng.choice(4, n, p=logging)
    r = (rng.random(n) < mu[a]).astype(int)
    logs = pa.table({"action": a, "reward": r, "propensity": logging[a]})
    res = evaluate_policy(logs, "uniform")
    for e in res.estimates.values():
        assert e.contains(mu.mean())
        assert abs(e.value - mu.mean()) < 3 * e.se
    # without the propensity column they are estimated from the logged frequencies
    est = evaluate_policy(pa.table({"action": a, "reward": r}), "uniform")
    assert est.estimated_propensities
    # with p(k) = n_k / n, IPW of uniform is the mean of the arms' observed means
    assert est.estimates["ipw"].value == pytest.approx(np.mean([r[a == k].mean() for k in range(4)]),
                                                       rel=1e-9)
    # a deterministic policy (always arm 3) from a policy table keyed by context
    ctx = np.arange(n).astype(str)
    logs_c = pa.table({"action": a, "reward": r, "propensity": logging[a], "context_id": ctx})
    pol = {"context_id": list(ctx), "action": [3] * n, "probability": [1.0] * n}
    det = evaluate_policy(logs_c, pol)
    assert det.estimates["snipw"].contains(0.7) and det.estimates["dr"].contains(0.7)
    # the target propensity as a column: IPW and SNIPW only
    col = pa.table({"action": a, "reward": r, "propensity": logging[a],
                    "target_propensity": np.where(a == 3, 1.0, 0.0)})
    c = evaluate_policy(col, "column")
    assert set(c.estimates) == {"ipw", "snipw"}
    assert c.estimates["ipw"].value == pytest.approx(det.estimates["ipw"].value)
    assert math.isfinite(c.effective_sample_size) and c.effective_sample_size < n


def test_bad_logs_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(HcpjError, match="action"):
        evaluate_policy(pa.table({"x": [1], "reward": [0]}))
    with pytest.raises(HcpjError, match="propensities must lie"):
        evaluate_policy(pa.table({"action": [1], "reward": [0], "propensity": [0.0]}))
    with pytest.raises(HcpjError, match="unknown policy"):
        evaluate_policy(pa.table({"action": [1], "reward": [0]}), "greedy")
    with pytest.raises(HcpjError, match="no such file"):
        evaluate_policy(tmp_path / "missing.csv")
