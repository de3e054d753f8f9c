"""The last two Phase 1 stages: direction rules and caps, then the execution fields.

**Caps** (docs/sizing-math.md §7): BUY/STRONG_BUY size long, SELL/STRONG_SELL short only where
shorting is enabled (else the target is 0: be flat); a HOLD keeps at most the current
position (risk stages may cut it, never grow it); the size is capped by the per-position cap
(or the absolute ``max_position_usd`` when smaller); a cascade EXIT, no edge, or a size below
the minimum notional give 0. Each rule that bites names itself as the binding limit and adds
its reason code, in the order of the rules.

**Execution fields** (§8): stop-loss and take-profit prices at ``stop_loss_sigma`` and
``take_profit_sigma`` predicted volatilities from the price, mirrored for shorts; a bracket
that would cross zero is left out with a reason.
"""

from __future__ import annotations

from ..contracts import CascadeRecommendation, TacticalAction
from ..trace import (
    CAP_REASONS,
    CapsDetail,
    ExecutionDetail,
    LimitName,
    ReasonCode,
    StageName,
    StageResult,
)
from .stages import SizingContext

__all__ = ["CapsStage", "ExecutionStage"]

_CASCADE_REASONS = {
    CascadeRecommendation.EXIT: ReasonCode.CASCADE_EXIT,
    CascadeRecommendation.REDUCE_75: ReasonCode.CASCADE_REDUCE_75,
    CascadeRecommendation.REDUCE_50: ReasonCode.CASCADE_REDUCE_50,
}


class CapsStage:
    """Direction rules and caps; sets ``ctx.signed_usd`` (negative = short)."""

    name = StageName.CAPS

    def apply(self, ctx: SizingContext) -> StageResult:
        lim = ctx.config.limits
        cap_usd = lim.max_position_pct * ctx.portfolio_value
        cap_name = LimitName.POSITION_CAP
        if lim.max_position_usd is not None and lim.max_position_usd < cap_usd:
            cap_usd, cap_name = lim.max_position_usd, LimitName.MAX_NOTIONAL
        kelly, cas = ctx.kelly, ctx.cascade
        assert kelly is not None and cas is not None  # set by the earlier stages
        binding = LimitName.KELLY_CAP if kelly.capped else LimitName.NONE
        reasons: list[ReasonCode] = []
        is_hold = ctx.signal.action is TacticalAction.HOLD
        if is_hold:
            size, binding = self._hold(ctx, cap_usd, cap_name, binding, cas.multiplier)
            reasons.append(ReasonCode.HOLD)
        else:
            size = ctx.size
            if size > cap_usd:
                size, binding = cap_usd, cap_name
        size, binding = self._overrides(ctx, size, binding, reasons, lim.allow_short,
                                        kelly.full_kelly)
        if 0.0 < size < lim.min_position_usd and not is_hold:
            size, binding = 0.0, LimitName.MIN_NOTIONAL
            reasons.append(ReasonCode.BELOW_MIN_NOTIONAL)
        cap_reason = CAP_REASONS.get(binding)
        if cap_reason is not None:
            reasons.append(cap_reason)
        ctx.size = size
        ctx.signed_usd = ctx.side * size if size > 0.0 else 0.0
        return StageResult(StageName.CAPS, size, 1.0, binding, tuple(reasons),
                           CapsDetail(cap_usd, cap_name))

    @staticmethod
    def _hold(ctx: SizingContext, cap_usd: float, cap_name: LimitName, binding: LimitName,
              cascade_multiplier: float) -> tuple[float, LimitName]:
        """A HOLD keeps (at most) the current position: risk stages may cut it, never grow
        it."""
        held = abs(ctx.current_position_usd)
        size = min(held * ctx.regime_multiplier * cascade_multiplier, held, cap_usd)
        if size == held:
            binding = LimitName.HOLD_NO_INCREASE
        if size == cap_usd and cap_usd < held:
            binding = cap_name
        return size, binding

    @staticmethod
    def _overrides(ctx: SizingContext, size: float, binding: LimitName,
                   reasons: list[ReasonCode], allow_short: bool,
                   full_kelly: float) -> tuple[float, LimitName]:
        """Rules that force the size to 0: cascade EXIT, shorting disabled, no edge."""
        cas = ctx.cascade
        assert cas is not None
        rec = cas.recommendation
        if rec is CascadeRecommendation.EXIT:
            size, binding = 0.0, LimitName.CASCADE_EXIT
        cascade_reason = _CASCADE_REASONS.get(rec)
        if cascade_reason is not None:
            reasons.append(cascade_reason)
        direction = ctx.direction
        if direction < 0 and not allow_short:
            # Shorting disabled: a sell means "be flat", never a short.
            size, binding = 0.0, LimitName.SHORT_DISABLED
            reasons.append(ReasonCode.SHORT_DISABLED)
        if direction != 0 and full_kelly <= 0.0:
            size = 0.0
            reasons.append(ReasonCode.NO_EDGE)
            if binding is LimitName.NONE:
                binding = LimitName.NO_EDGE
        return size, binding


class ExecutionStage:
    """Stop-loss and take-profit from the predicted volatility (needs the caps stage)."""

    name = StageName.EXECUTION

    def apply(self, ctx: SizingContext) -> StageResult:
        signed = ctx.signed_usd
        vol = ctx.signal.predicted_volatility
        sl = tp = None
        reasons: tuple[ReasonCode, ...] = ()
        if vol is not None and signed != 0.0:
            ex, price = ctx.config.execution, ctx.price
            sl_dist, tp_dist = ex.stop_loss_sigma * vol, ex.take_profit_sigma * vol
            if ctx.side > 0:
                sl = price * (1.0 - sl_dist) if sl_dist < 1.0 else None
                tp = price * (1.0 + tp_dist)
            else:
                sl = price * (1.0 + sl_dist)
                tp = price * (1.0 - tp_dist) if tp_dist < 1.0 else None
            if sl is None or tp is None:
                reasons = (ReasonCode.BRACKET_BEYOND_ZERO,)
        elif signed != 0.0:
            reasons = (ReasonCode.NO_VOLATILITY_FOR_BRACKET,)
        return StageResult(StageName.EXECUTION, ctx.size, 1.0, LimitName.NONE, reasons,
                           ExecutionDetail(sl, tp))
