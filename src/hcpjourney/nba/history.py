"""What the warehouse says about each HCP, as of a date, in arrays the models use.

* the HCP universe (``golden``), each HCP with an integer index ``hix`` in hcp_id order,
  its local UTC offset (US state, standard time), decile and KOL flag;
* the **logged touches**: every outbound contact before ``as_of`` (an email or
  SMS sent, a webinar invitation sent, a visit/call/MSL meeting completed or
  declined, ...; see :class:`~hcpjourney.nba.catalogue.ActionType`) with its
  reward (1 when the HCP engaged: the email was opened, the visit completed, the
  invitation led to a registration ...), local weekday and hour, content and the
  HCP's contacts in the 30 days before it. Responses are linked to the touch
  they answer by (HCP, channel, content_id, campaign_id), after the touch and
  before the next touch with the same key, within ``RESPONSE_WINDOW_DAYS``;
  touches whose response window is still open at ``as_of`` are left out of
  training (their outcome is not known yet); a ``propensity`` column of the
  interactions file (kept in ``attributes``) is the touch's recorded logging
  propensity;
* contacts per HCP in the 7 and 30 days before ``as_of`` (the pressure budget);
* optional journey and segment inputs: ``stage_entries`` (hcp_id, stage,
  stage_index, entered_at) or ``stages``, and ``segments`` (hcp_id, segment,
  probability), used when the tables exist.

The heavy lifting (filters, joins, linking, counting) runs in the engine as Ibis
expressions; the results arrive as flat numeric arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hcpjourney.engine import Engine
from hcpjourney.errors import NotBuiltError
from hcpjourney.identity.timezones import with_utc_offset
from hcpjourney.nba.catalogue import ActionType

RESPONSE_WINDOW_DAYS = 14
FATIGUE_WINDOW_DAYS = 30
DAY = 86_400
HCPS_TABLE = "_nba_hcps"
TOUCHES_TABLE = "_nba_touches"

CONTENT_ATTRIBUTES: tuple[str, ...] = ("theme", "tonality", "format", "aesthetics", "key_message")


def epoch(ts: datetime) -> int:
    """Seconds since 1970 of a naive UTC datetime."""
    return int((ts - datetime(1970, 1, 1)).total_seconds())


@dataclass
class ContentVocab:
    """Content ids and, per attribute, the code of each content's value (-1: none)."""

    ids: list[str]
    values: dict[str, list[str]]  # attribute -> vocabulary
    codes: dict[str, np.ndarray]  # attribute -> code per content index

    def index(self, content_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        idx = pc.index_in(content_ids, value_set=pa.array(self.ids, pa.string()))
        return np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), dtype=np.int64)

    def attribute_codes(self, attribute: str, content_index: np.ndarray) -> np.ndarray:
        codes = self.codes[attribute]
        if codes.size == 0:
            return np.full(content_index.shape, -1, dtype=np.int64)
        return np.where(content_index >= 0, codes[np.maximum(content_index, 0)], -1)


@dataclass
class Hcps:
    """The HCP universe: index ``hix`` = position in ``ids`` (sorted hcp_id)."""

    ids: np.ndarray  # object array of hcp_id, sorted
    utc_offset: np.ndarray  # int, hours
    decile: np.ndarray  # float, nan when unknown
    is_kol: np.ndarray  # bool
    contacts_7d: np.ndarray  # int
    contacts_30d: np.ndarray  # int
    stage: np.ndarray  # int, current stage index at as_of (0 = none)
    stage_names: list[str] = field(default_factory=list)  # index k-1 -> name of stage k
    stage_entry: np.ndarray | None = None  # n x S epoch seconds (inf when not entered)
    segments: np.ndarray | None = None  # n x G probabilities
    segment_names: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.ids.size)

    def lookup(self, hcp_ids: Sequence[str]) -> np.ndarray:
        """hix of each hcp_id (-1 when unknown)."""
        q = np.asarray(list(hcp_ids), dtype=object)
        if q.size == 0 or self.ids.size == 0:
            return np.full(q.size, -1, dtype=np.int64)
        pos = np.searchsorted(self.ids, q)
        pos = np.minimum(pos, self.ids.size - 1)
        return np.where(self.ids[pos] == q, pos, -1).astype(np.int64)


