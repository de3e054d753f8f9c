"""Sizing policies the replay compares on the same signals.

* ``fixed_fraction`` — the baseline: each BUY/STRONG_BUY targets ``fraction`` (10 %) of
  equity long for its strategy, SELL/STRONG_SELL the same short where shorting is allowed
  (Phase 1's default config does not allow it, so the baseline follows: flat), HOLD keeps the
  strategy's position. Strategies on one symbol add up.
* ``phase1`` — :class:`~himari_l3.phase1.Layer3Phase1`, one decision per strategy x symbol
  with the strategy's current (drifted) position, summed per symbol.
* ``phase2`` / ``phase3`` — the portfolio and hybrid engines through :class:`EnsemblePolicy`
  (a thin adapter, so they plug in when their modules land).

Learning during the replay (every policy that learns): at each bar close, every directional
signal of the previous bar is scored with its realised one-bar return in its own direction,
:math:`\\pm(c_t/c_{t-1} - 1)`, and fed to ``update_from_trade_result`` together with the
signal's predicted return and volatility (Kelly posterior, conformal window). All directional
signals are scored, not only those that got a position: a learner that sized to zero must
still see the evidence that would let it size up again. Phase 2/3 also get
``update_correlations`` with the bar's returns, and Phase 3 ``record_outcome`` for each symbol
it held, with ``used_rl`` from the allocation's provenance.
"""

from __future__ import annotations

import importlib
import inspect
from collections import defaultdict
from typing import Any

from ..config.schema import SizingConfig
from ..contracts import CascadeIndicators, EnsembleAllocation, TacticalSignal
from ..phase1 import Layer3Phase1

__all__ = [
    "POLICY_NAMES",
    "EnsemblePolicy",
    "FixedFractionPolicy",
    "Phase1Policy",
    "PolicyUnavailable",
    "ReplayClock",
    "make_policy",
]

POLICY_NAMES = ("fixed_fraction", "phase1", "phase2", "phase3")
_PHASE_CLASSES = {
    "phase2": ("himari_l3.phase2", "Layer3Phase2Portfolio", "process_multi_strategy_signals"),
    "phase3": ("himari_l3.phase3", "Layer3Phase3Hybrid", "process_signals"),
}


class PolicyUnavailable(ImportError):
    """The module implementing a phase is not importable (yet)."""


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


class Phase1Policy:
    """Layer3Phase1 per strategy x symbol, learning from realised outcomes."""

    def __init__(self, initial_capital: float, sizer: Layer3Phase1 | None = None) -> None:
        self.name = "phase1"
        self.clock = ReplayClock()
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


def _load_class(phase: str) -> type[Any]:
    module, cls_name, _ = _PHASE_CLASSES[phase]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and module.startswith(err.name):
            raise PolicyUnavailable(f"{phase} is not available: {module} cannot be imported "
                                    f"({err})") from err
        raise
    cls = getattr(mod, cls_name, None)
    if cls is None:
        raise PolicyUnavailable(f"{phase} is not available: {module} has no {cls_name}")
    return cls  # type: ignore[no-any-return]


def _construct(cls: type[Any], **kwargs: Any) -> Any:
    """Pass the keyword arguments the constructor accepts (the phase 2/3 signatures are
    still settling; an unknown one is left out rather than guessed at)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return cls(**kwargs)
    return cls(**{k: v for k, v in kwargs.items() if k in params})


def _sync_equity(engine: Any, equity: float) -> None:
    """Mark the engine's sizing equity (Phase 3 delegates to its Phase 2)."""
    for target in (engine, getattr(engine, "phase2", None)):
        fn = getattr(target, "set_portfolio_value", None)
        if callable(fn):
            fn(equity)
            return
    raise TypeError(f"{type(engine).__name__} has no set_portfolio_value(); the replay "
                    "cannot keep its sizing equity current")


def _find_learner(engine: Any) -> Any:
    """The Phase 1 inside the engine (it holds ``update_from_trade_result``)."""
    for path in (("phase1",), ("phase2", "phase1")):
        obj = engine
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and hasattr(obj, "update_from_trade_result"):
            return obj
    return None


def _phase3_config(seed: int) -> Any:
    """Layer3Config whose mock RL client is seeded (its default seed is None)."""
    from ..config.schema import Layer3Config, parse_config

    return parse_config(Layer3Config, {"rl": {"mock_seed": seed}})


