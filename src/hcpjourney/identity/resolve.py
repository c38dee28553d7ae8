"""Identity resolution for a build: link, cluster, keep hcp_ids stable, record what changed.

Reads ``hcps`` and the previous build's ``identities``; writes

- ``identities`` (record_id, hcp_id): CONTRACT section 4;
- ``identity_pairs``: every scored pair at or above the review floor, with its
  probability and the comparison level of each field (no field values);
- ``identity_events`` (appended): ts, kind (merge, split, new), hcp_id,
  other_hcp_id, record_ids, reason;
- ``identity_model``: the trained model of the latest build (Splink JSON).

Data-steward decisions (``review``) override the model: "match" joins the two
records, "distinct" keeps them in different HCPs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import ibis
import pyarrow as pa
import pyarrow.compute as pc

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import ConfigError
from hcpjourney.identity import clusters, linkage
from hcpjourney.identity.exact import IDENTITIES
from hcpjourney.identity.normalise import INPUT_COLUMNS, linkage_table
from hcpjourney.ingest import eventlog

PAIRS = "identity_pairs"
EVENTS = "identity_events"
MODEL = "identity_model"

DEFAULT_THRESHOLD = 0.9
DEFAULT_REVIEW_LOW = 0.5
DEFAULT_REVIEW_HIGH = 0.95

EVENT_SCHEMA = pa.schema([
    ("ts", pa.timestamp("us")),
    ("kind", pa.string()),
    ("hcp_id", pa.string()),
    ("other_hcp_id", pa.string()),
    ("record_ids", pa.list_(pa.string())),
    ("reason", pa.string()),
])


@dataclass(frozen=True)
class Thresholds:
    """Match threshold and the review band [review_low, review_high).

    Pairs at or above ``match`` link; pairs inside the band go to the review
    queue (the band usually straddles the threshold: links the model is not sure
    of, and near misses).
    """

    match: float = DEFAULT_THRESHOLD
    review_low: float = DEFAULT_REVIEW_LOW
    review_high: float = DEFAULT_REVIEW_HIGH

    @classmethod
    def from_settings(cls, identity: dict[str, object], where: str = "hcpj.toml") -> Thresholds:
        vals: dict[str, float] = {}
        for key, default in (("match_threshold", DEFAULT_THRESHOLD),
                             ("review_low", DEFAULT_REVIEW_LOW),
                             ("review_high", None)):
            raw = identity.get(key, default)
            if raw is None:
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < 1:
                raise ConfigError(f"{where}: [identity] {key} must be a number between 0 and 1")
            vals[key] = float(raw)
        match = vals["match_threshold"]
        low = vals["review_low"]
        high = vals.get("review_high", max(match, DEFAULT_REVIEW_HIGH))
        if not low <= match <= high:
            raise ConfigError(
                f"{where}: [identity] needs review_low <= match_threshold <= review_high "
                f"(now {low} / {match} / {high})"
            )
        return cls(match=match, review_low=low, review_high=high)


@dataclass(frozen=True)
class Decision:
    """A data steward's verdict on a pair of records."""

    record_id_l: str
    record_id_r: str
    decision: str  # match | distinct


@dataclass
class ResolveSummary:
    records: int
    hcps: int
    pairs_scored: int
    pairs_linked: int
    review_pairs: int
    events: dict[str, int] = field(default_factory=dict)
    refused_npi: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def pair_id(a: str, b: str) -> str:
    """Stable id of an unordered pair of records."""
    lo, hi = sorted((a, b))
    return "P" + hashlib.sha256(f"{lo}\x1f{hi}".encode()).hexdigest()[:12]


def _previous(engine: Engine) -> dict[str, str]:
    if not engine.has_table(IDENTITIES):
        return {}
    t = engine.to_pyarrow(engine.table(IDENTITIES).select("record_id", "hcp_id"))
    return dict(zip(t.column("record_id").to_pylist(), t.column("hcp_id").to_pylist(), strict=True))


def _history(engine: Engine) -> tuple[dict[str, int], set[str]]:
    """(age rank of every hcp_id ever issued, all ids ever issued) from identity_events."""
    if not engine.has_table(EVENTS):
        return {}, set()
    ev = engine.table(EVENTS)
    born = ev.filter(ev.kind.isin(["new", "split"])).group_by("hcp_id").aggregate(ts=ev.ts.min())
    t = engine.to_pyarrow(born.order_by(["ts", "hcp_id"]))
    age = {h: i for i, h in enumerate(t.column("hcp_id").to_pylist())}
    ids = engine.to_pyarrow(ev.select("hcp_id").distinct()).column("hcp_id").to_pylist()
    others = engine.to_pyarrow(
        ev.filter(ev.other_hcp_id.notnull()).select("other_hcp_id").distinct()
    ).column("other_hcp_id").to_pylist()
    return age, set(ids) | set(others)


