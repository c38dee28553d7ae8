"""Behavioural and attitudinal features per HCP, computed in the warehouse.

:func:`build_features` writes table ``segment_features``: one row per HCP of
``golden`` (HCPs without events get zeros). Each family of counts is one Ibis
group-by of ``events`` into a long table (hcp_id, key, n) pivoted to columns by
conditional sums over that much smaller table; survey answers come from
``feedback`` (through ``identities``) and, when the journey build wrote it,
journey stage and pace from ``stage_entries``.

Columns (``FeatureColumn.kind`` says how a model treats them):

- ``rate``: ``rate_X`` = ``(resp_X + m * p0) / (att_X + m)``, the response rate
  of channel X shrunk to the channel's rate over all HCPs ``p0`` with ``m`` =
  ``prior_contacts`` pseudo-contacts (empirical-Bayes beta-binomial): an HCP with
  few contacts sits near the population rate. Attempts and responses per channel
  are :data:`RESPONSE_RULES` (email opened given delivered, visits completed
  rather than declined, webinar invitations registered ...) plus email
  click-through given opened and webinar attendance given registration; the raw
  ``att_X`` and ``resp_X`` are kept. Channels whose attempts carry content (emails,
  detail aids on visits ...) also get one rate per value of the content's theme
  (``FeatureOptions.response_by``): ``att_email__theme__safety``,
  ``resp_email__theme__safety``, ``rate_email__theme__safety`` (block
  ``content_response``), since what an HCP answers depends on what it was sent.
- ``log``: intensity, ``ln(1 + count)``: all events, engaged events,
  HCP-initiated events per inbound channel, payment value; and ``log_seen_X``,
  the HCP-initiated events of channel X only for HCPs with a record from a source
  that records X (empty elsewhere: no web visits in the data is no evidence of
  little reading when no web source knows the HCP).
- ``share``: count columns ``cnt_BLOCK__PART`` whose block total is ``n_BLOCK``:
  inbound vs outbound; the channel mix of engaged events; theme, tonality and
  format of the content the HCP chose (inbound views and downloads: what the
  company sends says more about its campaigns than about the HCP); local hour
  (24) and weekday/weekend of HCP-timed events; topics (nature of payment in
  Open Payments) and values of attribute keys (manufacturer), the most frequent
  ones plus ``other``.
- ``score``: mean survey answer per HCP (NPS, each attitude question, each of
  the five quality dimensions, CSAT); empty when the HCP never answered.
- ``stage``: furthest stage index reached and days per stage step.
- ``pref_hour`` / ``pref_weekday``: the most frequent local hour / day (0 =
  Monday) of the HCP's HCP-timed events.

Engaged events: actions in :data:`ENGAGED_ACTIONS` or inbound. HCP-timed events
(whose time the HCP chose): inbound, or actions in :data:`HCP_TIMED_ACTIONS`.
Local time: timestamps are UTC; local time adds the standard-time offset of the
HCP's US state (golden ``state``, :mod:`hcpjourney.identity.timezones`, no daylight saving),
or the workspace's most common offset when the state is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import numpy as np

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import NotBuiltError
from hcpjourney.identity.golden import GOLDEN, IDENTITIES, identities
from hcpjourney.identity.timezones import with_utc_offset

EVENTS = "events"
STAGE_ENTRIES = "stage_entries"
SEGMENT_FEATURES = "segment_features"
FEATURE_COLUMNS = "segment_feature_columns"  # name, kind, block, label, count of each feature
CONTENT_RESPONSE = "content_response"  # block of the per-content-attribute response rates

# channel -> (attempt actions, response actions)
RESPONSE_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "email": (("delivered",), ("opened",)),
    "sms": (("delivered",), ("clicked",)),
    "webinar": (("sent",), ("registered",)),
    "f2f_visit": (("completed", "declined"), ("completed",)),
    "remote_visit": (("completed", "declined"), ("completed",)),
    "phone": (("completed", "declined"), ("completed",)),
    "msl_meeting": (("completed", "declined"), ("completed",)),
}
# follow-on rates: name -> (channel, attempt action, response action)
FOLLOW_ON_RULES: dict[str, tuple[str, str, str]] = {
    "email_click": ("email", "opened", "clicked"),
    "webinar_attend": ("webinar", "registered", "attended"),
}
# Actions by which the HCP engages (chooses, answers, consumes).
ENGAGED_ACTIONS: tuple[str, ...] = (
    "opened", "clicked", "visited", "viewed", "downloaded", "registered", "attended",
    "requested", "replied", "completed",
)
# Actions whose timing the HCP chooses (besides every inbound event).
HCP_TIMED_ACTIONS: tuple[str, ...] = ("opened", "clicked", "viewed", "visited", "downloaded",
                                      "replied")
HOUR_BANDS: tuple[tuple[str, int, int], ...] = (
    ("night", 0, 6), ("early", 6, 8), ("morning", 8, 12), ("lunch", 12, 14),
    ("afternoon", 14, 17), ("evening", 17, 20), ("late", 20, 24),
)
DAY_NAMES: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                              "Saturday", "Sunday")
QUALITY_DIMENSIONS: tuple[str, ...] = tuple(schemas.QUALITY_DIMENSIONS)

KINDS = ("rate", "log", "share", "score", "stage")


@dataclass(frozen=True)
class FeatureColumn:
    """One column of the feature table: its name, how it is modelled and what it means."""

    name: str
    kind: str  # one of KINDS
    block: str  # share block (the columns that sum to 1), else the family
    label: str  # human wording for persona cards
    count: str | None = None  # column holding the evidence count (attempts, events)


@dataclass(frozen=True)
class FeatureOptions:
    """Knobs of the feature computation (all optional)."""

    prior_contacts: float = 4.0  # pseudo-contacts of response-rate shrinkage
    prior_events: float = 3.0  # pseudo-events of share smoothing
    max_topics: int = 12  # most frequent topics kept (the rest is "other")
    max_attribute_values: int = 12  # per attribute key
    attribute_keys: tuple[str, ...] = ("manufacturer",)  # event attributes profiled
    max_questions: int = 12  # attitude questions kept (most answered)
    min_rate_attempts: int = 20  # a channel rate needs this many attempts in the data
    # content attribute by which the response rates of content-carrying channels (an
    # email's theme ...) are split; None keeps one rate per channel
    response_by: str | None = "theme"


@dataclass
class FeatureSet:
    """The wide feature table (one row per HCP) and the meaning of its columns."""

    table: ir.Table
    columns: list[FeatureColumn] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def by_kind(self, kind: str) -> list[FeatureColumn]:
        return [c for c in self.columns if c.kind == kind]

    def blocks(self) -> dict[str, list[FeatureColumn]]:
        out: dict[str, list[FeatureColumn]] = {}
        for c in self.by_kind("share"):
            out.setdefault(c.block, []).append(c)
        return out

    def label(self, name: str) -> str:
        for c in self.columns:
            if c.name == name:
                return c.label
        return name


def slug(text: str, *, max_words: int = 6) -> str:
    """A column-safe identifier from free text: lower-case words joined by ``_``."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = "_".join(words[:max_words])
    return out or "blank"


