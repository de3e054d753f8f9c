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

Memory is bounded whatever the input: a row holds at most ``max_symbols_per_row`` symbols,
the window at most ``max_symbols`` distinct ones (a row that would bring more is refused;
room comes back as old rows leave the window), symbols follow the signal symbol rules, and
``timestamp_ns`` is an int64 at most ``max_clock_skew_sec`` ahead of the injected clock (one
row stamped in the far future would otherwise block every later row). `stats` covers only
the symbols with enough observations and builds a matrix only once they have
``min_observations`` aligned rows, and the estimator never builds an n × p × p array, so
its cost is O(n·p + p²) memory for p ≤ ``max_symbols``.

Written by hand (about 20 lines of numpy) because the maintained implementation lives in
scikit-learn, which would be a heavy dependency for this alone.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, SupportsInt, cast

import numpy as np
from numpy.typing import NDArray

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import ValidationError
from .._validate import nonempty_str

if TYPE_CHECKING:
    from ..config.schema import CorrelationConfig

__all__ = ["CorrelationMonitor", "InvalidReturnsException", "ledoit_wolf_correlation"]

INT64_MAX = 2**63 - 1
# Matrices cached per symbol set until the next row. Batches name the sets: without rows
# (no /v1/returns traffic) nothing invalidates them, so each distinct set of symbols a
# caller sends would stay cached for ever (a leak keyed by the caller's ids). Past this
# many entries a cache starts again (it is derived data: only speed is lost).
_CACHE_ENTRIES = 256


class InvalidReturnsException(ValidationError):
    """A row of returns is invalid: a symbol, a return, its timestamp, or a size cap (the
    ``field`` is ``returns``, ``returns[<symbol>]`` or ``timestamp_ns``)."""


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
    # pi-hat: sum over rows k of the squared deviations of the off-diagonal entries of the
    # outer product z_k z_k' from S (diagonals are fixed at 1, so only off-diagonal entries
    # carry estimation error). Expanded so that no n x p x p array is built:
    #   sum_{i!=j} (z_ki z_kj - s_ij)^2 = |z_k|^4 - 2 z_k'S z_k + |S|_F^2
    #                                     - sum_i (z_ki^2 - 1)^2        (s_ii = 1)
    sq = z * z
    q = sq.sum(axis=1)
    quad = np.einsum("ki,ki->k", z @ s, z)
    total = float((q * q).sum() - 2.0 * quad.sum() + n * (s * s).sum()
                  - ((sq - 1.0) ** 2).sum())
    num = max(0.0, total) / (n * n)
    delta = min(1.0, max(0.0, num / denom))
    r = delta * target + (1.0 - delta) * s
    return r, delta


