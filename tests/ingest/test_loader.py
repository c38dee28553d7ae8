"""The loader: quarantine lines, idempotency, atomicity, attributes, whole-file failures,
Parquet input, sorted storage and the `hcpj ingest` command."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import textwrap
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from hcpjourney import cli
from hcpjourney.engine import duckdb as duck_engine

HCPJ = Path(sys.executable).with_name("hcpj")
INTERACTIONS_HEADER = [
    "event_id", "record_id", "ts", "channel", "action", "direction", "team", "owner_id",
    "content_id", "campaign_id", "duration_s", "value_usd", "topic",
]
RECORDS = ("crm:1", "crm:2", "web:3")


def event_line(i: int, **change: str) -> str:
    """A valid interactions CSV line for event i; every 5th topic holds a quoted comma."""
    row = {
        "event_id": f"e{i:03d}",
        "record_id": RECORDS[i % 3],
        "ts": (datetime(2024, 3, 1) + timedelta(hours=7 * i)).isoformat() + "Z",
        "channel": ("email", "web", "f2f_visit", "webinar")[i % 4],
        "action": ("opened", "visited", "completed", "attended")[i % 4],
        "direction": "outbound",
        "team": "commercial",
        "owner_id": f"rep{i % 4}",
        "content_id": "",
        "campaign_id": "",
        "duration_s": str(10 * i),
        "value_usd": "",
        "topic": '"lipids, diet"' if i % 5 == 0 else f"topic {i}",
    }
    row.update(change)
    return ",".join(row[c] for c in INTERACTIONS_HEADER)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """Run `hcpj ARGS` in this process through the console entry point."""
    monkeypatch.setattr(sys, "argv", ["hcpj", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def hcps_base(module_factory):
    """A workspace holding the sample hcps (crm:1, crm:2, web:3)."""
    wh = module_factory.workspace("hcps-base")
    wh.ingest(module_factory.drop("hcps-base").sample("hcps").path)
    return wh


@pytest.fixture
def hcps_ws(hcps_base, factory):
    """A fresh copy of the hcps workspace for one test."""
    return factory.clone(hcps_base, "ws-with-hcps")


# ------------------------------------------------------------ quarantine lines (exact)
FAULTS: dict[int, tuple[set[str], dict[str, str] | str]] = {
    # line: (quarantined columns, change to the valid line or the raw line)
    4: ({"channel"}, {"channel": "fax"}),
    8: ({"event_id"}, {"event_id": ""}),
    12: ({"ts"}, {"ts": "2024-03-32T10:00:00Z"}),
    15: ({"record_id"}, {"record_id": "crm:404"}),
    19: ({""}, event_line(17) + ",EXTRA"),  # ragged: one field too many
    23: ({"value_usd"}, {"value_usd": '"12,50"'}),  # quoted comma, but not a number
    27: ({""}, event_line(25, topic="lipids, diet")),  # unquoted comma: ragged
    31: ({"ts"}, {"ts": (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")}),
    35: ({""}, "e033,crm:1"),  # ragged: too few fields
    40: ({"channel", "action"}, {"channel": "pigeon", "action": "flew"}),
    44: ({"event_id"}, {"event_id": "e001"}),  # repeats e001 (line 3) with other values
}


def faulty_drop_text(n: int = 50) -> str:
    lines = [",".join(INTERACTIONS_HEADER)]
    for i in range(n):
        line_no = i + 2
        change = FAULTS.get(line_no, (set(), {}))[1]
        lines.append(change if isinstance(change, str) else event_line(i, **change))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("block", [None, 300], ids=["one-block", "many-blocks"])
def test_quarantine_lines_are_exactly_the_faulty_lines(
    factory, hcps_ws, monkeypatch, block
) -> None:
    if block:  # many small CSV blocks: line numbers must carry across them
        monkeypatch.setattr(duck_engine, "_BLOCK", block)
    drop = factory.drop()
    text = faulty_drop_text()
    drop.text("interactions.csv", text)
    wh = hcps_ws
    res = wh.ingest(drop.path)["interactions.csv"]

    q = wh.quarantine("interactions.csv")
    by_line: dict[int, set[str]] = {}
    for _, line, column, _, _ in q:
        by_line.setdefault(line, set()).add(column)
    assert by_line == {line: cols for line, (cols, _) in FAULTS.items()}
    assert (res.rows, res.loaded, res.quarantined, res.duplicates) == (
        50, 50 - len(FAULTS), len(FAULTS), 0
    )
    # ragged rows carry the raw line as their value
    raw_lines = text.splitlines()
    for _, line, column, value, reason in q:
        if column == "":
            assert value == raw_lines[line - 1]
            assert "fields but the header has 13" in reason
    reasons = {line: r for _, line, _, _, r in q}
    assert "repeats an earlier row of this file" in reasons[44]
    assert "is in the future" in reasons[31]

    # every loaded event remembers the line it came from
    stored = wh.rows("interactions")
    assert {r["event_id"]: r["_line"] for r in stored} == {
        f"e{line - 2:03d}": line for line in range(2, 52) if line not in FAULTS
    }
    topics = {r["event_id"]: r["topic"] for r in stored}
    assert topics["e000"] == topics["e045"] == "lipids, diet"


# ------------------------------------------------------------------------ idempotency
@pytest.fixture(scope="module")
def base(module_factory):
    """A workspace holding the sample drop (with one bad interaction), and that drop."""
    drop = module_factory.drop("base").sample()
    header, rows = module_factory.sample()["interactions"]
    bad = ["e9", "crm:1", "2024-02-09", "fax", "sent"] + [""] * 8
    drop.csv("interactions.csv", header, [*rows, bad])
    wh = module_factory.workspace("base")
    results = wh.ingest(drop.path)
    return wh, drop, results


@pytest.fixture
def loaded(base, factory):
    """A copy of the base workspace that a test may change."""
    return factory.clone(base[0], "copy")


def test_same_drop_twice_changes_nothing(base, loaded, factory) -> None:
    _, drop, first = base
    assert {r.status for r in first.values()} == {"loaded"}
    assert len(first) == 7
    before = loaded.snapshot()
    assert before["quarantine"] and all(before[t] for t in ("hcps", "interactions", "loads"))
    again = loaded.ingest(drop.path)
    assert set(again) == set(first)
    assert {r.status for r in again.values()} == {"already loaded"}
    assert all(r.loaded == r.quarantined == 0 for r in again.values())
    # the same bytes under another name are the same file
    copy = factory.drop("copy-of-interactions")
    copy.bytes("interactions_copy.csv", (drop.path / "interactions.csv").read_bytes())
    assert loaded.ingest(copy.path)["interactions_copy.csv"].status == "already loaded"
    assert loaded.snapshot() == before


def test_workspace_with_sha256_digests_still_loads_idempotently(base, loaded) -> None:
    """A workspace from before BLAKE3 digests: its loads column is renamed in place and
    the same drop, no longer recognised by its bytes, is recognised by its keys."""
    _, drop, _ = base
    with loaded.engine() as eng:
        eng.backend.raw_sql(
            "ALTER TABLE loads RENAME COLUMN digest TO sha256; "
            "UPDATE loads SET sha256 = repeat('ab', 32)"
        )
    before = loaded.snapshot()
    again = loaded.ingest(drop.path)
    assert {r.status for r in again.values()} == {"loaded"}
    assert sum(r.loaded for r in again.values()) == 0
    assert sum(r.duplicates for r in again.values()) > 0
    after = loaded.snapshot()
    for table in ("hcps", "content", "interactions", "consents", "outcomes", "feedback",
                  "relationships"):
        assert after[table] == before[table], table
    digests = [r["digest"] for r in after["loads"]]
    assert sum(d == "ab" * 32 for d in digests) == 7
    assert sum(d.startswith("blake3:") for d in digests) == 7
    # and now the drop is known by its bytes again
    assert {r.status for r in loaded.ingest(drop.path).values()} == {"already loaded"}


def test_same_rows_in_another_file_are_duplicates(base, loaded, factory, sample) -> None:
    drop = factory.drop("resend")
    tables = ("hcps", "interactions", "consents", "relationships")
    for table in tables:
        header, rows = sample[table]
        # other bytes than the first drop (rows reversed), so the rows themselves are compared
        drop.csv(f"{table}_resend.csv", header, rows[::-1])
    before = loaded.snapshot()
    res = loaded.ingest(drop.path)
    for table in tables:
        r = res[f"{table}_resend.csv"]
        assert (r.status, r.loaded, r.duplicates, r.quarantined) == ("loaded", 0, 3, 0), table
    after = loaded.snapshot()
    for table in ("hcps", "content", "interactions", "consents", "outcomes", "feedback",
                  "relationships", "quarantine"):
        assert after[table] == before[table], table


def test_changed_event_is_quarantined_not_loaded(loaded, factory, sample) -> None:
    header, rows = sample["interactions"]
    changed = list(rows[0])
    changed[header.index("channel")] = "phone"
    new = ["e4", "crm:2", "2024-02-04T08:00:00Z", "sms", "delivered"] + [""] * 8
    drop = factory.drop("fix")
    drop.csv("interactions_fix.csv", header, [new, changed])
    before = {r["event_id"]: r for r in loaded.rows("interactions")}

    res = loaded.ingest(drop.path)["interactions_fix.csv"]
    assert (res.loaded, res.quarantined, res.duplicates) == (1, 1, 0)
    q = loaded.quarantine("interactions_fix.csv")
    assert [(f, ln, c, v) for f, ln, c, v, _ in q] == [("interactions_fix.csv", 3, "event_id", "e1")]
    assert "event_id was already loaded with other values" in q[0][4]
    after = {r["event_id"]: r for r in loaded.rows("interactions")}
    assert after["e1"] == before["e1"]
    assert set(after) == {*before, "e4"}


def test_changed_hcp_replaces_the_stored_record(loaded, factory, sample) -> None:
    header, rows = sample["hcps"]
    changed = dict(zip(header, rows[0], strict=True))
    changed.update(last_name="Smith-Jones", decile="4")
    drop = factory.drop("update")
    drop.csv("hcps_update.csv", header, [rows[1], [changed[h] for h in header]])
    res = loaded.ingest(drop.path)["hcps_update.csv"]
    assert (res.loaded, res.duplicates, res.quarantined) == (1, 1, 0)
    hcps = loaded.rows("hcps")
    assert sorted(r["record_id"] for r in hcps) == ["crm:1", "crm:2", "web:3"]
    crm1 = next(r for r in hcps if r["record_id"] == "crm:1")
    assert (crm1["last_name"], crm1["decile"], crm1["first_name"]) == ("Smith-Jones", 4, "Ada")


def test_relationship_without_kind_is_keyed_too(loaded, factory) -> None:
    """kind is optional: an edge with no kind is replaced by a re-send with another weight
    (test_same_rows_in_another_file_are_duplicates re-sends it unchanged)."""
    drop = factory.drop("edges")
    header = ["src_record_id", "dst_record_id", "kind", "weight"]
    drop.csv("relationships_weight.csv", header, [["web:3", "crm:1", "", "5"]])
    res = loaded.ingest(drop.path)["relationships_weight.csv"]
    assert res.loaded == 1
    edges = [r for r in loaded.rows("relationships") if r["src_record_id"] == "web:3"]
    assert [(r["dst_record_id"], r["kind"], r["weight"]) for r in edges] == [("crm:1", None, 5.0)]


def test_repeated_keys_within_one_file(factory, hcps_ws) -> None:
    drop = factory.drop()
    header = ["record_id", "source", "last_name", "city"]
    drop.csv("hcps_more.csv", header, [
        ["crm:7", "crm", "Old", "Lyon"],
        ["crm:7", "crm", "New", "Paris"],  # upsert: the later row of the file wins
    ])
    lines = [",".join(INTERACTIONS_HEADER), event_line(1), event_line(2), event_line(1),
             event_line(2, channel="sms")]
    drop.text("interactions.csv", "\n".join(lines) + "\n")
    wh = hcps_ws
    res = wh.ingest(drop.path)
    assert (res["interactions.csv"].loaded, res["interactions.csv"].duplicates) == (2, 1)
    q = wh.quarantine("interactions.csv")
    assert [(ln, c, v) for _, ln, c, v, _ in q] == [(5, "event_id", "e002")]
    assert "repeats an earlier row of this file with other values" in q[0][4]
    stored = {r["event_id"]: r["channel"] for r in wh.rows("interactions")}
    assert stored == {"e001": "web", "e002": "f2f_visit"}
    crm7 = [r for r in wh.rows("hcps") if r["record_id"] == "crm:7"]
    assert [(r["last_name"], r["city"], r["_line"]) for r in crm7] == [("New", "Paris", 3)]


# -------------------------------------------------------------------- crash mid-file
CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from hcpjourney import services
    from hcpjourney.config import Workspace
    from hcpjourney.engine.duckdb import DuckDBEngine
    from hcpjourney.ingest import loader

    ws_dir, drop_dir, crash_table, crash_file = sys.argv[1:5]
    current = []
    load = loader.Loader.load

    def spy(self, src, *args, **kwargs):
        current.append(src.file)
        return load(self, src, *args, **kwargs)

    insert = DuckDBEngine.insert

    def crashing_insert(self, name, expr):
        insert(self, name, expr)
        if name == crash_table and current and current[-1] == crash_file:
            n = self._raw.execute('SELECT count(*) FROM "interactions"').fetchone()[0]
            print("rows before the crash:", n, flush=True)
            os._exit(1)

    loader.Loader.load = spy
    DuckDBEngine.insert = crashing_insert
    services.ingest(Workspace.open(ws_dir), [drop_dir])
    print("no crash", flush=True)
    """
)