def _unique_slugs(values: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for v in values:
        s = slug(v)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.append(s if n == 0 else f"{s}_{n + 1}")
    return out


def _top_values(engine: Engine, col: ir.Column, limit: int) -> list[str]:
    t = col.name("v").as_table()
    t = t.filter(t.v.notnull() & (t.v.strip() != ""))
    agg = t.group_by("v").aggregate(n=t.count()).order_by([ibis.desc("n"), "v"]).limit(limit)
    return [str(r["v"]) for r in engine.to_pyarrow(agg).to_pylist()]


def _isin(col: ir.Column, values: Sequence[str]) -> ir.BooleanValue:
    return col.isin(list(values)) if len(values) > 1 else col == values[0]


@dataclass
class _Vocab:
    """What the data holds: channels, rate rules, topics, attribute values, content values."""

    channels: list[str]
    inbound_channels: list[str]
    rates: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]
    topics: list[str]
    attributes: dict[str, list[str]]
    content: dict[str, list[str]]
    has_value: bool
    combos: list[tuple[str, str, str]]  # (channel, action, direction); "" for missing
    # channels whose attempts carry content: {channel: (attempt, response actions)}, and
    # the content attribute their responses are split by (None: no such channel)
    content_rates: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
    response_by: str | None


def _vocabulary(engine: Engine, ev: ir.Table, opt: FeatureOptions) -> _Vocab:
    g = ev.group_by(["channel", "action", "direction"]).aggregate(
        n=ev.count(), n_value=ev.value_usd.count(), n_content=ev.content_id.count())
    rows = engine.to_pyarrow(g).to_pylist()
    by_channel: dict[str, int] = {}
    inbound: set[str] = set()
    n_by: dict[tuple[str, str], int] = {}
    n_content: dict[str, int] = {}
    for r in rows:
        ch = r["channel"]
        if not ch:
            continue
        by_channel[ch] = by_channel.get(ch, 0) + int(r["n"])
        n_by[(ch, r["action"])] = n_by.get((ch, r["action"]), 0) + int(r["n"])
        if r["action"] in RESPONSE_RULES.get(ch, ((), ()))[0]:
            n_content[ch] = n_content.get(ch, 0) + int(r["n_content"])
        if r["direction"] == "inbound":
            inbound.add(ch)
    channels = sorted(by_channel, key=lambda c: (-by_channel[c], c))[:40]
    rates: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
    for ch, (att, resp) in RESPONSE_RULES.items():
        if sum(n_by.get((ch, a), 0) for a in att) >= opt.min_rate_attempts:
            rates[ch] = (ch, att, resp)
    for name, (ch, att1, resp1) in FOLLOW_ON_RULES.items():
        if n_by.get((ch, att1), 0) >= opt.min_rate_attempts:
            rates[name] = (ch, (att1,), (resp1,))
    topics: list[str] = []  # filled by _event_counts from its topic counts
    attrs: dict[str, list[str]] = {}
    if opt.attribute_keys and engine.count(ev.filter(ev.attributes.notnull()).limit(1)):
        for key in opt.attribute_keys:
            vals = _top_values(engine, ev.attributes.cast("json")[key].str, opt.max_attribute_values)
            if vals:
                attrs[key] = vals
    content: dict[str, list[str]] = {}
    if engine.has_table(schemas.CONTENT.name):
        ct = engine.table(schemas.CONTENT.name)
        for attr in ("theme", "tonality", "format"):
            vals = _top_values(engine, ct[attr], 12)
            if len(vals) > 1:
                content[attr] = vals
    has_value = any(int(r["n_value"]) for r in rows)
    combos = sorted({(r["channel"] or "", r["action"] or "", r["direction"] or "") for r in rows})
    content_rates = {ch: RESPONSE_RULES[ch] for ch in rates if ch in RESPONSE_RULES
                     and n_content.get(ch, 0) >= opt.min_rate_attempts}
    response_by = opt.response_by if opt.response_by in content and content_rates else None
    return _Vocab(channels, [c for c in channels if c in inbound], rates, topics, attrs, content,
                  has_value, combos, content_rates if response_by else {}, response_by)


