"""Event-log readers (XES, CSV): parsing against a whole-document reference parse,
the contract mapping, loading through the loader, and one-line errors."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ibis
import pytest

from hcpjourney.errors import HcpjError, InputFileError
from hcpjourney.ingest import eventlog
from hcpjourney.ingest.loader import Loader, Source
from hcpjourney.journey import paths
from realdata_path import REALDATA

REAL = REALDATA / "event_logs"

XES_NS = "http://www.xes-standard.org/"

CRAFTED = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the log -->
<log xes.version="1.0" xmlns="{XES_NS}">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <global scope="event"><string key="concept:name" value="UNKNOWN"/></global>
  <float key="meta:stats" value="1.5"><float key="nested" value="2"/></float>
  <trace>
    <string key="concept:name" value="T1"/>
    <string key="region" value="north"/>
    <event>
      <string key="concept:name" value="register"/>
      <date key="time:timestamp" value="2024-03-01T10:00:00.000+02:00"/>
      <string key="lifecycle:transition" value="complete"/>
      <string key="org:resource" value="Ann"/>
      <container key="meta">
        <string key="concept:name" value="NESTED-must-not-win"/>
      </container>
    </event>
    <!-- a comment inside a trace -->
    <event>
      <string key="concept:name" value="check"/>
      <date key="time:timestamp" value="2024-03-01T08:00:00Z"/>
      <int key="cost" value="7"/>
    </event>
    <event>
      <string key="concept:name" value="decide"/>
      <date key="time:timestamp" value="2024-03-01T07:30:00-01:00"/>
    </event>
  </trace>
  <trace>
    <event>
      <string key="concept:name" value="register"/>
      <date key="time:timestamp" value="2024-03-02T09:00:00"/>
    </event>
  </trace>
</log>
"""


def crafted(tmp_path: Path, *, gz: bool = False) -> Path:
    data = CRAFTED.encode()
    if gz:
        p = tmp_path / "crafted.xes.gz"
        p.write_bytes(gzip.compress(data))
    else:
        p = tmp_path / "crafted.xes"
        p.write_bytes(data)
    return p


@pytest.mark.parametrize("gz", [False, True])
def test_crafted_xes(tmp_path: Path, gz: bool) -> None:
    t = eventlog.read_eventlog_table(crafted(tmp_path, gz=gz), attributes=True).to_pylist()
    assert [(r["case"], r["activity"], r["ts"], r["event_id"], r["position"], r["lifecycle"]) for r in t] == [
        ("T1", "register", datetime(2024, 3, 1, 8, 0), "eventlog:T1:000000", 0, "complete"),
        ("T1", "check", datetime(2024, 3, 1, 8, 0), "eventlog:T1:000001", 1, None),
        ("T1", "decide", datetime(2024, 3, 1, 8, 30), "eventlog:T1:000002", 2, None),
        # an unnamed trace is named by its ordinal; no offset means UTC
        ("trace-2", "register", datetime(2024, 3, 2, 9, 0), "eventlog:trace-2:000000", 0, None),
    ]
    assert [r["org:resource"] for r in t] == ["Ann", None, None, None]
    assert [r["cost"] for r in t] == [None, "7", None, None]


def test_crafted_xes_same_without_lxml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = crafted(tmp_path)
    a = eventlog.read_eventlog_table(path, attributes=True)
    monkeypatch.setattr(eventlog, "_xml_parser", lambda: (ET.iterparse, (ET.ParseError,), False))
    b = eventlog.read_eventlog_table(path, attributes=True)
    assert a.equals(b)


def test_order_by_ts_then_event_id_keeps_file_order_for_ties(tmp_path: Path) -> None:
    # T1's register (08:00 UTC) and check (08:00 UTC) tie: file order decides
    t = ibis.memtable(eventlog.read_eventlog_table(crafted(tmp_path)))
    got = {
        (r["from_activity"], r["to_activity"]): r["count"]
        for r in paths.transitions(t, case="case", activity="activity").to_pyarrow().to_pylist()
    }
    assert got == {
        (paths.START, "register"): 2, ("register", "check"): 1, ("check", "decide"): 1,
        ("decide", paths.END): 1, ("register", paths.END): 1,
    }


