"""Value and ranking of the eligible actions of each HCP.

value(h, a) = P(engage | h, a, best time) x (engagement_value
              + delta(stage(h), channel(a)) x stage_value[next stage of h])

where delta is the extra probability of moving to the next stage when an HCP
in that stage engages through that channel (the journey analytics, see
:class:`~hcpjourney.nba.models.Progression`). Ranking happens only among
eligible actions: ineligible ones are never scored into a rank. The expected
uplift of an action is its value minus the mean value of the HCP's eligible
actions (what a random eligible choice would bring).

Exploration keeps the system learning: ``epsilon`` replaces rank 1 by a
uniformly drawn eligible action with probability epsilon; ``thompson`` ranks by
values from one posterior draw of the response model. Both record the
probability with which rank 1 was chosen (``propensity``), so the next
off-policy evaluation has recorded propensities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hcpjourney.nba.history import Hcps
from hcpjourney.nba.models import (
    ActionCodes,
    Progression,
    ResponseModel,
    TimeGroups,
    Timing,
    best_timing,
    engagement,
)
from hcpjourney.nba.settings import NbaSettings


@dataclass
class Values:
    p: np.ndarray  # n x A engagement probability
    progression: np.ndarray  # n x A expected probability of moving to the next stage
    value: np.ndarray  # n x A


def stage_value_vector(settings: NbaSettings, stage_names: list[str]) -> np.ndarray:
    """(S+1,): value of the stage after stage s (s = 0: no stage yet -> stage 1)."""
    out = np.zeros(len(stage_names) + 1)
    for s in range(len(stage_names)):
        out[s] = settings.stage_values.get(stage_names[s], 0.0)
    return out


def values(model: ResponseModel, hcps: Hcps, codes: ActionCodes, timing: Timing,
           progression: Progression, settings: NbaSettings, hix: np.ndarray | None = None) -> Values:
    hix = np.arange(hcps.n) if hix is None else np.asarray(hix)
    p = engagement(model, hcps, codes, timing, hix)
    if progression.stage_names:
        sv = stage_value_vector(settings, progression.stage_names)
        s = np.minimum(hcps.stage[hix], progression.delta.shape[0] - 1)
        delta = progression.delta[s][:, codes.type_code].astype(np.float32)  # n x A
        prog = p * delta
        value = p * settings.engagement_value + prog * sv[s].astype(np.float32)[:, None]
    else:
        prog = np.zeros_like(p)
        value = p * np.float32(settings.engagement_value)
    return Values(p, prog, value.astype(np.float32))


@dataclass
class Ranking:
    order: np.ndarray  # n x k action indices, best first (-1: no action)
    uplift: np.ndarray  # n x k
    propensity: np.ndarray  # n: probability the policy chose rank 1 (nan when none)
    explored: np.ndarray  # n bool: rank 1 was an exploration draw


def best_per_group(value: np.ndarray, mask: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``mask`` keeping, per row and action group, only the best eligible action."""
    masked = np.where(mask, value, -np.inf)
    keep = np.zeros_like(mask)
    rows = np.arange(mask.shape[0])
    for g in np.unique(group):
        cols = np.flatnonzero(group == g)
        best = cols[np.argmax(masked[:, cols], axis=1)]
        keep[rows, best] = mask[rows, best]
    return keep


def rank(value: np.ndarray, mask: np.ndarray, top_k: int, group: np.ndarray | None = None
         ) -> np.ndarray:
    """n x k indices of the best eligible actions (ties: lower action index first); -1 pads.

    With ``group`` (one id per action, e.g. the action type) the alternatives are
    the best action of each group: rank 1 is unchanged, ranks 2.. differ in kind.
    """
    n, a = value.shape
    k = min(top_k, a)
    if a == 0 or n == 0:
        return np.full((n, top_k), -1, dtype=np.int64)
    if group is not None:
        mask = best_per_group(value, mask, group)
    masked = np.where(mask, value, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    ok = np.take_along_axis(mask, order, axis=1)
    order = np.where(ok, order, -1)
    if k < top_k:
        order = np.concatenate([order, np.full((n, top_k - k), -1, dtype=order.dtype)], axis=1)
    return order.astype(np.int64)


def mean_eligible(value: np.ndarray, mask: np.ndarray) -> np.ndarray:
    cnt = mask.sum(axis=1)
    tot = np.where(mask, value, 0.0).sum(axis=1)
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)


def uplift_of(value: np.ndarray, mask: np.ndarray, order: np.ndarray) -> np.ndarray:
    if value.shape[1] == 0:
        return np.full(order.shape, np.nan)
    base = mean_eligible(value, mask)
    v = np.take_along_axis(value, np.maximum(order, 0), axis=1)
    return np.where(order >= 0, v - base[:, None], np.nan)


def explore_epsilon(order: np.ndarray, mask: np.ndarray, epsilon: float, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epsilon-greedy rank 1: returns (order, propensity of rank 1, explored flag)."""
    n = order.shape[0]
    cnt = mask.sum(axis=1)
    has = cnt > 0
    explore = (rng.random(n) < epsilon) & has
    # uniform eligible action: the j-th eligible one, j ~ U{0..cnt-1}
    j = np.floor(rng.random(n) * np.maximum(cnt, 1)).astype(np.int64)
    cum = np.cumsum(mask, axis=1)
    pick = np.argmax(cum > j[:, None], axis=1)
    out = order.copy()
    idx = np.flatnonzero(explore & (pick != order[:, 0]))
    if idx.size:  # the drawn action first, then the others in their order
        rows = out[idx]
        drawn = pick[idx]
        cand = np.concatenate([drawn[:, None], rows], axis=1)
        valid = np.concatenate([np.ones((idx.size, 1), dtype=bool),
                                (rows != drawn[:, None]) & (rows >= 0)], axis=1)
        pos = np.argsort(~valid, axis=1, kind="stable")[:, : rows.shape[1]]
        picked = np.take_along_axis(cand, pos, axis=1)
        out[idx] = np.where(np.take_along_axis(valid, pos, axis=1), picked, -1)
    greedy = order[:, 0]
    chosen = out[:, 0]
    prop = np.where(chosen == greedy, 1 - epsilon, 0.0) + epsilon / np.maximum(cnt, 1)
    prop = np.where(has, prop, np.nan)
    return out, prop, explore


def thompson(model: ResponseModel, hcps: Hcps, codes: ActionCodes, allowed: np.ndarray | TimeGroups,
             progression: Progression, settings: NbaSettings, mask: np.ndarray, top_k: int,
             rng: np.random.Generator, draws: int = 16, hix: np.ndarray | None = None,
             group: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, Timing, Values]:
    """Rank by one posterior draw; rank-1 propensity from ``draws`` further draws.

    Returns (order, propensity, timing, values of the draw used).
    """
    m = model.sampled(rng)
    tim = best_timing(m, hcps, allowed, hix)
    val = values(m, hcps, codes, tim, progression, settings, hix)
    order = rank(val.value, mask, top_k, group)
    chosen = order[:, 0]
    hits = np.zeros(order.shape[0])
    for _ in range(draws):
        md = model.sampled(rng)
        vd = values(md, hcps, codes, best_timing(md, hcps, allowed, hix), progression, settings, hix)
        hits += rank(vd.value, mask, 1)[:, 0] == chosen
    prop = np.where(chosen >= 0, (hits + 1.0) / (draws + 1.0), np.nan)
    return order, prop, tim, val
