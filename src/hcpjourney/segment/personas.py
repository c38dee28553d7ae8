"""Persona cards generated from the segments: who they are, how to reach them, what moves them.

Everything is weighted by membership: a segment's figure is the sum over HCPs
of probability x value (so an HCP that is 60/40 between two segments counts
0.6 in one and 0.4 in the other), computed by the engine in one group-by of
``segments`` joined to ``segment_features``. Path, stage-progression and
comment figures use the segment's primary members (HCPs whose most likely
segment it is).

A card holds: a descriptive name made from the segment's most distinguishing
features (engagement level, lead channel, content and time with the highest
lift over the population); size (expected HCPs), primary members and how many
of them are mixed; potential mix; top professions and specialties; channels
(share of engaged events and response rates, with lifts); content theme /
tonality / format chosen, and the themes of the content sent that the segment
answers to above the population's rate; topics and other profiled attributes
(nature of payment, manufacturer); preferred times (local hour bands, weekend share, top
weekday); typical paths (first four distinct channels of engaged events);
stage distribution and, per stage step, conversion and the activities that
progressed members had in the stage more often than those who stalled;
representative feedback comments (over-represented in the segment); quality
dimension and NPS means against the population; attitude answers.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir

from hcpjourney.contract import schemas
from hcpjourney.engine import Engine
from hcpjourney.errors import NotBuiltError
from hcpjourney.identity.golden import GOLDEN, identities
from hcpjourney.segment.features import (
    CONTENT_RESPONSE,
    DAY_NAMES,
    ENGAGED_ACTIONS,
    EVENTS,
    HOUR_BANDS,
    RESPONSE_RULES,
    SEGMENT_FEATURES,
    STAGE_ENTRIES,
    FeatureColumn,
)
from hcpjourney.segment.potential import POTENTIAL, TIERS

SEGMENTS = "segments"
ASSIGNMENTS = "segment_assignments"
PERSONAS = "personas"
PERSONA_COLUMNS: tuple[str, ...] = (
    "segment", "name", "size", "primary_hcps", "share", "mixed_hcps", "summary", "top_channel",
    "top_content", "preferred_time", "typical_path", "potential_high_share", "card",
)
PATH_LENGTH = 4
CHANNEL_LABELS: dict[str, str] = {
    "f2f_visit": "face-to-face", "remote_visit": "remote-visit", "msl_meeting": "MSL",
    "medical_inquiry": "medical-inquiry", "advisory_board": "advisory-board", "sms": "SMS",
}
BAND_WORDS: dict[str, str] = {
    "night": "night owls", "early": "early mornings", "morning": "mornings",
    "lunch": "lunchtime", "afternoon": "afternoons", "evening": "evenings", "late": "late evenings",
}


@dataclass
class PersonaCard:
    """One segment's persona (see the module docstring); lists hold small dicts."""

    segment: str
    name: str
    size: float
    primary_hcps: int
    share: float
    mixed_hcps: int = 0
    summary: list[str] = field(default_factory=list)
    engagement: dict[str, float | None] = field(default_factory=dict)
    potential: dict[str, float] = field(default_factory=dict)
    mean_potential_score: float | None = None
    professions: list[dict[str, Any]] = field(default_factory=list)
    specialties: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)
    content: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # values (themes) of the content sent to which the segment answers above the population
    content_response: list[dict[str, Any]] = field(default_factory=list)
    topics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    times: dict[str, Any] = field(default_factory=dict)
    typical_paths: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    next_stage: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    nps: dict[str, float | None] = field(default_factory=dict)
    attitudes: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonaCard:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_markdown(self) -> str:
        lines = [f"## {self.segment}: {self.name}", ""]
        lines.append(
            f"**Size** {self.size:,.1f} HCPs by membership ({self.share:.1%} of all); "
            f"{self.primary_hcps:,} HCPs have it as their most likely segment, "
            f"{self.mixed_hcps:,} of them mixed with another."
        )
        lines.append("")
        if self.summary:
            lines += ["**What sets it apart**", ""] + [f"- {s}" for s in self.summary] + [""]
        lines += ["**Potential**: " + _fmt_shares(self.potential, TIERS)
                  + (f"; mean potential score {self.mean_potential_score:.2f}"
                     if self.mean_potential_score is not None else ""), ""]
        if self.professions:
            lines.append("**Professions**: " + _fmt_items(self.professions))
        if self.specialties:
            lines.append("**Specialties**: " + _fmt_items(self.specialties))
        lines.append("")
        if self.channels:
            lines += ["**Channels**", "", "| channel | share of engaged events | lift | response rate "
                      "| population rate |", "|---|---|---|---|---|"]
            for c in self.channels:
                lines.append(
                    f"| {c['channel']} | {_pct(c.get('share'))} | {_num(c.get('lift'))} | "
                    f"{_pct(c.get('response_rate'))} | {_pct(c.get('population_rate'))} |")
            lines.append("")
        for title, groups in (("Content", self.content), ("Topics", self.topics)):
            for attr, items in groups.items():
                if items:
                    lines.append(f"**{title} — {attr}**: " + _fmt_lifts(items))
        if self.content_response:
            lines.append("**Answers best to** (content sent): " + _fmt_responses(
                self.content_response))
        if self.content or self.topics or self.content_response:
            lines.append("")
        if self.times:
            t = self.times
            lines.append(
                "**Preferred times** (local): " + _fmt_lifts(t.get("bands", [])[:3])
                + (f"; top weekday {t['top_weekday']}" if t.get("top_weekday") else "")
                + (f"; weekend share {_pct(t.get('weekend_share'))} "
                   f"(population {_pct(t.get('population_weekend_share'))})"
                   if t.get("weekend_share") is not None else ""))
            lines.append("")
        if self.typical_paths:
            lines += ["**Typical paths**", ""] + [
                f"- {p['path']} ({_pct(p['share'])} of primary members)" for p in self.typical_paths]
            lines.append("")
        if self.stages:
            lines.append("**Stages**: " + ", ".join(
                f"{s['stage']} {_pct(s['share'])}" for s in self.stages))
            lines.append("")
        if self.next_stage:
            lines += ["**What moves it to the next stage**", ""]
            for n in self.next_stage:
                drv = ", ".join(f"{d['activity']} ({_pct(d['progressed'])} vs "
                                f"{_pct(d['stalled'])})" for d in n.get("drivers", []))
                lines.append(
                    f"- {n['from_stage']} → {n['to_stage']}: conversion {_pct(n.get('conversion'))} "
                    f"(population {_pct(n.get('population_conversion'))})"
                    + (f"; progressed members more often had {drv}" if drv else ""))
            lines.append("")
        if self.quality or self.nps:
            parts = [f"{q['dimension']} {_num(q.get('score'))} (population "
                     f"{_num(q.get('population'))})" for q in self.quality]
            if self.nps.get("score") is not None:
                parts.append(f"NPS answer {_num(self.nps.get('score'))} (population "
                             f"{_num(self.nps.get('population'))})")
            lines += ["**Quality and satisfaction**: " + "; ".join(parts), ""]
        if self.attitudes:
            lines += ["**Attitudes**", ""] + [
                f"- {a['question']}: {_num(a.get('score'))} (population {_num(a.get('population'))})"
                for a in self.attitudes]
            lines.append("")
        if self.comments:
            lines += ["**In their words**", ""] + [f"> {c}" for c in self.comments]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def to_html(self) -> str:
        e = html.escape
        out = [f'<section class="persona" id="persona-{e(self.segment)}">',
               f"<h2>{e(self.segment)}: {e(self.name)}</h2>",
               f"<p><strong>Size</strong> {self.size:,.1f} HCPs by membership ({self.share:.1%}); "
               f"{self.primary_hcps:,} primary members, {self.mixed_hcps:,} mixed.</p>"]
        if self.summary:
            out.append("<h3>What sets it apart</h3><ul>"
                       + "".join(f"<li>{e(s)}</li>" for s in self.summary) + "</ul>")
        out.append(f"<p><strong>Potential</strong>: {e(_fmt_shares(self.potential, TIERS))}</p>")
        if self.professions:
            out.append(f"<p><strong>Professions</strong>: {e(_fmt_items(self.professions))}</p>")
        if self.specialties:
            out.append(f"<p><strong>Specialties</strong>: {e(_fmt_items(self.specialties))}</p>")
        if self.channels:
            rows = "".join(
                f"<tr><td>{e(str(c['channel']))}</td><td>{e(_pct(c.get('share')))}</td>"
                f"<td>{e(_num(c.get('lift')))}</td><td>{e(_pct(c.get('response_rate')))}</td>"
                f"<td>{e(_pct(c.get('population_rate')))}</td></tr>" for c in self.channels)
            out.append("<h3>Channels</h3><table><thead><tr><th>channel</th><th>share of engaged "
                       "events</th><th>lift</th><th>response rate</th><th>population rate</th>"
                       f"</tr></thead><tbody>{rows}</tbody></table>")
        for title, groups in (("Content", self.content), ("Topics", self.topics)):
            for attr, items in groups.items():
                if items:
                    out.append(f"<p><strong>{e(title)} — {e(attr)}</strong>: "
                               f"{e(_fmt_lifts(items))}</p>")
        if self.content_response:
            out.append("<p><strong>Answers best to</strong> (content sent): "
                       f"{e(_fmt_responses(self.content_response))}</p>")
        if self.times.get("bands"):
            out.append(f"<p><strong>Preferred times</strong>: "
                       f"{e(_fmt_lifts(self.times['bands'][:3]))}"
                       + (f"; top weekday {e(str(self.times['top_weekday']))}"
                          if self.times.get("top_weekday") else "") + "</p>")
        if self.typical_paths:
            out.append("<h3>Typical paths</h3><ol>" + "".join(
                f"<li>{e(p['path'])} ({e(_pct(p['share']))})</li>" for p in self.typical_paths)
                + "</ol>")
        if self.stages:
            out.append("<p><strong>Stages</strong>: " + e(", ".join(
                f"{s['stage']} {_pct(s['share'])}" for s in self.stages)) + "</p>")
        if self.next_stage:
            steps: list[str] = []
            for n in self.next_stage:
                drv = ", ".join(f"{d['activity']} ({_pct(d['progressed'])} vs {_pct(d['stalled'])})"
                                for d in n.get("drivers", []))
                steps.append(f"<li>{e(str(n['from_stage']))} → {e(str(n['to_stage']))}: "
                             f"conversion {e(_pct(n.get('conversion')))}"
                             + (f"; drivers: {e(drv)}" if drv else "") + "</li>")
            out.append("<h3>What moves it to the next stage</h3><ul>" + "".join(steps) + "</ul>")
        if self.quality:
            out.append("<h3>Quality dimensions</h3><table><tbody>" + "".join(
                f"<tr><td>{e(q['dimension'])}</td><td>{e(_num(q.get('score')))}</td>"
                f"<td>{e(_num(q.get('population')))}</td></tr>" for q in self.quality)
                + "</tbody></table>")
        if self.comments:
            out.append("<h3>In their words</h3>" + "".join(
                f"<blockquote>{e(c)}</blockquote>" for c in self.comments))
        out.append("</section>")
        return "\n".join(out)


