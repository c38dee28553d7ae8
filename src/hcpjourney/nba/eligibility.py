"""Eligibility by construction: which catalogue actions each HCP may receive as of a date.

Rules (an action is eligible only if all hold; nothing is ever filtered after ranking):

1. **Consent as of --as-of**: the latest consents row at or before ``as_of`` for the
   HCP (over all its records), the action's channel and the purpose its team needs
   (promotional for commercial, medical for medical) is not ``opt_out``. Rows at
   the same instant: opt_out wins (as in ``consent_state``). No row at all means
   eligible (the contract forbids only opted-out channels) unless the channel is
   listed in ``[nba] opt_in_required``, which then needs an ``opt_in`` row.
2. **Content** approved, approved by and not expired at ``as_of``; **team/purpose**;
   **quiet periods**: applied when the catalogue is built (see
   :mod:`hcpjourney.nba.catalogue`).
3. **Shared pressure budget**: the HCP's outbound contacts (all teams and
   channels) in the 7 days before ``as_of`` plus the recommended one stay within
   ``contacts_per_week``, and in the 30 days before within ``contacts_per_month``.
4. **Recently skipped**: an action a rep skipped within ``skip_cooldown_days``
   before ``as_of`` is not proposed again.

The per-HCP state (consent status per (channel, purpose) group, contact counts)
is computed in the engine; the HCP x action mask is a numpy broadcast of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np

from hcpjourney.engine import Engine
from hcpjourney.identity.profiles import latest_consents
from hcpjourney.nba.catalogue import Catalogue
from hcpjourney.nba.history import Hcps
from hcpjourney.nba.settings import NbaSettings

NONE, OPT_IN, OPT_OUT = 0, 1, 2


@dataclass
class Eligibility:
    mask: np.ndarray  # n x A bool
    status: np.ndarray  # n x G consent status per catalogue group (NONE / OPT_IN / OPT_OUT)
    groups: list[tuple[str, str]]  # (channel, purpose) per group column
    cap_week: np.ndarray  # n bool: weekly cap reached
    cap_month: np.ndarray  # n bool: monthly cap reached
    skipped: np.ndarray  # n x A bool

    def n_eligible(self) -> np.ndarray:
        return self.mask.sum(axis=1)


def consents_as_of(engine: Engine, hcps_table: ir.Table, as_of: datetime) -> ir.Table:
    """Latest consent row per (hix, channel, purpose) at or before ``as_of``."""
    c = engine.table("consents")
    ids = engine.table("identities").select("record_id", "hcp_id")
    j = c.filter(c.ts <= as_of).inner_join(ids, "record_id")
    latest = latest_consents(j)
    return latest.inner_join(hcps_table.select("hcp_id", "hix"), "hcp_id")


def consent_status(engine: Engine, hcps_table: ir.Table, groups: Sequence[tuple[str, str]],
                   n: int, as_of: datetime) -> np.ndarray:
    """n x G consent status (NONE, OPT_IN, OPT_OUT) of each HCP for each group, as of."""
    out = np.zeros((n, len(groups)), dtype=np.int8)
    if not groups or not engine.has_table("consents") or not engine.has_table("identities"):
        return out
    g = ibis.memtable({"channel": [c for c, _ in groups], "purpose": [p for _, p in groups],
                       "g": list(range(len(groups)))})
    latest = consents_as_of(engine, hcps_table, as_of)
    j = latest.inner_join(g, ["channel", "purpose"])
    d = engine.to_pyarrow(j.select(
        hix=j.hix, g=j.g.cast("int64"),
        s=ibis.cases((j.status == "opt_out", OPT_OUT), else_=OPT_IN).cast("int8")))
    hix = np.asarray(d.column("hix").to_numpy(), dtype=np.int64)
    gi = np.asarray(d.column("g").to_numpy(), dtype=np.int64)
    out[hix, gi] = np.asarray(d.column("s").to_numpy(), dtype=np.int8)
    return out


def skipped_matrix(hcps: Hcps, catalogue: Catalogue, skips: Sequence[Mapping[str, Any]],
                   settings: NbaSettings, as_of: datetime) -> np.ndarray:
    """n x A: actions a rep skipped for the HCP within the cooldown before ``as_of``."""
    out = np.zeros((hcps.n, len(catalogue)), dtype=bool)
    if not skips or settings.skip_cooldown_days <= 0 or len(catalogue) == 0:
        return out
    lo = as_of - timedelta(days=settings.skip_cooldown_days)
    # a skip counts from the week of the recommendation it answers, when known
    recent = [s for s in skips if s.get("decision") == "skip"
              and lo <= (s.get("as_of") or s["decided_at"]) <= as_of]
    if not recent:
        return out
    hix = hcps.lookup([str(s["hcp_id"]) for s in recent])
    by_key: dict[tuple[str, str | None], int] = {a.key: a.index for a in catalogue.actions}
    by_type: dict[str, list[int]] = {}
    for a in catalogue.actions:
        by_type.setdefault(a.action, []).append(a.index)
    for h, s in zip(hix, recent, strict=True):
        if h < 0:
            continue
        cid = s.get("content_id")
        if cid:
            k = by_key.get((str(s["action"]), str(cid)))
            if k is not None:
                out[h, k] = True
        else:
            out[h, by_type.get(str(s["action"]), [])] = True
    return out


def eligibility(engine: Engine, hcps_table: ir.Table, hcps: Hcps, catalogue: Catalogue,
                settings: NbaSettings, as_of: datetime,
                skips: Sequence[Mapping[str, Any]] = ()) -> Eligibility:
    groups = catalogue.groups()
    status = consent_status(engine, hcps_table, groups, hcps.n, as_of)
    return eligibility_from_state(hcps, catalogue, settings, status, groups,
                                  skipped_matrix(hcps, catalogue, skips, settings, as_of))


def eligibility_from_state(hcps: Hcps, catalogue: Catalogue, settings: NbaSettings,
                           status: np.ndarray, groups: Sequence[tuple[str, str]],
                           skipped: np.ndarray | None = None,
                           hix: np.ndarray | None = None) -> Eligibility:
    """The mask from per-HCP state (rows ``hix`` of ``hcps``; default all)."""
    hix = np.arange(hcps.n) if hix is None else np.asarray(hix)
    gpos = {g: i for i, g in enumerate(groups)}
    a_group = np.array([gpos[a.group] for a in catalogue.actions], dtype=np.int64)
    need_in = np.array([a.channel in settings.opt_in_required for a in catalogue.actions], dtype=bool)
    st = status[:, a_group] if a_group.size else np.zeros((status.shape[0], 0), dtype=np.int8)
    ok = (st != OPT_OUT) & (~need_in[None, :] | (st == OPT_IN))
    cap_week = hcps.contacts_7d[hix] + 1 > settings.contacts_per_week
    cap_month = hcps.contacts_30d[hix] + 1 > settings.contacts_per_month
    ok &= ~(cap_week | cap_month)[:, None]
    skipped = np.zeros(ok.shape, dtype=bool) if skipped is None else skipped
    ok &= ~skipped
    return Eligibility(ok, status, list(groups), cap_week, cap_month, skipped)
