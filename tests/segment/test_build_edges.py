"""build_segments on a tiny workspace and before anything is built."""

from __future__ import annotations

from typing import Any

import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.errors import HcpjError, NotBuiltError
from hcpjourney.segment import build_segments, persona_cards


def test_tiny_workspace(factory: Any) -> None:
    wh = factory.workspace()
    wh.ingest(factory.drop().sample().path)
    services.build(wh.ws)
    eng = engines.connect(wh.ws)
    try:
        with pytest.raises(HcpjError, match="at least 1"):
            build_segments(eng, n_segments=0)
        s = build_segments(eng, n_segments=2)
        rows = eng.to_pyarrow(eng.table("segments")).to_pylist()
        cards = persona_cards(eng)
    finally:
        eng.close()
    assert s.hcps == 3 and s.n_segments == 2
    assert len(rows) == 6
    for h in {r["hcp_id"] for r in rows}:
        assert sum(r["probability"] for r in rows if r["hcp_id"] == h) == pytest.approx(1.0)
    assert [c.segment for c in cards] == ["S1", "S2"] and len({c.name for c in cards}) == 2


def test_nothing_built_yet(factory: Any) -> None:
    wh = factory.workspace()
    eng = engines.connect(wh.ws)
    try:
        with pytest.raises(NotBuiltError, match="hcpj build"):
            build_segments(eng)
        with pytest.raises(NotBuiltError, match="hcpj build"):
            persona_cards(eng)
    finally:
        eng.close()
