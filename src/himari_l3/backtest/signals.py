r"""The reference signal generator and the per-bar signal tape the replay consumes.

When no recorded Layer 2 output is given, two documented strategies run on each symbol's bars.
Every feature at bar :math:`t` is a causal recursion or a trailing window over bars
:math:`\le t` (no centred windows, no full-sample statistics), so a signal never sees the
future (a test mutates later bars and checks earlier signals are bit-identical).

Features (spans in bars; :math:`c` close, :math:`r_t = \ln(c_t/c_{t-1})`, :math:`r_0 = 0`):

* per-bar volatility :math:`\sigma_t`: EWMA of :math:`r^2` (span 48), started from bar 0's
  Parkinson range :math:`\ln(H_0/L_0)^2/(4\ln 2)`; :math:`\sigma^{L}_t` the same with span 720;
* momentum score :math:`m_t = (\mathrm{EMA}_{12}(c)/\mathrm{EMA}_{48}(c) - 1)/(\sigma_t\sqrt{24})`;
* mean-reversion score :math:`z_t = (c_t/\mathrm{EMA}_{24}(c) - 1)/(\sigma_t\sqrt{12})`.

Strategies (``strategy_id``):

* ``ref_momentum``: BUY if :math:`m_t > 0.25` (STRONG_BUY above 0.75), SELL/STRONG_SELL
  mirrored, else HOLD;
* ``ref_meanrev``: BUY if :math:`z_t < -1.0` (STRONG_BUY below -1.6), SELL mirrored, else HOLD.

For a score :math:`s` with strong threshold :math:`s^*`, strength :math:`u = \min(|s|/s^*, 1)`;
``confidence`` :math:`= 0.5 + 0.25u`; ``expected_return`` (per bar, in the trade's direction)
:math:`= k u \sigma_t` with :math:`k` 0.10 (momentum) / 0.05 (mean reversion) — deliberately
optimistic priors that Phase 1's Bayesian Kelly shrinks toward the realised edge;
``predicted_volatility`` :math:`= \sigma_t` (the holding horizon is one bar);
``risk_score`` :math:`= \mathrm{clip}((\sigma_t/\sigma^L_t - 0.5)/2, 0, 1)`.

Regime: CRISIS if :math:`\sigma_t/\sigma^L_t > 2` and the drawdown from the 24-bar high is
below -6 %; HIGH_VOLATILITY if :math:`\sigma_t/\sigma^L_t > 1.5`; TRENDING_UP / TRENDING_DOWN if
:math:`m_t > 0.5` / :math:`< -0.5`; else RANGING. The first 48 bars are warm-up (HOLD).

Cascade-indicator proxies (there is no funding or on-chain data in OHLCV): funding
:math:`= \mathrm{clip}(0.03(c_t/\mathrm{EMA}_{48} - 1), \pm 0.01)`; OI change = drawdown from
the 24-bar high; volume ratio = :math:`v_t` over the EWMA (span 168) of volume to
:math:`t-1`; whale pressure :math:`= \mathrm{clip}(2(D - 0.5), 0, 1)` with :math:`D` the
share of the last 24 bars' volume traded on down bars; netflow z-score
:math:`= -\ln(c_t/c_{t-24})/(\sigma_t\sqrt{24})`, clipped to ±50.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

from ..contracts import CascadeIndicators, MarketRegime, TacticalAction, TacticalSignal
from .data import Bars, FloatArray, MarketData

__all__ = [
    "STRATEGY_IDS",
    "SignalTape",
    "cascade_proxies",
    "reference_signals",
]

STRATEGY_IDS = ("ref_momentum", "ref_meanrev")
WARMUP_BARS = 48
_TREND_WINDOW = 24


@dataclass(frozen=True, slots=True, eq=False)
class SignalTape:
    """What the replay knows at each bar: the signals acted on at bar ``t``'s close and the
    cascade indicators per symbol (both built from information at or before ``t``)."""

    signals: tuple[tuple[TacticalSignal, ...], ...]
    cascade: tuple[dict[str, CascadeIndicators], ...]
    source: str

    def __post_init__(self) -> None:
        if len(self.signals) != len(self.cascade):
            raise ValueError(f"signals has {len(self.signals)} bars, cascade "
                             f"{len(self.cascade)}; expected equal lengths")

    def __len__(self) -> int:
        return len(self.signals)

    def permuted(self, rng: np.random.Generator) -> SignalTape:
        """Signal sets moved to randomly permuted bars (prices and cascade stay in place):
        the null hypothesis of the significance check is "timing carries no information"."""
        order = rng.permutation(len(self.signals))
        return SignalTape(tuple(self.signals[i] for i in order), self.cascade,
                          f"{self.source} (shuffled)")

    def counts(self) -> dict[str, int]:
        """Number of signals per action, for the report."""
        out = {a.value: 0 for a in TacticalAction}
        for bar in self.signals:
            for s in bar:
                out[s.action.value] += 1
        return out


def _ewma(x: FloatArray, span: float, x0: float | None = None) -> FloatArray:
    """Causal EWMA y_t = a x_t + (1-a) y_{t-1}, with y_{-1} = x0 (default x_0)."""
    a = 2.0 / (span + 1.0)
    start = float(x[0]) if x0 is None else x0
    y, _ = lfilter([a], [1.0, -(1.0 - a)], x, zi=[(1.0 - a) * start])
    return np.asarray(y, dtype=np.float64)


def _trailing(x: FloatArray, window: int) -> FloatArray:
    """Trailing windows ending at each bar (the first bars repeat bar 0 as padding)."""
    padded = np.concatenate([np.full(window - 1, x[0]), x])
    return np.asarray(sliding_window_view(padded, window), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Features:
    sigma: FloatArray
    sigma_long: FloatArray
    momentum: FloatArray
    meanrev: FloatArray
    drawdown: FloatArray


def _features(b: Bars) -> _Features:
    c = b.close
    r = np.concatenate([[0.0], np.diff(np.log(c))])
    v0 = max(math.log(b.high[0] / b.low[0]) ** 2 / (4.0 * math.log(2.0)), 1e-10)
    sigma = np.clip(np.sqrt(_ewma(r * r, 48, v0)), 1e-6, 5.0)
    sigma_long = np.clip(np.sqrt(_ewma(r * r, 720, v0)), 1e-6, 5.0)
    momentum = (_ewma(c, 12) / _ewma(c, 48) - 1.0) / (sigma * math.sqrt(24.0))
    meanrev = (c / _ewma(c, 24) - 1.0) / (sigma * math.sqrt(12.0))
    drawdown = c / _trailing(c, _TREND_WINDOW).max(axis=1) - 1.0
    return _Features(sigma, sigma_long, momentum, meanrev, drawdown)


def cascade_proxies(b: Bars) -> list[CascadeIndicators]:
    """Per-bar CascadeIndicators proxies from OHLCV (module docstring), causal."""
    f = _features(b)
    c, vol = b.close, b.volume
    funding = np.clip(0.03 * (c / _ewma(c, 48) - 1.0), -0.01, 0.01)
    vol_avg = np.concatenate([[vol[0]], _ewma(vol, 168)[:-1]])
    vratio = np.clip(np.divide(vol, vol_avg, out=np.ones_like(vol), where=vol_avg > 0),
                     0.0, 1000.0)
    down = np.concatenate([[0.0], (np.diff(c) < 0).astype(np.float64)])
    vw = _trailing(vol, _TREND_WINDOW)
    dvol = _trailing(vol * down, _TREND_WINDOW).sum(axis=1)
    tot = vw.sum(axis=1)
    share = np.divide(dvol, tot, out=np.full_like(tot, 0.5), where=tot > 0)
    whale = np.clip(2.0 * (share - 0.5), 0.0, 1.0)
    past = np.concatenate([np.full(_TREND_WINDOW, c[0]), c[:-_TREND_WINDOW]])[: len(c)]
    netflow = np.clip(-np.log(c / past) / (f.sigma * math.sqrt(_TREND_WINDOW)), -50.0, 50.0)
    oi = np.clip(f.drawdown, -1.0, 0.0)
    return [CascadeIndicators(float(funding[t]), float(oi[t]), float(vratio[t]),
                              float(whale[t]), float(netflow[t]))
            for t in range(len(c))]


def _regimes(f: _Features) -> list[MarketRegime]:
    ratio = f.sigma / f.sigma_long
    out = []
    for t in range(len(ratio)):
        if ratio[t] > 2.0 and f.drawdown[t] < -0.06:
            out.append(MarketRegime.CRISIS)
        elif ratio[t] > 1.5:
            out.append(MarketRegime.HIGH_VOLATILITY)
        elif f.momentum[t] > 0.5:
            out.append(MarketRegime.TRENDING_UP)
        elif f.momentum[t] < -0.5:
            out.append(MarketRegime.TRENDING_DOWN)
        else:
            out.append(MarketRegime.RANGING)
    return out


def _action(score: float, entry: float, strong: float) -> TacticalAction:
    if score > strong:
        return TacticalAction.STRONG_BUY
    if score > entry:
        return TacticalAction.BUY
    if score < -strong:
        return TacticalAction.STRONG_SELL
    if score < -entry:
        return TacticalAction.SELL
    return TacticalAction.HOLD


# strategy id -> (entry, strong, edge coefficient, sign applied to the score)
_RULES = {"ref_momentum": (0.25, 0.75, 0.10, 1.0), "ref_meanrev": (1.0, 1.6, 0.05, -1.0)}


def _symbol_signals(b: Bars) -> list[list[TacticalSignal]]:
    f = _features(b)
    regimes = _regimes(f)
    risk = np.clip((f.sigma / f.sigma_long - 0.5) / 2.0, 0.0, 1.0)
    scores = {"ref_momentum": f.momentum, "ref_meanrev": f.meanrev}
    out: list[list[TacticalSignal]] = []
    for t in range(len(b)):
        ts_ns = int(b.timestamp_ms[t]) * 1_000_000
        sigma = float(f.sigma[t])
        bar: list[TacticalSignal] = []
        for sid in STRATEGY_IDS:
            entry, strong, edge, sign = _RULES[sid]
            score = sign * float(scores[sid][t])
            action = TacticalAction.HOLD if t < WARMUP_BARS else _action(score, entry, strong)
            u = min(abs(score) / strong, 1.0) if action is not TacticalAction.HOLD else 0.0
            bar.append(TacticalSignal(
                strategy_id=sid, symbol=b.symbol, action=action, confidence=0.5 + 0.25 * u,
                risk_score=float(risk[t]), regime=regimes[t], timestamp_ns=ts_ns,
                expected_return=edge * u * sigma, predicted_volatility=sigma,
                signal_strength=u))
        out.append(bar)
    return out


def reference_signals(market: MarketData) -> SignalTape:
    """Run the reference strategies on every symbol; one tape over the aligned bars."""
    per_symbol: Sequence[list[list[TacticalSignal]]] = [_symbol_signals(b) for b in market.bars]
    cascades = [cascade_proxies(b) for b in market.bars]
    n = market.n_bars
    signals = tuple(tuple(s for sym in per_symbol for s in sym[t]) for t in range(n))
    cascade = tuple({market.symbols[j]: cascades[j][t] for j in range(len(market.symbols))}
                    for t in range(n))
    return SignalTape(signals, cascade, "reference generator (ref_momentum, ref_meanrev)")
