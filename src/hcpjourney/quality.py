"""The data-quality report: how complete, valid, fresh and consistent the loaded data is.

Every metric is an Ibis expression over the warehouse tables, run inside the
engine; only the small aggregated results come back as Arrow tables. The
report never carries personal data (names, emails, phones): only counts and
shares, keyed by table, column, source and reason.

Sections (each a table in :class:`QualityReport`):

- ``completeness``: share of non-null values per contract column, per source
  for ``hcps`` and ``interactions`` (an interaction counts for the source of the
  record it references), and over all rows for every table (source ``""``).
- ``npi``: NPI coverage, validity, distinct NPIs and NPIs held by more than one
  record, per source; the overall row also counts NPIs quarantined as invalid.
- ``quarantine``: quarantined rows by table, column and reason, most frequent first.
- ``stale``: records whose ``updated_at`` is older than ``[quality]
  stale_after_days`` before ``as_of``, and records without ``updated_at``.
- ``channel_volume``: interactions per channel and month (YYYY-MM).
- ``consent_gaps``: records with interactions but no consent row, in all and
  per purpose.
- ``likely_duplicates``: groups of records from different sources that share
  an NPI or a normalised email, overall and per pair of sources.

In every per-source section the row with source ``""`` is over all sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hcpjourney.config import Workspace
from hcpjourney.contract import schemas, validate
from hcpjourney.contract.schemas import TableSpec
from hcpjourney.errors import ConfigError
from hcpjourney.ingest.loader import QUARANTINE, QUARANTINE_SCHEMA

if TYPE_CHECKING:
    from hcpjourney.engine import Engine

__all__ = ["LONG_SCHEMA", "SECTIONS", "QualityReport", "quality_report"]

SECTIONS: tuple[str, ...] = (
    "completeness",
    "npi",
    "quarantine",
    "stale",
    "channel_volume",
    "consent_gaps",
    "likely_duplicates",
)
LONG_SCHEMA = pa.schema(
    [
        ("section", pa.string()),
        ("source", pa.string()),
        ("column", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
    ]
)

ALL = ""  # the source of a row computed over all sources
UNKNOWN_SOURCE = "(unknown record)"  # interactions whose record is not in hcps
RENDER_ROWS = 10

_SRC = "_src"  # working name of the source column (contract tables may have a `source`)
_DUP_MATCHES: tuple[str, ...] = ("npi", "email", "npi_or_email")

_TITLES = {
    "completeness": "Completeness: share of non-null values (lowest first)",
    "npi": "NPI coverage and validity",
    "quarantine": "Quarantined rows by table, column and reason",
    "stale": "Stale records",
    "channel_volume": "Interactions per channel and month (latest first)",
    "consent_gaps": "Records with interactions but no consent row",
    "likely_duplicates": "Likely duplicates across sources (shared NPI or email)",
}


# --------------------------------------------------------------------------- report
@dataclass(frozen=True)
class QualityReport:
    """One Arrow table per section; ``to_long`` stacks them for export."""

    as_of: datetime
    stale_after_days: int
    completeness: pa.Table
    npi: pa.Table
    quarantine: pa.Table
    stale: pa.Table
    channel_volume: pa.Table
    consent_gaps: pa.Table
    likely_duplicates: pa.Table

    def sections(self) -> dict[str, pa.Table]:
        return {name: getattr(self, name) for name in SECTIONS}

    def to_long(self) -> pa.Table:
        """All sections as one table: section, source, column, metric, value (float64).

        Facts that do not exist (a share of zero rows, a per-source count that
        is only known overall) are left out rather than written as empty values.
        """
        parts: list[pa.Table] = []
        c = self.completeness
        qualified = _join_names(c["table"], c["column"])
        parts += _melt("completeness", c, c["source"], qualified,
                       {"non_null": "non_null", "non_null_share": "share"})
        per_table = c.group_by(["table", "source"], use_threads=False).aggregate(
            [("records", "max")]
        )
        parts += _melt("completeness", per_table, per_table["source"], per_table["table"],
                       {"records": "records_max"})

        n = self.npi
        parts += _melt("npi", n, n["source"], _const("npi", n.num_rows),
                       {m: m for m in n.column_names if m != "source"})

        q = self.quarantine
        parts += _melt("quarantine", q, _const(ALL, q.num_rows),
                       _join_names(q["table"], q["column"]), {"": "rows"},
                       metric_values=q["reason"])

        s = self.stale
        parts += _melt("stale", s, s["source"], _const("updated_at", s.num_rows),
                       {m: m for m in s.column_names if m != "source"})
        parts.append(
            pa.table(
                {
                    "section": ["stale"], "source": [ALL], "column": ["updated_at"],
                    "metric": ["stale_after_days"], "value": [float(self.stale_after_days)],
                },
                schema=LONG_SCHEMA,
            )
        )

        v = self.channel_volume
        parts += _melt("channel_volume", v, _const(ALL, v.num_rows), v["channel"],
                       {"": "interactions"}, metric_values=v["month"])

        g = self.consent_gaps
        parts += _melt("consent_gaps", g, g["source"], _const("", g.num_rows),
                       {"records_with_interactions": "records_with_interactions",
                        "no_consent": "no_consent", "no_consent_share": "no_consent_share"})
        for purpose in schemas.CONSENT_PURPOSES:
            parts += _melt("consent_gaps", g, g["source"], _const(purpose, g.num_rows),
                           {"no_consent": f"no_{purpose}_consent",
                            "no_consent_share": f"no_{purpose}_consent_share"})

        d = self.likely_duplicates
        parts += _melt("likely_duplicates", d, d["sources"], d["match"],
                       {"groups": "groups", "records": "records"})
        return pa.concat_tables(parts) if parts else LONG_SCHEMA.empty_table()

    def render(self, console: Console) -> None:
        """Print each section as a table; long sections show their first rows."""
        console.print(
            Text(
                f"Data quality as of {self.as_of:%Y-%m-%d %H:%M} UTC "
                f"(stale after {self.stale_after_days} days)",
                style="bold",
            )
        )
        for name in SECTIONS:
            data = self._display(name)
            title = _TITLES[name]
            if name == "stale":
                title += f": updated_at older than {self.stale_after_days} days"
            table = Table(title=Text(title), title_justify="left")
            for col in data.column_names:
                numeric = pa.types.is_integer(data.schema.field(col).type) or pa.types.is_floating(
                    data.schema.field(col).type
                )
                table.add_column(Text(col), justify="right" if numeric else "left")
            shown = data.slice(0, RENDER_ROWS)
            floats = {f.name for f in data.schema if pa.types.is_floating(f.type)}
            for row in shown.to_pylist():
                table.add_row(*(_cell(k, v, k in floats) for k, v in row.items()))
            if data.num_rows == 0:
                table.caption = "no rows"
            elif data.num_rows > RENDER_ROWS:
                table.caption = (
                    f"first {RENDER_ROWS} of {data.num_rows} rows; "
                    "`hcpj export quality` writes them all"
                )
            console.print(table)

    def _display(self, name: str) -> pa.Table:
        data: pa.Table = getattr(self, name)
        if name == "completeness":
            return data.sort_by([("share", "ascending"), ("table", "ascending"),
                                 ("source", "ascending")])
        if name == "channel_volume":
            return data.sort_by([("month", "descending"), ("interactions", "descending"),
                                 ("channel", "ascending")])
        return data


def _cell(name: str, value: Any, is_float: bool) -> Text:
    if value is None:
        return Text("")
    if name in ("source", "sources") and value == ALL:
        return Text("(all)", style="italic")
    if is_float:
        return Text(f"{value:.1%}")
    if isinstance(value, int):
        return Text(f"{value:,}")
    return Text(str(value))


def _const(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


def _join_names(table: pa.ChunkedArray, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``table.column``, or ``table`` alone where the column is empty."""
    col = pc.fill_null(column, "")
    joined = pc.binary_join_element_wise(table, col, ".")
    return pc.if_else(pc.equal(col, ""), table, joined)


