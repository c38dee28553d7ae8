"""The contract's commands, driven as a user would: simulate, init, ingest, build, export, demo."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from realdata_path import REALDATA

HCPJ = [sys.executable, "-m", "hcpjourney.cli"]
PROFILE_COLUMNS = [
    "hcp_id", "npi", "first_name", "last_name", "specialty", "profession", "n_records",
    "first_seen", "last_seen", "n_interactions", "stage", "segment",
]


def hcpj(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [*HCPJ, *map(str, args)], capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""}
    )
    if ok:
        assert out.returncode == 0, out.stderr
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    drop, ws = root / "drop", root / "ws"
    hcpj("simulate", "--hcps", "300", "--out", drop, "--seed", "5")
    hcpj("init", ws)
    hcpj("ingest", drop, "--workspace", ws)
    hcpj("build", "--journey", drop / "journey.yaml", "--workspace", ws)
    return drop, ws


def test_simulated_drop_loads_with_nothing_quarantined(built: tuple[Path, Path], tmp_path: Path) -> None:
    drop, ws = built
    hcpj("export", "quarantine", "--out", tmp_path / "q.csv", "--workspace", ws)
    with open(tmp_path / "q.csv", encoding="utf-8") as fh:
        assert fh.readline().strip().replace('"', "") == "file,line,column,value,reason,table"
    assert rows(tmp_path / "q.csv") == []
    # every row of every contract file of the drop loaded
    hcpj("export", "identities", "--out", tmp_path / "ids.parquet", "--workspace", ws)
    ids = pq.read_table(tmp_path / "ids.parquet")
    assert ids.column_names[:2] == ["record_id", "hcp_id"]
    sent = sorted(r["record_id"] for r in rows(drop / "hcps.csv"))
    assert sorted(ids.column("record_id").to_pylist()) == sent


def test_profiles_export_has_the_contract_columns(built: tuple[Path, Path], tmp_path: Path) -> None:
    drop, ws = built
    hcpj("export", "profiles", "--out", tmp_path / "p.csv", "--workspace", ws)
    with open(tmp_path / "p.csv", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header[: len(PROFILE_COLUMNS)] == PROFILE_COLUMNS
    prof = rows(tmp_path / "p.csv")
    assert len({p["hcp_id"] for p in prof}) == len(prof)
    assert sum(int(p["n_interactions"]) for p in prof) == len(rows(drop / "interactions.csv"))
    assert all(p["first_seen"].endswith("Z") for p in prof if p["first_seen"])


def test_quality_report_and_export(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, ws = built
    shown = hcpj("quality", "--workspace", ws).stdout
    assert "NPI coverage" in shown and "@" not in shown
    hcpj("export", "quality", "--out", tmp_path / "quality.csv", "--workspace", ws)
    sections = {r["section"] for r in rows(tmp_path / "quality.csv")}
    assert {"completeness", "npi", "channel_volume", "consent_gaps"} <= sections


def test_reingest_is_a_no_op(built: tuple[Path, Path]) -> None:
    drop, ws = built
    out = hcpj("ingest", drop, "--workspace", ws).stdout
    assert out.count("already loaded") == 7


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    out = hcpj("export", "profiles", "--out", tmp_path / "p.csv", "--workspace", tmp_path, ok=False)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "hcpj init" in out.stderr
    hcpj("init", tmp_path / "ws")
    out = hcpj("export", "nonsense", "--out", tmp_path / "x.csv", "--workspace", tmp_path / "ws", ok=False)
    assert out.returncode != 0 and "available:" in out.stderr and "Traceback" not in out.stderr
    out = hcpj("build", "--workspace", tmp_path / "ws", ok=False)
    assert out.returncode != 0 and "ingest" in out.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = hcpj("demo", tmp_path / "demo", "--no-serve", "--hcps", "200")
    assert "demo workspace" in out.stdout
    assert (tmp_path / "demo" / "hcpj.toml").is_file()
    hcpj("export", "profiles", "--out", tmp_path / "p.csv", "--workspace", tmp_path / "demo")
    assert len(rows(tmp_path / "p.csv")) > 100


def test_journey_exports_follow_the_contract(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, ws = built
    for kind, header in [
        ("stages", ["hcp_id", "stage", "entered_at"]),
        ("funnel", ["stage", "hcps", "conversion_from_previous", "median_days_from_previous"]),
        ("transitions", ["from_activity", "to_activity", "count", "median_seconds"]),
        ("attribution", ["channel", "removal_effect", "share"]),
    ]:
        hcpj("export", kind, "--out", tmp_path / f"{kind}.csv", "--workspace", ws)
        got = rows(tmp_path / f"{kind}.csv")
        assert got and list(got[0])[: len(header)] == header, kind
    funnel = rows(tmp_path / "funnel.csv")
    assert [f["stage"] for f in funnel] == [
        "awareness", "consideration", "decision", "adoption", "advocacy"]
    assert funnel[0]["conversion_from_previous"] == "1"
    assert abs(sum(float(a["share"]) for a in rows(tmp_path / "attribution.csv")) - 1) < 1e-9
    furthest = {r["hcp_id"]: r["stage"] for r in rows(tmp_path / "stages.csv")}
    hcpj("export", "profiles", "--out", tmp_path / "p.csv", "--workspace", ws)
    assert {p["hcp_id"]: p["stage"] for p in rows(tmp_path / "p.csv") if p["stage"]} == furthest
    assert "cardiology-hcp-journey" in hcpj("journey", "list", "--workspace", ws).stdout
    # a breakdown splits every stage's HCPs over the groups
    hcpj("export", "funnel", "--by", "profession", "--out", tmp_path / "fp.csv", "--workspace", ws)
    split: dict[str, int] = {}
    for r in rows(tmp_path / "fp.csv"):
        split[r["stage"]] = split.get(r["stage"], 0) + int(r["hcps"])
    assert split == {f["stage"]: int(f["hcps"]) for f in funnel}


def test_recommend_feedback_and_evaluate_policy(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, ws = built
    out = tmp_path / "rec.csv"
    shown = hcpj("recommend", "--as-of", "2025-12-01", "--out", out, "--workspace", ws).stdout
    assert "recommended" in shown
    recs = rows(out)
    header = ["hcp_id", "rank", "action", "channel", "content_id", "team", "score",
              "expected_uplift", "reason"]
    assert list(recs[0])[: len(header)] == header
    firsts = [r for r in recs if r["rank"] == "1"]
    assert len(firsts) == len({r["hcp_id"] for r in recs}) and all(r["reason"] for r in firsts)
    top = firsts[0]
    hcpj("feedback", "skip", top["hcp_id"], top["action"], "--content", top["content_id"],
         "--reason", "not_relevant", "--as-of", "2025-12-01", "--workspace", ws)
    hcpj("recommend", "--as-of", "2025-12-01", "--out", out, "--workspace", ws)
    again = [r for r in rows(out) if r["hcp_id"] == top["hcp_id"]]
    assert (top["action"], top["content_id"]) not in {(r["action"], r["content_id"]) for r in again}
    bad = hcpj("feedback", "skip", top["hcp_id"], top["action"], "--reason", "bored",
               "--workspace", ws, ok=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1

    bandit = REALDATA / "open_bandit" / "bts" / "all.csv"
    shown = hcpj("evaluate-policy", "--logs", bandit, "--policy", "uniform",
                 "--out", tmp_path / "ope.csv").stdout
    est = {r["estimator"]: r for r in rows(tmp_path / "ope.csv")}
    assert set(est) == {"ipw", "snipw", "dr"} and "ipw" in shown
    for r in est.values():
        assert float(r["ci_low"]) <= 0.0038 <= float(r["ci_high"])


def test_segments_and_personas(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, ws = built
    hcpj("export", "segments", "--out", tmp_path / "s.csv", "--workspace", ws)
    seg = rows(tmp_path / "s.csv")
    assert list(seg[0])[:3] == ["hcp_id", "segment", "probability"]
    total: dict[str, float] = {}
    for r in seg:
        total[r["hcp_id"]] = total.get(r["hcp_id"], 0.0) + float(r["probability"])
    assert len({r["segment"] for r in seg}) >= 2
    assert all(abs(v - 1) < 1e-6 for v in total.values())
    hcpj("export", "profiles", "--out", tmp_path / "p.csv", "--workspace", ws)
    assert {p["hcp_id"] for p in rows(tmp_path / "p.csv") if p["segment"]} == set(total)
    shown = hcpj("personas", "--out", tmp_path / "personas.md", "--workspace", ws).stdout
    assert "persona cards" in shown
    text = (tmp_path / "personas.md").read_text(encoding="utf-8")
    assert text.count("\n## ") == len({r["segment"] for r in seg})
