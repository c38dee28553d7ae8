"""Probabilistic record linkage of hcps records with Splink (Fellegi-Sunter).

The model compares normalised fields (see ``normalise``): NPI, e-mail, phone,
first name (nicknames, prefixes, typos, initials; term-frequency adjusted),
middle initial, family name (typos, compound names, Jaro-Winkler; term-frequency
adjusted), place (street address, ZIP, city, state as one comparison, since they
are not independent), specialty (CMS taxonomy paths reduced to their leaf),
organisation and credential. The prior comes from deterministic rules, u
probabilities from random record pairs, m probabilities from expectation
maximisation over blocked pairs starting from the priors written below and kept
within bounds; sampling is seeded, so a build is repeatable.

``score`` returns the scored pairs at or above a probability floor, with the
comparison level of every field (the evidence a data steward reviews).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hcpjourney.engine import Engine
from hcpjourney.engine.splink import arrow_of, splink_session

SEED = 20240601

# ------------------------------------------------------------------ comparisons
# Each comparison is a list of levels, most specific first: a null level (no
# evidence either way), then SQL conditions over the pair's "<column>_l" and
# "<column>_r" values, each with its prior m probability, then "different".


@dataclass(frozen=True)
class Level:
    label: str
    sql: str
    m: float
    tf: str | None = None
    null: bool = False


def _null(*cols: str) -> Level:
    cond = " OR ".join(f'"{c}_l" IS NULL OR "{c}_r" IS NULL' for c in cols)
    return Level("missing", cond, 1.0, null=True)


def _else(m: float) -> Level:
    return Level("different", "ELSE", m)


# nickname groups intersect (string compares: list columns slow the pair joins down)
_KEYS = ("first_key", "first_key2", "first_key3")
_RIGHT_KEYS = ", ".join(f'"{k}_r"' for k in _KEYS)
_NICKNAME = " OR ".join(f'"{k}_l" IN ({_RIGHT_KEYS})' for k in _KEYS)
_LOCATION_NULL = " AND ".join(
    f'("{c}_l" IS NULL OR "{c}_r" IS NULL)' for c in ("address", "zip5", "city", "state")
)

COMPARISONS: dict[str, tuple[Level, ...]] = {
    "npi": (
        _null("npi"),
        Level("same", '"npi_l" = "npi_r"', 0.98),
        _else(0.02),
    ),
    "email": (
        _null("email"),
        Level("same", '"email_l" = "email_r"', 0.55),
        # colleagues share a work domain; one person rarely has two addresses there
        Level(
            "same_domain",
            "split_part(\"email_l\", '@', 2) = split_part(\"email_r\", '@', 2)",
            0.01,
        ),
        _else(0.44),
    ),
    "phone": (
        _null("phone"),
        Level("same", '"phone_l" = "phone_r"', 0.8),
        _else(0.2),
    ),
    "first_name": (
        _null("first_name"),
        Level("same", '"first_name_l" = "first_name_r"', 0.8, tf="first_name"),
        Level("nickname", _NICKNAME, 0.1),
        Level(
            "prefix",
            'least(length("first_name_l"), length("first_name_r")) >= 3 AND '
            '(starts_with("first_name_l", "first_name_r") OR '
            'starts_with("first_name_r", "first_name_l"))',
            0.02,
        ),
        Level("typo", 'jaro_winkler_similarity("first_name_l", "first_name_r") >= 0.88', 0.04),
        Level(
            "initial",
            '(length("first_name_l") = 1 OR length("first_name_r") = 1) '
            'AND "first_initial_l" = "first_initial_r"',
            0.04,
        ),
        # true matches with unrelated first names are rare: spouses in one
        # practice share everything else
        _else(0.005),
    ),
    "middle_initial": (
        _null("middle_initial"),
        Level("same", '"middle_initial_l" = "middle_initial_r"', 0.95),
        _else(0.05),
    ),
    "last_name": (
        _null("last_name"),
        Level("same", '"last_name_l" = "last_name_r"', 0.85, tf="last_name"),
        Level("typo", 'damerau_levenshtein("last_name_l", "last_name_r") <= 1', 0.07),
        Level(
            "compound",
            '"last_token_l" = "last_token_r" OR "last_name_l" = "last_token_r" '
            'OR "last_token_l" = "last_name_r"',
            0.04,
        ),
        Level("similar", 'jaro_winkler_similarity("last_name_l", "last_name_r") >= 0.9', 0.02),
        _else(0.01),
    ),
    "location": (
        Level("missing", _LOCATION_NULL, 1.0, null=True),
        Level(
            "same_address",
            '"address_l" = "address_r" AND ("zip5_l" = "zip5_r" OR "zip5_l" IS NULL '
            'OR "zip5_r" IS NULL)',
            0.45,
        ),
        Level("same_zip", '"zip5_l" = "zip5_r"', 0.25),
        Level(
            "same_city",
            '"city_l" = "city_r" AND ("state_l" = "state_r" OR "state_l" IS NULL '
            'OR "state_r" IS NULL)',
            0.2,
        ),
        Level("same_state", '"state_l" = "state_r"', 0.07),
        _else(0.03),
    ),
    "specialty": (
        _null("specialty"),
        Level("same", '"specialty_l" = "specialty_r"', 0.8),
        Level(
            "related",  # one is the other's parent, or both share a parent
            '"specialty_l" = "specialty_parent_r" OR "specialty_parent_l" = "specialty_r" '
            'OR "specialty_parent_l" = "specialty_parent_r"',
            0.1,
        ),
        _else(0.1),
    ),
    "organization": (
        _null("organization"),
        Level("same", '"organization_l" = "organization_r"', 0.75),
        Level(
            "similar",
            'jaro_winkler_similarity("organization_l", "organization_r") >= 0.9',
            0.15,
        ),
        _else(0.1),
    ),
    "credential": (
        _null("credential"),
        Level("same", '"credential_l" = "credential_r"', 0.9),
        _else(0.1),
    ),
}

# Pairs scored at all: a pair is compared when it agrees on one of these.
BLOCKING: tuple[tuple[str, ...], ...] = (
    ("npi",),
    ("email",),
    ("phone",),
    ("last_name", "first_key"),
    ("last_name", "zip5", "first_initial"),
    ("last_name", "city", "first_initial"),
    ("last_soundex", "first_key", "state"),
    ("last_name", "first_initial", "state"),
    ("first_key", "zip5", "last_initial"),
)

# Deterministic rules used to estimate how many pairs match at all (the prior).
PRIOR_RULES: tuple[tuple[str, ...], ...] = (
    ("npi",),
    ("email",),
    ("first_name", "last_name", "zip5"),
    ("first_name", "last_name", "city"),
)
PRIOR_RULES_RECALL = 0.8

# EM sessions. Blocks on an identifier hold (almost) only true matches, so EM
# there learns how names, places and specialties vary within one person; the
# name block learns how identifiers and places vary. A session runs only when
# its block has enough pairs; comparisons no session trains keep their priors.
TRAINING: tuple[tuple[str, ...], ...] = (
    ("npi",),
    ("email",),
    ("phone",),
    ("last_name", "first_key"),
)
TRAINING_MIN_PAIRS = 30
TRAINING_MAX_PAIRS = 1e6
U_MAX_PAIRS = 5e6
U_MIN_PAIRS = 2e5
U_PAIRS_PER_RECORD = 50
# DuckDB's memory while linking (os.environ HCPJ_LINKAGE_MEMORY overrides); the
# rest of a build's peak is Arrow data in Python (about 1 GiB per million records)
MEMORY_LIMIT = os.environ.get("HCPJ_LINKAGE_MEMORY", "4GB")
# trained m probabilities are kept inside these bounds, so that no single field
# can veto or force a link on its own (a record can carry a stale middle initial)
M_BOUNDS = (0.002, 0.998)


def gamma_labels() -> dict[str, list[str]]:
    """Per comparison, the label of each gamma value (-1 = missing, then high to low)."""
    out: dict[str, list[str]] = {}
    for name, levels in COMPARISONS.items():
        rest = [lv.label for lv in levels if not lv.null]
        out[name] = rest
    return out


def level_label(comparison: str, gamma: int | None) -> str:
    """The label of ``gamma`` for ``comparison`` (Splink numbers the top level highest)."""
    labels = gamma_labels()[comparison]
    if gamma is None or gamma < 0:
        return "missing"
    idx = len(labels) - 1 - int(gamma)
    return labels[idx] if 0 <= idx < len(labels) else "?"


def _comparison_dicts() -> list[dict[str, Any]]:
    comps = []
    for name, levels in COMPARISONS.items():
        lv_dicts = []
        for lv in levels:
            d: dict[str, Any] = {
                "sql_condition": lv.sql,
                "label_for_charts": lv.label,
            }
            if lv.null:
                d["is_null_level"] = True
            else:
                d["m_probability"] = lv.m
            if lv.tf:
                d["tf_adjustment_column"] = lv.tf
                d["tf_adjustment_weight"] = 1.0
            lv_dicts.append(d)
        comps.append(
            {"output_column_name": name, "comparison_levels": lv_dicts,
             "comparison_description": name}
        )
    return comps


def _rule_sql(cols: tuple[str, ...]) -> str:
    return " AND ".join(f'l."{c}" = r."{c}"' for c in cols)


def _gamma_case(name: str, levels: tuple[Level, ...]) -> str:
    """Splink's numbering: -1 for the null level, then n-1 (best) down to 0 (else)."""
    k = sum(1 for lv in levels if not lv.null) - 1
    parts = []
    for lv in levels:
        if lv.null:
            parts.append(f"WHEN {lv.sql} THEN -1")
        elif lv.sql == "ELSE":
            parts.append(f"ELSE {k}")
        else:
            parts.append(f"WHEN {lv.sql} THEN {k}")
            k -= 1
    return f'CAST(CASE {" ".join(parts)} END AS INTEGER) AS "gamma_{name}"'


