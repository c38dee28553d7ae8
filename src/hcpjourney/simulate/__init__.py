"""The synthetic world used by the demo, tests and benchmarks.

``simulate(n_hcps, out, seed)`` writes a complete contract data drop (hcps,
interactions, content, consents, outcomes, feedback, relationships and a
journey.yaml) plus the hidden truth in ``out/_truth/``; ``true_engagement_probability``
gives the true response probabilities the data was generated with.
"""

from __future__ import annotations

from hcpjourney.simulate.core import (
    CHUNK_SIZE,
    TRUTH_DIR,
    SimulationSummary,
    journey_template,
    simulate,
)
from hcpjourney.simulate.response import (
    ENGAGE_ACTION,
    OUTBOUND_CHANNELS,
    PREF_CHANNELS,
    SEGMENTS,
    ResponseModel,
    true_engagement_probability,
)
from hcpjourney.simulate.world import SimulationError

__all__ = [
    "CHUNK_SIZE",
    "ENGAGE_ACTION",
    "OUTBOUND_CHANNELS",
    "PREF_CHANNELS",
    "SEGMENTS",
    "TRUTH_DIR",
    "ResponseModel",
    "SimulationError",
    "SimulationSummary",
    "journey_template",
    "simulate",
    "true_engagement_probability",
]