@dataclass
class Touches:
    """Logged touches (one row per outbound contact), sorted by hix then time."""

    hix: np.ndarray
    type_code: np.ndarray  # index into the action types
    content: np.ndarray  # content index (-1: none)
    ts: np.ndarray  # epoch seconds
    weekday: np.ndarray  # local, 0 = Monday
    hour: np.ndarray  # local
    reward: np.ndarray  # 0/1
    team: np.ndarray  # 0 commercial, 1 medical, 2 other
    recent: np.ndarray  # contacts in the 30 days before
    trainable: np.ndarray  # outcome known at as_of
    propensity: np.ndarray  # recorded logging propensity (nan when not recorded)

    @property
    def size(self) -> int:
        return int(self.hix.size)

    def subset(self, mask: np.ndarray) -> Touches:
        return Touches(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    @staticmethod
    def concat(parts: Sequence[Touches]) -> Touches:
        return Touches(**{k: np.concatenate([getattr(p, k) for p in parts])
                          for k in Touches.__dataclass_fields__})


# ------------------------------------------------------------------ universe
def hcp_universe(engine: Engine) -> ir.Table:
    """hcp_id of every resolved HCP (golden, else profiles, else events)."""
    for name in ("golden", "profiles"):
        if engine.has_table(name):
            return engine.table(name).select("hcp_id").distinct()
    if engine.has_table("events"):
        return engine.table("events").select("hcp_id").distinct()
    raise NotBuiltError("no HCPs yet: run `hcpj ingest DIR` and `hcpj build` first")


def register_hcps(engine: Engine) -> ir.Table:
    """Materialise the HCP index (temp table hcp_id, hix, utc_offset, decile, is_kol)."""
    u = hcp_universe(engine)
    if engine.has_table("golden"):
        g = engine.table("golden")
        cols = set(g.columns)
        g = g.select(
            "hcp_id",
            state=g.state if "state" in cols else ibis.null("string"),
            decile=g.decile.cast("float64") if "decile" in cols else ibis.null("float64"),
            is_kol=g.is_kol.cast("boolean") if "is_kol" in cols else ibis.null("boolean"),
        )
        u = u.left_join(g, "hcp_id").select("hcp_id", "state", "decile", "is_kol")
    else:
        u = u.mutate(state=ibis.null("string"), decile=ibis.null("float64"),
                     is_kol=ibis.null("boolean"))
    u = with_utc_offset(engine, u)
    w = ibis.window(order_by="hcp_id")
    out = u.select(
        "hcp_id",
        hix=ibis.row_number().over(w).cast("int64"),  # 0-based
        utc_offset=u.utc_offset,
        decile=u.decile,
        is_kol=ibis.coalesce(u.is_kol, False),
    )
    return engine.create(HCPS_TABLE, out, order_by=["hix"], temp=True)


# ------------------------------------------------------------------- touches
def _outbound(ev: ir.Table) -> ir.BooleanValue:
    return ev.direction.isnull() | (ev.direction == "outbound")


def _key(t: ir.Table) -> ir.StringValue:
    return ibis.coalesce(t.content_id, "") + "\x1f" + ibis.coalesce(t.campaign_id, "")


def linked_by_response(t: ActionType) -> bool:
    """Whether a touch of this type learns its outcome from a later response event."""
    return not any(e in t.contact_actions for e in t.engage_actions)


def touches_expr(engine: Engine, types: Sequence[ActionType], start: datetime, as_of: datetime
                 ) -> ir.Table:
    """Outbound contacts in [start, as_of) with type_code and reward (Ibis, not executed)."""
    ev = engine.table("events")
    ev = ev.filter((ev.ts < as_of) & (ev.ts >= start))
    cols = ["hcp_id", "event_id", "ts", "channel", "action", "team", "content_id", "campaign_id"]
    if "attributes" in ev.columns:
        cols.append("attributes")
    parts: list[ir.Table] = []
    seen: set[str] = set()
    for code, t in enumerate(types):
        if t.channel in seen:  # one type per channel learns from the channel's history
            continue
        seen.add(t.channel)
        base = ev.filter((ev.channel == t.channel) & ev.action.isin(list(t.contact_actions))
                         & _outbound(ev)).select(*cols)
        if not linked_by_response(t):
            part = base.mutate(type_code=ibis.literal(code, "int64"),
                               reward=base.action.isin(list(t.engage_actions)).cast("int8"),
                               linked=ibis.literal(False), contact=ibis.literal(t.contact))
        else:
            k = base.mutate(_key=_key(base))
            k = k.mutate(next_ts=k.ts.lead().over(
                ibis.window(group_by=["hcp_id", "_key"], order_by=["ts", "event_id"])))
            resp = ev.filter((ev.channel == t.channel) & ev.action.isin(list(t.engage_actions)))
            resp = resp.select(r_hcp="hcp_id", r_key=_key(resp), r_ts="ts")
            j = k.inner_join(resp, [
                k.hcp_id == resp.r_hcp, k._key == resp.r_key, resp.r_ts >= k.ts,
                resp.r_ts < k.ts + ibis.interval(days=RESPONSE_WINDOW_DAYS),
                k.next_ts.isnull() | (resp.r_ts < k.next_ts),
            ])
            hits = j.select(hit_id=j.event_id).distinct()
            lj = k.left_join(hits, k.event_id == hits.hit_id)
            part = lj.select(*cols, type_code=ibis.literal(code, "int64"),
                             reward=lj.hit_id.notnull().cast("int8"), linked=ibis.literal(True),
                             contact=ibis.literal(t.contact))
        parts.append(part)
    if not parts:
        raise NotBuiltError("the NBA catalogue has no action types")
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return out


def load_touches(engine: Engine, hcps_table: ir.Table, types: Sequence[ActionType],
                 vocab: ContentVocab, as_of: datetime, history_days: int) -> Touches:
    """The logged touches of the last ``history_days`` before ``as_of``, as arrays."""
    if not engine.has_table("events"):
        raise NotBuiltError("no events yet: run `hcpj build` first")
    start = as_of - timedelta(days=history_days)
    t = touches_expr(engine, types, start, as_of)
    h = hcps_table.select("hcp_id", "hix", "utc_offset")
    j = t.inner_join(h, "hcp_id")
    local = j.ts + j.utc_offset.as_interval("h")
    # a logging propensity recorded with the touch (an extra `propensity` column of the
    # interactions file, kept in attributes), e.g. from an exploring NBA policy
    prop: ir.FloatingValue = ibis.null("float64")
    if "attributes" in j.columns:
        pj = j.attributes.cast("json")["propensity"]
        prop = ibis.coalesce(pj.float, pj.str.try_cast("float64"))
    cutoff = as_of - timedelta(days=RESPONSE_WINDOW_DAYS)
    expr = j.select(
        hix=j.hix,
        type_code=j.type_code,
        content_id=j.content_id,
        ts=j.ts.epoch_seconds().cast("int64"),
        weekday=local.day_of_week.index().cast("int64"),
        hour=local.hour().cast("int64"),
        reward=j.reward,
        team=ibis.cases((j.team == "commercial", 0), (j.team == "medical", 1), else_=2)
        .cast("int64"),
        trainable=~j.linked | (j.ts < cutoff),
        propensity=prop,
        contact=j.contact,
        event_id=j.event_id,
    ).order_by(["hix", "ts", "event_id"])
    data = engine.to_pyarrow(expr)

    def col(name: str, dtype: type = np.int64) -> np.ndarray:
        return np.asarray(data.column(name).to_numpy(zero_copy_only=False), dtype=dtype)

    hix = col("hix")
    ts = col("ts")
    return Touches(
        hix=hix, type_code=col("type_code"), content=vocab.index(data.column("content_id")),
        ts=ts, weekday=col("weekday"), hour=col("hour"), reward=col("reward", np.int8),
        team=col("team"), recent=recent_counts(hix, ts, FATIGUE_WINDOW_DAYS * DAY),
        trainable=col("trainable", bool),
        propensity=np.asarray(pc.fill_null(data.column("propensity"), np.nan)
                              .to_numpy(zero_copy_only=False), dtype=float),
    )


def recent_counts(hix: np.ndarray, ts: np.ndarray, window: int,
                  counted: np.ndarray | None = None) -> np.ndarray:
    """For rows sorted by (hix, ts): ``counted`` rows of the same hix in [ts - window, ts)."""
    if hix.size == 0:
        return np.zeros(0, dtype=np.int64)
    key = hix.astype(np.int64) * (1 << 36) + (ts - ts.min())
    first_same = np.searchsorted(key, key, side="left")  # first row at the same instant
    lo = np.searchsorted(key, key - window, side="left")
    c = np.ones(hix.size, dtype=np.int64) if counted is None else counted.astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(c)])
    return (cum[first_same] - cum[lo]).astype(np.int64)


