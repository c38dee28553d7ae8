"""Readers for process-mining event logs: XES (``.xes``, ``.xes.gz``) and CSV / Parquet.

So that the journey analytics run on any process log, a log is read two ways:

:func:`read_eventlog_table`
    a pyarrow table ``case, activity, ts, event_id, position, lifecycle`` for
    direct analytics without a workspace (``ts`` naive UTC; ``event_id`` sorts
    in file order within a case, so ordering by ``ts, event_id`` breaks
    same-instant ties by file order, as pm4py does), e.g.
    ``paths.transitions(ibis.memtable(t), case="case", activity="activity")``.
:func:`read_eventlog`
    contract ``hcps`` (one record per case) and ``interactions`` (one per
    event), returned like :func:`hcpjourney.ingest.open_payments.read_open_payments`
    for the loader (``hcpj ingest --format xes|eventlog``).

Mapping to the contract:

- hcps: ``record_id`` = ``eventlog:<case>``, ``source`` = ``eventlog``,
  ``last_name`` = the case id (the contract requires a last name); XES trace
  attributes are kept as extra columns named ``case:<key>``.
- interactions: ``event_id`` = ``eventlog:<case>:<position>`` with the
  position in the trace (XES) or among the case's rows (CSV) zero-padded to 6
  digits (more when a case is longer), so text order is file order;
  ``channel`` = ``eventlog`` (the workspace must accept it: ``[contract]
  channels``); ``action`` = ``completed``; ``topic`` = the activity;
  ``ts`` = the timestamp as ISO-8601 UTC text (left as given when it cannot be
  read, so the loader quarantines it); the lifecycle transition as column
  ``lifecycle``; every other event attribute as an extra column under its own
  key (``org:resource``), prefixed ``log:`` if it clashes with a contract
  column. Analytics on an ingested log use ``activity="topic"``.

XES: case = the trace's ``concept:name`` (``trace-<n>`` for an unnamed n-th
trace), activity = the event's ``concept:name``, timestamp = ``time:timestamp``,
lifecycle = ``lifecycle:transition``. Only attributes directly under a trace
or event are read (nested meta-attributes are skipped); ``<global>`` defaults
are not applied (as pm4py). Parsing is streaming (``iterparse``), one trace in
memory at a time. ``_line`` (the quarantine's line) is the event's ordinal in
the file + 1 (as for Parquet: row index + 2).

CSV / Parquet: the case, activity and timestamp columns are named by options
(defaults are pm4py's names ``case:concept:name``, ``concept:name``,
``time:timestamp``); timestamps are ISO-8601 unless ``timestamp_format``
(strptime, e.g. ``%d-%m-%Y %H:%M``) is given; a timestamp without an offset is
UTC. Every other column is kept.
"""

from __future__ import annotations

import gzip
import importlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hcpjourney.contract.schemas import HCPS, INTERACTIONS
from hcpjourney.errors import InputFileError
from hcpjourney.ingest.open_payments import ReaderOutput

SOURCE = "eventlog"
CHANNEL = "eventlog"
ACTION = "completed"
RECORD_PREFIX = "eventlog:"
LINE = "_line"
FORMATS = ("xes", "eventlog")  # eventlog = a CSV or Parquet table of events

CASE_COLUMN = "case:concept:name"
ACTIVITY_COLUMN = "concept:name"
TIMESTAMP_COLUMN = "time:timestamp"
LIFECYCLE_KEY = "lifecycle:transition"
POSITION_DIGITS = 6

TABLE_COLUMNS: tuple[str, ...] = ("case", "activity", "ts", "event_id", "position", "lifecycle")


class EventLogError(InputFileError):
    """The file is not a readable event log, or lacks a named column."""


@dataclass
class RawLog:
    """A log as text columns, in file order (one entry per event)."""

    case: list[str | None] = field(default_factory=list)
    activity: list[str | None] = field(default_factory=list)
    timestamp: list[str | None] = field(default_factory=list)
    lifecycle: list[str | None] = field(default_factory=list)
    attributes: dict[str, list[str | None]] = field(default_factory=dict)
    # per case (first appearance order): trace attributes
    cases: list[str] = field(default_factory=list)
    case_attributes: dict[str, list[str | None]] = field(default_factory=dict)
    parsed_ts: pd.Series | None = None  # when the reader parsed timestamps itself

    @property
    def n(self) -> int:
        return len(self.case)


