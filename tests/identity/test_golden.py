"""Golden records: survivorship rules and per-field lineage.

Unit tests run build_golden on hand-made records in an in-memory engine, where
identities are given (so records without an NPI can belong to one HCP); the
end-to-end tests go through init, ingest, build and export.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from hcpjourney import services
from hcpjourney.config import CONFIG_FILE, Workspace
from hcpjourney.contract import schemas
from hcpjourney.contract.npi import is_valid_npi, make_npi
from hcpjourney.contract.validate import stored_schema
from hcpjourney.engine import DuckDBEngine
from hcpjourney.errors import ConfigError, HcpjError
from hcpjourney.identity.golden import (
    DEFAULT_SOURCE_TRUST,
    GOLDEN_FIELDS,
    build_golden,
    source_trust,
)

NPI_A = make_npi(123456789)
NPI_A2 = make_npi(198765432)
BAD_NPI = "1234567890"
assert not is_valid_npi(BAD_NPI)


def _ts(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def hand_records() -> list[dict[str, Any]]:
    """Records whose survivorship outcome is known by construction."""
    return [
        # HCP A: four records over crm (two), web and open_payments.
        dict(hcp="A", record_id="web:1", source="web", updated_at="2025-06-01T00:00:00",
             first_name="Bill", last_name="Smith", middle_name="J", email="bill@web.example",
             specialty="Cardiology", decile=9, is_kol=False, city="Newton"),
        dict(hcp="A", record_id="crm:1", source="crm", updated_at="2024-01-01T00:00:00",
             npi=NPI_A, first_name="William", last_name="Smith", middle_name="   ",
             specialty="Allopathic & Osteopathic Physicians|Internal Medicine|Cardiovascular Disease",
             decile=4, city="Cambridge"),
        dict(hcp="A", record_id="crm:2", source="CRM", updated_at="2024-06-01T00:00:00",
             first_name="Will", last_name="Smith-Jones", city="Boston", email=""),
        dict(hcp="A", record_id="op:1", source="open_payments", updated_at="2023-01-01T00:00:00",
             npi=NPI_A2, last_name="SMITH", email="w@op.example", credential="MD", is_kol=True,
             state="MA"),
        # HCP B: one web record whose NPI fails the checksum (a guard: ingest quarantines it).
        dict(hcp="B", record_id="web:2", source="web", npi=BAD_NPI, last_name="Brown",
             first_name=None),
        # HCP C: an unlisted source ranks after every listed one, however recent.
        dict(hcp="C", record_id="legacy:1", source="legacy", updated_at="2025-09-01T00:00:00",
             first_name="Xena", last_name="Cole", is_kol=False),
        dict(hcp="C", record_id="web:3", source="web", updated_at="2020-01-01T00:00:00",
             first_name="Yara", last_name="Cole", is_kol=False),
        # HCP D: same source, same updated_at -> smallest record_id; no updated_at ranks last.
        dict(hcp="D", record_id="crm:9", source="crm", updated_at="2024-01-01T00:00:00",
             first_name="Zed", last_name="Dunn"),
        dict(hcp="D", record_id="crm:8", source="crm", updated_at="2024-01-01T00:00:00",
             first_name="Zack", last_name="Dunn"),
        dict(hcp="D", record_id="crm:0", source="crm", updated_at=None,
             first_name="Zoe", last_name="Dunn", phone="555-0100"),
    ]


def _engine_with(records: list[dict[str, Any]]) -> DuckDBEngine:
    eng = DuckDBEngine()
    schema = stored_schema(schemas.HCPS)
    cols: dict[str, list[Any]] = {c: [] for c in schema.names}
    for r in records:
        for c in schema.names:
            v = r.get(c)
            cols[c].append(_ts(v) if c == "updated_at" else v)
    hcps = pa.table(cols, schema=schema.to_pyarrow())
    eng.create("hcps", ibis.memtable(hcps))
    ids = pa.table({"record_id": [r["record_id"] for r in records],
                    "hcp_id": [r["hcp"] for r in records]})
    eng.create("identities", ibis.memtable(ids))
    return eng


def run_golden(
    records: list[dict[str, Any]], trust: tuple[str, ...] = DEFAULT_SOURCE_TRUST
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    eng = _engine_with(records)
    try:
        build_golden(eng, trust=trust)
        golden = eng.to_pyarrow(eng.table("golden")).to_pylist()
        lineage = eng.to_pyarrow(eng.table("golden_lineage")).to_pylist()
    finally:
        eng.close()
    return ({g["hcp_id"]: g for g in golden}, {(r["hcp_id"], r["field"]): r for r in lineage})


@pytest.fixture(scope="module")
def hand() -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    return run_golden(hand_records())


def test_trusted_source_beats_a_more_recent_less_trusted_one(hand):
    golden, lineage = hand
    # web:1 is the newest record of A, but crm wins; within crm the newer crm:2 wins
    assert golden["A"]["first_name"] == "Will"
    assert golden["A"]["last_name"] == "Smith-Jones"
    assert lineage[("A", "first_name")]["record_id"] == "crm:2"
    assert lineage[("A", "first_name")]["source"] == "CRM"  # matched case-insensitively
    assert lineage[("A", "first_name")]["n_distinct"] == 3  # Bill, William, Will


def test_a_null_in_the_trusted_record_falls_through(hand):
    golden, lineage = hand
    # NPI: crm:2 (best) has none -> crm:1
    assert golden["A"]["npi"] == NPI_A
    assert (lineage[("A", "npi")]["record_id"], lineage[("A", "npi")]["source"]) == ("crm:1", "crm")
    # email: no crm record has one (crm:2 sent an empty text) -> the next source, open_payments
    assert golden["A"]["email"] == "w@op.example"
    assert lineage[("A", "email")]["record_id"] == "op:1"
    assert lineage[("A", "email")]["source"] == "open_payments"
    # middle name: blank in crm:1, absent elsewhere -> web, the last trusted source
    assert golden["A"]["middle_name"] == "J"
    assert lineage[("A", "middle_name")]["source"] == "web"
    assert golden["A"]["credential"] == "MD"
    assert golden["A"]["state"] == "MA"
    assert golden["A"]["city"] == "Boston"


def test_specialty_taxonomy_path_shows_its_last_segment_and_keeps_the_raw_in_lineage(hand):
    golden, lineage = hand
    assert golden["A"]["specialty"] == "Cardiovascular Disease"
    row = lineage[("A", "specialty")]
    assert row["value"] == "Cardiovascular Disease"
    assert row["source_value"] == (
        "Allopathic & Osteopathic Physicians|Internal Medicine|Cardiovascular Disease"
    )
    assert row["record_id"] == "crm:1"
    # normalised values are compared: "Cardiology" (web) and the path's last segment differ
    assert row["n_distinct"] == 2


def test_decile_follows_survivorship_not_the_maximum(hand):
    golden, lineage = hand
    assert golden["A"]["decile"] == 4  # crm:1's, although web:1 says 9
    assert lineage[("A", "decile")]["record_id"] == "crm:1"
    assert lineage[("A", "decile")]["value"] == "4"


def test_is_kol_is_true_when_any_record_says_so(hand):
    golden, lineage = hand
    assert golden["A"]["is_kol"] is True
    assert lineage[("A", "is_kol")]["record_id"] == "op:1"
    assert golden["C"]["is_kol"] is False
    assert lineage[("C", "is_kol")]["record_id"] == "web:3"  # web is listed, legacy is not
    assert golden["D"]["is_kol"] is None
    assert ("D", "is_kol") not in lineage


def test_npi_survives_only_when_checksum_valid(hand):
    golden, lineage = hand
    assert golden["B"]["npi"] is None
    assert ("B", "npi") not in lineage
    assert golden["B"]["last_name"] == "Brown"
    assert golden["B"]["first_name"] is None
    assert ("B", "first_name") not in lineage


def test_unlisted_source_ranks_after_every_listed_one(hand):
    golden, lineage = hand
    assert golden["C"]["first_name"] == "Yara"
    assert lineage[("C", "first_name")]["record_id"] == "web:3"


def test_ties_break_on_record_id_and_missing_updated_at_ranks_last(hand):
    golden, lineage = hand
    assert golden["D"]["first_name"] == "Zack"  # crm:8 < crm:9, both 2024-01-01
    assert lineage[("D", "first_name")]["record_id"] == "crm:8"
    assert golden["D"]["phone"] == "555-0100"  # only crm:0 has a phone
    assert lineage[("D", "phone")]["record_id"] == "crm:0"


def test_counts_and_sources(hand):
    golden, _ = hand
    a = golden["A"]
    assert (a["n_records"], a["n_sources"]) == (4, 3)  # "crm" and "CRM" are one source
    assert a["sources"] == "crm,open_payments,web"
    assert a["last_updated_at"] == datetime(2025, 6, 1)
    assert set(golden) == {"A", "B", "C", "D"}


def test_lineage_matches_golden_exactly(hand):
    golden, lineage = hand
    for hcp, g in golden.items():
        for f in GOLDEN_FIELDS:
            if g[f] is None:
                assert (hcp, f) not in lineage
            else:
                expect = str(g[f]).lower() if isinstance(g[f], bool) else str(g[f])
                assert lineage[(hcp, f)]["value"] == expect, (hcp, f)
    records = {r["record_id"]: r["hcp"] for r in hand_records()}
    assert all(records[row["record_id"]] == hcp for (hcp, _), row in lineage.items())


def test_configured_trust_order_changes_the_winner():
    golden, lineage = run_golden(hand_records(), trust=("web", "crm"))
    assert golden["A"]["first_name"] == "Bill"
    assert lineage[("A", "first_name")]["record_id"] == "web:1"
    assert golden["A"]["decile"] == 9
    # open_payments is no longer listed: it ranks after crm, so the crm NPI survives
    assert golden["A"]["npi"] == NPI_A
    assert golden["C"]["first_name"] == "Yara"


# ------------------------------------------------------------- through the product
def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


HCPS_HEADER = ["record_id", "source", "npi", "first_name", "last_name", "specialty", "email",
               "decile", "is_kol", "updated_at"]
HCPS_ROWS = [
    ["web:1", "web", NPI_A, "Bill", "Smith", "Cardiology", "bill@web.example", "9", "false",
     "2025-06-01T00:00:00Z"],
    ["crm:1", "crm", NPI_A, "William", "Smith", "", "", "4", "", "2024-01-01T00:00:00Z"],
    ["op:1", "open_payments", NPI_A, "WILLIAM", "SMITH",
     "Allopathic & Osteopathic Physicians|Internal Medicine|Cardiovascular Disease", "", "", "",
     "2023-01-01T00:00:00Z"],
    ["web:2", "web", "", "Ann", "Lee", "", "ann@web.example", "", "", ""],
]


@pytest.fixture
def exact_identities(monkeypatch: pytest.MonkeyPatch) -> None:
    """Identities by exact NPI, so that which records form one HCP is known here.

    Linkage quality is tested with the linker; these tests are about what the build
    does with the identities it is given.
    """
    from hcpjourney.identity.exact import resolve_exact

    monkeypatch.setattr(services, "resolve_identities", lambda eng, *a, **k: resolve_exact(eng))


def _built_workspace(root: Path, trust: str | None = None) -> Workspace:
    ws = services.init_workspace(root / "ws")
    if trust is not None:
        cfg = ws.root / CONFIG_FILE
        cfg.write_text(
            cfg.read_text(encoding="utf-8").replace(
                "[identity]\n", f"[identity]\nsource_trust = {trust}\n"
            ),
            encoding="utf-8",
        )
        ws = Workspace.open(ws.root)
    drop = root / "drop"
    drop.mkdir()
    write_csv(drop / "hcps.csv", HCPS_HEADER, HCPS_ROWS)
    services.ingest(ws, [drop])
    services.build(ws)
    return ws


@pytest.mark.usefixtures("exact_identities")
def test_build_writes_golden_and_lineage_and_exports_them(tmp_path: Path):
    ws = _built_workspace(tmp_path)
    out = tmp_path / "golden.csv"
    assert services.export(ws, "golden", out) == 2
    rows = {r["last_name"]: r for r in pacsv.read_csv(out).to_pylist()}
    smith = rows["Smith"]
    assert smith["first_name"] == "William"  # crm beats the newer web record
    assert smith["specialty"] == "Cardiovascular Disease"  # crm has none: open_payments next
    assert smith["email"] == "bill@web.example"  # only web has one
    assert smith["decile"] == 4
    assert smith["is_kol"] is False
    assert smith["n_records"] == 3
    out2 = tmp_path / "lineage.parquet"
    services.export(ws, "golden_lineage", out2)
    import pyarrow.parquet as pq

    lin = {(r["field"], r["value"]): r for r in pq.read_table(out2).to_pylist()}
    assert lin[("first_name", "William")]["record_id"] == "crm:1"
    assert lin[("specialty", "Cardiovascular Disease")]["source"] == "open_payments"
    assert lin[("email", "bill@web.example")]["record_id"] == "web:1"


@pytest.mark.usefixtures("exact_identities")
def test_source_trust_is_read_from_hcpj_toml(tmp_path: Path):
    ws = _built_workspace(tmp_path, trust='["web", "crm"]')
    assert source_trust(ws) == ("web", "crm")
    out = tmp_path / "golden.csv"
    services.export(ws, "golden", out)
    smith = next(r for r in pacsv.read_csv(out).to_pylist() if r["last_name"] == "Smith")
    assert smith["first_name"] == "Bill"
    assert smith["decile"] == 9


@pytest.mark.parametrize("value", ["[]", '"crm"', "[1, 2]", '["crm", ""]'])
def test_bad_source_trust_setting_is_a_config_error(tmp_path: Path, value: str):
    ws = Workspace.init(tmp_path / "ws")
    cfg = ws.root / CONFIG_FILE
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace("[identity]\n", f"[identity]\nsource_trust = {value}\n"),
        encoding="utf-8",
    )
    ws = Workspace.open(ws.root)
    with pytest.raises(ConfigError, match="source_trust") as exc:
        source_trust(ws)
    assert isinstance(exc.value, HcpjError)
    assert "\n" not in str(exc.value)


def test_default_source_trust():
    assert source_trust(Workspace(root=Path("."), settings={})) == DEFAULT_SOURCE_TRUST
    ws = Workspace(root=Path("."), settings={"identity": {"source_trust": [" CRM ", "web", "crm"]}})
    assert source_trust(ws) == ("crm", "web")
