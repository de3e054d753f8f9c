r"""The replay loop: bar by bar, size with what is known at the bar's close, hold to the next.

At bar :math:`t` (timestamps :math:`0..T-1`):

1. **mark**: the positions carried over :math:`(t-1, t]` earn the close-to-close returns
   :math:`a_{t,j} = c_{t,j}/c_{t-1,j} - 1`; equity :math:`E \mathrel{+}= \sum_j x_j a_{t,j}`
   and each position drifts, :math:`x_j \leftarrow x_j(1 + a_{t,j})`; the policy is told
   (its learners update from these realised outcomes);
2. **size**: the policy receives bar :math:`t`'s signals, cascade indicators, closes, the
   equity and the drifted positions — nothing later — and returns signed USD targets;
3. **trade**: traded notional :math:`q_t = \sum_j |x^*_j - x_j|`, cost
   :math:`q_t (\text{fees} + \text{slippage})/10^4` comes off equity, positions become the
   targets and are held over :math:`(t, t+1]`.

Recorded per bar: equity after costs, positions, :math:`q_t`, turnover :math:`q_t/E^{pre}_t`
(equity before costs) and exposure :math:`\sum_j|x_j|/E_t`. If equity reaches 0 the replay
flattens and stops trading (ruin).
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
from .signals import SignalTape
from .stats import drawdown_series, summarize

__all__ = ["Replay", "SizingPolicy", "replay"]

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
    """Per-bar record of one replay (arrays of length T; ``positions`` is T x symbols)."""

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


def replay(
    market: MarketData,
    tape: SignalTape,
    policy: SizingPolicy,
    *,
    initial_capital: float = 100_000.0,
    fees_bps: float = 0.0,
    slippage_bps: float = 0.0,
    progress: ProgressFn | None = None,
    progress_every: int = 500,
) -> Replay:
    """Run ``policy`` over ``market`` with ``tape``'s signals (see the module docstring)."""
    _check(market, tape, initial_capital, fees_bps, slippage_bps)
    run = _Run(market, policy, initial_capital, (fees_bps + slippage_bps) / 1e4)
    n = market.n_bars
    started = time.perf_counter()
    for t in range(n):
        if t > 0:
            run.mark(t)
        run.trade(t, tape)
        if progress is not None and ((t + 1) % progress_every == 0 or t + 1 == n):
            progress(t + 1)
    elapsed = time.perf_counter() - started
    return Replay(policy.name, market.symbols, market.timestamp_ms, run.equity_out,
                  run.pos_out, run.traded_out, run.turnover_out, run.exposure_out,
                  run.cost_out, float(initial_capital), market.periods_per_year, fees_bps,
                  slippage_bps, elapsed, policy.state())


def _check(market: MarketData, tape: SignalTape, initial_capital: float, fees_bps: float,
           slippage_bps: float) -> None:
    if len(tape) != market.n_bars:
        raise ValueError(f"signal tape has {len(tape)} bars, prices {market.n_bars}")
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital was {initial_capital!r}, expected > 0")
    for name, bps in (("fees_bps", fees_bps), ("slippage_bps", slippage_bps)):
        if not (math.isfinite(bps) and 0.0 <= bps <= 10_000.0):
            raise ValueError(f"{name} was {bps!r}, expected 0 <= {name} <= 10000")


class _Run:
    """The replay's book (equity, positions) and its per-bar record."""

    def __init__(self, market: MarketData, policy: SizingPolicy, initial_capital: float,
                 cost_rate: float) -> None:
        self.policy = policy
        self.symbols = market.symbols
        self.close: list[list[float]] = market.close.tolist()
        self.stamps = [int(ms) * 1_000_000 for ms in market.timestamp_ms.tolist()]
        self.index = {s: j for j, s in enumerate(self.symbols)}
        self.cost_rate = cost_rate
        n, n_sym = market.n_bars, len(self.symbols)
        self.equity_out = np.empty(n)
        self.pos_out = np.empty((n, n_sym))
        self.traded_out = np.zeros(n)
        self.turnover_out = np.zeros(n)
        self.exposure_out = np.zeros(n)
        self.cost_out = np.zeros(n)
        self.equity = float(initial_capital)
        self.pos = [0.0] * n_sym
        self.ruined = False

    def mark(self, t: int) -> None:
        """Step 1: the positions held over (t-1, t] earn the close-to-close returns."""
        row, prev, symbols = self.close[t], self.close[t - 1], self.symbols
        rets = {symbols[j]: row[j] / prev[j] - 1.0 for j in range(len(symbols))}
        pnl = 0.0
        pos = self.pos
        for j in range(len(symbols)):
            a = rets[symbols[j]]
            pnl += pos[j] * a
            pos[j] *= 1.0 + a
        self.equity += pnl
        self.policy.mark(t, self.stamps[t], rets)

    def trade(self, t: int, tape: SignalTape) -> None:
        """Steps 2-3: size with what is known at bar t's close, trade to the targets (or
        flatten, once ruined), and record the bar."""
        if not self.ruined and self.equity <= 0.0:
            self.ruined, self.equity = True, 0.0
        traded = 0.0
        if self.ruined:
            traded = sum(abs(x) for x in self.pos)
            self.pos = [0.0] * len(self.symbols)
        else:
            traded = self._to_targets(t, tape)
        self.equity_out[t] = self.equity
        self.pos_out[t] = self.pos
        self.traded_out[t] = traded
        gross = sum(abs(x) for x in self.pos)
        self.exposure_out[t] = gross / self.equity if self.equity > 0 else 0.0

    def _to_targets(self, t: int, tape: SignalTape) -> float:
        symbols, row, pos = self.symbols, self.close[t], self.pos
        pre = self.equity
        targets = self.policy.targets(t, self.stamps[t], tape.signals[t], tape.cascade[t],
                                      {symbols[j]: row[j] for j in range(len(symbols))},
                                      self.equity,
                                      {symbols[j]: pos[j] for j in range(len(symbols))})
        traded = 0.0
        for sym, usd in targets.items():
            j = self.index[sym]
            if not math.isfinite(usd):
                raise ValueError(f"policy {self.policy.name} returned {usd!r} for {sym} at "
                                 f"bar {t}, expected a finite USD target")
            traded += abs(usd - pos[j])
            pos[j] = usd
        cost = traded * self.cost_rate
        self.equity -= cost
        self.cost_out[t] = cost
        self.turnover_out[t] = traded / pre if pre > 0 else 0.0
        return traded
