"""Contract validation as Ibis expressions: vectorised, run inside the engine.

``check`` takes a staged table of text columns and returns, per row, the typed
contract columns and one reason column per rule (null where the rule holds).
Reasons are fixed sentences a person can act on; the offending value travels
in its own column, so reasons group and count cleanly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.contract.npi import NPI_PREFIX
from hcpjourney.contract.schemas import Column, TableSpec
from hcpjourney.engine import RAW

LINE = "_line"
BROKEN = "_broken"  # see optimistic_rows
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_IBIS_TYPES = {
    schemas.TEXT: "string",
    schemas.PERIOD: "string",
    schemas.INT: "int64",
    schemas.NUMBER: "float64",
    schemas.BOOL: "boolean",
    schemas.TIMESTAMP: "timestamp",
}


def ibis_type(col: Column) -> str:
    return _IBIS_TYPES[col.type]


def stored_schema(spec: TableSpec) -> ibis.Schema:
    """Schema of a stored input table: typed contract columns plus lineage."""
    pairs = [(c.name, ibis_type(c)) for c in spec.columns]
    pairs += [
        (schemas.ATTRIBUTES, "string"),
        (schemas.LOAD_ID, "string"),
        (LINE, "int64"),
    ]
    return ibis.schema(pairs)


@dataclass
class Rules:
    """What a row is checked against besides the contract itself."""

    now: datetime
    allowed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    known_records: ir.Column | None = None  # record_id values an input may refer to
    # enumerated columns whose values the engine's reader has already checked (see
    # ``reader_types``): their enumeration rule is not evaluated again
    checked_by_reader: frozenset[str] = frozenset()


@dataclass
class Checked:
    table: ir.Table  # staged columns + one reason column per rule
    reasons: list[tuple[str, str]]  # (reason column, contract column it is about)
    spec: TableSpec
    columns: list[str]  # the staged input's columns


def missing_required(spec: TableSpec, columns: list[str]) -> list[str]:
    present = set(columns)
    return [c for c in spec.required if c not in present]


def _typed(col: Column, v: ir.StringValue) -> ir.Value:
    if col.enum is not None or col.extendable:
        return v.lower()
    if col.type in (schemas.TEXT, schemas.PERIOD):
        return v
    if col.type == schemas.INT:
        as_num = v.try_cast("float64")
        # try_cast: nan, inf and values beyond int64 are "not a whole number", not a crash
        whole = as_num.try_cast("int64")
        return ibis.ifelse(as_num == whole.cast("float64"), whole, ibis.null())
    if col.type == schemas.NUMBER:
        as_num = v.try_cast("float64")
        return ibis.ifelse(as_num.isnan() | as_num.isinf(), ibis.null(), as_num)
    if col.type == schemas.BOOL:
        low = v.lower()
        return ibis.cases((low.isin(_TRUE), True), (low.isin(_FALSE), False)).cast("boolean")
    if col.type == schemas.TIMESTAMP:
        # The engine's parser also takes words such as "epoch" and "-infinity" and BC
        # dates ("-2024-01-01"); ISO-8601 starts with the date.
        iso = v.re_search(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")
        parsed = v.try_cast("timestamp('UTC')").cast("timestamp")
        return ibis.ifelse(iso, parsed, ibis.null("timestamp"))
    raise AssertionError(col.type)


def _typed_value(col: Column, v: ir.Value) -> ir.Value:
    """``_typed`` for a value the engine's reader already typed (see ``reader_types``):
    null where ``_typed`` would give null for its text."""
    if col.type == schemas.TIMESTAMP:
        # The reader took a strict ISO layout; a year of other than four digits
        # would not start with the date ``_typed`` asks for.
        # the years 1000..9999 as one range test (cheaper than extracting the year)
        ok = (v >= datetime(1000, 1, 1)) & (v <= datetime(9999, 12, 31, 23, 59, 59, 999999))
        return ibis.ifelse(ok, v, ibis.null("timestamp"))
    num = v.cast("float64")
    finite = ibis.ifelse(num.isnan() | num.isinf(), ibis.null("float64"), num)
    if col.type == schemas.NUMBER:
        return finite
    if col.type == schemas.INT:
        whole = finite.try_cast("int64")
        return ibis.ifelse(finite == whole.cast("float64"), whole, ibis.null("int64"))
    raise AssertionError(col.type)


def reader_types(spec: TableSpec, rules: Rules) -> dict[str, str | tuple[str, ...]]:
    """Columns an engine's CSV reader may type itself, giving what ``staged`` gives for
    their text (a value it cannot read fails): "number", "timestamp", or the tuple of
    an enumeration's allowed values (taken as sent, as ``staged(as_sent=True)`` does;
    a value outside them fails, so the reader checks the enumeration rule itself:
    pass these columns as ``Rules.checked_by_reader``)."""
    kinds = {schemas.NUMBER: "number", schemas.INT: "number", schemas.TIMESTAMP: "timestamp"}
    out: dict[str, str | tuple[str, ...]] = {
        c.name: kinds[c.type] for c in spec.columns if c.type in kinds}
    for c in spec.columns:
        if c.enum is not None or c.extendable:
            out[c.name] = tuple(dict.fromkeys(_allowed(c, rules)))
    return out


def _allowed(col: Column, rules: Rules) -> tuple[str, ...]:
    if col.extendable:
        return tuple(rules.allowed.get(col.extendable, col.enum or ()))
    return tuple(col.enum or ())


def npi_is_valid(v: ir.StringValue) -> ir.BooleanValue:
    """Luhn check over the 80840 prefix, as an engine expression."""
    digits = NPI_PREFIX + "0" * 10
    # Weighted sum of the constant prefix: walking from the right of the 15 digits,
    # digits at odd distance from the right end are doubled.
    const = 0
    for j, ch in enumerate(digits[: len(NPI_PREFIX)]):
        d = int(ch)
        if (len(digits) - 1 - j) % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        const += d
    total: ir.IntegerValue = ibis.literal(const)
    for k in range(10):
        d = v.substr(k, 1).try_cast("int64")
        if (9 - k) % 2 == 1:
            d = d * 2 - ibis.ifelse(d >= 5, 9, 0)
        total = total + d
    return v.re_search(r"^[0-9]{10}$") & ((total % 10) == 0)


def _enum_reason(col: Column, allowed: tuple[str, ...]) -> str:
    shown = ", ".join(allowed[:20]) + (", ..." if len(allowed) > 20 else "")
    hint = (
        f"; or declare it under [contract] {col.extendable} in hcpj.toml"
        if col.extendable
        else ""
    )
    return f"unknown {col.name}: use one of {shown}{hint}"


def _plain(col: Column) -> bool:
    """A text column stored as given (its typed value is its cleaned text)."""
    return col.type == schemas.TEXT and col.enum is None and not col.extendable


def edge_sensitive_columns(spec: TableSpec) -> list[str]:
    """Columns where whitespace around a value could pass every rule yet change what
    is stored: plain text columns, except NPIs and record references, which
    whitespace breaks (stored record ids are cleaned). Around any other value it either
    breaks a rule (enumerations, NPI, timestamps that must start with the date,
    months) or leaves the typed value as it is (numbers)."""
    return [c.name for c in spec.columns if _plain(c) and not (c.references_record or c.npi)]


def _text(col: Column) -> str:
    return col.name if _plain(col) else f"_v_{col.name}"


def staged(raw: ir.Table, spec: TableSpec, *, as_sent: bool = False) -> ir.Table:
    """What staging stores of an input file, typed once, in the pass that reads it.

    ``raw`` holds the file's text, contract columns already cleaned by the engine
    (trimmed, empty as null; the text as sent in ``_raw`` where that changed it).
    Each contract column present is stored typed under its own name; where typing
    changes it, its text is kept too as ``_v_<col>`` for the rules and the
    quarantine. Other columns pass through.

    ``as_sent``: enumerated values are taken as sent instead of lower-cased, so a
    value in another case breaks the enumeration rule. For a load that assumes a
    clean file (see ``optimistic_rows``): such a file then takes the staged path,
    which lower-cases, and the common all-lower-case file skips a string
    operation per value.
    """
    cols: dict[str, ir.Value] = {}
    for c in raw.columns:
        col = spec.column(c) if c in spec.names else None
        if col is None or _plain(col):
            cols[c] = raw[c]
        elif as_sent and (col.enum is not None or col.extendable) and raw[c].type().is_string():
            cols[f"_v_{c}"] = raw[c]
            cols[c] = raw[c]
        elif not raw[c].type().is_string():
            # typed by the engine's reader: the rules see the typed value as the text
            cols[f"_v_{c}"] = raw[c]
            cols[c] = _typed_value(col, raw[c])
        else:
            text = raw[c].cast("string")
            cols[f"_v_{c}"] = text
            cols[c] = _typed(col, text)
    return raw.select(**cols)


def broken_rules(
    t: ir.Table, spec: TableSpec, rules: Rules
) -> Iterator[tuple[str, ir.BooleanValue, str]]:
    """Every rule of ``spec`` that applies to ``t`` (a table made by ``staged``), as
    (contract column, condition true where a row breaks the rule, reason)."""
    for col in spec.columns:
        if col.name not in t.columns:
            continue
        v = t[_text(col)]
        typed = t[col.name]
        if col.required:
            yield col.name, v.isnull(), f"{col.name} is required but empty; fill it in"
        if col.type == schemas.TIMESTAMP:
            yield (
                col.name,
                v.notnull() & typed.isnull(),
                f"{col.name} is not an ISO-8601 timestamp (e.g. 2025-03-14T09:30:00Z)",
            )
            if not col.future_ok:
                yield (
                    col.name,
                    typed > ibis.literal(rules.now, type="timestamp"),
                    f"{col.name} is in the future; send past events only (no offset means UTC)",
                )
        elif col.type == schemas.INT:
            yield col.name, v.notnull() & typed.isnull(), f"{col.name} is not a whole number"
            if col.int_range:
                lo, hi = col.int_range
                yield (
                    col.name,
                    typed.notnull() & ~typed.between(lo, hi),
                    f"{col.name} must be between {lo} and {hi}",
                )
        elif col.type == schemas.NUMBER:
            yield col.name, v.notnull() & typed.isnull(), f"{col.name} is not a number"
        elif col.type == schemas.BOOL:
            yield (
                col.name,
                v.notnull() & typed.isnull(),
                f"{col.name} is not true/false (or yes/no, 1/0)",
            )
        elif col.type == schemas.PERIOD:
            yield (
                col.name,
                v.notnull() & ~v.re_search(r"^[0-9]{4}-(0[1-9]|1[0-2])$"),
                f"{col.name} is not a month as YYYY-MM",
            )
        if (col.enum is not None or col.extendable) and col.name not in rules.checked_by_reader:
            allowed = _allowed(col, rules)
            # a list lookup: DuckDB plans ``IN (...)`` of a dozen values as a join,
            # twice as slow over 10M rows
            listed = ibis.literal(list(allowed), type="array<string>").contains(typed)
            yield col.name, typed.notnull() & ~listed, _enum_reason(col, allowed)
        if col.npi:
            yield (
                col.name,
                v.notnull() & ~npi_is_valid(v),
                "npi is not a valid NPI (10 digits whose last is the Luhn check over "
                "prefix 80840); correct it or leave it empty",
            )
        if col.references_record and rules.known_records is not None:
            yield (
                col.name,
                v.notnull() & ~v.isin(rules.known_records),
                f"{col.name} names no known HCP record; send that record in hcps first",
            )


def check(t: ir.Table, spec: TableSpec, rules: Rules) -> Checked:
    """Per-rule reasons for every row of ``t``, a table made by ``staged``."""
    mutations: dict[str, ir.Value] = {}
    reasons: list[tuple[str, str]] = []
    for column, cond, text in broken_rules(t, spec, rules):
        name = f"_q{len(reasons)}"
        mutations[name] = ibis.ifelse(cond, ibis.literal(text), ibis.null("string"))
        reasons.append((name, column))
    return Checked(t.mutate(**mutations), reasons, spec, list(t.columns))


def optimistic_rows(t: ir.Table, spec: TableSpec, rules: Rules) -> ir.Table:
    """``valid_rows`` of every row of ``t`` (made by ``staged``) plus ``_broken``, true
    where the row breaks a rule: for a load that assumes a clean file and checks it
    in the same pass."""
    broken: ir.BooleanValue = ibis.literal(False)
    for _, cond, _ in broken_rules(t, spec, rules):
        broken = broken | cond.fill_null(False)
    marked = t.mutate(**{BROKEN: broken})
    return _stored(marked, spec, list(t.columns), keep=(BROKEN,))


def quarantine_rows(checked: Checked, t: ir.Table) -> ir.Table | None:
    """One row per broken rule (line, column, value, reason) of ``t``, a subset of checked rows."""
    spec = checked.spec
    parts = []
    for qcol, column in checked.reasons:
        parts.append(
            t.filter(t[qcol].notnull()).select(
                line=t[LINE],
                column=ibis.literal(column),
                value=ibis.coalesce(
                    t[RAW].cast("json")[column].unwrap_as("string"),
                    t[_text(spec.column(column))],
                ),
                reason=t[qcol],
            )
        )
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return out


def valid_rows(
    checked: Checked, bad: ir.Table | None = None, *, checked_rules: bool = True
) -> ir.Table:
    """Typed contract columns, attributes and ``_line`` of the rows that break no rule.

    With ``bad`` (the broken rows, as found by ``bad_rows``), their lines are
    excluded, which is cheaper than checking every rule again. With
    ``checked_rules=False`` and no ``bad``, the caller has found no broken row and
    every row is taken as it is.
    """
    spec = checked.spec
    t = checked.table
    if bad is not None:
        good = t.anti_join(bad.select(LINE), LINE)
    elif checked_rules:
        cond: ir.BooleanValue = ibis.literal(True)
        for qcol, _ in checked.reasons:
            cond = cond & t[qcol].isnull()
        good = t.filter(cond)
    else:
        good = t
    return _stored(good, spec, checked.columns)


def _stored(
    good: ir.Table, spec: TableSpec, columns: list[str], keep: tuple[str, ...] = ()
) -> ir.Table:
    """The stored schema's columns of ``good`` (contract columns, attributes and ``_line``),
    then the ``keep`` columns; ``columns`` are the input's, extra ones become attributes."""
    cols: dict[str, ir.Value] = {}
    for c in spec.columns:
        cols[c.name] = good[c.name] if c.name in good.columns else ibis.null(ibis_type(c))
    names = {c.name for c in spec.columns}
    texts = {f"_v_{n}" for n in names}
    extra = [c for c in columns if c not in names | texts and c not in (LINE, RAW)]
    if extra:
        attrs = ibis.struct({c: good[c].cast("string") for c in extra})
        cols[schemas.ATTRIBUTES] = attrs.cast("json").cast("string")
    else:
        cols[schemas.ATTRIBUTES] = ibis.null("string")
    cols[LINE] = good[LINE]
    cols.update({c: good[c] for c in keep})
    return good.select(**cols)


def bad_rows(checked: Checked) -> ir.Table:
    """Rows that break at least one rule (all staged and reason columns)."""
    t = checked.table
    cond: ir.BooleanValue = ibis.literal(False)
    for qcol, _ in checked.reasons:
        cond = cond | t[qcol].notnull()
    return t.filter(cond)


def row_hash(t: ir.Table, spec: TableSpec) -> ir.IntegerValue:
    """A hash of a row's contract values and attributes, to tell a re-send from a change.

    The JSON of the row is an unambiguous encoding (nulls included) to hash.
    """
    fields = {c.name: t[c.name].cast("string") for c in spec.columns}
    fields[schemas.ATTRIBUTES] = t[schemas.ATTRIBUTES]
    return ibis.struct(fields).cast("json").cast("string").hash()
