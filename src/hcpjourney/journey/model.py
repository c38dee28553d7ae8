"""The journey map (journey.yaml, CONTRACT section 2, extended).

A map names the persona(s) it is drawn for, the goal, its type and ordered
stages. Each stage carries measurable entry rules (``enter_on``) and the
free-form mapping fields a CX team draws: goals, emotions, pain points,
designed touchpoints, owner, and for a service blueprint the layers behind
the customer's view. Free-form values are kept as written and written back by
:meth:`JourneyMap.to_yaml`, so nothing a person wrote is lost.

```yaml
name: Cardiology HCP journey
type: current_state            # current_state (default), future_state, day_in_the_life,
                               # service_blueprint
personas: [{id: busy_cardiologist, segments: [traditional_in_person]}]  # or `persona: text`
goal: Start suitable patients on cardiozen
product: cardiozen             # outcomes of this product mark adoption (any product if absent)
touchpoint_channels: {access hub: phone}   # free-text touchpoint -> channel[:action]
stages:
  - id: awareness
    enter_on: [{channel: email, action: opened}, {channel: web, action: visited}]
    conversion_window_days: 90   # optional, overrides the map's window for entering this stage
    touchpoints: [email, web:visited, rep visit]
    layers: {frontstage: [...], backstage: [...], support: [...]}   # service_blueprint only
conversion_window_days: 180
```

Designed touchpoints are matched to channels so that they can be compared
with measured ones (:mod:`hcpjourney.journey.gaps`): a touchpoint is a channel
name (``email``), ``channel:action`` (``web:visited``), a mapping with
``channel`` (and ``action``), or free text matched through a small synonym map
(``rep visit`` -> f2f_visit, ``HCP portal`` -> portal, ``MSL meeting`` ->
msl_meeting ...) extended by the map's ``touchpoint_channels``. Free text that
matches nothing is reported as unmatched, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hcpjourney.errors import ConfigError

MAP_TYPES: tuple[str, ...] = ("current_state", "future_state", "day_in_the_life", "service_blueprint")
DEFAULT_TYPE = "current_state"
# keys an enter_on item may name, each compared for equality with the event's column
MATCH_KEYS: tuple[str, ...] = ("channel", "action", "team", "direction", "content_id", "topic")
OUTCOME_KEY = "outcome"
OUTCOME_KINDS: tuple[str, ...] = ("nrx",)
# layers of a service blueprint stage (the customer's actions and evidence are optional)
BLUEPRINT_LAYERS: tuple[str, ...] = ("customer_actions", "evidence", "frontstage", "backstage", "support")
# free-form stage fields the product shows and keeps, in the order they are written back
STAGE_FREE_FIELDS: tuple[str, ...] = ("owner", "goals", "emotions", "pain_points", "touchpoints")

# Free-text touchpoint -> channel (or channel:action). Keys are normalised (see _norm).
TOUCHPOINT_SYNONYMS: dict[str, str] = {
    "rep visit": "f2f_visit",
    "rep visits": "f2f_visit",
    "rep call": "f2f_visit",
    "sales rep visit": "f2f_visit",
    "face to face": "f2f_visit",
    "face to face visit": "f2f_visit",
    "f2f": "f2f_visit",
    "detailing": "f2f_visit",
    "in person visit": "f2f_visit",
    "rep follow up": "f2f_visit",
    "remote detailing": "remote_visit",
    "remote visit": "remote_visit",
    "video call": "remote_visit",
    "virtual visit": "remote_visit",
    "e detailing": "remote_visit",
    "phone call": "phone",
    "call": "phone",
    "telephone": "phone",
    "e mail": "email",
    "emails": "email",
    "email campaign": "email",
    "text message": "sms",
    "text": "sms",
    "website": "web",
    "brand website": "web",
    "web site": "web",
    "hcp portal": "portal",
    "hcp website": "portal",
    "portal": "portal",
    "webinars": "webinar",
    "virtual event": "webinar",
    "congress": "congress",
    "congresses": "congress",
    "congress symposium": "congress",
    "conference": "congress",
    "symposium": "congress",
    "advisory board": "advisory_board",
    "advisory boards": "advisory_board",
    "msl meeting": "msl_meeting",
    "msl visit": "msl_meeting",
    "msl": "msl_meeting",
    "medical science liaison": "msl_meeting",
    "medical inquiry": "medical_inquiry",
    "medical information": "medical_inquiry",
    "medical information request": "medical_inquiry",
    "social media": "social",
    "samples": "sample",
    "sample": "sample",
    "sample drop": "sample",
    "speaker fee": "payment",
    "transfer of value": "payment",
}


def _norm(text: str) -> str:
    """Lower case, '-', '_' and '/' as spaces, single spaces: 'HCP-Portal ' -> 'hcp portal'."""
    return " ".join(re.sub(r"[-_/]+", " ", text.strip().lower()).split())


@dataclass(frozen=True)
class Rule:
    """One ``enter_on`` item: every named key equals the event's column, or an outcome."""

    fields: tuple[tuple[str, str], ...] = ()
    outcome: str | None = None

    def to_dict(self) -> dict[str, str]:
        if self.outcome is not None:
            return {OUTCOME_KEY: self.outcome}
        return dict(self.fields)


