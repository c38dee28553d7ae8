"""A simulated world built once for the segment tests, and its hidden truth per hcp_id."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import Workspace
from hcpjourney.simulate import simulate

WORLD_HCPS = 2000
WORLD_SEED = 1


@dataclass
class World:
    """A built workspace (ingested and ``hcpj build``-ed) and the drop it came from."""

    root: Path
    drop: Path

    @property
    def ws(self) -> Workspace:
        return Workspace.open(self.root)

    @contextmanager
    def engine(self, *, read_only: bool = False) -> Iterator[engines.Engine]:
        eng = engines.connect(self.ws, read_only=read_only)
        try:
            yield eng
        finally:
            eng.close()

    def copy(self, dest: Path) -> World:
        shutil.copytree(self.root, dest)
        return World(dest, self.drop)


@pytest.fixture(scope="session")
def sim_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("segment_world")
    drop = base / "drop"
    simulate(WORLD_HCPS, drop, seed=WORLD_SEED)
    ws = services.init_workspace(base / "ws")
    services.ingest(ws, [drop])
    services.build(ws)
    return World(ws.root, drop)


@dataclass(frozen=True)
class Truth:
    segment: str
    secondary: str | None
    weights: dict[str, float]


def true_segments(eng: engines.Engine, drop: Path) -> dict[str, Truth]:
    """hcp_id -> the true segment mixture of the person most of its records belong to."""
    with (drop / "_truth" / "persons.csv").open(encoding="utf-8") as f:
        person_of = {r["record_id"]: r["person_id"] for r in csv.DictReader(f)}
    truth: dict[str, Truth] = {}
    with (drop / "_truth" / "segments.csv").open(encoding="utf-8") as f:
        rows = {r["person_id"]: r for r in csv.DictReader(f)}
    votes: dict[str, Counter[str]] = {}
    for r in eng.to_pyarrow(eng.table("identities").select("record_id", "hcp_id")).to_pylist():
        votes.setdefault(r["hcp_id"], Counter())[person_of[r["record_id"]]] += 1
    for hcp, c in votes.items():
        person = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        row = rows[person]
        weights = {k[2:]: float(v) for k, v in row.items() if k.startswith("w_")}
        truth[hcp] = Truth(row["segment"], row["secondary_segment"] or None, weights)
    return truth


STAGE_RULES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("aware", (("email", "opened"), ("web", "visited"))),
    ("consider", (("portal", "downloaded"), ("webinar", "attended"))),
    ("decide", (("f2f_visit", "completed"), ("medical_inquiry", "requested"))),
)


def write_stage_entries(eng: engines.Engine) -> None:
    """A simple ``stage_entries`` (what the journey build writes): stage k at the first
    matching event at or after the entry into stage k-1."""
    import ibis

    ev = eng.table("events")
    prev = None
    parts = []
    for i, (name, rules) in enumerate(STAGE_RULES, start=1):
        pred = None
        for ch, ac in rules:
            p = (ev.channel == ch) & (ev.action == ac)
            pred = p if pred is None else pred | p
        cand = ev.filter(pred)
        if prev is not None:
            cand = cand.inner_join(prev.select("hcp_id", _prev="entered_at"), "hcp_id")
            cand = cand.filter(cand.ts >= cand._prev)
        w = ibis.window(group_by="hcp_id", order_by=["ts", "event_id"])
        cand = cand.mutate(_r=ibis.row_number().over(w))
        first = cand.filter(cand._r == 0).select(
            "hcp_id", stage=ibis.literal(name), stage_index=ibis.literal(i, "int64"),
            entered_at=cand.ts, event_id=cand.event_id)
        first = eng.create(f"_stage_{i}", first)
        parts.append(first)
        prev = first
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    eng.create("stage_entries", out, order_by=["hcp_id", "stage_index"])
    for i in range(1, len(STAGE_RULES) + 1):
        eng.drop(f"_stage_{i}")


@pytest.fixture(scope="session")
def segmented(sim_world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[World, object]:
    """A copy of the world with stage entries, segmented into 5 segments."""
    from hcpjourney.segment.build import build_segments

    w = sim_world.copy(tmp_path_factory.mktemp("segmented") / "ws")
    with w.engine() as eng:
        write_stage_entries(eng)
        summary = build_segments(eng, n_segments=5, random_state=0, product="cardiozen",
                                 previous=False)
    return w, summary