def _as_int64(x: ir.IntegerValue) -> ir.IntegerValue:
    return x.cast("float64").cast("int64")


def _sum_where(long: ir.Table, cond: ir.BooleanValue | None, value: str = "n") -> ir.Scalar:
    if cond is None:
        return ibis.literal(0, "int64")
    return long[value].sum(where=cond)


def _codes_in(code: ir.IntegerValue, codes: Sequence[int]) -> ir.BooleanValue | None:
    if not codes:
        return None
    return code.isin(list(codes)) if len(codes) > 1 else code == codes[0]


def _event_counts(engine: Engine, ev: ir.Table, golden: ir.Table, voc: _Vocab, max_topics: int
                  ) -> tuple[ir.Table, dict[str, list[tuple[str, str, str]]]]:
    """Temp table of raw counts per HCP, and the share blocks' parts.

    Each family is one group-by of events into a long table (hcp_id, key, n),
    pivoted to columns with conditional sums over that (much smaller) table.
    """
    blocks: dict[str, list[tuple[str, str, str]]] = {}
    pivots: list[tuple[ir.Table, list[str]]] = []

    # ---- channel x action x direction ---------------------------------------------
    combos = voc.combos
    key = {"_ch": ibis.coalesce(ev.channel, ""), "_ac": ibis.coalesce(ev.action, ""),
           "_di": ibis.coalesce(ev.direction, "")}
    cad = ev.group_by(["hcp_id", *[v.name(k) for k, v in key.items()]]).aggregate(
        n=ev.count(), v=ev.value_usd.sum())
    cm = ibis.memtable({"_ch": [c[0] for c in combos], "_ac": [c[1] for c in combos],
                        "_di": [c[2] for c in combos], "_code": list(range(len(combos)))},
                       schema={"_ch": "string", "_ac": "string", "_di": "string", "_code": "int64"})
    long = cad.inner_join(cm, ["_ch", "_ac", "_di"]).select("hcp_id", "_code", "n", "v")

    def engaged(a: str, d: str) -> bool:
        return a in ENGAGED_ACTIONS or d == "inbound"

    def total(codes: list[int]) -> ir.Scalar:
        return _sum_where(long, _codes_in(long._code, codes))

    def part(block: str, part_key: str, label: str) -> str:
        col = f"cnt_{block}__{part_key}"
        blocks.setdefault(block, []).append((part_key, col, label))
        return col

    every = list(enumerate(combos))
    aggs: dict[str, ir.Scalar] = {
        "n_events": long.n.sum(),
        "n_engaged": total([i for i, (c, a, d) in every if engaged(a, d)]),
    }
    if voc.has_value:
        aggs["value_usd"] = long.v.sum()
    for name, (ch, att, resp) in voc.rates.items():
        aggs[f"att_{name}"] = total([i for i, (c, a, d) in every if c == ch and a in att])
        aggs[f"resp_{name}"] = total([i for i, (c, a, d) in every if c == ch and a in resp])
    for ch in voc.inbound_channels:
        aggs[f"in_{slug(ch)}"] = total(
            [i for i, (c, a, d) in every if c == ch and d == "inbound"])
    aggs[part("direction", "inbound", "inbound (HCP-initiated)")] = total(
        [i for i, (c, a, d) in every if d == "inbound"])
    aggs[part("direction", "outbound", "outbound (company-initiated)")] = total(
        [i for i, (c, a, d) in every if d != "inbound"])
    for ch in voc.channels:
        aggs[part("channel", slug(ch), ch)] = total(
            [i for i, (c, a, d) in every if c == ch and engaged(a, d)])
    pivots.append((long.group_by("hcp_id").aggregate(**aggs), list(aggs)))

    # ---- local hour and weekday of HCP-timed events ----------------------------------
    hours = _hour_long(engine, ev, golden)
    aggs = {part("hour", f"h{h:02d}", f"{h:02d}h local"): hours.n.sum(where=hours._hour == h)
            for h in range(24)}
    aggs[part("day", "weekday", "weekdays")] = hours.n.sum(where=hours._dow < 5)
    aggs[part("day", "weekend", "weekends")] = hours.n.sum(where=hours._dow >= 5)
    pivots.append((hours.group_by("hcp_id").aggregate(**aggs), list(aggs)))

    # ---- content engaged with: theme, tonality, format --------------------------------
    if voc.content:
        ct = engine.table(schemas.CONTENT.name)
        cv = ct.select("content_id", *[ct[a].name(f"_c_{a}") for a in voc.content])
        cv = engine.create("_segment_content", cv.distinct(on="content_id", keep="first"),
                           temp=True)
        # content the HCP chose (inbound: web and portal views, downloads, social): what a
        # company sends depends on its campaigns, not on the HCP's taste
        ce = ev.filter((ev.direction == "inbound") & ev.content_id.notnull())
        cl = ce.group_by(["hcp_id", "content_id"]).aggregate(n=ce.count())
        cl = cl.inner_join(cv, "content_id")
        aggs = {}
        for attr, vals in voc.content.items():
            col = cl[f"_c_{attr}"]
            for v, sl in zip(vals, _unique_slugs(vals), strict=True):
                aggs[part(attr, sl, v)] = cl.n.sum(where=col == v)
        pivots.append((cl.group_by("hcp_id").aggregate(**aggs), list(aggs)))
        if voc.response_by:
            pivots.append(_content_responses(ev, cv, voc, voc.response_by))

    # ---- topics (nature of payment in Open Payments) ----------------------------------
    te = ev.filter(ev.topic.notnull() & (ev.topic.strip() != ""))
    tl = engine.create("_segment_topics", te.group_by(["hcp_id", "topic"]).aggregate(n=te.count()),
                       temp=True)
    top = tl.group_by("topic").aggregate(n=tl.n.sum()).order_by([ibis.desc("n"), "topic"])
    voc.topics = [str(r["topic"]) for r in
                  engine.to_pyarrow(top.limit(max_topics)).to_pylist()]
    if voc.topics:
        aggs = {}
        for v, sl in zip(voc.topics, _unique_slugs(voc.topics), strict=True):
            aggs[part("topic", sl, v)] = tl.n.sum(where=tl.topic == v)
        aggs[part("topic", "other", "other topics")] = tl.n.sum(where=~_isin(tl.topic, voc.topics))
        pivots.append((tl.group_by("hcp_id").aggregate(**aggs), list(aggs)))

    # ---- attribute values (manufacturer) ----------------------------------------------
    for attr_key, vals in voc.attributes.items():
        a = ev.filter(ev.attributes.notnull())
        a = a.select("hcp_id", _v=a.attributes.cast("json")[attr_key].str)
        a = a.filter(a._v.notnull())
        al = a.group_by(["hcp_id", "_v"]).aggregate(n=a.count())
        b = slug(attr_key)
        aggs = {}
        for v, sl in zip(vals, _unique_slugs(vals), strict=True):
            aggs[part(b, sl, v)] = al.n.sum(where=al._v == v)
        aggs[part(b, "other", f"other {attr_key}")] = al.n.sum(where=~_isin(al._v, vals))
        pivots.append((al.group_by("hcp_id").aggregate(**aggs), list(aggs)))

    t = golden.select("hcp_id")
    names: list[str] = []
    for pv, cols in pivots:
        j = t.left_join(pv, "hcp_id")
        t = j.select(*t.columns, *cols)
        names.extend(cols)
    # DuckDB sums integers into 128-bit integers, which Ibis types as int64 (so a cast to
    # int64 is dropped) and which are slow to store and to read: go through float64
    # (exact below 2**53)
    t = t.select("hcp_id", *[
        (ibis.coalesce(t[c], 0).cast("float64") if c == "value_usd"
         else _as_int64(ibis.coalesce(t[c], 0))).name(c)
        for c in names])
    blocks = {b: parts for b, parts in blocks.items() if len(parts) > 1}
    return engine.create("_segment_counts", t, temp=True), blocks