@pytest.mark.parametrize("bad_row", [True, False], ids=["staged-path", "one-pass-path"])
def test_crash_mid_file_leaves_no_trace_and_rerun_is_clean(factory, hcps_base, bad_row) -> None:
    """The process dies after the file's last write (its loads row), before the commit.

    A file with a bad row takes the staged path; a clean one the one-pass path."""
    drop = factory.drop("crash")
    drop.sample("content")  # loads (and commits) before interactions
    lines = [",".join(INTERACTIONS_HEADER)] + [event_line(i) for i in range(20)]
    if bad_row:
        lines[5] = event_line(4, channel="fax")  # one bad row: the file has quarantine rows
    drop.text("interactions.csv", "\n".join(lines) + "\n")
    good = 19 if bad_row else 20
    reference = factory.clone(hcps_base, "clean")
    reference.ingest(drop.path)
    clean = reference.snapshot(stable=True)

    wh = factory.clone(hcps_base, "crashed")
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(wh.ws.root), str(drop.path), "loads",
         "interactions.csv"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the good rows were written, only the commit was missing
    assert f"rows before the crash: {good}" in proc.stdout

    assert wh.rows("interactions") == []
    assert wh.quarantine("interactions.csv") == []
    assert sorted(r["file"] for r in wh.rows("loads")) == ["content.csv", "hcps.csv"]
    assert len(wh.rows("content")) == 3  # committed before the crash

    res = wh.ingest(drop.path)
    assert res["content.csv"].status == "already loaded"
    assert (res["interactions.csv"].status, res["interactions.csv"].loaded) == ("loaded", good)
    assert wh.snapshot(stable=True) == clean


