"""The one-pass load of clean CSV files: same warehouse as the staged path, and a
fallback to the staged path whenever a file holds anything to quarantine or skip."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_loader import INTERACTIONS_HEADER, event_line

from hcpjourney import engine as engines
from hcpjourney.ingest import loader as loader_mod
from hcpjourney.ingest.loader import Loader, discover
from hcpjourney.simulate import simulate

TABLES = ("hcps", "content", "interactions", "consents", "outcomes", "feedback",
          "relationships", "quarantine", "loads")
# ids, clocks, and the stored rows' _line: the one-pass path leaves it null (it loads
# files with nothing to quarantine, where a line serves nobody), the staged path numbers
# every record; the quarantine's lines are compared, and _line by the tests that need it
VOLATILE = {"_load_id", "loaded_at", "quarantined_at", "path", "_line"}


def load(wh, paths: list[Path], *, optimistic: bool) -> dict[str, list[dict]]:
    """Load ``paths`` with the given path choice; the warehouse's rows, minus ids, clocks
    and stored lines (those are under ``"_line"``: table -> the rows' _line values)."""
    eng = engines.connect(wh.ws)
    try:
        sources, _ = discover(paths)
        Loader(wh.ws, eng, optimistic=optimistic).load_all(sources)
        snap: dict = {"_line": {}}
        for t in TABLES:
            rows = eng.to_pyarrow(eng.table(t)).to_pylist()
            snap[t] = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
            if t not in ("quarantine", "loads"):
                snap["_line"][t] = [r["_line"] for r in rows]
        snap["quarantine"].sort(key=repr)
        snap["loads"].sort(key=repr)
        assert not any(t.startswith("__") for t in eng.tables()), eng.tables()
        return snap
    finally:
        eng.close()


@pytest.fixture
def staged_calls(monkeypatch) -> list[str]:
    """Files that went through the staged path."""
    calls: list[str] = []
    real = Loader._load_staged

    def spy(self, spec, src, *args, **kwargs):
        calls.append(src.file)
        return real(self, spec, src, *args, **kwargs)

    monkeypatch.setattr(loader_mod.Loader, "_load_staged", spy)
    return calls


def both_paths(factory, *drops: Path) -> tuple[dict, dict]:
    """The warehouses the two path choices leave, compared without stored lines (under
    ``"_line"``): the staged path numbers every row, the one-pass path none."""
    fast = load(factory.workspace("fast"), list(drops), optimistic=True)
    staged = load(factory.workspace("staged"), list(drops), optimistic=False)
    for t, lines in staged["_line"].items():
        assert all(isinstance(n, int) and n >= 2 for n in lines), t
        assert all(n is None or n >= 2 for n in fast["_line"][t]), t
    return fast, staged


def same(fast: dict, staged: dict) -> bool:
    return {k: v for k, v in fast.items() if k != "_line"} == {
        k: v for k, v in staged.items() if k != "_line"}


def test_simulated_drop_loads_in_one_pass_exactly_as_staged(factory, staged_calls) -> None:
    drop = factory.root / "sim"
    simulate(150, drop, seed=3)
    fast, staged = both_paths(factory, drop)
    # the staged workspace used the staged path for its 7 files, the fast one never
    assert len(staged_calls) == 7
    assert same(fast, staged)
    assert len(fast["interactions"]) > 1000 and fast["quarantine"] == []


def test_awkward_but_clean_csv_loads_in_one_pass(factory, staged_calls) -> None:
    """Quoted newlines and commas, CRLF ends, a BOM, non-ASCII text, extra columns,
    quoted empties and column order: all clean, so no fallback, same rows as staged."""
    drop = factory.drop("awkward")
    drop.sample("hcps")
    header = ["topic", "Region Code", *INTERACTIONS_HEADER[:-1]]
    rows = []
    for i in range(30):
        base = event_line(i).split(",")
        if i % 5 == 0:  # the quoted comma in topic spans two fields in base
            base = [*base[:12], '"lipids, diet"']
        topic = '"line one\nline two"' if i % 7 == 0 else f"Ärzte {i}"
        region = '""' if i % 3 == 0 else f'"R{i}"'
        rows.append(",".join([topic, region, *base[:12]]))
    text = "\ufeff" + ",".join(header) + "\r\n" + "\r\n".join(rows) + "\r\n"
    drop.text("interactions.csv", text)
    fast, staged = both_paths(factory, drop.path)
    assert staged_calls == ["hcps.csv", "interactions.csv"]  # only the staged workspace
    assert same(fast, staged)
    ix = fast["interactions"]
    assert len(ix) == 30 and fast["quarantine"] == []
    assert {r["topic"] for r in ix} >= {"line one\nline two", "Ärzte 1"}
    # the staged path's lines count records (header = line 1); the one-pass path keeps none
    assert sorted(staged["_line"]["interactions"]) == list(range(2, 32))
    assert fast["_line"]["interactions"] == [None] * 30


@pytest.mark.parametrize(
    "change, why",
    [
        ({"channel": "fax"}, "a broken row"),
        ({"owner_id": " rep9 "}, "a cell that cleaning trims"),
        ({"topic": "\u00a0"}, "a cell of Unicode whitespace only"),
        ({"event_id": "e001"}, "a key the file repeats"),
        ({"channel": "Email"}, "an enumerated value the staged path lower-cases"),
    ],
    ids=["broken", "trim", "nbsp", "repeat", "case"],
)
def test_files_needing_the_staged_path_fall_back(factory, staged_calls, change, why) -> None:
    drop = factory.drop("fallback")
    drop.sample("hcps")
    lines = [event_line(i) for i in range(12)]
    lines[6] = event_line(6, **change)
    drop.text("interactions.csv", ",".join(INTERACTIONS_HEADER) + "\n" + "\n".join(lines) + "\n")
    fast, staged = both_paths(factory, drop.path)
    # the one-pass attempt gave up and left nothing behind: same state as staged-only,
    # the staged path's lines included
    assert same(fast, staged), why
    assert fast["_line"]["interactions"] == staged["_line"]["interactions"], why
    assert staged_calls.count("interactions.csv") == 2, why


def test_ragged_file_falls_back_with_exact_lines(factory, staged_calls) -> None:
    drop = factory.drop("ragged")
    drop.sample("hcps")
    lines = [event_line(i) for i in range(8)]
    lines[3] = event_line(3) + ",EXTRA"
    drop.text("interactions.csv", ",".join(INTERACTIONS_HEADER) + "\n" + "\n".join(lines) + "\n")
    fast, staged = both_paths(factory, drop.path)
    assert same(fast, staged)
    assert [(q["line"], q["column"]) for q in fast["quarantine"]] == [(5, "")]


def test_second_file_merges_sorted_and_stored_keys_fall_back(factory, staged_calls) -> None:
    """A clean second file is merged into the sorted table in one pass; a file that
    re-sends stored keys goes the staged path (duplicates are counted there)."""
    first = factory.drop("first")
    first.sample("hcps")
    hdr = ",".join(INTERACTIONS_HEADER) + "\n"
    first.text("interactions.csv", hdr + "\n".join(event_line(i) for i in range(0, 20, 2)) + "\n")
    second = factory.drop("second")
    second.text("interactions_b.csv",
                hdr + "\n".join(event_line(i) for i in range(1, 20, 2)) + "\n")
    third = factory.drop("third")
    third.text("interactions_c.csv", hdr + "\n".join(event_line(i) for i in range(15, 25)) + "\n")
    fast, staged = both_paths(factory, first.path, second.path, third.path)
    assert same(fast, staged)
    assert staged_calls.count("interactions_b.csv") == 1  # the staged workspace only
    assert staged_calls.count("interactions_c.csv") == 2  # both: 15..19 are stored already
    ix = fast["interactions"]
    assert len(ix) == 25
    keys = [(r["record_id"], r["ts"], r["event_id"]) for r in ix]
    assert keys == sorted(keys)
    loads = {r["file"]: (r["loaded"], r["duplicates"]) for r in fast["loads"]}
    assert loads["interactions_c.csv"] == (5, 5)


@pytest.mark.parametrize(
    "change",
    [
        {"duration_s": " 12.5 "},
        {"duration_s": "12\u00a0"},
        {"ts": "2024-03-01T10:00:00Z "},
        {"ts": " 2024-03-01T10:00:00Z"},
        {"channel": "Email "},
        {"value_usd": "\u3000"},
    ],
    ids=["number-spaces", "number-nbsp", "ts-trailing", "ts-leading", "enum", "ideographic"],
)
def test_whitespace_around_typed_values_is_read_as_the_staged_path_reads_it(factory, change) -> None:
    """Typed columns are not searched for edge whitespace: their rules and casts must
    give the staged path's result whichever path loads the file."""
    drop = factory.drop("typed-space")
    drop.sample("hcps")
    lines = [event_line(i) for i in range(6)]
    lines[2] = event_line(2, **change)
    drop.text("interactions.csv", ",".join(INTERACTIONS_HEADER) + "\n" + "\n".join(lines) + "\n")
    fast, staged = both_paths(factory, drop.path)
    assert same(fast, staged)


@pytest.mark.parametrize(
    "ts_of, numbers",
    [
        (lambda i: f"2024-03-{1 + i:02d}T10:00:00+02:00", {}),
        (lambda i: f"2024-03-{1 + i:02d} 10:00:00", {}),
        (lambda i: f"2024-03-{1 + i:02d}", {}),
        (lambda i: f"2024-03-{1 + i:02d}T10:00:00Z" if i != 4 else "24-03-05T10:00:00Z", {}),
        (lambda i: f"2024-03-{1 + i:02d}T10:00:00Z" if i != 4 else "2024-03-05T10:00:00+01:00",
         {}),
        (lambda i: f"2024-03-{1 + i:02d}T10:00:00Z", {2: "1e3", 3: "nan", 4: "inf", 5: "-0.5"}),
    ],
    ids=["offset", "space", "date-only", "two-digit-year", "mixed-layouts", "numbers"],
)
def test_values_the_reader_types_match_the_staged_path(factory, ts_of, numbers) -> None:
    """The one-pass reader types timestamps (in a strict layout sniffed from the first
    rows) and numbers itself; whatever it accepts or refuses, the warehouse ends as
    the staged path leaves it."""
    drop = factory.drop("reader-types")
    drop.sample("hcps")
    lines = [event_line(i, ts=ts_of(i), duration_s=numbers.get(i, str(i))) for i in range(12)]
    drop.text("interactions.csv", ",".join(INTERACTIONS_HEADER) + "\n" + "\n".join(lines) + "\n")
    fast, staged = both_paths(factory, drop.path)
    assert same(fast, staged)
    assert len(fast["interactions"]) + len({q["line"] for q in fast["quarantine"]}) == 12


def test_enumerations_are_checked_by_the_reader_and_stored_as_text(factory, staged_calls) -> None:
    """The one-pass reader reads enumerated columns as the allowed values only (declared
    ones too, a quote and a comma included) and stores them as text, as the staged path."""
    odd = "o'neil, md"
    fast_ws = factory.workspace("fast-enum", channels=[odd])
    staged_ws = factory.workspace("staged-enum", channels=[odd])
    drop = factory.drop("declared")
    drop.sample("hcps")
    quoted = '"' + odd.replace('"', '""') + '"'
    lines = [event_line(i, channel=quoted if i % 2 else "email") for i in range(8)]
    drop.text("interactions.csv", ",".join(INTERACTIONS_HEADER) + "\n" + "\n".join(lines) + "\n")
    fast = load(fast_ws, [drop.path], optimistic=True)
    staged = load(staged_ws, [drop.path], optimistic=False)
    assert staged_calls == ["hcps.csv", "interactions.csv"]  # only the staged workspace
    assert same(fast, staged)
    assert {r["channel"] for r in fast["interactions"]} == {odd, "email"}
    with fast_ws.engine() as eng:
        types = eng.backend.raw_sql(
            "SELECT DISTINCT typeof(channel), typeof(action) FROM interactions").fetchall()
    assert types == [("VARCHAR", "VARCHAR")]
