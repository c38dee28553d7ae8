"""The real CMS Open Payments files load through `hcpj ingest` with nothing valid quarantined."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import Workspace
from realdata_path import REALDATA

IOWA = REALDATA / "open_payments_iowa" / "ia_top_physicians_general_payments_2013_2015.csv"
SF = REALDATA / "open_payments_sf" / "op_general_2013_sf_3000.csv"


@pytest.fixture(scope="module")
def iowa_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.init(tmp_path_factory.mktemp("iowa") / "ws")
    # no --format: the file is recognised as an Open Payments export by its header
    results, _ = services.ingest(ws, [IOWA])
    assert [(r.table, r.status) for r in results] == [("hcps", "loaded"), ("interactions", "loaded")]
    services.build(ws)
    return ws


def test_iowa_loads_clean(iowa_ws: Workspace) -> None:
    eng = engines.connect(iowa_ws, read_only=True)
    try:
        assert eng.count(eng.table("quarantine")) == 0
        ix = eng.table("interactions")
        assert eng.count(ix) == 126_084
        assert eng.execute(ix.event_id.nunique()) == 126_084
        assert eng.count(eng.table("hcps")) == 2_037
        total = eng.execute(ix.value_usd.sum())
        assert total == pytest.approx(27_301_946.84, abs=0.01)
        food = eng.count(ix.filter(ix.topic == "Food and Beverage"))
        assert food == 108_548
        # every payment's HCP resolved, and profiles count their events
        prof = eng.table("profiles")
        assert eng.execute(prof.n_interactions.sum()) == 126_084
        assert eng.execute(prof.count()) == 2_037
    finally:
        eng.close()


def test_iowa_reingest_changes_nothing(iowa_ws: Workspace) -> None:
    results, _ = services.ingest(iowa_ws, [IOWA])
    assert {r.status for r in results} == {"already loaded"}


def test_sf_full_layout_via_cli(tmp_path: Path) -> None:
    hcpj = [sys.executable, "-m", "hcpjourney.cli"]
    subprocess.run([*hcpj, "init", str(tmp_path / "ws")], check=True, capture_output=True)
    out = subprocess.run(
        [*hcpj, "ingest", "--format", "open-payments", str(SF), "--workspace", str(tmp_path / "ws")],
        capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    ws = Workspace.open(tmp_path / "ws")
    eng = engines.connect(ws, read_only=True)
    try:
        q = eng.to_pyarrow(eng.table("quarantine")).to_pylist()
        # only payments to teaching hospitals (no HCP record) are quarantined
        assert q and all(r["value"].startswith("open_payments:teaching_hospital:") for r in q)
        assert eng.count(eng.table("interactions")) + len(q) == 3_000
    finally:
        eng.close()
