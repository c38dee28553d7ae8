"""The journey map model: parsing, validation messages, round trips, designed touchpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hcpjourney.errors import ConfigError, HcpjError
from hcpjourney.journey.model import (
    MATCH_KEYS,
    JourneyMap,
    Rule,
    load_journey,
    parse_touchpoints,
    slugify,
)
from hcpjourney.simulate import journey_template

SIM_YAML = Path(__file__).resolve().parents[2] / "src" / "hcpjourney" / "simulate" / "journey.yaml"


def _map(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Test journey",
        "stages": [
            {"id": "awareness", "enter_on": [{"channel": "email", "action": "opened"}]},
            {"id": "adoption", "enter_on": [{"outcome": "nrx"}]},
        ],
    }
    base.update(over)
    return base


def _err(data: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        JourneyMap.from_dict(data)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_simulator_map_parses_with_every_field() -> None:
    m = load_journey(SIM_YAML)
    assert m.name == "Cardiology HCP journey"
    assert m.stage_ids == ["awareness", "consideration", "decision", "adoption", "advocacy"]
    assert m.product == "cardiozen"
    assert m.conversion_window_days == 180
    assert m.type == "current_state"
    assert m.stages[0].enter_on == (
        Rule(fields=(("channel", "email"), ("action", "opened"))),
        Rule(fields=(("channel", "web"), ("action", "visited"))),
    )
    assert m.stages[3].enter_on == (Rule(outcome="nrx"),)
    assert m.stages[3].is_outcome and not m.stages[0].is_outcome
    assert m.stages[4].enter_on[0].fields == (
        ("channel", "congress"), ("action", "attended"), ("team", "medical"))
    assert m.stages[0].owner == "brand marketing"
    assert m.stages[0].emotions == ["curious", "sceptical", "busy"]
    assert len(m.stages[0].pain_points) == 2
    assert m.window_days(1) == 180
    assert m.is_measurable


def test_round_trip_keeps_everything_written() -> None:
    text = journey_template()
    m = JourneyMap.from_yaml(text)
    again = m.to_yaml()
    assert yaml.safe_load(again) == yaml.safe_load(text)
    assert JourneyMap.from_yaml(again) == m


def test_service_blueprint_with_layers_personas_and_extras_round_trips() -> None:
    data = {
        "name": "Blueprint",
        "type": "service_blueprint",
        "personas": [
            {"id": "busy_cardiologist", "description": "sees 30 patients a day",
             "segments": ["traditional_in_person"], "quote": "no time"},
            "digital native",
        ],
        "goal": "Start suitable patients",
        "owner": "CX team",
        "product": "cardiozen",
        "touchpoint_channels": {"access hub": "phone:completed"},
        "stages": [
            {"id": "awareness", "name": "Aware",
             "enter_on": {"channel": "email", "action": "opened"},
             "conversion_window_days": 30,
             "touchpoints": ["email", "access hub"],
             "layers": {"frontstage": ["rep visit"], "backstage": ["CRM call planning"],
                        "support": ["MLR review"]},
             "moment_of_truth": True},
            {"id": "decision", "touchpoints": ["MSL meeting"]},  # no enter_on: allowed here
        ],
        "custom_field": {"a": 1},
    }
    m = JourneyMap.from_dict(data)
    assert m.type == "service_blueprint"
    assert [p.id for p in m.personas] == ["busy_cardiologist", "digital native"]
    assert m.personas[0].segments == ("traditional_in_person",)
    assert m.stages[0].layers == data["stages"][0]["layers"]  # type: ignore[index]
    assert m.stages[0].extra == {"moment_of_truth": True}
    assert m.window_days(0) == 30 and m.window_days(1) is None
    assert not m.is_measurable
    with pytest.raises(ConfigError, match=r"decision.*no enter_on"):
        m.require_measurable()
    back = yaml.safe_load(m.to_yaml())
    expected = dict(data)
    # a single enter_on mapping is written back as a one-item list
    expected["stages"] = [dict(data["stages"][0], enter_on=[{"channel": "email", "action": "opened"}]),
                          data["stages"][1]]
    assert back == expected
    assert JourneyMap.from_yaml(m.to_yaml()) == m
    tps = m.designed_touchpoints("awareness")
    assert [(t.text, t.channel, t.action) for t in tps] == [
        ("email", "email", None), ("access hub", "phone", "completed")]


def test_persona_as_single_text_round_trips() -> None:
    m = JourneyMap.from_dict(_map(persona="Busy cardiologist", type="current_state"))
    assert [p.id for p in m.personas] == ["Busy cardiologist"]
    assert yaml.safe_load(m.to_yaml())["persona"] == "Busy cardiologist"
    assert yaml.safe_load(m.to_yaml())["type"] == "current_state"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_map(type="journey_sketch"), "unknown map type 'journey_sketch'"),
        (_map(stages=[{"enter_on": [{"channel": "email"}]}]), "stage 1 has no id"),
        (_map(stages=[{"id": "a", "enter_on": [{"channel": "email"}]},
                      {"id": "a", "enter_on": [{"channel": "web"}]}]), "stage id 'a' is used twice"),
        (_map(stages=[{"id": "a", "enter_on": [{"chanel": "email"}]}]), "unknown key 'chanel'"),
        (_map(stages=[{"id": "a", "enter_on": [{"outcome": "trx"}]}]), "unknown outcome 'trx'"),
        (_map(stages=[{"id": "a", "enter_on": [{"outcome": "nrx", "channel": "email"}]}]),
         "cannot be combined"),
        (_map(stages=[{"id": "a", "enter_on": []}]), "non-empty list"),
        (_map(stages=[{"id": "a", "enter_on": ["email"]}]), "must be a mapping"),
        (_map(stages=[{"id": "a", "enter_on": [{"channel": None}]}]), "single value"),
        (_map(stages=[{"id": "a"}]), "stage 'a' has no enter_on"),
        (_map(stages=[]), "non-empty list of stages"),
        (_map(stages=[{"id": 3, "enter_on": [{"channel": "email"}]}]), "id must be text"),
        (_map(conversion_window_days=-5), "positive number of days"),
        (_map(conversion_window_days="soon"), "positive number of days"),
        (_map(stages=[{"id": "a", "enter_on": [{"channel": "email"}], "layers": {"frontstage": []}}]),
         "type service_blueprint"),
        (_map(type="service_blueprint",
              stages=[{"id": "a", "layers": {"front": []}}]), "unknown layer 'front'"),
        (_map(name=""), "'name' must be text"),
        ({"stages": []}, "'name' is required"),
        (["not", "a", "map"], "a journey map is a YAML mapping"),
        (_map(persona="x", personas=["y"]), "either persona or personas"),
        (_map(touchpoint_channels={"hub": 3}), "touchpoint_channels"),
    ],
)
def test_invalid_maps_say_what_to_fix(data: Any, needle: str) -> None:
    assert needle in _err(data)


def test_error_names_the_stage_and_the_allowed_keys() -> None:
    msg = _err(_map(stages=[{"id": "ok", "enter_on": [{"channel": "email"}]},
                            {"id": "consider", "enter_on": [{"channel": "web"}, {"topic": "x",
                                                                                  "owner": "me"}]}]))
    assert "stage 'consider'" in msg and "enter_on item 2" in msg
    for k in MATCH_KEYS:
        assert k in msg


def test_yaml_errors_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML at line [45]"):
        JourneyMap.from_yaml("name: x\nstages:\n  - id: a\n    enter_on: {channel: email\n  - id: b\n")
    with pytest.raises(ConfigError, match="no such journey map file"):
        load_journey(tmp_path / "missing.yaml")
    p = tmp_path / "j.yaml"
    p.write_text("name: x\ntype: nope\nstages: [{id: a, enter_on: [{channel: email}]}]\n")
    with pytest.raises(HcpjError, match=str(p)):
        load_journey(p)


def test_free_text_touchpoints_map_to_channels_and_unmatched_are_reported() -> None:
    tps = parse_touchpoints(
        ["rep visit", "HCP portal", "MSL meeting", "medical inquiry", "webinar", "Webinars",
         "web:visited", "f2f_visit", "samples", "Congress symposium", "podcast",
         {"channel": "email", "action": "clicked", "name": "newsletter"}, "peer discussion",
         "Advisory-Board", "access hub"],
        {"Access Hub": "phone"},
    )
    got = [(t.text, t.activity) for t in tps]
    assert got == [
        ("rep visit", "f2f_visit"), ("HCP portal", "portal"), ("MSL meeting", "msl_meeting"),
        ("medical inquiry", "medical_inquiry"), ("webinar", "webinar"), ("Webinars", "webinar"),
        ("web:visited", "web:visited"), ("f2f_visit", "f2f_visit"), ("samples", "sample"),
        ("Congress symposium", "congress"), ("podcast", None),
        ("newsletter", "email:clicked"), ("peer discussion", None),
        ("Advisory-Board", "advisory_board"), ("access hub", "phone"),
    ]
    assert parse_touchpoints(None) == []
    assert [t.activity for t in parse_touchpoints("email")] == ["email"]


def test_simulator_designed_touchpoints() -> None:
    m = load_journey(SIM_YAML)
    dec = {t.text: t.channel for t in m.designed_touchpoints("decision")}
    assert dec == {"rep visit": "f2f_visit", "medical inquiry": "medical_inquiry",
                   "MSL meeting": "msl_meeting", "access hub": None}
    with pytest.raises(ConfigError, match="no stage 'nope'"):
        m.designed_touchpoints("nope")


def test_slugs() -> None:
    assert slugify("Cardiology HCP journey") == "cardiology-hcp-journey"
    assert slugify("  Q3 / future-state!! ") == "q3-future-state"
    assert slugify("***") == "journey"


# ------------------------------------------------------------------ property
_ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_ -", min_size=1, max_size=10).filter(
    lambda s: s.strip() == s and s not in ("null", "true", "false", "yes", "no", "on", "off", "y",
                                           "n", "~"))
_rule = st.one_of(
    st.dictionaries(st.sampled_from(MATCH_KEYS), _value, min_size=1, max_size=3),
    st.just({"outcome": "nrx"}),
)
_stage = st.fixed_dictionaries(
    {"id": _ident, "enter_on": st.lists(_rule, min_size=1, max_size=3)},
    optional={"goals": st.lists(_value, max_size=3), "owner": _value,
              "emotions": st.lists(_value, max_size=2),
              "conversion_window_days": st.integers(1, 400)},
)


@settings(max_examples=60, deadline=None)
@given(
    stages=st.lists(_stage, min_size=1, max_size=5, unique_by=lambda s: s["id"]),
    window=st.one_of(st.none(), st.integers(1, 365), st.floats(0.5, 365.0)),
    product=st.one_of(st.none(), _ident),
)
def test_any_valid_map_round_trips(stages: list[dict[str, Any]], window: float | None,
                                   product: str | None) -> None:
    data: dict[str, Any] = {"name": "Generated", "stages": stages}
    if window is not None:
        data["conversion_window_days"] = window
    if product is not None:
        data["product"] = product
    m = JourneyMap.from_dict(data)
    text = m.to_yaml()
    assert yaml.safe_load(text) == data
    assert JourneyMap.from_yaml(text) == m
    assert m.stage_ids == [s["id"] for s in stages]
