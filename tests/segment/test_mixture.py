"""The latent-class mixture on synthetic data with a known answer, and label matching."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from hcpjourney.errors import HcpjError
from hcpjourney.segment.mixture import (
    DEFAULT_EXCLUDE,
    LatentClassMixture,
    infer_blocks,
    match_labels,
)

THETA = np.array([
    [0.40, 0.25, 0.15, 0.08, 0.05, 0.03, 0.02, 0.02],
    [0.02, 0.03, 0.05, 0.10, 0.30, 0.30, 0.10, 0.10],
    [0.10, 0.05, 0.30, 0.05, 0.05, 0.05, 0.30, 0.10],
])
RATE = np.array([0.15, 0.5, 0.85])
MU = np.array([-1.0, 0.0, 1.0])


def synthetic(n: int = 3000, *, mixed: float = 0.2, events: int = 25, rho: float = 0.0,
              seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Columns in the features' naming, the true class, the mixed flag and the weights."""
    rng = np.random.default_rng(seed)
    k = THETA.shape[0]
    z = rng.integers(0, k, n)
    W = np.eye(k)[z]
    mix = rng.random(n) < mixed
    other = (z + rng.integers(1, k, n)) % k
    W[mix] = 0.5 * np.eye(k)[z[mix]] + 0.5 * np.eye(k)[other[mix]]
    probs = W @ THETA
    if rho > 0:  # Dirichlet-multinomial with intra-class correlation rho
        conc = (1 - rho) / rho
        probs = np.vstack([rng.dirichlet(conc * p) for p in probs])
    counts = np.vstack([rng.multinomial(events, p) for p in probs])
    att = rng.integers(0, 15, n)
    resp = rng.binomial(att, W @ RATE)
    score = rng.normal(W @ MU, 0.5)
    score[rng.random(n) < 0.3] = np.nan
    cols = {f"cnt_block__p{j}": counts[:, j].astype(float) for j in range(THETA.shape[1])}
    cols |= {"att_email": att.astype(float), "resp_email": resp.astype(float),
             "score_x": score, "log_in_web": rng.normal(size=n), "cnt_direction__a": counts[:, 0],
             "cnt_direction__b": counts[:, 1]}
    return cols, z, mix, W


def test_blocks_follow_the_column_names() -> None:
    cols, *_ = synthetic(50)
    blocks = infer_blocks(list(cols), exclude=("log_*", "direction"))
    kinds = {(b.kind, b.name) for b in blocks}
    assert kinds == {("binomial", "email"), ("multinomial", "block"), ("gaussian", "score_x")}
    # by default raw volumes are left out, but an inbound volume where a source records
    # the channel (log_seen_*) is modelled
    default = infer_blocks([*cols, "log_seen_web", "log_n_events"], exclude=DEFAULT_EXCLUDE)
    assert {(b.kind, b.name) for b in default} == kinds | {("gaussian", "log_seen_web")}


def test_estimator_contract() -> None:
    est = LatentClassMixture(n_segments=-3, random_state=7)  # no validation in __init__
    assert est.get_params()["n_segments"] == -3
    c = clone(est).set_params(n_segments=3)
    assert c.n_segments == 3 and c.random_state == 7
    cols, *_ = synthetic(600)
    assert c.fit(cols) is c
    learned = [a for a in vars(c) if a.endswith("_") and not a.startswith("_")]
    assert {"weights_", "p_", "theta_", "mu_", "var_", "rho_", "n_segments_", "labels_",
            "bic_", "converged_"} <= set(learned)
    assert not any(a.endswith("_") for a in vars(est))  # unfitted: nothing learned
    with pytest.raises(HcpjError, match="n_segments"):
        est.fit(cols)
    with pytest.raises(HcpjError, match="not fitted"):
        LatentClassMixture().predict_proba(cols)


def test_deterministic_given_random_state() -> None:
    cols, *_ = synthetic(800)
    a = LatentClassMixture(3, random_state=3).fit(cols)
    b = LatentClassMixture(3, random_state=3).fit(cols)
    assert np.array_equal(a.predict_proba(cols), b.predict_proba(cols))
    assert np.array_equal(a.transform(cols), b.transform(cols))


