"""CONTRACT section 1 "Bad input": every row rule, per table, through a real ingest.

One drop holds, for every table, the sample's three good rows around one bad row per
case; each case then checks its own quarantine row (file, line, column, value, reason)
and that the good rows of the same file loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from hcpjourney.contract import schemas
from hcpjourney.contract.npi import make_npi
from hcpjourney.ingest.loader import discover

NOW = datetime.now(UTC)
FUTURE = (NOW + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
# no offset means UTC: two hours ahead of UTC now is the future
FUTURE_NO_OFFSET = (NOW + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
# one hour in the past as a wall clock at UTC-05:00 is four hours ahead in UTC
FUTURE_BY_OFFSET = (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S") + "-05:00"
VALID_NPI = make_npi(345678901)
BAD_NPI = VALID_NPI[:9] + str((int(VALID_NPI[9]) + 1) % 10)

REQUIRED = "is required but empty"
NOT_TS = "is not an ISO-8601 timestamp"
IN_FUTURE = "is in the future"
NOT_NUMBER = "is not a number"
NOT_MONTH = "is not a month as YYYY-MM"
NO_RECORD = "names no known HCP record"
NOT_NPI = "is not a valid NPI"


@dataclass(frozen=True)
class Case:
    table: str
    column: str
    value: str
    reason: str  # a fragment of the quarantine reason
    label: str = ""  # test id part for values that change from run to run

    @property
    def id(self) -> str:
        shown = self.label or self.value.strip() or "empty"
        return f"{self.table}-{self.column}-{shown[:20]}"


CASES = [
    # hcps
    Case("hcps", "record_id", "", "record_id " + REQUIRED),
    Case("hcps", "source", "", "source " + REQUIRED),
    Case("hcps", "last_name", "   ", "last_name " + REQUIRED),
    Case("hcps", "npi", BAD_NPI, NOT_NPI, "bad-check-digit"),
    Case("hcps", "npi", "12345", NOT_NPI),
    Case("hcps", "npi", VALID_NPI[:8] + "AB", NOT_NPI, "letters"),
    Case("hcps", "npi", VALID_NPI + "0", NOT_NPI, "11-digits"),
    Case("hcps", "profession", "surgeon", "unknown profession: use one of physician"),
    Case("hcps", "decile", "11", "decile must be between 1 and 10"),
    Case("hcps", "decile", "0", "decile must be between 1 and 10"),
    Case("hcps", "decile", "2.5", "decile is not a whole number"),
    Case("hcps", "decile", "high", "decile is not a whole number"),
    Case("hcps", "decile", "nan", "decile is not a whole number"),
    Case("hcps", "decile", "1e30", "decile is not a whole number"),
    Case("hcps", "is_kol", "maybe", "is_kol is not true/false"),
    Case("hcps", "updated_at", "last tuesday", "updated_at " + NOT_TS),
    Case("hcps", "updated_at", "epoch", "updated_at " + NOT_TS),
    Case("hcps", "updated_at", FUTURE, "updated_at " + IN_FUTURE, "future"),
    # content
    Case("content", "content_id", "", "content_id " + REQUIRED),
    Case("content", "mlr_status", "", "mlr_status " + REQUIRED),
    Case("content", "mlr_status", "pending", "unknown mlr_status: use one of draft, in_review"),
    Case("content", "format", "hologram", "unknown format"),
    Case("content", "audience", "robots", "unknown audience: use one of hcp, patient"),
    Case("content", "length_minutes", "long", "length_minutes " + NOT_NUMBER),
    Case("content", "approved_at", "2023-02-30", "approved_at " + NOT_TS),
    Case("content", "approved_at", FUTURE, "approved_at " + IN_FUTURE, "future"),
    # interactions
    Case("interactions", "event_id", "", "event_id " + REQUIRED),
    Case("interactions", "record_id", "", "record_id " + REQUIRED),
    Case("interactions", "ts", "", "ts " + REQUIRED),
    Case("interactions", "channel", "", "channel " + REQUIRED),
    Case("interactions", "action", "", "action " + REQUIRED),
    Case("interactions", "record_id", "crm:404", "record_id " + NO_RECORD),
    Case("interactions", "ts", "2024-02-30T10:00:00Z", "ts " + NOT_TS),
    Case("interactions", "ts", "01/02/2024 10:00", "ts " + NOT_TS),
    Case("interactions", "ts", "-infinity", "ts " + NOT_TS),
    Case("interactions", "ts", FUTURE, "ts " + IN_FUTURE, "future"),
    Case("interactions", "ts", FUTURE_NO_OFFSET, "ts " + IN_FUTURE, "future-no-offset"),
    Case("interactions", "ts", FUTURE_BY_OFFSET, "ts " + IN_FUTURE, "future-by-offset"),
    Case("interactions", "channel", "fax", "unknown channel: use one of f2f_visit"),
    Case("interactions", "action", "teleported", "unknown action: use one of sent"),
    Case("interactions", "direction", "sideways", "unknown direction: use one of outbound"),
    Case("interactions", "team", "sales", "unknown team: use one of commercial"),
    Case("interactions", "duration_s", "ten minutes", "duration_s " + NOT_NUMBER),
    Case("interactions", "value_usd", "$45", "value_usd " + NOT_NUMBER),
    Case("interactions", "value_usd", "45,10", "value_usd " + NOT_NUMBER),
    Case("interactions", "value_usd", "inf", "value_usd " + NOT_NUMBER),
    # consents
    Case("consents", "record_id", "", "record_id " + REQUIRED),
    Case("consents", "record_id", "crm:404", "record_id " + NO_RECORD),
    Case("consents", "channel", "", "channel " + REQUIRED),
    Case("consents", "channel", "fax", "unknown channel"),
    Case("consents", "status", "", "status " + REQUIRED),
    Case("consents", "status", "maybe", "unknown status: use one of opt_in, opt_out"),
    Case("consents", "ts", "", "ts " + REQUIRED),
    Case("consents", "ts", "soon", "ts " + NOT_TS),
    Case("consents", "ts", FUTURE, "ts " + IN_FUTURE, "future"),
    Case("consents", "purpose", "", "purpose " + REQUIRED),
    Case("consents", "purpose", "marketing", "unknown purpose: use one of promotional"),
    # outcomes
    Case("outcomes", "record_id", "", "record_id " + REQUIRED),
    Case("outcomes", "record_id", "crm:404", "record_id " + NO_RECORD),
    Case("outcomes", "product", "", "product " + REQUIRED),
    Case("outcomes", "period", "", "period " + REQUIRED),
    Case("outcomes", "period", "2024-13", "period " + NOT_MONTH),
    Case("outcomes", "period", "2024/01", "period " + NOT_MONTH),
    Case("outcomes", "period", "2024-1", "period " + NOT_MONTH),
    Case("outcomes", "period", "Jan 2024", "period " + NOT_MONTH),
    Case("outcomes", "period", "2024-01-15", "period " + NOT_MONTH),
    Case("outcomes", "nrx", "lots", "nrx " + NOT_NUMBER),
    Case("outcomes", "trx", "1,5", "trx " + NOT_NUMBER),
    # feedback
    Case("feedback", "response_id", "", "response_id " + REQUIRED),
    Case("feedback", "record_id", "crm:404", "record_id " + NO_RECORD),
    Case("feedback", "ts", "2024-13-01", "ts " + NOT_TS),
    Case("feedback", "ts", FUTURE, "ts " + IN_FUTURE, "future"),
    Case("feedback", "score", "great", "score " + NOT_NUMBER),
    Case("feedback", "dimension", "fun", "unknown dimension: use one of relevant"),
    # relationships
    Case("relationships", "src_record_id", "", "src_record_id " + REQUIRED),
    Case("relationships", "dst_record_id", "", "dst_record_id " + REQUIRED),
    Case("relationships", "src_record_id", "crm:404", "src_record_id " + NO_RECORD),
    Case("relationships", "dst_record_id", "web:404", "dst_record_id " + NO_RECORD),
    Case("relationships", "kind", "friend", "unknown kind: use one of coauthor"),
    Case("relationships", "weight", "heavy", "weight " + NOT_NUMBER),
    Case("relationships", "ts", "yesterday", "ts " + NOT_TS),
    Case("relationships", "ts", FUTURE, "ts " + IN_FUTURE, "future"),
]

# a key column per table that gives each bad row a key of its own, so that a row a
# rule failed to catch would load (or conflict) visibly instead of hiding behind the key
UNIQUE = {
    "hcps": ("record_id", "crm:bad{}"),
    "content": ("content_id", "cbad{}"),
    "interactions": ("event_id", "ebad{}"),
    "consents": ("ts", "2023-06-{:02d}T00:00:00Z"),
    "outcomes": ("product", "prodbad{}"),
    "feedback": ("response_id", "rbad{}"),
    "relationships": ("weight", "{}"),
}


@dataclass
class RuleWorld:
    wh: object
    results: dict
    quarantine: list
    stored_lines: dict[str, set[int]]
    good_lines: dict[str, set[int]]
    line_of: dict[Case, int]
    n_bad: dict[str, int]


@pytest.fixture(scope="module")
def world(module_factory) -> RuleWorld:
    sample = module_factory.sample()
    drop = module_factory.drop("rules")
    line_of: dict[Case, int] = {}
    good_lines: dict[str, set[int]] = {}
    n_bad: dict[str, int] = {}
    for table, (header, good) in sample.items():
        rows = [good[0], good[1]]
        cases = [c for c in CASES if c.table == table]
        key_col, key_fmt = UNIQUE[table]
        for i, case in enumerate(cases, start=1):
            row = dict(zip(header, good[0], strict=True))
            row[key_col] = key_fmt.format(i)
            row[case.column] = case.value
            line_of[case] = len(rows) + 2
            rows.append([row[h] for h in header])
        rows.append(good[2])
        good_lines[table] = {2, 3, len(rows) + 1}
        n_bad[table] = len(cases)
        drop.csv(f"{table}.csv", header, rows)
    wh = module_factory.workspace("rules")
    results = wh.ingest(drop.path)
    stored = {t: {r["_line"] for r in wh.rows(t)} for t in sample}
    return RuleWorld(wh, results, wh.quarantine(), stored, good_lines, line_of, n_bad)


def test_every_table_has_cases() -> None:
    assert {c.table for c in CASES} == {t.name for t in schemas.TABLES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_quarantines_the_row(world: RuleWorld, case: Case) -> None:
    file = f"{case.table}.csv"
    line = world.line_of[case]
    rows = [q for q in world.quarantine if q[0] == file and q[1] == line]
    expected_value = case.value if case.value != "" else None
    assert [(f, ln, col, v) for f, ln, col, v, _ in rows] == [
        (file, line, case.column, expected_value)
    ]
    reason = rows[0][4]
    assert case.reason in reason
    # the good rows of the same file loaded, and only they
    assert world.stored_lines[case.table] == world.good_lines[case.table]


@pytest.mark.parametrize("table", [t.name for t in schemas.TABLES])
def test_file_counts(world: RuleWorld, table: str) -> None:
    r = world.results[f"{table}.csv"]
    assert r.status == "loaded"
    assert (r.rows, r.loaded, r.quarantined, r.duplicates) == (
        3 + world.n_bad[table], 3, world.n_bad[table], 0
    )
    in_file = [q for q in world.quarantine if q[0] == f"{table}.csv"]
    assert len(in_file) == world.n_bad[table]


def test_reasons_say_what_to_do(world: RuleWorld) -> None:
    reasons = {q[4] for q in world.quarantine}
    by_fragment = {frag: [r for r in reasons if frag in r] for frag in (NOT_NPI, NO_RECORD)}
    assert all("correct it or leave it empty" in r for r in by_fragment[NOT_NPI])
    assert all("send that record in hcps first" in r for r in by_fragment[NO_RECORD])
    channel = next(r for r in reasons if r.startswith("unknown channel"))
    assert "declare it under [contract] channels in hcpj.toml" in channel


def test_content_may_expire_in_the_future(world: RuleWorld) -> None:
    content = {r["content_id"]: r for r in world.wh.rows("content")}
    assert content["c1"]["expires_at"] == datetime(2099, 12, 31)


def test_typed_values_of_good_rows(world: RuleWorld) -> None:
    hcps = {r["record_id"]: r for r in world.wh.rows("hcps")}
    assert (hcps["crm:1"]["decile"], hcps["crm:1"]["is_kol"]) == (3, True)
    assert (hcps["crm:2"]["decile"], hcps["crm:2"]["is_kol"]) == (7, False)
    assert hcps["web:3"]["decile"] is None and hcps["web:3"]["npi"] is None
    events = {r["event_id"]: r for r in world.wh.rows("interactions")}
    # +02:00 converted to UTC; no offset taken as UTC
    assert events["e2"]["ts"] == datetime(2024, 2, 2, 9, 0)
    assert events["e3"]["ts"] == datetime(2024, 2, 3, 12, 0)
    assert events["e3"]["value_usd"] == pytest.approx(45.10)
    assert events["e3"]["topic"] == "lipids, diet"


@pytest.fixture(scope="module")
def hcps_base(module_factory):
    """A workspace holding the sample hcps only."""
    wh = module_factory.workspace("hcps-base")
    wh.ingest(module_factory.drop("hcps-base").sample("hcps").path)
    return wh


def test_declared_channels_and_actions_are_accepted(factory, hcps_base) -> None:
    drop = factory.drop()
    header = ["event_id", "record_id", "ts", "channel", "action"]
    drop.csv("interactions.csv", header, [
        ["e1", "crm:1", "2024-02-01T10:00:00Z", "podcast_ad", "listened"],
        ["e2", "crm:1", "2024-02-02T10:00:00Z", "email", "Listened"],
        ["e3", "crm:2", "2024-02-03T10:00:00Z", "Podcast_Ad", "opened"],
    ])
    drop.csv("consents.csv", ["record_id", "channel", "status", "ts", "purpose"], [
        ["crm:1", "podcast_ad", "opt_in", "2024-01-01T00:00:00Z", "promotional"],
    ])

    custom = factory.clone(hcps_base, "custom", channels=["Podcast_Ad"], actions=["listened"])
    res = custom.ingest(drop.path)
    assert custom.quarantine() == []
    assert res["interactions.csv"].loaded == 3 and res["consents.csv"].loaded == 1
    stored = sorted((r["event_id"], r["channel"], r["action"]) for r in custom.rows("interactions"))
    assert stored == [
        ("e1", "podcast_ad", "listened"),
        ("e2", "email", "listened"),
        ("e3", "podcast_ad", "opened"),
    ]

    plain = factory.clone(hcps_base, "plain")
    plain.ingest(drop.path)
    got = [(f, ln, col, v) for f, ln, col, v, _ in plain.quarantine()]
    assert got == [
        ("consents.csv", 2, "channel", "podcast_ad"),
        ("interactions.csv", 2, "action", "listened"),
        ("interactions.csv", 2, "channel", "podcast_ad"),
        ("interactions.csv", 3, "action", "Listened"),
        ("interactions.csv", 4, "channel", "Podcast_Ad"),
    ]
    reasons = {q[2]: q[4] for q in plain.quarantine()}
    assert "declare it under [contract] actions in hcpj.toml" in reasons["action"]
    assert plain.rows("interactions") == []


def test_references_to_records_of_an_earlier_drop(factory, sample, hcps_base) -> None:
    second = factory.drop("second").sample(
        "interactions", "consents", "outcomes", "feedback", "relationships"
    )
    wh = factory.clone(hcps_base, "earlier")  # the first drop: hcps
    res = wh.ingest(second.path)
    assert wh.quarantine() == []
    for table in ("interactions", "consents", "outcomes", "feedback", "relationships"):
        assert res[f"{table}.csv"].loaded == len(sample[table][1]), table
        assert len(wh.rows(table)) == len(sample[table][1]), table


def test_drop_files_load_hcps_first_whatever_their_names(factory, sample) -> None:
    """So that a drop may refer to its own hcps records (as the rule world's drop does)."""
    drop = factory.drop()
    for name in ("zz_hcps.csv", "hcps_2024.csv", "interactions-a.csv", "consents.parquet",
                 "relationships.csv", "content.CSV", "notes.txt"):
        drop.text(name, "x\n")
    sources, ignored = discover([drop.path])
    assert [(s.file, s.table) for s in sources] == [
        ("hcps_2024.csv", "hcps"),
        ("content.CSV", "content"),
        ("interactions-a.csv", "interactions"),
        ("consents.parquet", "consents"),
        ("relationships.csv", "relationships"),
    ]
    assert sorted(ignored) == ["notes.txt", "zz_hcps.csv"]
