"""The DuckDB engine: the only module (with its package) that imports duckdb.

Analytics elsewhere are written as Ibis expressions over the tables this engine
exposes; the engine stages input files, runs expressions into tables inside
transactions, and writes exports.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from ibis.backends.duckdb import Backend as IbisDuckDB

from hcpjourney.errors import ConfigError, InputFileError

LINE = "_line"  # 1-based line of a staged row in its file (header = line 1)
_BLOCK = 16 << 20


Transform = Callable[[ir.Table], ir.Table]
# Called with the fraction (0..1) of an input file read so far.
Progress = Callable[[float], None]


class _RaggedRows(Exception):
    pass


class NotClean(Exception):
    """An optimistic load met something only the staged path handles (see create_from_csv)."""


_NOT_CLEAN = "hcpj: not a clean file"


# Unicode White_Space: what pyarrow's utf8_trim_whitespace (the staged path's cleaning) trims.
_WHITESPACE = "".join(map(chr, (9, 10, 11, 12, 13, 32, 133, 160, 5760, *range(8192, 8203), 8232,
                                8233, 8239, 8287, 12288)))


def _edge_space(col: str) -> str:
    """SQL: the text in ``col`` starts or ends with whitespace (null when ``col`` is null).

    Two comparisons of the text's first bytes rule most values out before the exact
    search in a constant string (DuckDB turns a long IN list into a join, many times
    slower): text compares bytewise, so ``col < '!'`` holds when the first character
    is a control character or a space (or the text is empty) and ``col >= chr(133)``
    when its code point is 133 or more, where Unicode whitespace other than ASCII's
    lies. Cheaper than ``ascii(col)``, which decodes the first character.
    """
    ws = f"'{_WHITESPACE}'"
    first = (
        f"CASE WHEN {col} < '!' OR {col} >= chr(133) "
        f"THEN contains({ws}, {col}[1]) ELSE false END"
    )
    return f"({first} OR contains({ws}, {col}[-1]))"


@contextmanager
def _progress(con: duckdb.DuckDBPyConnection, report: Progress | None) -> Iterator[None]:
    """While the block runs a query on ``con``, report the fraction of it done."""
    if report is None:
        yield
        return
    import threading

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.25):
            pct = con.query_progress()
            if pct >= 0:
                report(min(1.0, pct / 100))

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
    report(1.0)


def _sql_quote(text: str) -> str:
    return text.replace("'", "''")


class DuckDBEngine:
    """A warehouse in one DuckDB file, driven through Ibis."""

    name = "duckdb"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        read_only: bool = False,
        memory_limit: str | None = None,
    ) -> None:
        target = str(path) if path is not None else ":memory:"
        try:
            self.backend = ibis.duckdb.connect(target, read_only=read_only)
        except duckdb.IOException as exc:
            raise InputFileError(
                target, f"cannot open the warehouse ({exc}); is another hcpj command using it?"
            ) from None
        self._raw: duckdb.DuckDBPyConnection = self.backend.con
        self._raw.execute("SET TimeZone='UTC'")
        if memory_limit:
            try:
                self._raw.execute("SET memory_limit = ?", [memory_limit])
            except duckdb.Error:
                raise ConfigError(
                    f"memory_limit '{memory_limit}' is not a size such as \"3GB\"; fix hcpj.toml"
                ) from None
        self._in_tx = False

    # ------------------------------------------------------------------ tables
    def table(self, name: str) -> ir.Table:
        return self.backend.table(name)

    def has_table(self, name: str) -> bool:
        return name in self.backend.list_tables()

    def tables(self) -> list[str]:
        return list(self.backend.list_tables())

    def create(
        self,
        name: str,
        expr: ir.Table,
        *,
        order_by: Sequence[str] = (),
        temp: bool = False,
        replace: bool = True,
    ) -> ir.Table:
        """Materialise ``expr`` as table ``name``, stored in ``order_by`` order."""
        obj = expr.order_by(list(order_by)) if order_by else expr
        kind = "TEMP TABLE" if temp else "TABLE"
        verb = "CREATE OR REPLACE" if replace else "CREATE"
        self._raw.execute(f'{verb} {kind} "{name}" AS {self._sql(obj)}')
        return self.table(name)

    def _sql(self, expr: ir.Expr) -> str:
        # registers in-memory tables (ibis.memtable) the expression reads
        self.backend._run_pre_execute_hooks(expr)
        return str(self.backend.compile(expr))

    def create_empty(self, name: str, schema: ibis.Schema) -> ir.Table:
        if not self.has_table(name):
            self.backend.create_table(name, schema=schema)
        return self.table(name)

    def insert(self, name: str, expr: ir.Table) -> None:
        cols = ", ".join(f'"{c}"' for c in expr.columns)
        self._raw.execute(f'INSERT INTO "{name}" ({cols}) {self._sql(expr)}')

    def rewrite_sorted(self, name: str, expr: ir.Table, order_by: Sequence[str]) -> None:
        """Replace table ``name`` by ``expr`` stored sorted (expr may read ``name``)."""
        tmp = f"{name}__rewrite"
        self.create(tmp, expr, order_by=order_by)
        self._raw.execute(f'DROP TABLE "{name}"')
        self._raw.execute(f'ALTER TABLE "{tmp}" RENAME TO "{name}"')

    def drop(self, name: str) -> None:
        self._raw.execute(f'DROP TABLE IF EXISTS "{name}"')

    def count(self, expr: ir.Table) -> int:
        return int(self.backend.execute(expr.count()))

    def has_repeats(self, expr: ir.Table, column: str) -> bool:
        """Whether a value of the text ``column`` of ``expr`` occurs more than once.

        Why not a GROUP BY: grouping 10M keys (even as 64-bit hashes) costs DuckDB
        about 3 CPU-seconds; sorting their hashes in numpy costs a third of that
        (two halves sorted on two threads, then each value of one half looked up
        in the other). Equal hashes are then checked on the text itself.
        """
        keys = expr.filter(expr[column].notnull())
        sql = self._sql(keys.select(_h=hash64(keys[column])))
        hashes = self._raw.execute(sql).fetchnumpy()
        h = np.asarray(hashes["_h"], dtype=np.uint64)
        a, b = h[: len(h) // 2], h[len(h) // 2 :]
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(np.ndarray.sort, (a, b)))  # numpy's sort releases the GIL

            def in_a(part: np.ndarray) -> bool:
                pos = np.minimum(np.searchsorted(a, part), len(a) - 1)
                return bool((a[pos] == part).any())

            m = len(b) // 2
            clash = any(bool((x[1:] == x[:-1]).any()) for x in (a, b)) or (
                len(a) > 0 and any(pool.map(in_a, (b[:m], b[m:])))
            )
        if not clash:
            return False
        again = keys.select(column).group_by(column).aggregate(_n=ibis._.count()).filter(ibis._._n > 1)
        return self.count(again) > 0

    def to_pyarrow(self, expr: ir.Expr) -> pa.Table:
        return self.backend.to_pyarrow(expr)

    def execute(self, expr: ir.Expr) -> Any:
        return self.backend.execute(expr)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all."""
        if self._in_tx:
            yield
            return
        self._raw.execute("BEGIN TRANSACTION")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self._raw.execute("ROLLBACK")
            raise
        else:
            self._raw.execute("COMMIT")
        finally:
            self._in_tx = False

    def close(self) -> None:
        self.backend.disconnect()

    # ----------------------------------------------------------------- staging
    def stage_csv(
        self,
        path: Path,
        name: str,
        *,
        transform: Transform | None = None,
        clean: Sequence[str] = (),
        on_progress: Progress | None = None,
    ) -> tuple[ir.Table, list[dict[str, Any]]]:
        """Stage a CSV file as a temp table, in one pass over the file.

        The file is read as text columns plus ``_line``; the ``clean`` columns
        are cleaned (see ``clean_batch``); ``transform`` (an Ibis expression over
        that) says what is stored, so typing happens while staging. Returns the
        staged table and the rows that could not be parsed (wrong number of
        fields), each as {line, value, reason}.
        """
        header = _read_header(path)
        try:
            reader, seen = self._open_csv(path, header, tolerate=False)
            table = self._stage_batches(
                path, name, reader, header, [], on_progress, transform, clean, ragged_seen=seen
            )
            return table, []
        except _RaggedRows:
            pass
        # Slow path: single-threaded parse that reports each malformed row's line.
        reader, ragged = self._open_csv(path, header, tolerate=True)
        skipped = ragged  # filled while batches are read
        table = self._stage_batches(
            path, name, reader, header, skipped, on_progress, transform, clean
        )
        return table, ragged

    def create_from_csv(
        self,
        path: Path,
        name: str,
        *,
        build: Transform,
        guard: str,
        order_by: Sequence[str],
        clean: Sequence[str] = (),
        typed: Mapping[str, str | tuple[str, ...]] = {},
        on_progress: Progress | None = None,
    ) -> ir.Table:
        """Load a CSV file that is expected to be clean into table ``name`` with DuckDB's
        own parallel reader, sorted by ``order_by``.

        ``build`` gets the file as text columns plus ``_line`` (null: rows of a clean
        file carry their load and their key as lineage, not a line) and must return the
        rows to store plus a boolean ``_broken`` column. The reader itself types
        the ``typed`` columns ("number": float64; "timestamp": a UTC timestamp,
        when the file's first rows show one strict ISO-8601 layout, else text; a
        tuple of values: one of them exactly, as an ENUM, which also keeps the sort
        small: stored as text again once sorted), so a value it cannot read in that
        type stops the load. The load is optimistic:
        it raises ``NotClean`` (and writes nothing) as soon as a row is broken, a
        ``clean`` column would need cleaning (edge whitespace), or the reader
        cannot parse the file the strict RFC 4180 way; callers then take the
        staged path, which reports each problem with its line. Only columns whose
        text is stored as given need to be in ``clean``: ``build``'s rules must
        already break a row where whitespace changes the meaning of a typed value.
        Run it inside a transaction: a failed load's rollback removes its traces.
        """
        header = _read_header(path)
        types = {c: "VARCHAR" for c in header}
        enums = []
        for c in header:
            kind = typed.get(c)
            if kind == "number":
                types[c] = "DOUBLE"
            elif isinstance(kind, tuple) and kind:
                # ENUM('a', 'b') inside the quoted columns={...} map: quotes doubled twice
                values = ", ".join("''" + _sql_quote(_sql_quote(v)) + "''" for v in kind)
                types[c] = f"ENUM({values})"
                enums.append(c)
        ts_cols = [c for c in header if typed.get(c) == "timestamp"]
        layout = _timestamp_layout(path, header, ts_cols) if ts_cols else None
        options = ""
        if layout is not None:
            fmt, with_offset, ts_typed = layout
            for c in ts_typed:
                types[c] = "TIMESTAMPTZ" if with_offset else "TIMESTAMP"
            options = f", timestampformat='{fmt}'"
        columns = "{" + ", ".join(f"'{_sql_quote(c)}': '{t}'" for c, t in types.items()) + "}"
        reader = (
            f"read_csv('{_sql_quote(str(path))}', header=true, columns={columns}, "
            "auto_detect=false, delim=',', quote='\"', escape='\"', strict_mode=true, "
            f"null_padding=false{options})"
        )
        src = f"__csv_{name}"
        # _line stays null: DuckDB's reader gives no record number, and numbering the
        # records (row_number() OVER (), or WITH ORDINALITY, which DuckDB plans the
        # same way; or a first pass into a table in file order, numbered by rowid)
        # holds the whole read to one thread: the load took 25.6 s with it, 17.6 s
        # without (bench/README.md). Lines matter for the quarantine, and a file with
        # anything to quarantine takes the staged path, which numbers every record.
        # _raw stays null too: a cell that cleaning would change stops the load
        # instead (the guard on the first column, which every load reads).
        edges = " OR ".join(_edge_space(f'"{c}"') for c in header if c in set(clean))
        replace = {
            c: f'CAST("{c}" AS TIMESTAMP)' for c, t in types.items() if t == "TIMESTAMPTZ"
        }
        first = replace.get(header[0], f'"{header[0]}"')
        replace[header[0]] = (
            f"CASE WHEN {edges or 'false'} THEN error('{_NOT_CLEAN}') ELSE {first} END"
        )
        replaced = ", ".join(f'{expr} AS "{c}"' for c, expr in replace.items())
        self._raw.execute(
            f'CREATE OR REPLACE TEMP VIEW "{src}" AS SELECT * REPLACE ({replaced}), '
            f"CAST(NULL AS BIGINT) AS {LINE}, CAST(NULL AS VARCHAR) AS {RAW} "
            f"FROM {reader}"
        )
        ibis_types = {"VARCHAR": "string", "DOUBLE": "float64", "TIMESTAMP": "timestamp",
                      "TIMESTAMPTZ": "timestamp"}
        # an ENUM column reads as text in expressions (DuckDB casts it where needed)
        schema = ibis.schema([
            *((c, "string" if c in enums else ibis_types[types[c]]) for c in header),
            (LINE, "int64"), (RAW, "string"),
        ])
        rows = build(ibis.table(schema, name=src))
        guarded = f'CASE WHEN "_broken" THEN error(\'{_NOT_CLEAN}\') ELSE "{guard}" END'
        order = ", ".join(f'"{c}"' for c in order_by)
        sorted_rows = (
            f'SELECT * EXCLUDE ("_broken") REPLACE ({guarded} AS "{guard}") '
            f"FROM ({self._sql(rows)}) ORDER BY {order}"
        )
        stored = [c for c in enums if c in rows.columns]
        if stored:
            as_text = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in stored)
            sorted_rows = f"SELECT * REPLACE ({as_text}) FROM ({sorted_rows})"
        sql = f'CREATE OR REPLACE TABLE "{name}" AS {sorted_rows}'
        try:
            with _progress(self._raw, on_progress):
                self._raw.execute(sql)
        except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
            # What the file holds (a broken row, a parse or encoding error), not a bug.
            # The failed statement aborted the transaction: its rollback drops the view.
            raise NotClean(str(exc).splitlines()[0]) from None
        self._raw.execute(f'DROP VIEW "{src}"')
        return self.table(name)

    def rename(self, name: str, new_name: str) -> None:
        self._raw.execute(f'ALTER TABLE "{name}" RENAME TO "{new_name}"')

    def rename_column(self, table: str, column: str, new_name: str) -> None:
        self._raw.execute(f'ALTER TABLE "{table}" RENAME COLUMN "{column}" TO "{new_name}"')

    def _open_csv(
        self, path: Path, header: list[str], *, tolerate: bool
    ) -> tuple[pacsv.CSVStreamingReader, list[dict[str, Any]]]:
        ragged: list[dict[str, Any]] = []

        def handler(row: Any) -> str:
            # An exception raised here is swallowed by pyarrow (printed as "Exception
            # ignored"), so the fast path records the row and fails the read instead;
            # callers turn that failure into _RaggedRows.
            ragged.append(
                {
                    "line": row.number,
                    "value": (row.text or "")[:200],
                    "reason": f"row has {row.actual_columns} fields but the header has "
                    f"{row.expected_columns}; fix the quoting or the delimiters of this line",
                }
            )
            return "skip" if tolerate else "error"

        try:
            reader = pacsv.open_csv(
                str(path),
                read_options=pacsv.ReadOptions(
                    column_names=header, skip_rows=1, block_size=_BLOCK, use_threads=not tolerate
                ),
                parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=handler),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in header},
                    # only an empty field is empty: pyarrow's default null markers would
                    # erase values such as "NA" (Namibia), "null" or "nan"
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            if ragged and not tolerate:
                raise _RaggedRows() from None
            raise InputFileError(str(path), _csv_problem(exc)) from None
        return reader, ragged

    def _stage_batches(
        self,
        path: Path,
        name: str,
        reader: pacsv.CSVStreamingReader,
        header: list[str],
        skipped: list[dict[str, Any]],
        on_progress: Progress | None,
        transform: Transform | None,
        clean: Sequence[str],
        *,
        ragged_seen: list[dict[str, Any]] | None = None,
    ) -> ir.Table:
        schema = pa.schema([*(pa.field(c, pa.string()) for c in header), pa.field(LINE, pa.int64())])
        out_schema = clean_schema(schema)
        path_hint = str(path)
        # DuckDB reports an exception raised while it reads the batches as its own
        # error without a cause, so the original is kept here and re-raised.
        failure: list[Exception] = []

        expected = _record_estimate(path) if on_progress else 1

        def batches() -> Iterator[pa.RecordBatch]:
            done = 0
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    if ragged_seen:
                        failure.append(_RaggedRows())
                    else:
                        failure.append(InputFileError(path_hint, _csv_problem(exc)))
                    raise failure[-1] from None
                n = batch.num_rows
                k = np.arange(done, done + n, dtype=np.int64)
                lines = _record_lines(k, sorted(r["line"] for r in skipped if r["line"]))
                done += n
                cols = [batch.column(i) for i in range(batch.num_columns)]
                full = pa.RecordBatch.from_arrays([*cols, pa.array(lines)], schema=schema)
                yield clean_batch(full, clean, out_schema)
                if on_progress:
                    on_progress(min(1.0, done / expected))

        select = self._staging_select("__stage_src", ibis.Schema.from_pyarrow(out_schema), transform)
        rbr = pa.RecordBatchReader.from_batches(out_schema, batches())
        self._raw.register("__stage_src", rbr)
        try:
            self._raw.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {select}')
        except duckdb.InvalidInputException as exc:
            if failure:
                raise failure[0] from None
            raise InputFileError(path_hint, _csv_problem(exc)) from None
        finally:
            self._raw.unregister("__stage_src")
        return self.table(name)

    def _staging_select(
        self, source: str, schema: ibis.Schema, transform: Transform | None
    ) -> str:
        """SQL that reads ``source`` (text columns + _line) through ``transform``."""
        if transform is None:
            return f'SELECT * FROM "{source}"'
        return self._sql(transform(ibis.table(schema, name=source)))

    def stage_parquet(
        self,
        path: Path,
        name: str,
        *,
        transform: Transform | None = None,
        clean: Sequence[str] = (),
    ) -> ir.Table:
        """Stage a Parquet file read as text columns plus ``_line`` (row index + 2)."""
        try:
            cols = pq.read_schema(str(path)).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(str(path), f"not a readable Parquet file ({exc})") from None
        sel = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in cols)
        # a cursor of its own: the main connection writes while this one streams
        cursor = self._raw.cursor()
        try:
            reader = cursor.execute(
                f"SELECT {sel}, CAST(file_row_number + 2 AS BIGINT) AS {LINE} "
                "FROM read_parquet(?, file_row_number=true)",
                [str(path)],
            ).to_arrow_reader()
            return self._stage_reader(reader, name, transform, clean)
        finally:
            cursor.close()

    def stage_arrow(
        self,
        data: pa.Table,
        name: str,
        *,
        transform: Transform | None = None,
        clean: Sequence[str] = (),
    ) -> ir.Table:
        """Stage an Arrow table (text columns and ``_line``)."""
        return self._stage_reader(pa.RecordBatchReader.from_batches(
            data.schema, data.to_batches()), name, transform, clean)

    def _stage_reader(
        self,
        reader: pa.RecordBatchReader,
        name: str,
        transform: Transform | None,
        clean: Sequence[str],
    ) -> ir.Table:
        out_schema = clean_schema(reader.schema)
        cleaned = pa.RecordBatchReader.from_batches(
            out_schema, (clean_batch(b, clean, out_schema) for b in reader)
        )
        select = self._staging_select("__stage_src", ibis.Schema.from_pyarrow(out_schema), transform)
        self._raw.register("__stage_src", cleaned)
        try:
            self._raw.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {select}')
        finally:
            self._raw.unregister("__stage_src")
        return self.table(name)

    # ------------------------------------------------------------------ export
    def export(self, expr: ir.Table, path: Path) -> int:
        """Write ``expr`` to ``path`` (.csv or .parquet by suffix); returns rows written."""
        data = self.backend.to_pyarrow(expr)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".parquet":
            pq.write_table(data, str(path))
        else:
            pacsv.write_csv(_iso_timestamps(data), str(path))
        return data.num_rows


