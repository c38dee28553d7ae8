"""Eligibility rules, one at a time, on a hand-written drop of edge cases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.contract.npi import make_npi
from hcpjourney.nba import history as H
from hcpjourney.nba.catalogue import (
    RULE_EXPIRED,
    RULE_NOT_APPROVED,
    RULE_NOT_YET_APPROVED,
    RULE_QUIET_PERIOD,
    RULE_TEAM_PURPOSE,
    build_catalogue,
    content_purpose,
)
from hcpjourney.nba.eligibility import NONE, OPT_IN, OPT_OUT, consent_status, eligibility_from_state
from hcpjourney.nba.eligibility import skipped_matrix as skips_of
from hcpjourney.nba.settings import NbaSettings

AS_OF = datetime(2025, 4, 1)
N1, N2, N3, N4 = (make_npi(100000000 + i) for i in range(1, 5))

HCPS = (["record_id", "source", "npi", "first_name", "last_name", "state"], [
    ["crm:1", "crm", N1, "Ada", "Smith", "MA"],
    ["web:1", "web", N1, "Ada", "Smith", "MA"],
    ["crm:2", "crm", N2, "Ben", "Jones", "TX"],
    ["crm:3", "crm", N3, "Cy", "Brown", "CA"],
    ["crm:4", "crm", N4, "Di", "Green", "NY"],
])
CONTENT = (["content_id", "format", "theme", "tonality", "audience", "mlr_status", "approved_at",
            "expires_at", "purpose"], [
    ["c_mail", "email_template", "efficacy", "clinical", "hcp", "approved", "2025-01-01T00:00:00Z",
     "2025-04-01T00:00:00Z", ""],                      # expires exactly at as-of: expired
    ["c_mail2", "email_template", "safety", "clinical", "hcp", "approved", "2025-01-01T00:00:00Z",
     "2025-04-01T00:00:01Z", ""],                      # one second later: still valid
    ["c_draft", "email_template", "dosing", "clinical", "hcp", "draft", "", "", ""],
    ["c_future", "detail_aid", "access", "promotional", "hcp", "approved", "2025-05-01T00:00:00Z",
     "", ""],
    ["c_article", "article", "safety", "clinical", "hcp", "approved", "2025-01-01T00:00:00Z", "", ""],
    ["c_detail", "detail_aid", "efficacy", "clinical", "hcp", "approved", "2025-01-01T00:00:00Z", "", ""],
    ["c_patient", "detail_aid", "patient_support", "empathetic", "patient", "approved",
     "2025-01-01T00:00:00Z", "", ""],
    ["c_gone", "slide_deck", "dosing", "clinical", "hcp", "withdrawn", "2025-01-01T00:00:00Z", "", ""],
    ["c_medmail", "email_template", "safety", "clinical", "hcp", "approved", "2025-01-01T00:00:00Z",
     "", "medical"],                                    # purpose column: medical
    ["c_medslides", "slide_deck", "efficacy", "clinical", "hcp", "approved", "2025-01-01T00:00:00Z",
     "", "medical"],
])
CONSENTS = (["record_id", "channel", "status", "ts", "purpose", "source"], [
    ["crm:1", "email", "opt_in", "2025-01-01T00:00:00Z", "promotional", "crm"],
    ["web:1", "email", "opt_out", "2025-03-01T00:00:00Z", "promotional", "web"],
    ["crm:1", "msl_meeting", "opt_out", "2025-01-01T00:00:00Z", "promotional", "crm"],
    ["crm:1", "msl_meeting", "opt_in", "2025-01-01T00:00:00Z", "medical", "crm"],
    ["crm:1", "sms", "opt_in", "2025-02-01T00:00:00Z", "promotional", "crm"],
    ["web:1", "sms", "opt_out", "2025-02-01T00:00:00Z", "promotional", "web"],  # tie: opt_out wins
    ["crm:2", "email", "opt_out", "2025-02-01T00:00:00Z", "promotional", "crm"],
    ["crm:2", "msl_meeting", "opt_out", "2025-02-01T00:00:00Z", "medical", "crm"],
    ["crm:2", "sms", "opt_in", "2025-02-01T00:00:00Z", "promotional", "crm"],
    ["crm:3", "f2f_visit", "opt_out", "2025-05-01T00:00:00Z", "promotional", "crm"],  # after as-of
    ["crm:3", "email", "opt_out", "2025-01-01T00:00:00Z", "promotional", "crm"],
    ["crm:3", "email", "opt_in", "2025-03-15T00:00:00Z", "promotional", "crm"],  # opted back in
])


def _events() -> tuple[list[str], list[list[str]]]:
    head = ["event_id", "record_id", "ts", "channel", "action", "direction", "team", "content_id"]
    rows = [
        ["e1", "crm:2", "2025-01-10T10:00:00Z", "msl_meeting", "completed", "outbound", "medical",
         "c_article"],
        ["e2", "crm:2", "2025-01-11T10:00:00Z", "f2f_visit", "completed", "outbound", "commercial",
         "c_detail"],
        ["e3", "crm:2", "2025-01-12T10:00:00Z", "email", "sent", "outbound", "medical", "c_mail2"],
        ["e4", "crm:2", "2025-01-13T10:00:00Z", "email", "sent", "outbound", "commercial", "c_mail2"],
        ["e5", "crm:2", "2025-01-14T10:00:00Z", "email", "sent", "outbound", "commercial", "c_mail2"],
    ]
    # crm:4: three contacts in the week before as-of (one exactly 7 days before), 9 in the month
    base = AS_OF
    for i, days in enumerate([7, 3, 1, 8, 10, 12, 15, 20, 29]):
        ts = (base - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append([f"c4_{i}", "crm:4", ts, "email", "sent", "outbound", "commercial", "c_mail2"])
    # not contacts: an opened email, an inbound web visit, a contact at as-of itself (the future)
    rows.append(["x1", "crm:4", "2025-03-30T10:00:00Z", "email", "opened", "outbound", "commercial",
                 "c_mail2"])
    rows.append(["x2", "crm:4", "2025-03-30T11:00:00Z", "web", "visited", "inbound", "", ""])
    rows.append(["x3", "crm:4", "2025-04-01T00:00:00Z", "email", "sent", "outbound", "commercial",
                 "c_mail2"])
    return head, rows


@pytest.fixture(scope="module")
def built(module_factory: Any) -> dict[str, Any]:
    wh = module_factory.workspace("elig")
    drop = module_factory.drop("elig_drop")
    drop.csv("hcps.csv", *HCPS)
    drop.csv("content.csv", *CONTENT)
    drop.csv("consents.csv", *CONSENTS)
    drop.csv("interactions.csv", *_events())
    wh.ingest(drop.path)
    services.build(wh.ws)
    services.review_decide(wh.ws, "crm:1,web:1", "match", actor="steward")  # one HCP, two records
    services.build(wh.ws)
    eng = engines.connect(wh.ws)
    hcps_table = H.register_hcps(eng)
    rows = H.content_rows(eng)
    ids = {r["record_id"]: r["hcp_id"] for r in eng.to_pyarrow(eng.table("identities")).to_pylist()}
    yield {"eng": eng, "hcps_table": hcps_table, "rows": rows, "ids": ids}
    eng.close()


def _catalogue(built: dict[str, Any], **nba: Any) -> Any:
    s = NbaSettings.from_settings({"nba": nba})
    hist = H.content_team_history(built["eng"], AS_OF)
    return build_catalogue(built["rows"], s, AS_OF, history=hist), s


def test_catalogue_content_rules(built: dict[str, Any]) -> None:
    cat, _ = _catalogue(built)
    got = {(a.action, a.content_id, a.team) for a in cat.actions}
    assert got == {
        ("email", "c_mail2", "commercial"),        # used 2x commercial, 1x medical: promotional
        ("email", "c_medmail", "medical"),         # purpose column says medical
        ("sms", None, "commercial"),
        ("f2f_visit", "c_detail", "commercial"),
        ("remote_visit", "c_detail", "commercial"),
        ("phone_call", None, "commercial"),
        ("msl_meeting", "c_article", "medical"),   # carried by the medical team only
        ("msl_meeting", "c_medslides", "medical"),
        ("sample", None, "commercial"),
    }
    blocked = {(b.action, b.content_id): b.rule for b in cat.blocked}
    assert blocked[("email", "c_mail")] == RULE_EXPIRED
    assert blocked[("email", "c_draft")] == RULE_NOT_APPROVED
    assert blocked[("f2f_visit", "c_future")] == RULE_NOT_YET_APPROVED
    assert blocked[("f2f_visit", "c_gone")] == RULE_NOT_APPROVED
    assert blocked[("msl_meeting", "c_gone")] == RULE_TEAM_PURPOSE  # promotional via medical
    assert blocked[("f2f_visit", "c_medslides")] == RULE_TEAM_PURPOSE  # medical via commercial
    assert blocked[("remote_visit", "c_medslides")] == RULE_TEAM_PURPOSE
    assert not any(c == "c_patient" for _, c in blocked) and "c_patient" not in {
        a.content_id for a in cat.actions}


def test_content_purpose_order() -> None:
    row = {"content_id": "x", "attributes": '{"purpose": "medical"}'}
    assert content_purpose(row, {"x": {"commercial": 9}}, {}) == "medical"
    assert content_purpose(row, {}, {"x": "promotional"}) == "promotional"
    assert content_purpose({"content_id": "x"}, {"x": {"medical": 2, "commercial": 1}}, {}) == "medical"
    assert content_purpose({"content_id": "x"}, {"x": {"medical": 1, "commercial": 1}}, {}) == "promotional"
    assert content_purpose({"content_id": "x"}, {}, {}) == "promotional"


def test_quiet_periods(built: dict[str, Any]) -> None:
    # overlaps the week (Apr 1-7): email blocked; a period ending the day before does nothing
    cat, _ = _catalogue(built, quiet_periods=[
        {"start": "2025-04-07", "end": "2025-04-20", "channels": ["email"]},
        {"start": "2025-03-01", "end": "2025-03-31"},
        {"start": "2025-04-02", "end": "2025-04-02", "channels": ["msl_meeting"], "teams": ["commercial"]},
    ])
    assert not any(a.channel == "email" for a in cat.actions)
    assert {(b.action, b.rule) for b in cat.blocked if b.rule == RULE_QUIET_PERIOD} == {
        ("email", RULE_QUIET_PERIOD)}
    assert any(a.channel == "msl_meeting" for a in cat.actions)  # team did not match


def test_consent_as_of(built: dict[str, Any]) -> None:
    cat, _ = _catalogue(built)
    groups = cat.groups()
    hc = H.load_hcps(built["eng"], built["hcps_table"], None, AS_OF)
    ids = built["ids"]

    def status(as_of: datetime) -> dict[tuple[str, str, str], int]:
        st = consent_status(built["eng"], built["hcps_table"], groups, hc.n, as_of)
        return {(hc.ids[h], *groups[g]): int(st[h, g]) for h in range(hc.n) for g in range(len(groups))}

    now = status(AS_OF)
    h1, h2, h3, h4 = ids["crm:1"], ids["crm:2"], ids["crm:3"], ids["crm:4"]
    assert ids["web:1"] == h1
    assert now[(h1, "email", "promotional")] == OPT_OUT   # the later row, from another record
    assert now[(h1, "msl_meeting", "medical")] == OPT_IN  # a promotional opt-out does not count
    assert now[(h1, "sms", "promotional")] == OPT_OUT     # same instant: opt_out wins
    assert now[(h2, "email", "promotional")] == OPT_OUT
    assert now[(h2, "msl_meeting", "medical")] == OPT_OUT
    assert now[(h3, "f2f_visit", "promotional")] == NONE  # its opt-out comes after as-of
    assert now[(h3, "email", "promotional")] == OPT_IN    # opted back in
    assert now[(h4, "email", "promotional")] == NONE
    before = status(datetime(2025, 2, 15))
    assert before[(h1, "email", "promotional")] == OPT_IN
    assert before[(h3, "email", "promotional")] == OPT_OUT
    later = status(datetime(2025, 6, 1))
    assert later[(h3, "f2f_visit", "promotional")] == OPT_OUT


def test_mask_caps_and_opt_in_required(built: dict[str, Any]) -> None:
    eng, ht = built["eng"], built["hcps_table"]
    s = NbaSettings.from_settings({"nba": {"opt_in_required": ["sms"]}})
    cat, _ = _catalogue(built)
    types = [t for t in cat.types]
    hc = H.load_hcps(eng, ht, H.touches_expr(eng, types, AS_OF - timedelta(days=40), AS_OF), AS_OF)
    ids = built["ids"]
    h4 = int(hc.lookup([ids["crm:4"]])[0])
    # the contact seven days before counts (window [as_of - 7d, as_of)); opened/web/as-of do not
    assert (hc.contacts_7d[h4], hc.contacts_30d[h4]) == (3, 9)
    groups = cat.groups()
    st = consent_status(eng, ht, groups, hc.n, AS_OF)
    el = eligibility_from_state(hc, cat, s, st, groups)
    assert el.cap_week[h4] and not el.cap_month[h4]
    assert not el.mask[h4].any()
    el10 = eligibility_from_state(hc, cat, NbaSettings.from_settings(
        {"nba": {"contacts_per_week": 4, "contacts_per_month": 9}}), st, groups)
    assert el10.cap_month[h4] and not el10.cap_week[h4] and not el10.mask[h4].any()
    el_ok = eligibility_from_state(hc, cat, NbaSettings.from_settings(
        {"nba": {"contacts_per_week": 4, "contacts_per_month": 10}}), st, groups)
    assert el_ok.mask[h4].all()  # no consent rows at all: not opted out of anything
    # reference: every (HCP, action) literally
    for h in range(hc.n):
        for a in cat.actions:
            g = groups.index(a.group)
            want = st[h, g] != OPT_OUT and (a.channel != "sms" or st[h, g] == OPT_IN)
            want = want and hc.contacts_7d[h] + 1 <= 3 and hc.contacts_30d[h] + 1 <= 10
            assert el.mask[h, a.index] == want, (hc.ids[h], a.action, a.content_id)
    sms = next(a.index for a in cat.actions if a.channel == "sms")
    h2 = int(hc.lookup([ids["crm:2"]])[0])
    assert el.mask[h2, sms] and not el.mask[int(hc.lookup([ids["crm:3"]])[0]), sms]


def test_skip_cooldown(built: dict[str, Any]) -> None:
    cat, s = _catalogue(built, skip_cooldown_days=10)
    hc = H.load_hcps(built["eng"], built["hcps_table"], None, AS_OF)
    h2 = built["ids"]["crm:2"]
    skips = [
        {"hcp_id": h2, "action": "f2f_visit", "content_id": "c_detail", "decision": "skip",
         "decided_at": AS_OF - timedelta(days=3)},
        {"hcp_id": h2, "action": "sms", "content_id": None, "decision": "skip",
         "decided_at": AS_OF - timedelta(days=11)},  # past the cooldown
        {"hcp_id": h2, "action": "phone_call", "content_id": None, "decision": "accept",
         "decided_at": AS_OF - timedelta(days=1)},
        {"hcp_id": "nobody", "action": "sms", "content_id": None, "decision": "skip",
         "decided_at": AS_OF - timedelta(days=1)},
    ]
    m = skips_of(hc, cat, skips, s, AS_OF)
    hit = {(hc.ids[h], cat.actions[a].key) for h, a in zip(*np.nonzero(m), strict=True)}
    assert hit == {(h2, ("f2f_visit", "c_detail"))}
