"""The composition root's backtest half: sizing policies by name, built from the same
pieces as the service (the engines on a simulated clock, no metrics)."""

from __future__ import annotations

from ..backtest.policies import (
    POLICY_NAMES,
    FixedFractionPolicy,
    Phase1Policy,
    Phase2Policy,
    Phase3Policy,
    ReplayClock,
)
from ..config.schema import Layer3Config
from ..phase2 import Layer3Phase2Portfolio
from . import build_hybrid

__all__ = ["build_policy"]

Policy = FixedFractionPolicy | Phase1Policy | Phase2Policy | Phase3Policy


def build_policy(name: str, initial_capital: float, *, rl: str = "off", seed: int = 0,
                 periods_per_year: float = 8760.0) -> Policy:
    """A fresh policy (no learned state) by name. ``rl`` (Phase 3 only): "off", "mock" (the
    seeded mock model) or a model URL."""
    if name == "fixed_fraction":
        return FixedFractionPolicy()
    if name == "phase1":
        return Phase1Policy(initial_capital)
    clock = ReplayClock()
    if name == "phase2":
        return Phase2Policy(Layer3Phase2Portfolio(initial_capital, enable_metrics=False,
                                                  clock=clock), clock)
    if name == "phase3":
        config = Layer3Config.model_validate({
            "portfolio_value": initial_capital,
            "rl": {"enabled": rl != "off", "use_mock": rl == "mock", "mock_seed": seed,
                   "endpoint": None if rl in ("off", "mock") else rl}})
        engine = build_hybrid(config, clock=clock, performance_periods_per_year=periods_per_year)
        return Phase3Policy(engine, clock, rl)
    raise ValueError(f"policy was {name!r}, expected one of {', '.join(POLICY_NAMES)}")
