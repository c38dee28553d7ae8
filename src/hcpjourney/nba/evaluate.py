"""Off-policy evaluation of the NBA policy on the workspace's own history, before anyone acts on it.

The models are fitted on the history before ``as_of - holdout_days``; the
holdout's logged touches (outcomes known) are the logged bandit feedback. An
action is the action type (channel); the logging propensities are estimated
(:class:`~hcpjourney.nba.models.LoggingPolicy`: the HCP's channel mix shrunk to
the population's) unless the history recorded them. The candidate policy is
the NBA's rank-1 action type per HCP at the cutoff (deterministic, or
epsilon-greedy when configured), compared with the uniform policy over the
scorable types and with the logging policy itself.

:func:`history_logs` writes the same rounds in the log format of
:mod:`hcpjourney.nba.ope`, so ``hcpj evaluate-policy --logs`` can evaluate any
other policy on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from hcpjourney.engine import Engine
from hcpjourney.errors import HcpjError
from hcpjourney.nba import history as H
from hcpjourney.nba.models import LoggingPolicy
from hcpjourney.nba.ope import PolicyEvaluation, evaluate_policy
from hcpjourney.nba.recommend import Fitted, decide, fit, parse_as_of
from hcpjourney.nba.settings import NbaSettings

POLICIES = ("nba", "uniform", "logged")


def _holdout(engine: Engine, fitted: Fitted, as_of: datetime, cutoff: datetime) -> H.Touches:
    types = fitted.model.space.types
    t = H.load_touches(engine, engine.table(H.HCPS_TABLE), types, fitted.vocab, as_of,
                       fitted.settings.history_days)
    keep = t.trainable & (t.ts >= H.epoch(cutoff))
    return t.subset(keep)


def history_logs(engine: Engine, settings: NbaSettings | dict[str, Any] | None,
                 as_of: str | date | datetime, *, holdout_days: int = 28
                 ) -> tuple[pa.Table, Fitted, np.ndarray]:
    """Holdout rounds as a log table (context_id, action, reward, propensity), the models
    fitted at the cutoff and each round's HCP index."""
    s = settings if isinstance(settings, NbaSettings) else NbaSettings.from_settings(settings)
    end = parse_as_of(as_of)
    if holdout_days < 7:
        raise HcpjError("--holdout-days must be at least 7")
    cutoff = end - timedelta(days=holdout_days)
    fitted = fit(engine, s, cutoff)
    t = _holdout(engine, fitted, end, cutoff)
    if t.size == 0:
        raise HcpjError(f"no logged touches with known outcomes between {cutoff:%Y-%m-%d} and "
                        f"{end:%Y-%m-%d}; choose a later --as-of or more --holdout-days")
    hist = H.load_touches(engine, engine.table(H.HCPS_TABLE), fitted.model.space.types, fitted.vocab,
                          end, s.history_days)
    lp = LoggingPolicy.fit(hist, fitted.hcps.n, fitted.model.space.type_kind)
    prop = lp.propensity(t, "channel")
    names = np.array([x.name for x in fitted.model.space.types], dtype=object)
    table = pa.table({
        "context_id": pa.array(fitted.hcps.ids[t.hix].tolist(), pa.string()),
        "action": pa.array(names[t.type_code].tolist(), pa.string()),
        "reward": pa.array(t.reward.astype(float), pa.float64()),
        "propensity": pa.array(prop, pa.float64()),
    })
    return table, fitted, t.hix


def evaluate_history(engine: Engine, settings: NbaSettings | dict[str, Any] | None,
                     as_of: str | date | datetime, *, policies: Sequence[str] = POLICIES,
                     holdout_days: int = 28, alpha: float = 0.05, bootstrap: int = 0, seed: int = 0
                     ) -> dict[str, PolicyEvaluation]:
    """IPW, SNIPW and DR estimates of each of ``policies`` (nba, uniform, logged) on the holdout."""
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        raise HcpjError(f"unknown policy '{bad[0]}'; use one of {', '.join(POLICIES)}")
    logs, fitted, hix = history_logs(engine, settings, as_of, holdout_days=holdout_days)
    out: dict[str, PolicyEvaluation] = {}
    for policy in policies:
        if policy == "logged":
            res = evaluate_policy(logs, "logged", alpha=alpha, bootstrap=bootstrap, seed=seed)
        else:
            res = evaluate_policy(logs, _policy_table(fitted, logs, hix, policy), alpha=alpha,
                                  bootstrap=bootstrap, seed=seed)
        res.policy = policy
        res.notes.append(f"holdout: {logs.num_rows} touches in the {holdout_days} days before the as-of")
        out[policy] = res
    return out


def _policy_table(fitted: Fitted, logs: pa.Table, hix: np.ndarray, policy: str) -> dict[str, list[Any]]:
    """(context_id, action, probability) rows of the candidate policy for the holdout's HCPs."""
    types = [x.name for x in fitted.model.space.types]
    names = np.array(types, dtype=object)
    uniq = np.unique(hix)
    T = len(types)
    if policy == "uniform":
        allowed = np.zeros((uniq.size, T), dtype=bool)
        allowed[:, sorted({fitted.codes.type_code[a.index] for a in fitted.catalogue.actions})] = True
        prob = allowed / allowed.sum(axis=1, keepdims=True)
    else:
        dec, elig, _v, _t, _p = decide(fitted, hix=uniq, top_k=1)
        chosen = np.full(uniq.size, -1, dtype=np.int64)
        chosen[dec.rows] = fitted.codes.type_code[dec.action]
        allowed = np.zeros((uniq.size, T), dtype=bool)
        r, a = np.nonzero(elig.mask)
        allowed[r, fitted.codes.type_code[a]] = True
        allowed[chosen < 0] = False  # nothing eligible: the policy takes no action
        eps = fitted.settings.epsilon if fitted.settings.exploration == "epsilon" else 0.0
        cnt = np.maximum(allowed.sum(axis=1, keepdims=True), 1)
        greedy = np.zeros((uniq.size, T))
        greedy[np.flatnonzero(chosen >= 0), chosen[chosen >= 0]] = 1.0
        prob = np.where(allowed, (1 - eps) * greedy + eps / cnt, 0.0)
    rows, cols = np.nonzero(prob > 0)
    return {"context_id": fitted.hcps.ids[uniq[rows]].tolist(), "action": names[cols].tolist(),
            "probability": prob[rows, cols].tolist()}