def reference_parse(path: Path) -> list[tuple[str, str, datetime, str | None]]:
    """Whole-document parse with ElementTree (no streaming), direct children only."""
    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    out = []
    for trace in ET.parse(path).getroot():
        if local(trace.tag) != "trace":
            continue
        case = next(
            a.get("value") for a in trace if local(a.tag) != "event" and a.get("key") == "concept:name"
        )
        for ev in trace:
            if local(ev.tag) != "event":
                continue
            attrs = {a.get("key"): a.get("value") for a in ev}
            ts = datetime.fromisoformat(str(attrs["time:timestamp"])).astimezone(UTC).replace(tzinfo=None)
            out.append((str(case), str(attrs["concept:name"]), ts, attrs.get("org:resource")))
    return out


def test_running_example_matches_reference_parse() -> None:
    path = REAL / "running-example.xes"
    t = eventlog.read_eventlog_table(path, attributes=True).to_pylist()
    assert [(r["case"], r["activity"], r["ts"], r["org:resource"]) for r in t] == reference_parse(path)
    assert len(t) == 42
    assert len({r["case"] for r in t}) == 6


def test_not_xes_is_a_one_line_error(tmp_path: Path) -> None:
    html = tmp_path / "page.xes"
    html.write_text("<html><body>hi</body></html>")
    with pytest.raises(eventlog.EventLogError, match=r"is not an XES log \(root element <html>"):
        eventlog.read_xes(html)
    junk = tmp_path / "junk.xes"
    junk.write_bytes(b"case,activity\n1,a\n")
    with pytest.raises(eventlog.EventLogError, match="is not an XES log") as err:
        eventlog.read_xes(junk)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, InputFileError) and isinstance(err.value, HcpjError)
    broken = tmp_path / "broken.xes.gz"
    broken.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(eventlog.EventLogError, match=r"broken\.xes\.gz"):
        eventlog.read_xes(broken)
    with pytest.raises(eventlog.EventLogError, match="cannot be read"):
        eventlog.read_xes(tmp_path / "missing.xes")


