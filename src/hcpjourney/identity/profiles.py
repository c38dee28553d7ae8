"""Resolved events and the 360 profile table, built from identities.

``events``: every interaction with its hcp_id, stored sorted by (hcp_id, ts,
event_id), the order every journey query relies on.
``profiles``: one golden row per HCP (CONTRACT section 4 columns).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine

EVENTS = "events"
PROFILES = "profiles"

# Survivorship: the first source in this order that has a value wins; within a
# source the most recently updated record wins.
SOURCE_TRUST = ("crm", "open_payments", "events", "survey", "web")
GOLDEN_FIELDS = ("npi", "first_name", "last_name", "specialty", "profession")


def build_events(engine: Engine) -> ir.Table:
    ix = engine.table(schemas.INTERACTIONS.name)
    ids = engine.table("identities")
    joined = ix.inner_join(ids, "record_id")
    cols = [c.name for c in schemas.INTERACTIONS.columns]
    events = joined.select("hcp_id", *cols, schemas.ATTRIBUTES)
    return engine.create(EVENTS, events, order_by=["hcp_id", "ts", "event_id"])


def _trust_rank(source: ir.StringValue) -> ir.IntegerValue:
    rank: ir.IntegerValue = ibis.literal(len(SOURCE_TRUST))
    for i, name in reversed(list(enumerate(SOURCE_TRUST))):
        rank = ibis.ifelse(source == name, i, rank)
    return rank


def build_profiles(engine: Engine) -> ir.Table:
    hcps = engine.table(schemas.HCPS.name)
    ids = engine.table("identities")
    recs = hcps.inner_join(ids, "record_id").mutate(
        _trust=lambda t: _trust_rank(t.source.lower())
    )
    golden: dict[str, ir.Value] = {}
    for f in GOLDEN_FIELDS:
        # first non-null value by trust, then recency
        w = ibis.window(
            group_by="hcp_id",
            order_by=[recs[f].isnull(), recs._trust, recs.updated_at.desc(), recs.record_id],
        )
        golden[f] = recs[f].first().over(w)
    per_record = recs.select("hcp_id", "record_id", **golden)
    agg = per_record.group_by("hcp_id").aggregate(
        **{f: per_record[f].first() for f in GOLDEN_FIELDS},
        n_records=per_record.record_id.nunique(),
    )
    ev = engine.table(EVENTS)
    stats = ev.group_by("hcp_id").aggregate(
        first_seen=ev.ts.min(), last_seen=ev.ts.max(), n_interactions=ev.count()
    )
    prof = agg.left_join(stats, "hcp_id").select(
        "hcp_id",
        *GOLDEN_FIELDS,
        "n_records",
        "first_seen",
        "last_seen",
        n_interactions=ibis.coalesce(ibis._.n_interactions, 0),
        stage=ibis.null("string"),
        segment=ibis.null("string"),
    )
    order = ["hcp_id", "npi", "first_name", "last_name", "specialty", "profession", "n_records",
             "first_seen", "last_seen", "n_interactions", "stage", "segment"]
    return engine.create(PROFILES, prof.select(*order), order_by=["hcp_id"])
