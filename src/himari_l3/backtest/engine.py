r"""The replay loop: bar by bar, size with what is known at the bar's close, trade through
the book as a paper deployment would, hold to the next bar.

At bar :math:`t` (timestamps :math:`0..T-1`):

1. **mark**: the book's positions are marked at the closes :math:`c_{t,j}`; equity
   :math:`E_t` = cash + :math:`\sum_j q_j c_{t,j}`; the policy is told the close-to-close
   returns :math:`a_{t,j} = c_{t,j}/c_{t-1,j} - 1` (its learners update from these realised
   outcomes);
2. **size**: the policy receives bar :math:`t`'s signals, cascade indicators, closes, the
   equity and the positions :math:`x_j = q_j c_{t,j}` — nothing later — and returns signed
   USD targets (a symbol it leaves out keeps its position);
3. **trade** (``execution.py``): the book takes the targets (fitted to the whole-book
   limits), plans order intents with the instrument rules, the no-trade band and the trading
   states' gate, and the paper executor fills them against bar :math:`t`'s close and volume
   with the fill model (fee, slippage and impact, participation cap, latency); what it
   cannot fill yet waits for later bars. Cash pays quantity × fill price + fee.

Recorded per bar: equity after the fills (marked at the close), positions at the close,
traded notional :math:`q_t` (sum of |fill quantity × fill price|), turnover
:math:`q_t/E_t` (equity before the fills), exposure :math:`\sum_j|x_j|/E_t`, fees, slippage
paid (:math:`\sum` quantity × |fill price − close|), fills, and the portfolio's trading
state. If equity reaches 0 the replay flattens and stops trading (ruin).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..contracts import CascadeIndicators, TacticalSignal
from .data import FloatArray, IntArray, MarketData
from .execution import BookExecution, ExecutionSetup
from .signals import SignalTape
from .stats import drawdown_series, summarize

__all__ = ["ExecutionSetup", "Replay", "SizingPolicy", "replay"]

ProgressFn = Callable[[int], None]


class SizingPolicy(Protocol):
    """What the replay needs from a sizing policy (fixed fraction, Phase 1, 2, 3)."""

    name: str

    def mark(self, t: int, timestamp_ns: int, asset_returns: dict[str, float]) -> None:
        """Bar ``t`` (stamped ``timestamp_ns``) closed: the positions held over (t-1, t]
        earned ``asset_returns``."""
        ...

    def targets(
        self,
        t: int,
        timestamp_ns: int,
        signals: tuple[TacticalSignal, ...],
        cascade: dict[str, CascadeIndicators],
        prices: dict[str, float],
        equity: float,
        positions: dict[str, float],
    ) -> dict[str, float]:
        """Signed USD targets; symbols left out keep their (drifted) position."""
        ...

    def state(self) -> dict[str, Any]:
        """What the policy learned, for the report."""
        ...

    def close(self) -> None:
        """Release what the policy holds (connections, threads); idempotent."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class Replay:
    """Per-bar record of one replay (arrays of length T; ``positions`` is T x symbols).

    ``costs`` = ``fees`` + ``slippage`` (USD) paid at each bar; ``fills`` the fills made;
    ``trading_state`` the portfolio's state code after the bar (0 ACTIVE, 1 REDUCING,
    2 HALTED); ``execution`` what the execution did (``BookExecution.summary``)."""

    policy: str
    symbols: tuple[str, ...]
    timestamp_ms: IntArray
    equity: FloatArray
    positions: FloatArray
    traded_usd: FloatArray
    turnover: FloatArray
    exposure: FloatArray
    costs: FloatArray
    initial_capital: float
    periods_per_year: float
    fees_bps: float
    slippage_bps: float
    elapsed_sec: float
    learned: dict[str, Any] = field(default_factory=dict)
    fees: FloatArray = field(default_factory=lambda: np.zeros(0))
    slippage: FloatArray = field(default_factory=lambda: np.zeros(0))
    fills: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    trading_state: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    execution: dict[str, Any] = field(default_factory=dict)

    @property
    def returns(self) -> FloatArray:
        prev = np.concatenate([[self.initial_capital], self.equity[:-1]])
        return np.asarray(self.equity / prev - 1.0, dtype=np.float64)

    @property
    def drawdown(self) -> FloatArray:
        return drawdown_series(self.equity, self.initial_capital)

    @property
    def bars_per_sec(self) -> float:
        return len(self.equity) / self.elapsed_sec if self.elapsed_sec > 0 else math.inf

    def metrics(self) -> dict[str, Any]:
        return summarize(self.equity, self.initial_capital, self.turnover, self.exposure,
                         self.periods_per_year)


