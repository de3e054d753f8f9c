"""Sizing policies the replay compares on the same signals.

* ``fixed_fraction`` — the baseline: each BUY/STRONG_BUY targets ``fraction`` (10 %) of
  equity long for its strategy, SELL/STRONG_SELL the same short where shorting is allowed
  (Phase 1's default config does not allow it, so the baseline follows: flat), HOLD keeps the
  strategy's position. Strategies on one symbol add up.
* ``phase1`` — :class:`~himari_l3.phase1.Layer3Phase1`, one decision per strategy x symbol
  with the strategy's current (drifted) position, summed per symbol.
* ``phase2`` / ``phase3`` — the portfolio and hybrid engines (:class:`Phase2Policy`,
  :class:`Phase3Policy`), their engines built by the composition root (``bootstrap``).

Learning during the replay (every policy that learns): at each bar close, every directional
signal of the previous bar is scored with its realised one-bar return in its own direction,
:math:`\\pm(c_t/c_{t-1} - 1)`, and fed to ``update_from_trade_result`` together with the
signal's predicted return and volatility (Kelly posterior, conformal window). All directional
signals are scored, not only those that got a position: a learner that sized to zero must
still see the evidence that would let it size up again. Phase 2/3 also get the bar's
returns for their correlation monitor (``observe_returns``), and Phase 3 ``record_outcome``
for each symbol it held, with ``used_rl`` from the allocation's provenance.
"""

from __future__ import annotations

import abc
from collections import defaultdict
from typing import Any, SupportsFloat

from ..bootstrap import build_hybrid, build_portfolio
from ..config.schema import Layer3Config, SizingConfig
from ..contracts import CascadeIndicators, EnsembleAllocation, TacticalSignal
from ..phase1 import Layer3Phase1
from ..phase2 import Layer3Phase2Portfolio
from ..phase3 import Layer3Phase3Hybrid
from .engine import SizingPolicy

__all__ = [
    "POLICY_NAMES",
    "EnsemblePolicy",
    "FixedFractionPolicy",
    "Phase1Policy",
    "Phase2Policy",
    "Phase3Policy",
    "ReplayClock",
    "make_policy",
]

POLICY_NAMES = ("fixed_fraction", "phase1", "phase2", "phase3")


class ReplayClock:
    """Simulated time: the current bar's timestamp (decision stamps, breaker windows)."""

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = start_ns

    def monotonic(self) -> float:
        return self.now_ns / 1e9

    def time_ns(self) -> int:
        return self.now_ns


class _Learning:
    """Shared bookkeeping: per strategy x symbol sub-positions and pending outcomes."""

    def __init__(self) -> None:
        self.subs: dict[tuple[str, str], float] = defaultdict(float)
        self.pending: list[TacticalSignal] = []
        self.outcomes = 0

    def drift(self, rets: dict[str, float]) -> None:
        for key, usd in self.subs.items():
            if usd:
                self.subs[key] = usd * (1.0 + rets[key[1]])

    def score_pending(self, rets: dict[str, float], learner: Any) -> None:
        if learner is not None:
            for s in self.pending:
                r = min(10.0, max(-1.0, s.action.direction * rets[s.symbol]))
                learner.update_from_trade_result(
                    s.strategy_id, s.symbol, r, predicted_return=s.expected_return,
                    predicted_volatility=s.predicted_volatility)
                self.outcomes += 1
        self.pending = []

    def remember(self, signals: tuple[TacticalSignal, ...]) -> None:
        self.pending = [s for s in signals if s.action.direction != 0]

    def per_symbol(self, touched: set[str]) -> dict[str, float]:
        out = dict.fromkeys(touched, 0.0)
        for (_sid, sym), usd in self.subs.items():
            if sym in touched:
                out[sym] += usd
        return out


class FixedFractionPolicy:
    """Baseline: a fixed fraction of equity per directional signal (module docstring)."""

    def __init__(self, fraction: float = 0.10, allow_short: bool | None = None) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction was {fraction!r}, expected 0 < fraction <= 1")
        self.name = "fixed_fraction"
        self.fraction = fraction
        self.allow_short = (SizingConfig().limits.allow_short if allow_short is None
                            else allow_short)
        self._book = _Learning()

    def mark(self, t: int, timestamp_ns: int, asset_returns: dict[str, float]) -> None:
        self._book.drift(asset_returns)

    def targets(self, t: int, timestamp_ns: int, signals: tuple[TacticalSignal, ...],
                cascade: dict[str, CascadeIndicators], prices: dict[str, float],
                equity: float, positions: dict[str, float]) -> dict[str, float]:
        for s in signals:
            d = s.action.direction
            if d > 0 or (d < 0 and self.allow_short):
                self._book.subs[(s.strategy_id, s.symbol)] = d * self.fraction * equity
            elif d < 0:
                self._book.subs[(s.strategy_id, s.symbol)] = 0.0
        return self._book.per_symbol({s.symbol for s in signals})

    def state(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "allow_short": self.allow_short}

    def close(self) -> None:
        """Nothing to release."""