def evidence_sql(pairs: str, records: str) -> str:
    """SQL adding the comparison level of every field to scored ``pairs`` of ``records``."""
    from hcpjourney.identity.normalise import LINKAGE_COLUMNS

    fields = [c for c in LINKAGE_COLUMNS if c not in ("record_id", "source")]
    sides = ", ".join(f'{s}."{c}" AS "{c}_{s}"' for c in fields for s in ("l", "r"))
    cases = ", ".join(_gamma_case(n, lv) for n, lv in COMPARISONS.items())
    return (
        'SELECT "record_id_l", "record_id_r", "match_probability", "match_weight", '
        f"{cases} FROM (SELECT p.record_id_l, p.record_id_r, p.match_probability, "
        f"p.match_weight, {sides} FROM {pairs} p "
        f"JOIN {records} l ON l.record_id = p.record_id_l "
        f"JOIN {records} r ON r.record_id = p.record_id_r)"
    )


def settings(prior: float = 1e-4) -> dict[str, Any]:
    """The Splink settings dictionary of the model (untrained)."""
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "record_id",
        "comparisons": _comparison_dicts(),
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": _rule_sql(r)} for r in BLOCKING
        ],
        "probability_two_random_records_match": prior,
        # comparison levels of the kept pairs are computed afterwards (evidence_sql):
        # carrying the matching columns through prediction costs a fifth of its time
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
        "em_convergence": 1e-4,
        "max_iterations": 25,
    }


