"""Allocation under capacity: optimal (min-cost flow), checked by brute force and against greedy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hcpjourney.nba.allocate import (
    CapacityError,
    allocate,
    allocation_value,
    greedy_allocate,
    parse_capacity,
)
from hcpjourney.nba.catalogue import DEFAULT_TYPES, Action, Catalogue


def _catalogue(spec: list[tuple[str, str, str]]) -> Catalogue:
    """Actions from (action, channel, resource)."""
    acts = [Action(i, a, ch, None, "commercial", "promotional", res, "personal")
            for i, (a, ch, res) in enumerate(spec)]
    return Catalogue(acts, [], DEFAULT_TYPES)


def _limits_ok(chosen: np.ndarray, cat: Catalogue, limits: dict[str, int]) -> bool:
    for key, lim in limits.items():
        used = sum(1 for a in chosen if a >= 0 and key in (
            cat.actions[a].resource, cat.actions[a].channel, cat.actions[a].action))
        if used > lim:
            return False
    return True


def _brute_force(value: np.ndarray, mask: np.ndarray, cat: Catalogue, limits: dict[str, int]) -> float:
    n, a = value.shape
    best = 0.0
    options = [[-1] + [j for j in range(a) if mask[h, j] and value[h, j] > 0] for h in range(n)]
    for combo in itertools.product(*options):
        ch = np.array(combo)
        if _limits_ok(ch, cat, limits):
            best = max(best, allocation_value(value, ch))
    return best


def test_beats_greedy_where_greedy_is_suboptimal() -> None:
    cat = _catalogue([("f2f_visit", "f2f_visit", "rep_visit"), ("email", "email", "email")])
    # A prefers the visit a little; B needs it much more. One rep slot.
    value = np.array([[0.90, 0.85], [0.80, 0.10]])
    mask = np.ones_like(value, dtype=bool)
    limits = {"rep_visit": 1}
    greedy = greedy_allocate(value, mask, cat, limits)
    optimal = allocate(value, mask, cat, limits)
    assert greedy.tolist() == [0, 1] and allocation_value(value, greedy) == pytest.approx(1.0)
    assert optimal.tolist() == [1, 0] and allocation_value(value, optimal) == pytest.approx(1.65)


@pytest.mark.parametrize("seed", range(12))
def test_optimal_on_random_instances(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cat = _catalogue([
        ("f2f_visit", "f2f_visit", "rep_visit"), ("phone_call", "phone", "rep_visit"),
        ("msl_meeting", "msl_meeting", "msl_visit"), ("email", "email", "email"),
    ])
    n = 6
    value = np.round(rng.random((n, 4)), 3)
    mask = rng.random((n, 4)) < 0.8
    limits = {"rep_visit": 2, "f2f_visit": 1, "msl_visit": 1, "email": int(rng.integers(0, 3))}
    chosen = allocate(value, mask, cat, limits)
    assert _limits_ok(chosen, cat, limits)
    assert all(mask[h, a] for h, a in enumerate(chosen) if a >= 0)
    assert allocation_value(value, chosen) == pytest.approx(_brute_force(value, mask, cat, limits), abs=1e-5)
    g = greedy_allocate(value, mask, cat, limits)
    assert _limits_ok(g, cat, limits)
    assert allocation_value(value, chosen) >= allocation_value(value, g) - 1e-9


def test_uncapacitated_is_the_per_hcp_best() -> None:
    cat = _catalogue([("f2f_visit", "f2f_visit", "rep_visit"), ("email", "email", "email")])
    value = np.array([[0.2, 0.5], [0.9, 0.1], [0.0, 0.0]])
    mask = np.array([[True, True], [True, True], [True, True]])
    chosen = allocate(value, mask, cat, {"rep_visit": 5})
    assert chosen.tolist() == [1, 0, -1]  # nothing of value: no action


def test_parse_capacity() -> None:
    assert parse_capacity("rep_visit=200, msl_visit=20,email=5000") == {
        "rep_visit": 200, "msl_visit": 20, "email": 5000}
    assert parse_capacity(None) == {}
    with pytest.raises(CapacityError, match="must look like"):
        parse_capacity("rep_visit")
    with pytest.raises(CapacityError, match="whole number"):
        parse_capacity("rep_visit=many")
    cat = _catalogue([("f2f_visit", "f2f_visit", "rep_visit")])
    with pytest.raises(CapacityError, match="unknown 'reps'"):
        allocate(np.ones((1, 1)), np.ones((1, 1), dtype=bool), cat, {"reps": 3})
