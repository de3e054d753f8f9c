"""What a trading state allows: the gate every target (and every intent) passes.

While not ACTIVE, nothing may increase exposure:

* ACTIVE: the target as sized;
* REDUCING: toward zero only — a target on the position's side no larger than the position,
  else the position itself (no increase) or zero (no flip to the other side);
* HALTED: zero (``flatten``) or the position as it is (``freeze``).

Quantities are signed (negative = short) and in any unit (base units or USD), as long as
position and target use the same one. For every state and every finite input the result lies
between zero and the position, or equals the target when ACTIVE (property-tested).
"""

from __future__ import annotations

from .states import HaltAction, TradingState

__all__ = ["allowed_delta", "allowed_target", "increases_exposure"]


def allowed_target(state: TradingState, position: float, target: float,
                   halt_action: HaltAction = HaltAction.FLATTEN) -> float:
    """The target ``state`` allows for a symbol holding ``position`` (module docstring)."""
    if state is TradingState.ACTIVE:
        return target
    if state is TradingState.HALTED:
        return 0.0 if halt_action is HaltAction.FLATTEN else position
    if position > 0.0:
        return min(max(target, 0.0), position)
    if position < 0.0:
        return max(min(target, 0.0), position)
    return 0.0


def increases_exposure(position: float, delta: float) -> bool:
    """True if trading ``delta`` from ``position`` grows |position| or flips its side."""
    after = position + delta
    return abs(after) > abs(position) or after * position < 0.0


def allowed_delta(state: TradingState, position: float, delta: float,
                  halt_action: HaltAction = HaltAction.FLATTEN) -> float:
    """The part of an order of signed size ``delta`` that ``state`` allows from
    ``position`` (an open intent while the state changes): the trade toward the allowed
    target, never past it."""
    if state is TradingState.ACTIVE:
        return delta
    limit = allowed_target(state, position, position + delta, halt_action) - position
    if delta > 0.0:
        return max(0.0, min(delta, limit))
    return min(0.0, max(delta, limit))