# ------------------------------------------------------------------- CSV logs
def write_csv(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_log_with_named_columns_and_format(tmp_path: Path) -> None:
    p = write_csv(
        tmp_path,
        "ticket,step,when,agent\n"
        "A,open,01-02-2024 10:00,x\n"
        "B,open,01-02-2024 09:00,y\n"
        "A,close,01-02-2024 10:00,x\n"   # ties with A's open: file order
        "A,reopen,01-02-2024 09:30,z\n"  # earlier than the rows above it
        ",orphan,01-02-2024 09:00,z\n"   # no case: left out
        "B,close,,y\n",                  # no timestamp: left out
    )
    t = eventlog.read_eventlog_table(
        p, case="ticket", activity="step", timestamp="when", timestamp_format="%d-%m-%Y %H:%M",
        attributes=True,
    )
    rows = sorted(t.to_pylist(), key=lambda r: (r["case"], r["ts"], r["event_id"]))
    assert [(r["case"], r["activity"], r["ts"].isoformat(), r["agent"]) for r in rows] == [
        ("A", "reopen", "2024-02-01T09:30:00", "z"),
        ("A", "open", "2024-02-01T10:00:00", "x"),
        ("A", "close", "2024-02-01T10:00:00", "x"),
        ("B", "open", "2024-02-01T09:00:00", "y"),
    ]
    assert [r["position"] for r in rows] == [2, 0, 1, 0]


def test_csv_log_errors(tmp_path: Path) -> None:
    p = write_csv(tmp_path, "case,act,time\n1,a,2024-01-01\n")
    with pytest.raises(eventlog.EventLogError, match=r"has no column 'case:concept:name', 'concept:name'"):
        eventlog.read_eventlog_table(p)
    q = write_csv(tmp_path, "case,act,time\n1,a,yesterday\n1,b,2024-01-01\n", "bad.csv")
    with pytest.raises(eventlog.EventLogError, match=r"1 timestamps cannot be read \(first: 'yesterday'\)"):
        eventlog.read_eventlog_table(q, case="case", activity="act", timestamp="time")


def test_receipt_csv_counts() -> None:
    t = eventlog.read_eventlog_table(REAL / "receipt.csv")
    assert t.num_rows == 8577
    assert len(set(t["case"].to_pylist())) == 1434
    tr = paths.transitions(ibis.memtable(t), case="case", activity="activity").to_pyarrow().to_pylist()
    inner = [r for r in tr if r["from_activity"] != paths.START and r["to_activity"] != paths.END]
    assert len(inner) == 99  # realdata/README.md


# ------------------------------------------------------------ contract mapping
def test_contract_outputs(tmp_path: Path) -> None:
    hcps, ix = eventlog.read_eventlog(crafted(tmp_path))
    assert (hcps.table, ix.table) == ("hcps", "interactions")
    h = hcps.data.to_pylist()
    assert [(r["record_id"], r["source"], r["last_name"], r["case:region"]) for r in h] == [
        ("eventlog:T1", "eventlog", "T1", "north"), ("eventlog:trace-2", "eventlog", "trace-2", None),
    ]
    rows = ix.data.to_pylist()
    assert [(r["event_id"], r["record_id"], r["ts"], r["topic"]) for r in rows] == [
        ("eventlog:T1:000000", "eventlog:T1", "2024-03-01T08:00:00.000000Z", "register"),
        ("eventlog:T1:000001", "eventlog:T1", "2024-03-01T08:00:00.000000Z", "check"),
        ("eventlog:T1:000002", "eventlog:T1", "2024-03-01T08:30:00.000000Z", "decide"),
        ("eventlog:trace-2:000000", "eventlog:trace-2", "2024-03-02T09:00:00.000000Z", "register"),
    ]
    assert {(r["channel"], r["action"]) for r in rows} == {("eventlog", "completed")}
    assert [r["lifecycle"] for r in rows] == ["complete", None, None, None]
    assert [r["org:resource"] for r in rows] == ["Ann", None, None, None]
    assert [r["_line"] for r in rows] == [2, 3, 4, 5]


def test_clashing_attribute_names_are_prefixed(tmp_path: Path) -> None:
    p = write_csv(tmp_path, "case:concept:name,concept:name,time:timestamp,topic,channel\n"
                            "c1,a,2024-01-01T00:00:00Z,t,web\n")
    _, ix = eventlog.read_eventlog(p)
    row = ix.data.to_pylist()[0]
    got = (row["topic"], row["channel"], row["log:topic"], row["log:channel"])
    assert got == ("a", "eventlog", "t", "web")


def load(factory: Any, path: Path, *, declare: bool) -> tuple[Any, dict[str, Any]]:
    wh = factory.workspace("ws" + ("_declared" if declare else ""), channels=["eventlog"] if declare else [])
    sources = [Source(table=o.table, file=o.file, data=o.data) for o in eventlog.read_eventlog(path)]
    with wh.engine() as eng:
        results = Loader(wh.ws, eng).load_all(sources)
    return wh, {r.table: r for r in results}


def test_helpdesk_loads_and_keeps_its_order(factory: Any) -> None:
    path = REAL / "helpdesk.xes.gz"
    wh, results = load(factory, path, declare=True)
    assert (results["hcps"].loaded, results["interactions"].loaded) == (4580, 21348)
    assert wh.quarantine() == []
    with wh.engine() as eng:
        ix = eng.table("interactions")
        ours = eng.to_pyarrow(
            paths.transitions(ix, case="record_id", activity="topic", ts="ts", tiebreak="event_id")
        ).to_pylist()
    direct = paths.transitions(
        ibis.memtable(eventlog.read_eventlog_table(path)), case="case", activity="activity"
    ).to_pyarrow().to_pylist()

    def key(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, Any]]:
        return {(r["from_activity"], r["to_activity"]): (r["count"], r["median_seconds"]) for r in rows}

    assert key(ours) == key(direct)


def test_unreadable_timestamp_reaches_the_quarantine(factory: Any, tmp_path: Path) -> None:
    p = write_csv(tmp_path, "case:concept:name,concept:name,time:timestamp\nc1,a,2024-01-01T00:00:00Z\n"
                            "c1,b,not a time\n")
    wh, results = load(factory, p, declare=True)
    assert (results["interactions"].loaded, results["interactions"].quarantined) == (1, 1)
    q = wh.quarantine()
    assert [(x[1], x[2], x[3]) for x in q] == [(3, "ts", "not a time")]