def content_rate_name(channel: str, attribute: str, value_slug: str) -> str:
    """Name (after ``att_`` / ``resp_`` / ``rate_``) of a channel's response rate to content
    with one value of a content attribute: ``email__theme__safety``."""
    return f"{slug(channel)}__{attribute}__{value_slug}"


def _content_responses(ev: ir.Table, cv: ir.Table, voc: _Vocab, attr: str
                       ) -> tuple[ir.Table, list[str]]:
    """Attempts and responses of the content-carrying channels per value of ``attr``.

    An email's theme changes whether it is opened as much as the HCP's liking for
    email does: the simulator's segments differ by up to 2.5 logits per theme.
    Where every attempt carries content (emails), the channel's single rate
    (``att_email`` / ``resp_email``) is the sum of these.
    """
    actions = sorted({a for att, resp in voc.content_rates.values() for a in (*att, *resp)})
    ce = ev.filter(_isin(ev.channel, list(voc.content_rates)) & _isin(ev.action, actions)
                   & ev.content_id.notnull())
    cl = ce.group_by(["hcp_id", "channel", "action", "content_id"]).aggregate(n=ce.count())
    cl = cl.inner_join(cv, "content_id")
    vals = voc.content[attr]
    aggs: dict[str, ir.Scalar] = {}
    for ch, (att, resp) in voc.content_rates.items():
        for v, sl in zip(vals, _unique_slugs(vals), strict=True):
            this = (cl.channel == ch) & (cl[f"_c_{attr}"] == v)
            name = content_rate_name(ch, attr, sl)
            aggs[f"att_{name}"] = cl.n.sum(where=this & _isin(cl.action, att))
            aggs[f"resp_{name}"] = cl.n.sum(where=this & _isin(cl.action, resp))
    return cl.group_by("hcp_id").aggregate(**aggs), list(aggs)