# ------------------------------------------------------------------------- attributes
def test_unknown_columns_are_kept_as_attributes(factory) -> None:
    drop = factory.drop()
    drop.csv("hcps.csv", ["Territory Code", "record_id", "source", "last_name", "note"], [
        ["T-01", "crm:1", "crm", "Smith", 'Zürich "HQ", 2nd floor'],
        ["", "crm:2", "crm", "Jones", "1"],
    ])
    drop.csv("interactions.csv", [*INTERACTIONS_HEADER[:5], "utm_source"], [
        ["e1", "crm:1", "2024-02-01T10:00:00Z", "email", "opened", "newsletter"],
    ])
    drop.csv("consents.csv", ["record_id", "channel", "status", "ts", "purpose"], [
        ["crm:1", "email", "opt_in", "2024-01-01T00:00:00Z", "promotional"],
    ])
    wh = factory.workspace()
    wh.ingest(drop.path)
    attrs = {r["record_id"]: json.loads(r["attributes"]) for r in wh.rows("hcps")}
    assert attrs == {
        "crm:1": {"Territory Code": "T-01", "note": 'Zürich "HQ", 2nd floor'},
        "crm:2": {"Territory Code": None, "note": "1"},
    }
    [event] = wh.rows("interactions")
    assert json.loads(event["attributes"]) == {"utm_source": "newsletter"}
    [consent] = wh.rows("consents")
    assert consent["attributes"] is None
    assert wh.quarantine() == []


