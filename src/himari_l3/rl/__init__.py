"""The optional RL model: HTTP client, seeded mock, reference policy and server."""

from .client import (
    FAILURE_REASONS,
    RLFailure,
    RLResult,
    TransformerRLClient,
    parse_prediction,
)
from .mock import MockTransformerRLClient
from .policy import RLPolicy

__all__ = [
    "FAILURE_REASONS",
    "MockTransformerRLClient",
    "RLFailure",
    "RLPolicy",
    "RLResult",
    "TransformerRLClient",
    "parse_prediction",
]
