"""Potential (deciles, score, tier) and the potential x behaviour grid against plain Python."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from hcpjourney.segment.grid import grid_rows, targeting_grid
from hcpjourney.segment.potential import potential_table

from .conftest import World

TIER = {**dict.fromkeys(range(8, 11), "high"), **dict.fromkeys(range(4, 8), "medium"),
        **dict.fromkeys(range(1, 4), "low")}


@pytest.fixture(scope="module")
def data(segmented: tuple[World, Any]) -> dict[str, Any]:
    w, _ = segmented
    with w.engine(read_only=True) as eng:
        def rows(t: Any) -> list[dict[str, Any]]:
            return eng.to_pyarrow(t).to_pylist()

        o = eng.table("outcomes").inner_join(eng.table("identities"), "record_id")
        return {
            "potential": {r["hcp_id"]: r for r in rows(eng.table("hcp_potential"))},
            "golden": {r["hcp_id"]: r for r in rows(eng.table("golden").select("hcp_id", "decile"))},
            "outcomes": rows(o.select("hcp_id", "product", "period", "nrx", "trx")),
            "features": {r["hcp_id"]: r["n_engaged"] for r in rows(
                eng.table("segment_features").select("hcp_id", "n_engaged"))},
            "assign": {r["hcp_id"]: r["segment"] for r in rows(eng.table("segment_assignments"))},
            "engagement": grid_rows(eng, behaviour="engagement"),
            "segment": grid_rows(eng, behaviour="segment"),
            "no_product": rows(targeting_grid(eng, behaviour="engagement", product=None)),
            "brand": rows(potential_table(eng, product="cardiozen")),
        }


def test_potential_deciles_score_and_tier(data: dict[str, Any]) -> None:
    trx: Counter[str] = Counter()
    for r in data["outcomes"]:
        trx[r["hcp_id"]] += r["trx"] or 0.0
    active = sorted(v for v in trx.values() if v > 0)
    n = len(active)

    def cume(v: float) -> float:
        return sum(1 for x in active if x <= v) / n

    kinds: Counter[str] = Counter()
    for hcp, p in data["potential"].items():
        vendor = data["golden"][hcp]["decile"]
        has_rx = trx.get(hcp, 0.0) > 0
        out_dec = min(10, max(1, math.ceil(10 * cume(trx[hcp])))) if has_rx else None
        assert p["vendor_decile"] == vendor
        assert p["outcome_decile"] == out_dec
        assert p["decile"] == (vendor if vendor is not None else out_dec)
        assert p["decile_source"] == ("vendor" if vendor is not None else
                                      "outcomes" if has_rx else None)
        parts = ([(vendor - 0.5) / 10] if vendor is not None else []) + \
            ([cume(trx[hcp])] if has_rx else [])
        if parts:
            assert p["potential_score"] == pytest.approx(sum(parts) / len(parts))
        else:
            assert p["potential_score"] is None
        assert p["potential_tier"] == TIER.get(p["decile"], "unknown")
        assert p["market_trx"] == pytest.approx(trx.get(hcp, 0.0))
        kinds[p["decile_source"] or "none"] += 1
    assert kinds["vendor"] > 500 and kinds["outcomes"] > 20 and kinds["none"] > 20
    brand = {r["hcp_id"]: r["brand_trx"] for r in data["brand"]}
    cz: Counter[str] = Counter()
    for r in data["outcomes"]:
        if r["product"] == "cardiozen":
            cz[r["hcp_id"]] += r["trx"] or 0.0
    assert all(brand[h] == pytest.approx(cz.get(h, 0.0)) for h in brand)
    assert sum(1 for v in cz.values() if v > 0) > 100


def _adopted(outcomes: list[dict[str, Any]], product: str | None) -> set[str]:
    return {r["hcp_id"] for r in outcomes
            if (r["nrx"] or 0) > 0 and (product is None or r["product"] == product)}


def test_engagement_grid(data: dict[str, Any]) -> None:
    eng = data["features"]
    values = sorted(eng.values())
    n = len(values)

    def tier(v: int) -> str:
        cd = sum(1 for x in values if x <= v) / n
        return "low" if cd <= 1 / 3 else "medium" if cd <= 2 / 3 else "high"

    adopters = _adopted(data["outcomes"], "cardiozen")
    cells: Counter[tuple[str, str]] = Counter()
    adopt: Counter[tuple[str, str]] = Counter()
    for hcp, v in eng.items():
        key = (data["potential"][hcp]["potential_tier"], tier(v))
        cells[key] += 1
        adopt[key] += hcp in adopters
    rows = data["engagement"]
    assert [(r["potential_tier"], r["behaviour"]) for r in rows] == [
        (p, b) for p in ("high", "medium", "low", "unknown") for b in ("high", "medium", "low")]
    for r in rows:
        key = (r["potential_tier"], r["behaviour"])
        assert r["hcps"] == cells[key] and r["adopters"] == adopt[key], key
        if cells[key]:
            assert r["adoption_rate"] == pytest.approx(adopt[key] / cells[key])
        else:
            assert r["adoption_rate"] is None
        assert r["share"] == pytest.approx(cells[key] / n)
    assert sum(r["hcps"] for r in rows) == n and sum(r["adopters"] for r in rows) > 100
    # adoption rises with engagement among high-potential HCPs in this world
    hi = {r["behaviour"]: r["adoption_rate"] for r in rows if r["potential_tier"] == "high"}
    assert hi["high"] > hi["low"]
    # without a product, any product's first nrx counts: more adopters
    assert sum(r["adopters"] for r in data["no_product"]) == len(
        _adopted(data["outcomes"], None) & set(eng))


def test_segment_grid(data: dict[str, Any]) -> None:
    adopters = _adopted(data["outcomes"], "cardiozen")
    cells: Counter[tuple[str, str]] = Counter()
    adopt: Counter[tuple[str, str]] = Counter()
    for hcp, s in data["assign"].items():
        key = (data["potential"][hcp]["potential_tier"], s)
        cells[key] += 1
        adopt[key] += hcp in adopters
    rows = data["segment"]
    assert len(rows) == 4 * 5
    for r in rows:
        key = (r["potential_tier"], r["behaviour"])
        assert (r["hcps"], r["adopters"]) == (cells[key], adopt[key])
