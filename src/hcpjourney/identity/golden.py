"""Golden records: one surviving value per HCP and field, with per-field lineage.

Survivorship, applied to the records an HCP's identity groups together:

1. Records are ranked once per HCP: trusted source first (``[identity]
   source_trust`` in hcpj.toml, case-insensitive; sources missing from the list
   come after every listed one), then the most recent ``updated_at`` (records
   without one last), then ``record_id`` so the ranking is total and the result
   deterministic.
2. For each field, the value of the best-ranked record that has a non-empty
   value wins (text is trimmed; an empty or blank text is no value), so a null
   in the trusted source falls through to the next record.
3. ``npi`` only survives from a checksum-valid value (the contract quarantines
   bad NPIs on ingest; the check is repeated here as a guard).
4. ``specialty``: a CMS taxonomy path "A|B|C" is shown as its last segment
   ("C"); the raw path stays in the lineage (``source_value``).
5. ``decile`` follows the same rule as every other field (trusted, most recent
   vendor value) rather than the maximum over records: a decile is a vendor's
   point-in-time ranking, and a maximum would keep an HCP in a high decile on
   the strength of a stale record forever.
6. ``is_kol`` is true when any record says true (false when records only say
   false); its lineage names the best-ranked record holding the surviving value.

Tables written:

``golden``: hcp_id, the GOLDEN_FIELDS, n_records, n_sources and sources (the
distinct source names, trimmed and lower-cased, sorted and comma-separated),
last_updated_at.

``golden_lineage``: hcp_id, field, value (the golden value, as text),
record_id and source (the record it came from), source_value (the record's own
text, e.g. the raw taxonomy path), updated_at (of that record), n_distinct (how
many different non-empty values the HCP's records hold for the field; above 1
means the sources disagree). Fields no record holds have no lineage row.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from hcpjourney.config import CONFIG_FILE, Workspace
from hcpjourney.contract import schemas
from hcpjourney.contract.validate import npi_is_valid
from hcpjourney.engine import Engine
from hcpjourney.errors import ConfigError

GOLDEN = "golden"
GOLDEN_LINEAGE = "golden_lineage"
IDENTITIES = "identities"

DEFAULT_SOURCE_TRUST: tuple[str, ...] = ("crm", "open_payments", "events", "survey", "web")

GOLDEN_FIELDS: tuple[str, ...] = (
    "npi", "first_name", "middle_name", "last_name", "credential", "profession", "specialty",
    "organization", "address_line1", "city", "state", "postal_code", "country", "email",
    "phone", "decile", "is_kol",
)
TEXT_FIELDS = tuple(f for f in GOLDEN_FIELDS if schemas.HCPS.column(f).type == schemas.TEXT)

LINEAGE_SCHEMA = ibis.schema(
    [
        ("hcp_id", "string"), ("field", "string"), ("value", "string"), ("record_id", "string"),
        ("source", "string"), ("source_value", "string"), ("updated_at", "timestamp(6)"),
        ("n_distinct", "int64"),
    ]
)

RANK = "survivorship_rank"  # column name of survivorship_rank() in outputs


def source_trust(ws: Workspace) -> tuple[str, ...]:
    """The workspace's trusted source order (``[identity] source_trust``), validated."""
    raw = ws.setting("identity", "source_trust", list(DEFAULT_SOURCE_TRUST))
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x.strip() for x in raw):
        raise ConfigError(
            f"{ws.root / CONFIG_FILE}: [identity] source_trust must be a non-empty list of source "
            'names, most trusted first, e.g. ["crm", "open_payments", "events", "survey", "web"]'
        )
    return tuple(dict.fromkeys(x.strip().lower() for x in raw))


def identities(engine: Engine) -> ir.Table:
    """The (record_id, hcp_id) pairs of the identities table (other columns left out)."""
    return engine.table(IDENTITIES).select("record_id", "hcp_id")


def trust_rank(source: ir.StringValue, trust: Sequence[str]) -> ir.IntegerValue:
    """Position of ``source`` in ``trust`` (case-insensitive); unknown sources rank last."""
    key = source.strip().lower()
    rank: ir.IntegerValue = ibis.literal(len(trust), "int64")
    for i, name in reversed(list(enumerate(trust))):
        rank = ibis.ifelse(key == name, ibis.literal(i, "int64"), rank)
    return rank


def display_specialty(raw: ir.StringValue) -> ir.StringValue:
    """The last segment of a CMS taxonomy path ("A|B|C" -> "C"); other text unchanged."""
    return raw.re_replace(r"^.*\|", "").strip().nullif("")


def _clean(v: ir.StringValue) -> ir.StringValue:
    return v.strip().nullif("")


