"""Persona cards: membership-weighted figures equal a plain-Python computation."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pytest

from hcpjourney.segment.features import ENGAGED_ACTIONS
from hcpjourney.segment.personas import PersonaCard, cards_html, cards_markdown, persona_cards

from .conftest import World


@pytest.fixture(scope="module")
def data(segmented: tuple[World, Any]) -> dict[str, Any]:
    w, summary = segmented
    with w.engine(read_only=True) as eng:
        def rows(t: Any) -> list[dict[str, Any]]:
            return eng.to_pyarrow(t).to_pylist()

        fb = eng.table("feedback").inner_join(eng.table("identities"), "record_id")
        return {
            "summary": summary,
            "cards": persona_cards(eng),
            "table": rows(eng.table("personas")),
            "segments": rows(eng.table("segments")),
            "assign": {r["hcp_id"]: r for r in rows(eng.table("segment_assignments"))},
            "features": {r["hcp_id"]: r for r in rows(eng.table("segment_features"))},
            "potential": {r["hcp_id"]: r for r in rows(eng.table("hcp_potential"))},
            "stages": rows(eng.table("stage_entries")),
            "events": rows(eng.table("events").select(
                "hcp_id", "ts", "event_id", "channel", "action", "direction")),
            "comments": rows(fb.filter(fb.comment.notnull()).select("hcp_id", "comment")),
        }


def test_one_card_per_segment(data: dict[str, Any]) -> None:
    cards: list[PersonaCard] = data["cards"]
    assert [c.segment for c in cards] == ["S1", "S2", "S3", "S4", "S5"]
    assert [r["segment"] for r in data["table"]] == ["S1", "S2", "S3", "S4", "S5"]
    assert len({c.name for c in cards}) == 5 and all(c.name for c in cards)
    assert data["summary"].personas == [c.name for c in cards]
    n = len(data["assign"])
    assert sum(c.size for c in cards) == pytest.approx(n, abs=0.05)
    primary = Counter(a["segment"] for a in data["assign"].values())
    mixed = Counter(a["segment"] for a in data["assign"].values() if a["mixed"])
    for c in cards:
        assert c.primary_hcps == primary[c.segment]
        assert c.mixed_hcps == mixed[c.segment]
        assert c.share == pytest.approx(c.size / n, abs=1e-4)
    # the stored card is the card
    for c, r in zip(cards, data["table"], strict=True):
        assert PersonaCard.from_dict(json.loads(r["card"])) == c
        assert r["name"] == c.name and r["top_channel"] == c.channels[0]["channel"]


def test_weighted_channel_mix_potential_and_quality(data: dict[str, Any]) -> None:
    f, pot = data["features"], data["potential"]
    w: dict[str, Counter[str]] = defaultdict(Counter)
    for r in data["segments"]:
        x, p, s = f[r["hcp_id"]], r["probability"], r["segment"]
        w[s]["mass"] += p
        w[s]["n_channel"] += p * x["n_channel"]
        for ch in ("web", "f2f_visit", "email"):
            w[s][ch] += p * x[f"cnt_channel__{ch}"]
        w[s]["tier_" + pot[r["hcp_id"]]["potential_tier"]] += p
        if x["score_dim_relevant"] is not None:
            w[s]["rel"] += p * x["score_dim_relevant"]
            w[s]["rel_mass"] += p
        w[s]["att"] += p * x["att_email"]
        w[s]["resp"] += p * x["resp_email"]
    for c in data["cards"]:
        ref = w[c.segment]
        chans = {i["channel"]: i for i in c.channels}
        for ch in ("web", "f2f_visit", "email"):
            assert chans[ch]["share"] == pytest.approx(ref[ch] / ref["n_channel"], abs=1e-4)
        assert chans["email"]["response_rate"] == pytest.approx(ref["resp"] / ref["att"], abs=1e-4)
        for tier in ("high", "medium", "low", "unknown"):
            assert c.potential.get(tier, 0.0) == pytest.approx(ref["tier_" + tier] / ref["mass"],
                                                                abs=1e-4)
        rel = next(q for q in c.quality if q["dimension"] == "relevant")
        assert rel["score"] == pytest.approx(ref["rel"] / ref["rel_mass"], abs=1e-4)


def test_content_the_segment_answers_best_to(data: dict[str, Any]) -> None:
    """Membership-weighted responses per theme of the content sent, pooled over channels."""
    f = data["features"]
    cols = [c for c in next(iter(f.values())) if c.startswith("att_") and "__theme__" in c]
    assert cols
    seg: dict[str, Counter[str]] = defaultdict(Counter)
    pop: Counter[str] = Counter()
    for r in data["segments"]:
        x, p = f[r["hcp_id"]], r["probability"]
        for a in cols:
            theme = a.split("__theme__")[1]
            seg[r["segment"]]["a_" + theme] += p * x[a]
            seg[r["segment"]]["r_" + theme] += p * x["resp_" + a[len("att_"):]]
    for x in f.values():
        for a in cols:
            theme = a.split("__theme__")[1]
            pop["a_" + theme] += x[a]
            pop["r_" + theme] += x["resp_" + a[len("att_"):]]
    shown = 0
    for c in data["cards"]:
        ref = seg[c.segment]
        lifts = {t[2:]: (ref["r_" + t[2:]] / ref[t]) / (pop["r_" + t[2:]] / pop[t])
                 for t in ref if t.startswith("a_") and ref[t] > 0}
        best = sorted((v for v in lifts.items() if v[1] >= 1.05), key=lambda v: -v[1])[:3]
        assert [i["value"].replace(" ", "_") for i in c.content_response] == [t for t, _ in best]
        for i in c.content_response:
            t = i["value"].replace(" ", "_")
            assert i["response_rate"] == pytest.approx(ref["r_" + t] / ref["a_" + t], abs=1e-4)
            assert i["lift"] == pytest.approx(lifts[t], abs=1e-3)
        shown += len(c.content_response)
        if c.content_response:
            assert "**Answers best to** (content sent): " in c.to_markdown()
    assert shown >= 5  # the segments differ in what they answer to


def test_stage_distribution_and_conversion(data: dict[str, Any]) -> None:
    furthest: dict[str, int] = {}
    entered: dict[str, set[int]] = defaultdict(set)
    for r in data["stages"]:
        furthest[r["hcp_id"]] = max(furthest.get(r["hcp_id"], 0), r["stage_index"])
        entered[r["hcp_id"]].add(r["stage_index"])
    names = {1: "aware", 2: "consider", 3: "decide"}
    w: dict[str, Counter[str]] = defaultdict(Counter)
    for r in data["segments"]:
        s, p, h = r["segment"], r["probability"], r["hcp_id"]
        w[s]["mass"] += p
        w[s][names.get(furthest.get(h, 0), "none")] += p
        for i in entered[h]:
            w[s][f"in{i}"] += p
    for c in data["cards"]:
        got = {x["stage"]: x["share"] for x in c.stages}
        for name in ("none", "aware", "consider", "decide"):
            assert got.get(name, 0.0) == pytest.approx(w[c.segment][name] / w[c.segment]["mass"],
                                                       abs=1e-4)
        steps = {(x["from_stage"], x["to_stage"]): x for x in c.next_stage}
        conv = steps[("aware", "consider")]["conversion"]
        assert conv == pytest.approx(w[c.segment]["in2"] / w[c.segment]["in1"], abs=1e-4)


def test_drivers_and_paths_match_reference(data: dict[str, Any]) -> None:
    seg = {h: a["segment"] for h, a in data["assign"].items()}
    entry: dict[tuple[str, int], Any] = {}
    trigger: dict[tuple[str, int], str] = {}
    for r in data["stages"]:
        entry[(r["hcp_id"], r["stage_index"])] = r["entered_at"]
        trigger[(r["hcp_id"], r["stage_index"])] = r["event_id"]
    had: dict[str, set[str]] = defaultdict(set)
    first_channels: dict[str, list[str]] = defaultdict(list)
    for e in sorted(data["events"], key=lambda e: (e["hcp_id"], e["ts"], e["event_id"])):
        h = e["hcp_id"]
        if not (e["action"] in ENGAGED_ACTIONS or e["direction"] == "inbound"):
            continue
        chans = first_channels[h]
        if (not chans or chans[-1] != e["channel"]) and len(chans) < 4:
            chans.append(e["channel"])
        a, b = entry.get((h, 1)), entry.get((h, 2))
        if a is not None and e["ts"] >= a and (b is None or e["ts"] < b) and \
                e["event_id"] != trigger.get((h, 2)):
            had[h].add(f"{e['channel']}:{e['action']}")
    n_drivers = 0
    for c in data["cards"]:
        members = [h for h, s in seg.items() if s == c.segment]
        at1 = [h for h in members if (h, 1) in entry]
        prog = [h for h in at1 if (h, 2) in entry]
        stalled = [h for h in at1 if (h, 2) not in entry]
        drivers = {(x["from_stage"], x["to_stage"]): x["drivers"] for x in c.next_stage}
        for d in drivers[("aware", "consider")]:
            want_p = sum(d["activity"] in had[h] for h in prog) / len(prog)
            want_s = sum(d["activity"] in had[h] for h in stalled) / len(stalled)
            assert d["progressed"] == pytest.approx(want_p, abs=1e-4)
            assert d["stalled"] == pytest.approx(want_s, abs=1e-4)
            assert d["progressed"] > d["stalled"]
            n_drivers += 1
        paths = Counter(" → ".join(first_channels[h]) for h in members if first_channels[h])
        best = sorted(paths.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        assert c.typical_paths[0]["path"] == best[0]
        assert c.typical_paths[0]["share"] == pytest.approx(best[1] / len(members), abs=1e-4)
    assert n_drivers >= 5


def test_comments_come_from_members(data: dict[str, Any]) -> None:
    seg = {h: a["segment"] for h, a in data["assign"].items()}
    said: dict[str, set[str]] = defaultdict(set)
    for r in data["comments"]:
        said[seg[r["hcp_id"]]].add(r["comment"].strip())
    with_comments = 0
    for c in data["cards"]:
        assert len(c.comments) <= 3 and set(c.comments) <= said[c.segment]
        with_comments += bool(c.comments)
    assert with_comments == 5


def test_markdown_and_html(data: dict[str, Any]) -> None:
    cards = data["cards"]
    md = cards_markdown(cards)
    page = cards_html(cards)
    for c in cards:
        assert f"## {c.segment}: {c.name}" in md
        assert f'id="persona-{c.segment}"' in page
    assert "http" not in page and "<script" not in page  # no external assets, no scripts
    evil = PersonaCard(segment="S9", name="<script>alert(1)</script>", size=1.0, primary_hcps=1,
                       share=0.1, comments=["a & b <b>bold</b>"])
    h = evil.to_html()
    assert "<script>" not in h and "&lt;script&gt;alert(1)&lt;/script&gt;" in h
    assert "a &amp; b &lt;b&gt;bold&lt;/b&gt;" in h
    assert "> a & b <b>bold</b>" in evil.to_markdown()