class CorrelationMonitor:
    """Rolling aligned returns per symbol; see the module docstring."""

    def __init__(self, window: int = 120, min_observations: int = 20, *,
                 max_symbols_per_row: int = 512, max_symbols: int = 512,
                 max_clock_skew_sec: float = 60.0, clock: Clock | None = None) -> None:
        self.window = window
        self.min_observations = min_observations
        self.max_symbols_per_row = max_symbols_per_row
        self.max_symbols = max_symbols
        self.max_clock_skew_sec = max_clock_skew_sec
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.rows_: deque[tuple[int, dict[str, float]]] = deque(maxlen=window)
        self._rows_with: Counter[str] = Counter()  # symbol -> rows of the window holding it
        self.version_ = 0
        self._cache: dict[tuple[str, ...], tuple[NDArray[np.float64], float, int]] = {}
        self._cache_version = -1
        self._derived_cache: dict[tuple[str, ...], list[list[float]] | None] = {}
        self._derived_version = -1
        self._vol_cache: dict[str, float | None] = {}
        self._vol_version = -1

    @classmethod
    def from_config(cls, config: CorrelationConfig, clock: Clock | None = None
                    ) -> CorrelationMonitor:
        """A monitor with the ``portfolio.correlation`` settings and ``clock`` (for the skew
        bound on timestamps)."""
        monitor = cls(config.window, config.min_observations, clock=clock)
        monitor.apply_config(config)
        return monitor

    def apply_config(self, config: CorrelationConfig) -> None:
        """Take the live settings (the window length is fixed at construction)."""
        self.min_observations = config.min_observations
        self.max_symbols_per_row = config.max_symbols_per_row
        self.max_symbols = config.max_symbols
        self.max_clock_skew_sec = config.max_clock_skew_sec
        self.version_ += 1  # invalidate cached matrices

    def update(self, returns: Mapping[str, float], timestamp_ns: SupportsInt) -> None:
        """Add one aligned row of per-symbol returns (fractions: 0.01 = +1 %).

        Raises `InvalidReturnsException` (and changes nothing) for a bad symbol or return, an
        empty row, a row over the caps, or a timestamp outside int64, ahead of the clock by
        more than ``max_clock_skew_sec`` or before the previous row's."""
        if not isinstance(returns, (dict, Mapping)):  # (dict first: an ABC check costs more)
            raise InvalidReturnsException("returns", returns, "a mapping of symbol to return")
        if not returns:
            # An empty row observes nothing, yet would take a window slot (pushing a real
            # row out): a caller could flush the window with them.
            raise InvalidReturnsException("returns", returns, "at least one symbol")
        if len(returns) > self.max_symbols_per_row:
            raise InvalidReturnsException(
                "returns", len(returns), f"at most portfolio.correlation.max_symbols_per_row "
                f"({self.max_symbols_per_row}) symbols in one row")
        # The caller's keys and values as objects until checked: a compiled build would
        # otherwise refuse a bad key, or turn a bool into a float, before the checks below.
        raw = cast("Mapping[object, object]", returns)
        row: dict[str, float] = {}
        for key in raw:
            try:
                nonempty_str(InvalidReturnsException, "returns", key)
            except InvalidReturnsException as err:
                raise InvalidReturnsException("returns", key,
                                              f"a symbol key: {err.expected}") from None
        for sym in sorted(cast("Mapping[str, object]", raw)):
            value = raw[sym]
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or not -1.0 <= value <= 10.0):
                raise InvalidReturnsException(f"returns[{sym}]", value, "-1 <= return <= 10")
            row[sym] = float(value)
        ts = self._check_timestamp(timestamp_ns)
        merge = bool(self.rows_) and ts == self.rows_[-1][0]
        self._check_window_cap(row, merge)
        if merge:
            # Same timestamp: merge into that row (time alignment).
            last = self.rows_[-1][1]
            self._rows_with.update(s for s in row if s not in last)
            last.update(row)
        else:
            if len(self.rows_) == self.window:
                self._forget(self.rows_[0][1])
            self.rows_.append((ts, row))
            counts = self._rows_with
            for sym in row:  # count rows, not returns (a loop: Counter.update is Python code)
                counts[sym] += 1
        self.version_ += 1

    def _check_timestamp(self, ts: object) -> int:
        """``ts`` as an int (typed ``object``: a compiled build would refuse a float with a
        bare TypeError before this check could name the field)."""
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise InvalidReturnsException("timestamp_ns", ts,
                                          "an integer number of nanoseconds since the epoch")
        if not 0 <= ts <= INT64_MAX:
            raise InvalidReturnsException("timestamp_ns", ts,
                                          f"0 <= timestamp_ns <= {INT64_MAX} (int64)")
        now = self.clock.time_ns()
        limit = now + round(self.max_clock_skew_sec * 1e9)
        if ts > limit:
            raise InvalidReturnsException(
                "timestamp_ns", ts, f"at most {limit}: the clock's {now} plus "
                f"portfolio.correlation.max_clock_skew_sec ({self.max_clock_skew_sec:g} s)")
        if self.rows_ and ts < self.rows_[-1][0]:
            raise InvalidReturnsException(
                "timestamp_ns", ts, f">= the previous row's {self.rows_[-1][0]}")
        return ts

    def _check_window_cap(self, row: dict[str, float], merge: bool) -> None:
        new = [s for s in row if s not in self._rows_with]
        if not new:
            return
        leaving = 0
        if not merge and len(self.rows_) == self.window:  # the oldest row leaves the window
            leaving = sum(1 for s in self.rows_[0][1]
                          if self._rows_with[s] == 1 and s not in row)
        distinct = len(self._rows_with) + len(new) - leaving
        if distinct > self.max_symbols:
            raise InvalidReturnsException(
                "returns", distinct, f"at most portfolio.correlation.max_symbols "
                f"({self.max_symbols}) distinct symbols in the correlation window "
                f"(this row adds {len(new)} new ones)")

    def _forget(self, row: dict[str, float]) -> None:
        counts = self._rows_with
        for s in row:
            counts[s] -= 1
            if counts[s] <= 0:
                del counts[s]

    @property
    def symbols(self) -> list[str]:
        """Every symbol observed in the window, sorted."""
        return sorted(self._rows_with)

    def correlation(self, symbols: list[str]) -> tuple[NDArray[np.float64], float, int]:
        """(correlation matrix in the order of ``sorted(symbols)``, shrinkage, rows used)."""
        key = tuple(sorted(symbols))
        if self._cache_version != self.version_:
            self._cache.clear()
            self._cache_version = self.version_
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.clear()
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
        if (self._derived_version != self.version_
                or len(self._derived_cache) >= _CACHE_ENTRIES):
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
        if self._vol_version != self.version_ or len(cache) >= _CACHE_ENTRIES:
            cache.clear()
            self._vol_version = self.version_
        if symbol not in cache:
            xs = [row[symbol] for _, row in self.rows_ if symbol in row]
            cache[symbol] = float(np.std(xs, ddof=1)) if len(xs) >= 2 else None
        return cache[symbol]

    def stats(self) -> dict[str, Any]:
        """Summary over the symbols with enough data (``aligned_symbols``): those observed in
        at least ``min_observations`` rows of the window — or, while none is yet, those
        observed most often. ``observations`` counts the rows where all of them were
        observed; shrinkage and the largest absolute pairwise correlation come from those
        rows once there are ``min_observations`` of them. Other symbols are listed in
        ``symbols`` only, so no matrix is ever built over every symbol seen (a row of
        one-off symbols costs no matrix at all)."""
        counts = self._rows_with
        need = min(self.min_observations, max(counts.values(), default=0))
        aligned = sorted(s for s, n in counts.items() if n >= need) if need else []
        n = self._rows_with_all(aligned)
        delta, max_abs = 1.0, 0.0
        if len(aligned) >= 2 and n >= self.min_observations:
            corr, delta, n = self.correlation(aligned)
            off = np.abs(corr)
            np.fill_diagonal(off, 0.0)
            max_abs = float(off.max())
        return {"symbols": self.symbols, "aligned_symbols": aligned, "observations": n,
                "shrinkage": delta, "max_abs_correlation": max_abs, "rows": len(self.rows_)}

    def _rows_with_all(self, symbols: list[str]) -> int:
        """Rows of the window holding every one of ``symbols``. A symbol counted in every
        row is in all of them, so the scan runs only when some symbol is missing from some
        row (one symbol: its count is the answer)."""
        if not symbols:
            return 0
        counts, rows = self._rows_with, len(self.rows_)
        if len(symbols) == 1:
            return counts[symbols[0]]
        if all(counts[s] == rows for s in symbols):
            return rows
        return sum(1 for _, row in self.rows_ if all(s in row for s in symbols))

    def export_state(self) -> dict[str, Any]:
        return {"window": self.window, "rows": [[ts, dict(r)] for ts, r in self.rows_]}

    def restore_state(self, state: dict[str, Any]) -> None:
        self.rows_ = deque(((int(ts), {str(k): float(v) for k, v in r.items()})
                            for ts, r in state["rows"]), maxlen=self.window)
        self._rows_with = Counter(s for _, row in self.rows_ for s in row)
        self.version_ += 1