class EnsemblePolicy:
    """Adapter over ``Layer3Phase2Portfolio`` / ``Layer3Phase3Hybrid``.

    Symbols with signals at a bar get the allocation's target (0 if the allocation leaves
    them out); symbols without signals keep their position. The engines run on simulated
    time (:class:`ReplayClock`), so Phase 3's circuit-breaker windows and timeouts are in
    bar time and a replay is reproducible.

    Learning, each directional signal scored exactly once: Phase 3's ``record_outcome``
    (called for every symbol held over the bar, ``used_rl`` from the provenance) already
    teaches the strategies that held the symbol, so only the other directional signals are
    fed to ``update_from_trade_result``; Phase 2 has no ``record_outcome`` and gets every
    directional signal scored.
    """

    def __init__(self, phase: str, initial_capital: float, *, rl: str = "off",
                 seed: int = 0, periods_per_year: float = 8760.0) -> None:
        cls = _load_class(phase)
        self.name = phase if phase == "phase2" else f"phase3[rl={_rl_label(rl)}]"
        self.phase = phase
        self.clock = ReplayClock()
        kwargs: dict[str, Any] = {"portfolio_value": initial_capital, "enable_metrics": False,
                                  "clock": self.clock}
        if phase == "phase3":
            kwargs.update(enable_rl=rl != "off", use_mock_rl=rl == "mock",
                          config=_phase3_config(seed),
                          performance_periods_per_year=periods_per_year)
            if rl not in ("off", "mock"):
                kwargs["rl_endpoint"] = rl
        self.engine = _construct(cls, **kwargs)
        self._process = getattr(self.engine, _PHASE_CLASSES[phase][2])
        self._learner = _find_learner(self.engine)
        self._record = getattr(self.engine, "record_outcome", None)
        self._book = _Learning()
        self._held: dict[str, tuple[float, bool]] = {}
        self._taught: set[tuple[str, str]] = set()
        self.rl_decisions = 0

    def mark(self, t: int, timestamp_ns: int, asset_returns: dict[str, float]) -> None:
        self.clock.now_ns = timestamp_ns
        if callable(self._record):
            for sym, (usd, used_rl) in self._held.items():
                r = min(10.0, max(-1.0, (1.0 if usd > 0 else -1.0) * asset_returns[sym]))
                self._record(sym, r, used_rl)
            self._book.pending = [s for s in self._book.pending
                                  if (s.strategy_id, s.symbol) not in self._taught]
        self._book.score_pending(asset_returns, self._learner)
        update = getattr(self.engine, "update_correlations", None)
        if callable(update):
            update(dict(asset_returns))

    def targets(self, t: int, timestamp_ns: int, signals: tuple[TacticalSignal, ...],
                cascade: dict[str, CascadeIndicators], prices: dict[str, float],
                equity: float, positions: dict[str, float]) -> dict[str, float]:
        self.clock.now_ns = timestamp_ns
        self._book.remember(signals)
        out: dict[str, float] = {}
        if signals:
            _sync_equity(self.engine, equity)
            syms = {s.symbol for s in signals}
            alloc: EnsembleAllocation = self._process(
                list(signals), {s: cascade[s] for s in syms}, {s: prices[s] for s in syms})
            out = {s: float(alloc.allocations.get(s, 0.0)) for s in syms}
            for s in syms:
                used_rl = alloc.provenance.get(s, {}).get("path") == "rl"
                self.rl_decisions += used_rl
                self._held[s] = (out[s], used_rl)
            self._held = {s: v for s, v in self._held.items() if v[0] != 0.0}
            # Strategies record_outcome will teach: a non-zero share of a held symbol.
            self._taught = {(sid, sym) for sid, row in alloc.breakdown.items()
                            for sym, c in row.items() if c != 0.0 and sym in self._held}
        return out

    def close(self) -> None:
        stop = getattr(self.engine, "stop", None)
        if callable(stop):
            stop()

    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {"outcomes_fed": self._book.outcomes,
                              "rl_decisions": self.rl_decisions}
        for method in ("get_performance_comparison", "get_state"):
            fn = getattr(self.engine, method, None)
            if callable(fn):
                st[method] = fn()
        return st


def _rl_label(rl: str) -> str:
    return rl if rl in ("off", "mock") else "url"


def make_policy(name: str, initial_capital: float, *, rl: str = "off", seed: int = 0,
                periods_per_year: float = 8760.0,
                ) -> FixedFractionPolicy | Phase1Policy | EnsemblePolicy:
    """A fresh policy (no learned state) by name; raises :class:`PolicyUnavailable`."""
    if name == "fixed_fraction":
        return FixedFractionPolicy()
    if name == "phase1":
        return Phase1Policy(initial_capital)
    if name in ("phase2", "phase3"):
        return EnsemblePolicy(name, initial_capital, rl=rl, seed=seed,
                              periods_per_year=periods_per_year)
    raise ValueError(f"policy was {name!r}, expected one of {', '.join(POLICY_NAMES)}")
