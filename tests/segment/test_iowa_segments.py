"""Real data: segments over nature of payment and manufacturer mix on Iowa Open Payments."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import Workspace
from hcpjourney.segment.build import build_segments
from hcpjourney.segment.grid import grid_rows
from hcpjourney.segment.personas import cards_html, cards_markdown, persona_cards
from realdata_path import REALDATA

IOWA = REALDATA / "open_payments_iowa" / "ia_top_physicians_general_payments_2013_2015.csv"



@pytest.fixture(scope="module")
def iowa(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ws = Workspace.init(tmp_path_factory.mktemp("iowa_seg") / "ws")
    services.ingest(ws, [IOWA])  # the profiles file next to it gives the names
    services.build(ws)
    eng = engines.connect(ws)
    try:
        summary = build_segments(eng, random_state=0)
        cards = persona_cards(eng)

        def rows(t: Any) -> list[dict[str, Any]]:
            return eng.to_pyarrow(t).to_pylist()

        ev = eng.table("events")
        return {
            "summary": summary, "cards": cards,
            "segments": rows(eng.table("segments")),
            "golden": rows(eng.table("golden").select("hcp_id", "profession")),
            "features": rows(eng.table("segment_features")),
            "events": rows(ev.select("hcp_id", "topic")),
            "grid": grid_rows(eng, behaviour="segment"),
        }
    finally:
        eng.close()


def test_every_physician_assigned(iowa: dict[str, Any]) -> None:
    s = iowa["summary"]
    assert s.hcps == len(iowa["golden"]) == 2037
    assert s.n_segments >= 2
    per: dict[str, list[float]] = defaultdict(list)
    for r in iowa["segments"]:
        per[r["hcp_id"]].append(r["probability"])
    assert set(per) == {g["hcp_id"] for g in iowa["golden"]}
    assert all(len(p) == s.n_segments and sum(p) == pytest.approx(1.0, abs=1e-9)
               for p in per.values())
    # segments are not all alike: each is the primary segment of some physicians
    assert all(n > 0 for n in s.primary.values())


def test_segments_over_payment_nature_and_manufacturer(iowa: dict[str, Any]) -> None:
    f = iowa["features"][0]
    assert any(c.startswith("cnt_topic__") for c in f)
    assert any(c.startswith("cnt_manufacturer__") for c in f)
    # topic counts are the nature-of-payment counts of the events
    ref: dict[str, Counter[str]] = defaultdict(Counter)
    for e in iowa["events"]:
        ref[e["hcp_id"]][e["topic"]] += 1
    for r in iowa["features"]:
        assert r["cnt_topic__food_and_beverage"] == ref[r["hcp_id"]]["Food and Beverage"]
        assert r["n_topic"] == sum(ref[r["hcp_id"]].values())


def test_persona_cards_are_non_trivial(iowa: dict[str, Any]) -> None:
    cards = iowa["cards"]
    assert len(cards) == iowa["summary"].n_segments
    names = [c.name for c in cards]
    assert len(set(names)) == len(names)
    for c in cards:
        assert c.primary_hcps > 0 and c.size > 0
        assert set(c.topics) >= {"topic", "manufacturer"}
        assert c.topics["topic"] and c.topics["manufacturer"]
        assert c.professions and c.professions[0]["value"] == "physician"
        assert c.specialties
    # segments differ in their payment mix: some segment's top topic lift is well above 1
    assert max(c.topics["topic"][0]["lift"] or 0 for c in cards) > 1.5
    md, page = cards_markdown(cards), cards_html(cards)
    assert all(c.name in md for c in cards) and page.count('<section class="persona"') == len(cards)
    assert sum(r["hcps"] for r in iowa["grid"]) == 2037
