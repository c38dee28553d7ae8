"""Segments with mixed membership, data-made personas and the potential x behaviour grid.

- :func:`build_segments` (``build``): features -> mixture model -> tables ``segments``,
  ``segment_assignments``, ``segment_model``, ``hcp_potential``, ``personas``, ``segment_grid``;
- :class:`LatentClassMixture` (``mixture``): the scikit-learn style estimator;
- :func:`build_features` / :func:`load_feature_set` (``features``): per-HCP features;
- :func:`persona_cards` (``personas``): the cards, with ``to_markdown`` / ``to_html``;
- :func:`targeting_grid` / :func:`grid_rows` (``grid``), :func:`build_potential` (``potential``).
"""

from __future__ import annotations

from hcpjourney.segment.build import SegmentSummary, build_segments, previous_segments
from hcpjourney.segment.features import FeatureOptions, FeatureSet, build_features, load_feature_set
from hcpjourney.segment.grid import grid_rows, targeting_grid
from hcpjourney.segment.mixture import LatentClassMixture, match_labels
from hcpjourney.segment.personas import PersonaCard, cards_html, cards_markdown, persona_cards
from hcpjourney.segment.potential import build_potential

__all__ = [
    "FeatureOptions",
    "FeatureSet",
    "LatentClassMixture",
    "PersonaCard",
    "SegmentSummary",
    "build_features",
    "build_potential",
    "build_segments",
    "cards_html",
    "cards_markdown",
    "grid_rows",
    "load_feature_set",
    "match_labels",
    "persona_cards",
    "previous_segments",
    "targeting_grid",
]