@dataclass(frozen=True)
class DesignedTouchpoint:
    """A designed touchpoint as written, with the channel (and action) it maps to."""

    text: str
    channel: str | None = None  # None: free text that matches no channel
    action: str | None = None

    @property
    def activity(self) -> str | None:
        """``channel`` or ``channel:action``, the key compared with measured touchpoints."""
        if self.channel is None:
            return None
        return f"{self.channel}:{self.action}" if self.action else self.channel


@dataclass(frozen=True)
class Stage:
    id: str
    enter_on: tuple[Rule, ...] = ()
    name: str | None = None
    conversion_window_days: float | None = None  # overrides the map's window for this stage
    owner: Any = None
    goals: Any = None
    emotions: Any = None
    pain_points: Any = None
    touchpoints: Any = None
    layers: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_outcome(self) -> bool:
        return any(r.outcome is not None for r in self.enter_on)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            d["name"] = self.name
        if self.enter_on:
            d["enter_on"] = [r.to_dict() for r in self.enter_on]
        if self.conversion_window_days is not None:
            d["conversion_window_days"] = self.conversion_window_days
        for k in STAGE_FREE_FIELDS:
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.layers is not None:
            d["layers"] = dict(self.layers)
        d.update(self.extra)
        return d


@dataclass(frozen=True)
class Persona:
    id: str
    description: str | None = None
    segments: tuple[str, ...] = ()  # segment names (segments table) this persona stands for
    extra: Mapping[str, Any] = field(default_factory=dict)
    plain: bool = field(default=False, compare=False)  # written as a bare string
    id_key: str = field(default="id", compare=False)  # written as `id` or `name`

    def to_yaml_value(self) -> Any:
        if self.plain:
            return self.id
        d: dict[str, Any] = {self.id_key: self.id}
        if self.description is not None:
            d["description"] = self.description
        if self.segments:
            d["segments"] = list(self.segments)
        d.update(self.extra)
        return d


