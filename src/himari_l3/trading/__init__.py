"""Trading states (core, no I/O): ACTIVE → REDUCING → HALTED per portfolio and per symbol,
the triggers that move them, and the gate that keeps a non-ACTIVE state from adding exposure.
"""

from .gate import allowed_delta, allowed_target, increases_exposure
from .machine import TradingBrief, TradingStateMachine, day_index
from .states import HaltAction, TradingState, TradingStateChanged, TransitionReason, most_severe

__all__ = [
    "HaltAction",
    "TradingBrief",
    "TradingState",
    "TradingStateChanged",
    "TradingStateMachine",
    "TransitionReason",
    "allowed_delta",
    "allowed_target",
    "day_index",
    "increases_exposure",
    "most_severe",
]