# ------------------------------------------------------------- whole-file failures
def _png() -> bytes:
    ihdr = b"\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"\x90wS\xde\x00\x00\x00\x00IEND\xaeB`\x82"


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("interactions.csv", ",".join(INTERACTIONS_HEADER) + "\n" + event_line(1))
    return buf.getvalue()


GOOD_HEADER = ",".join(INTERACTIONS_HEADER)
UNREADABLE = {
    # id: (file name, bytes, fragment of the one-line error)
    "latin1-body": (
        "interactions.csv",
        (GOOD_HEADER + "\n" + event_line(1) + "\n" + event_line(2, topic="café") + "\n")
        .encode("latin-1"),
        "is not UTF-8 text",
    ),
    "latin1-header": (
        "interactions.csv",
        (GOOD_HEADER + ",catégorie\n" + event_line(1) + ",x\n").encode("latin-1"),
        "is not UTF-8 text",
    ),
    "png": ("interactions.csv", _png(), "is not a CSV text file"),
    "zip": ("interactions.csv", _zip(), "is not a CSV text file"),
    "json-array": (
        "interactions.csv",
        json.dumps([{"event_id": "e1", "record_id": "crm:1"}]).encode(),
        "holds JSON, not CSV",
    ),
    "json-lines": (
        "interactions.csv",
        b'{"event_id": "e1", "record_id": "crm:1"}\n{"event_id": "e2"}\n',
        "holds JSON, not CSV",
    ),
    "missing-column": (
        "interactions.csv",
        "\n".join(
            ",".join(c for j, c in enumerate(line.split(",")) if j != 3)
            for line in (GOOD_HEADER, event_line(1), event_line(2))
        ).encode(),
        "missing required column(s) channel;",
    ),
    "missing-columns": (
        "interactions.csv",
        b"event_id,record_id,topic\ne1,crm:1,x\n",
        "missing required column(s) ts, channel, action",
    ),
    "empty": ("interactions.csv", b"", "is empty"),
    "parquet-not-parquet": (
        "interactions.parquet",
        (GOOD_HEADER + "\n" + event_line(1) + "\n").encode(),
        "not a readable Parquet file",
    ),
}


def unreadable_name(case: str) -> str:
    """interactions_<case>.csv (or .parquet): all of them are interactions files."""
    name = UNREADABLE[case][0]
    stem, _, suffix = name.partition(".")
    return f"{stem}_{case}.{suffix}"


@pytest.fixture(scope="module")
def unreadable(module_factory):
    """One drop: every unreadable file, a good hcps file and a good consents file."""
    drop = module_factory.drop("unreadable").sample("hcps", "consents")
    for case, (_, data, _) in UNREADABLE.items():
        drop.bytes(unreadable_name(case), data)
    drop.parquet("interactions_no_action.parquet", pa.table({
        "event_id": ["e1"], "record_id": ["crm:1"], "ts": ["2024-01-01"], "channel": ["email"],
    }))
    wh = module_factory.workspace("unreadable")
    return wh, wh.ingest(drop.path)


UNREADABLE_CASES = [
    *((unreadable_name(c), UNREADABLE[c][2]) for c in UNREADABLE),
    ("interactions_no_action.parquet", "missing required column(s) action;"),
]


@pytest.mark.parametrize(("name", "fragment"), UNREADABLE_CASES, ids=[*UNREADABLE, "parquet"])
def test_unreadable_file_fails_alone(unreadable, name, fragment) -> None:
    wh, res = unreadable
    failed = res[name]
    assert failed.status == "failed"
    assert fragment in failed.error
    assert "\n" not in failed.error
    assert (failed.rows, failed.loaded, failed.quarantined) == (0, 0, 0)
    assert wh.quarantine(name) == []
    assert name not in {r["file"] for r in wh.rows("loads")}


def test_other_files_of_a_drop_with_unreadable_files_load(unreadable, sample) -> None:
    wh, res = unreadable
    assert {f for f, r in res.items() if r.status == "failed"} == {n for n, _ in UNREADABLE_CASES}
    for table in ("hcps", "consents"):
        r = res[f"{table}.csv"]
        assert (r.status, r.loaded) == ("loaded", len(sample[table][1])), table
        assert len(wh.rows(table)) == len(sample[table][1])
    assert wh.rows("interactions") == []
    assert {r["file"] for r in wh.rows("loads")} == {"hcps.csv", "consents.csv"}


@pytest.mark.parametrize("case", ["latin1-body", "png", "json-array", "missing-column"])
def test_cli_reports_an_unreadable_file_in_one_line(
    factory, monkeypatch, capsys, case
) -> None:
    name, data, fragment = UNREADABLE[case]
    drop = factory.drop()
    drop.bytes(name, data)
    wh = factory.workspace()
    code, out, err = run_cli(monkeypatch, capsys, "ingest", str(drop.path),
                             "--workspace", str(wh.ws.root))
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {name}: ")
    assert fragment in lines[0]
    assert "Traceback" not in out + err
    assert wh.rows("interactions") == []


def test_cli_process_exit_and_message(factory) -> None:
    """The real console script: other files load, the bad one fails in one stderr line."""
    name, data, _ = UNREADABLE["latin1-body"]
    drop = factory.drop().sample("hcps")
    drop.bytes(name, data)
    wh = factory.workspace()
    proc = subprocess.run(
        [str(HCPJ), "ingest", str(drop.path), "--workspace", str(wh.ws.root)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: interactions.csv: is not UTF-8 text; re-save it as UTF-8 (CSV UTF-8 in Excel)"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "hcps.csv" in proc.stdout
    assert len(wh.rows("hcps")) == 3
    assert wh.rows("interactions") == []


def test_cli_outside_a_workspace(factory) -> None:
    drop = factory.drop().sample("hcps")
    here = factory.root / "not-a-workspace"
    here.mkdir()
    proc = subprocess.run(
        [str(HCPJ), "ingest", str(drop.path)], cwd=here,
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "is not an hcpjourney workspace" in lines[0]
    assert "hcpj init" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (here / "warehouse.duckdb").exists()


def test_cli_outside_a_workspace_in_process(factory, monkeypatch, capsys) -> None:
    drop = factory.drop().sample("hcps")
    code, _, err = run_cli(monkeypatch, capsys, "ingest", str(drop.path),
                           "--workspace", str(factory.root / "nowhere"))
    assert code != 0
    [line] = err.strip().splitlines()
    assert "`hcpj init" in line