RAW = "_raw"  # JSON {column: text as sent} for the cells cleaning changed, else null


def clean_schema(schema: pa.Schema) -> pa.Schema:
    """Schema of a batch after ``clean_batch``: the input's plus the ``_raw`` column."""
    return pa.schema([*schema, pa.field(RAW, pa.string())])


def clean_batch(batch: pa.RecordBatch, clean: Sequence[str], schema: pa.Schema) -> pa.RecordBatch:
    """Trim the ``clean`` text columns and make empty ones null, vectorised.

    The text as sent of each cell that cleaning changed is kept in ``_raw`` (a
    JSON object per row, null for the many rows cleaning left alone), so a
    report can show exactly what a file held.
    """
    import json

    import pyarrow.compute as pc

    names = batch.schema.names
    arrays = list(batch.columns)
    changed_cols: list[tuple[str, pa.Array, pa.Array]] = []
    for c in clean:
        if c not in names:
            continue
        i = names.index(c)
        orig = arrays[i]
        trimmed = pc.utf8_trim_whitespace(orig)
        arrays[i] = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
        changed = pc.fill_null(pc.not_equal(trimmed, orig), False)
        if pc.any(changed).as_py():
            changed_cols.append((c, orig, changed))
    raw: pa.Array = pa.nulls(batch.num_rows, pa.string())
    if changed_cols:
        rows: dict[int, dict[str, str]] = {}
        for c, orig, changed in changed_cols:
            idx = pc.indices_nonzero(changed).to_pylist()
            for k, value in zip(idx, orig.take(idx).to_pylist(), strict=True):
                rows.setdefault(k, {})[c] = value
        texts: list[str | None] = [None] * batch.num_rows
        for k, d in rows.items():
            texts[k] = json.dumps(d, ensure_ascii=False)
        raw = pa.array(texts, pa.string())
    return pa.RecordBatch.from_arrays([*arrays, raw], schema=schema)


