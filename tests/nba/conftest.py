"""A simulated world with journey stages, built once per NBA test module."""

from __future__ import annotations

import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.journey.model import load_journey
from hcpjourney.journey.stages import build_journey
from hcpjourney.simulate import simulate

from .reference import N_HCPS, SEED, World


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("nba")
    drop = root / "drop"
    simulate(N_HCPS, drop, seed=SEED)
    ws = services.init_workspace(root / "ws")
    services.ingest(ws, [drop])
    services.build(ws)
    eng = engines.connect(ws)
    try:
        build_journey(eng, load_journey(drop / "journey.yaml"))
    finally:
        eng.close()
    return World(ws, drop)