def _reach(engine: Engine, ev: ir.Table, channels: Sequence[str]) -> ir.Table | None:
    """Temp table hcp_id, _reach_<channel>: whether one of the HCP's records comes from a
    source that records HCP-initiated events of the channel.

    An HCP that no web source knows has no web visits in the data however much it
    reads online: its inbound volume says something about its behaviour only where
    a source could have recorded it (``log_seen_*`` is empty elsewhere).
    """
    if not channels or not engine.has_table(schemas.HCPS.name) \
            or not engine.has_table(IDENTITIES):
        return None
    rec = engine.table(schemas.HCPS.name).select("record_id", "source")
    ib = ev.filter(ev.direction == "inbound")
    carried = ib.select("record_id", "channel").distinct().inner_join(rec, "record_id")
    carried = carried.select("channel", "source").distinct()
    held = identities(engine).inner_join(rec, "record_id").select("hcp_id", "source").distinct()
    r = held.inner_join(carried, "source")
    per = r.group_by("hcp_id").aggregate(**{
        f"_reach_{slug(ch)}": (r.channel == ch).any() for ch in channels})
    return engine.create("_segment_reach", per, temp=True)


def _hour_long(engine: Engine, ev: ir.Table, golden: ir.Table) -> ir.Table:
    """Temp table hcp_id, _hour, _dow, n: HCP-timed events per local hour and weekday."""
    e = ev.filter((ev.direction == "inbound") | _isin(ev.action, HCP_TIMED_ACTIONS))
    tz = with_utc_offset(engine, golden.select("hcp_id", "state"))
    e = e.left_join(tz.select("hcp_id", "utc_offset"), "hcp_id")
    loc = e.ts + ibis.coalesce(e.utc_offset, 0).as_interval("h")
    g = e.group_by(["hcp_id", loc.hour().cast("int64").name("_hour"),
                    loc.day_of_week.index().cast("int64").name("_dow")]).aggregate(n=e.count())
    return engine.create("_segment_hours", g, temp=True)


