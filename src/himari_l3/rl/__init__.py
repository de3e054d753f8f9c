"""The optional RL model: the port, the guard, the HTTP and mock transports, the reference
policy and server."""

from .client import TransformerRLClient
from .guard import GuardedModel, RLTape
from .http import HttpModel, parse_prediction
from .mock import MockModel, MockTransformerRLClient
from .policy import RLPolicy
from .port import FAILURE_REASONS, RLFailure, RLModel, RLResult

__all__ = [
    "FAILURE_REASONS",
    "GuardedModel",
    "HttpModel",
    "MockModel",
    "MockTransformerRLClient",
    "RLFailure",
    "RLModel",
    "RLPolicy",
    "RLResult",
    "RLTape",
    "TransformerRLClient",
    "parse_prediction",
]
