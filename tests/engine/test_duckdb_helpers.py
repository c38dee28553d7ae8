"""The DuckDB engine's own shortcuts agree with their plain definitions."""

from __future__ import annotations

import duckdb
import ibis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hcpjourney.engine import DuckDBEngine
from hcpjourney.engine.duckdb import _WHITESPACE, _edge_space

# texts built from whitespace, ASCII, control and non-ASCII characters, at either end
_CHARS = st.sampled_from([*_WHITESPACE, "a", "Z", "!", "~", "\x01", "\x1f", "\x84", "é", "中", "\U0001f600"])


@settings(max_examples=300, deadline=None)
@given(st.text(_CHARS, max_size=6))
def test_edge_space_is_whitespace_at_either_end(text: str) -> None:
    con = duckdb.connect()
    got = con.execute(f"SELECT {_edge_space('c')} FROM (SELECT ?::VARCHAR AS c)", [text]).fetchone()
    # the empty text counts too: the staged path stores it as null, so it is not clean
    assert got[0] == (text == "" or text[0] in _WHITESPACE or text[-1] in _WHITESPACE)


@pytest.fixture
def eng(tmp_path):
    e = DuckDBEngine(tmp_path / "w.duckdb")
    yield e
    e.close()


@pytest.mark.parametrize(
    "keys, repeats",
    [
        ([], False),
        (["a"], False),
        ([f"k{i}" for i in range(1001)], False),
        (["k1", "k1", *(f"k{i}" for i in range(2, 1000))], True),  # both in the first half
        ([*(f"k{i}" for i in range(1000)), "k999"], True),  # at the very end
        (["k0", *(f"k{i}" for i in range(1, 1000)), "k0"], True),  # one in each half
        (["k0", None, None, "k1"], False),  # empty keys are not repeats
    ],
    ids=["empty", "one", "unique", "first-half", "last", "across-halves", "nulls"],
)
def test_has_repeats_finds_any_repeated_value(eng, keys, repeats) -> None:
    eng.create("t", ibis.memtable({"k": keys}, schema={"k": "string"}))
    assert eng.has_repeats(eng.table("t"), "k") is repeats
