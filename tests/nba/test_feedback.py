"""Rep feedback on recommendations: stored in the app database (SQLite and PostgreSQL), audited,
and turned into training rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command

from hcpjourney.app import db
from hcpjourney.nba import history as H
from hcpjourney.nba.catalogue import action_types
from hcpjourney.nba.feedback import (
    FeedbackError,
    feedback,
    learning_rows,
    nba_feedback,
    record_feedback,
    skip_touches,
)
from hcpjourney.nba.settings import NbaSettings


@pytest.fixture
def url(app_db_url: str) -> str:
    return app_db_url


def test_record_list_and_audit(url: str) -> None:
    t0 = datetime(2025, 10, 3, 9, 0)
    a = record_feedback(url, "H1", "email", "accept", actor="rep1", content_id="cz-1", now=t0)
    b = record_feedback(url, "H2", "f2f_visit", "skip", actor="rep2", content_id="cz-7",
                        reason="Not_Relevant", note="retired in May",
                        send_at=datetime(2025, 10, 7, 15, 0, tzinfo=UTC), now=t0 + timedelta(hours=1))
    assert (a.decision, b.reason) == ("accept", "not_relevant")
    got = feedback(url)
    assert [(f.hcp_id, f.action, f.decision, f.reason, f.note) for f in got] == [
        ("H1", "email", "accept", None, None), ("H2", "f2f_visit", "skip", "not_relevant", "retired in May")]
    assert got[1].send_at == datetime(2025, 10, 7, 15, 0)  # stored as naive UTC
    assert [f.hcp_id for f in feedback(url, since=t0 + timedelta(minutes=30))] == ["H2"]
    eng = db.connect(url)
    try:
        with eng.connect() as conn:
            audit = conn.execute(sa.select(db.audit_log).order_by(db.audit_log.c.id)).mappings().all()
    finally:
        eng.dispose()
    assert [(r["actor"], r["action"], r["resource"], r["resource_id"], r["detail"]) for r in audit] == [
        ("rep1", "nba.accept", "nba_recommendation", "H1:email:cz-1", "accept"),
        ("rep2", "nba.skip", "nba_recommendation", "H2:f2f_visit:cz-7", "skip not_relevant"),
    ]
    assert all("retired" not in (r["detail"] or "") for r in audit)  # free text stays out of the log
    with pytest.raises(FeedbackError, match="accept or skip"):
        record_feedback(url, "H1", "email", "maybe", actor="rep1")
    with pytest.raises(FeedbackError, match="a skip needs a reason"):
        record_feedback(url, "H1", "email", "skip", actor="rep1", reason="bored")


def test_migration_0004_is_reversible(url: str) -> None:
    assert db.upgrade(url) == db.head_revision()
    eng = db.connect(url)
    try:
        cols = {c["name"] for c in sa.inspect(eng).get_columns("nba_feedback")}
        assert cols == {c.name for c in nba_feedback.columns}
        command.downgrade(db._alembic_config(eng), "0003")
        assert not sa.inspect(eng).has_table("nba_feedback")
        assert db.current_revision(eng) == "0003"
    finally:
        eng.dispose()
    assert db.upgrade(url) == db.head_revision()
    eng = db.connect(url)
    try:
        with pytest.raises(sa.exc.IntegrityError), eng.begin() as conn:
            conn.execute(nba_feedback.insert().values(hcp_id="H", action="a", decision="later",
                                                      actor="x", decided_at=datetime(2025, 1, 1)))
    finally:
        eng.dispose()


def test_learning_skips_become_zero_reward_touches(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    as_of = datetime(2025, 10, 6)
    send = datetime(2025, 9, 30, 17, 0)  # a Tuesday, 17:00 UTC = 12:00 in New York (UTC-5)
    record_feedback(url, "H0001", "email", "skip", actor="r", content_id="c1", reason="not_relevant",
                    send_at=send, now=as_of - timedelta(days=5))
    record_feedback(url, "H0002", "email", "skip", actor="r", reason="hcp_unavailable", send_at=send,
                    now=as_of - timedelta(days=5))  # cooldown only
    record_feedback(url, "H0001", "sms", "skip", actor="r", reason="wrong_timing",
                    now=as_of - timedelta(days=5))  # no send time: nothing to learn
    record_feedback(url, "H0001", "sms", "skip", actor="r", reason="not_relevant", send_at=send,
                    now=as_of + timedelta(days=1))  # after the as-of
    recs = feedback(url)
    assert [(r.hcp_id, r.action) for r in learning_rows(recs, as_of)] == [("H0001", "email")]
    n = 3
    hc = H.Hcps(ids=np.array(["H0000", "H0001", "H0002"], dtype=object), utc_offset=np.full(n, -5),
                decile=np.full(n, np.nan), is_kol=np.zeros(n, dtype=bool),
                contacts_7d=np.zeros(n, dtype=np.int64), contacts_30d=np.array([0, 4, 0]),
                stage=np.zeros(n, dtype=np.int64))
    voc = H.content_vocab([{"content_id": "c1", "theme": "efficacy"}])
    types = action_types(NbaSettings())
    t, w = skip_touches(recs, hc, None, voc, types, as_of)
    assert t.size == 1 and w.tolist() == [0.5]
    assert (int(t.hix[0]), int(t.reward[0]), int(t.content[0]), int(t.recent[0])) == (1, 0, 0, 4)
    assert (int(t.weekday[0]), int(t.hour[0])) == (1, 12)  # local time of the recommendation
    assert [x.name for x in types][int(t.type_code[0])] == "email"