def _melt(
    section: str,
    data: pa.Table,
    source: pa.Array | pa.ChunkedArray,
    column: pa.Array | pa.ChunkedArray,
    metrics: dict[str, str],
    *,
    metric_values: pa.ChunkedArray | None = None,
) -> list[pa.Table]:
    """Long rows of ``data``: one per row and metric (``metric name -> data column``).

    With ``metric_values`` the metric name comes from that column instead.
    Rows whose value is null are dropped.
    """
    n = data.num_rows
    out = []
    for metric, col in metrics.items():
        value = pc.cast(data[col], pa.float64())
        part = pa.table(
            {
                "section": _const(section, n),
                "source": source,
                "column": column,
                "metric": metric_values if metric_values is not None else _const(metric, n),
                "value": value,
            },
            schema=LONG_SCHEMA,
        )
        out.append(part.filter(pc.is_valid(value)))
    return out


# --------------------------------------------------------------------------- compute
def quality_report(
    engine: Engine, ws: Workspace, *, as_of: datetime | None = None
) -> QualityReport:
    """Compute the data-quality report of the workspace's warehouse.

    ``as_of`` (default: now) is the moment staleness is measured from; a naive
    datetime is taken as UTC.
    """
    if as_of is None:
        as_of = datetime.now(UTC)
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    days = _stale_after_days(ws)

    tables = {spec.name: _input_table(engine, spec) for spec in schemas.TABLES}
    quarantine = _table_or_empty(engine, QUARANTINE, QUARANTINE_SCHEMA)
    hcps = tables[schemas.HCPS.name]
    interactions = tables[schemas.INTERACTIONS.name]
    consents = tables[schemas.CONSENTS.name]

    exprs: dict[str, ir.Table] = {
        "completeness": _completeness(tables),
        "npi": _npi(hcps, quarantine),
        "quarantine": _quarantine(quarantine),
        "stale": _stale(hcps, as_of - timedelta(days=days)),
        "channel_volume": _channel_volume(interactions),
        "consent_gaps": _consent_gaps(hcps, interactions, consents),
        "likely_duplicates": _likely_duplicates(hcps),
    }
    results = {name: engine.to_pyarrow(expr) for name, expr in exprs.items()}
    return QualityReport(as_of=as_of, stale_after_days=days, **results)


