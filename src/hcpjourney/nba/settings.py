"""NBA settings: the ``[nba]`` section of hcpj.toml, validated once.

Every value has a default, so a workspace without an ``[nba]`` section works.
A bad value raises :class:`~hcpjourney.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from hcpjourney.errors import ConfigError

EXPLORATION = ("none", "epsilon", "thompson")
TEAMS = ("commercial", "medical")

# Value of entering each stage of the packaged journey; unknown stages are worth 0.
DEFAULT_STAGE_VALUES: dict[str, float] = {
    "awareness": 1.0,
    "consideration": 2.0,
    "decision": 4.0,
    "adoption": 10.0,
    "advocacy": 5.0,
}


@dataclass(frozen=True)
class QuietPeriod:
    """No action of the named channels/teams (all when empty) between two dates, inclusive."""

    start: date
    end: date
    channels: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()

    def blocks(self, channel: str, team: str, week_start: date, week_end: date) -> bool:
        """Whether the period overlaps [week_start, week_end] and covers channel and team."""
        if self.end < week_start or self.start > week_end:
            return False
        if self.channels and channel not in self.channels:
            return False
        return not (self.teams and team not in self.teams)


@dataclass(frozen=True)
class NbaSettings:
    contacts_per_week: int = 3
    contacts_per_month: int = 10
    top_k: int = 3
    one_per_action: bool = True
    engagement_value: float = 1.0
    stage_values: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STAGE_VALUES))
    progression_horizon_days: int = 90
    opt_in_required: tuple[str, ...] = ()
    quiet_hours: tuple[int, int] | None = (21, 7)
    quiet_periods: tuple[QuietPeriod, ...] = ()
    skip_cooldown_days: int = 28
    exploration: str = "none"
    epsilon: float = 0.05
    seed: int = 0
    history_days: int = 365
    content_purpose: dict[str, str] = field(default_factory=dict)
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, *, where: str = "hcpj.toml") -> NbaSettings:
        """Parse the whole workspace settings (uses the ``nba`` section) or the section itself."""
        raw: Any = settings or {}
        if "nba" in raw and isinstance(raw.get("nba"), Mapping):
            raw = raw["nba"]
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: [nba] must be a table")
        d = cls()

        def bad(key: str, what: str) -> ConfigError:
            return ConfigError(f"{where}: [nba] {key} must be {what}")

        def integer(key: str, default: int, lo: int = 0) -> int:
            v = raw.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise bad(key, f"a whole number >= {lo}")
            return int(v)

        def number(key: str, default: float, lo: float = 0.0, hi: float | None = None) -> float:
            v = raw.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < lo or (hi is not None and v > hi):
                rng = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
                raise bad(key, f"a number {rng}")
            return float(v)

        def boolean(key: str, default: bool) -> bool:
            v = raw.get(key, default)
            if not isinstance(v, bool):
                raise bad(key, "true or false")
            return v

        def strings(key: str) -> tuple[str, ...]:
            v = raw.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise bad(key, "a list of strings")
            return tuple(x.strip().lower() for x in v)

        stage_values = dict(DEFAULT_STAGE_VALUES)
        sv = raw.get("stage_values", {})
        if not isinstance(sv, Mapping):
            raise bad("stage_values", "a table of stage = value")
        for k, v in sv.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise bad(f"stage_values.{k}", "a number")
            stage_values[str(k)] = float(v)

        qh = raw.get("quiet_hours", list(d.quiet_hours or ()))
        quiet_hours: tuple[int, int] | None
        if qh in ([], None, False):
            quiet_hours = None
        elif (isinstance(qh, list) and len(qh) == 2
              and all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 23 for h in qh)):
            quiet_hours = (int(qh[0]), int(qh[1]))
        else:
            raise bad("quiet_hours", "[FROM_HOUR, TO_HOUR] with hours 0..23, or []")

        periods: list[QuietPeriod] = []
        qp = raw.get("quiet_periods", [])
        if not isinstance(qp, list):
            raise bad("quiet_periods", "a list of {start, end, channels, teams} tables")
        for i, item in enumerate(qp):
            key = f"quiet_periods[{i}]"
            if not isinstance(item, Mapping) or "start" not in item or "end" not in item:
                raise bad(key, "a table with start and end dates")
            s, e = _as_date(item["start"]), _as_date(item["end"])
            if s is None or e is None or e < s:
                raise bad(key, "a table whose start and end are dates (YYYY-MM-DD), end >= start")
            ch, tm = item.get("channels", []), item.get("teams", [])
            if not isinstance(ch, list) or not isinstance(tm, list):
                raise bad(key, "a table whose channels and teams are lists")
            periods.append(QuietPeriod(s, e, tuple(str(x).lower() for x in ch),
                                       tuple(str(x).lower() for x in tm)))

        expl = str(raw.get("exploration", d.exploration)).strip().lower()
        if expl not in EXPLORATION:
            raise bad("exploration", "one of " + ", ".join(EXPLORATION))

        cp = raw.get("content_purpose", {})
        if not isinstance(cp, Mapping) or not all(str(v) in ("promotional", "medical") for v in cp.values()):
            raise bad("content_purpose", "a table of content_id = \"promotional\" or \"medical\"")
        acts = raw.get("actions", {})
        if not isinstance(acts, Mapping) or not all(isinstance(v, Mapping) for v in acts.values()):
            raise bad("actions", "a table of action tables ([nba.actions.NAME])")

        week = integer("contacts_per_week", d.contacts_per_week)
        month = integer("contacts_per_month", d.contacts_per_month)
        seed = raw.get("seed", d.seed)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise bad("seed", "a whole number")
        return cls(
            contacts_per_week=week,
            contacts_per_month=month,
            top_k=integer("top_k", d.top_k, 1),
            one_per_action=boolean("one_per_action", d.one_per_action),
            engagement_value=number("engagement_value", d.engagement_value),
            stage_values=stage_values,
            progression_horizon_days=integer("progression_horizon_days", d.progression_horizon_days, 1),
            opt_in_required=strings("opt_in_required"),
            quiet_hours=quiet_hours,
            quiet_periods=tuple(periods),
            skip_cooldown_days=integer("skip_cooldown_days", d.skip_cooldown_days),
            exploration=expl,
            epsilon=number("epsilon", d.epsilon, 0.0, 1.0),
            seed=int(seed),
            history_days=integer("history_days", d.history_days, 7),
            content_purpose={str(k): str(v) for k, v in cp.items()},
            actions={str(k): dict(v) for k, v in acts.items()},
        )

    def allowed_hour(self, hour: int) -> bool:
        """Whether a local hour lies outside the quiet hours."""
        if self.quiet_hours is None:
            return True
        a, b = self.quiet_hours
        if a == b:
            return True
        inside = (a <= hour or hour < b) if a > b else (a <= hour < b)
        return not inside


def _as_date(v: Any) -> date | None:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(str(v)[:10])
    except ValueError:
        return None