# ------------------------------------------------------------------- content
def content_rows(engine: Engine) -> list[dict[str, object]]:
    """The content library (one row per content_id; the last loaded wins)."""
    if not engine.has_table("content"):
        return []
    c = engine.table("content")
    keep = [x for x in ("content_id", "title", "format", "product", "key_message", "theme",
                        "tonality", "aesthetics", "audience", "language", "mlr_status",
                        "approved_at", "expires_at", "attributes") if x in c.columns]
    if "_line" in c.columns and "_load_id" in c.columns:
        w = ibis.window(group_by="content_id", order_by=[ibis.desc("_load_id"), ibis.desc("_line")])
        c = c.mutate(_n=ibis.row_number().over(w))
        c = c.filter(c._n == 0)
    rows: list[dict[str, object]] = engine.to_pyarrow(c.select(*keep).order_by("content_id")).to_pylist()
    return rows


def content_vocab(rows: Sequence[dict[str, object]]) -> ContentVocab:
    ids = [str(r["content_id"]) for r in rows]
    values: dict[str, list[str]] = {}
    codes: dict[str, np.ndarray] = {}
    for a in CONTENT_ATTRIBUTES:
        vals = sorted({str(r[a]) for r in rows if r.get(a) not in (None, "")})
        values[a] = vals
        pos = {v: i for i, v in enumerate(vals)}
        codes[a] = np.array([pos.get(str(r.get(a)), -1) if r.get(a) not in (None, "") else -1
                             for r in rows], dtype=np.int64)
    return ContentVocab(ids, values, codes)


