from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from rich.console import Console

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import Workspace
from hcpjourney.quality import LONG_SCHEMA, SECTIONS, QualityReport, quality_report

AS_OF = datetime(2025, 6, 1)
GOOD_NPI_A = "1234567893"
GOOD_NPI_B = "1987654328"
BAD_NPI = "1234567890"  # fails the Luhn check: quarantined

# 8 hcps rows: crm 3, web 3 (one quarantined for its NPI), events 2.
# - email: crm 2/3, web 1/2, events 2/2 (stored rows)
# - crm:1 and web:1 share an NPI (different sources)
# - crm:3 and web:2 share an email up to case and spaces (different sources)
# - ev:1 and ev:2 share an email within one source: not a cross-source duplicate
# - crm:3 is stale (2019), web:1 has no updated_at
HCPS = f"""\
record_id,source,npi,first_name,last_name,email,updated_at,specialty
crm:1,crm,{GOOD_NPI_A},Ann,Lee,ann.lee@clinic.example,2025-01-10T00:00:00Z,Cardiology
crm:2,crm,{GOOD_NPI_B},Bob,Ray,,2025-02-01,Cardiology
crm:3,crm,,Cy,Fox," Cy.Fox@Example.com ",2019-01-01,
web:1,web,{GOOD_NPI_A},,Lee,,,
web:2,web,,Dee,Fox,cy.fox@example.com,2025-03-01,
web:3,web,{BAD_NPI},Eve,Kim,eve.kim@web.example,2025-03-01,
ev:1,events,,Gil,Orr,same@events.example,2025-05-01,
ev:2,events,,Gil,Orr,SAME@events.example,2025-05-02,
"""
EMAILS = (
    "ann.lee@clinic.example", "cy.fox@example.com", "eve.kim@web.example",
    "same@events.example",
)

# e6 and e7 name unknown channels: quarantined. team: crm 2/3, web 0/2.
INTERACTIONS = """\
event_id,record_id,ts,channel,action,team
e1,crm:1,2025-03-05T10:00:00Z,email,opened,commercial
e2,crm:1,2025-03-20T08:00:00Z,email,clicked,
e3,crm:2,2025-04-02T09:00:00Z,f2f_visit,completed,medical
e4,web:2,2025-04-15T12:00:00Z,web,visited,
e5,web:1,2025-04-16T12:00:00Z,web,visited,
e6,crm:2,2025-04-20T12:00:00Z,telepathy,sent,
e7,crm:3,2025-04-21T12:00:00Z,carrier_pigeon,sent,
"""

# records with interactions: crm:1, crm:2, web:1, web:2; web:1 has no consent row.
CONSENTS = """\
record_id,channel,status,ts,purpose
crm:1,email,opt_in,2025-01-01T00:00:00Z,promotional
crm:2,f2f_visit,opt_in,2025-01-01T00:00:00Z,medical
web:2,web,opt_out,2025-01-01T00:00:00Z,promotional
"""


def _drop(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, QualityReport]]:
    tmp = tmp_path_factory.mktemp("quality")
    ws = Workspace.init(tmp / "ws")
    drop = _drop(
        tmp / "drop",
        {"hcps.csv": HCPS, "interactions.csv": INTERACTIONS, "consents.csv": CONSENTS},
    )
    results, _ = services.ingest(ws, [drop])
    assert {r.file: r.quarantined for r in results} == {
        "hcps.csv": 1, "interactions.csv": 2, "consents.csv": 0,
    }
    eng = engines.connect(ws, read_only=True)
    try:
        yield ws, quality_report(eng, ws, as_of=AS_OF)
    finally:
        eng.close()


def _rows(t: pa.Table, **match: str) -> list[dict[str, object]]:
    mask = None
    for k, v in match.items():
        m = pc.equal(t[k], v)
        mask = m if mask is None else pc.and_(mask, m)
    return (t.filter(mask) if mask is not None else t).to_pylist()


def _one(t: pa.Table, **match: str) -> dict[str, object]:
    rows = _rows(t, **match)
    assert len(rows) == 1, (match, rows)
    return rows[0]


def _long(report: QualityReport, section: str, source: str, column: str, metric: str) -> float:
    row = _one(report.to_long(), section=section, source=source, column=column, metric=metric)
    value = row["value"]
    assert isinstance(value, float)
    return value