def _pct(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.0%}"


def _num(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.2f}"


def _fmt_shares(d: dict[str, float], order: Sequence[str]) -> str:
    return ", ".join(f"{k} {_pct(d[k])}" for k in order if d.get(k))


def _fmt_items(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i['value']} {_pct(i['share'])}" for i in items)


def _fmt_lifts(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i['value']} {_pct(i['share'])} (x{_num(i['lift'])})" for i in items)


def cards_markdown(cards: Sequence[PersonaCard]) -> str:
    return "# Personas\n\n" + "\n".join(c.to_markdown() for c in cards)


def cards_html(cards: Sequence[PersonaCard], *, title: str = "Personas") -> str:
    """A standalone HTML page (inline style, no external assets)."""
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
             "section.persona{border:1px solid #ccc;border-radius:8px;padding:1rem;margin:1rem 0}"
             "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem}"
             "blockquote{color:#444;border-left:3px solid #aaa;margin:.3rem 0;padding-left:.6rem}")
    body = "\n".join(c.to_html() for c in cards)
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n"
            "</body></html>\n")


# ----------------------------------------------------------------------- build
def _label(value: str) -> str:
    return CHANNEL_LABELS.get(value, value.replace("_", " "))


def _weighted(engine: Engine, columns: Sequence[FeatureColumn]) -> tuple[dict[str, dict[str, float]],
                                                                          dict[str, float]]:
    """Per segment: sum(p * x) of count columns and weighted means of score columns.

    Returns ({segment: {name: value}}, {name: population value}); ``_mass`` is the
    segment's expected size. Scores: sum(p * x) / sum(p where x is known).
    """
    seg = engine.table(SEGMENTS)
    f = engine.table(SEGMENT_FEATURES)
    count_cols = [c for c in f.columns if c.startswith(("att_", "resp_", "cnt_", "n_", "in_"))
                  and c != "n_survey_answers"]
    if "value_usd" in f.columns:
        count_cols.append("value_usd")
    score_cols = [c.name for c in columns if c.kind == "score" and c.name in f.columns]
    j = seg.inner_join(f, "hcp_id")
    aggs: dict[str, ir.Scalar] = {"_mass": j.probability.sum()}
    for c in count_cols:
        aggs[c] = (j.probability * j[c].cast("float64")).sum()
    for c in score_cols:
        aggs[c] = (j.probability * j[c]).sum() / j.probability.sum(where=j[c].notnull()).nullif(0)
    rows = engine.to_pyarrow(j.group_by("segment").aggregate(**aggs)).to_pylist()
    out = {r["segment"]: {k: (float(v) if v is not None else math.nan) for k, v in r.items()
                          if k != "segment"} for r in rows}
    paggs: dict[str, ir.Scalar] = {"_mass": f.count().cast("float64")}
    for c in count_cols:
        paggs[c] = f[c].cast("float64").sum()
    for c in score_cols:
        paggs[c] = f[c].mean()
    prow = engine.to_pyarrow(f.aggregate(**paggs)).to_pylist()[0]
    pop = {k: (float(v) if v is not None else math.nan) for k, v in prow.items()}
    return out, pop