class Phase1Policy:
    """Layer3Phase1 per strategy x symbol, learning from realised outcomes."""

    def __init__(self, initial_capital: float, sizer: Layer3Phase1 | None = None,
                 clock: ReplayClock | None = None) -> None:
        self.name = "phase1"
        self.clock = clock if clock is not None else ReplayClock()
        self.sizer = sizer or Layer3Phase1(initial_capital, enable_metrics=False,
                                           clock=self.clock)
        self._book = _Learning()

    def mark(self, t: int, timestamp_ns: int, asset_returns: dict[str, float]) -> None:
        self._book.drift(asset_returns)
        self._book.score_pending(asset_returns, self.sizer)

    def targets(self, t: int, timestamp_ns: int, signals: tuple[TacticalSignal, ...],
                cascade: dict[str, CascadeIndicators], prices: dict[str, float],
                equity: float, positions: dict[str, float]) -> dict[str, float]:
        self.clock.now_ns = timestamp_ns
        observed: set[str] = set()
        subs = self._book.subs
        for s in signals:
            key = (s.strategy_id, s.symbol)
            d = self.sizer.calculate_position(
                s, cascade[s.symbol], prices[s.symbol], current_position_usd=subs[key],
                portfolio_value=equity, observe_regime=s.symbol not in observed)
            observed.add(s.symbol)
            subs[key] = d.position_size_usd
        self._book.remember(signals)
        return self._book.per_symbol({s.symbol for s in signals})

    def state(self) -> dict[str, Any]:
        st = self.sizer.get_state()
        st["outcomes_fed"] = self._book.outcomes
        return st

    def close(self) -> None:
        """Nothing to release."""


