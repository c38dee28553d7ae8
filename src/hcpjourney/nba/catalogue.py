"""The action catalogue: channel x approved content, each with its team.

An *action type* says how a channel is used (``email``, ``sms``, ``f2f_visit``,
``remote_visit``, ``phone_call``, ``webinar_invitation``, ``msl_meeting``,
``sample``): its team, the content formats it can carry (none for content-free
actions such as an SMS reminder), the capacity resource it consumes, which
logged actions count as a contact, and which count as engagement. A workspace
may change or add types in ``[nba.actions.NAME]``.

The catalogue at an as-of date is every action type crossed with every piece of
content it can carry; the rules that depend only on the content and the date
(MLR status and expiry, quiet periods, the team/purpose rule) are applied here,
and the candidates they remove are kept in ``blocked`` for explanations.

Content purpose (promotional vs medical) decides the team and the consent
purpose. It is taken from, in order: ``[nba] content_purpose`` in hcpj.toml; a
``purpose`` column of the content file (kept in its attributes); the team of
the outbound events that carried the content so far (medical when most of them
were by the medical team); ``promotional`` tonality; otherwise promotional
(the reading that keeps unclassified content away from medical teams).
Medical content only goes through the medical team (with medical consent),
promotional content only through the commercial team (promotional consent).
Content for patients (``audience = patient``) is not sent to HCPs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hcpjourney.errors import ConfigError
from hcpjourney.nba.settings import NbaSettings

PROMOTIONAL = "promotional"
MEDICAL = "medical"
PURPOSE_OF_TEAM = {"commercial": PROMOTIONAL, "medical": MEDICAL}
TEAM_OF_PURPOSE = {PROMOTIONAL: "commercial", MEDICAL: "medical"}
BY_CONTENT = "by_content"  # team follows the content's purpose

# Rules that remove catalogue candidates (before any HCP is looked at).
RULE_NOT_APPROVED = "content_not_approved"
RULE_NOT_YET_APPROVED = "content_not_yet_approved"
RULE_EXPIRED = "content_expired"
RULE_QUIET_PERIOD = "quiet_period"
RULE_TEAM_PURPOSE = "team_purpose"
# Rules that remove candidates per HCP.
RULE_OPTED_OUT = "opted_out"
RULE_NO_OPT_IN = "no_opt_in"
RULE_CONTACT_CAP_WEEK = "contact_cap_week"
RULE_CONTACT_CAP_MONTH = "contact_cap_month"
RULE_SKIPPED = "recently_skipped"

RULE_TEXT: dict[str, str] = {
    RULE_NOT_APPROVED: "not MLR-approved",
    RULE_NOT_YET_APPROVED: "not yet approved",
    RULE_EXPIRED: "expired",
    RULE_QUIET_PERIOD: "quiet period",
    RULE_TEAM_PURPOSE: "wrong team for the content's purpose",
    RULE_OPTED_OUT: "opted out",
    RULE_NO_OPT_IN: "no opt-in on file",
    RULE_CONTACT_CAP_WEEK: "weekly contact cap reached",
    RULE_CONTACT_CAP_MONTH: "monthly contact cap reached",
    RULE_SKIPPED: "skipped by the rep recently",
}


@dataclass(frozen=True)
class ActionType:
    name: str
    channel: str
    team: str  # commercial | medical | by_content
    formats: tuple[str, ...] | None  # None: carries no content
    resource: str
    contact_actions: tuple[str, ...]
    engage_actions: tuple[str, ...]
    kind: str = "digital"  # digital | personal: shapes the timing model
    contact: bool = True  # counts toward the pressure budget (a sample drop rides on a visit)

    @property
    def has_content(self) -> bool:
        return self.formats is not None


DEFAULT_TYPES: tuple[ActionType, ...] = (
    ActionType("email", "email", BY_CONTENT, ("email_template",), "email", ("sent",), ("opened",)),
    ActionType("sms", "sms", "commercial", None, "sms", ("sent",), ("clicked",)),
    ActionType("f2f_visit", "f2f_visit", "commercial", ("detail_aid", "slide_deck", "infographic"),
               "rep_visit", ("completed", "declined"), ("completed",), "personal"),
    ActionType("remote_visit", "remote_visit", "commercial",
               ("detail_aid", "slide_deck", "infographic"), "rep_visit", ("completed", "declined"),
               ("completed",), "personal"),
    ActionType("phone_call", "phone", "commercial", None, "rep_visit", ("completed", "declined"),
               ("completed",), "personal"),
    ActionType("webinar_invitation", "webinar", BY_CONTENT, ("webinar_recording",), "webinar",
               ("sent",), ("registered",)),
    ActionType("msl_meeting", "msl_meeting", "medical", ("slide_deck", "article"), "msl_visit",
               ("completed", "declined"), ("completed",), "personal"),
    ActionType("sample", "sample", "commercial", None, "rep_visit", ("delivered", "declined"),
               ("delivered",), "personal", contact=False),
)


def action_types(settings: NbaSettings) -> tuple[ActionType, ...]:
    """The default types, changed or extended by ``[nba.actions.NAME]`` (``enabled = false`` drops one)."""
    types = {t.name: t for t in DEFAULT_TYPES}
    for name, spec in settings.actions.items():
        where = f"[nba.actions.{name}]"
        base = types.get(name)
        if spec.get("enabled", True) is False:
            types.pop(name, None)
            continue
        if base is None and "channel" not in spec:
            raise ConfigError(f"{where} is a new action type: give it a channel")
        kw: dict[str, Any] = {}
        for key in ("channel", "team", "resource", "kind"):
            if key in spec:
                kw[key] = str(spec[key]).strip().lower()
        if "contact" in spec:
            kw["contact"] = bool(spec["contact"])
        for key in ("contact_actions", "engage_actions"):
            if key in spec:
                v = spec[key]
                if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                    raise ConfigError(f"{where} {key} must be a non-empty list of actions")
                kw[key] = tuple(v)
        if "formats" in spec:
            v = spec["formats"]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{where} formats must be a list of content formats ([] for none)")
            kw["formats"] = tuple(v) if v else None
        if base is None:
            ch = kw["channel"]
            base = ActionType(name, ch, "commercial", None, ch, ("sent", "completed", "declined"),
                              ("opened", "clicked", "completed", "registered"))
        t = replace(base, **kw)
        if t.team not in ("commercial", "medical", BY_CONTENT):
            raise ConfigError(f"{where} team must be commercial, medical or {BY_CONTENT}")
        if t.kind not in ("digital", "personal"):
            raise ConfigError(f"{where} kind must be digital or personal")
        types[name] = t
    return tuple(types.values())


@dataclass(frozen=True)
class Action:
    """One catalogue entry: an action type with (optionally) one piece of content."""

    index: int
    action: str
    channel: str
    content_id: str | None
    team: str
    purpose: str
    resource: str
    kind: str
    format: str | None = None
    theme: str | None = None
    tonality: str | None = None
    aesthetics: str | None = None
    key_message: str | None = None
    title: str | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.action, self.content_id)

    @property
    def group(self) -> tuple[str, str]:
        """The consent it needs: (channel, purpose)."""
        return (self.channel, self.purpose)


@dataclass(frozen=True)
class Blocked:
    action: str
    channel: str
    content_id: str | None
    team: str
    rule: str


@dataclass
class Catalogue:
    actions: list[Action]
    blocked: list[Blocked]
    types: tuple[ActionType, ...]
    purposes: dict[str, str] = field(default_factory=dict)  # content_id -> purpose

    def __len__(self) -> int:
        return len(self.actions)

    def type_of(self, name: str) -> ActionType:
        for t in self.types:
            if t.name == name:
                return t
        raise KeyError(name)

    def channels(self) -> list[str]:
        return sorted({a.channel for a in self.actions})

    def groups(self) -> list[tuple[str, str]]:
        """Distinct (channel, purpose) consent groups of the catalogue, in a stable order."""
        return sorted({a.group for a in self.actions})


def content_purpose(row: Mapping[str, Any], history: Mapping[str, Mapping[str, int]],
                    overrides: Mapping[str, str]) -> str:
    """promotional or medical for one content row (see the module docstring for the order)."""
    cid = str(row["content_id"])
    if cid in overrides:
        return overrides[cid]
    attrs = row.get("attributes")
    if attrs:
        try:
            data = json.loads(attrs) if isinstance(attrs, str) else dict(attrs)
        except (ValueError, TypeError):
            data = {}
        p = str(data.get("purpose") or "").strip().lower()
        if p in (PROMOTIONAL, MEDICAL):
            return p
    used = history.get(cid) or {}
    med = int(used.get("medical", 0))
    other = sum(int(v) for k, v in used.items() if k != "medical")
    if med + other > 0:
        return MEDICAL if med > other else PROMOTIONAL
    return PROMOTIONAL


def _as_dt(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v if v.tzinfo is None else v.astimezone(UTC).replace(tzinfo=None)
    return None


def build_catalogue(
    content: Sequence[Mapping[str, Any]],
    settings: NbaSettings,
    as_of: datetime,
    *,
    history: Mapping[str, Mapping[str, int]] | None = None,
    types: Sequence[ActionType] | None = None,
) -> Catalogue:
    """The eligible catalogue at ``as_of`` (naive UTC) and the candidates removed, with why.

    ``content`` holds rows of the warehouse ``content`` table; ``history`` maps
    content_id -> {team: outbound uses} (for the purpose rule).
    """
    types = tuple(types) if types is not None else action_types(settings)
    history = history or {}
    week_start: date = as_of.date()
    week_end = week_start + timedelta(days=6)
    rows = sorted(content, key=lambda r: str(r["content_id"]))
    purposes = {str(r["content_id"]): content_purpose(r, history, settings.content_purpose)
                for r in rows}
    actions: list[Action] = []
    blocked: list[Blocked] = []

    def quiet(channel: str, team: str) -> bool:
        return any(q.blocks(channel, team, week_start, week_end) for q in settings.quiet_periods)

    for t in types:
        if not t.has_content:
            team = t.team if t.team != BY_CONTENT else "commercial"
            if quiet(t.channel, team):
                blocked.append(Blocked(t.name, t.channel, None, team, RULE_QUIET_PERIOD))
                continue
            actions.append(Action(len(actions), t.name, t.channel, None, team, PURPOSE_OF_TEAM[team],
                                  t.resource, t.kind))
            continue
        fmts = set(t.formats or ())
        for r in rows:
            if r.get("format") not in fmts:
                continue
            if (r.get("audience") or "hcp") != "hcp":
                continue
            cid = str(r["content_id"])
            purpose = purposes[cid]
            team = TEAM_OF_PURPOSE[purpose] if t.team == BY_CONTENT else t.team
            rule: str | None = None
            approved_at, expires_at = _as_dt(r.get("approved_at")), _as_dt(r.get("expires_at"))
            if PURPOSE_OF_TEAM[team] != purpose:
                rule = RULE_TEAM_PURPOSE
            elif r.get("mlr_status") != "approved":
                rule = RULE_NOT_APPROVED
            elif approved_at is not None and approved_at > as_of:
                rule = RULE_NOT_YET_APPROVED
            elif expires_at is not None and expires_at <= as_of:
                rule = RULE_EXPIRED
            elif quiet(t.channel, team):
                rule = RULE_QUIET_PERIOD
            if rule is not None:
                blocked.append(Blocked(t.name, t.channel, cid, team, rule))
                continue
            actions.append(Action(
                len(actions), t.name, t.channel, cid, team, purpose, t.resource, t.kind,
                format=r.get("format"), theme=r.get("theme"), tonality=r.get("tonality"),
                aesthetics=r.get("aesthetics"), key_message=r.get("key_message"),
                title=r.get("title"),
            ))
    return Catalogue(actions, blocked, types, purposes)
