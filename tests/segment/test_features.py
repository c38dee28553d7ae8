"""Segment features equal a plain-Python computation over the same warehouse rows."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pytest

from hcpjourney.identity.timezones import STATE_UTC_OFFSET
from hcpjourney.segment.features import (
    CONTENT_RESPONSE,
    ENGAGED_ACTIONS,
    HCP_TIMED_ACTIONS,
    RESPONSE_RULES,
    SEGMENT_FEATURES,
    build_features,
    content_rate_name,
    model_matrix,
    slug,
)

from .conftest import World


@pytest.fixture(scope="module")
def built(sim_world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[World, dict[str, Any]]:
    w = sim_world.copy(tmp_path_factory.mktemp("features") / "ws")
    with w.engine() as eng:
        fs = build_features(eng)
        rows = eng.to_pyarrow(eng.table(SEGMENT_FEATURES)).to_pylist()
        data = {
            "features": {r["hcp_id"]: r for r in rows},
            "columns": fs.columns,
            "events": eng.to_pyarrow(eng.table("events").select(
                "hcp_id", "record_id", "ts", "channel", "action", "direction", "content_id",
                "topic")).to_pylist(),
            "sources": {r["record_id"]: (r["hcp_id"], r["source"]) for r in eng.to_pyarrow(
                eng.table("identities").inner_join(eng.table("hcps"), "record_id")
                .select("record_id", "hcp_id", "source")).to_pylist()},
            "golden": eng.to_pyarrow(eng.table("golden").select("hcp_id", "state")).to_pylist(),
            "content": eng.to_pyarrow(eng.table("content").select(
                "content_id", "theme", "tonality", "format")).to_pylist(),
            "feedback": eng.to_pyarrow(
                eng.table("feedback").inner_join(eng.table("identities"), "record_id")
                .select("hcp_id", "instrument", "question", "score", "dimension")).to_pylist(),
        }
    return w, data


def _engaged(r: dict[str, Any]) -> bool:
    return r["action"] in ENGAGED_ACTIONS or r["direction"] == "inbound"


def test_every_golden_hcp_has_one_row(built: tuple[World, dict[str, Any]]) -> None:
    _, d = built
    assert sorted(d["features"]) == sorted(g["hcp_id"] for g in d["golden"])


def test_counts_match_reference(built: tuple[World, dict[str, Any]]) -> None:
    _, d = built
    feats = d["features"]
    ref: dict[str, Counter[str]] = defaultdict(Counter)
    for r in d["events"]:
        c = ref[r["hcp_id"]]
        c["n_events"] += 1
        c["n_engaged"] += _engaged(r)
        for ch, (att, resp) in RESPONSE_RULES.items():
            if r["channel"] == ch:
                c[f"att_{ch}"] += r["action"] in att
                c[f"resp_{ch}"] += r["action"] in resp
        if r["direction"] == "inbound":
            c[f"in_{slug(r['channel'])}"] += 1
        if _engaged(r):
            c[f"cnt_channel__{slug(r['channel'])}"] += 1
    assert sum(c["n_events"] for c in ref.values()) == len(d["events"]) > 50_000
    checked = 0
    for hcp, row in feats.items():
        c = ref.get(hcp, Counter())
        for col in ("n_events", "n_engaged", "att_email", "resp_email", "att_f2f_visit",
                    "resp_f2f_visit", "att_msl_meeting", "resp_msl_meeting", "in_web", "in_portal",
                    "cnt_channel__web", "cnt_channel__f2f_visit", "cnt_channel__email"):
            assert row[col] == c[col], (hcp, col)
            checked += 1
    assert checked > 20_000


def test_rates_are_shrunk_to_the_population_rate(built: tuple[World, dict[str, Any]]) -> None:
    _, d = built
    rows = list(d["features"].values())
    for ch in ("email", "f2f_visit", "webinar"):
        att = sum(r[f"att_{ch}"] for r in rows)
        resp = sum(r[f"resp_{ch}"] for r in rows)
        p0 = resp / att
        for r in rows:
            want = (r[f"resp_{ch}"] + 4 * p0) / (r[f"att_{ch}"] + 4)
            assert r[f"rate_{ch}"] == pytest.approx(want, rel=1e-12, abs=1e-12)
        # an HCP without contacts sits exactly at the population rate
        none = [r for r in rows if r[f"att_{ch}"] == 0]
        assert none and all(r[f"rate_{ch}"] == pytest.approx(p0) for r in none)


def test_local_hours_days_content_topics_match_reference(built: tuple[World, dict[str, Any]]) -> None:
    _, d = built
    state = {g["hcp_id"]: (g["state"] or "").strip().upper() for g in d["golden"]}
    known = Counter(STATE_UTC_OFFSET[s] for s in state.values() if s in STATE_UTC_OFFSET)
    fallback = sorted(known.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    content = {c["content_id"]: c for c in d["content"]}
    vocab = {}
    for attr in ("theme", "tonality", "format"):
        n = Counter(c[attr] for c in d["content"] if c[attr])
        vocab[attr] = [v for v, _ in sorted(n.items(), key=lambda kv: (-kv[1], kv[0]))[:12]]
    tn = Counter(r["topic"] for r in d["events"] if r["topic"])
    topics = [v for v, _ in sorted(tn.items(), key=lambda kv: (-kv[1], kv[0]))[:12]]
    ref: dict[str, Counter[str]] = defaultdict(Counter)
    for r in d["events"]:
        c = ref[r["hcp_id"]]
        if r["direction"] == "inbound" or r["action"] in HCP_TIMED_ACTIONS:
            local = r["ts"] + timedelta(hours=STATE_UTC_OFFSET.get(state[r["hcp_id"]], fallback))
            c[f"cnt_hour__h{local.hour:02d}"] += 1
            c["cnt_day__weekend" if local.weekday() >= 5 else "cnt_day__weekday"] += 1
        # content affinities count the content the HCP chose (inbound), not what was sent
        if r["direction"] == "inbound" and r["content_id"] in content:
            for attr, vals in vocab.items():
                v = content[r["content_id"]][attr]
                if v in vals:
                    c[f"cnt_{attr}__{slug(v)}"] += 1
        if r["topic"]:
            c[f"cnt_topic__{slug(r['topic'])}" if r["topic"] in topics else "cnt_topic__other"] += 1
    cols = ([f"cnt_hour__h{h:02d}" for h in range(24)] + ["cnt_day__weekday", "cnt_day__weekend"]
            + [f"cnt_{a}__{slug(v)}" for a, vals in vocab.items() for v in vals]
            + [f"cnt_topic__{slug(t)}" for t in topics] + ["cnt_topic__other"])
    for hcp, row in d["features"].items():
        c = ref.get(hcp, Counter())
        for col in cols:
            assert row[col] == c[col], (hcp, col)
        assert row["n_hour"] == sum(c[f"cnt_hour__h{h:02d}"] for h in range(24))
    # preferred hour: the most frequent local hour (ties: the earliest)
    for hcp, row in list(d["features"].items())[:300]:
        c = ref.get(hcp, Counter())
        hours = [(c[f"cnt_hour__h{h:02d}"], h) for h in range(24)]
        best = max(hours, key=lambda t: (t[0], -t[1]))
        assert row["pref_hour"] == (best[1] if best[0] > 0 else None)


def test_survey_scores_match_reference(built: tuple[World, dict[str, Any]]) -> None:
    _, d = built
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in d["feedback"]:
        if r["score"] is None:
            continue
        if r["instrument"].lower() == "nps":
            by[r["hcp_id"]]["score_nps"].append(r["score"])
        if r["dimension"]:
            by[r["hcp_id"]][f"score_dim_{r['dimension']}"].append(r["score"])
        elif r["instrument"].lower() not in ("nps", "csat"):
            by[r["hcp_id"]][f"score_q_{slug(r['question'])}"].append(r["score"])
    seen = 0
    for hcp, row in d["features"].items():
        for col in ("score_nps", "score_dim_relevant", "score_dim_consumable"):
            vals = by.get(hcp, {}).get(col)
            if vals:
                assert row[col] == pytest.approx(sum(vals) / len(vals))
                seen += 1
            else:
                assert row[col] is None
        q = [c for c in row if c.startswith("score_q_i_receive_too_much")]
        assert len(q) == 1
        vals = by.get(hcp, {}).get(q[0])
        assert (row[q[0]] is None) == (not vals)
    assert seen > 300


def test_stage_features_used_when_stage_entries_exist(
    built: tuple[World, dict[str, Any]], tmp_path: Path
) -> None:
    w, d = built
    assert "stage_max" not in next(iter(d["features"].values()))  # no journey built yet
    w2 = w.copy(tmp_path / "ws")
    with w2.engine() as eng:
        ev = eng.table("events")
        g = ev.group_by("hcp_id").aggregate(first=ev.ts.min(), last=ev.ts.max(), n=ev.count())
        one = g.select("hcp_id", stage=ibis.literal("aware"), stage_index=ibis.literal(1, "int64"),
                       entered_at=g["first"])
        two = g.filter(g.n >= 10).select("hcp_id", stage=ibis.literal("decide"),
                                         stage_index=ibis.literal(2, "int64"), entered_at=g["last"])
        eng.create("stage_entries", one.union(two))
        fs = build_features(eng)
        assert {"stage_max", "stage_days_per_step"} <= {c.name for c in fs.columns}
        rows = {r["hcp_id"]: r for r in eng.to_pyarrow(eng.table(SEGMENT_FEATURES)).to_pylist()}
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    n: Counter[str] = Counter()
    for r in d["events"]:
        h = r["hcp_id"]
        first[h] = min(first.get(h, r["ts"]), r["ts"])
        last[h] = max(last.get(h, r["ts"]), r["ts"])
        n[h] += 1
    for hcp, row in rows.items():
        if hcp not in n:
            assert row["stage_max"] == -1.0 and row["stage_days_per_step"] is None
        elif n[hcp] >= 10:
            assert row["stage_max"] == 2.0
            days = (last[hcp] - first[hcp]).total_seconds() / 86400
            assert row["stage_days_per_step"] == pytest.approx(days)
        else:
            assert row["stage_max"] == 1.0 and row["stage_days_per_step"] is None


def test_model_matrix_is_standardised_and_clr(built: tuple[World, dict[str, Any]]) -> None:
    _, d = built
    rows = list(d["features"].values())
    cols = {c.name: np.array([np.nan if r[c.name] is None else r[c.name] for r in rows], dtype=float)
            for c in d["columns"]}
    mm = model_matrix(cols, d["columns"], np.array([r["hcp_id"] for r in rows]))
    assert mm.X.shape[0] == len(rows) and np.isfinite(mm.X).all()
    assert np.allclose(mm.X.mean(axis=0), 0.0, atol=1e-9)
    assert np.allclose(mm.X.std(axis=0), 1.0, atol=1e-9)
    # the rate column is the standardised logit of the shrunk rate
    j = mm.names.index("rate_email")
    lg = np.log(cols["rate_email"] / (1 - cols["rate_email"]))
    assert np.allclose(mm.X[:, j], (lg - lg.mean()) / lg.std(), atol=1e-9)
    assert not math.isnan(float(mm.X[:, mm.names.index("cnt_hour__h00")].sum()))


def test_responses_by_content_theme_match_reference(built: tuple[World, dict[str, Any]]) -> None:
    """att/resp of each content-carrying channel per theme of the content sent, summing to
    the channel's own counts."""
    _, d = built
    theme = {c["content_id"]: c["theme"] for c in d["content"]}
    ref: dict[str, Counter[str]] = defaultdict(Counter)
    for r in d["events"]:
        rule = RESPONSE_RULES.get(r["channel"])
        if rule is None or r["content_id"] is None or r["content_id"] not in theme:
            continue
        name = content_rate_name(r["channel"], "theme", slug(theme[r["content_id"]]))
        ref[r["hcp_id"]][f"att_{name}"] += r["action"] in rule[0]
        ref[r["hcp_id"]][f"resp_{name}"] += r["action"] in rule[1]
    split = [c for c in d["columns"] if c.block == CONTENT_RESPONSE]
    channels = {c.name[len("rate_"):].split("__")[0] for c in split}
    with_content = Counter(r["channel"] for r in d["events"] if r["content_id"] is not None
                           and r["action"] in RESPONSE_RULES.get(r["channel"], ((), ()))[0])
    assert channels == {ch for ch, n in with_content.items() if n >= 20} >= {"email", "f2f_visit"}
    assert len(split) == len(channels) * len({c["theme"] for c in d["content"]})
    opened = 0
    for hcp, row in d["features"].items():
        for c in split:
            att, resp = c.count, "resp_" + c.name[len("rate_"):]
            assert (row[att], row[resp]) == (ref[hcp][att], ref[hcp][resp]), (hcp, c.name)
            opened += row[resp]
        # every email sent carries content: the parts sum to the channel's counts
        email = [c for c in split if c.name.startswith("rate_email__")]
        assert sum(row[c.count] for c in email) == row["att_email"]
        assert sum(row["resp_" + c.name[len("rate_"):]] for c in email) == row["resp_email"]
    assert opened > 1000


def test_inbound_volume_only_where_a_source_records_the_channel(
        built: tuple[World, dict[str, Any]]) -> None:
    _, d = built
    carried: dict[str, set[str]] = defaultdict(set)  # source -> inbound channels it records
    for r in d["events"]:
        if r["direction"] == "inbound":
            carried[d["sources"][r["record_id"]][1]].add(r["channel"])
    reach: dict[str, set[str]] = defaultdict(set)
    for hcp, source in d["sources"].values():
        reach[hcp] |= carried[source]
    seen = [c for c in d["columns"] if c.name.startswith("log_seen_")]
    assert {c.name for c in seen} >= {"log_seen_web", "log_seen_congress"}
    empty = 0
    for hcp, row in d["features"].items():
        for c in seen:
            ch = c.name[len("log_seen_"):]
            if ch in {slug(x) for x in reach[hcp]}:
                assert row[c.name] == pytest.approx(math.log1p(row[f"in_{ch}"]))
            else:
                assert row[c.name] is None and row[f"in_{ch}"] == 0
                empty += 1
    assert empty > 500  # many HCPs no web source knows