# ----------------------------------------------------------------------------- parquet
def test_parquet_loads_like_the_equivalent_csv(factory) -> None:
    hcps = {
        "record_id": ["crm:1", "crm:2", "web:3"],
        "source": ["crm", "crm", "web"],
        "last_name": ["Smith", "Jones", "Brown"],
        "decile": [3, None, 10],
        "is_kol": [True, False, None],
        "updated_at": [datetime(2024, 1, 5, 9, 0), datetime(2024, 1, 6, 9, 30, 15), None],
        "region": [7, 8, None],  # unknown column: kept as an attribute
    }
    n = 12
    events = {
        "event_id": [f"e{i}" for i in range(n)],
        "record_id": [RECORDS[i % 3] if i != 6 else "crm:404" for i in range(n)],
        "ts": [datetime(2024, 2, 1) + timedelta(hours=5 * i, seconds=i) for i in range(n)],
        "channel": ["email" if i != 3 else "fax" for i in range(n)],
        "action": ["opened"] * n,
        "duration_s": [float(i) * 1.5 if i % 2 else None for i in range(n)],
        "value_usd": [i * 10 if i % 3 == 0 else None for i in range(n)],
        "utm_campaign": [f"c{i % 2}" for i in range(n)],
    }
    pq_drop = factory.drop("parquet")
    pq_drop.parquet("hcps.parquet", pa.table({
        **hcps,
        "decile": pa.array(hcps["decile"], pa.int64()),
        "is_kol": pa.array(hcps["is_kol"], pa.bool_()),
        "updated_at": pa.array(hcps["updated_at"], pa.timestamp("us", tz="UTC")),
        "region": pa.array(hcps["region"], pa.int64()),
    }))
    pq_drop.parquet("interactions.parquet", pa.table({
        **events,
        "ts": pa.array(events["ts"], pa.timestamp("us")),
        "value_usd": pa.array(events["value_usd"], pa.int64()),
    }), row_group_size=5)

    def text(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, datetime):
            return v.isoformat() + "Z"
        return str(v)

    csv_drop = factory.drop("csv")
    for name, cols in (("hcps", hcps), ("interactions", events)):
        rows = [[text(v) for v in vals] for vals in zip(*cols.values(), strict=True)]
        csv_drop.csv(f"{name}.csv", list(cols), rows)

    a, b = factory.workspace("from-csv"), factory.workspace("from-parquet")
    ra, rb = a.ingest(csv_drop.path), b.ingest(pq_drop.path)
    assert (rb["interactions.parquet"].rows, rb["interactions.parquet"].loaded) == (n, n - 2)
    assert ra["interactions.csv"].loaded == n - 2
    for table in ("hcps", "interactions"):  # typed values, attributes and row hashes
        no_id = frozenset({"_load_id", "_line"})
        assert b.rows(table, drop=no_id) == a.rows(table, drop=no_id), table
    # lines: Parquet rows are numbered row index + 2; the CSV interactions (two bad rows:
    # the staged path) by record, the same; the clean hcps.csv loaded in one pass has none
    assert [r["_line"] for r in b.rows("interactions")] == [
        r["_line"] for r in a.rows("interactions")]
    assert sorted(r["_line"] for r in b.rows("hcps")) == [2, 3, 4]
    assert {r["_line"] for r in a.rows("hcps")} == {None}
    crm1 = next(r for r in b.rows("hcps") if r["record_id"] == "crm:1")
    assert (crm1["decile"], crm1["is_kol"], crm1["updated_at"]) == (3, True, hcps["updated_at"][0])
    assert json.loads(crm1["attributes"]) == {"region": "7"}

    # Parquet lines are the row index + 2, as CSV lines with the header as line 1
    qa = [(ln, c, v) for _, ln, c, v, _ in a.quarantine()]
    qb = [(ln, c, v) for _, ln, c, v, _ in b.quarantine()]
    assert qb == qa == [(5, "channel", "fax"), (8, "record_id", "crm:404")]
    assert {f for f, *_ in b.quarantine()} == {"interactions.parquet"}