def _stale_after_days(ws: Workspace) -> int:
    raw = ws.setting("quality", "stale_after_days", 365)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise ConfigError(
            f"{ws.root / 'hcpj.toml'}: [quality] stale_after_days must be a number of days "
            f"(0 or more), not {raw!r}"
        )
    return int(raw)


def _table_or_empty(engine: Engine, name: str, schema: ibis.Schema) -> ir.Table:
    if engine.has_table(name):
        return engine.table(name)
    return ibis.memtable(schema.to_pyarrow().empty_table())


def _input_table(engine: Engine, spec: TableSpec) -> ir.Table:
    return _table_or_empty(engine, spec.name, validate.stored_schema(spec))


def _share(part: ir.IntegerValue, whole: ir.IntegerValue) -> ir.FloatingValue:
    """part / whole, null where whole is 0."""
    return (part / whole.nullif(0)).cast("float64")


Metrics = Callable[[ir.Table], dict[str, ir.Value]]


def _by_source(t: ir.Table, metrics: Metrics) -> ir.Table:
    """``metrics`` per ``_src`` of ``t``, plus one row over all of ``t`` (``_src`` = "").

    The overall row exists even when ``t`` is empty.
    """
    grouped = t.group_by(_SRC).aggregate(**metrics(t))
    overall = t.aggregate(**metrics(t)).mutate(**{_SRC: ibis.literal(ALL)})
    return grouped.union(overall.select(*grouped.columns), distinct=False)


def _hcps_by_source(hcps: ir.Table) -> ir.Table:
    return hcps.mutate(**{_SRC: hcps.source})


def _with_record_source(t: ir.Table, hcps: ir.Table) -> ir.Table:
    """``t`` with ``_src``: the source of the hcps record its ``record_id`` names."""
    src = hcps.select(_rid=hcps.record_id, _hsrc=hcps.source)
    j = t.left_join(src, t.record_id == src._rid)
    return j.select(*t.columns, **{_SRC: j._hsrc.fill_null(UNKNOWN_SOURCE)})