def test_completeness_per_source_and_table(world: tuple[Workspace, QualityReport]) -> None:
    _, r = world
    c = r.completeness
    email = {row["source"]: row for row in _rows(c, table="hcps", column="email")}
    assert set(email) == {"", "crm", "web", "events"}
    assert (email["crm"]["non_null"], email["crm"]["records"]) == (2, 3)
    assert email["crm"]["share"] == pytest.approx(2 / 3)
    assert email["web"]["share"] == pytest.approx(1 / 2)
    assert email["events"]["share"] == pytest.approx(1.0)
    assert email[""]["share"] == pytest.approx(5 / 7)
    assert _one(c, table="hcps", source="web", column="specialty")["share"] == 0.0
    assert _one(c, table="hcps", source="crm", column="record_id")["share"] == 1.0

    # interactions count for the source of the record they reference
    team = {row["source"]: row["share"] for row in _rows(c, table="interactions", column="team")}
    assert team == pytest.approx({"": 2 / 5, "crm": 2 / 3, "web": 0.0})
    # other tables: overall only
    assert {row["source"] for row in _rows(c, table="consents")} == {""}
    assert _one(c, table="consents", column="source")["share"] == 0.0
    assert _one(c, table="consents", column="purpose")["share"] == 1.0
    # an empty table has no share
    content = _one(c, table="content", column="title")
    assert (content["records"], content["share"]) == (0, None)

    assert _long(r, "completeness", "crm", "hcps.email", "non_null_share") == pytest.approx(2 / 3)
    assert _long(r, "completeness", "crm", "hcps", "records") == 3.0
    assert _long(r, "completeness", "", "content", "records") == 0.0
    empty = _rows(r.to_long(), section="completeness", column="content.title")
    assert [(x["metric"], x["value"]) for x in empty] == [("non_null", 0.0)]


def test_npi(world: tuple[Workspace, QualityReport]) -> None:
    _, r = world
    rows = {row["source"]: row for row in r.npi.to_pylist()}
    assert rows[""] == pytest.approx({
        "source": "", "records": 7, "with_npi": 3, "coverage": 3 / 7, "valid": 3,
        "valid_share": 1.0, "distinct_npis": 2, "shared_npis": 1, "records_sharing_npi": 2,
        "quarantined_npis": 1, "received_valid_share": 3 / 4,
    })
    assert rows["crm"] == pytest.approx({
        "source": "crm", "records": 3, "with_npi": 2, "coverage": 2 / 3, "valid": 2,
        "valid_share": 1.0, "distinct_npis": 2, "shared_npis": 0, "records_sharing_npi": 0,
        "quarantined_npis": None, "received_valid_share": None,
    })
    assert (rows["web"]["with_npi"], rows["web"]["coverage"]) == (1, 0.5)
    assert (rows["events"]["with_npi"], rows["events"]["valid_share"]) == (0, None)
    assert _long(r, "npi", "", "npi", "quarantined_npis") == 1.0
    assert not _rows(r.to_long(), section="npi", source="crm", metric="quarantined_npis")


def test_quarantine_most_frequent_first(world: tuple[Workspace, QualityReport]) -> None:
    _, r = world
    q = r.quarantine.to_pylist()
    assert [(x["table"], x["column"], x["rows"]) for x in q] == [
        ("interactions", "channel", 2),
        ("hcps", "npi", 1),
    ]
    reason = str(q[0]["reason"])
    assert reason.startswith("unknown channel")
    assert _long(r, "quarantine", "", "interactions.channel", reason) == 2.0


def test_stale(world: tuple[Workspace, QualityReport]) -> None:
    ws, r = world
    rows = {row["source"]: row for row in r.stale.to_pylist()}
    assert {k: (v["records"], v["stale"], v["no_updated_at"]) for k, v in rows.items()} == {
        "": (7, 1, 1), "crm": (3, 1, 0), "web": (2, 0, 1), "events": (2, 0, 0),
    }
    assert rows["crm"]["stale_share"] == pytest.approx(1 / 3)
    assert _long(r, "stale", "", "updated_at", "stale_after_days") == 365.0
    assert r.as_of == AS_OF

    # a later as_of and a shorter threshold make more records stale
    ws.settings.setdefault("quality", {})["stale_after_days"] = 30
    try:
        eng = engines.connect(ws, read_only=True)
        try:
            later = quality_report(eng, ws, as_of=datetime(2025, 6, 1, 2, tzinfo=UTC))
        finally:
            eng.close()
    finally:
        ws.settings["quality"]["stale_after_days"] = 365
    # aware as_of 02:00 UTC, 30 days: cutoff 2025-05-02 02:00, after every stored updated_at
    stale = {row["source"]: row["stale"] for row in later.stale.to_pylist()}
    assert stale == {"": 6, "crm": 3, "web": 1, "events": 2}
    assert later.stale_after_days == 30


