"""The workspace: a folder holding hcpj.toml, the warehouse and the app database."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcpjourney.contract import schemas
from hcpjourney.errors import ConfigError, WorkspaceError

CONFIG_FILE = "hcpj.toml"
ENGINES = ("duckdb", "spark")

_TEMPLATE = """\
# hcpjourney workspace settings. Edit freely; unknown keys are ignored.

[workspace]
engine = "{engine}"                 # duckdb (embedded) or spark
warehouse = "warehouse.duckdb"      # the analytics warehouse, relative to this folder
app_db = "{app_db}"                 # SQLAlchemy URL of the app database (maps, users, audit)
memory_limit = "3GB"                # warehouse memory; larger work spills to disk

[contract]
# Channels and actions beyond the contract's lists that this workspace accepts.
channels = []
actions = []

[identity]
match_threshold = 0.9               # linkage probability at or above which records are one HCP
# review_low = 0.5                  # pairs from here up to review_high go to `hcpj review list`
# review_high = 0.95
# source_trust = ["crm", "open_payments", "events", "survey", "web"]  # golden-record survivorship

[quality]
stale_after_days = 365              # records whose updated_at is older are reported as stale

[nba]
# Shared pressure budget per HCP, across all teams and channels: outbound contacts in the
# 7 (30) days before --as-of plus the recommended one may not exceed these caps.
contacts_per_week = 3
contacts_per_month = 10
top_k = 3                           # ranked alternatives per HCP (rank 1 = the next best action)
one_per_action = true               # alternatives are different actions (not the same one with other content)
engagement_value = 1.0              # value of one engagement (email opened, visit completed ...)
progression_horizon_days = 90       # a touch "moves" an HCP when the next stage follows within this
opt_in_required = []                # channels needing an explicit opt-in row, e.g. ["sms"]
quiet_hours = [21, 7]               # no send/visit times from 21:00 to 07:00 local time
skip_cooldown_days = 28             # an action a rep skipped is not proposed again for this long
exploration = "none"                # none | epsilon | thompson (keeps the system learning)
epsilon = 0.05
seed = 0
# quiet_periods = [{{start = "2025-12-22", end = "2026-01-02", channels = ["email", "sms"], teams = []}}]
# content_purpose = {{"cz-0011" = "medical"}}   # overrides how content purpose is derived

[nba.stage_values]                  # value of moving an HCP into each stage
awareness = 1.0
consideration = 2.0
decision = 4.0
adoption = 10.0
advocacy = 5.0
"""



@dataclass
class Workspace:
    """An opened workspace folder."""

    root: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def engine_name(self) -> str:
        name = str(self.settings.get("workspace", {}).get("engine", "duckdb"))
        if name not in ENGINES:
            raise ConfigError(
                f"{self.root / CONFIG_FILE}: engine '{name}' is unknown; use one of "
                f"{', '.join(ENGINES)}"
            )
        return name

    @property
    def warehouse_path(self) -> Path:
        rel = self.settings.get("workspace", {}).get("warehouse", "warehouse.duckdb")
        return self.root / str(rel)

    @property
    def app_db_url(self) -> str:
        url = self.settings.get("workspace", {}).get("app_db")
        return str(url) if url else f"sqlite:///{self.root / 'app.db'}"

    @property
    def memory_limit(self) -> str | None:
        value = self.settings.get("workspace", {}).get("memory_limit")
        return str(value) if value else None

    def allowed(self, enum_name: str) -> tuple[str, ...]:
        """An enumeration of the contract, extended by this workspace's [contract] lists."""
        base = {"channels": schemas.CHANNELS, "actions": schemas.ACTIONS}[enum_name]
        extra = self.settings.get("contract", {}).get(enum_name, [])
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise ConfigError(
                f"{self.root / CONFIG_FILE}: [contract] {enum_name} must be a list of strings"
            )
        return tuple(dict.fromkeys([*base, *(x.strip().lower() for x in extra)]))

    def setting(self, section: str, key: str, default: Any) -> Any:
        return self.settings.get(section, {}).get(key, default)

    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        root = Path(path).resolve()
        cfg = root / CONFIG_FILE
        if not cfg.is_file():
            raise WorkspaceError(
                f"{root} is not an hcpjourney workspace (no {CONFIG_FILE}); "
                f"create one with `hcpj init {path}` or pass --workspace"
            )
        try:
            settings = tomllib.loads(cfg.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise WorkspaceError(f"{cfg} is not valid TOML: {exc}") from None
        ws = cls(root=root, settings=settings)
        ws.engine_name  # noqa: B018 - validates the engine name early
        return ws

    @classmethod
    def init(cls, path: str | Path, engine: str = "duckdb", app_db: str | None = None) -> Workspace:
        if engine not in ENGINES:
            raise ConfigError(f"engine '{engine}' is unknown; use one of {', '.join(ENGINES)}")
        root = Path(path).resolve()
        cfg = root / CONFIG_FILE
        if cfg.exists():
            return cls.open(root)
        root.mkdir(parents=True, exist_ok=True)
        url = app_db or f"sqlite:///{root / 'app.db'}"
        cfg.write_text(_TEMPLATE.format(engine=engine, app_db=url), encoding="utf-8")
        return cls.open(root)
