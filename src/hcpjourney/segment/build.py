"""``build_segments``: features, the mixture model, labels, potential, personas and the grid.

Tables written (all replaced on each build, inside one transaction):

- ``segment_features``: one row per HCP (see :mod:`hcpjourney.segment.features`);
- ``segments``: hcp_id, segment, probability -- one row per HCP and segment, the
  probabilities of an HCP sum to 1 (CONTRACT section 4, ``hcpj export segments``).
  ``probability`` is the HCP's mixed membership (its share of each segment,
  :meth:`LatentClassMixture.transform`): an HCP that behaves as a blend of two
  segments gets two sizeable shares. Extra column ``posterior``: the latent-class
  posterior probability that the HCP belongs to the segment as a whole
  (:meth:`LatentClassMixture.predict_proba`), also summing to 1;
- ``segment_assignments``: hcp_id, segment (most likely; ties: the first label),
  probability, second_segment, second_probability, mixed (second_probability >=
  :data:`MIXED_THRESHOLD`); ``profiles.segment`` is set to its ``segment``;
- ``segment_model``: the model's summary: one row per k tried (k, bic, stability,
  chosen) or a single row when ``n_segments`` was given;
- ``hcp_potential`` (:mod:`hcpjourney.segment.potential`), ``personas``
  (:mod:`hcpjourney.segment.personas`), ``segment_grid`` (:mod:`hcpjourney.segment.grid`).

Labels are stable across rebuilds: the new segments are matched to the previous
build's labels by the overlap of their memberships (Hungarian assignment,
:func:`hcpjourney.segment.mixture.match_labels`); ``previous=None`` reads the
previous ``segments`` table from the warehouse, ``previous=False`` starts afresh
with S1..Sk (largest first).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis
import numpy as np
import pyarrow as pa

from hcpjourney.engine import Engine
from hcpjourney.errors import HcpjError, NotBuiltError
from hcpjourney.identity.golden import GOLDEN
from hcpjourney.segment.features import (
    CONTENT_RESPONSE,
    EVENTS,
    FeatureOptions,
    FeatureSet,
    build_features,
)
from hcpjourney.segment.grid import build_grid
from hcpjourney.segment.mixture import LatentClassMixture, infer_blocks, match_labels
from hcpjourney.segment.personas import ASSIGNMENTS, SEGMENTS, build_personas
from hcpjourney.segment.potential import build_potential

SEGMENT_MODEL = "segment_model"
PROFILES = "profiles"
MIXED_THRESHOLD = 0.25
SEGMENT_COLUMNS: tuple[str, ...] = ("hcp_id", "segment", "probability")
ASSIGNMENT_COLUMNS: tuple[str, ...] = (
    "hcp_id", "segment", "probability", "second_segment", "second_probability", "mixed",
)

Previous = Mapping[str, Mapping[str, float]]


@dataclass
class SegmentSummary:
    """What :func:`build_segments` did."""

    hcps: int
    n_segments: int
    labels: list[str]
    sizes: dict[str, float]  # expected HCPs per segment (sum of probabilities)
    primary: dict[str, int]  # HCPs whose most likely segment it is
    mixed_hcps: int
    selection: list[dict[str, float]] = field(default_factory=list)
    personas: list[str] = field(default_factory=list)  # persona names in label order
    seconds: dict[str, float] = field(default_factory=dict)


def default_model(fs: FeatureSet, n_segments: int | None = None,
                  random_state: int | None = 0) -> LatentClassMixture:
    """The segmentation model :func:`build_segments` fits on the features ``fs``."""
    est = LatentClassMixture(n_segments=n_segments, random_state=random_state)
    if {"theme", "tonality", "format"} & set(fs.blocks()):
        # an event's topic restates its content's theme, measured better by the content
        # blocks; counted twice it would weigh double
        est.set_params(exclude=(*est.exclude, "topic"))
    # a channel whose responses are split by content (email by theme) is modelled by the
    # parts; its single rate would count every response twice
    split = sorted({c.name[len("rate_"):].split("__", 1)[0] for c in fs.columns
                    if c.block == CONTENT_RESPONSE})
    if split:
        est.set_params(exclude=(*est.exclude, *split))
    return est


def previous_segments(engine: Engine) -> dict[str, dict[str, float]]:
    """The warehouse's current ``segments`` as {hcp_id: {segment: probability}}."""
    if not engine.has_table(SEGMENTS):
        return {}
    rows = engine.to_pyarrow(engine.table(SEGMENTS).select(*SEGMENT_COLUMNS)).to_pylist()
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["hcp_id"], {})[r["segment"]] = float(r["probability"])
    return out


