"""Property tests: the engine's vectorised checks agree with plain-Python definitions.

Each hypothesis example is a list of values evaluated in one engine call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import ibis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcpjourney.contract import validate
from hcpjourney.contract.npi import is_valid_npi, make_npi
from hcpjourney.contract.schemas import TIMESTAMP, Column, TableSpec
from hcpjourney.engine import DuckDBEngine

SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)
NON_DIGIT = st.sampled_from([chr(c) for c in range(32, 127) if not chr(c).isdigit()])


@pytest.fixture(scope="module")
def eng() -> Iterator[DuckDBEngine]:
    e = DuckDBEngine()  # in memory
    yield e
    e.close()


# ----------------------------------------------------------------------------- NPI
def engine_npi(eng: DuckDBEngine, values: list[str]) -> list[bool | None]:
    t = ibis.memtable(
        {"i": list(range(len(values))), "v": values}, schema={"i": "int64", "v": "string"}
    )
    rows = eng.to_pyarrow(t.select("i", ok=validate.npi_is_valid(t.v)).order_by("i")).to_pylist()
    return [r["ok"] for r in rows]


first9 = st.integers(0, 999_999_999)
valid_npis = first9.map(make_npi)


@st.composite
def corrupted_npis(draw: st.DrawFn) -> str:
    """A valid NPI with exactly one digit changed."""
    npi = draw(valid_npis)
    pos = draw(st.integers(0, 9))
    new = (int(npi[pos]) + draw(st.integers(1, 9))) % 10
    return npi[:pos] + str(new) + npi[pos + 1 :]


@st.composite
def npis_with_a_non_digit(draw: st.DrawFn) -> str:
    npi = draw(valid_npis)
    pos = draw(st.integers(0, 9))
    return npi[:pos] + draw(NON_DIGIT) + npi[pos + 1 :]


tagged_npis = st.one_of(
    st.tuples(st.just("digits"), st.text(alphabet="0123456789", min_size=10, max_size=10)),
    st.tuples(st.just("valid"), valid_npis),
    st.tuples(st.just("corrupted"), corrupted_npis()),
    st.tuples(st.just("non-digit"), npis_with_a_non_digit()),
    st.tuples(st.just("text"), st.text(alphabet=PRINTABLE, max_size=14)),
    st.tuples(st.just("length"), st.text(alphabet="0123456789", min_size=1, max_size=14)),
)


@SETTINGS
@given(st.lists(tagged_npis, min_size=1, max_size=200))
def test_npi_engine_check_agrees_with_python(eng: DuckDBEngine, tagged: list) -> None:
    values = [v for _, v in tagged]
    got = engine_npi(eng, values)
    assert got == [is_valid_npi(v) for v in values]  # exact booleans: never NULL
    for (kind, v), ok in zip(tagged, got, strict=True):
        if kind == "valid":
            assert ok is True, v
        elif kind in ("corrupted", "non-digit"):
            # the Luhn check catches every single-digit error
            assert ok is False, v


def test_npi_known_values(eng: DuckDBEngine) -> None:
    # 1234567893 is the CMS example of a valid NPI
    values = ["1234567893", "1234567890", "123456789", "12345678931", "abcdefghij", ""]
    assert engine_npi(eng, values) == [True, False, False, False, False, False]
    assert [is_valid_npi(v) for v in values] == [True, False, False, False, False, False]


# ----------------------------------------------------------------------- timestamps
PROBE = TableSpec(name="probe", key=("ts",), columns=(Column("ts", TIMESTAMP),))
NOW = datetime(2300, 1, 1)  # nothing generated below is in the future


def engine_timestamps(
    eng: DuckDBEngine, values: list[str]
) -> tuple[dict[int, datetime | None], dict[int, str]]:
    """Parsed UTC value per accepted row, and the reason per refused row (one engine call)."""
    raw = ibis.memtable(
        {"ts": values, validate.LINE: list(range(len(values)))},
        schema={"ts": "string", validate.LINE: "int64"},
    )
    checked = validate.check(validate.staged(raw, PROBE), PROBE, validate.Rules(now=NOW))
    reasons = [q for q, _ in checked.reasons]
    t = checked.table
    rows = eng.to_pyarrow(t.select(validate.LINE, *reasons)).to_pylist()
    typed = eng.to_pyarrow(validate.valid_rows(checked).select(validate.LINE, "ts")).to_pylist()
    good: dict[int, datetime | None] = {r[validate.LINE]: r["ts"] for r in typed}
    bad: dict[int, str] = {}
    for r in rows:
        why = [r[q] for q in reasons if r[q] is not None]
        if why:
            bad[r[validate.LINE]] = "; ".join(why)
    assert not set(good) & set(bad)
    return good, bad


instants = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(2200, 1, 1))


@st.composite
def rendered(draw: st.DrawFn) -> tuple[str, datetime]:
    """An ISO-8601 rendering of a UTC instant: with Z, with a +HH:MM offset, or none."""
    utc = draw(instants)
    sep = draw(st.sampled_from(["T", " "]))
    style = draw(st.sampled_from(["Z", "offset", "none"]))
    if style == "Z":
        return utc.isoformat(sep=sep) + "Z", utc
    if style == "none":
        return utc.isoformat(sep=sep), utc
    minutes = draw(st.integers(-14 * 60, 14 * 60))
    local = utc + timedelta(minutes=minutes)
    sign = "+" if minutes >= 0 else "-"
    hh, mm = divmod(abs(minutes), 60)
    return f"{local.isoformat(sep=sep)}{sign}{hh:02d}:{mm:02d}", utc


@SETTINGS
@given(st.lists(rendered(), min_size=1, max_size=200))
def test_iso_timestamps_parse_to_the_utc_instant(eng: DuckDBEngine, items: list) -> None:
    values = [s for s, _ in items]
    good, bad = engine_timestamps(eng, values)
    assert bad == {}
    assert good == {i: utc for i, (_, utc) in enumerate(items)}


DATE_PREFIX = re.compile(r"^\s*[0-9]{4}-[0-9]")
LETTERS = "abcdefghijklmnopqrsuvwxy"  # no t or z (date-time separator, UTC)


@st.composite
def broken_timestamp(draw: st.DrawFn) -> str:
    s = draw(instants).isoformat(timespec="seconds") + "Z"
    kind = draw(st.sampled_from(["letter", "month", "day", "hour", "minute"]))
    if kind == "letter":  # one character replaced by a letter
        pos = draw(st.integers(0, len(s) - 1))
        return s[:pos] + draw(st.sampled_from(LETTERS)) + s[pos + 1 :]
    # one field out of its range: YYYY-MM-DDTHH:MM:SSZ
    start, lo = {"month": (5, 13), "day": (8, 32), "hour": (11, 25), "minute": (14, 60)}[kind]
    return s[:start] + str(draw(st.integers(lo, 99))) + s[start + 2 :]


garbage = st.one_of(
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
    ).filter(lambda s: s.strip() != "" and not DATE_PREFIX.match(s)),
    broken_timestamp(),
    st.sampled_from(["epoch", "infinity", "-infinity", "now", "today", "-2024-01-01"]),
)


@SETTINGS
@given(st.lists(garbage, min_size=1, max_size=200))
def test_garbage_timestamps_are_refused(eng: DuckDBEngine, values: list[str]) -> None:
    good, bad = engine_timestamps(eng, values)
    assert good == {}
    assert set(bad) == set(range(len(values)))
    assert all("is not an ISO-8601 timestamp" in r for r in bad.values())