def _iso_timestamps(data: pa.Table) -> pa.Table:
    """Timestamps as ISO-8601 UTC text (2025-03-14T09:30:00Z) for CSV output."""
    import pyarrow.compute as pc

    for i, f in enumerate(data.schema):
        if pa.types.is_timestamp(f.type):
            secs = pc.cast(data.column(i), pa.timestamp("s", f.type.tz), safe=False)
            text = pc.strftime(secs, format="%Y-%m-%dT%H:%M:%SZ")
            data = data.set_column(i, f.name, text)
    return data


def _record_lines(k: np.ndarray, skipped_lines: list[int]) -> np.ndarray:
    """Line numbers of good records ``k`` (0-based) given the lines of skipped rows."""
    base = k + 2
    if not skipped_lines:
        return base
    s = np.asarray(skipped_lines, dtype=np.int64)
    j = np.zeros_like(k)
    for _ in range(len(s) + 1):
        nxt = np.searchsorted(s, base + j, side="right")
        if np.array_equal(nxt, j):
            break
        j = nxt
    return base + j


def _record_estimate(path: Path) -> int:
    """Records in a CSV file, estimated from the line length of its first MiB."""
    with open(path, "rb") as fh:
        sample = fh.read(1 << 20)
    lines = max(1, sample.count(b"\n"))
    return max(1, int(path.stat().st_size / (len(sample) / lines)))


