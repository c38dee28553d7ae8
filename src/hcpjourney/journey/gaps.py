"""Designed versus measured: the touchpoints a map designs against those that happen.

Touchpoints before stage entry (:func:`measured_touchpoints`)
    For each HCP and stage it entered, the *lead-in* of the entry is the HCP's
    events up to and including the event that entered this stage, in event
    order (``ts``, then ``event_id``; a stage entered by an outcome includes
    every event at or before its instant), that are not already in the lead-in
    of an earlier stage: each event counts for the first stage whose entry is
    at or after it. Stage 1's lead-in starts ``lookback_days`` (default 90)
    before its entry. Failed contacts (``declined``, ``bounced``,
    ``unsubscribed``) are no touchpoints. Per stage and touchpoint (a channel, and
    a ``channel:action``): ``hcps`` = entrants whose lead-in holds it, ``events``,
    and ``share`` = hcps / entrants of the stage.

Designed vs measured (:func:`designed_vs_measured`)
    Each designed touchpoint (see :mod:`hcpjourney.journey.model` for how text is
    matched to channels) is ``used`` when its share is at least ``min_share``
    (default 0.05), ``unused`` otherwise, and ``unmatched`` when its text names
    no channel. A measured channel no designed touchpoint names is
    ``undesigned_frequent`` when its share is at least ``frequent_share``
    (default 0.25), else ``undesigned``.

Channel gap per segment (:func:`channel_gap`)
    A *contact* is a company-initiated event (``direction`` outbound, or not
    given) whose action is ``sent`` (e-mail, SMS, invitations) or ``completed``
    / ``declined`` (visits, calls, meetings). A *response* on a channel is its
    engagement action: opened (email), clicked (sms), registered (webinar),
    completed (f2f_visit, remote_visit, phone, msl_meeting); on other channels,
    a company-initiated event with any of opened, clicked, attended, replied,
    completed, downloaded, viewed, visited, requested. HCP-initiated events
    (web visits, inquiries) are neither contacts nor responses.
    ``response_rate`` = responses / contacts per segment and channel (a
    response is not linked to the contact it answers: the rate is a ratio of
    counts); ``contact_share`` = the channel's part of the
    segment's contacts; ``response_share`` = the channel's response rate over
    the sum of the segment's rates (the mix the segment's responsiveness asks
    for); ``gap`` = response_share - contact_share. ``under_used`` where
    gap >= ``min_gap`` (default 0.05), ``over_used`` where gap <= -min_gap.
    Payments and samples are transfers, not contacts, and are left out; so are
    channels with fewer than ``min_contacts`` contacts in a group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir

from hcpjourney.engine import Engine
from hcpjourney.journey.model import JourneyMap
from hcpjourney.journey.stages import EVENTS, SEGMENTS, UNKNOWN, hcp_groups

DEFAULT_LOOKBACK_DAYS = 90
FAILED_ACTIONS: tuple[str, ...] = ("declined", "bounced", "unsubscribed")
CONTACT_ACTIONS: tuple[str, ...] = ("sent", "completed", "declined")
RESPONSE_ACTIONS: tuple[str, ...] = (
    "opened", "clicked", "attended", "replied", "completed", "downloaded", "viewed", "visited",
    "requested",
)
ENGAGE_ACTION: dict[str, str] = {
    "email": "opened",
    "sms": "clicked",
    "webinar": "registered",
    "f2f_visit": "completed",
    "remote_visit": "completed",
    "phone": "completed",
    "msl_meeting": "completed",
}
NOT_CONTACT_CHANNELS: tuple[str, ...] = ("payment", "sample")
STATUSES: tuple[str, ...] = ("used", "unused", "unmatched", "undesigned_frequent", "undesigned")

GAP_COLUMNS: tuple[str, ...] = (
    "stage", "stage_index", "touchpoint", "activity", "channel", "action", "designed", "hcps",
    "entrants", "share", "events", "status",
)


# ------------------------------------------------------------------ lead-ins
def lead_in_events(
    engine: Engine,
    entries: ir.Table,
    *,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    exclude_actions: Sequence[str] = FAILED_ACTIONS,
    n_stages: int | None = None,
) -> ir.Table:
    """Events in a lead-in: hcp_id, hcp_key (an integer per HCP), stage_index, ts, event_id,
    channel, action, direction, team.

    Each event belongs to the first stage (in stage order) whose entry is at or
    after it in event order; events after the HCP's last entry, or more than
    ``lookback_days`` before its stage-1 entry, belong to none. One join of the
    events with one row per HCP (its entries side by side), no per-stage join.
    """
    e = entries
    if n_stages is None:
        n_stages = int(engine.execute(e.stage_index.max()) or 0)
    n_stages = max(n_stages, 1)
    wide = e.group_by("hcp_id").aggregate(**{
        name: col
        for k in range(1, n_stages + 1)
        for name, col in (
            (f"_at{k}", e.entered_at.max(where=e.stage_index == k)),
            (f"_id{k}", e.event_id.max(where=e.stage_index == k)),
        )
    })
    # an integer per HCP: counting distinct integers is much cheaper than distinct text
    wide = wide.mutate(hcp_key=ibis.row_number())
    ev = engine.table(EVENTS)
    if exclude_actions:
        ev = ev.filter(~ev.action.isin(list(exclude_actions)))
    ev = ev.select("hcp_id", "ts", "event_id", "channel", "action", "direction", "team")
    j = ev.inner_join(wide, "hcp_id")
    lookback = ibis.interval(seconds=round(lookback_days * 86400))
    j = j.filter(j.ts >= j._at1 - lookback)
    branches = []
    for k in range(1, n_stages + 1):
        at, eid = j[f"_at{k}"], j[f"_id{k}"]
        upto = at.notnull() & ((j.ts < at) | ((j.ts == at) & (eid.isnull() | (j.event_id <= eid))))
        branches.append((upto, ibis.literal(k, "int64")))
    j = j.mutate(stage_index=ibis.cases(*branches, else_=ibis.null("int64")))
    j = j.filter(j.stage_index.notnull())
    return j.select("hcp_id", "hcp_key", "stage_index", "ts", "event_id", "channel", "action",
                    "direction", "team")


def measured_touchpoints(
    engine: Engine,
    entries: ir.Table,
    *,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    exclude_actions: Sequence[str] = FAILED_ACTIONS,
    n_stages: int | None = None,
) -> ir.Table:
    """stage, stage_index, channel, action (null: the whole channel), hcps, events, entrants, share."""
    li = lead_in_events(engine, entries, lookback_days=lookback_days,
                        exclude_actions=exclude_actions, n_stages=n_stages)
    by_action = li.group_by(["stage_index", "channel", "action"]).aggregate(
        hcps=li.hcp_key.nunique(), events=li.count()
    )
    by_channel = li.group_by(["stage_index", "channel"]).aggregate(
        hcps=li.hcp_key.nunique(), events=li.count()
    ).mutate(action=ibis.null("string"))
    both = by_action.union(by_channel.select(*by_action.columns), distinct=False)
    entrants = entries.group_by(["stage_index", "stage"]).aggregate(entrants=entries.count())
    j = both.inner_join(entrants, "stage_index")
    return j.select(
        "stage", "stage_index", "channel", "action", "hcps", "events", "entrants",
        share=j.hcps.cast("float64") / j.entrants.cast("float64"),
    )


# -------------------------------------------------------------- designed vs
def designed_vs_measured(
    engine: Engine,
    jmap: JourneyMap,
    entries: ir.Table,
    *,
    min_share: float = 0.05,
    frequent_share: float = 0.25,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
) -> ir.Table:
    """Per stage: designed touchpoints (used / unused / unmatched) and measured undesigned ones.

    Columns: see :data:`GAP_COLUMNS`. The measured side is computed in the
    engine; the comparison runs on its small aggregate.
    """
    m = measured_touchpoints(engine, entries, lookback_days=lookback_days,
                             n_stages=len(jmap.stages))
    rows = engine.to_pyarrow(m).to_pylist()
    entrants = {r["stage_index"]: r["entrants"]
                for r in engine.to_pyarrow(
                    entries.group_by("stage_index").aggregate(entrants=entries.count())).to_pylist()}
    measured: dict[tuple[int, str, str | None], dict[str, Any]] = {
        (r["stage_index"], r["channel"], r["action"]): r for r in rows
    }
    out: list[dict[str, Any]] = []
    for i, stage in enumerate(jmap.stages, start=1):
        n = int(entrants.get(i, 0))
        designed = jmap.designed_touchpoints(stage.id)
        designed_channels = {d.channel for d in designed if d.channel is not None}
        for d in designed:
            row = measured.get((i, d.channel, d.action)) if d.channel else None
            hcps = int(row["hcps"]) if row else 0
            share = hcps / n if n else 0.0
            used = "used" if n and share >= min_share else "unused"
            status = "unmatched" if d.channel is None else used
            out.append(_gap_row(stage.id, i, d.text, d.activity, d.channel, d.action, True, hcps,
                                n, share if d.channel else None,
                                int(row["events"]) if row else 0, status))
        for (si, ch, act), r in sorted(measured.items(), key=lambda kv: (kv[0][0], -kv[1]["hcps"],
                                                                         kv[0][1])):
            if si != i or act is not None or ch in designed_channels:
                continue
            share = float(r["share"])
            status = "undesigned_frequent" if share >= frequent_share else "undesigned"
            out.append(_gap_row(stage.id, i, ch, ch, ch, None, False, int(r["hcps"]), n, share,
                                int(r["events"]), status))
    schema = {
        "stage": "string", "stage_index": "int64", "touchpoint": "string", "activity": "string",
        "channel": "string", "action": "string", "designed": "boolean", "hcps": "int64",
        "entrants": "int64", "share": "float64", "events": "int64", "status": "string",
    }
    cols = {c: [r[c] for r in out] for c in GAP_COLUMNS}
    return ibis.memtable(cols, schema=schema)


def _gap_row(stage: str, index: int, touchpoint: str, activity: str | None, channel: str | None,
             action: str | None, designed: bool, hcps: int, entrants: int, share: float | None,
             events: int, status: str) -> dict[str, Any]:
    return {"stage": stage, "stage_index": index, "touchpoint": touchpoint, "activity": activity,
            "channel": channel, "action": action, "designed": designed, "hcps": hcps,
            "entrants": entrants, "share": share, "events": events, "status": status}


# ------------------------------------------------------------- channel gap
def contacts_and_responses(
    events: ir.Table,
    *,
    engage: Mapping[str, str] | None = None,
    exclude_channels: Sequence[str] = NOT_CONTACT_CHANNELS,
) -> ir.Table:
    """``events`` with boolean columns ``is_contact`` and ``is_response`` (definitions above)."""
    engage = dict(ENGAGE_ACTION if engage is None else engage)
    ev = events
    if exclude_channels:
        ev = ev.filter(~ev.channel.isin(list(exclude_channels)))
    outbound = ibis.coalesce(ev.direction, "outbound") == "outbound"
    is_contact = outbound & ev.action.isin(list(CONTACT_ACTIONS))
    other = outbound & ev.action.isin(list(RESPONSE_ACTIONS))
    if engage:
        is_response = ev.channel.cases(*[(ch, ev.action == act) for ch, act in engage.items()],
                                       else_=other)
    else:
        is_response = other
    return ev.mutate(is_contact=is_contact, is_response=is_response)


def channel_gap(
    engine: Engine,
    jmap: JourneyMap,
    *,
    by: str | None = None,
    min_gap: float = 0.05,
    min_contacts: int = 20,
    engage: Mapping[str, str] | None = None,
) -> ir.Table:
    """Per segment and channel: response rate vs the company's use of the channel.

    ``by``: the grouping (default ``segment`` when a segments table exists, else
    ``profession``; any breakdown of :func:`hcpjourney.journey.stages.hcp_groups`).
    Channels with fewer than ``min_contacts`` contacts in a group are left out.
    Columns: [by], channel, contacts, responses, response_rate, lift (rate over
    the group's overall rate), contact_share, response_share, gap, status.
    """
    if by is None:
        by = "segment" if engine.has_table(SEGMENTS) else "profession"
    cr = contacts_and_responses(engine.table(EVENTS), engage=engage)
    groups = hcp_groups(engine, jmap, by)
    j = cr.left_join(groups, "hcp_id")
    j = j.mutate(_g=ibis.coalesce(j[by], UNKNOWN))
    per = j.group_by(["_g", "channel"]).aggregate(
        contacts=j.is_contact.sum(), responses=j.is_response.sum()
    )
    per = per.filter(per.contacts >= min_contacts)
    rate = per.responses.cast("float64") / per.contacts.cast("float64")
    per = per.mutate(response_rate=rate)
    w = ibis.window(group_by="_g")
    tot_contacts = per.contacts.sum().over(w)
    tot_responses = per.responses.sum().over(w)
    tot_rate = per.response_rate.sum().over(w)
    out = per.mutate(
        lift=per.response_rate / (tot_responses.cast("float64") / tot_contacts.cast("float64")),
        contact_share=per.contacts.cast("float64") / tot_contacts.cast("float64"),
        response_share=ibis.ifelse(tot_rate > 0, per.response_rate / tot_rate, ibis.null("float64")),
    )
    out = out.mutate(gap=out.response_share - out.contact_share)
    status = ibis.cases(
        (out.gap >= min_gap, "under_used"),
        (out.gap <= -min_gap, "over_used"),
        else_="balanced",
    )
    out = out.mutate(status=status)
    return out.select(
        **{by: out._g}, channel=out.channel, contacts=out.contacts.cast("int64"),
        responses=out.responses.cast("int64"), response_rate=out.response_rate, lift=out.lift,
        contact_share=out.contact_share, response_share=out.response_share, gap=out.gap,
        status=out.status,
    ).order_by([by, ibis.desc("gap")])