def _weighted_by(engine: Engine, table: ir.Table, key: str) -> dict[str, dict[str, float]]:
    """{segment: {value of key: membership share}} for a per-HCP attribute table (hcp_id, key)."""
    seg = engine.table(SEGMENTS)
    j = seg.left_join(table.select("hcp_id", _k=table[key].cast("string")), "hcp_id")
    j = j.mutate(_k=ibis.coalesce(j._k, "unknown"))
    g = j.group_by(["segment", "_k"]).aggregate(w=j.probability.sum())
    out: dict[str, dict[str, float]] = {}
    for r in engine.to_pyarrow(g).to_pylist():
        out.setdefault(r["segment"], {})[r["_k"]] = float(r["w"] or 0.0)
    for d in out.values():
        tot = sum(d.values()) or 1.0
        for k in d:
            d[k] /= tot
    return out


def _top(d: dict[str, float], n: int = 3, *, skip: Sequence[str] = ()) -> list[dict[str, Any]]:
    items = sorted(((k, v) for k, v in d.items() if k not in skip and v > 0),
                   key=lambda kv: (-kv[1], kv[0]))
    return [{"value": k, "share": round(v, 4)} for k, v in items[:n]]


def _block_items(seg: dict[str, float], pop: dict[str, float], parts: list[FeatureColumn],
                 total_col: str) -> list[dict[str, Any]]:
    st = seg.get(total_col, 0.0)
    pt = pop.get(total_col, 0.0)
    items = []
    for c in parts:
        s = seg.get(c.name, 0.0) / st if st > 0 else math.nan
        p = pop.get(c.name, 0.0) / pt if pt > 0 else math.nan
        lift = s / p if p and p > 0 and not math.isnan(s) else math.nan
        items.append({"value": c.label, "key": c.name.split("__", 1)[-1], "share": _r(s),
                      "population": _r(p), "lift": _r(lift)})
    return items