# 1. completeness -------------------------------------------------------------------
def _completeness(tables: dict[str, ir.Table]) -> ir.Table:
    hcps = tables[schemas.HCPS.name]
    parts = []
    for order, spec in enumerate(schemas.TABLES):
        t = tables[spec.name]
        names = spec.names

        def metrics(x: ir.Table, names: list[str] = names) -> dict[str, ir.Value]:
            return {"_records": x.count(), **{c: x[c].count() for c in names}}

        if spec.name == schemas.HCPS.name:
            agg = _by_source(_hcps_by_source(t), metrics)
        elif spec.name == schemas.INTERACTIONS.name:
            agg = _by_source(_with_record_source(t, hcps), metrics)
        else:
            agg = t.aggregate(**metrics(t)).mutate(**{_SRC: ibis.literal(ALL)})
        long = agg.pivot_longer(names, names_to="column", values_to="non_null")
        position = ibis.cases(*((long.column == c, i) for i, c in enumerate(names)))
        parts.append(
            long.select(
                table=ibis.literal(spec.name),
                source=long[_SRC],
                column=long.column,
                records=long._records,
                non_null=long.non_null,
                share=_share(long.non_null, long._records),
                _t=ibis.literal(order),
                _c=position,
            )
        )
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return out.order_by(["_t", "source", "_c"]).drop("_t", "_c")


# 2. npi ----------------------------------------------------------------------------
def _npi(hcps: ir.Table, quarantine: ir.Table) -> ir.Table:
    h = _hcps_by_source(hcps)

    def metrics(x: ir.Table) -> dict[str, ir.Value]:
        return {
            "records": x.count(),
            "with_npi": x.npi.count(),
            "valid": x.count(where=validate.npi_is_valid(x.npi)),
            "distinct_npis": x.npi.nunique(),
        }

    base = _by_source(h, metrics)

    # NPIs held by more than one record within the row's scope (a source, or all)
    has = h.filter(h.npi.notnull())
    per_source = has.group_by([_SRC, "npi"]).aggregate(_n=has.count())
    per_all = has.group_by("npi").aggregate(_n=has.count()).mutate(**{_SRC: ibis.literal(ALL)})
    per_npi = per_source.union(per_all.select(*per_source.columns), distinct=False)
    multi = per_npi.filter(per_npi._n > 1)
    shared = multi.group_by(_SRC).aggregate(
        shared_npis=multi.count(), records_sharing_npi=multi._n.sum()
    ).rename(_ssrc=_SRC)

    q = quarantine.filter(
        (quarantine.table == schemas.HCPS.name) & (quarantine.column == "npi")
    )
    quarantined = q.aggregate(quarantined_npis=q.count()).mutate(_qsrc=ibis.literal(ALL))

    j = base.left_join(shared, base[_SRC] == shared._ssrc).left_join(
        quarantined, base[_SRC] == quarantined._qsrc
    )
    shared_npis = j.shared_npis.fill_null(0)
    return j.select(
        source=j[_SRC],
        records=j.records,
        with_npi=j.with_npi,
        coverage=_share(j.with_npi, j.records),
        valid=j.valid,
        valid_share=_share(j.valid, j.with_npi),
        distinct_npis=j.distinct_npis,
        shared_npis=shared_npis,
        records_sharing_npi=j.records_sharing_npi.fill_null(0).cast("int64"),
        quarantined_npis=j.quarantined_npis,
        received_valid_share=_share(j.valid, j.with_npi + j.quarantined_npis),
    ).order_by("source")


# 3. quarantine ---------------------------------------------------------------------
def _quarantine(quarantine: ir.Table) -> ir.Table:
    q = quarantine.mutate(column=quarantine.column.fill_null(""))
    out = q.group_by(["table", "column", "reason"]).aggregate(rows=q.count())
    return out.order_by([out.rows.desc(), "table", "column", "reason"])


# 4. stale --------------------------------------------------------------------------
def _stale(hcps: ir.Table, cutoff: datetime) -> ir.Table:
    limit = ibis.literal(cutoff, type="timestamp")

    def metrics(x: ir.Table) -> dict[str, ir.Value]:
        return {
            "records": x.count(),
            "stale": x.count(where=x.updated_at < limit),
            "no_updated_at": x.count(where=x.updated_at.isnull()),
        }

    t = _by_source(_hcps_by_source(hcps), metrics)
    return t.select(
        source=t[_SRC],
        records=t.records,
        stale=t.stale,
        stale_share=_share(t.stale, t.records),
        no_updated_at=t.no_updated_at,
        no_updated_at_share=_share(t.no_updated_at, t.records),
    ).order_by("source")