def content_team_history(engine: Engine, as_of: datetime) -> dict[str, dict[str, int]]:
    """content_id -> {team: outbound events carrying it before as_of}."""
    if not engine.has_table("events"):
        return {}
    ev = engine.table("events")
    ev = ev.filter(ev.content_id.notnull() & (ev.ts < as_of) & _outbound(ev) & ev.team.notnull())
    agg = ev.group_by(["content_id", "team"]).aggregate(n=ev.count())
    out: dict[str, dict[str, int]] = {}
    for r in engine.to_pyarrow(agg).to_pylist():
        out.setdefault(str(r["content_id"]), {})[str(r["team"])] = int(r["n"])
    return out


# ---------------------------------------------------------------------- hcps
def load_hcps(engine: Engine, hcps_table: ir.Table, touches_ibis: ir.Table | None,
              as_of: datetime) -> Hcps:
    """Per-HCP arrays: offsets, decile, KOL, contacts before as_of, stage, segments."""
    base = engine.to_pyarrow(hcps_table.order_by("hix")
                             .select("hcp_id", "utc_offset", "decile", "is_kol"))
    n = base.num_rows
    ids = np.asarray(base.column("hcp_id").to_pylist(), dtype=object)
    dec = np.asarray(pc.fill_null(base.column("decile"), np.nan).to_numpy(zero_copy_only=False),
                     dtype=float)
    c7 = np.zeros(n, dtype=np.int64)
    c30 = np.zeros(n, dtype=np.int64)
    if touches_ibis is not None:
        t = touches_ibis
        wk, mo = as_of - timedelta(days=7), as_of - timedelta(days=30)
        t = t.filter((t.ts >= mo) & t.contact)
        agg = t.group_by("hcp_id").aggregate(c7=t.count(where=t.ts >= wk), c30=t.count())
        j = agg.inner_join(hcps_table.select("hcp_id", "hix"), "hcp_id").select(
            hix=ibis._.hix, c7="c7", c30="c30")
        d = engine.to_pyarrow(j)
        ix = np.asarray(d.column("hix").to_numpy(), dtype=np.int64)
        c7[ix] = np.asarray(d.column("c7").to_numpy(), dtype=np.int64)
        c30[ix] = np.asarray(d.column("c30").to_numpy(), dtype=np.int64)
    hcps = Hcps(
        ids=ids,
        utc_offset=np.asarray(base.column("utc_offset").to_numpy(), dtype=np.int64),
        decile=dec,
        is_kol=np.asarray(base.column("is_kol").to_numpy(zero_copy_only=False), dtype=bool),
        contacts_7d=c7, contacts_30d=c30, stage=np.zeros(n, dtype=np.int64),
    )
    _load_stages(engine, hcps_table, hcps, as_of)
    _load_segments(engine, hcps_table, hcps)
    return hcps