def build_segments(
    engine: Engine,
    *,
    n_segments: int | None = None,
    random_state: int = 0,
    previous: Previous | bool | None = None,
    product: str | None = None,
    options: FeatureOptions | None = None,
    model: LatentClassMixture | None = None,
    fill_profiles: bool = True,
) -> SegmentSummary:
    """Build segments, personas and the targeting grid (see the module docstring).

    ``n_segments`` fixes the number of segments (default: chosen by BIC and
    stability); ``product`` names the journey's product for adoption (any
    product when None); ``model`` replaces the default estimator; ``fill_profiles``
    sets ``profiles.segment`` to each HCP's most likely segment.
    """
    if not engine.has_table(GOLDEN) or not engine.has_table(EVENTS):
        raise NotBuiltError("no profiles yet: run `hcpj build` first")
    if n_segments is not None and n_segments < 1:
        raise HcpjError(f"--segments must be at least 1, not {n_segments}")
    prev: Previous
    if previous is None or previous is True:
        prev = previous_segments(engine)
    elif previous is False:
        prev = {}
    else:
        prev = previous
    secs: dict[str, float] = {}
    with engine.transaction():
        t = time.perf_counter()
        fs = build_features(engine, options)
        secs["features"] = time.perf_counter() - t

        t = time.perf_counter()
        est = model if model is not None else default_model(fs, n_segments, random_state)
        needed = sorted({c for b in infer_blocks(fs.table.columns, exclude=est.exclude)
                         for c in b.columns})
        tbl = engine.to_pyarrow(fs.table.select("hcp_id", *needed).order_by("hcp_id"))
        ids = [str(x) for x in tbl.column("hcp_id").to_pylist()]
        if not ids:
            raise HcpjError("no HCPs to segment: ingest a data drop and run `hcpj build`")
        X = tbl.drop(["hcp_id"])
        est.fit(X)
        proba = est.transform(X)  # mixed membership: shares sum to 1 per HCP
        posterior = est.predict_proba(X)
        secs["fit"] = time.perf_counter() - t

        t = time.perf_counter()
        labels = match_labels(proba, ids, prev)
        _write_segments(engine, ids, labels, proba, posterior)
        _write_model(engine, est, labels)
        build_potential(engine, product=product)
        cards = build_personas(engine, fs.columns)
        build_grid(engine, product=product)
        if fill_profiles and engine.has_table(PROFILES):
            fill_profile_segment(engine)
        secs["outputs"] = time.perf_counter() - t

    top = proba.argmax(axis=1)
    srt = np.sort(proba, axis=1)
    second = srt[:, -2] if proba.shape[1] > 1 else np.zeros(len(ids))
    by_label = {lab: cards_i for cards_i, lab in enumerate(labels)}
    order = sorted(labels, key=_label_key)
    return SegmentSummary(
        hcps=len(ids), n_segments=len(labels), labels=order,
        sizes={lab: round(float(proba[:, by_label[lab]].sum()), 3) for lab in order},
        primary={lab: int((top == by_label[lab]).sum()) for lab in order},
        mixed_hcps=int((second >= MIXED_THRESHOLD).sum()),
        selection=list(getattr(est, "selection_", [])),
        personas=[c.name for c in cards], seconds=secs,
    )


def fill_profile_segment(engine: Engine) -> None:
    """Rewrite ``profiles`` with ``segment`` = the most likely segment (column order kept)."""
    prof = engine.table(PROFILES)
    a = engine.table(ASSIGNMENTS).select("hcp_id", _segment="segment")
    j = prof.left_join(a, "hcp_id")
    cols = {c: (j._segment if c == "segment" else j[c]) for c in prof.columns}
    engine.rewrite_sorted(PROFILES, j.select(**cols), order_by=["hcp_id"])


def _label_key(label: str) -> tuple[int, str]:
    if len(label) > 1 and label[0] == "S" and label[1:].isdigit():
        return int(label[1:]), ""
    return 10**9, label


def _write_segments(engine: Engine, ids: list[str], labels: list[str], proba: np.ndarray,
                    posterior: np.ndarray) -> None:
    n, k = proba.shape
    ids_a = np.asarray(ids, dtype=object)
    seg_t = pa.table({
        "hcp_id": pa.array(np.repeat(ids_a, k), type=pa.string()),
        "segment": pa.array(np.tile(np.asarray(labels, dtype=object), n), type=pa.string()),
        "probability": pa.array(proba.reshape(-1), type=pa.float64()),
        "posterior": pa.array(posterior.reshape(-1), type=pa.float64()),
    })
    engine.create(SEGMENTS, ibis.memtable(seg_t), order_by=["hcp_id", "segment"])
    # most likely segment; ties go to the first label in label order
    lab_order = np.asarray(sorted(range(k), key=lambda j: _label_key(labels[j])), dtype=np.int64)
    ranked = proba[:, lab_order]
    first = lab_order[np.argmax(ranked, axis=1)]
    p1 = proba[np.arange(n), first]
    rest = proba.copy()
    rest[np.arange(n), first] = -1.0
    if k > 1:
        ranked2 = rest[:, lab_order]
        second = lab_order[np.argmax(ranked2, axis=1)]
        p2 = proba[np.arange(n), second]
        second_lab: list[str | None] = [labels[j] for j in second]
    else:
        p2 = np.zeros(n)
        second_lab = [None] * n
    lab_arr = np.asarray(labels, dtype=object)
    a_t = pa.table({
        "hcp_id": pa.array(ids_a, type=pa.string()),
        "segment": pa.array(lab_arr[first], type=pa.string()),
        "probability": pa.array(p1, type=pa.float64()),
        "second_segment": pa.array(second_lab, type=pa.string()),
        "second_probability": pa.array(p2, type=pa.float64()),
        "mixed": pa.array(p2 >= MIXED_THRESHOLD, type=pa.bool_()),
    })
    engine.create(ASSIGNMENTS, ibis.memtable(a_t), order_by=["hcp_id"])


def _write_model(engine: Engine, est: Any, labels: list[str]) -> None:
    rows = list(getattr(est, "selection_", []) or [])
    if not rows:
        rows = [{"k": float(len(labels)), "bic": float(getattr(est, "bic_", float("nan"))),
                 "stability": float("nan"), "chosen": 1.0}]
    t = pa.table({
        "k": pa.array([int(r["k"]) for r in rows], type=pa.int64()),
        "bic": pa.array([float(r["bic"]) for r in rows], type=pa.float64()),
        "stability": pa.array([float(r["stability"]) for r in rows], type=pa.float64()),
        "chosen": pa.array([bool(r["chosen"]) for r in rows], type=pa.bool_()),
        "labels": pa.array([", ".join(sorted(labels, key=_label_key)) if r["chosen"] else None
                            for r in rows], type=pa.string()),
    })
    engine.create(SEGMENT_MODEL, ibis.memtable(t), order_by=["k"])
