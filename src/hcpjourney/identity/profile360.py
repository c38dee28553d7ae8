"""The HCP 360 profile: everything the warehouse knows about one resolved HCP.

``profile(workspace, hcp_id)`` (exported as ``hcpjourney.profile``) returns a
:class:`Profile360` holding:

- ``golden``: the golden record (see :mod:`hcpjourney.identity.golden`) and
  ``lineage``: per field, the record and source its value came from;
- ``summary``: the HCP's ``profiles`` row (CONTRACT section 4 columns and extras);
- ``records``: every source record, as stored, best survivorship rank first;
- ``timeline``: every touchpoint across sources in (ts, event_id) order, each
  with the ``source`` of the record it was logged against;
- ``consent``: the state per (channel, purpose): the latest consents row over the
  HCP's records (ties at one instant: opt_out wins);
- ``outcomes``: nrx and trx per product and month, summed over the HCP's records
  (null when no record reports the measure);
- ``feedback``: the responses in (ts, response_id) order, and
  ``feedback_summary``: response count and mean score per instrument and per
  quality dimension;
- ``network``: the peer network around the HCP, with both ends of every
  relationship mapped from record_id to hcp_id (see :func:`network_summary`).

The object holds personal data (names, email, phone): callers decide who sees
it. Its ``repr`` shows only the hcp_id and counts, and nothing here logs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir

from hcpjourney import engine as engines
from hcpjourney.config import Workspace
from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import HcpjError, NotBuiltError
from hcpjourney.identity.golden import (
    DEFAULT_SOURCE_TRUST,
    GOLDEN,
    GOLDEN_FIELDS,
    GOLDEN_LINEAGE,
    IDENTITIES,
    RANK,
    identities,
    source_trust,
    survivorship_rank,
)
from hcpjourney.identity.profiles import CONSENT_STATE, EVENTS, PROFILES

UNSPECIFIED_KIND = "unspecified"
TOP_PEERS = 10
_BUILT_TABLES = (IDENTITIES, GOLDEN, GOLDEN_LINEAGE, PROFILES, EVENTS, CONSENT_STATE)


class UnknownHcpError(HcpjError):
    """No resolved HCP has the hcp_id asked for."""

    exit_code = 3


@dataclass(frozen=True, repr=False)
class Profile360:
    """One HCP's 360 profile. Holds personal data; ``repr`` does not show it."""

    hcp_id: str
    golden: dict[str, Any]
    lineage: dict[str, dict[str, Any]]
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    consent: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    feedback_summary: dict[str, list[dict[str, Any]]]
    network: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain, deep-copied dict of every part (timestamps stay ``datetime``)."""
        return asdict(self)

    def __repr__(self) -> str:
        return (
            f"Profile360(hcp_id={self.hcp_id!r}, records={len(self.records)}, "
            f"events={len(self.timeline)}, consents={len(self.consent)}, "
            f"outcomes={len(self.outcomes)}, feedback={len(self.feedback)}, "
            f"peers={self.network.get('distinct_peers', 0)})"
        )


def profile(workspace: Workspace | str | PathLike[str], hcp_id: str) -> Profile360:
    """The 360 profile of ``hcp_id`` in ``workspace`` (a folder or an opened Workspace)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(Path(workspace))
    trust = source_trust(ws)
    eng = engines.connect(ws, read_only=True)
    try:
        return load_profile(eng, hcp_id, trust=trust)
    finally:
        eng.close()


