"""``simulate()``: write a contract data drop plus the hidden truth."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import yaml

from hcpjourney.contract.schemas import (
    ACTIONS,
    BOOL,
    CHANNELS,
    CONSENT_PURPOSES,
    CONSENT_STATUSES,
    CONSENTS,
    CONTENT,
    CONTENT_FORMATS,
    DIRECTIONS,
    FEEDBACK,
    HCPS,
    INT,
    INTERACTIONS,
    NUMBER,
    OUTCOMES,
    QUALITY_DIMENSIONS,
    RELATIONSHIP_KINDS,
    RELATIONSHIPS,
    TEAMS,
    TableSpec,
)
from hcpjourney.simulate import params as P
from hcpjourney.simulate.behaviour import CONSENT_SOURCES, ChunkSimulator
from hcpjourney.simulate.network import Network
from hcpjourney.simulate.population import IdCounters, make_people, make_records
from hcpjourney.simulate.response import PREF_CHANNELS, ResponseModel
from hcpjourney.simulate.world import DAY, World, make_world

CHUNK_SIZE = 2500
TRUTH_DIR = "_truth"
DIGITAL_CONSUMPTION = (("email", "opened"), ("web", "visited"), ("web", "viewed"),
                       ("portal", "visited"), ("portal", "downloaded"))


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate` wrote."""

    n_persons: int
    n_records: int
    counts: dict[str, int]
    out: Path
    seconds: float = 0.0
    funnel: dict[str, int] = field(default_factory=dict)


def journey_template() -> str:
    """Text of the packaged cardiology journey map (CONTRACT section 2)."""
    return resources.files("hcpjourney.simulate").joinpath("journey.yaml").read_text(
        encoding="utf-8")


# ---------------------------------------------------------------------------------------
# arrow helpers
# ---------------------------------------------------------------------------------------