def replay(  # noqa: PLR0913 - the run's options (keyword-only)
    market: MarketData,
    tape: SignalTape,
    policy: SizingPolicy,
    *,
    initial_capital: float = 100_000.0,
    fees_bps: float = 0.0,
    slippage_bps: float = 0.0,
    execution: ExecutionSetup | None = None,
    progress: ProgressFn | None = None,
    progress_every: int = 500,
) -> Replay:
    """Run ``policy`` over ``market`` with ``tape``'s signals (see the module docstring).
    ``execution``: the book's config, instrument rules, executor and trading states
    (default: the default config with ``fees_bps`` and ``slippage_bps`` in the fill
    model)."""
    _check(market, tape, initial_capital, fees_bps, slippage_bps)
    setup = (execution.with_capital(initial_capital) if execution is not None
             else ExecutionSetup.from_costs(initial_capital, fees_bps, slippage_bps))
    run = _Run(market, policy, initial_capital, setup)
    n = market.n_bars
    started = time.perf_counter()
    for t in range(n):
        if t > 0:
            run.mark(t)
        run.trade(t, tape)
        if progress is not None and ((t + 1) % progress_every == 0 or t + 1 == n):
            progress(t + 1)
    elapsed = time.perf_counter() - started
    fm = setup.config.execution.fill_model
    rec = run.record
    fees, slippage = np.asarray(rec.fees), np.asarray(rec.slippage)
    return Replay(policy.name, market.symbols, market.timestamp_ms, np.asarray(rec.equity),
                  np.asarray(rec.positions, dtype=np.float64).reshape(n, len(market.symbols)),
                  np.asarray(rec.traded), np.asarray(rec.turnover), np.asarray(rec.exposure),
                  fees + slippage, float(initial_capital), market.periods_per_year,
                  fm.fee_bps, fm.slippage_bps, elapsed, policy.state(), fees, slippage,
                  np.asarray(rec.fills, dtype=np.int64),
                  np.asarray(rec.trading_state, dtype=np.int64),
                  run.execution.summary(market.symbols))


def _check(market: MarketData, tape: SignalTape, initial_capital: float, fees_bps: float,
           slippage_bps: float) -> None:
    if len(tape) != market.n_bars:
        raise ValueError(f"signal tape has {len(tape)} bars, prices {market.n_bars}")
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital was {initial_capital!r}, expected > 0")
    for name, bps in (("fees_bps", fees_bps), ("slippage_bps", slippage_bps)):
        if not (math.isfinite(bps) and 0.0 <= bps <= 1_000.0):
            raise ValueError(f"{name} was {bps!r}, expected 0 <= {name} <= 1000")


class _BarClock:
    """The replay's time: the current bar's timestamp (trading days, intents, latency)."""

    def __init__(self) -> None:
        self.now_ns = 0

    def monotonic(self) -> float:
        return self.now_ns / 1e9

    def time_ns(self) -> int:
        return self.now_ns


class _Record:
    """The per-bar record as it grows (lists: one append per bar costs less than a store
    into a numpy array; `replay` makes the arrays once at the end). ``positions``: the
    bars' rows one after the other."""

    def __init__(self) -> None:
        self.equity: list[float] = []
        self.positions: list[float] = []
        self.traded: list[float] = []
        self.turnover: list[float] = []
        self.exposure: list[float] = []
        self.fees: list[float] = []
        self.slippage: list[float] = []
        self.fills: list[int] = []
        self.trading_state: list[int] = []


class _Run:
    """The replay's book and execution (``execution.py``) and its per-bar record."""

    def __init__(self, market: MarketData, policy: SizingPolicy, initial_capital: float,
                 setup: ExecutionSetup) -> None:
        self.policy = policy
        self.symbols = market.symbols
        self.close: list[list[float]] = market.close.tolist()
        self.stamps = [int(ms) * 1_000_000 for ms in market.timestamp_ms.tolist()]
        vols = [b.volume.tolist() for b in market.bars]
        self.volumes: list[dict[str, float]] | None = (
            [dict(zip(self.symbols, row, strict=True)) for row in zip(*vols, strict=True)]
            if vols else None)
        self.clock = _BarClock()
        self.execution = BookExecution(setup, self.clock)
        self.record = _Record()
        self.ruined = False

    def mark(self, t: int) -> None:
        """Step 1's learning half: the policy is told bar t's close-to-close returns."""
        row, prev, symbols = self.close[t], self.close[t - 1], self.symbols
        self.policy.mark(t, self.stamps[t],
                         {symbols[j]: row[j] / prev[j] - 1.0 for j in range(len(symbols))})

    def trade(self, t: int, tape: SignalTape) -> None:
        """Steps 1-3 at bar t's close, then the bar's record."""
        ex, symbols, row = self.execution, self.symbols, self.close[t]
        self.clock.now_ns = self.stamps[t]
        prices = {symbols[j]: row[j] for j in range(len(symbols))}
        equity = ex.equity(prices)
        positions = {s: ex.quantity(s) * prices[s] for s in symbols}
        if not self.ruined and equity <= 0.0:
            self.ruined = True
        if self.ruined:
            targets: dict[str, float] = dict.fromkeys(symbols, 0.0)
        else:
            targets = self._targets(t, tape, prices, equity, positions)
            ex.observe_cascade(tape.cascade[t])
        bar = ex.trade(t, {s: targets.get(s, positions[s]) for s in symbols}, prices,
                       None if self.volumes is None else self.volumes[t])
        after = ex.equity(prices)  # re-marked at the close (fills marked at their price)
        held = [ex.quantity(s) * prices[s] for s in symbols]
        rec = self.record
        rec.equity.append(after)
        rec.positions.extend(held)
        rec.traded.append(bar.traded_usd)
        rec.turnover.append(bar.traded_usd / equity if equity > 0 else 0.0)
        rec.exposure.append(sum([abs(x) for x in held], 0.0) / after if after > 0 else 0.0)
        rec.fees.append(bar.fees)
        rec.slippage.append(bar.slippage_usd)
        rec.fills.append(bar.fills)
        rec.trading_state.append(ex.state_code)

    def _targets(self, t: int, tape: SignalTape, prices: dict[str, float], equity: float,
                 positions: dict[str, float]) -> dict[str, float]:
        targets = self.policy.targets(t, self.stamps[t], tape.signals[t], tape.cascade[t],
                                      prices, equity, positions)
        for sym, usd in targets.items():
            if not math.isfinite(usd):
                raise ValueError(f"policy {self.policy.name} returned {usd!r} for {sym} at "
                                 f"bar {t}, expected a finite USD target")
        return targets