def load_profile(
    engine: Engine, hcp_id: str, *, trust: Sequence[str] = DEFAULT_SOURCE_TRUST
) -> Profile360:
    """The 360 profile of ``hcp_id`` read through an open engine (for servers holding one)."""
    missing = [t for t in _BUILT_TABLES if not engine.has_table(t)]
    if missing:
        raise NotBuiltError("no 360 profiles yet: run `hcpj build` first")
    if not isinstance(hcp_id, str) or not hcp_id.strip():
        raise UnknownHcpError("give an hcp_id, e.g. one from `hcpj export profiles --out profiles.csv`")
    hcp_id = hcp_id.strip()
    summary = _one(engine, engine.table(PROFILES), hcp_id)
    golden_row = _one(engine, engine.table(GOLDEN), hcp_id)
    if summary is None or golden_row is None:
        raise UnknownHcpError(
            f"no HCP has hcp_id '{hcp_id}'; list the hcp_ids with "
            "`hcpj export profiles --out profiles.csv`"
        )
    return Profile360(
        hcp_id=hcp_id,
        golden=golden_row,
        lineage=_lineage(engine, hcp_id),
        summary=summary,
        records=_records(engine, hcp_id, trust),
        timeline=_timeline(engine, hcp_id),
        consent=_rows(
            engine,
            _for(engine.table(CONSENT_STATE), hcp_id)
            .drop("hcp_id")
            .order_by(["channel", "purpose"]),
        ),
        outcomes=_rows(engine, outcomes_by_month(engine, hcp_id)),
        feedback=_decoded(_rows(engine, _feedback(engine, hcp_id).order_by(["ts", "response_id"]))),
        feedback_summary=_feedback_summary(engine, hcp_id),
        network=network_summary(engine, hcp_id),
    )


# ----------------------------------------------------------------- helpers
def _rows(engine: Engine, expr: ir.Table) -> list[dict[str, Any]]:
    return list(engine.to_pyarrow(expr).to_pylist())


def _for(t: ir.Table, hcp_id: str) -> ir.Table:
    return t.filter(t.hcp_id == hcp_id)


def _one(engine: Engine, t: ir.Table, hcp_id: str) -> dict[str, Any] | None:
    rows = _rows(engine, _for(t, hcp_id).limit(2))
    return rows[0] if len(rows) == 1 else None


def _decoded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their ``attributes`` JSON text (unknown input columns) as a dict."""
    for r in rows:
        raw = r.get(schemas.ATTRIBUTES)
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                r[schemas.ATTRIBUTES] = json.loads(raw)
    return rows


def _record_ids(engine: Engine, hcp_id: str) -> ir.Table:
    return _for(identities(engine), hcp_id).select("record_id")


def _lineage(engine: Engine, hcp_id: str) -> dict[str, dict[str, Any]]:
    rows = _rows(engine, _for(engine.table(GOLDEN_LINEAGE), hcp_id).drop("hcp_id"))
    by_field = {r.pop("field"): r for r in rows}
    return {f: by_field[f] for f in GOLDEN_FIELDS if f in by_field}


def _records(engine: Engine, hcp_id: str, trust: Sequence[str]) -> list[dict[str, Any]]:
    hcps = engine.table(schemas.HCPS.name)
    keep = [*schemas.HCPS.names, schemas.ATTRIBUTES]
    recs = hcps.select(*keep).inner_join(_for(identities(engine), hcp_id), "record_id")
    ranked = recs.mutate(**{RANK: survivorship_rank(recs, trust)}).drop("hcp_id")
    return _decoded(_rows(engine, ranked.order_by([RANK, "record_id"])))


def _timeline(engine: Engine, hcp_id: str) -> list[dict[str, Any]]:
    ev = _for(engine.table(EVENTS), hcp_id).drop("hcp_id")
    hcps = engine.table(schemas.HCPS.name)
    src = hcps.select("record_id", "source").inner_join(_record_ids(engine, hcp_id), "record_id")
    joined = ev.left_join(src, "record_id").select(*ev.columns, "source")
    return _decoded(_rows(engine, joined.order_by(["ts", "event_id"])))


def outcomes_by_month(engine: Engine, hcp_id: str) -> ir.Table:
    """nrx and trx per (product, period) summed over the HCP's records."""
    out = engine.table(schemas.OUTCOMES.name).inner_join(_record_ids(engine, hcp_id), "record_id")
    return (
        out.group_by(["product", "period"])
        .aggregate(nrx=out.nrx.sum(), trx=out.trx.sum(), n_records=out.record_id.nunique())
        .order_by(["product", "period"])
    )


def _feedback(engine: Engine, hcp_id: str) -> ir.Table:
    fb = engine.table(schemas.FEEDBACK.name).inner_join(_record_ids(engine, hcp_id), "record_id")
    cols = [c.name for c in schemas.FEEDBACK.columns]
    return fb.select(*cols, schemas.ATTRIBUTES)


