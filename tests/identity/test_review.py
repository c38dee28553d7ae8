"""Stable hcp_ids across rebuilds and incremental drops; the data steward's review queue.

A simulated drop is split in two: the first drop is built, then a second drop
brings new records of people already known. Every earlier hcp_id must survive
and the new records must join their HCP. Review decisions made with
`hcpj review decide` must override the model at the next build.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.app import db
from hcpjourney.cli import app
from hcpjourney.config import Workspace
from hcpjourney.errors import HcpjError
from hcpjourney.identity.resolve import pair_id
from hcpjourney.simulate import simulate

runner = CliRunner()


def rows(ws: Workspace, table: str) -> list[dict[str, Any]]:
    eng = engines.connect(ws, read_only=True)
    try:
        return list(eng.to_pyarrow(eng.table(table)).to_pylist()) if eng.has_table(table) else []
    finally:
        eng.close()


def ids_of(ws: Workspace) -> dict[str, str]:
    return {r["record_id"]: r["hcp_id"] for r in rows(ws, "identities")}


def cli(ws: Workspace, *args: str) -> Any:
    return runner.invoke(app, [*args, "--workspace", str(ws.root)])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A simulated drop of 700 HCPs split into a first drop and a later one."""
    root = tmp_path_factory.mktemp("review")
    full = root / "full"
    simulate(700, full, seed=3, events_per_hcp=1)
    with open(full / "hcps.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        records = list(reader)
    with open(full / "_truth" / "persons.csv", newline="", encoding="utf-8") as fh:
        person = {r["record_id"]: r["person_id"] for r in csv.DictReader(fh)}
    # Later records: a web/event/survey record whose e-mail another record of the
    # same person, in the first drop, already carries.
    by_person: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in records:
        by_person[person[r["record_id"]]].append(r)
    later: dict[str, str] = {}  # later record -> its partner in the first drop
    for recs in by_person.values():
        for r in recs:
            if r["source"] in ("crm", "open_payments") or not r["email"] or len(later) >= 40:
                continue
            partner = next((o for o in recs if o is not r and o["email"] == r["email"]
                            and o["record_id"] not in later), None)
            if partner is not None:
                later[r["record_id"]] = partner["record_id"]
                break
    first = [r for r in records if r["record_id"] not in later]
    second = [r for r in records if r["record_id"] in later]
    for name, body in (("drop1", first), ("drop2", second)):
        (root / name).mkdir()
        with open(root / name / "hcps.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=header)
            w.writeheader()
            w.writerows(body)
    ws = services.init_workspace(root / "ws")
    return {"ws": ws, "root": root, "later": later, "records": records, "person": person}


def test_ids_survive_rebuilds_and_new_records_join_their_hcp(world: dict[str, Any]) -> None:
    ws: Workspace = world["ws"]
    later: dict[str, str] = world["later"]
    assert len(later) >= 30
    services.ingest(ws, [world["root"] / "drop1"])
    services.build(ws)
    first = ids_of(ws)
    events_first = rows(ws, "identity_events")
    assert set(first) == {r["record_id"] for r in world["records"]} - set(later)

    # a rebuild of the same records changes nothing and records no event
    services.build(ws)
    assert ids_of(ws) == first
    assert len(rows(ws, "identity_events")) == len(events_first)

    # a later drop with new records of known people
    services.ingest(ws, [world["root"] / "drop2"])
    summary = services.build(ws)
    second = ids_of(ws)
    assert summary.records == len(world["records"])
    new_events = rows(ws, "identity_events")[len(events_first):]
    # every earlier hcp_id survives, or (when a new record showed that two HCPs are
    # one person) was merged into a surviving id, and the merge is on record
    merged_into = {e["other_hcp_id"]: e["hcp_id"] for e in new_events if e["kind"] == "merge"}
    for old in set(first.values()) - set(second.values()):
        assert merged_into.get(old) in set(second.values()), old
    assert len(merged_into) <= len(set(first.values())) // 100
    moved = {r for r, h in first.items() if second[r] != h}
    explained = {r for e in new_events if e["kind"] in ("merge", "split") for r in e["record_ids"]}
    assert moved <= explained  # a record changes HCP only with a recorded merge or split
    assert len(moved) <= len(first) // 100
    person = world["person"]
    for e in new_events:  # and those merges were right
        if e["kind"] == "merge":
            kept = [r for r, h in second.items() if h == e["hcp_id"]]
            assert len({person[r] for r in kept}) == 1
    for rec, partner in later.items():  # the new records joined their HCP
        assert second[rec] == second[partner] == first[partner], rec


@pytest.fixture(scope="module")
def built(world: dict[str, Any]) -> Workspace:
    ws: Workspace = world["ws"]
    if not rows(ws, "identities"):
        services.ingest(ws, [world["root"] / "drop1"])
        services.ingest(ws, [world["root"] / "drop2"])
        services.build(ws)
    return ws


def test_review_list_shows_the_band_with_evidence_and_no_personal_data(
    built: Workspace, world: dict[str, Any]
) -> None:
    ws = built
    th = services.identity_thresholds(ws)
    items = services.review_list(ws)
    assert items, "a simulated drop has uncertain pairs"
    assert all(th.review_low <= it.probability < th.review_high for it in items)
    assert {it.linked for it in items} == {True, False}  # the band straddles the threshold
    assert all(it.evidence["npi"] != "different" for it in items)
    result = cli(ws, "review", "list", "--limit", "1000")
    assert result.exit_code == 0, result.output
    out = result.output
    by_id = {r["record_id"]: r for r in world["records"]}
    for it in items[:30]:
        assert it.pair_id in out and it.record_id_l in out
        for rec in (by_id[it.record_id_l], by_id[it.record_id_r]):
            for field in ("email", "phone", "address_line1"):
                assert not rec[field] or rec[field] not in out
            if rec["first_name"] and rec["last_name"]:
                assert f"{rec['first_name']} {rec['last_name']}" not in out
    assert "last=" in out and "first=" in out  # per-field evidence
    exported = ws.root / "queue.csv"
    assert cli(ws, "review", "list", "--out", str(exported)).exit_code == 0
    with open(exported, newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == len(items)


def test_decisions_override_the_model_at_the_next_build(
    built: Workspace, world: dict[str, Any]
) -> None:
    ws = built
    ids = ids_of(ws)
    npi = {r["record_id"]: r["npi"] for r in world["records"]}
    pairs = rows(ws, "identity_pairs")
    # a pair the model linked (neither record's NPI would hold the two together)
    linked = next(p for p in sorted(pairs, key=lambda p: p["pair_id"])
                  if p["match_probability"] >= 0.9 and ids[p["record_id_l"]] == ids[p["record_id_r"]]
                  and not (npi[p["record_id_l"]] and npi[p["record_id_r"]]))
    # two records the model keeps apart, each an HCP on its own, with no NPI conflict
    size: dict[str, int] = defaultdict(int)
    for h in ids.values():
        size[h] += 1
    alone = [r for r in sorted(ids) if not npi[r] and size[ids[r]] == 1
             and r not in (linked["record_id_l"], linked["record_id_r"])]
    a, b = alone[0], alone[1]
    result = cli(ws, "review", "decide", linked["pair_id"], "distinct", "--note", "two people",
                 "--by", "steward1")
    assert result.exit_code == 0, result.output
    assert "distinct" in result.output and "next `hcpj build`" in result.output
    result = cli(ws, "review", "decide", f"{a},{b}", "match", "--by", "steward1")
    assert result.exit_code == 0, result.output

    n_events = len(rows(ws, "identity_events"))
    services.build(ws)
    after = ids_of(ws)
    assert after[linked["record_id_l"]] != after[linked["record_id_r"]]
    assert after[a] == after[b]
    kinds = {e["kind"] for e in rows(ws, "identity_events")[n_events:]}
    assert {"split", "merge"} <= kinds
    # the decided pair leaves the queue, unless asked for
    assert linked["pair_id"] not in {it.pair_id for it in services.review_list(ws)}
    # decisions persist with who and when, and are audited
    eng = db.connect(ws.app_db_url)
    try:
        with eng.connect() as conn:
            dec = conn.execute(sa.select(db.identity_decisions)).mappings().all()
            audit = conn.execute(sa.select(db.audit_log).where(
                db.audit_log.c.resource == "identity_pair")).mappings().all()
    finally:
        eng.dispose()
    assert [(d["pair_id"], d["decision"], d["actor"]) for d in dec] == [
        (linked["pair_id"], "distinct", "steward1"), (pair_id(a, b), "match", "steward1")]
    assert dec[0]["note"] == "two people" and dec[0]["decided_at"] is not None
    assert [(r["action"], r["resource_id"], r["actor"]) for r in audit] == [
        ("review.distinct", linked["pair_id"], "steward1"),
        ("review.match", pair_id(a, b), "steward1")]
    # a later decision on the same pair wins
    assert cli(ws, "review", "decide", f"{a},{b}", "distinct").exit_code == 0
    services.build(ws)
    assert ids_of(ws)[a] != ids_of(ws)[b]


def test_decide_refuses_what_cannot_be(built: Workspace, world: dict[str, Any]) -> None:
    ws = built
    with_npi = sorted({r["record_id"]: r["npi"] for r in world["records"] if r["npi"]}.items())
    (a, na), (b, nb) = with_npi[0], next(x for x in with_npi if x[1] != with_npi[0][1])
    assert na != nb
    result = cli(ws, "review", "decide", f"{a},{b}", "match")
    assert result.exit_code != 0
    with pytest.raises(HcpjError, match="different NPIs"):
        services.review_decide(ws, f"{a},{b}", "match")
    with pytest.raises(HcpjError, match="no review pair 'Pnope'"):
        services.review_decide(ws, "Pnope", "distinct")
    with pytest.raises(HcpjError, match="no hcps record 'nobody'"):
        services.review_decide(ws, f"{a},nobody", "distinct")
    with pytest.raises(HcpjError, match="use match or distinct"):
        services.review_decide(ws, f"{a},{b}", "maybe")
