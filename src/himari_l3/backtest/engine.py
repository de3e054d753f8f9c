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
    if len(tape) != market.n_bars:
        raise ValueError(f"signal tape has {len(tape)} bars, prices {market.n_bars}")
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital was {initial_capital!r}, expected > 0")
    for name, bps in (("fees_bps", fees_bps), ("slippage_bps", slippage_bps)):
        if not (math.isfinite(bps) and 0.0 <= bps <= 10_000.0):
            raise ValueError(f"{name} was {bps!r}, expected 0 <= {name} <= 10000")
    symbols = market.symbols
    n_sym = len(symbols)
    n = market.n_bars
    close: list[list[float]] = market.close.tolist()
    cost_rate = (fees_bps + slippage_bps) / 1e4
    index = {s: j for j, s in enumerate(symbols)}
    stamps = [int(ms) * 1_000_000 for ms in market.timestamp_ms.tolist()]

    equity_out = np.empty(n)
    pos_out = np.empty((n, n_sym))
    traded_out = np.zeros(n)
    turnover_out = np.zeros(n)
    exposure_out = np.zeros(n)
    cost_out = np.zeros(n)

    equity = float(initial_capital)
    pos = [0.0] * n_sym
    ruined = False
    started = time.perf_counter()
    for t in range(n):
        row = close[t]
        if t > 0:
            prev = close[t - 1]
            rets = {symbols[j]: row[j] / prev[j] - 1.0 for j in range(n_sym)}
            pnl = 0.0
            for j in range(n_sym):
                a = rets[symbols[j]]
                pnl += pos[j] * a
                pos[j] *= 1.0 + a
            equity += pnl
            policy.mark(t, stamps[t], rets)
        if not ruined and equity <= 0.0:
            ruined, equity = True, 0.0
        traded = 0.0
        pre = equity
        if ruined:
            traded = sum(abs(x) for x in pos)
            pos = [0.0] * n_sym
        else:
            targets = policy.targets(t, stamps[t], tape.signals[t], tape.cascade[t],
                                     {symbols[j]: row[j] for j in range(n_sym)}, equity,
                                     {symbols[j]: pos[j] for j in range(n_sym)})
            for sym, usd in targets.items():
                j = index[sym]
                if not math.isfinite(usd):
                    raise ValueError(f"policy {policy.name} returned {usd!r} for {sym} at "
                                     f"bar {t}, expected a finite USD target")
                traded += abs(usd - pos[j])
                pos[j] = usd
            cost = traded * cost_rate
            equity -= cost
            cost_out[t] = cost
            turnover_out[t] = traded / pre if pre > 0 else 0.0
        equity_out[t] = equity
        pos_out[t] = pos
        traded_out[t] = traded
        gross = sum(abs(x) for x in pos)
        exposure_out[t] = gross / equity if equity > 0 else 0.0
        if progress is not None and ((t + 1) % progress_every == 0 or t + 1 == n):
            progress(t + 1)
    elapsed = time.perf_counter() - started
    return Replay(policy.name, symbols, market.timestamp_ms, equity_out, pos_out, traded_out,
                  turnover_out, exposure_out, cost_out, float(initial_capital),
                  market.periods_per_year, fees_bps, slippage_bps, elapsed, policy.state())
