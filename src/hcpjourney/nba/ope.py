"""Off-policy evaluation: the value of a candidate policy, estimated on logged data.

Given logged rounds (context, action a_i shown with logging probability
p_i = pi_0(a_i | x_i), reward r_i) and a candidate policy pi, with importance
weights w_i = pi(a_i | x_i) / p_i:

* **IPW**:   V = mean(w_i r_i)
* **SNIPW**: V = sum(w_i r_i) / sum(w_i)
* **DR**:    V = mean( sum_a pi(a | x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)) ),
  with a reward model q fitted by cross-fitting (each fold's q from the other folds).

Confidence intervals are normal intervals from each estimator's influence
function (SNIPW by the delta method); ``bootstrap=B`` gives percentile
intervals from B resamples instead. Nothing here needs obp.

**Log file format** (CSV or Parquet; ``hcpj evaluate-policy --logs FILE``), one row
per logged round:

| column | required | aliases | meaning |
|---|---|---|---|
| action | yes | item_id | the action (item, channel, channel:content ...) that was taken |
| reward | yes | click, engaged | the observed reward (0/1 or a number) |
| propensity | no | propensity_score, pscore | logging policy's P(action); estimated when absent |
| position | no | slot | a stratum (slate position, week ...): policies act within it |
| context_id | no | | groups rows of one decision, for ``--policy-file`` |
| target_propensity | no | | pi(action | context) of the candidate policy, for ``--policy column`` |

Absent propensities are estimated from the logged frequencies (per position).

Policies: ``uniform`` (every action equally likely, within a position),
``logged`` (the logging policy itself: its value is the observed mean), ``column``
(the ``target_propensity`` column; DR then needs the full distribution, so it is
not computed) or a long table (context_id, [position,] action, probability).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hcpjourney.errors import HcpjError, InputFileError

ESTIMATORS = ("ipw", "snipw", "dr")
ALIASES: dict[str, tuple[str, ...]] = {
    "action": ("action", "item_id"),
    "reward": ("reward", "click", "engaged"),
    "propensity": ("propensity", "propensity_score", "pscore"),
    "position": ("position", "slot"),
    "context_id": ("context_id",),
    "target_propensity": ("target_propensity",),
}


class OpeError(HcpjError):
    """Logs or a policy that cannot be evaluated."""


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    se: float
    lo: float
    hi: float
    n: int

    def contains(self, v: float) -> bool:
        return self.lo <= v <= self.hi


@dataclass
class PolicyEvaluation:
    policy: str
    n: int
    logged_value: float  # mean reward under the logging policy
    estimates: dict[str, Estimate]
    effective_sample_size: float
    max_weight: float
    estimated_propensities: bool
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [{"policy": self.policy, "estimator": e.estimator, "value": e.value, "se": e.se,
                 "ci_low": e.lo, "ci_high": e.hi, "n": e.n, "logged_value": self.logged_value,
                 "effective_sample_size": self.effective_sample_size}
                for e in self.estimates.values()]


@dataclass
class Logs:
    action: np.ndarray  # int codes
    actions: list[Any]  # code -> action value
    reward: np.ndarray
    propensity: np.ndarray
    position: np.ndarray  # int codes (0 when absent)
    estimated: bool
    context_id: np.ndarray | None = None
    target_propensity: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.reward.size)


# ----------------------------------------------------------------- estimators
def _interval(value: float, se: float, alpha: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return value - z * se, value + z * se


def ipw(reward: np.ndarray, weight: np.ndarray, alpha: float = 0.05) -> Estimate:
    x = weight * reward
    n = x.size
    v = float(x.mean())
    se = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    lo, hi = _interval(v, se, alpha)
    return Estimate("ipw", v, se, lo, hi, n)


def snipw(reward: np.ndarray, weight: np.ndarray, alpha: float = 0.05) -> Estimate:
    n = reward.size
    sw = float(weight.sum())
    if sw <= 0:
        raise OpeError("the candidate policy gives zero weight to every logged action")
    v = float((weight * reward).sum() / sw)
    psi = weight * (reward - v) / (sw / n)
    se = float(psi.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    lo, hi = _interval(v, se, alpha)
    return Estimate("snipw", v, se, lo, hi, n)


def doubly_robust(reward: np.ndarray, weight: np.ndarray, q_logged: np.ndarray,
                  q_policy: np.ndarray, alpha: float = 0.05) -> Estimate:
    x = q_policy + weight * (reward - q_logged)
    n = x.size
    v = float(x.mean())
    se = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    lo, hi = _interval(v, se, alpha)
    return Estimate("dr", v, se, lo, hi, n)


def _bootstrap(fn: Any, arrays: Sequence[np.ndarray], b: int, alpha: float, seed: int
               ) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    n = arrays[0].size
    vals = np.empty(b)
    for i in range(b):
        idx = rng.integers(0, n, n)
        vals[i] = fn(*[a[idx] for a in arrays])
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi), float(vals.std(ddof=1))


# ----------------------------------------------------------------- reward model
def cross_fitted_rewards(logs: Logs, folds: int = 5, strength: float = 20.0, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """q(a, position) for every row's logged action and, as a table (n x K), for every action.

    A smoothed mean reward per (action, position), shrunk toward the position's
    mean with ``strength`` pseudo-rounds; each row's values come from the other folds.
    """
    n, K = logs.n, len(logs.actions)
    P = int(logs.position.max()) + 1 if n else 1
    rng = np.random.default_rng(seed)
    fold = rng.permutation(n) % max(1, folds)
    q_logged = np.empty(n)
    q_table = np.empty((n, K))
    for f in range(max(1, folds)):
        test = fold == f
        train = ~test if folds > 1 else test
        cnt = np.zeros((P, K))
        tot = np.zeros((P, K))
        np.add.at(cnt, (logs.position[train], logs.action[train]), 1.0)
        np.add.at(tot, (logs.position[train], logs.action[train]), logs.reward[train])
        base = (tot.sum(axis=1) + 1e-9) / (cnt.sum(axis=1) + 1e-9)
        q = (tot + strength * base[:, None]) / (cnt + strength)
        pos = logs.position[test]
        q_table[test] = q[pos]
        q_logged[test] = q[pos, logs.action[test]]
    return q_logged, q_table


# ----------------------------------------------------------------- reading logs
def _column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    for alias in ALIASES[name]:
        if alias in table.column_names:
            return table.column(alias)
    return None


def read_logs(source: str | Path | pa.Table | Mapping[str, Sequence[Any]] | Any) -> Logs:
    """Logged rounds from a CSV/Parquet file, a pyarrow table, a mapping or a pandas frame."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise InputFileError(str(path), "no such file; pass the logged rounds as CSV or Parquet")
        try:
            if path.suffix.lower() == ".parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(str(path))
            else:
                import pyarrow.csv as pacsv

                table = pacsv.read_csv(str(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(str(path), f"is not readable ({str(exc).splitlines()[0]})") from None
    elif isinstance(source, pa.Table):
        table = source
    elif isinstance(source, Mapping):
        table = pa.table({k: list(v) for k, v in source.items()})
    else:
        table = pa.Table.from_pandas(source, preserve_index=False)
    act = _column(table, "action")
    rew = _column(table, "reward")
    if act is None or rew is None:
        raise OpeError("the logs need an action (or item_id) and a reward (or click) column")
    if act.null_count or rew.null_count:
        raise OpeError("the logs' action and reward columns may not be empty")
    enc = pc.dictionary_encode(act).combine_chunks()
    actions = enc.dictionary.to_pylist()
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    reward = np.asarray(pc.cast(rew, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    pos_col = _column(table, "position")
    if pos_col is not None:
        penc = pc.dictionary_encode(pc.cast(pos_col, pa.string())).combine_chunks()
        position = np.asarray(penc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        position = np.zeros(codes.size, dtype=np.int64)
    prop_col = _column(table, "propensity")
    estimated = prop_col is None
    if prop_col is None:
        P, K = int(position.max()) + 1 if codes.size else 1, len(actions)
        cnt = np.zeros((P, K))
        np.add.at(cnt, (position, codes), 1.0)
        prop = cnt[position, codes] / cnt.sum(axis=1)[position]
    else:
        prop = np.asarray(pc.cast(prop_col, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
        if np.any(~np.isfinite(prop)) or np.any(prop <= 0) or np.any(prop > 1):
            raise OpeError("propensities must lie in (0, 1]; fix or drop the propensity column")
    ctx = _column(table, "context_id")
    tgt = _column(table, "target_propensity")
    return Logs(codes, actions, reward, prop, position, estimated,
                None if ctx is None else np.asarray(ctx.to_pylist(), dtype=object),
                None if tgt is None else np.asarray(pc.cast(tgt, pa.float64())
                                                    .to_numpy(zero_copy_only=False), dtype=float))


# ----------------------------------------------------------------- policies
def policy_matrix(logs: Logs, policy: str | pa.Table | Mapping[str, Sequence[Any]],
                  n_actions: int | None = None) -> np.ndarray | None:
    """n x K: the candidate policy's probability of each action in each logged round.

    None for ``column`` (only pi(a_i | x_i) is known).
    """
    n, K = logs.n, len(logs.actions)
    if isinstance(policy, str):
        name = policy.strip().lower()
        if name == "uniform":
            k = n_actions or K
            if k < K:
                raise OpeError(f"--n-actions {k} is below the {K} actions seen in the logs")
            return np.full((n, K), 1.0 / k)
        if name == "logged":
            raise OpeError("internal: the logged policy has no matrix")  # handled by caller
        if name == "column":
            return None
        raise OpeError(f"unknown policy '{policy}'; use uniform, logged, column or a policy file")
    table = policy if isinstance(policy, pa.Table) else pa.table({k: list(v) for k, v in policy.items()})
    need = {"context_id", "action", "probability"}
    if not need <= set(table.column_names):
        raise OpeError("a policy table needs context_id, action and probability columns")
    if logs.context_id is None:
        raise OpeError("the logs need a context_id column to use a policy table")
    ctx_pos = {c: i for i, c in enumerate(dict.fromkeys(logs.context_id.tolist()))}
    act_pos = {a: i for i, a in enumerate(logs.actions)}
    mat_ctx = np.zeros((len(ctx_pos), K))
    for c, a, p in zip(table.column("context_id").to_pylist(), table.column("action").to_pylist(),
                       table.column("probability").to_pylist(), strict=True):
        if c in ctx_pos and a in act_pos:
            mat_ctx[ctx_pos[c], act_pos[a]] += float(p)
    rows = np.array([ctx_pos[c] for c in logs.context_id.tolist()], dtype=np.int64)
    return mat_ctx[rows]


def evaluate_policy(
    logs: str | Path | pa.Table | Mapping[str, Sequence[Any]] | Logs | Any,
    policy: str | pa.Table | Mapping[str, Sequence[Any]] = "uniform",
    *,
    estimators: Sequence[str] = ESTIMATORS,
    alpha: float = 0.05,
    n_actions: int | None = None,
    folds: int = 5,
    bootstrap: int = 0,
    seed: int = 0,
    clip: float | None = None,
) -> PolicyEvaluation:
    """IPW, self-normalised IPW and doubly robust estimates of ``policy``'s value on ``logs``.

    ``clip`` caps the importance weights (biased but lower variance; off by default).
    """
    lg = logs if isinstance(logs, Logs) else read_logs(logs)
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad:
        raise OpeError(f"unknown estimator '{bad[0]}'; use {', '.join(ESTIMATORS)}")
    if lg.n == 0:
        raise OpeError("the logs hold no rounds")
    notes: list[str] = []
    name = policy if isinstance(policy, str) else "table"
    mat: np.ndarray | None
    if isinstance(policy, str) and policy.strip().lower() == "logged":
        pi_logged = lg.propensity
        mat = None
    else:
        mat = policy_matrix(lg, policy, n_actions)
        if mat is None:
            if lg.target_propensity is None:
                raise OpeError("policy 'column' needs a target_propensity column in the logs")
            pi_logged = lg.target_propensity
        else:
            pi_logged = mat[np.arange(lg.n), lg.action]
    w = pi_logged / lg.propensity
    if clip is not None:
        w = np.minimum(w, clip)
        notes.append(f"weights clipped at {clip}")
    r = lg.reward
    out: dict[str, Estimate] = {}
    for est in estimators:
        if est == "ipw":
            e = ipw(r, w, alpha)
            if bootstrap:
                lo, hi, se = _bootstrap(lambda a, b: float(np.mean(a * b)), [w, r], bootstrap, alpha, seed)
                e = Estimate("ipw", e.value, se, lo, hi, e.n)
        elif est == "snipw":
            e = snipw(r, w, alpha)
            if bootstrap:
                lo, hi, se = _bootstrap(lambda a, b: float(np.sum(a * b) / np.sum(a)), [w, r],
                                        bootstrap, alpha, seed)
                e = Estimate("snipw", e.value, se, lo, hi, e.n)
        else:
            if mat is None and not (isinstance(policy, str) and policy.strip().lower() == "logged"):
                notes.append("dr needs the policy's full distribution; not computed for 'column'")
                continue
            q_logged, q_table = cross_fitted_rewards(lg, folds=folds, seed=seed)
            # the logged policy needs only its own actions' q (w = 1)
            q_pol = q_logged if mat is None else (mat * q_table).sum(axis=1)
            e = doubly_robust(r, w, q_logged, q_pol, alpha)
            if bootstrap:
                lo, hi, se = _bootstrap(lambda a, b, c, d: float(np.mean(d + a * (b - c))),
                                        [w, r, q_logged, q_pol], bootstrap, alpha, seed)
                e = Estimate("dr", e.value, se, lo, hi, e.n)
        out[est] = e
    ess = float(w.sum() ** 2 / max(float((w ** 2).sum()), 1e-300))
    if lg.estimated:
        notes.append("logging propensities estimated from the logged frequencies")
    return PolicyEvaluation(name, lg.n, float(r.mean()), out, ess, float(w.max()), lg.estimated, notes)