@dataclass(frozen=True)
class JourneyMap:
    name: str
    stages: tuple[Stage, ...]
    type: str = DEFAULT_TYPE
    product: str | None = None
    conversion_window_days: float | None = None
    description: str | None = None
    goal: Any = None
    owner: Any = None
    personas: tuple[Persona, ...] = ()
    touchpoint_channels: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    # how the file was written, so that to_yaml gives it back: `persona` or `personas`,
    # and whether `type` was written out although it is the default
    persona_key: str = field(default="personas", compare=False)
    type_given: bool = field(default=False, compare=False)

    # ---------------------------------------------------------------- access
    @property
    def stage_ids(self) -> list[str]:
        return [s.id for s in self.stages]

    def stage(self, stage_id: str) -> Stage:
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise ConfigError(
            f"journey map '{self.name}' has no stage '{stage_id}'; its stages are "
            f"{', '.join(self.stage_ids)}"
        )

    def window_days(self, index: int) -> float | None:
        """Conversion window for entering stage ``index`` (0-based) from the previous one."""
        own = self.stages[index].conversion_window_days
        return own if own is not None else self.conversion_window_days

    @property
    def is_measurable(self) -> bool:
        return all(s.enter_on for s in self.stages)

    def require_measurable(self) -> None:
        missing = [s.id for s in self.stages if not s.enter_on]
        if missing:
            raise ConfigError(
                f"journey map '{self.name}': stage(s) {', '.join(missing)} have no enter_on; "
                "add entry rules to measure this map"
            )

    @property
    def slug(self) -> str:
        return slugify(self.name)

    def designed_touchpoints(self, stage_id: str) -> list[DesignedTouchpoint]:
        """The stage's designed touchpoints, each matched to a channel where possible."""
        return parse_touchpoints(self.stage(stage_id).touchpoints, self.touchpoint_channels)

    # ------------------------------------------------------------- to / from
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            d["description"] = self.description
        if self.type != DEFAULT_TYPE or self.type_given:
            d["type"] = self.type
        if self.personas:
            if self.persona_key == "persona" and len(self.personas) == 1 and self.personas[0].plain:
                d["persona"] = self.personas[0].id
            else:
                d["personas"] = [p.to_yaml_value() for p in self.personas]
        if self.goal is not None:
            d["goal"] = self.goal
        if self.owner is not None:
            d["owner"] = self.owner
        if self.product is not None:
            d["product"] = self.product
        if self.touchpoint_channels:
            d["touchpoint_channels"] = dict(self.touchpoint_channels)
        d["stages"] = [s.to_dict() for s in self.stages]
        if self.conversion_window_days is not None:
            d["conversion_window_days"] = self.conversion_window_days
        d.update(self.extra)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)

    @classmethod
    def from_yaml(cls, text: str, *, source: str | None = None) -> JourneyMap:
        where = source or "journey map"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"{where}: not valid YAML{at} ({problem})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> JourneyMap:
        return _parse_map(data, source)


def load_journey(path: str | Path) -> JourneyMap:
    """Read and validate a journey.yaml file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such journey map file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the journey map ({exc})") from None
    return JourneyMap.from_yaml(text, source=str(p))


def slugify(name: str) -> str:
    """'Cardiology HCP journey' -> 'cardiology-hcp-journey'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")
    return slug or "journey"


