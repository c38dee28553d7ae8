"""Allocation under capacity: one action per HCP, maximising total value, within weekly limits.

``--capacity`` gives weekly limits keyed by a resource (``rep_visit``: rep visit
and call slots, ``msl_visit``: MSL meeting slots, ``email``, ``sms``,
``webinar``), a channel (``f2f_visit``, ``email`` ...) or an action name
(``phone_call`` ...). A channel or action limit nests inside its resource's
limit. The assignment is solved to optimality as a min-cost flow with OR-Tools
(source -> HCP -> limit bucket -> resource -> sink, costs = -value), not
greedily per HCP: an HCP whose best action needs a scarce slot may give it up to
an HCP who gains more from it.

Only useful edges enter the network: for each HCP the best value per
capacitated bucket, and only where it beats the HCP's best uncapacitated action
(which it can always take); HCPs with no such edge keep their best free action
without entering the solver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcpjourney.errors import HcpjError
from hcpjourney.nba.catalogue import Catalogue

COST_SCALE = 1_000_000


class CapacityError(HcpjError):
    """A --capacity option names an unknown resource or a bad limit."""


def parse_capacity(spec: str | Mapping[str, int] | None) -> dict[str, int]:
    """``"rep_visit=200,msl_visit=20,email=5000"`` (or a mapping) -> {key: weekly limit}."""
    if spec is None:
        return {}
    items: list[tuple[Any, Any]]
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise CapacityError(f"--capacity item '{part.strip()}' must look like rep_visit=200")
            k, v = part.split("=", 1)
            items.append((k, v))
    out: dict[str, int] = {}
    for k, v in items:
        key = str(k).strip().lower()
        try:
            n = int(str(v).strip())
        except ValueError:
            raise CapacityError(f"--capacity {key}={v}: the limit must be a whole number") from None
        if n < 0:
            raise CapacityError(f"--capacity {key}={v}: the limit must be >= 0")
        out[key] = n
    return out


@dataclass
class Buckets:
    """Which limits each catalogue action draws on."""

    inner: list[str | None]  # per action: its channel/action limit key (None: none)
    outer: list[str | None]  # per action: its resource limit key (None: none)
    limits: dict[str, int]

    @property
    def keys(self) -> list[tuple[str | None, str | None]]:
        return sorted(set(zip(self.inner, self.outer, strict=True)), key=lambda k: (str(k[0]), str(k[1])))


def buckets(catalogue: Catalogue, limits: Mapping[str, int]) -> Buckets:
    resources = {a.resource for a in catalogue.actions}
    channels = {a.channel for a in catalogue.actions}
    names = {a.action for a in catalogue.actions}
    known = resources | channels | names | {t.resource for t in catalogue.types} | {
        t.channel for t in catalogue.types} | {t.name for t in catalogue.types}
    bad = sorted(set(limits) - known)
    if bad:
        raise CapacityError(
            f"--capacity names unknown '{bad[0]}'; use a resource ({', '.join(sorted(resources))}), "
            "a channel or an action name")
    inner: list[str | None] = []
    outer: list[str | None] = []
    for a in catalogue.actions:
        keys = [k for k in (a.action, a.channel) if k in limits and k != a.resource]
        keys = list(dict.fromkeys(keys))
        if len(keys) > 1:
            raise CapacityError(f"--capacity limits both {keys[0]} and {keys[1]}; give only one of them")
        inner.append(keys[0] if keys else None)
        outer.append(a.resource if a.resource in limits else None)
    for key in {k for k in inner if k is not None}:
        res = {o for i, o in zip(inner, outer, strict=True) if i == key}
        if len(res) > 1:
            raise CapacityError(f"--capacity {key} spans several resources; limit the resources instead")
    return Buckets(inner, outer, dict(limits))


def allocate(value: np.ndarray, mask: np.ndarray, catalogue: Catalogue,
             limits: Mapping[str, int]) -> np.ndarray:
    """The optimal action per HCP (-1: none) under the weekly ``limits``."""
    from ortools.graph.python import min_cost_flow

    n = value.shape[0]
    b = buckets(catalogue, limits)
    v = np.where(mask & (value > 0), value, -np.inf)
    keys = b.keys
    kid = {k: i for i, k in enumerate(keys)}
    a_bucket = np.array([kid[(i, o)] for i, o in zip(b.inner, b.outer, strict=True)], dtype=np.int64)
    free = [i for i, k in enumerate(keys) if k == (None, None)]
    # best value and action per HCP and bucket
    B = len(keys)
    best_v = np.full((n, B), -np.inf)
    best_a = np.full((n, B), -1, dtype=np.int64)
    for j in range(B):
        cols = np.flatnonzero(a_bucket == j)
        if cols.size == 0:
            continue
        sub = v[:, cols]
        arg = np.argmax(sub, axis=1)
        best_v[:, j] = sub[np.arange(n), arg]
        best_a[:, j] = np.where(np.isfinite(best_v[:, j]), cols[arg], -1)
    if free:
        fj = free[0]
        u = np.where(np.isfinite(best_v[:, fj]), best_v[:, fj], 0.0)
        u_a = best_a[:, fj]
    else:
        u = np.zeros(n)
        u_a = np.full(n, -1, dtype=np.int64)
    chosen = u_a.copy()
    capped = [j for j in range(B) if keys[j] != (None, None)]
    if not capped:
        return chosen
    gain = best_v[:, capped] > u[:, None]
    players = np.flatnonzero(gain.any(axis=1))
    if players.size == 0:
        return chosen
    # nodes: players, inner keys, outer keys, sink
    inner_keys = sorted({k[0] for k in keys if k[0] is not None})
    outer_keys = sorted({k[1] for k in keys if k[1] is not None})
    m = players.size
    inner_node = {k: m + i for i, k in enumerate(inner_keys)}
    outer_node = {k: m + len(inner_keys) + i for i, k in enumerate(outer_keys)}
    sink = m + len(inner_keys) + len(outer_keys)
    tails: list[np.ndarray] = []
    heads: list[np.ndarray] = []
    caps: list[np.ndarray] = []
    costs: list[np.ndarray] = []
    node_of_player = np.arange(m)
    # player -> sink: the best free action (or nothing)
    tails.append(node_of_player)
    heads.append(np.full(m, sink))
    caps.append(np.ones(m, dtype=np.int64))
    costs.append(-np.round(u[players] * COST_SCALE).astype(np.int64))
    edge_bucket: list[tuple[int, np.ndarray]] = []
    gain_p = gain[players]
    for c, j in enumerate(capped):
        rows = np.flatnonzero(gain_p[:, c])
        if rows.size == 0:
            continue
        ik, ok_ = keys[j]
        head = inner_node[ik] if ik is not None else outer_node[str(ok_)]
        edge_bucket.append((j, rows))
        tails.append(node_of_player[rows])
        heads.append(np.full(rows.size, head))
        caps.append(np.ones(rows.size, dtype=np.int64))
        costs.append(-np.round(best_v[players[rows], j] * COST_SCALE).astype(np.int64))
    big = int(m)
    for ik in inner_keys:
        outs = {o for i, o in keys if i == ik}
        o = next(iter(outs))
        tails.append(np.array([inner_node[ik]]))
        heads.append(np.array([outer_node[o] if o is not None else sink]))
        caps.append(np.array([min(big, int(b.limits[ik]))]))
        costs.append(np.array([0]))
    for ok_ in outer_keys:
        tails.append(np.array([outer_node[ok_]]))
        heads.append(np.array([sink]))
        caps.append(np.array([min(big, int(b.limits[ok_]))]))
        costs.append(np.array([0]))
    flow = min_cost_flow.SimpleMinCostFlow()
    t_all = np.concatenate(tails).astype(np.int64)
    arcs = flow.add_arcs_with_capacity_and_unit_cost(
        t_all, np.concatenate(heads).astype(np.int64), np.concatenate(caps).astype(np.int64),
        np.concatenate(costs).astype(np.int64))
    supplies = np.zeros(sink + 1, dtype=np.int64)
    supplies[:m] = 1
    supplies[sink] = -m
    flow.set_nodes_supplies(np.arange(sink + 1, dtype=np.int64), supplies)
    status = flow.solve()
    if status != flow.OPTIMAL:  # pragma: no cover - the network is always feasible
        raise HcpjError(f"capacity allocation failed ({status}); check the --capacity limits")
    f = np.asarray(flow.flows(arcs))
    pos = m  # arcs after the m player->sink arcs
    for j, rows in edge_bucket:
        used = f[pos:pos + rows.size] > 0
        chosen[players[rows[used]]] = best_a[players[rows[used]], j]
        pos += rows.size
    return chosen


def greedy_allocate(value: np.ndarray, mask: np.ndarray, catalogue: Catalogue,
                    limits: Mapping[str, int]) -> np.ndarray:
    """Per-HCP greedy (in HCP order): each takes its best action whose limits have room.

    The baseline the optimal allocation is compared with; not used by ``recommend``.
    """
    b = buckets(catalogue, limits)
    left = dict(b.limits)
    n = value.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    order = np.argsort(-np.where(mask, value, -np.inf), axis=1, kind="stable")
    for h in range(n):
        for a in order[h]:
            if not mask[h, a] or value[h, a] <= 0:
                break
            keys = [k for k in (b.inner[a], b.outer[a]) if k is not None]
            if all(left[k] > 0 for k in keys):
                for k in keys:
                    left[k] -= 1
                out[h] = a
                break
    return out


def allocation_value(value: np.ndarray, chosen: np.ndarray) -> float:
    ok = chosen >= 0
    return float(value[np.flatnonzero(ok), chosen[ok]].sum())