def build_features(engine: Engine, options: FeatureOptions | None = None) -> FeatureSet:
    """Compute every HCP's features into table ``segment_features`` (sorted by hcp_id).

    Raw counts (``att_*``, ``resp_*``, ``cnt_BLOCK__PART``, ``n_BLOCK``, ``in_*``,
    ``n_events`` ...) are kept next to the derived features (``rate_*``,
    ``share_*``, ``log_*``, ``score_*``, ``stage_*``, ``pref_hour``, ``pref_weekday``)
    so that a model can use either.
    """
    opt = options or FeatureOptions()
    if not engine.has_table(GOLDEN) or not engine.has_table(EVENTS):
        raise NotBuiltError("no golden records yet: run `hcpj build` first")
    golden = engine.table(GOLDEN)
    ev = engine.table(EVENTS)
    voc = _vocabulary(engine, ev, opt)
    counts, blocks = _event_counts(engine, ev, golden, voc, opt.max_topics)
    cols: list[FeatureColumn] = []

    # block totals, then population totals (one row) -> literals for shrinkage and smoothing
    feats = engine.create("_segment_counts2", counts.mutate(**{
        f"n_{b}": sum((counts[col] for _key, col, _l in parts), ibis.literal(0, "int64"))
        for b, parts in blocks.items()}), temp=True)
    sums = {c: feats[c].sum() for c in feats.columns if c.startswith(("att_", "resp_", "cnt_"))}
    pop = engine.to_pyarrow(feats.aggregate(**sums)).to_pylist()[0] if sums else {}
    total = {c: float(v or 0) for c, v in pop.items()}

    out: dict[str, ir.Value] = {}
    m = float(opt.prior_contacts)

    def rate(name: str, block: str, label: str) -> None:
        """rate_NAME: responses per attempt shrunk to the population's rate."""
        a, r = feats[f"att_{name}"], feats[f"resp_{name}"]
        den = total[f"att_{name}"]
        p0 = total[f"resp_{name}"] / den if den > 0 else 0.5
        out[f"rate_{name}"] = (r + m * p0) / (a + m)
        cols.append(FeatureColumn(f"rate_{name}", "rate", block, label, count=f"att_{name}"))

    for name, (ch, _att, _resp) in voc.rates.items():
        rate(name, "rate", f"{ch.replace('_', ' ')} response rate" if name == ch
             else name.replace("_", " ") + " rate")
    attr = voc.response_by
    if attr:
        vals = voc.content[attr]
        for ch in voc.content_rates:
            for v, sl in zip(vals, _unique_slugs(vals), strict=True):
                rate(content_rate_name(ch, attr, sl), CONTENT_RESPONSE,
                     f"{ch.replace('_', ' ')} response rate, {attr} {v}")
    for name, label in (("n_events", "events"), ("n_engaged", "engaged events")):
        out[f"log_{name}"] = (feats[name] + 1).ln()
        cols.append(FeatureColumn(f"log_{name}", "log", "intensity", f"log(1 + {label})"))
    for ch in voc.inbound_channels:
        c = f"in_{slug(ch)}"
        out[f"log_{c}"] = (feats[c] + 1).ln()
        cols.append(FeatureColumn(f"log_{c}", "log", "intensity",
                                  f"log(1 + HCP-initiated {ch.replace('_', ' ')})"))
    if voc.has_value:
        out["log_value_usd"] = (feats.value_usd.cast("float64") + 1).ln()
        cols.append(FeatureColumn("log_value_usd", "log", "intensity", "log(1 + value USD)"))
    for b, parts in blocks.items():
        for _key, col, label in parts:
            cols.append(FeatureColumn(col, "share", b, label, count=f"n_{b}"))
    raw = [c for c in feats.columns if c != "hcp_id"]
    result = feats.select("hcp_id", *raw, **out)
    reach = _reach(engine, ev, voc.inbound_channels)
    if reach is not None:
        j = result.left_join(reach, "hcp_id")
        seen = {}
        for ch in voc.inbound_channels:
            c = slug(ch)
            seen[f"log_seen_{c}"] = ibis.ifelse(
                ibis.coalesce(j[f"_reach_{c}"], False), (j[f"in_{c}"] + 1).ln(),
                ibis.null("float64"))
            cols.append(FeatureColumn(
                f"log_seen_{c}", "log", "reach",
                f"log(1 + HCP-initiated {ch.replace('_', ' ')}), where a source records it"))
        result = j.select(*result.columns, **seen)

    survey, survey_cols = _survey_features(engine, opt)
    cols.extend(survey_cols)
    stage, stage_cols = _stage_features(engine)
    cols.extend(stage_cols)
    when = _preferred_time(engine)
    for extra in (survey, stage, when):
        if extra is None:
            continue
        j = result.left_join(extra, "hcp_id")
        result = j.select(*result.columns, *[c for c in extra.columns if c != "hcp_id"])
    if survey is not None:
        result = result.mutate(n_survey_answers=ibis.coalesce(result.n_survey_answers, 0))
    if stage is not None:
        result = result.mutate(stage_max=ibis.coalesce(result.stage_max, -1.0))
    table = engine.create(SEGMENT_FEATURES, result, order_by=["hcp_id"])
    for tmp in ("_segment_counts", "_segment_counts2", "_segment_survey", "_segment_time",
                "_segment_hours", "_segment_topics", "_segment_content", "_segment_reach"):
        engine.drop(tmp)
    spec = ibis.memtable({
        "position": list(range(len(cols))), "name": [c.name for c in cols],
        "kind": [c.kind for c in cols], "block": [c.block for c in cols],
        "label": [c.label for c in cols], "count": [c.count for c in cols],
    }, schema={"position": "int64", "name": "string", "kind": "string", "block": "string",
               "label": "string", "count": "string"})
    engine.create(FEATURE_COLUMNS, spec, order_by=["position"])
    return FeatureSet(table=table, columns=cols)