def resolve(
    engine: Engine,
    thresholds: Thresholds = Thresholds(),
    decisions: Sequence[Decision] = (),
    *,
    now: datetime | None = None,
) -> ResolveSummary:
    """Resolve identities of every hcps record; writes the tables named in the module doc."""
    import time

    t0 = time.perf_counter()
    hcps = engine.table(schemas.HCPS.name)
    raw = engine.to_pyarrow(hcps.select(*INPUT_COLUMNS).order_by("record_id"))
    raw_sources = raw.select(["record_id", "source"])
    data = linkage_table(raw)
    del raw
    t_norm = time.perf_counter() - t0
    floor = min(thresholds.review_low, thresholds.match)
    result = linkage.score(engine, data, floor=floor)
    t0 = time.perf_counter()
    pairs = _without_process_cases(result.pairs, raw_sources)
    record_ids = data.column("record_id").combine_chunks()
    latest: dict[tuple[str, str], str] = {}
    for d in decisions:  # in decision order: the latest per pair wins
        latest[tuple(sorted((d.record_id_l, d.record_id_r)))] = d.decision  # type: ignore[index]
    must = [k for k, v in latest.items() if v == "match"]
    cannot = [k for k, v in latest.items() if v == "distinct"]
    clustering = clusters.cluster(record_ids, data.column("npi").combine_chunks(), pairs,
                                  thresholds.match, must_link=must, cannot_link=cannot)
    previous = _previous(engine)
    age, issued = _history(engine)
    assignment = clusters.assign_ids(clustering, previous, age=age, taken=issued)
    t_cluster = time.perf_counter() - t0

    ids = pa.table({"record_id": record_ids, "hcp_id": assignment.hcp_ids})
    engine.create(IDENTITIES, ibis.memtable(ids), order_by=["hcp_id", "record_id"])
    _write_pairs(engine, pairs)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    _append_events(engine, assignment.events, stamp)
    _write_model(engine, result.model, thresholds, stamp, data.num_rows)
    n_linked = int(pc.sum(pc.greater_equal(pairs.column("match_probability"),
                                           thresholds.match)).as_py() or 0)
    in_band = pc.and_(
        pc.greater_equal(pairs.column("match_probability"), thresholds.review_low),
        pc.less(pairs.column("match_probability"), thresholds.review_high),
    )
    kinds: dict[str, int] = {}
    for e in assignment.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    return ResolveSummary(
        records=data.num_rows,
        hcps=len(set(assignment.hcp_ids.to_pylist())),
        pairs_scored=pairs.num_rows,
        pairs_linked=n_linked,
        review_pairs=int(pc.sum(in_band).as_py() or 0),
        events=kinds,
        refused_npi=clustering.refused_npi,
        seconds={"normalise": t_norm, **result.seconds, "cluster": t_cluster},
    )


# Records of this source are cases of a process log read by `hcpj ingest --format
# xes|eventlog` (their last_name is the case id): never one person with another record.
PROCESS_CASE_SOURCE = eventlog.SOURCE


def _without_process_cases(pairs: pa.Table, sources: pa.Table) -> pa.Table:
    """``pairs`` without those that involve an event-log case."""
    is_case = pc.equal(sources.column("source"), PROCESS_CASE_SOURCE)
    cases = pc.filter(sources.column("record_id"), is_case)
    if len(cases) == 0:
        return pairs
    keep = pc.invert(pc.or_(pc.is_in(pairs.column("record_id_l"), value_set=cases),
                            pc.is_in(pairs.column("record_id_r"), value_set=cases)))
    return pairs.filter(keep)


def _write_pairs(engine: Engine, pairs: pa.Table) -> None:
    ids = [pair_id(a, b) for a, b in zip(pairs.column("record_id_l").to_pylist(),
                                         pairs.column("record_id_r").to_pylist(), strict=True)]
    out = pairs.add_column(0, "pair_id", pa.array(ids, pa.string()))
    engine.create(PAIRS, ibis.memtable(out), order_by=["pair_id"])


def _append_events(engine: Engine, events: Sequence[clusters.Event], ts: datetime) -> None:
    if not engine.has_table(EVENTS):
        engine.create_empty(EVENTS, ibis.Schema.from_pyarrow(EVENT_SCHEMA))
    if not events:
        return
    rows = pa.table({
        "ts": pa.array([ts] * len(events), pa.timestamp("us")),
        "kind": [e.kind for e in events],
        "hcp_id": [e.hcp_id for e in events],
        "other_hcp_id": pa.array([e.other_hcp_id for e in events], pa.string()),
        "record_ids": pa.array([e.record_ids for e in events], pa.list_(pa.string())),
        "reason": [e.reason for e in events],
    }, schema=EVENT_SCHEMA)
    engine.insert(EVENTS, ibis.memtable(rows))


def _write_model(engine: Engine, model: dict[str, object], th: Thresholds, ts: datetime,
                 n: int) -> None:
    row = pa.table({
        "built_at": pa.array([ts], pa.timestamp("us")),
        "records": pa.array([n], pa.int64()),
        "match_threshold": [th.match],
        "review_low": [th.review_low],
        "review_high": [th.review_high],
        "model_json": [json.dumps(model, sort_keys=True)],
    })
    engine.create(MODEL, ibis.memtable(row))