# ------------------------------------------------------------------------ XES
def _xml_parser() -> tuple[Any, tuple[type[Exception], ...], bool]:
    """iterparse, its parse errors, and whether it is lxml's (used when installed: faster)."""
    try:
        lxml = importlib.import_module("lxml.etree")
    except ImportError:
        return ET.iterparse, (ET.ParseError,), False
    return lxml.iterparse, (lxml.XMLSyntaxError, ET.ParseError), True


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if "}" in tag else tag


def _open(path: Path) -> IO[bytes] | gzip.GzipFile:
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return path.open("rb")


def _put(columns: dict[str, list[str | None]], key: str, value: str | None, row: int) -> None:
    col = columns.get(key)
    if col is None:
        col = columns[key] = []
    if len(col) < row:
        col.extend([None] * (row - len(col)))
    col.append(value)


def _pad(columns: dict[str, list[str | None]], n: int) -> None:
    for col in columns.values():
        if len(col) < n:
            col.extend([None] * (n - len(col)))


def read_xes(path: str | Path) -> RawLog:
    """Parse an XES file (plain or gzip) into text columns, streaming trace by trace."""
    p = Path(path)
    iterparse, parse_errors, is_lxml = _xml_parser()
    log = RawLog()
    n_traces = 0
    try:
        with _open(p) as fh:
            root_tag = next((e.tag for _, e in iterparse(fh, events=("start",))), None)
        if not isinstance(root_tag, str) or _local(root_tag) != "log":
            raise EventLogError(str(p), f"is not an XES log (root element <{root_tag}>, not <log>)")
        with _open(p) as fh:
            options = {"tag": "{*}trace"} if is_lxml else {}
            for _, elem in iterparse(fh, events=("end",), **options):
                tag = elem.tag
                if not isinstance(tag, str) or not tag.endswith("trace") or _local(tag) != "trace":
                    continue
                n_traces += 1
                case = _read_trace(elem, log, n_traces)
                log.cases.append(case)
                elem.clear()
                if is_lxml:  # drop the finished traces from the tree
                    while elem.getprevious() is not None:
                        del elem.getparent()[0]
    except EventLogError:
        raise
    except parse_errors as exc:
        raise EventLogError(str(p), f"is not an XES log (XML error: {exc})") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise EventLogError(str(p), f"cannot be read as XES ({exc})") from None
    _pad(log.attributes, log.n)
    _pad(log.case_attributes, len(log.cases))
    return log


def _read_trace(trace: Any, log: RawLog, ordinal: int) -> str:
    """Append a trace's events to ``log``; return its case id."""
    case: str | None = None
    row = len(log.cases)
    first = log.n
    for child in trace:
        tag = child.tag
        if not isinstance(tag, str):  # comments, processing instructions
            continue
        if tag.endswith("event"):
            event = {a.get("key"): a.get("value") for a in child if a.get("key") is not None}
            i = log.n
            log.activity.append(event.pop("concept:name", None))
            log.timestamp.append(event.pop("time:timestamp", None))
            log.lifecycle.append(event.pop(LIFECYCLE_KEY, None))
            log.case.append(None)
            for k, v in event.items():
                _put(log.attributes, k, v, i)
            continue
        key = child.get("key")
        if key == "concept:name":
            case = child.get("value")
        elif key is not None:
            _put(log.case_attributes, key, child.get("value"), row)
    name = case if case is not None else f"trace-{ordinal}"
    for i in range(first, log.n):
        log.case[i] = name
    return name


# ------------------------------------------------------------------------ CSV
def read_csv_log(
    path: str | Path,
    *,
    case: str = CASE_COLUMN,
    activity: str = ACTIVITY_COLUMN,
    timestamp: str = TIMESTAMP_COLUMN,
    timestamp_format: str | None = None,
    lifecycle: str | None = LIFECYCLE_KEY,
) -> RawLog:
    """Read a CSV (or Parquet) event log; columns named by the options, others kept."""
    p = Path(path)
    table = _read_text(p)
    names = table.column_names
    missing = [c for c in (case, activity, timestamp) if c not in names]
    if missing:
        raise EventLogError(
            str(p),
            f"has no column {', '.join(repr(m) for m in missing)}; name the case, activity and "
            f"timestamp columns with --case, --activity and --timestamp (columns: {', '.join(names)})",
        )
    log = RawLog()
    log.case = table.column(case).to_pylist()
    log.activity = table.column(activity).to_pylist()
    log.timestamp = table.column(timestamp).to_pylist()
    has_life = lifecycle is not None and lifecycle in names
    log.lifecycle = table.column(lifecycle).to_pylist() if has_life and lifecycle else [None] * table.num_rows
    used = {case, activity, timestamp, *([lifecycle] if has_life and lifecycle else [])}
    for name in names:
        if name not in used:
            log.attributes[name] = table.column(name).to_pylist()
    log.cases = list(dict.fromkeys(c for c in log.case if c is not None))
    log.parsed_ts = _parse_timestamps(pd.Series(log.timestamp, dtype="object"), timestamp_format)
    return log