def ranked_records(engine: Engine, trust: Sequence[str], *, hcp_id: str | None = None) -> ir.Table:
    """The HCP records joined to their hcp_id, cleaned, with their survivorship order.

    ``_key`` orders all records by (hcp_id, survivorship rank): within an HCP, a
    smaller key is a better record (see :func:`survivorship_order`). Text fields
    are trimmed (blank -> null), an invalid NPI is null, and ``specialty_raw``
    keeps the specialty as sent. ``hcp_id`` limits the result to one HCP's records.
    """
    hcps = engine.table(schemas.HCPS.name)
    ids = identities(engine)
    if hcp_id is not None:
        ids = ids.filter(ids.hcp_id == hcp_id)
    recs = hcps.inner_join(ids, "record_id")
    cleaned = {f: _clean(recs[f]) for f in TEXT_FIELDS}
    npi = cleaned["npi"]
    cleaned["npi"] = ibis.ifelse(npi_is_valid(npi), npi, ibis.null("string"))
    cleaned["specialty"] = display_specialty(cleaned["specialty"])
    base = recs.select(
        "hcp_id",
        "record_id",
        "source",
        "updated_at",
        "decile",
        "is_kol",
        specialty_raw=_clean(recs.specialty),
        **cleaned,
    )
    order = survivorship_order(base, trust)
    return base.mutate(_key=ibis.row_number().over(order_by=["hcp_id", *order]))


def survivorship_order(recs: ir.Table, trust: Sequence[str]) -> list[ir.Value]:
    """Best record first: trusted source, then latest updated_at, then record_id."""
    return [
        trust_rank(recs.source, trust),
        recs.updated_at.desc(nulls_first=False),
        recs.record_id,
    ]


def survivorship_rank(recs: ir.Table, trust: Sequence[str]) -> ir.IntegerValue:
    """0 for an HCP's best record, 1 for the next, ... (see :func:`survivorship_order`)."""
    w = ibis.window(group_by="hcp_id", order_by=survivorship_order(recs, trust))
    return ibis.row_number().over(w)


def build_golden(engine: Engine, *, trust: Sequence[str] = DEFAULT_SOURCE_TRUST) -> ir.Table:
    """Write and return ``golden`` and ``golden_lineage`` from ``identities`` and ``hcps``.

    Plain aggregates and integer-key joins only (no ordered aggregates), so the
    work stays close to linear: the records get one global survivorship key, each
    field's winner is the smallest key holding a value, and winners are joined
    back to their records.
    """
    recs = engine.create("_golden_records", ranked_records(engine, trust), temp=True)
    k = recs._key
    metrics: dict[str, ir.Value] = {}
    for f in GOLDEN_FIELDS:
        col = recs[f]
        best = k.min(where=col.notnull())
        if f == "is_kol":
            best = k.min(where=col).coalesce(best)  # any true wins
        metrics[f"_win_{f}"] = best
        metrics[f"_nd_{f}"] = col.nunique()
    metrics["n_records"] = recs.count()
    src = recs.source.strip().lower()
    metrics["n_sources"] = src.nunique()
    metrics["sources"] = src.collect(distinct=True).sort().join(",")
    metrics["last_updated_at"] = recs.updated_at.max()
    agg = engine.create("_golden_agg", recs.group_by("hcp_id").aggregate(**metrics), temp=True)

    # golden: each field taken from its winning record
    golden = agg
    for f in GOLDEN_FIELDS:
        pick = recs.select(**{f"_win_{f}": recs._key, f: recs[f]})
        golden = golden.left_join(pick, f"_win_{f}")
    golden = golden.select(
        "hcp_id", *GOLDEN_FIELDS, "n_records", "n_sources", "sources", "last_updated_at"
    )
    out = engine.create(GOLDEN, golden, order_by=["hcp_id"])

    # lineage: one row per (HCP, field) that some record holds
    winners = ibis.union(
        *(
            agg.filter(agg[f"_win_{f}"].notnull()).select(
                "hcp_id",
                field=ibis.literal(f),
                n_distinct=agg[f"_nd_{f}"].cast("int64"),
                _key=agg[f"_win_{f}"],
            )
            for f in GOLDEN_FIELDS
        )
    )
    won = winners.inner_join(recs.drop("hcp_id"), "_key")
    value = ibis.cases(*((won.field == f, won[f].cast("string")) for f in GOLDEN_FIELDS))
    lineage = won.select(
        "hcp_id",
        "field",
        value=value,
        record_id=won.record_id,
        source=won.source,
        source_value=ibis.ifelse(won.field == "specialty", won.specialty_raw, value),
        updated_at=won.updated_at,
        n_distinct=won.n_distinct,
    ).cast(LINEAGE_SCHEMA)
    engine.create(GOLDEN_LINEAGE, lineage, order_by=["hcp_id", "field"])
    for tmp in ("_golden_agg", "_golden_records"):
        engine.drop(tmp)
    return out