def _r(x: float | None, nd: int = 4) -> float | None:
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return round(float(x), nd)


def _hour_bands(seg: dict[str, float], pop: dict[str, float]) -> list[dict[str, Any]]:
    out = []
    st, pt = seg.get("n_hour", 0.0), pop.get("n_hour", 0.0)
    for band, lo, hi in HOUR_BANDS:
        s = sum(seg.get(f"cnt_hour__h{h:02d}", 0.0) for h in range(lo, hi))
        p = sum(pop.get(f"cnt_hour__h{h:02d}", 0.0) for h in range(lo, hi))
        ss = s / st if st > 0 else math.nan
        ps = p / pt if pt > 0 else math.nan
        out.append({"value": f"{band} ({lo:02d}-{hi:02d}h)", "key": band, "share": _r(ss),
                    "population": _r(ps), "lift": _r(ss / ps if ps and ps > 0 else math.nan)})
    return out


def build_personas(engine: Engine, columns: Sequence[FeatureColumn]) -> list[PersonaCard]:
    """Compute every segment's card and write table ``personas`` (one row per segment)."""
    if not engine.has_table(SEGMENTS) or not engine.has_table(SEGMENT_FEATURES):
        raise NotBuiltError("no segments yet: run `hcpj build` first")
    wsum, pop = _weighted(engine, columns)
    n_all = pop.get("_mass", 0.0) or 1.0
    assign = engine.table(ASSIGNMENTS)
    prim = {r["segment"]: (int(r["n"]), int(r["mixed"])) for r in engine.to_pyarrow(
        assign.group_by("segment").aggregate(n=assign.count(), mixed=assign.mixed.sum()))
        .to_pylist()}
    potential = (_weighted_by(engine, engine.table(POTENTIAL), "potential_tier")
                 if engine.has_table(POTENTIAL) else {})
    pscore = {}
    if engine.has_table(POTENTIAL):
        seg = engine.table(SEGMENTS)
        pt = engine.table(POTENTIAL)
        j = seg.inner_join(pt.select("hcp_id", "potential_score"), "hcp_id")
        g = j.group_by("segment").aggregate(
            s=(j.probability * j.potential_score).sum()
            / j.probability.sum(where=j.potential_score.notnull()).nullif(0))
        pscore = {r["segment"]: r["s"] for r in engine.to_pyarrow(g).to_pylist()}
    golden = engine.table(GOLDEN)
    professions = _weighted_by(engine, golden, "profession")
    specialties = _weighted_by(engine, golden, "specialty")
    blocks: dict[str, list[FeatureColumn]] = {}
    for c in columns:
        if c.kind == "share":
            blocks.setdefault(c.block, []).append(c)
    rates = [c for c in columns if c.kind == "rate" and c.block == "rate"]
    paths = _typical_paths(engine)
    stage_dist, progress = _stage_figures(engine)
    comments = _comments(engine)

    cards: list[PersonaCard] = []
    for segment in sorted(wsum, key=_segment_key):
        s = wsum[segment]
        mass = s.get("_mass", 0.0)
        primary, mixed = prim.get(segment, (0, 0))
        card = PersonaCard(segment=segment, name=segment, size=round(mass, 2),
                           primary_hcps=primary, share=round(mass / n_all, 4), mixed_hcps=mixed)
        card.engagement = {
            "events_per_hcp": _r(s.get("n_events", 0.0) / mass if mass > 0 else math.nan),
            "population_events_per_hcp": _r(pop.get("n_events", 0.0) / n_all),
            "engaged_per_hcp": _r(s.get("n_engaged", 0.0) / mass if mass > 0 else math.nan),
            "population_engaged_per_hcp": _r(pop.get("n_engaged", 0.0) / n_all),
        }
        card.potential = {k: round(v, 4) for k, v in potential.get(segment, {}).items()}
        ps = pscore.get(segment)
        card.mean_potential_score = _r(ps) if ps is not None else None
        card.professions = _top(professions.get(segment, {}), skip=("unknown",))
        card.specialties = _top(specialties.get(segment, {}), skip=("unknown",))
        # channels: engaged mix + response rates
        chan = {i["key"]: i for i in _block_items(s, pop, blocks.get("channel", []), "n_channel")}
        for c in rates:
            name = c.name[len("rate_"):]
            att, resp = f"att_{name}", f"resp_{name}"
            rate = s.get(resp, 0.0) / s[att] if s.get(att, 0.0) > 0 else math.nan
            prate = pop.get(resp, 0.0) / pop[att] if pop.get(att, 0.0) > 0 else math.nan
            shown = name if name in RESPONSE_RULES else c.label  # follow-on rates by label
            item = chan.setdefault(name, {"value": shown, "key": name, "share": None,
                                          "population": None, "lift": None})
            item["response_rate"] = _r(rate)
            item["population_rate"] = _r(prate)
            item["rate_lift"] = _r(rate / prate if prate and prate > 0 else math.nan)
        card.channels = sorted(
            ({"channel": v["value"], **{k: v.get(k) for k in (
                "share", "population", "lift", "response_rate", "population_rate", "rate_lift")}}
             for v in chan.values() if (v.get("share") or 0) > 0 or v.get("response_rate")),
            key=lambda v: (-(v.get("share") or 0.0), str(v["channel"])))
        for attr in ("theme", "tonality", "format"):
            if attr in blocks:
                items = _block_items(s, pop, blocks[attr], f"n_{attr}")
                card.content[attr] = _by_lift(items)
        card.content_response = _content_response(s, pop, columns)
        for b, parts in blocks.items():
            if b in ("theme", "tonality", "format", "channel", "hour", "day", "direction"):
                continue
            card.topics[b] = _by_lift(_block_items(s, pop, parts, f"n_{b}"))
        bands = _hour_bands(s, pop)
        day_items = {i["key"]: i for i in _block_items(s, pop, blocks.get("day", []), "n_day")}
        card.times = {
            "bands": sorted((b for b in bands if b["share"]), key=lambda b: -(b["lift"] or 0.0)),
            "weekend_share": day_items.get("weekend", {}).get("share"),
            "population_weekend_share": day_items.get("weekend", {}).get("population"),
            "top_weekday": _top_weekday(engine, segment),
        }
        card.typical_paths = paths.get(segment, [])
        card.stages = stage_dist.get(segment, [])
        card.next_stage = progress.get(segment, [])
        card.comments = comments.get(segment, [])
        for c in columns:
            if c.kind != "score":
                continue
            val = {"score": _r(s.get(c.name, math.nan)), "population": _r(pop.get(c.name, math.nan))}
            if c.block == "quality":
                card.quality.append({"dimension": c.label.split(" (")[0], **val})
            elif c.name == "score_nps":
                card.nps = val
            elif c.block == "attitude":
                card.attitudes.append({"question": c.label, **val})
        card.summary, card.name = _describe(card)
        cards.append(card)
    _dedupe_names(cards)
    rows = [_row(c) for c in cards]
    schema = ibis.schema({
        "segment": "string", "name": "string", "size": "float64", "primary_hcps": "int64",
        "share": "float64", "mixed_hcps": "int64", "summary": "string", "top_channel": "string",
        "top_content": "string", "preferred_time": "string", "typical_path": "string",
        "potential_high_share": "float64", "card": "string"})
    data = {k: [r[k] for r in rows] for k in PERSONA_COLUMNS}
    engine.create(PERSONAS, ibis.memtable(data, schema=schema), order_by=["segment"])
    return cards