def _read_text(path: Path) -> pa.Table:
    try:
        if path.suffix.lower() == ".parquet":
            raw = pq.read_table(path)
            return pa.table(
                [pc.cast(raw.column(i), pa.string()) for i in range(raw.num_columns)],
                names=raw.column_names,
            )
        with pacsv.open_csv(path) as probe:  # header only, for the column types
            names = probe.schema.names
        return pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise EventLogError(str(path), f"cannot be read as a CSV or Parquet event log ({exc})") from None


# ----------------------------------------------------------------- timestamps
def _parse_timestamps(raw: pd.Series, fmt: str | None = None) -> pd.Series:
    """Naive-UTC datetimes (NaT where empty or unreadable); no offset means UTC."""
    text = raw.astype("string").str.strip()
    parsed = pd.to_datetime(text, format=fmt or "ISO8601", utc=True, errors="coerce")
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")


def _timestamps(log: RawLog) -> pd.Series:
    if log.parsed_ts is None:
        log.parsed_ts = _parse_timestamps(pd.Series(log.timestamp, dtype="object"))
    return log.parsed_ts


def _positions(cases: pa.Array) -> np.ndarray:
    """0-based position of each row among the rows of its case, in file order."""
    encoded = pc.dictionary_encode(pc.fill_null(cases, "\x00"))
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, sorted_codes.size]))
    pos = np.empty(codes.size, dtype=np.int64)
    pos[order] = np.arange(codes.size) - run_start
    return pos