def test_recovers_classes_and_chooses_k() -> None:
    # pure members only: with many 50/50 blends, a latent-class model rightly sees each
    # frequent blend as a profile of its own (the membership test below fixes k instead)
    cols, z, _mix, _ = synthetic(3000, mixed=0.0)
    m = LatentClassMixture(random_state=0, max_segments=6).fit(cols)
    assert m.n_segments_ == 3
    chosen = [r for r in m.selection_ if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["k"] == 3 and chosen[0]["stability"] >= 0.75
    P = m.predict_proba(cols)
    assert np.allclose(P.sum(axis=1), 1.0)
    assert adjusted_rand_score(z, P.argmax(axis=1)) > 0.9
    # segments are numbered by size, largest first
    assert list(m.weights_) == sorted(m.weights_, reverse=True)
    # the fitted profiles are the true ones (up to the order)
    match = [int(np.argmin(np.abs(m.p_[j, 0] - RATE))) for j in range(3)]
    assert sorted(match) == [0, 1, 2]
    assert np.allclose(np.sort(m.p_[:, 0]), RATE, atol=0.05)


def test_mixtures_get_split_memberships() -> None:
    cols, _z, mix, W = synthetic(3000)
    m = LatentClassMixture(3, random_state=0).fit(cols)
    S = m.transform(cols)
    assert np.allclose(S.sum(axis=1), 1.0)
    # map fitted segments to true classes by their binomial rate
    to_true = np.array([int(np.argmin(np.abs(m.p_[j, 0] - RATE))) for j in range(3)])
    S_true = np.zeros_like(S)
    for j, t in enumerate(to_true):
        S_true[:, t] += S[:, j]
    top_mixed = S.max(axis=1)[mix].mean()
    top_pure = S.max(axis=1)[~mix].mean()
    assert top_mixed < top_pure - 0.15
    # pure members are not explained as blends of neighbouring profiles: the prior is
    # centred on each HCP's posterior (spread as the segment sizes, it gave them 0.84)
    assert top_pure > 0.95
    # the two true classes of a mixed HCP hold most of its membership
    assert (S_true[mix] * (W[mix] > 0)).sum(axis=1).mean() > 0.8
    # the posterior is sharper than the membership but also less sure for mixtures
    P = m.predict_proba(cols)
    assert P.max(axis=1)[mix].mean() < P.max(axis=1)[~mix].mean()
    # an HCP without any data gets the segment weights
    empty = {k: np.array([0.0 if not k.startswith("score") else np.nan]) for k in cols}
    assert np.allclose(m.transform(empty)[0], m.weights_, atol=1e-6)


def test_overdispersion_is_estimated() -> None:
    plain, *_ = synthetic(3000, mixed=0.0, events=40)
    over, *_ = synthetic(3000, mixed=0.0, events=40, rho=0.1)
    a = LatentClassMixture(3, random_state=0, overdispersion="auto").fit(plain)
    b = LatentClassMixture(3, random_state=0, overdispersion="auto").fit(over)
    assert a.rho_["block"] < 0.01
    assert 0.06 < b.rho_["block"] < 0.14
    fixed = LatentClassMixture(3, random_state=0, overdispersion=0.2).fit(over)
    assert fixed.rho_["block"] == 0.2


def test_match_labels_keeps_previous_labels() -> None:
    rng = np.random.default_rng(0)
    ids = [f"H{i}" for i in range(300)]
    proba = rng.dirichlet(np.ones(3) * 0.3, 300)
    old_labels = ["S2", "S7", "S1"]
    previous = {h: dict(zip(old_labels, p, strict=True)) for h, p in zip(ids, proba, strict=True)}
    perm = [2, 0, 1]
    assert match_labels(proba[:, perm], ids, previous) == [old_labels[j] for j in perm]
    # a fourth segment gets a fresh label above every label in use
    extra = np.column_stack([proba[:, perm], rng.random(300) * 0.01])
    extra /= extra.sum(axis=1, keepdims=True)
    assert match_labels(extra, ids, previous) == [*[old_labels[j] for j in perm], "S8"]
    # fewer segments keep a subset; no previous build: S1..Sk
    assert set(match_labels(proba[:, :2], ids, previous)) == {"S2", "S7"}
    assert match_labels(proba, ids, None) == ["S1", "S2", "S3"]
    assert match_labels(proba, ["other"] * 300, previous) == ["S8", "S9", "S10"]
