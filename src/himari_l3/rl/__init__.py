"""The optional RL model's adapters: the HTTP and mock transports, the guarded clients the
user's document names, the reference policy and server. The port (`himari_l3.rl_port`) and
the guard (`himari_l3.rl_guard`) are core modules; their public names are re-exported here."""

from ..rl_guard import GuardedModel, RLTape
from ..rl_port import FAILURE_REASONS, RLFailure, RLModel, RLResult
from .client import TransformerRLClient
from .http import HttpModel, parse_prediction
from .mock import MockModel, MockTransformerRLClient
from .policy import RLPolicy

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