def _event_ids(cases: pa.Array, positions: np.ndarray) -> pa.Array:
    width = max(POSITION_DIGITS, len(str(int(positions.max())))) if positions.size else POSITION_DIGITS
    pos_text = pc.utf8_lpad(pa.array(positions).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(RECORD_PREFIX, cases, ":", pos_text, "")


# -------------------------------------------------------------------- outputs
def _load(
    path: str | Path,
    fmt: str | None,
    case: str,
    activity: str,
    timestamp: str,
    timestamp_format: str | None,
) -> RawLog:
    p = Path(path)
    kind = fmt or _guess_format(p)
    if kind == "xes":
        return read_xes(p)
    if kind == "eventlog":
        return read_csv_log(
            p, case=case, activity=activity, timestamp=timestamp, timestamp_format=timestamp_format
        )
    raise EventLogError(str(p), f"unknown event-log format '{kind}'; use one of {', '.join(FORMATS)}")


def _guess_format(path: Path) -> str:
    name = path.name.lower()
    return "xes" if name.endswith((".xes", ".xes.gz", ".xml", ".xml.gz")) else "eventlog"


def read_eventlog_table(
    path: str | Path,
    *,
    fmt: str | None = None,
    case: str = CASE_COLUMN,
    activity: str = ACTIVITY_COLUMN,
    timestamp: str = TIMESTAMP_COLUMN,
    timestamp_format: str | None = None,
    attributes: bool = False,
) -> pa.Table:
    """``case, activity, ts, event_id, position, lifecycle`` (+ event attributes if asked).

    ``fmt``: ``xes`` or ``eventlog`` (CSV/Parquet); guessed from the name when
    None. Events with an empty case, activity or timestamp are left out (as
    pm4py does); a timestamp that is present but unreadable is an error.
    """
    p = Path(path)
    log = _load(p, fmt, case, activity, timestamp, timestamp_format)
    ts = _timestamps(log)
    bad = ts.isna().to_numpy() & pd.Series(log.timestamp, dtype="object").notna().to_numpy()
    if bad.any():
        first = log.timestamp[int(np.flatnonzero(bad)[0])]
        raise EventLogError(
            str(p),
            f"{int(bad.sum())} timestamps cannot be read (first: '{first}'); "
            "pass the format with --timestamp-format, e.g. '%d-%m-%Y %H:%M:%S'",
        )
    cases = pa.array(log.case, pa.string())
    positions = _positions(cases)
    out: dict[str, Any] = {
        "case": cases,
        "activity": pa.array(log.activity, pa.string()),
        "ts": pa.array(ts.to_numpy(), pa.timestamp("us")),
        "event_id": _event_ids(cases, positions),
        "position": pa.array(positions, pa.int64()),
        "lifecycle": pa.array(log.lifecycle, pa.string()),
    }
    if attributes:
        for k, v in log.attributes.items():
            if k not in out:
                out[k] = pa.array(v, pa.string())
    table = pa.table(out)
    keep = pc.and_(
        pc.and_(pc.is_valid(table["case"]), pc.is_valid(table["activity"])), pc.is_valid(table["ts"])
    )
    return table.filter(keep)


def read_eventlog(
    path: str | Path,
    *,
    fmt: str | None = None,
    case: str = CASE_COLUMN,
    activity: str = ACTIVITY_COLUMN,
    timestamp: str = TIMESTAMP_COLUMN,
    timestamp_format: str | None = None,
) -> list[ReaderOutput]:
    """Contract ``[hcps, interactions]`` of an event log, for the loader (see module doc)."""
    p = Path(path)
    log = _load(p, fmt, case, activity, timestamp, timestamp_format)
    n = log.n
    cases = pa.array(log.case, pa.string())
    positions = _positions(cases) if n else np.zeros(0, dtype=np.int64)
    ts = _timestamps(log)
    iso = pc.strftime(pa.array(ts.to_numpy(), pa.timestamp("us")), format="%Y-%m-%dT%H:%M:%SZ")
    ts_text = pc.coalesce(iso, pa.array(log.timestamp, pa.string()))
    record_ids = pc.binary_join_element_wise(RECORD_PREFIX, cases, "")

    def const(value: str) -> pa.Array:
        return pa.array([value] * n, pa.string())

    mapped: dict[str, pa.Array | pa.ChunkedArray] = {
        "event_id": _event_ids(cases, positions),
        "record_id": record_ids,
        "ts": ts_text,
        "channel": const(CHANNEL),
        "action": const(ACTION),
        "topic": pa.array(log.activity, pa.string()),
    }
    ix: dict[str, pa.Array | pa.ChunkedArray] = {
        name: mapped.get(name, pa.nulls(n, pa.string())) for name in INTERACTIONS.names
    }
    ix["lifecycle"] = pa.array(log.lifecycle, pa.string())
    for k, v in log.attributes.items():
        name = _extra_name(k, ix)
        ix[name] = pa.array(v, pa.string())
    ix[LINE] = pa.array(np.arange(2, n + 2, dtype=np.int64))
    interactions = pa.table(ix)

    # one record per case id (a case id given to two traces is one case, as in pm4py)
    first = pa.array(log.cases, pa.string())
    keep = _first_occurrence(first)
    case_ids = first.filter(keep)
    m = len(case_ids)
    hc: dict[str, pa.Array | pa.ChunkedArray] = {name: pa.nulls(m, pa.string()) for name in HCPS.names}
    hc["record_id"] = pc.binary_join_element_wise(RECORD_PREFIX, case_ids, "")
    hc["source"] = pa.array([SOURCE] * m, pa.string())
    hc["last_name"] = case_ids
    for k, v in log.case_attributes.items():
        hc[_extra_name(f"case:{k}", hc)] = pa.array(v, pa.string()).filter(keep)
    hc[LINE] = pa.array(np.arange(2, m + 2, dtype=np.int64))
    hcps = pa.table(hc)
    return [
        ReaderOutput(table=HCPS.name, file=p.name, data=hcps),
        ReaderOutput(table=INTERACTIONS.name, file=p.name, data=interactions),
    ]


def _first_occurrence(values: pa.Array) -> pa.Array:
    codes = pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    mask = np.zeros(len(values), dtype=bool)
    mask[first] = True
    return pa.array(mask)


def _extra_name(key: str, taken: dict[str, Any]) -> str:
    name = key
    while name in taken or name == LINE:
        name = f"log:{name}"
    return name


def looks_like_xes(path: str | Path) -> bool:
    """True when the file (plain or gzip) starts with an XML document whose root is <log>."""
    try:
        with _open(Path(path)) as fh:
            head = fh.read(4096)
    except (OSError, EOFError):
        return False
    return b"<log" in head


__all__ = [
    "ACTION",
    "CHANNEL",
    "FORMATS",
    "SOURCE",
    "EventLogError",
    "RawLog",
    "read_csv_log",
    "read_eventlog",
    "read_eventlog_table",
    "read_xes",
]
