"""Reps accept or skip recommendations, with a reason; skips become data.

Stored in the app database (table ``nba_feedback``, migration 0004), every
write also goes to the audit log. A skip does two things:

* the skipped action is not proposed to that HCP again for ``skip_cooldown_days``
  (an eligibility rule, see :mod:`hcpjourney.nba.eligibility`);
* a skip whose reason says the HCP would not respond (``not_relevant``,
  ``hcp_declined``, ``wrong_timing``) and that carries the recommendation's
  ``send_at`` is a logged touch with reward 0 (weight ``SKIP_WEIGHT``) at that
  time in the next fit of the response model.

Reasons ``hcp_unavailable``, ``already_planned``, ``compliance_concern`` and
``other`` only trigger the cooldown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from hcpjourney.app import db
from hcpjourney.errors import HcpjError

DECISIONS = ("accept", "skip")
SKIP_REASONS = ("not_relevant", "hcp_declined", "wrong_timing", "hcp_unavailable",
                "already_planned", "compliance_concern", "other")
LEARNING_REASONS = ("not_relevant", "hcp_declined", "wrong_timing")
SKIP_WEIGHT = 0.5
AUDIT_RESOURCE = "nba_recommendation"

# Declared by migration 0004; the NBA's own table (not in app.db.metadata).
metadata = sa.MetaData()
nba_feedback = sa.Table(
    "nba_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("hcp_id", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(64)),
    sa.Column("content_id", sa.String(256)),
    sa.Column("team", sa.String(32)),
    sa.Column("as_of", sa.DateTime),
    sa.Column("send_at", sa.DateTime),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64)),
    sa.Column("note", sa.Text),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("decided_at", sa.DateTime, nullable=False),
)


class FeedbackError(HcpjError):
    """A feedback entry with an unknown decision or reason."""


@dataclass(frozen=True)
class FeedbackRecord:
    hcp_id: str
    action: str
    decision: str
    actor: str
    decided_at: datetime
    content_id: str | None = None
    channel: str | None = None
    team: str | None = None
    as_of: datetime | None = None
    send_at: datetime | None = None
    reason: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _naive_utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo is None else ts.astimezone(UTC).replace(tzinfo=None)


def record_feedback(
    url: str,
    hcp_id: str,
    action: str,
    decision: str,
    *,
    actor: str,
    content_id: str | None = None,
    channel: str | None = None,
    team: str | None = None,
    as_of: datetime | None = None,
    send_at: datetime | None = None,
    reason: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> FeedbackRecord:
    """Store a rep's accept or skip of a recommendation (audited)."""
    decision = decision.strip().lower()
    if decision not in DECISIONS:
        raise FeedbackError(f"unknown decision '{decision}'; use accept or skip")
    if reason is not None:
        reason = reason.strip().lower()
    if decision == "skip" and reason not in SKIP_REASONS:
        raise FeedbackError(
            f"a skip needs a reason: one of {', '.join(SKIP_REASONS)} (got '{reason}')")
    when = _naive_utc(now) or datetime.now(UTC).replace(tzinfo=None)
    rec = FeedbackRecord(hcp_id=hcp_id, action=action, decision=decision, actor=actor,
                         decided_at=when, content_id=content_id or None, channel=channel,
                         team=team, as_of=_naive_utc(as_of), send_at=_naive_utc(send_at),
                         reason=reason, note=note)
    db.upgrade(url)
    engine = db.connect(url)
    try:
        with engine.begin() as conn:
            conn.execute(nba_feedback.insert().values(**rec.as_dict()))
        # the note is free text and stays in the feedback table
        db.audit(engine, actor=actor, action=f"nba.{decision}", resource=AUDIT_RESOURCE,
                 resource_id=f"{hcp_id}:{action}:{content_id or ''}",
                 detail=f"{decision} {reason or ''}".strip())
    finally:
        engine.dispose()
    return rec


def feedback(url: str, *, since: datetime | None = None) -> list[FeedbackRecord]:
    """Every feedback entry (oldest first), optionally only those decided since ``since``."""
    engine = db.connect(url)
    try:
        if not sa.inspect(engine).has_table(nba_feedback.name):
            return []
        t = nba_feedback
        q = sa.select(t).order_by(t.c.id)
        if since is not None:
            q = q.where(t.c.decided_at >= _naive_utc(since))
        with engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
    except sa.exc.OperationalError:
        return []
    finally:
        engine.dispose()
    keys = FeedbackRecord.__dataclass_fields__
    return [FeedbackRecord(**{k: r[k] for k in keys}) for r in rows]


def learning_rows(records: Sequence[FeedbackRecord], before: datetime) -> list[FeedbackRecord]:
    """Skips that count as a non-response in model fitting (decided before ``before``)."""
    return [r for r in records if r.decision == "skip" and r.reason in LEARNING_REASONS
            and r.send_at is not None and r.decided_at < before]


def skip_touches(records: Sequence[FeedbackRecord], hcps: Any, catalogue: Any, vocab: Any,
                 types: Sequence[Any], before: datetime) -> tuple[Any, np.ndarray]:
    """Learning skips as logged touches with reward 0, and their sample weights."""
    from hcpjourney.nba.history import Touches, epoch

    rows = learning_rows(records, before)
    names = [t.name for t in types]
    keep = [r for r in rows if r.action in names]
    hix = hcps.lookup([r.hcp_id for r in keep]) if keep else np.zeros(0, dtype=np.int64)
    ok = hix >= 0
    keep = [r for r, k in zip(keep, ok, strict=True) if k]
    hix = hix[ok]
    m = len(keep)
    ts = np.array([epoch(r.send_at) for r in keep if r.send_at is not None], dtype=np.int64)
    local = ts + hcps.utc_offset[hix] * 3600 if m else ts
    days = local // 86_400
    weekday = ((days + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
    hour = ((local % 86_400) // 3600).astype(np.int64)
    content = vocab.index(pa.array([r.content_id for r in keep], pa.string()))
    t = Touches(
        hix=hix.astype(np.int64),
        type_code=np.array([names.index(r.action) for r in keep], dtype=np.int64),
        content=content,
        ts=ts,
        weekday=weekday,
        hour=hour,
        reward=np.zeros(m, dtype=np.int8),
        team=np.array([1 if r.team == "medical" else 0 for r in keep], dtype=np.int64),
        recent=hcps.contacts_30d[hix].astype(np.int64) if m else np.zeros(0, dtype=np.int64),
        trainable=np.ones(m, dtype=bool),
        propensity=np.full(m, np.nan),
    )
    return t, np.full(m, SKIP_WEIGHT)
