"""The data steward's review queue: uncertain pairs, and decisions that override the model.

The queue lists scored pairs whose probability falls in the review band, with
the comparison level of each field as evidence (never the field values:
names, e-mails and phones stay out of the queue). A decision ("match" or
"distinct") is stored in the app database with who made it and when, is
written to the audit log, and is applied at the next build: "match" joins the
two records' HCPs, "distinct" keeps them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import ibis
import sqlalchemy as sa

from hcpjourney.app import db
from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import HcpjError
from hcpjourney.identity import linkage
from hcpjourney.identity.exact import IDENTITIES
from hcpjourney.identity.resolve import PAIRS, Decision, Thresholds, pair_id

DECISIONS = ("match", "distinct")
AUDIT_RESOURCE = "identity_pair"


class ReviewError(HcpjError):
    """A review command names an unknown pair or decision."""


@dataclass
class ReviewItem:
    pair_id: str
    record_id_l: str
    source_l: str | None
    record_id_r: str
    source_r: str | None
    probability: float
    linked: bool  # the two records share an hcp_id in the latest build
    evidence: dict[str, str] = field(default_factory=dict)  # comparison -> level label
    decision: str | None = None


@dataclass(frozen=True)
class DecisionRecord:
    pair_id: str
    record_id_l: str
    record_id_r: str
    decision: str
    note: str | None
    actor: str
    decided_at: datetime


# ------------------------------------------------------------------ decisions
def _has_table(engine: sa.Engine) -> bool:
    return sa.inspect(engine).has_table(db.identity_decisions.name)


def decisions(url: str) -> list[DecisionRecord]:
    """Every decision in the order made (an empty list before the first one)."""
    engine = db.connect(url)
    try:
        if not _has_table(engine):
            return []
        t = db.identity_decisions
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()
    except sa.exc.OperationalError:
        return []
    finally:
        engine.dispose()
    return [DecisionRecord(pair_id=r["pair_id"], record_id_l=r["record_id_l"],
                           record_id_r=r["record_id_r"], decision=r["decision"], note=r["note"],
                           actor=r["actor"], decided_at=r["decided_at"]) for r in rows]


def model_overrides(url: str) -> list[Decision]:
    """Decisions as the resolver takes them (the latest per pair wins)."""
    return [Decision(d.record_id_l, d.record_id_r, d.decision) for d in decisions(url)]


def latest_decisions(url: str) -> dict[str, DecisionRecord]:
    out: dict[str, DecisionRecord] = {}
    for d in decisions(url):
        out[d.pair_id] = d
    return out


def record_decision(
    url: str,
    record_id_l: str,
    record_id_r: str,
    decision: str,
    *,
    actor: str,
    note: str | None = None,
    now: datetime | None = None,
) -> DecisionRecord:
    """Store a decision (and audit it); it applies at the next build."""
    if decision not in DECISIONS:
        raise ReviewError(f"unknown decision '{decision}'; use match or distinct")
    lo, hi = sorted((record_id_l, record_id_r))
    pid = pair_id(lo, hi)
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    db.upgrade(url)
    engine = db.connect(url)
    try:
        with engine.begin() as conn:
            conn.execute(db.identity_decisions.insert().values(
                pair_id=pid, record_id_l=lo, record_id_r=hi, decision=decision,
                note=note, actor=actor, decided_at=when,
            ))
        # the audit detail names the decision only: the note is free text and stays
        # in the decisions table
        db.audit(engine, actor=actor, action=f"review.{decision}", resource=AUDIT_RESOURCE,
                 resource_id=pid, detail=f"{decision} {lo} {hi}")
    finally:
        engine.dispose()
    return DecisionRecord(pid, lo, hi, decision, note, actor, when)


# ---------------------------------------------------------------------- queue
def find_pair(eng: Engine, pair: str) -> tuple[str, str]:
    """The two record ids of ``pair``: a pair id from the queue, or 'RECORD_A,RECORD_B'."""
    if eng.has_table(PAIRS):
        p = eng.table(PAIRS)
        hit = eng.to_pyarrow(p.filter(p.pair_id == pair).select("record_id_l", "record_id_r"))
        if hit.num_rows:
            return hit.column("record_id_l")[0].as_py(), hit.column("record_id_r")[0].as_py()
    parts = pair.split(",")
    if len(parts) == 2 and all(parts) and parts[0] != parts[1]:
        a, b = (x.strip() for x in parts)
        hcps = eng.table(schemas.HCPS.name)
        found = set(eng.to_pyarrow(hcps.filter(hcps.record_id.isin([a, b])).select("record_id"))
                    .column("record_id").to_pylist())
        missing = [x for x in (a, b) if x not in found]
        if missing:
            raise ReviewError(f"no hcps record '{missing[0]}'; check the record id")
        return a, b
    raise ReviewError(
        f"no review pair '{pair}'; list pairs with `hcpj review list`, or name two records "
        "as RECORD_A,RECORD_B"
    )


def different_npis(eng: Engine, a: str, b: str) -> bool:
    """Whether records ``a`` and ``b`` carry two different NPIs (never one HCP)."""
    from hcpjourney.contract.npi import is_valid_npi

    hcps = eng.table(schemas.HCPS.name)
    rows = eng.to_pyarrow(hcps.filter(hcps.record_id.isin([a, b])).select("npi")).column("npi")
    npis = {v for v in rows.to_pylist() if v and is_valid_npi(v)}
    return len(npis) > 1


def queue(
    eng: Engine,
    thresholds: Thresholds,
    decided: dict[str, DecisionRecord] | None = None,
    *,
    include_decided: bool = False,
    limit: int | None = None,
) -> list[ReviewItem]:
    """Pairs in the review band, most probable first, with per-field evidence.

    Pairs whose records carry two different NPIs are left out: they are never
    one HCP, whatever the other fields say.
    """
    if not eng.has_table(PAIRS):
        return []
    decided = decided or {}
    p = eng.table(PAIRS)
    band = p.filter((p.match_probability >= thresholds.review_low)
                    & (p.match_probability < thresholds.review_high))
    hcps = eng.table(schemas.HCPS.name).select("record_id", "source")
    ids = eng.table(IDENTITIES).select("record_id", "hcp_id") if eng.has_table(IDENTITIES) \
        else None
    left = hcps.rename(record_id_l="record_id", source_l="source")
    right = hcps.rename(record_id_r="record_id", source_r="source")
    expr = band.left_join(left, "record_id_l").left_join(right, "record_id_r")
    cols = [c for c in expr.columns if not c.endswith("_right")]
    expr = expr.select(*cols)
    if ids is not None:
        expr = expr.left_join(ids.rename(record_id_l="record_id", hcp_l="hcp_id"), "record_id_l")
        expr = expr.select(*[c for c in expr.columns if not c.endswith("_right")])
        expr = expr.left_join(ids.rename(record_id_r="record_id", hcp_r="hcp_id"), "record_id_r")
        expr = expr.select(*[c for c in expr.columns if not c.endswith("_right")])
    else:
        expr = expr.mutate(hcp_l=ibis.null("string"), hcp_r=ibis.null("string"))
    expr = expr.order_by([ibis.desc("match_probability"), "pair_id"])
    items: list[ReviewItem] = []
    for row in eng.to_pyarrow(expr).to_pylist():
        d = decided.get(row["pair_id"])
        if d is not None and not include_decided:
            continue
        evidence = {c: linkage.level_label(c, row.get(f"gamma_{c}")) for c in linkage.COMPARISONS}
        if evidence["npi"] == "different":
            continue  # two NPIs are never one HCP: nothing to review
        items.append(ReviewItem(
            pair_id=row["pair_id"], record_id_l=row["record_id_l"], source_l=row["source_l"],
            record_id_r=row["record_id_r"], source_r=row["source_r"],
            probability=float(row["match_probability"]),
            linked=row["hcp_l"] is not None and row["hcp_l"] == row["hcp_r"],
            evidence=evidence, decision=d.decision if d else None,
        ))
        if limit is not None and len(items) >= limit:
            break
    return items
