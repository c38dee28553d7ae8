"""Real process logs and the Iowa Open Payments file: our transitions, start/end
activities and variants equal pm4py's (AGPL, used here only as a test oracle) when pm4py
gets the same event order, and the checked figures of realdata/README.md hold.

pm4py parses each log itself (its own XES/CSV reading); the only thing it is given is
the order: its frame is sorted by (case, timestamp, position in the file), the order our
event ids encode.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from hcpjourney.ingest import eventlog
from hcpjourney.ingest.open_payments import HOSPITAL_PREFIX, read_open_payments
from hcpjourney.journey import paths
from realdata_path import REALDATA

os.environ.setdefault("PM4PY_SHOW_PROGRESS_BAR", "False")
import pandas as pd
import pm4py

pytestmark = pytest.mark.filterwarnings("ignore:Install the optional requirement")

SHARED = REALDATA
LOGS = SHARED / "event_logs"
IOWA = SHARED / "open_payments_iowa"

CASE, ACT, TS = "case:concept:name", "concept:name", "time:timestamp"

# realdata/README.md: cases, events, distinct activities
FIGURES = {
    "bpic2012.xes.gz": (13087, 262200, 24),
    "07_bpic2013_incidents.xes.gz": (7554, 65533, None),
    "helpdesk.xes.gz": (4580, 21348, None),
    "receipt.csv": (1434, 8577, None),
    "running-example.xes": (6, 42, None),
}


def pm4py_frame(path: Path) -> Any:
    """pm4py's own parse of the log, sorted (stably) by case, timestamp, position in the file."""
    if path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str)
        df[TS] = pd.to_datetime(df[TS], utc=True, format="ISO8601")
    else:
        df = pm4py.read_xes(str(path))
    df = df[[CASE, ACT, TS]].reset_index(drop=True)
    df["_pos"] = df.groupby(CASE, sort=False).cumcount()
    return df.sort_values([CASE, TS, "_pos"], kind="stable").reset_index(drop=True)


def our_results(table: ibis.Table, **kw: Any) -> tuple[dict, dict, dict, dict]:
    tr = paths.transitions(table, **kw).to_pyarrow().to_pylist()
    dfg = {(r["from_activity"], r["to_activity"]): r["count"] for r in tr}
    inner = {k: v for k, v in dfg.items() if k[0] != paths.START and k[1] != paths.END}
    starts = {k[1]: v for k, v in dfg.items() if k[0] == paths.START}
    ends = {k[0]: v for k, v in dfg.items() if k[1] == paths.END}
    var = paths.variants(table, as_list=True, **kw).to_pyarrow().to_pydict()
    variants = {tuple(v): c for v, c in zip(var["variant"], var["count"], strict=True)}
    # start/end activities from their own functions agree with the edges
    for fn, want in ((paths.start_activities, starts), (paths.end_activities, ends)):
        got = {r["activity"]: r["count"] for r in fn(table, **kw).to_pyarrow().to_pylist()}
        assert got == want
    return inner, starts, ends, variants


def as_int(d: dict) -> dict:
    return {k: int(v) for k, v in d.items()}


@pytest.mark.parametrize("name", list(FIGURES))
def test_event_log_parity_with_pm4py(name: str) -> None:
    path = LOGS / name
    t = eventlog.read_eventlog_table(path)
    cases, events, activities = FIGURES[name]
    assert t.num_rows == events
    assert len(set(t["case"].to_pylist())) == cases
    if activities is not None:
        assert len(set(t["activity"].to_pylist())) == activities

    inner, starts, ends, variants = our_results(ibis.memtable(t), case="case", activity="activity")
    df = pm4py_frame(path)
    assert len(df) == events
    dfg, p_starts, p_ends = pm4py.discover_dfg(df)
    assert inner == as_int(dfg)
    assert starts == as_int(p_starts)
    assert ends == as_int(p_ends)
    p_variants = {tuple(k): int(v) for k, v in pm4py.get_variants(df).items()}
    assert variants == p_variants
    assert sum(variants.values()) == cases
    if name == "receipt.csv":
        assert len(inner) == 99  # realdata/README.md


# ---------------------------------------------------------------------- Iowa
@pytest.fixture(scope="module")
def iowa() -> pa.Table:
    """Payments to physicians as events: case = physician, activity = nature of payment."""
    payments = IOWA / "ia_top_physicians_general_payments_2013_2015.csv"
    outputs = {o.table: o.data for o in read_open_payments(payments)}
    ix = outputs["interactions"]
    ix = ix.filter(pc.invert(pc.starts_with(ix["record_id"], HOSPITAL_PREFIX)))
    return pa.table(
        {
            "case": ix["record_id"],
            "activity": ix["topic"],
            "ts": pc.cast(pc.strptime(ix["ts"], format="%Y-%m-%d", unit="us"), pa.timestamp("us")),
            "event_id": ix["event_id"],
        }
    )


def test_iowa_contract_order_figures(iowa: pa.Table) -> None:
    assert iowa.num_rows == 126084
    assert len(set(iowa["case"].to_pylist())) == 2037
    inner, starts, ends, _ = our_results(ibis.memtable(iowa), case="case", activity="activity")
    assert len(inner) == 116
    assert sum(inner.values()) == 124047
    assert inner[("Food and Beverage", "Food and Beverage")] == 98283
    assert sum(starts.values()) == sum(ends.values()) == 2037


def test_iowa_parity_with_pm4py_in_the_same_order(iowa: pa.Table) -> None:
    df = iowa.to_pandas().rename(columns={"case": CASE, "activity": ACT, "ts": TS})
    df[TS] = pd.to_datetime(df[TS], utc=True)
    ours = our_results(ibis.memtable(iowa), case="case", activity="activity")
    ordered = df.sort_values([CASE, TS, "event_id"], kind="stable").reset_index(drop=True)
    dfg, starts, ends = pm4py.discover_dfg(ordered)
    assert (ours[0], ours[1], ours[2]) == (as_int(dfg), as_int(starts), as_int(ends))
    assert ours[3] == {tuple(k): int(v) for k, v in pm4py.get_variants(ordered).items()}
    # pm4py in file order (its own tie-break for same-day payments) gives other figures
    file_dfg, _, _ = pm4py.discover_dfg(df.sort_values([CASE, TS], kind="stable"))
    assert len(file_dfg) == 117
    assert file_dfg[("Food and Beverage", "Food and Beverage")] == 98269
    assert Counter(as_int(file_dfg)) != Counter(ours[0])