def _content_response(seg: dict[str, float], pop: dict[str, float],
                      columns: Sequence[FeatureColumn], n: int = 3) -> list[dict[str, Any]]:
    """The content values (themes) the segment answers best to, by lift of its response
    rate over the population's, pooled over the content-carrying channels: rate = sum of
    responses / sum of attempts of the ``content_response`` rates of that value."""
    pooled: dict[tuple[str, str], list[float]] = {}
    for c in columns:
        if c.block != CONTENT_RESPONSE or c.count is None:
            continue
        name = c.name[len("rate_"):]
        _channel, attr, _key = name.split("__", 2)
        value = c.label.split(f", {attr} ", 1)[-1]
        acc = pooled.setdefault((attr, value), [0.0, 0.0, 0.0, 0.0])
        acc[0] += seg.get(c.count, 0.0)
        acc[1] += seg.get(f"resp_{name}", 0.0)
        acc[2] += pop.get(c.count, 0.0)
        acc[3] += pop.get(f"resp_{name}", 0.0)
    ranked: list[tuple[float, str, dict[str, Any]]] = []
    for (attr, value), (sa, sr, pa, pr) in pooled.items():
        if sa <= 0 or pa <= 0 or pr <= 0:
            continue
        rate, prate = sr / sa, pr / pa
        if rate / prate >= 1.05:
            ranked.append((rate / prate, value, {
                "attribute": attr, "value": value, "response_rate": _r(rate),
                "population_rate": _r(prate), "lift": _r(rate / prate)}))
    ranked.sort(key=lambda t: (-t[0], t[1]))
    return [item for _lift, _v, item in ranked[:n]]


def _fmt_responses(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i['value']} {_pct(i.get('response_rate'))} (population "
                     f"{_pct(i.get('population_rate'))})" for i in items)


def _by_lift(items: list[dict[str, Any]], n: int = 3, min_share: float = 0.05) -> list[dict[str, Any]]:
    keep = [i for i in items if (i.get("share") or 0.0) >= min_share]
    keep.sort(key=lambda i: (-(i.get("lift") or 0.0), str(i["value"])))
    return keep[:n]