# --------------------------------------------------------------------- touchpoints
def parse_touchpoints(raw: Any, extra_synonyms: Mapping[str, str] | None = None) -> list[DesignedTouchpoint]:
    """Designed touchpoints (a list, or one item) matched to channels."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    synonyms = {**TOUCHPOINT_SYNONYMS, **{_norm(k): v for k, v in (extra_synonyms or {}).items()}}
    return [_touchpoint(item, synonyms) for item in items]


def _split_activity(text: str) -> tuple[str, str | None]:
    channel, _, action = text.partition(":")
    return channel.strip(), (action.strip() or None)


def _touchpoint(item: Any, synonyms: Mapping[str, str]) -> DesignedTouchpoint:
    from hcpjourney.contract.schemas import CHANNELS

    if isinstance(item, Mapping):
        label = str(item.get("name") or item.get("text") or item.get("channel") or item)
        ch = item.get("channel")
        act = item.get("action")
        if ch is not None:
            return DesignedTouchpoint(label, str(ch), str(act) if act is not None else None)
        item = label
    text = str(item)
    n = _norm(text)
    if ":" in text:
        ch, act = _split_activity(text)
        if ch and " " not in ch:
            return DesignedTouchpoint(text, ch, act)
    key = n.replace(" ", "_")
    if key in CHANNELS:
        return DesignedTouchpoint(text, key, None)
    target = synonyms.get(n)
    if target is None and n.endswith("s"):
        target = synonyms.get(n[:-1])
        if target is None and n[:-1].replace(" ", "_") in CHANNELS:
            target = n[:-1].replace(" ", "_")
    if target is None:
        return DesignedTouchpoint(text, None, None)
    ch, act = _split_activity(target)
    return DesignedTouchpoint(text, ch, act)


# ------------------------------------------------------------------------- parsing
_MAP_KEYS = {
    "name", "description", "type", "persona", "personas", "goal", "owner", "product",
    "touchpoint_channels", "stages", "conversion_window_days",
}
_STAGE_KEYS = {"id", "name", "enter_on", "conversion_window_days", "layers", *STAGE_FREE_FIELDS}


def _window(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: conversion_window_days must be a positive number of days, "
                          f"not {value!r}")
    return value


def _text(value: Any, where: str, key: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise ConfigError(f"{where}: '{key}' is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(f"{where}: '{key}' must be text, not {value!r}")
    return value


def _parse_rule(item: Any, where: str) -> Rule:
    if not isinstance(item, Mapping) or not item:
        raise ConfigError(
            f"{where}: must be a mapping such as {{channel: email, action: opened}} or "
            f"{{outcome: nrx}}, not {item!r}"
        )
    unknown = [str(k) for k in item if k not in MATCH_KEYS and k != OUTCOME_KEY]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}'; use {', '.join(MATCH_KEYS)} or outcome: nrx"
        )
    if OUTCOME_KEY in item:
        if len(item) > 1:
            raise ConfigError(f"{where}: 'outcome' cannot be combined with event keys; "
                              "put it in an enter_on item of its own")
        kind = item[OUTCOME_KEY]
        if kind not in OUTCOME_KINDS:
            raise ConfigError(
                f"{where}: unknown outcome {kind!r}; use outcome: nrx (the first month with nrx > 0)"
            )
        return Rule(outcome=str(kind))
    fields: list[tuple[str, str]] = []
    for k, v in item.items():
        if v is None or isinstance(v, Mapping | list | bool):
            raise ConfigError(f"{where}: {k} must be a single value, not {v!r}")
        fields.append((str(k), str(v)))
    return Rule(fields=tuple(fields))


def _parse_stage(data: Any, i: int, map_type: str, where: str) -> Stage:
    at = f"{where}: stage {i + 1}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{at} must be a mapping with an id and enter_on, not {data!r}")
    sid = data.get("id")
    if sid is None or (isinstance(sid, str) and not sid.strip()):
        raise ConfigError(f"{at} has no id; give every stage an id such as 'awareness'")
    if not isinstance(sid, str):
        raise ConfigError(f"{at}: id must be text, not {sid!r}")
    at = f"{where}: stage '{sid}'"
    raw_rules = data.get("enter_on")
    if raw_rules is None:
        if map_type == DEFAULT_TYPE:
            raise ConfigError(
                f"{at} has no enter_on; a current_state map measures every stage "
                "(e.g. enter_on: [{channel: email, action: opened}])"
            )
        rules: tuple[Rule, ...] = ()
    else:
        if isinstance(raw_rules, Mapping):
            raw_rules = [raw_rules]
        if not isinstance(raw_rules, list) or not raw_rules:
            raise ConfigError(f"{at}: enter_on must be a non-empty list of rules")
        rules = tuple(_parse_rule(r, f"{at}: enter_on item {j + 1}") for j, r in enumerate(raw_rules))
    layers = data.get("layers")
    if layers is not None:
        if map_type != "service_blueprint":
            raise ConfigError(f"{at}: layers belong to a map of type service_blueprint; "
                              "set type: service_blueprint or remove them")
        if not isinstance(layers, Mapping):
            raise ConfigError(f"{at}: layers must be a mapping of {', '.join(BLUEPRINT_LAYERS)}")
        bad = [str(k) for k in layers if k not in BLUEPRINT_LAYERS]
        if bad:
            raise ConfigError(f"{at}: unknown layer '{bad[0]}'; use {', '.join(BLUEPRINT_LAYERS)}")
        layers = dict(layers)
    return Stage(
        id=sid,
        enter_on=rules,
        name=_text(data.get("name"), at, "name"),
        conversion_window_days=_window(data.get("conversion_window_days"), at),
        owner=data.get("owner"),
        goals=data.get("goals"),
        emotions=data.get("emotions"),
        pain_points=data.get("pain_points"),
        touchpoints=data.get("touchpoints"),
        layers=layers,
        extra={k: v for k, v in data.items() if k not in _STAGE_KEYS},
    )


def _parse_persona(item: Any, where: str) -> Persona:
    if isinstance(item, str) and item.strip():
        return Persona(id=item, plain=True)
    if isinstance(item, Mapping):
        pid = item.get("id", item.get("name"))
        if not isinstance(pid, str) or not pid.strip():
            raise ConfigError(f"{where}: a persona needs an id (or name)")
        segs = item.get("segments", [])
        if isinstance(segs, str):
            segs = [segs]
        if not isinstance(segs, list) or not all(isinstance(s, str) for s in segs):
            raise ConfigError(f"{where}: persona '{pid}': segments must be a list of segment names")
        desc = _text(item.get("description"), f"{where}: persona '{pid}'", "description")
        key = "id" if "id" in item else "name"
        return Persona(id=pid, description=desc, segments=tuple(segs), id_key=key,
                       extra={k: v for k, v in item.items() if k not in ("description", "segments", key)})
    raise ConfigError(f"{where}: a persona is text or a mapping with an id, not {item!r}")


def _parse_map(data: Any, source: str | None) -> JourneyMap:
    where = source or "journey map"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a journey map is a YAML mapping with a name and stages")
    name = _text(data.get("name"), where, "name", required=True)
    assert name is not None
    where = source or f"journey map '{name}'"
    map_type = data.get("type", DEFAULT_TYPE)
    if map_type not in MAP_TYPES:
        raise ConfigError(f"{where}: unknown map type {map_type!r}; use one of {', '.join(MAP_TYPES)}")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(f"{where}: 'stages' must be a non-empty list of stages")
    stages = tuple(_parse_stage(s, i, map_type, where) for i, s in enumerate(raw_stages))
    seen: set[str] = set()
    for s in stages:
        if s.id in seen:
            raise ConfigError(f"{where}: stage id '{s.id}' is used twice; stage ids must be unique")
        seen.add(s.id)
    if "persona" in data and "personas" in data:
        raise ConfigError(f"{where}: give either persona or personas, not both")
    persona_key = "persona" if "persona" in data else "personas"
    raw_p = data.get(persona_key)
    if raw_p is None:
        raw_p = []
    elif not isinstance(raw_p, list):
        raw_p = [raw_p]
    personas = tuple(_parse_persona(p, where) for p in raw_p)
    tpc = data.get("touchpoint_channels") or {}
    if not isinstance(tpc, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in tpc.items()
    ):
        raise ConfigError(f"{where}: touchpoint_channels must map touchpoint text to a channel "
                          "(or channel:action), e.g. {{access hub: phone}}")
    product = data.get("product")
    if product is not None and not isinstance(product, str | int):
        raise ConfigError(f"{where}: product must be a product name, not {product!r}")
    extra = {k: v for k, v in data.items() if k not in _MAP_KEYS}
    return JourneyMap(
        name=name,
        stages=stages,
        type=map_type,
        product=str(product) if product is not None else None,
        conversion_window_days=_window(data.get("conversion_window_days"), where),
        description=_text(data.get("description"), where, "description"),
        goal=data.get("goal"),
        owner=data.get("owner"),
        personas=personas,
        persona_key=persona_key,
        touchpoint_channels=dict(tpc),
        extra=extra,
        type_given="type" in data,
    )
