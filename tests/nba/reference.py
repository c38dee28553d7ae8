"""The NBA tests' simulated world and a plain-Python reference.

The reference reads warehouse rows and applies the CONTRACT's eligibility words
literally (latest consent row at or before --as-of per HCP, channel and purpose;
content approved and not past expires_at; contact caps), one row at a time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hcpjourney import engine as engines
from hcpjourney.config import Workspace

N_HCPS = 700
SEED = 5
AS_OF = datetime(2025, 10, 6)  # a Monday, three quarters into the simulated year

# (channel, action) pairs that are one outbound contact (the default action types)
CONTACTS = {
    ("email", "sent"), ("sms", "sent"), ("webinar", "sent"),
    ("f2f_visit", "completed"), ("f2f_visit", "declined"),
    ("remote_visit", "completed"), ("remote_visit", "declined"),
    ("phone", "completed"), ("phone", "declined"),
    ("msl_meeting", "completed"), ("msl_meeting", "declined"),
}
FORMATS = {
    "email": ("email_template",), "f2f_visit": ("detail_aid", "slide_deck", "infographic"),
    "remote_visit": ("detail_aid", "slide_deck", "infographic"),
    "webinar_invitation": ("webinar_recording",), "msl_meeting": ("slide_deck", "article"),
}
CHANNEL_OF = {"email": "email", "sms": "sms", "f2f_visit": "f2f_visit",
              "remote_visit": "remote_visit", "phone_call": "phone",
              "webinar_invitation": "webinar", "msl_meeting": "msl_meeting", "sample": "sample"}
FIXED_TEAM = {"sms": "commercial", "f2f_visit": "commercial", "remote_visit": "commercial",
              "phone_call": "commercial", "msl_meeting": "medical", "sample": "commercial"}


@dataclass
class Ref:
    """Plain-Python view of the warehouse as of a date."""

    as_of: datetime
    hcps: list[str]
    consents: dict[tuple[str, str, str], list[tuple[datetime, str]]]
    content: dict[str, dict[str, Any]]
    events: dict[str, list[dict[str, Any]]]
    content_teams: dict[str, Counter[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, eng: engines.Engine, as_of: datetime) -> Ref:
        hcp_of = {r["record_id"]: r["hcp_id"]
                  for r in eng.to_pyarrow(eng.table("identities")).to_pylist()}
        cons: dict[tuple[str, str, str], list[tuple[datetime, str]]] = defaultdict(list)
        for r in eng.to_pyarrow(eng.table("consents")).to_pylist():
            if r["record_id"] in hcp_of:
                cons[(hcp_of[r["record_id"]], r["channel"], r["purpose"])].append((r["ts"], r["status"]))
        content = {r["content_id"]: r for r in eng.to_pyarrow(eng.table("content")).to_pylist()}
        events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        teams: dict[str, Counter[str]] = defaultdict(Counter)
        for r in eng.to_pyarrow(eng.table("events")).to_pylist():
            events[r["hcp_id"]].append(r)
            if (r["content_id"] and r["ts"] < as_of and r["team"]
                    and r["direction"] in (None, "outbound")):
                teams[r["content_id"]][r["team"]] += 1
        hcps = sorted(r["hcp_id"] for r in eng.to_pyarrow(eng.table("golden").select("hcp_id")).to_pylist())
        return cls(as_of, hcps, dict(cons), content, dict(events), dict(teams))

    # --- rules, literally
    def consent(self, hcp: str, channel: str, purpose: str) -> str | None:
        rows = [r for r in self.consents.get((hcp, channel, purpose), []) if r[0] <= self.as_of]
        if not rows:
            return None
        # latest row; at the same instant opt_out wins
        return max(rows, key=lambda r: (r[0], r[1] == "opt_out"))[1]

    def contacts(self, hcp: str, days: int) -> int:
        lo = self.as_of - timedelta(days=days)
        return sum(1 for e in self.events.get(hcp, [])
                   if lo <= e["ts"] < self.as_of and (e["channel"], e["action"]) in CONTACTS
                   and e["direction"] in (None, "outbound"))

    def purpose(self, content_id: str) -> str:
        c = self.content_teams.get(content_id, Counter())
        med = c["medical"]
        return "medical" if med > sum(c.values()) - med else "promotional"

    def content_ok(self, content_id: str) -> bool:
        c = self.content[content_id]
        return (c["mlr_status"] == "approved"
                and (c["approved_at"] is None or c["approved_at"] <= self.as_of)
                and (c["expires_at"] is None or c["expires_at"] > self.as_of)
                and (c["audience"] or "hcp") == "hcp")

    def violations(self, row: dict[str, Any], *, week: int, month: int,
                   opt_in_required: tuple[str, ...] = (),
                   quiet: tuple[str, ...] = ()) -> list[str]:
        """Every rule a recommendation row breaks (empty: eligible)."""
        out: list[str] = []
        hcp, action, channel, team = row["hcp_id"], row["action"], row["channel"], row["team"]
        if CHANNEL_OF.get(action) != channel:
            out.append("channel")
        purpose = "medical" if team == "medical" else "promotional"
        st = self.consent(hcp, channel, purpose)
        if st == "opt_out":
            out.append("opted_out")
        if channel in opt_in_required and st != "opt_in":
            out.append("no_opt_in")
        cid = row["content_id"]
        if cid is None:
            if action in FORMATS:
                out.append("missing_content")
        else:
            if cid not in self.content or not self.content_ok(cid):
                out.append("content")
            elif self.content[cid]["format"] not in FORMATS.get(action, ()):
                out.append("format")
            elif self.purpose(cid) != purpose:
                out.append("team_purpose")
        if action in FIXED_TEAM and FIXED_TEAM[action] != team:
            out.append("team")
        if self.contacts(hcp, 7) + 1 > week:
            out.append("cap_week")
        if self.contacts(hcp, 30) + 1 > month:
            out.append("cap_month")
        if channel in quiet:
            out.append("quiet")
        return out

    def has_eligible(self, hcp: str, *, week: int, month: int, skip_types: tuple[str, ...] = (),
                     opt_in_required: tuple[str, ...] = (), quiet: tuple[str, ...] = ()) -> bool:
        if self.contacts(hcp, 7) + 1 > week or self.contacts(hcp, 30) + 1 > month:
            return False
        for action, channel in CHANNEL_OF.items():
            if action in skip_types or channel in quiet:
                continue
            if action in FORMATS:
                options = [(cid, self.purpose(cid)) for cid, c in self.content.items()
                           if c["format"] in FORMATS[action] and self.content_ok(cid)]
                teams = [("medical" if p == "medical" else "commercial", p) for _, p in options]
                if action in FIXED_TEAM:
                    teams = [(t, p) for t, p in teams if t == FIXED_TEAM[action]]
            else:
                teams = [(FIXED_TEAM[action], "promotional")]
            for _team, purpose in set(teams):
                st = self.consent(hcp, channel, purpose)
                if st == "opt_out" or (channel in opt_in_required and st != "opt_in"):
                    continue
                return True
        return False


@dataclass
class World:
    ws: Workspace
    drop: Path

    def engine(self) -> engines.Engine:
        return engines.connect(self.ws)