# Strict timestamp layouts the one-pass load lets DuckDB's reader parse: (what the
# first rows' values must look like, strptime format, whether it carries an offset).
_TIMESTAMP_LAYOUTS = (
    (r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", "%Y-%m-%dT%H:%M:%SZ", False),
    (r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}", "%Y-%m-%dT%H:%M:%S", False),
    (r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}", "%Y-%m-%d %H:%M:%S", False),
    (r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:?[0-9]{2}",
     "%Y-%m-%dT%H:%M:%S%z", True),
    (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "%Y-%m-%d", False),
)


def _timestamp_layout(
    path: Path, header: list[str], columns: list[str]
) -> tuple[str, bool, list[str]] | None:
    """The one layout of _TIMESTAMP_LAYOUTS that every value of the file's first rows
    in ``columns`` has, and the columns that fit it (None when there is none)."""
    import re

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        head = fh.read(1 << 16)
    rows = list(csv.reader(io.StringIO(head)))[1:-1][:200]  # the last may be cut short
    samples = {c: [r[i] for r in rows if i < len(r) and r[i]] for i, c in enumerate(header)
               if c in columns}
    for pattern, fmt, with_offset in _TIMESTAMP_LAYOUTS:
        rx = re.compile(pattern)
        fits = [c for c in columns if samples.get(c) and all(rx.fullmatch(v) for v in samples[c])]
        if fits:
            return fmt, with_offset, fits
    return None


def _read_header(path: Path) -> list[str]:
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise InputFileError(str(path), f"cannot be read ({exc.strerror})") from None
    if not head.strip():
        raise InputFileError(str(path), "is empty; a CSV file needs a header row")
    if b"\x00" in head:
        raise InputFileError(str(path), "is not a CSV text file (it holds binary data)")
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        raise InputFileError(
            str(path), "holds JSON, not CSV; export it as CSV with a header row"
        )
    first = head.split(b"\n", 1)[0]
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(
            str(path), "is not UTF-8 text; re-save it as UTF-8 (CSV UTF-8 in Excel)"
        ) from None
    try:
        header = next(csv.reader(io.StringIO(text)))
    except (csv.Error, StopIteration):
        raise InputFileError(str(path), "has no readable CSV header row") from None
    header = [h.strip() for h in header]
    if any(not h for h in header):
        raise InputFileError(str(path), "has an empty column name in its header row")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputFileError(str(path), f"repeats column(s) {', '.join(dupes)} in its header")
    return header


def _csv_problem(exc: Exception) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "UTF8" in msg or "utf-8" in msg.lower() or "utf8" in msg.lower():
        return "is not UTF-8 text; re-save it as UTF-8 (CSV UTF-8 in Excel)"
    return f"is not a readable CSV file ({msg})"


# ------------------------------------------------------------- stored order
@ibis.udf.scalar.builtin(name="hash")
def hash64(value: str) -> ibis.expr.datatypes.UInt64:
    """The engine's 64-bit hash of a text, unsigned (DuckDB ``hash``). Ibis's own
    ``hash()`` casts it to a signed integer through a bit string, which costs more
    than the hash when millions of keys are grouped by it."""


def stored_order(table: ir.Table, column: str = "_row") -> ir.Table | None:
    """``table`` with ``column`` added: each row's position in storage (0, 1, 2, ...),
    or None when the engine cannot give it cheaply.

    Why: a table written sorted (the warehouse ``events``: by hcp_id, ts, event_id)
    keeps its order in storage, and analytics that need each case's order
    (journey paths) can read it instead of sorting. An order-preserving window
    (``row_number() OVER ()``) reads it too but on one thread; DuckDB's ``rowid``
    pseudo-column (Ibis ``Table.rowid()``) is read by every thread of a parallel
    scan. ``rowid`` is the position in storage of a table written in one
    ``CREATE TABLE AS`` or appended to (what :meth:`DuckDBEngine.create` does),
    and stays dense unless rows were deleted, which is checked here with one
    metadata-cheap query (count = max(rowid) + 1): with gaps, positions within a
    case could not be read as ``rowid - first rowid of the case``.

    Only a stored DuckDB table itself qualifies (not a view, a filter, a join or
    an in-memory table), and not one that has a column named ``rowid`` (which
    would hide the pseudo-column) or ``column``.
    """
    op = table.op()
    if not isinstance(op, ops.DatabaseTable) or not isinstance(op.source, IbisDuckDB):
        return None
    if "rowid" in table.columns or column in table.columns:
        return None
    try:
        row = table.rowid()
        shape = op.source.execute(table.aggregate(n=table.count(), top=row.max()))
    except (duckdb.Error, ibis.common.exceptions.IbisError):
        return None  # a view, or a table the engine cannot number
    n, top = int(shape["n"].iloc[0]), shape["top"].iloc[0]
    if n and (top is None or int(top) + 1 != n):
        return None
    return table.mutate(**{column: row})


def rows_in(expr: ir.Table, column: str, values: Sequence[int]) -> pa.Table | None:
    """The rows of ``expr`` whose integer ``column`` is one of ``values``, computed now;
    None when ``expr`` is not on a DuckDB backend.

    Why: journey paths look up a handful of rows by their position in storage
    (the column :func:`stored_order` adds) to spell out activity codes. DuckDB
    turns ``column = ANY(list parameter)`` on a ``rowid`` into a row-id lookup,
    also through a projection, while the ``IN (...)`` list an Ibis ``isin``
    compiles to becomes a join against every row (at 10M rows: 5 ms against 40 ms).
    """
    try:
        backend = expr._find_backend()
    except ibis.common.exceptions.IbisError:
        return None
    if not isinstance(backend, IbisDuckDB):
        return None
    backend._run_pre_execute_hooks(expr)
    sql = str(backend.compile(expr))
    wanted = [int(v) for v in values]
    result = backend.con.execute(f'SELECT * FROM ({sql}) WHERE "{column}" = ANY(?)', [wanted])
    return result.to_arrow_table()