def test_channel_volume(world: tuple[Workspace, QualityReport]) -> None:
    _, r = world
    assert r.channel_volume.to_pylist() == [
        {"month": "2025-03", "channel": "email", "interactions": 2},
        {"month": "2025-04", "channel": "f2f_visit", "interactions": 1},
        {"month": "2025-04", "channel": "web", "interactions": 2},
    ]
    assert _long(r, "channel_volume", "", "web", "2025-04") == 2.0


def test_consent_gaps(world: tuple[Workspace, QualityReport]) -> None:
    _, r = world
    rows = {row["source"]: row for row in r.consent_gaps.to_pylist()}
    assert set(rows) == {"", "crm", "web"}
    everyone = rows[""]
    assert (everyone["records_with_interactions"], everyone["no_consent"]) == (4, 1)
    assert everyone["no_consent_share"] == 0.25
    assert (
        everyone["no_promotional_consent"],
        everyone["no_medical_consent"],
        everyone["no_research_consent"],
    ) == (2, 3, 4)
    assert (rows["crm"]["no_consent"], rows["crm"]["no_promotional_consent"]) == (0, 1)
    assert (rows["web"]["no_consent"], rows["web"]["no_consent_share"]) == (1, 0.5)
    assert _long(r, "consent_gaps", "web", "", "no_consent") == 1.0
    assert _long(r, "consent_gaps", "", "medical", "no_consent_share") == 0.75
    assert _long(r, "consent_gaps", "", "", "records_with_interactions") == 4.0


def test_likely_duplicates(world: tuple[Workspace, QualityReport]) -> None:
    _, r = world
    assert r.likely_duplicates.to_pylist() == [
        {"match": "npi", "sources": "", "groups": 1, "records": 2},
        {"match": "npi", "sources": "crm+web", "groups": 1, "records": 2},
        {"match": "email", "sources": "", "groups": 1, "records": 2},
        {"match": "email", "sources": "crm+web", "groups": 1, "records": 2},
        {"match": "npi_or_email", "sources": "", "groups": None, "records": 4},
    ]
    assert _long(r, "likely_duplicates", "crm+web", "email", "groups") == 1.0


def test_long_layout_and_no_personal_data(world: tuple[Workspace, QualityReport]) -> None:
    _, r = world
    long = r.to_long()
    assert long.schema == LONG_SCHEMA
    assert set(long["section"].to_pylist()) == set(SECTIONS)
    assert long["value"].null_count == 0
    for name in ("section", "source", "column", "metric"):
        for text in long[name].to_pylist():
            assert "@" not in text
            assert not any(e in text.lower() for e in EMAILS)

    out = io.StringIO()
    r.render(Console(file=out, width=200))
    text = out.getvalue()
    assert "@" not in text
    assert "Completeness" in text and "Likely duplicates" in text
    assert "[contract]" in text  # the quarantine reason, printed literally (no markup)
    assert "crm+web" in text


def test_render_shows_ten_rows_of_long_sections(world: tuple[Workspace, QualityReport]) -> None:
    _, r = world
    out = io.StringIO()
    r.render(Console(file=out, width=200))
    n = r.completeness.num_rows
    assert n > 10
    assert f"first 10 of {n} rows" in out.getvalue()


def test_only_hcps_loaded(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    services.ingest(ws, [_drop(tmp_path / "drop", {"hcps.csv": HCPS})])
    eng = engines.connect(ws, read_only=True)
    try:
        r = quality_report(eng, ws)
    finally:
        eng.close()
    assert r.channel_volume.num_rows == 0
    assert r.consent_gaps.to_pylist() == [
        {
            "source": "", "records_with_interactions": 0, "no_consent": 0,
            "no_consent_share": None, "no_promotional_consent": 0,
            "no_promotional_consent_share": None, "no_medical_consent": 0,
            "no_medical_consent_share": None, "no_research_consent": 0,
            "no_research_consent_share": None,
        }
    ]
    assert _one(r.npi, source="")["records"] == 7
    assert r.quarantine.to_pylist()[0]["rows"] == 1
    assert _long(r, "consent_gaps", "", "", "records_with_interactions") == 0.0
    out = io.StringIO()
    r.render(Console(file=out, width=200))
    assert "no rows" in out.getvalue()


def test_nothing_loaded(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    eng = engines.connect(ws)
    try:
        r = quality_report(eng, ws, as_of=AS_OF)
    finally:
        eng.close()
    assert r.quarantine.num_rows == 0
    assert _one(r.npi, source="")["records"] == 0
    assert r.likely_duplicates.to_pylist()[-1] == {
        "match": "npi_or_email", "sources": "", "groups": None, "records": 0,
    }
    assert r.to_long().schema == LONG_SCHEMA
    r.render(Console(file=io.StringIO(), width=200))
