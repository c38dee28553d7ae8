"""Next best action: compliant by construction, learned from logged outcomes, evaluated off-policy.

* :func:`recommend` / :func:`recommend_workspace` -- ``hcpj recommend --as-of DATE --out FILE``;
* :func:`evaluate_policy` -- ``hcpj evaluate-policy --logs FILE --policy uniform|logged|column``
  (IPW, SNIPW, DR with confidence intervals; log format in :mod:`hcpjourney.nba.ope`);
* :func:`evaluate_history` -- the NBA policy vs uniform vs logging on the workspace's own holdout;
* :func:`record_feedback` / :func:`feedback` -- reps accept or skip, with a reason;
* :class:`Decider` -- in-process decisions for one HCP;
* :class:`NbaSettings` -- the ``[nba]`` section of hcpj.toml (defaults in the workspace template).
"""

from __future__ import annotations

from hcpjourney.nba.allocate import allocate, parse_capacity
from hcpjourney.nba.evaluate import evaluate_history, history_logs
from hcpjourney.nba.feedback import SKIP_REASONS, FeedbackRecord, feedback, record_feedback
from hcpjourney.nba.ope import PolicyEvaluation, evaluate_policy
from hcpjourney.nba.recommend import (
    RECOMMENDATIONS,
    Decider,
    Fitted,
    RecommendSummary,
    fit,
    recommend,
    recommend_workspace,
)
from hcpjourney.nba.settings import NbaSettings

__all__ = [
    "RECOMMENDATIONS",
    "SKIP_REASONS",
    "Decider",
    "FeedbackRecord",
    "Fitted",
    "NbaSettings",
    "PolicyEvaluation",
    "RecommendSummary",
    "allocate",
    "evaluate_history",
    "evaluate_policy",
    "feedback",
    "fit",
    "history_logs",
    "parse_capacity",
    "recommend",
    "recommend_workspace",
    "record_feedback",
]