# ------------------------------------------------------------------------ sorted store
def test_interactions_are_stored_sorted_across_ingests(factory, hcps_ws) -> None:
    rng = random.Random(7)

    def events(start: int, n: int) -> list[list[str]]:
        rows = []
        for i in range(start, start + n):
            # few distinct timestamps: ties are ordered by event_id
            ts = datetime(2024, 1, 1) + timedelta(days=rng.randrange(5))
            rows.append([f"ev{rng.randrange(10**6):06d}-{i}", rng.choice(RECORDS),
                         ts.isoformat() + "Z", "email", "opened"])
        rng.shuffle(rows)
        return rows

    header = INTERACTIONS_HEADER[:5]
    first = factory.drop("first")
    first.csv("interactions.csv", header, events(0, 60))
    second = factory.drop("second")
    second.csv("interactions.csv", header, events(60, 60))
    second.csv("hcps.csv", ["record_id", "source", "last_name"], [["abc:0", "crm", "Adams"]])
    wh = hcps_ws
    wh.ingest(first.path)
    wh.ingest(second.path)

    stored = [(r["record_id"], r["ts"], r["event_id"]) for r in wh.rows("interactions")]
    assert len(stored) == 120
    assert stored == sorted(stored)
    assert len({ts for _, ts, _ in stored}) < 20  # the sort had ties to break
    assert [r["record_id"] for r in wh.rows("hcps")] == ["abc:0", "crm:1", "crm:2", "web:3"]