def _load_stages(engine: Engine, hcps_table: ir.Table, hcps: Hcps, as_of: datetime) -> None:
    name = "stage_entries" if engine.has_table("stage_entries") else (
        "stages" if engine.has_table("stages") else None)
    if name is None:
        return
    s = engine.table(name)
    if not {"hcp_id", "stage", "entered_at", "stage_index"} <= set(s.columns):
        return
    names = engine.to_pyarrow(s.group_by("stage_index").aggregate(stage=s.stage.min())
                              .order_by("stage_index")).to_pylist()
    if not names:
        return
    n_st = int(max(int(r["stage_index"]) for r in names))
    stage_names = [""] * n_st
    for r in names:
        stage_names[int(r["stage_index"]) - 1] = str(r["stage"])
    j = s.inner_join(hcps_table.select("hcp_id", "hix"), "hcp_id")
    d = engine.to_pyarrow(j.select(hix=j.hix, k=j.stage_index.cast("int64"),
                                   at=j.entered_at.epoch_seconds().cast("int64")))
    hix = np.asarray(d.column("hix").to_numpy(), dtype=np.int64)
    k = np.asarray(d.column("k").to_numpy(), dtype=np.int64)
    at = np.asarray(d.column("at").to_numpy(), dtype=float)
    cut = float(epoch(as_of))
    hcps.stage_names = stage_names
    ok = at <= cut
    np.maximum.at(hcps.stage, hix[ok], k[ok])
    if name == "stage_entries":
        entry = np.full((hcps.n, n_st), np.inf)
        entry[hix, k - 1] = at
        hcps.stage_entry = entry


def _load_segments(engine: Engine, hcps_table: ir.Table, hcps: Hcps) -> None:
    if not engine.has_table("segments"):
        return
    s = engine.table("segments")
    if not {"hcp_id", "segment", "probability"} <= set(s.columns):
        return
    j = s.inner_join(hcps_table.select("hcp_id", "hix"), "hcp_id")
    d = engine.to_pyarrow(j.select(hix=j.hix, segment=j.segment.cast("string"),
                                   p=j.probability.cast("float64")))
    if d.num_rows == 0:
        return
    names = sorted({str(x) for x in d.column("segment").to_pylist() if x is not None})
    code = pc.index_in(d.column("segment"), value_set=pa.array(names, pa.string()))
    c = np.asarray(pc.fill_null(code, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    hix = np.asarray(d.column("hix").to_numpy(), dtype=np.int64)
    p = np.asarray(pc.fill_null(d.column("p"), 0.0).to_numpy(zero_copy_only=False), dtype=float)
    m = np.zeros((hcps.n, len(names)))
    ok = c >= 0
    m[hix[ok], c[ok]] = p[ok]
    hcps.segments = m
    hcps.segment_names = names