@dataclass
class LinkageResult:
    """Scored pairs and what training learnt."""

    pairs: pa.Table  # record_id_l, record_id_r, match_probability, match_weight, gamma_*
    model: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    n_records: int = 0


@contextmanager
def _quiet_splink() -> Iterator[None]:
    """Splink's own logging held at ERROR (its INFO lines are progress chatter)."""
    log = logging.getLogger("splink")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def score(engine: Engine, data: pa.Table, *, floor: float) -> LinkageResult:
    """Train the model on ``data`` (a linkage table) and score its blocked pairs >= ``floor``."""
    import time

    from splink import Linker, SettingsCreator

    n = data.num_rows
    empty = pa.table({"record_id_l": pa.array([], pa.string()), "record_id_r": pa.array([], pa.string()),
                      "match_probability": pa.array([], pa.float64()),
                      "match_weight": pa.array([], pa.float64()),
                      **{f"gamma_{c}": pa.array([], pa.int32()) for c in COMPARISONS}})
    if n < 2:
        return LinkageResult(pairs=empty, n_records=n)
    secs: dict[str, float] = {}
    with _quiet_splink(), splink_session(engine, memory_limit=MEMORY_LIMIT) as api:
        t0 = time.perf_counter()
        sdf = api.register(data, table_name="__splink__hcpj_linkage_input")
        linker = Linker(sdf, SettingsCreator.from_path_or_dict(settings()), log_level=None)
        rules: list[Any] = [_rule_sql(r) for r in PRIOR_RULES]
        # rules that find (almost) no pairs leave the default prior
        with suppress(ValueError):
            linker.training.estimate_probability_two_random_records_match(
                rules, recall=PRIOR_RULES_RECALL
            )
        prior = linker._settings_obj._probability_two_random_records_match
        if prior <= 0:
            linker._settings_obj._probability_two_random_records_match = 1.0 / max(n, 2)
        secs["prior"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        all_pairs = n * (n - 1) / 2
        u_pairs = min(U_MAX_PAIRS, max(U_MIN_PAIRS, U_PAIRS_PER_RECORD * n))
        linker.training.estimate_u_using_random_sampling(
            max_pairs=u_pairs, seed=SEED,
            # a small table is compared in full: no probing in chunks
            num_chunks=1 if all_pairs <= u_pairs else 10,
        )
        secs["u"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for cols in TRAINING:
            if block_pairs(data, cols) < TRAINING_MIN_PAIRS:
                continue
            # On a small block EM can drive a level's m probability to 0, which
            # Splink refuses; that session is then skipped like one with too few
            # pairs. A session edits the linker's model in place as it starts, so
            # the model from before it is put back.
            before = linker._settings_obj.core_model_settings.copy()
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(
                    _rule_sql(cols), max_pairs=TRAINING_MAX_PAIRS,
                    estimate_without_term_frequencies=True,
                )
            except ValueError:
                linker._settings_obj.core_model_settings = before
        model = bounded(linker.misc.save_model_to_json())
        linker = Linker(sdf, model, log_level=None)
        secs["em"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = linker.inference.predict(threshold_match_probability=floor, warning_mode="never")
        table = arrow_of(linker.misc.query_sql(evidence_sql(pred.physical_name,
                                                            sdf.physical_name)))
        secs["predict"] = time.perf_counter() - t0
    return LinkageResult(pairs=table, model=model, seconds=secs, n_records=n)


def candidate_pairs(engine: Engine, data: pa.Table, *, proportion: float = 1.0) -> int:
    """Number of distinct pairs the blocking rules compare (exact when ``proportion`` = 1)."""
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    with _quiet_splink(), splink_session(engine) as api:
        sdf = api.register(data, table_name="__splink__hcpj_count_input")
        counts = count_comparisons_from_blocking_rules(
            sdf, blocking_rules=[_rule_sql(r) for r in BLOCKING], link_type="dedupe_only",
            unique_id_column_name="record_id", record_sample_proportion=proportion,
        )
    return int(counts[-1]["cumulative_comparison_count"])


def block_pairs(data: pa.Table, cols: tuple[str, ...]) -> int:
    """Number of record pairs that agree on every column of ``cols`` (nulls never agree)."""
    t = data.select(list(cols))
    for c in cols:
        t = t.filter(pc.is_valid(t.column(c)))
    if t.num_rows < 2:
        return 0
    counts = t.group_by(list(cols)).aggregate([([], "count_all")]).column("count_all")
    c = counts.to_numpy().astype("float64")
    return int((c * (c - 1) / 2).sum())


def bounded(model: dict[str, Any]) -> dict[str, Any]:
    """``model`` with every non-null level's m probability kept within ``M_BOUNDS``."""
    lo, hi = M_BOUNDS
    for comp in model["comparisons"]:
        for lv in comp["comparison_levels"]:
            m = lv.get("m_probability")
            if m is not None and not lv.get("is_null_level"):
                lv["m_probability"] = min(max(float(m), lo), hi)
    return model