class TsFormat:
    """Fast ISO-8601 UTC formatting (``2025-01-31T17:05:00Z``) through lookup tables."""

    def __init__(self, t0: int, t1: int) -> None:
        self.t0 = t0
        n_days = (t1 - t0) // DAY + 2
        stamps = (np.arange(n_days, dtype=np.int64) * DAY + t0).astype("datetime64[s]")
        days = np.datetime_as_string(stamps, unit="D").astype(object) + "T"
        self.days = pa.array(days, type=pa.string())
        sod = np.arange(DAY)
        self.tod = pa.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in sod],
                            type=pa.string())

    def __call__(self, ts: np.ndarray) -> pa.Array:
        ts = np.asarray(ts, dtype=np.int64)
        missing = ts < 0
        rel = np.where(missing, 0, ts - self.t0)
        if np.any(rel < 0):
            raise ValueError("timestamp before the window start")
        a = pc.take(self.days, pa.array(rel // DAY))
        b = pc.take(self.tod, pa.array(rel % DAY))
        s = pc.binary_join_element_wise(a, b, "")
        if missing.any():
            s = pc.if_else(pa.array(missing), pa.nulls(len(s), pa.string()), s)
        return s


def _vocab(values: list[str] | tuple[str, ...]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _take(vocab: pa.Array, codes: np.ndarray) -> pa.Array:
    codes = np.asarray(codes, dtype=np.int64)
    return pc.take(vocab, pa.array(codes, mask=codes < 0))


def _num(x: np.ndarray) -> pa.Array:
    x = np.asarray(x, dtype=float)
    return pa.array(x, mask=np.isnan(x), type=pa.float64())


def _arrow_type(col_type: str) -> pa.DataType:
    return {INT: pa.int64(), NUMBER: pa.float64(), BOOL: pa.bool_()}.get(col_type, pa.string())


def _schema(spec: TableSpec) -> pa.Schema:
    return pa.schema([(c.name, _arrow_type(c.type)) for c in spec.columns])


class Sink:
    """Appends tables to one CSV file."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.writer = pacsv.CSVWriter(str(path), schema)
        self.rows = 0

    def write(self, columns: dict[str, Any]) -> None:
        arrays = []
        for f in self.schema:
            v = columns[f.name]
            arr = v if isinstance(v, pa.Array | pa.ChunkedArray) else pa.array(v, type=f.type)
            if arr.type != f.type:
                arr = arr.cast(f.type)
            arrays.append(arr)
        t = pa.Table.from_arrays(arrays, schema=self.schema)
        self.writer.write_table(t)
        self.rows += t.num_rows

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------------------

def simulate(n_hcps: int, out: str | Path, seed: int = 0, *, start: str = "2025-01-01",
             months: int = 12, events_per_hcp: float = 100.0,
             progress: Callable[[int, int], None] | None = None,
             now: datetime | None = None) -> SimulationSummary:
    """Write a simulated cardiology data drop (CONTRACT section 1 and 2) into ``out``.

    The hidden truth (true identities, segments, response model, world summary)
    goes to ``out/_truth/``. Output is deterministic for a given ``seed`` and
    arguments. ``progress(done, total)`` is called after each chunk of HCPs.
    ``now`` only serves the check that the window lies in the past.
    """
    began = time.perf_counter()
    world = make_world(seed, n_hcps, start, months, events_per_hcp, now)
    model = ResponseModel.default()
    out = Path(out)
    truth = out / TRUTH_DIR
    truth.mkdir(parents=True, exist_ok=True)
    jtext = journey_template()
    (out / "journey.yaml").write_text(jtext, encoding="utf-8")
    journey = yaml.safe_load(jtext)
    stages: list[dict[str, Any]] = list(journey["stages"])
    stage_ids = [str(s["id"]) for s in stages]
    window_days = journey.get("conversion_window_days")
    fmt = TsFormat(world.window.t0, world.window.t1)

    sinks = {spec.name: Sink(out / f"{spec.name}.csv", _schema(spec))
             for spec in (HCPS, INTERACTIONS, CONTENT, CONSENTS, OUTCOMES, FEEDBACK,
                          RELATIONSHIPS)}
    seg_names = list(model.segments)
    t_persons = Sink(truth / "persons.csv", pa.schema(
        [("record_id", pa.string()), ("person_id", pa.string()), ("source", pa.string())]))
    t_segments = Sink(truth / "segments.csv", pa.schema(
        [("person_id", pa.string()), ("segment", pa.string()), ("segment_weight", pa.float64()),
         ("secondary_segment", pa.string()), ("secondary_weight", pa.float64())]
        + [(f"w_{s}", pa.float64()) for s in seg_names]))
    trait_fields: list[tuple[str, pa.DataType]] = [
        ("person_id", pa.string()), ("npi", pa.string()), ("first_name", pa.string()),
        ("last_name", pa.string()), ("profession", pa.string()), ("specialty", pa.string()),
        ("decile", pa.int64()), ("is_kol", pa.bool_()), ("state", pa.string()),
        ("utc_offset_hours", pa.int64()), ("n_records", pa.int64()),
        ("namesake_of", pa.string()), ("overwhelmed", pa.bool_()), ("fatigue", pa.float64()),
        ("intercept", pa.float64()), ("top_channel", pa.string()),
    ]
    trait_fields += [(f"pref_{c}", pa.float64()) for c in PREF_CHANNELS]
    trait_fields += [(f"offset_{c}", pa.float64()) for c in PREF_CHANNELS]
    trait_fields += [("adoption_period", pa.string())]
    trait_fields += [(f"{s}_at", pa.string()) for s in stage_ids]
    t_traits = Sink(truth / "person_traits.csv", pa.schema(trait_fields))

    try:
        _write_content(sinks["content"], world, fmt)
        counters = IdCounters(seed)
        net = Network(n_hcps)
        totals: dict[str, float] = {}
        hour_hist = np.zeros((2, 24))
        funnel = np.zeros(len(stages), dtype=np.int64)
        n_records = 0
        event_no = 0
        response_no = 0
        n_namesakes = 0
        n_mixed = 0
        top_f2f = 0
        n_overwhelmed = 0
        seg_counts = np.zeros(len(seg_names), dtype=np.int64)
        src_counts = np.zeros(len(P.SOURCES), dtype=np.int64)
        n_chunks = (n_hcps + CHUNK_SIZE - 1) // CHUNK_SIZE
        periods = _vocab(world.window.periods)
        for c in range(n_chunks):
            g = np.arange(c * CHUNK_SIZE, min(n_hcps, (c + 1) * CHUNK_SIZE), dtype=np.int64)
            ss = np.random.SeedSequence([seed, 1, c])
            rng_p, rng_r, rng_b, rng_n = (np.random.default_rng(s) for s in ss.spawn(4))
            people = make_people(rng_p, world, model, g)
            recs = make_records(rng_r, world, people, counters, HCPS.names)
            sim = ChunkSimulator(rng_b, world, model, people, recs, stages,
                                 int(window_days) if window_days else None)
            res = sim.run(event_no)
            rec_ids = pa.array(recs.ids, type=pa.string())
            pid = pa.array([f"P{int(x) + 1:07d}" for x in g], type=pa.string())
            # hcps
            rows: dict[str, Any] = dict(recs.rows)
            rows["updated_at"] = fmt(np.asarray(rows["updated_at"], dtype=np.int64))
            sinks["hcps"].write(rows)
            # interactions
            ev = res.events
            k = ev["pidx"].size
            ev_ids = _event_ids(event_no, k)
            rec_idx = recs.of[ev["src"].astype(np.int64), ev["pidx"]]
            if np.any(rec_idx < 0):  # pragma: no cover - guards the generator's invariants
                raise RuntimeError("an interaction refers to a record the person does not have")
            sinks["interactions"].write({
                "event_id": ev_ids,
                "record_id": pc.take(rec_ids, pa.array(rec_idx)),
                "ts": fmt(ev["ts"]),
                "channel": _take(_vocab(CHANNELS), ev["channel"]),
                "action": _take(_vocab(ACTIONS), ev["action"]),
                "direction": _take(_vocab(DIRECTIONS), ev["direction"]),
                "team": _take(_vocab(TEAMS), ev["team"]),
                "owner_id": _take(_vocab(world.owner_ids), ev["owner"]),
                "content_id": _take(_vocab(world.content.ids), ev["content"]),
                "campaign_id": _take(_vocab(world.schedule.campaign_ids), ev["campaign"]),
                "duration_s": _num(ev["duration"]),
                "value_usd": _num(ev["value"]),
                "topic": _take(_vocab(world.topics), ev["topic"]),
            })
            # consents
            cs = res.consents
            sinks["consents"].write({
                "record_id": pc.take(rec_ids, pa.array(cs["rec"])),
                "channel": _take(_vocab(CHANNELS), cs["channel"]),
                "status": _take(_vocab(CONSENT_STATUSES), cs["status"]),
                "ts": fmt(cs["ts"]),
                "purpose": _take(_vocab(CONSENT_PURPOSES), cs["purpose"]),
                "source": _take(_vocab(CONSENT_SOURCES), cs["source"]),
            })
            # outcomes
            oc = res.outcomes
            sinks["outcomes"].write({
                "record_id": pc.take(rec_ids, pa.array(oc["rec"])),
                "product": _take(_vocab([P.COMPETITOR, P.PRODUCT]), oc["product"]),
                "period": pc.take(periods, pa.array(oc["slot"])),
                "nrx": _num(oc["nrx"]),
                "trx": _num(oc["trx"]),
            })
            # feedback
            fb = res.feedback
            nf = int(fb["pidx"].size)
            sinks["feedback"].write({
                "response_id": _prefixed("fb", response_no, nf, 9),
                "record_id": pc.take(rec_ids, pa.array(fb["rec"].astype(np.int64))),
                "ts": fmt(fb["ts"].astype(np.int64)),
                "instrument": _take(_vocab(fb["_instruments"]), fb["instrument"]),
                "question": _take(_vocab(fb["_questions"]), fb["question"]),
                "score": _num(fb["score"]),
                "comment": _take(_vocab(fb["_comments"]), fb["comment"]),
                "event_id": _event_ref(fb["event"].astype(np.int64)),
                "dimension": _take(_vocab(QUALITY_DIMENSIONS), fb["dimension"]),
            })
            response_no += nf
            # relationships
            ed = net.add_chunk(rng_n, people, recs, world.window)
            sinks["relationships"].write({
                "src_record_id": pa.array(list(ed["src"]), type=pa.string()),
                "dst_record_id": pa.array(list(ed["dst"]), type=pa.string()),
                "kind": _take(_vocab(RELATIONSHIP_KINDS), ed["kind"]),
                "weight": _num(ed["weight"]),
                "ts": fmt(ed["ts"]),
            })
            # truth
            t_persons.write({
                "record_id": rec_ids,
                "person_id": pc.take(pid, pa.array(recs.person)),
                "source": _take(_vocab(P.SOURCES), recs.source),
            })
            _write_truth_people(t_segments, t_traits, people, recs, res, pid, seg_names,
                                stage_ids, fmt, world)
            # summary statistics
            for key, v in res.stats.items():
                totals[key] = totals.get(key, 0.0) + v
            _digital_hours(hour_hist, ev, people.tz, world)
            funnel += (res.stage_entry >= 0).sum(axis=0)
            n_records += len(recs.ids)
            event_no += k
            n_namesakes += int((people.namesake_of >= 0).sum())
            n_mixed += int((people.seg2 >= 0).sum())
            top_f2f += int((people.top_channel == PREF_CHANNELS.index("f2f_visit")).sum())
            n_overwhelmed += int(people.overwhelmed.sum())
            seg_counts += np.bincount(people.seg, minlength=len(seg_names))
            src_counts += people.has.sum(axis=0)
            if progress is not None:
                progress(int(g[-1]) + 1, n_hcps)
    finally:
        for s in [*sinks.values(), t_persons, t_segments, t_traits]:
            s.close()

    counts = {name: s.rows for name, s in sinks.items()}
    (truth / "response_model.json").write_text(
        json.dumps(model.to_dict(), indent=2), encoding="utf-8")
    seconds = time.perf_counter() - began
    funnel_d = {s: int(v) for s, v in zip(stage_ids, funnel, strict=True)}
    world_doc = _world_summary(world, n_hcps, n_records, counts, totals, hour_hist, funnel_d,
                               n_namesakes, n_mixed, top_f2f, n_overwhelmed, seg_counts,
                               src_counts, seg_names, events_per_hcp, months, start, seed)
    (truth / "world.json").write_text(json.dumps(world_doc, indent=2), encoding="utf-8")
    return SimulationSummary(n_persons=n_hcps, n_records=n_records, counts=counts, out=out,
                             seconds=seconds, funnel=funnel_d)


def _prefixed(prefix: str, start: int, k: int, width: int) -> pa.Array:
    nums = pc.cast(pa.array(np.arange(start, start + k, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(nums, width, "0"), "")


def _event_ids(start: int, k: int) -> pa.Array:
    return _prefixed("ev", start, k, 10)


def _event_ref(event_no: np.ndarray) -> pa.Array:
    missing = event_no < 0
    nums = pc.cast(pa.array(np.where(missing, 0, event_no)), pa.string())
    ids = pc.binary_join_element_wise("ev", pc.utf8_lpad(nums, 10, "0"), "")
    if missing.any():
        ids = pc.if_else(pa.array(missing), pa.nulls(len(ids), pa.string()), ids)
    return ids


def _write_content(sink: Sink, world: World, fmt: TsFormat) -> None:
    c = world.content
    sink.write({
        "content_id": c.ids,
        "title": c.title,
        "format": [CONTENT_FORMATS[int(i)] for i in c.fmt],
        "therapeutic_area": [P.THERAPEUTIC_AREA] * len(c.ids),
        "product": c.product,
        "key_message": c.key_message,
        "theme": [P.THEMES[int(i)] for i in c.theme],
        "tonality": [P.TONALITIES[int(i)] for i in c.tone],
        "aesthetics": c.aesthetics,
        "length_minutes": c.length_minutes,
        "audience": c.audience,
        "language": c.language,
        "mlr_status": c.status,
        "approved_at": fmt(c.approved_at),
        "expires_at": fmt(c.expires_at),
    })


def _write_truth_people(t_segments: Sink, t_traits: Sink, people: Any, recs: Any, res: Any,
                        pid: pa.Array, seg_names: list[str], stage_ids: list[str],
                        fmt: TsFormat, world: World) -> None:
    n = people.n
    w_primary = people.W[np.arange(n), people.seg]
    seg2 = people.seg2
    cols: dict[str, Any] = {
        "person_id": pid,
        "segment": _take(_vocab(seg_names), people.seg),
        "segment_weight": np.round(w_primary, 4),
        "secondary_segment": _take(_vocab(seg_names), seg2),
        "secondary_weight": _num(np.where(seg2 >= 0, np.round(1 - w_primary, 4), np.nan)),
    }
    for j, s in enumerate(seg_names):
        cols[f"w_{s}"] = np.round(people.W[:, j], 4)
    t_segments.write(cols)
    namesake = [f"P{int(x) + 1:07d}" if x >= 0 else None for x in people.namesake_of]
    states = [P.CITIES[int(ci)][0] for ci in people.city]
    profs = [P.PROFESSION_MIX[int(p)][0] for p in people.profession]
    tr: dict[str, Any] = {
        "person_id": pid, "npi": people.npi, "first_name": people.first,
        "last_name": people.last, "profession": profs, "specialty": people.specialty,
        "decile": pa.array(people.decile, mask=people.decile <= 0, type=pa.int64()),
        "is_kol": people.kol, "state": states, "utc_offset_hours": people.tz,
        "n_records": people.has.sum(axis=1), "namesake_of": namesake,
        "overwhelmed": people.overwhelmed, "fatigue": np.round(people.fatigue, 5),
        "intercept": np.round(people.intercept, 5),
        "top_channel": _take(_vocab(PREF_CHANNELS), people.top_channel),
        "adoption_period": _take(_vocab(world.window.periods), res.adoption_slot),
    }
    for j, ch in enumerate(PREF_CHANNELS):
        tr[f"pref_{ch}"] = np.round(people.pref[:, j], 5)
        tr[f"offset_{ch}"] = np.round(people.offset[:, j], 5)
    for j, s in enumerate(stage_ids):
        tr[f"{s}_at"] = fmt(res.stage_entry[:, j])
    t_traits.write(tr)


def _digital_hours(hist: np.ndarray, ev: dict[str, np.ndarray], tz: np.ndarray,
                   world: World) -> None:
    m = np.zeros(ev["pidx"].size, dtype=bool)
    for ch, act in DIGITAL_CONSUMPTION:
        m |= (ev["channel"] == CHANNELS.index(ch)) & (ev["action"] == ACTIONS.index(act))
    rel = ev["ts"][m] - world.window.t0 + tz[ev["pidx"][m]] * 3600
    day = rel // DAY
    hour = (rel % DAY) // 3600
    weekend = (world.window.weekday_of_day(day) >= 5).astype(np.int64)
    np.add.at(hist, (weekend, hour), 1.0)


def _world_summary(world: World, n_hcps: int, n_records: int, counts: dict[str, int],
                   totals: dict[str, float], hour_hist: np.ndarray, funnel: dict[str, int],
                   n_namesakes: int, n_mixed: int, top_f2f: int, n_overwhelmed: int,
                   seg_counts: np.ndarray, src_counts: np.ndarray, seg_names: list[str],
                   events_per_hcp: float, months: int, start: str, seed: int) -> dict[str, Any]:
    def ratio(a: str, b: str) -> float | None:
        return round(totals[a] / totals[b], 4) if totals.get(b) else None

    wk = hour_hist[0]
    return {
        "seed": seed,
        "start": start,
        "months": months,
        "window_utc": [
            np.datetime_as_string(np.datetime64(world.window.t0, "s"), unit="s") + "Z",
            np.datetime_as_string(np.datetime64(world.window.t1, "s"), unit="s") + "Z",
        ],
        "events_per_hcp_requested": events_per_hcp,
        "n_persons": n_hcps,
        "n_records": n_records,
        "records_per_source": {s: int(v) for s, v in zip(P.SOURCES, src_counts, strict=True)},
        "counts": counts,
        "interactions_per_person": round(counts["interactions"] / max(1, n_hcps), 2),
        "segments": {s: int(v) for s, v in zip(seg_names, seg_counts, strict=True)},
        "mixed_membership_share": round(n_mixed / n_hcps, 4),
        "namesake_persons": n_namesakes,
        "n_content": len(world.content.ids),
        "n_reps": world.n_reps, "n_msls": world.n_msls, "n_kams": world.n_kams,
        "n_organizations": len(world.orgs.name),
        "products": {"brand": P.PRODUCT, "competitor": P.COMPETITOR},
        "calibration": {
            "share_top_channel_f2f": round(top_f2f / n_hcps, 4),
            "share_overwhelmed": round(n_overwhelmed / n_hcps, 4),
            "email_open_rate": ratio("email_opened", "email_delivered"),
            "email_click_to_open": ratio("email_clicked", "email_opened"),
            "webinar_registration_rate": ratio("webinar_registered", "webinar_invited"),
            "webinar_no_show_rate": (round(1 - totals["webinar_attended"]
                                           / totals["webinar_registered"], 4)
                                     if totals.get("webinar_registered") else None),
            "f2f_completion_rate": ratio("f2f_visit_completed", "f2f_visit_attempts"),
            "digital_peak_weekday_local_hour": int(wk.argmax()),
            "digital_weekday_hour_histogram": [int(x) for x in wk],
            "digital_weekend_hour_histogram": [int(x) for x in hour_hist[1]],
        },
        "funnel": funnel,
        "conventions": {
            "timestamps": "UTC, ISO-8601 with Z",
            "local_time": "UTC + the standard-time offset of the HCP's state "
                          "(ET -5, CT -6, MT -7, PT -8; no daylight saving); "
                          "see _truth/person_traits.csv utc_offset_hours",
            "direction": "direction of the whole touchpoint: all rows of company-initiated "
                         "touches (email sent..clicked, webinar sent..attended, visits, "
                         "samples, payments, advisory boards) are outbound; web, portal, "
                         "social, medical inquiries and congress attendance are inbound",
            "recent_contacts": "outbound touches (email/sms/webinar invitations sent, visit, "
                               "call and MSL attempts) to the person in the 30 days before",
            "relationships": "src looks to dst (refers to, attends talks of, co-authors with); "
                             "influence flows from dst to src",
            "adoption": "first month with nrx > 0 for cardiozen; the stage entry is 00:00 UTC "
                        "on the first day of the next month",
            "stages": "truth stage entries in person_traits.csv follow journey.yaml and "
                      "CONTRACT section 4 on each person's events over all their records",
            "identity": "persons.csv maps every record_id to the true person_id",
        },
    }