def _segment_key(label: str) -> tuple[int, str]:
    if len(label) > 1 and label[0] == "S" and label[1:].isdigit():
        return int(label[1:]), ""
    return 10**9, label


def _row(c: PersonaCard) -> dict[str, Any]:
    top_channel = c.channels[0]["channel"] if c.channels else None
    content = next((items[0]["value"] for items in c.content.values() if items), None)
    if content is None:
        content = next((items[0]["value"] for items in c.topics.values() if items), None)
    bands = c.times.get("bands") or []
    return {
        "segment": c.segment, "name": c.name, "size": c.size, "primary_hcps": c.primary_hcps,
        "share": c.share, "mixed_hcps": c.mixed_hcps, "summary": "; ".join(c.summary),
        "top_channel": top_channel, "top_content": content,
        "preferred_time": bands[0]["value"] if bands else None,
        "typical_path": c.typical_paths[0]["path"] if c.typical_paths else None,
        "potential_high_share": c.potential.get("high"),
        "card": json.dumps(c.to_dict(), sort_keys=True),
    }


def _describe(card: PersonaCard) -> tuple[list[str], str]:
    """Summary sentences and a name from the card's most distinguishing figures."""
    summary: list[str] = []
    eng = card.engagement
    ratio = None
    if eng.get("engaged_per_hcp") is not None and eng.get("population_engaged_per_hcp"):
        ratio = float(eng["engaged_per_hcp"] or 0.0) / float(eng["population_engaged_per_hcp"] or 1.0)
    level = ("Highly engaged" if ratio is not None and ratio >= 1.25 else
             "Low-engagement" if ratio is not None and ratio <= 0.8 else "Moderately engaged")
    if ratio is not None:
        summary.append(f"{ratio:.2f}x the population's engaged events per HCP")
    # lead channel: highest lift of the engaged mix (or of response rates)
    lead = None
    best = 1.1
    for c in card.channels:
        lift = c.get("lift") or 0.0
        if (c.get("share") or 0.0) >= 0.05 and lift > best:
            best, lead = lift, str(c["channel"])
    rate_best = max(card.channels, key=lambda c: c.get("rate_lift") or 0.0, default=None)
    if lead is None and rate_best and (rate_best.get("rate_lift") or 0.0) >= 1.1:
        lead = str(rate_best["channel"])
    if lead:
        summary.append(f"{_label(lead)} over-represented (x{best:.2f})" if best > 1.1 else
                       f"best response to {_label(lead)}")
    if rate_best and (rate_best.get("rate_lift") or 0.0) >= 1.15:
        what = str(rate_best["channel"])
        rates = (f"{_pct(rate_best.get('response_rate'))} (population "
                 f"{_pct(rate_best.get('population_rate'))})")
        summary.append(f"responds to {_label(what)} at {rates}" if what in RESPONSE_RULES
                       else f"{what} {rates}")
    # content or topic with the highest lift
    content = None
    cbest = 1.1
    for groups in (card.content, card.topics):
        for attr, items in groups.items():
            for i in items:
                if i.get("key") == "other":
                    continue
                if (i.get("lift") or 0.0) > cbest:
                    cbest, content = float(i["lift"] or 0.0), (attr, str(i["value"]))
    if content:
        summary.append(f"{content[0]} {content[1]} x{cbest:.2f}")
    mostly = None
    if content is None:  # nothing over-represented: name the segment by its largest topic
        top = [i for items in card.topics.values() for i in items if i.get("key") != "other"]
        if top:
            mostly = str(max(top, key=lambda i: i.get("share") or 0.0)["value"])
    band = next((b for b in card.times.get("bands", []) if (b.get("lift") or 0.0) >= 1.1), None)
    if band:
        summary.append(f"active in the {band['value']} local (x{band['lift']:.2f})")
    for a in card.attitudes + card.quality:
        sc, pp = a.get("score"), a.get("population")
        if sc is not None and pp is not None and abs(sc - pp) >= 0.4:
            topic = a.get("question") or a.get("dimension")
            summary.append(f"{topic}: {sc:.1f} vs {pp:.1f}")
    pot = card.potential.get("high")
    if pot is not None and pot >= 0.4:
        summary.append(f"{pot:.0%} high potential")
    name = level
    if lead:
        name += f", {_label(lead)}-first"
    extras = []
    if content:
        extras.append(_short(_label(content[1])) + (
            " content" if content[0] in ("theme", "tonality", "format") else ""))
    elif mostly:
        extras.append("mostly " + _short(mostly))
    if band:
        extras.append(BAND_WORDS.get(str(band["key"]), str(band["key"])))
    if extras:
        name += ": " + ", ".join(extras)
    return summary, name


def _short(text: str, limit: int = 40) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (with an ellipsis)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:-")
    return cut + "…"


def _dedupe_names(cards: list[PersonaCard]) -> None:
    seen: dict[str, int] = {}
    for c in cards:
        seen[c.name] = seen.get(c.name, 0) + 1
    for c in cards:
        if seen[c.name] > 1:
            c.name = f"{c.name} ({c.segment})"