# 5. channel volume -----------------------------------------------------------------
def _channel_volume(interactions: ir.Table) -> ir.Table:
    t = interactions
    out = t.group_by(month=t.ts.strftime("%Y-%m"), channel=t.channel).aggregate(
        interactions=t.count()
    )
    return out.order_by(["month", "channel"])


# 6. consent gaps -------------------------------------------------------------------
def _consent_gaps(hcps: ir.Table, interactions: ir.Table, consents: ir.Table) -> ir.Table:
    active = interactions.select("record_id").distinct()
    active = _with_record_source(active, hcps)
    purposes = schemas.CONSENT_PURPOSES
    per_record = consents.group_by(_cid=consents.record_id).aggregate(
        _any=consents.count(),
        **{f"_{p}": consents.count(where=consents.purpose == p) for p in purposes},
    )
    j = active.left_join(per_record, active.record_id == per_record._cid)
    j = j.select(
        _SRC,
        _none=j._any.isnull(),
        **{f"_no_{p}": j[f"_{p}"].fill_null(0) == 0 for p in purposes},
    )

    def metrics(x: ir.Table) -> dict[str, ir.Value]:
        out: dict[str, ir.Value] = {
            "records_with_interactions": x.count(),
            "no_consent": x.count(where=x._none),
        }
        for p in purposes:
            out[f"no_{p}_consent"] = x.count(where=x[f"_no_{p}"])
        return out

    t = _by_source(j, metrics)
    cols: dict[str, ir.Value] = {
        "source": t[_SRC],
        "records_with_interactions": t.records_with_interactions,
        "no_consent": t.no_consent,
        "no_consent_share": _share(t.no_consent, t.records_with_interactions),
    }
    for p in purposes:
        cols[f"no_{p}_consent"] = t[f"no_{p}_consent"]
        cols[f"no_{p}_consent_share"] = _share(
            t[f"no_{p}_consent"], t.records_with_interactions
        )
    return t.select(**cols).order_by("source")


# 7. likely duplicates --------------------------------------------------------------
def _likely_duplicates(hcps: ir.Table) -> ir.Table:
    """Counts of cross-source groups sharing a key; the keys never leave the engine."""
    email = hcps.email.strip().lower().nullif("")
    keyed = {
        "npi": hcps.select("record_id", "source", _key=hcps.npi),
        "email": hcps.select("record_id", "source", _key=email),
    }
    parts = []
    involved = []
    for order, (match, k) in enumerate(keyed.items()):
        k = k.filter(k._key.notnull())
        spread = k.group_by("_key").aggregate(_sources=k.source.nunique())
        cross = spread.filter(spread._sources > 1).select(_gkey=spread._key)
        dup = k.join(cross, k._key == cross._gkey).select("record_id", "source", "_key")
        involved.append(dup.select("record_id"))

        overall = dup.aggregate(groups=dup._key.nunique(), records=dup.record_id.nunique())
        parts.append(overall.select(
            match=ibis.literal(match), sources=ibis.literal(ALL),
            groups=overall.groups, records=overall.records, _m=ibis.literal(order),
        ))

        a = dup.select(_ka=dup._key, _sa=dup.source)
        b = dup.select(_kb=dup._key, _sb=dup.source)
        pairs = (
            a.join(b, [a._ka == b._kb, a._sa < b._sb])
            .select(_pkey=a._ka, _sa=a._sa, _sb=b._sb)
            .distinct()
        )
        members = pairs.join(
            dup,
            [pairs._pkey == dup._key, (dup.source == pairs._sa) | (dup.source == pairs._sb)],
        )
        per_pair = members.group_by(["_sa", "_sb"]).aggregate(
            groups=members._pkey.nunique(), records=members.record_id.nunique()
        )
        parts.append(per_pair.select(
            match=ibis.literal(match), sources=per_pair._sa.concat("+", per_pair._sb),
            groups=per_pair.groups, records=per_pair.records, _m=ibis.literal(order),
        ))

    either = involved[0].union(involved[1], distinct=False)
    both = either.aggregate(records=either.record_id.nunique())
    parts.append(both.select(
        match=ibis.literal(_DUP_MATCHES[2]), sources=ibis.literal(ALL),
        groups=ibis.null("int64"), records=both.records, _m=ibis.literal(len(keyed)),
    ))
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return out.order_by(["_m", "sources"]).drop("_m")
