r"""Rolling, time-aligned correlation monitor with Ledoit-Wolf shrinkage.

Each ``update(returns, timestamp_ns)`` adds one row (one timestamp); a symbol missing from a
row has no observation there (it is *not* deleted: its history stays). For a set of symbols
the monitor uses the last ``window`` rows where all of them were observed (time-aligned),
standardises each column, and shrinks the sample correlation toward the identity with the
Ledoit-Wolf (2004) intensity

.. math::  \delta = \min\!\Big(1, \frac{\sum_k \lVert x_k x_k^\top - S\rVert_F^2 / n^2}
           {\lVert S - I\rVert_F^2}\Big),\qquad R = \delta I + (1-\delta) S .

With fewer than ``min_observations`` aligned rows the monitor reports the identity (no
evidence of correlation yet, shrinkage 1). A constant series has no defined correlation; it
is treated as uncorrelated (0) with everything rather than producing NaN.

Written by hand (about 20 lines of numpy) because the maintained implementation lives in
scikit-learn, which would be a heavy dependency for this alone.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._exceptions import ValidationError

__all__ = ["CorrelationMonitor", "ledoit_wolf_correlation"]


class InvalidReturnsException(ValidationError):
    """A return passed to the correlation monitor is not a finite number in range."""


def ledoit_wolf_correlation(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """Shrunk correlation of the columns of ``x`` (rows = aligned observations)."""
    n, p = x.shape
    std = x.std(axis=0)
    live = std > 0.0
    z = np.zeros_like(x)
    z[:, live] = (x[:, live] - x[:, live].mean(axis=0)) / std[live]
    s = (z.T @ z) / n
    np.fill_diagonal(s, 1.0)
    target = np.eye(p)
    denom = float(((s - target) ** 2).sum())
    if denom <= 0.0:
        return target, 1.0
    # pi-hat: sum of squared deviations of the per-row outer products from S.
    # Diagonals are fixed at 1, so only off-diagonal entries carry estimation error.
    off = ~np.eye(p, dtype=bool)
    outer = np.einsum("ki,kj->kij", z, z)
    num = float((((outer - s) ** 2)[:, off]).sum()) / (n * n)
    delta = min(1.0, max(0.0, num / denom))
    r = delta * target + (1.0 - delta) * s
    return r, delta


class CorrelationMonitor:
    """Rolling aligned returns per symbol; see the module docstring."""

    def __init__(self, window: int = 120, min_observations: int = 20) -> None:
        self.window = window
        self.min_observations = min_observations
        self.rows_: deque[tuple[int, dict[str, float]]] = deque(maxlen=window)
        self.version_ = 0
        self._cache: dict[tuple[str, ...], tuple[NDArray[np.float64], float, int]] = {}
        self._cache_version = -1
        self._derived_cache: dict[tuple[str, ...], list[list[float]] | None] = {}
        self._derived_version = -1
        self._vol_cache: dict[str, float | None] = {}
        self._vol_version = -1

    def update(self, returns: dict[str, float], timestamp_ns: int) -> None:
        """Add one aligned row of per-symbol returns (fractions: 0.01 = +1 %)."""
        if not isinstance(returns, dict):
            raise InvalidReturnsException("returns", returns, "a mapping of symbol to return")
        row: dict[str, float] = {}
        for sym in sorted(returns):
            value = returns[sym]
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or not -1.0 <= value <= 10.0):
                raise InvalidReturnsException(f"returns[{sym}]", value, "-1 <= return <= 10")
            row[sym] = float(value)
        if self.rows_ and timestamp_ns < self.rows_[-1][0]:
            raise InvalidReturnsException(
                "timestamp_ns", timestamp_ns, f">= the previous row's {self.rows_[-1][0]}")
        if self.rows_ and timestamp_ns == self.rows_[-1][0]:
            # Same timestamp: merge into that row (time alignment).
            self.rows_[-1][1].update(row)
        else:
            self.rows_.append((timestamp_ns, row))
        self.version_ += 1

    @property
    def symbols(self) -> list[str]:
        return sorted({s for _, row in self.rows_ for s in row})

    def correlation(self, symbols: list[str]) -> tuple[NDArray[np.float64], float, int]:
        """(correlation matrix in the order of ``sorted(symbols)``, shrinkage, rows used)."""
        key = tuple(sorted(symbols))
        if self._cache_version != self.version_:
            self._cache.clear()
            self._cache_version = self.version_
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        p = len(key)
        aligned = [[row[s] for s in key] for _, row in self.rows_ if all(s in row for s in key)]
        n = len(aligned)
        if p < 2 or n < self.min_observations:
            result = (np.eye(p), 1.0, n)
        else:
            r, delta = ledoit_wolf_correlation(np.asarray(aligned, dtype=np.float64))
            result = (r, delta, n)
        self._cache[key] = result
        return result

    def _derived(self) -> dict[tuple[str, ...], list[list[float]] | None]:
        # Derived matrices (as plain nested lists) live until the next update.
        if self._derived_version != self.version_:
            self._derived_cache.clear()
            self._derived_version = self.version_
        return self._derived_cache

    def matrix_rows(self, symbols: list[str]) -> list[list[float]]:
        """``correlation(symbols)``'s matrix as nested lists (order of ``sorted(symbols)``)."""
        cache = self._derived()
        key = ("rows", *sorted(symbols))
        rows = cache.get(key)
        if rows is None:
            rows = cache[key] = self.correlation(symbols)[0].tolist()
        return rows

    def inverse(self, symbols: list[str]) -> list[list[float]] | None:
        """Inverse of the shrunk correlation of ``symbols`` in their given order, as nested
        lists; None if singular."""
        cache = self._derived()
        key = ("inv", *symbols)
        if key in cache:
            return cache[key]
        order = sorted(symbols)
        corr, _, _ = self.correlation(order)
        pos = [order.index(s) for s in symbols]
        try:
            inv: list[list[float]] | None = np.linalg.inv(corr[np.ix_(pos, pos)]).tolist()
        except np.linalg.LinAlgError:
            inv = None
        cache[key] = inv
        return inv

    def volatility(self, symbol: str) -> float | None:
        """Sample standard deviation of ``symbol``'s returns in the window (None if < 2)."""
        cache = self._vol_cache
        if self._vol_version != self.version_:
            cache.clear()
            self._vol_version = self.version_
        if symbol not in cache:
            xs = [row[symbol] for _, row in self.rows_ if symbol in row]
            cache[symbol] = float(np.std(xs, ddof=1)) if len(xs) >= 2 else None
        return cache[symbol]

    def stats(self) -> dict[str, Any]:
        syms = self.symbols
        corr, delta, n = self.correlation(syms) if len(syms) >= 2 else (np.eye(1), 1.0, 0)
        off = np.abs(corr - np.eye(len(corr)))
        return {"symbols": syms, "observations": n, "shrinkage": delta,
                "max_abs_correlation": float(off.max()) if off.size else 0.0,
                "rows": len(self.rows_)}

    def export_state(self) -> dict[str, Any]:
        return {"window": self.window, "rows": [[ts, dict(r)] for ts, r in self.rows_]}

    def restore_state(self, state: dict[str, Any]) -> None:
        self.rows_ = deque(((int(ts), {str(k): float(v) for k, v in r.items()})
                            for ts, r in state["rows"]), maxlen=self.window)
        self.version_ += 1