def _top_weekday(engine: Engine, segment: str) -> str | None:
    f = engine.table(SEGMENT_FEATURES)
    if "pref_weekday" not in f.columns:
        return None
    a = engine.table(ASSIGNMENTS)
    j = a.filter(a.segment == segment).inner_join(f.select("hcp_id", "pref_weekday"), "hcp_id")
    j = j.filter(j.pref_weekday.notnull())
    g = j.group_by("pref_weekday").aggregate(n=j.count()).order_by(
        [ibis.desc("n"), "pref_weekday"]).limit(1)
    rows = engine.to_pyarrow(g).to_pylist()
    return DAY_NAMES[int(rows[0]["pref_weekday"])] if rows else None


def _typical_paths(engine: Engine, top: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Most common first PATH_LENGTH distinct (consecutive) engaged channels of primary members."""
    ev = engine.table(EVENTS)
    a = engine.table(ASSIGNMENTS).select("hcp_id", "segment")
    e = ev.filter(ev.action.isin(list(ENGAGED_ACTIONS)) | (ev.direction == "inbound"))
    e = e.select("hcp_id", "ts", "event_id", "channel")
    w = ibis.window(group_by="hcp_id", order_by=["ts", "event_id"])
    e = e.mutate(_prev=e.channel.lag().over(w))
    e = e.filter(e._prev.isnull() | (e._prev != e.channel))
    e = e.mutate(_n=ibis.row_number().over(w))
    e = e.filter(e._n < PATH_LENGTH)
    p = e.group_by("hcp_id").aggregate(
        path=e.channel.group_concat(" → ", order_by=[e.ts, e.event_id]))
    j = a.inner_join(p, "hcp_id")
    g = j.group_by(["segment", "path"]).aggregate(n=j.count())
    tot = a.group_by("segment").aggregate(members=a.count())
    g = g.inner_join(tot, "segment")
    w2 = ibis.window(group_by="segment", order_by=[ibis.desc("n"), "path"])
    g = g.mutate(_r=ibis.row_number().over(w2))
    g = g.filter(g._r < top)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in engine.to_pyarrow(g.order_by(["segment", "_r"])).to_pylist():
        out.setdefault(r["segment"], []).append(
            {"path": r["path"], "hcps": int(r["n"]), "share": round(r["n"] / r["members"], 4)})
    return out


def _stage_figures(engine: Engine, top: int = 3) -> tuple[dict[str, list[dict[str, Any]]],
                                                          dict[str, list[dict[str, Any]]]]:
    """Stage distribution per segment and, per stage step, conversion and drivers."""
    if not engine.has_table(STAGE_ENTRIES):
        return {}, {}
    st = engine.table(STAGE_ENTRIES)
    if not {"hcp_id", "stage", "stage_index", "entered_at"} <= set(st.columns):
        return {}, {}
    seg = engine.table(SEGMENTS)
    names = {int(r["stage_index"]): r["stage"] for r in engine.to_pyarrow(
        st.group_by(["stage_index", "stage"]).aggregate(n=st.count())).to_pylist()}
    order = sorted(names)
    furthest = st.group_by("hcp_id").aggregate(stage_index=st.stage_index.max())
    j = seg.left_join(furthest, "hcp_id")
    j = j.mutate(_i=ibis.coalesce(j.stage_index, 0))
    g = j.group_by(["segment", "_i"]).aggregate(w=j.probability.sum())
    mass: dict[str, float] = {}
    rows = engine.to_pyarrow(g).to_pylist()
    for r in rows:
        mass[r["segment"]] = mass.get(r["segment"], 0.0) + float(r["w"])
    dist: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["segment"], r["_i"])):
        name = names.get(int(r["_i"]), "none")
        dist.setdefault(r["segment"], []).append(
            {"stage": name, "share": round(float(r["w"]) / (mass[r["segment"]] or 1.0), 4)})
    # conversion per step (membership-weighted) and the population's
    ent = seg.inner_join(st.select("hcp_id", "stage_index"), "hcp_id")
    cg = ent.group_by(["segment", "stage_index"]).aggregate(w=ent.probability.sum())
    conv: dict[tuple[str, int], float] = {
        (r["segment"], int(r["stage_index"])): float(r["w"]) for r in engine.to_pyarrow(cg).to_pylist()}
    pc = {int(r["stage_index"]): int(r["n"]) for r in engine.to_pyarrow(
        st.group_by("stage_index").aggregate(n=st.count())).to_pylist()}
    drivers = _drivers(engine, order, top)
    progress: dict[str, list[dict[str, Any]]] = {}
    for segment in mass:
        steps = []
        for a, b in itertools.pairwise(order):
            wa, wb = conv.get((segment, a), 0.0), conv.get((segment, b), 0.0)
            steps.append({
                "from_stage": names[a], "to_stage": names[b],
                "conversion": _r(wb / wa) if wa > 0 else None,
                "population_conversion": _r(pc.get(b, 0) / pc[a]) if pc.get(a) else None,
                "drivers": drivers.get((segment, a), []),
            })
        progress[segment] = steps
    return dist, progress


def _drivers(engine: Engine, order: list[int], top: int) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Activities primary members had while in stage a: progressed vs stalled, by prevalence gap."""
    st = engine.table(STAGE_ENTRIES)
    a = engine.table(ASSIGNMENTS).select("hcp_id", "segment")
    ev = engine.table(EVENTS)
    e = ev.filter(ev.action.isin(list(ENGAGED_ACTIONS)) | (ev.direction == "inbound"))
    e = e.select("hcp_id", "ts", "event_id", activity=e.channel.concat(":", e.action))
    parts = []
    for x, y in itertools.pairwise(order):
        sa = st.filter(st.stage_index == x).select("hcp_id", _from="entered_at")
        sb = st.filter(st.stage_index == y).select("hcp_id", _to="entered_at",
                                                   _to_event=st["event_id"] if "event_id" in
                                                   st.columns else ibis.null("string"))
        m = a.inner_join(sa, "hcp_id").left_join(sb, "hcp_id")
        m = m.select("hcp_id", "segment", "_from", "_to", "_to_event",
                     _progressed=m._to.notnull(), _step=ibis.literal(x, "int64"))
        parts.append(m)
    if not parts:
        return {}
    members = parts[0]
    for p in parts[1:]:
        members = members.union(p, distinct=False)
    j = members.inner_join(e, "hcp_id")
    inside = (j.ts >= j._from) & (j._to.isnull() | (j.ts < j._to))
    inside &= j._to_event.isnull() | (j.event_id != j._to_event)
    j = j.filter(inside)
    had = j.select("hcp_id", "segment", "_step", "_progressed", "activity").distinct()
    g = had.group_by(["segment", "_step", "_progressed", "activity"]).aggregate(n=had.count())
    base = members.group_by(["segment", "_step", "_progressed"]).aggregate(members=members.count())
    rows = engine.to_pyarrow(g).to_pylist()
    sizes = {(r["segment"], int(r["_step"]), bool(r["_progressed"])): int(r["members"])
             for r in engine.to_pyarrow(base).to_pylist()}
    prev: dict[tuple[str, int], dict[str, dict[bool, float]]] = {}
    for r in rows:
        key = (r["segment"], int(r["_step"]))
        size = sizes.get((r["segment"], int(r["_step"]), bool(r["_progressed"])), 0)
        if size:
            prev.setdefault(key, {}).setdefault(r["activity"], {})[bool(r["_progressed"])] = (
                int(r["n"]) / size)
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for key, acts in prev.items():
        items: list[dict[str, Any]] = [
            {"activity": act, "progressed": round(v.get(True, 0.0), 4),
             "stalled": round(v.get(False, 0.0), 4)} for act, v in acts.items()]
        items = [i for i in items if i["progressed"] - i["stalled"] > 0.02]
        items.sort(key=lambda i: (-(i["progressed"] - i["stalled"]), i["activity"]))
        out[key] = items[:top]
    return out


def _comments(engine: Engine, top: int = 3) -> dict[str, list[str]]:
    """Comments over-represented among a segment's primary members (then the most frequent)."""
    if not engine.has_table(schemas.FEEDBACK.name) or not engine.has_table("identities"):
        return {}
    fb = engine.table(schemas.FEEDBACK.name)
    fb = fb.filter(fb.comment.notnull() & (fb.comment.strip() != ""))
    fb = fb.inner_join(identities(engine), "record_id")
    a = engine.table(ASSIGNMENTS).select("hcp_id", "segment")
    j = fb.inner_join(a, "hcp_id").select("segment", c=fb.comment.strip())
    g = j.group_by(["segment", "c"]).aggregate(n=j.count())
    rows = engine.to_pyarrow(g).to_pylist()
    seg_tot: dict[str, int] = {}
    pop: dict[str, int] = {}
    for r in rows:
        seg_tot[r["segment"]] = seg_tot.get(r["segment"], 0) + int(r["n"])
        pop[r["c"]] = pop.get(r["c"], 0) + int(r["n"])
    total = sum(pop.values()) or 1
    scored: dict[str, list[tuple[float, int, str]]] = {}
    for r in rows:
        n, s = int(r["n"]), r["segment"]
        lift = (n / seg_tot[s]) / (pop[r["c"]] / total)
        scored.setdefault(s, []).append((lift, n, r["c"]))
    out: dict[str, list[str]] = {}
    for s, items in scored.items():
        over = sorted((i for i in items if i[0] > 1.0 and i[1] >= 2),
                      key=lambda i: (-(i[0] * math.log1p(i[1])), i[2]))
        chosen = [i[2] for i in over[:top]]
        if len(chosen) < top:
            rest = sorted((i for i in items if i[2] not in chosen), key=lambda i: (-i[1], i[2]))
            chosen += [i[2] for i in rest[: top - len(chosen)]]
        out[s] = chosen
    return out


def persona_cards(engine: Engine) -> list[PersonaCard]:
    """The persona cards of the last build (table ``personas``), in segment order."""
    if not engine.has_table(PERSONAS):
        raise NotBuiltError("no personas yet: run `hcpj build` first")
    t = engine.table(PERSONAS)
    rows = engine.to_pyarrow(t.select("segment", "card")).to_pylist()
    cards = [PersonaCard.from_dict(json.loads(r["card"])) for r in rows]
    return sorted(cards, key=lambda c: _segment_key(c.segment))