def _feedback_summary(engine: Engine, hcp_id: str) -> dict[str, list[dict[str, Any]]]:
    fb = _feedback(engine, hcp_id)
    out: dict[str, list[dict[str, Any]]] = {}
    for key in ("instrument", "dimension"):
        part = fb.filter(fb[key].notnull())
        agg = part.group_by(key).aggregate(
            responses=part.count(), scored=part.score.count(), mean_score=part.score.mean()
        )
        out[f"by_{key}"] = _rows(engine, agg.order_by(key))
    return out


def relationship_edges(engine: Engine, hcp_id: str) -> ir.Table:
    """The relationships touching ``hcp_id``, both ends mapped to hcp_ids.

    Columns: direction (out when the HCP is the source), peer_hcp_id, kind
    ("unspecified" when the row has none), weight (1 when the row has none),
    src_record_id, dst_record_id, ts. Rows between two records of the HCP itself
    are left out (they link duplicates, not peers).
    """
    rel = engine.table(schemas.RELATIONSHIPS.name)
    ids = identities(engine)
    src = ids.select(src_record_id=ids.record_id, src_hcp=ids.hcp_id)
    dst = ids.select(dst_record_id=ids.record_id, dst_hcp=ids.hcp_id)
    m = rel.inner_join(src, "src_record_id").inner_join(dst, "dst_record_id")
    m = m.filter(((m.src_hcp == hcp_id) | (m.dst_hcp == hcp_id)) & (m.src_hcp != m.dst_hcp))
    out = m.src_hcp == hcp_id
    return m.select(
        direction=ibis.ifelse(out, "out", "in"),
        peer_hcp_id=ibis.ifelse(out, m.dst_hcp, m.src_hcp),
        kind=m.kind.fill_null(UNSPECIFIED_KIND),
        weight=m.weight.fill_null(1.0),
        src_record_id=m.src_record_id,
        dst_record_id=m.dst_record_id,
        ts=m.ts,
    )


def network_summary(engine: Engine, hcp_id: str) -> dict[str, Any]:
    """The HCP's peer network in numbers.

    ``edges_out``/``edges_in`` count relationship rows (a relationship reported by
    two sources counts twice), ``weight_out``/``weight_in`` sum their weights,
    ``out_degree``/``in_degree`` count distinct peers per direction and
    ``distinct_peers`` over both; ``by_kind`` repeats these per kind;
    ``top_peers`` lists up to ten peers by total weight (then hcp_id).
    """
    e = relationship_edges(engine, hcp_id)
    is_out = e.direction == "out"
    is_in = e.direction == "in"

    def measures(t: ir.Table) -> dict[str, ir.Value]:
        o, i = t.direction == "out", t.direction == "in"
        return {
            "edges_out": t.count(where=o),
            "edges_in": t.count(where=i),
            "weight_out": t.weight.sum(where=o).fill_null(0.0),
            "weight_in": t.weight.sum(where=i).fill_null(0.0),
            "out_degree": t.peer_hcp_id.nunique(where=o),
            "in_degree": t.peer_hcp_id.nunique(where=i),
            "distinct_peers": t.peer_hcp_id.nunique(),
        }

    totals = _rows(engine, e.aggregate(**measures(e)))[0]
    by_kind = _rows(engine, e.group_by("kind").aggregate(**measures(e)).order_by("kind"))
    peers = e.group_by("peer_hcp_id").aggregate(
        edges=e.count(),
        weight_out=e.weight.sum(where=is_out).fill_null(0.0),
        weight_in=e.weight.sum(where=is_in).fill_null(0.0),
        kinds=e.kind.collect(distinct=True).sort(),
    )
    peers = peers.mutate(weight=peers.weight_out + peers.weight_in)
    top = _rows(
        engine, peers.order_by([ibis.desc("weight"), "peer_hcp_id"]).limit(TOP_PEERS)
    )
    return {**totals, "by_kind": {r.pop("kind"): r for r in by_kind}, "top_peers": top}