def load_feature_set(engine: Engine) -> FeatureSet:
    """The features of the last build (``segment_features`` and its column descriptions)."""
    if not engine.has_table(SEGMENT_FEATURES) or not engine.has_table(FEATURE_COLUMNS):
        raise NotBuiltError("no segment features yet: run `hcpj build` first")
    rows = engine.to_pyarrow(engine.table(FEATURE_COLUMNS).order_by("position")).to_pylist()
    cols = [FeatureColumn(r["name"], r["kind"], r["block"], r["label"], r["count"]) for r in rows]
    return FeatureSet(table=engine.table(SEGMENT_FEATURES), columns=cols)


def _survey_features(engine: Engine, opt: FeatureOptions
                     ) -> tuple[ir.Table | None, list[FeatureColumn]]:
    cols: list[FeatureColumn] = []
    if not engine.has_table(schemas.FEEDBACK.name) or not engine.has_table(IDENTITIES):
        return None, cols
    fb = engine.table(schemas.FEEDBACK.name)
    fb = fb.filter(fb.score.notnull()).inner_join(identities(engine), "record_id")
    fb = fb.mutate(_inst=fb.instrument.lower().strip())
    kinds = engine.to_pyarrow(
        fb.group_by(["_inst", "dimension"]).aggregate(n=fb.count())).to_pylist()
    if not kinds:
        return None, cols
    insts = {r["_inst"] for r in kinds}
    dims = {r["dimension"] for r in kinds}
    aggs: dict[str, ir.Scalar] = {}
    if "nps" in insts:
        aggs["score_nps"] = fb.score.mean(where=fb._inst == "nps")
        cols.append(FeatureColumn("score_nps", "score", "survey", "NPS (0-10)"))
    for d in QUALITY_DIMENSIONS:
        if d in dims:
            aggs[f"score_dim_{d}"] = fb.score.mean(where=fb.dimension == d)
            cols.append(FeatureColumn(f"score_dim_{d}", "score", "quality", f"{d} (1-5)"))
    attitude = fb.dimension.isnull() & ~fb._inst.isin(["nps", "csat"]) & fb.question.notnull()
    questions = _top_values(engine, fb.filter(attitude).question, opt.max_questions)
    for q, sl in zip(questions, _unique_slugs(questions), strict=True):
        name = f"score_q_{sl}"
        aggs[name] = fb.score.mean(where=attitude & (fb.question == q))
        cols.append(FeatureColumn(name, "score", "attitude", q))
    if "csat" in insts:
        aggs["score_csat"] = fb.score.mean(where=(fb._inst == "csat") & fb.dimension.isnull())
        cols.append(FeatureColumn("score_csat", "score", "survey", "CSAT overall"))
    aggs["n_survey_answers"] = fb.count()
    per = fb.group_by("hcp_id").aggregate(**aggs)
    return engine.create("_segment_survey", per, temp=True), cols


def _stage_features(engine: Engine) -> tuple[ir.Table | None, list[FeatureColumn]]:
    if not engine.has_table(STAGE_ENTRIES):
        return None, []
    st = engine.table(STAGE_ENTRIES)
    if not {"hcp_id", "stage_index", "entered_at"} <= set(st.columns):
        return None, []
    per = st.group_by("hcp_id").aggregate(
        _first=st.entered_at.min(), _last=st.entered_at.max(), _max=st.stage_index.max(),
        _n=st.count(),
    )
    days = (per._last.epoch_seconds() - per._first.epoch_seconds()) / 86400.0
    per = per.select(
        "hcp_id", stage_max=per._max.cast("float64"),
        stage_days_per_step=ibis.ifelse(per._n > 1, days / (per._n - 1), ibis.null()).cast("float64"),
    )
    cols = [FeatureColumn("stage_max", "stage", "stage", "furthest stage reached (index)"),
            FeatureColumn("stage_days_per_step", "stage", "stage", "days per stage step (pace)")]
    return per, cols


