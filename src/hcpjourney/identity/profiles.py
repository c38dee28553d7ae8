"""Resolved events, consent state and the 360 profile table, built from identities.

``events``: every interaction with its hcp_id, stored sorted by (hcp_id, ts,
event_id), the order every journey query relies on.
``consent_state``: the latest consents row per (hcp_id, channel, purpose).
``golden`` and ``golden_lineage``: see :mod:`hcpjourney.identity.golden`.
``profiles``: one row per HCP; CONTRACT section 4 columns first, extras after.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.identity.golden import DEFAULT_SOURCE_TRUST, build_golden, identities

EVENTS = "events"
PROFILES = "profiles"
CONSENT_STATE = "consent_state"

# CONTRACT section 4, in order.
PROFILE_COLUMNS: tuple[str, ...] = (
    "hcp_id", "npi", "first_name", "last_name", "specialty", "profession", "n_records",
    "first_seen", "last_seen", "n_interactions", "stage", "segment",
)
# Extras after the contract's columns (no email, phone or address).
PROFILE_EXTRAS: tuple[str, ...] = (
    "credential", "decile", "is_kol", "n_sources", "sources", "consents_opt_in",
    "consents_opt_out", "n_feedback",
)
CONSENT_STATE_COLUMNS: tuple[str, ...] = (
    "hcp_id", "channel", "purpose", "status", "ts", "record_id", "source",
)


def build_events(engine: Engine) -> ir.Table:
    ix = engine.table(schemas.INTERACTIONS.name)
    ids = identities(engine)
    joined = ix.inner_join(ids, "record_id")
    cols = [c.name for c in schemas.INTERACTIONS.columns]
    events = joined.select("hcp_id", *cols, schemas.ATTRIBUTES)
    return engine.create(EVENTS, events, order_by=["hcp_id", "ts", "event_id"])


def latest_consents(consents: ir.Table) -> ir.Table:
    """The latest row per (hcp_id, channel, purpose) of ``consents`` joined to hcp_id.

    Rows at the same instant from different records of one HCP: opt_out wins
    (the conservative reading), then the smallest record_id.
    """
    w = ibis.window(
        group_by=["hcp_id", "channel", "purpose"],
        order_by=[
            consents.ts.desc(),
            (consents.status == "opt_out").desc(),
            consents.record_id,
        ],
    )
    ranked = consents.mutate(_n=ibis.row_number().over(w))
    return ranked.filter(ranked._n == 0).select(*CONSENT_STATE_COLUMNS)


def build_consent_state(engine: Engine) -> ir.Table:
    # the loader creates every input table on the first ingest, empty or not
    joined = engine.table(schemas.CONSENTS.name).inner_join(identities(engine), "record_id")
    return engine.create(
        CONSENT_STATE, latest_consents(joined), order_by=["hcp_id", "channel", "purpose"]
    )


def build_profiles(engine: Engine, *, trust: Sequence[str] = DEFAULT_SOURCE_TRUST) -> ir.Table:
    """Write golden, golden_lineage, consent_state and profiles; return profiles."""
    golden = build_golden(engine, trust=trust)
    consent = build_consent_state(engine)

    ev = engine.table(EVENTS)
    stats = ev.group_by("hcp_id").aggregate(
        first_seen=ev.ts.min(), last_seen=ev.ts.max(), n_interactions=ev.count()
    )
    cons = consent.group_by("hcp_id").aggregate(
        consents_opt_in=consent.count(where=consent.status == "opt_in"),
        consents_opt_out=consent.count(where=consent.status == "opt_out"),
    )
    fb = engine.table(schemas.FEEDBACK.name).inner_join(identities(engine), "record_id")
    fb_counts = fb.group_by("hcp_id").aggregate(n_feedback=fb.count())
    prof = (
        golden.left_join(stats, "hcp_id")
        .left_join(cons, "hcp_id")
        .left_join(fb_counts, "hcp_id")
    )
    out = prof.select(
        "hcp_id",
        "npi",
        "first_name",
        "last_name",
        "specialty",
        "profession",
        "n_records",
        "first_seen",
        "last_seen",
        n_interactions=ibis.coalesce(prof.n_interactions, 0),
        stage=ibis.null("string"),
        segment=ibis.null("string"),
        credential=prof.credential,
        decile=prof.decile,
        is_kol=prof.is_kol,
        n_sources=prof.n_sources,
        sources=prof.sources,
        consents_opt_in=ibis.coalesce(prof.consents_opt_in, 0),
        consents_opt_out=ibis.coalesce(prof.consents_opt_out, 0),
        n_feedback=ibis.coalesce(prof.n_feedback, 0),
    )
    assert tuple(out.columns) == PROFILE_COLUMNS + PROFILE_EXTRAS
    return engine.create(PROFILES, out, order_by=["hcp_id"])