class EnsemblePolicy(abc.ABC):
    """The shared replay adapter of the Phase 2 and Phase 3 engines (built by
    ``bootstrap.backtest.build_policy``: `Phase2Policy`, `Phase3Policy`).

    Symbols with signals at a bar get the allocation's target (0 if the allocation leaves
    them out); symbols without signals keep their position. The engines run on simulated
    time (:class:`ReplayClock`), so Phase 3's circuit-breaker windows and timeouts are in
    bar time and a replay is reproducible. Every bar's returns also feed the engine's
    correlation monitor.
    """

    def __init__(self, name: str, clock: ReplayClock, portfolio: Layer3Phase2Portfolio) -> None:
        self.name = name
        self.clock = clock
        self.portfolio = portfolio
        self._book = _Learning()
        self._held: dict[str, tuple[float, bool]] = {}
        self._taught: set[tuple[str, str]] = set()
        self.rl_decisions = 0

    @abc.abstractmethod
    def _allocate(self, signals: list[TacticalSignal], cascade: dict[str, CascadeIndicators],
                  prices: dict[str, float]) -> EnsembleAllocation:
        """One batch through the engine."""

    @abc.abstractmethod
    def _record_held(self, asset_returns: dict[str, float]) -> None:
        """Credit each held symbol's realised return to the path that decided it."""

    def mark(self, t: int, timestamp_ns: int, asset_returns: dict[str, float]) -> None:
        self.clock.now_ns = timestamp_ns
        self._record_held(asset_returns)
        self._book.score_pending(asset_returns, self.portfolio.phase1)
        self.portfolio.observe_returns(asset_returns)

    def targets(self, t: int, timestamp_ns: int, signals: tuple[TacticalSignal, ...],
                cascade: dict[str, CascadeIndicators], prices: dict[str, float],
                equity: float, positions: dict[str, float]) -> dict[str, float]:
        self.clock.now_ns = timestamp_ns
        self._book.remember(signals)
        out: dict[str, float] = {}
        if signals:
            self.portfolio.set_portfolio_value(equity)
            syms = {s.symbol for s in signals}
            alloc = self._allocate(list(signals), {s: cascade[s] for s in syms},
                                   {s: prices[s] for s in syms})
            out = {s: float(alloc.allocations.get(s, 0.0)) for s in syms}
            self._hold(alloc, out)
        return out

    def _hold(self, alloc: EnsembleAllocation, targets: dict[str, float]) -> None:
        """Remember which path decided each held symbol (for `_record_held`) and which
        strategies hold a share of it."""
        for s, usd in targets.items():
            used_rl = alloc.provenance.get(s, {}).get("path") == "rl"
            self.rl_decisions += used_rl
            self._held[s] = (usd, used_rl)
        self._held = {s: v for s, v in self._held.items() if v[0] != 0.0}
        # Strategies record_outcome will teach: a non-zero share of a held symbol.
        self._taught = {(sid, sym) for sid, row in alloc.breakdown.items()
                        for sym, c in row.items() if c != 0.0 and sym in self._held}

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the engine holds."""

    def state(self) -> dict[str, Any]:
        return {"outcomes_fed": self._book.outcomes, "rl_decisions": self.rl_decisions,
                "get_state": self.portfolio.get_state()}


class Phase2Policy(EnsemblePolicy):
    """``Layer3Phase2Portfolio``: every directional signal is scored by the Phase 1 learners
    (Phase 2 has no per-path outcome)."""

    def __init__(self, engine: Layer3Phase2Portfolio, clock: ReplayClock) -> None:
        super().__init__("phase2", clock, engine)
        self.engine = engine

    def _allocate(self, signals: list[TacticalSignal], cascade: dict[str, CascadeIndicators],
                  prices: dict[str, float]) -> EnsembleAllocation:
        return self.engine.process_multi_strategy_signals(signals, cascade, prices)

    def _record_held(self, asset_returns: dict[str, float]) -> None:
        """Phase 2 has no decision paths to credit."""

    def _hold(self, alloc: EnsembleAllocation, targets: dict[str, float]) -> None:
        """Nothing to remember: every Phase 2 target is the baseline's, and no outcome is
        credited per path (`_record_held`)."""

    def close(self) -> None:
        """Phase 2 holds nothing to release."""


class Phase3Policy(EnsemblePolicy):
    """``Layer3Phase3Hybrid``. Learning, each directional signal scored exactly once:
    ``record_outcome`` (called for every symbol held over the bar, ``used_rl`` from the
    provenance) already teaches the strategies that held the symbol, so only the other
    directional signals are fed to ``update_from_trade_result``."""

    def __init__(self, engine: Layer3Phase3Hybrid, clock: ReplayClock, rl: str) -> None:
        super().__init__(f"phase3[rl={_rl_label(rl)}]", clock, engine.phase2)
        self.engine = engine

    def _allocate(self, signals: list[TacticalSignal], cascade: dict[str, CascadeIndicators],
                  prices: dict[str, float]) -> EnsembleAllocation:
        return self.engine.process_signals(signals, cascade, prices)

    def _record_held(self, asset_returns: dict[str, float]) -> None:
        for sym, (usd, used_rl) in self._held.items():
            r = min(10.0, max(-1.0, (1.0 if usd > 0 else -1.0) * asset_returns[sym]))
            self.engine.record_outcome(sym, r, used_rl)
        self._book.pending = [s for s in self._book.pending
                              if (s.strategy_id, s.symbol) not in self._taught]

    def close(self) -> None:
        self.engine.stop()

    def state(self) -> dict[str, Any]:
        return {"outcomes_fed": self._book.outcomes, "rl_decisions": self.rl_decisions,
                "get_performance_comparison": self.engine.get_performance_comparison(),
                "get_state": self.engine.get_state()}


def _rl_label(rl: str) -> str:
    return rl if rl in ("off", "mock") else "url"


def make_policy(name: str, initial_capital: SupportsFloat, *, rl: str = "off", seed: int = 0,
                periods_per_year: float = 8760.0,
                config: Layer3Config | None = None) -> SizingPolicy:
    """A fresh policy (no learned state) by name; the engines come from the composition
    root (``bootstrap``). ``rl`` (Phase 3 only): "off", "mock" (the seeded mock model) or a
    model URL. ``config``: the sizing and portfolio settings of the Layer 3 policies
    (default: the defaults); its ``portfolio_value`` is replaced by ``initial_capital``
    (``SupportsFloat``: the config's own validation names a bad one, in the compiled build
    too, which would otherwise refuse a non-float with a bare ``TypeError``)."""
    data = (config or Layer3Config()).model_dump()
    data["portfolio_value"] = initial_capital
    cfg = Layer3Config.model_validate(data)  # a bad capital: the named error, here
    capital = cfg.portfolio_value
    if name == "fixed_fraction":
        return FixedFractionPolicy(allow_short=cfg.sizing.limits.allow_short)
    if name == "phase1":
        clock = ReplayClock()
        return Phase1Policy(capital, Layer3Phase1(
            capital, enable_metrics=False, clock=clock, config=cfg.sizing), clock)
    clock = ReplayClock()
    if name == "phase2":
        return Phase2Policy(build_portfolio(cfg, clock=clock), clock)
    if name == "phase3":
        data["rl"].update(enabled=rl != "off", use_mock=rl == "mock", mock_seed=seed,
                          endpoint=None if rl in ("off", "mock") else rl)
        engine = build_hybrid(Layer3Config.model_validate(data), clock=clock,
                              performance_periods_per_year=periods_per_year)
        return Phase3Policy(engine, clock, rl)
    raise ValueError(f"policy was {name!r}, expected one of {', '.join(POLICY_NAMES)}")