def _preferred_time(engine: Engine) -> ir.Table:
    """hcp_id, pref_hour, pref_weekday: each HCP's most frequent local hour / weekday (HCP-timed)."""
    hours = engine.table("_segment_hours")
    parts = []
    for col, name in (("_hour", "pref_hour"), ("_dow", "pref_weekday")):
        g = hours.group_by(["hcp_id", col]).aggregate(_n=hours.n.sum())
        w = ibis.window(group_by="hcp_id", order_by=[ibis.desc("_n"), g[col]])
        g = g.mutate(_r=ibis.row_number().over(w))
        parts.append(g.filter(g._r == 0).select("hcp_id", g[col].name(name)))
    out = parts[0].inner_join(parts[1], "hcp_id")
    return engine.create("_segment_time", out.select("hcp_id", "pref_hour", "pref_weekday"),
                         temp=True)


# --------------------------------------------------------------------------- model matrix
@dataclass
class ModelMatrix:
    """The standardised design matrix of the mixture model."""

    hcp_ids: np.ndarray
    X: np.ndarray  # n x p, standardised
    names: list[str]
    raw: dict[str, np.ndarray]  # interpretable feature columns (n,)
    mean: np.ndarray
    scale: np.ndarray


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def model_matrix(columns: Mapping[str, np.ndarray], spec: Sequence[FeatureColumn],
                 hcp_ids: np.ndarray, *, prior_events: float = 3.0) -> ModelMatrix:
    """Transform feature columns into a standardised matrix (vectorised numpy).

    rates -> logit; share blocks (count columns) -> shares smoothed towards the
    population's with ``prior_events`` pseudo-events, then centred log-ratios (one
    column per part, the last dropped as redundant); logs as they are; scores and
    stage features -> missing values imputed by the column mean. Constant columns
    are dropped. This is the matrix a Gaussian mixture would be fitted on; the
    latent-class model reads the counts directly.
    """
    parts: list[np.ndarray] = []
    names: list[str] = []
    blocks: dict[str, list[FeatureColumn]] = {}
    for c in spec:
        if c.kind == "share":
            blocks.setdefault(c.block, []).append(c)
            continue
        x = np.asarray(columns[c.name], dtype=float)
        if c.kind == "rate":
            x = _logit(x)
        if not np.isfinite(x).all():  # scores, stages, volumes a source cannot see
            mu = np.nanmean(x) if np.isfinite(x).any() else 0.0
            x = np.where(np.isfinite(x), x, mu)
        parts.append(x)
        names.append(c.name)
    for _b, cs in blocks.items():
        counts = np.column_stack([np.nan_to_num(np.asarray(columns[c.name], dtype=float))
                                  for c in cs])
        tot = counts.sum(axis=0)
        pop = tot / tot.sum() if tot.sum() > 0 else np.full(len(cs), 1.0 / len(cs))
        m = (counts + prior_events * pop) / (counts.sum(axis=1, keepdims=True) + prior_events)
        lg = np.log(np.clip(m, 1e-6, None))
        clr = lg - lg.mean(axis=1, keepdims=True)
        for j, c in enumerate(cs[:-1] if len(cs) > 2 else cs[:1]):
            parts.append(clr[:, j])
            names.append(c.name)
    X = np.column_stack(parts) if parts else np.zeros((len(hcp_ids), 0))
    mean = X.mean(axis=0) if X.size else np.zeros(0)
    scale = X.std(axis=0) if X.size else np.zeros(0)
    keep = scale > 1e-9
    X = (X[:, keep] - mean[keep]) / scale[keep]
    names = [n for n, k in zip(names, keep, strict=True) if k]
    raw = {c.name: np.asarray(columns[c.name], dtype=float) for c in spec}
    return ModelMatrix(hcp_ids=hcp_ids, X=X, names=names, raw=raw, mean=mean[keep],
                       scale=scale[keep])


def load_matrix(engine: Engine, fs: FeatureSet) -> ModelMatrix:
    """Pull the feature table to numpy and build the model matrix."""
    names = fs.names
    tbl = engine.to_pyarrow(fs.table.select("hcp_id", *names).order_by("hcp_id"))
    cols = {n: tbl.column(n).to_numpy(zero_copy_only=False).astype(float) for n in names}
    ids = np.asarray(tbl.column("hcp_id").to_pylist(), dtype=object)
    return model_matrix(cols, fs.columns, ids)
