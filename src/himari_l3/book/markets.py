"""Instrument constraints — step size, tick size, minimum and maximum quantity, minimum
notional — and the rounding that order intents obey.

Two shapes are accepted per symbol (``parse_markets``; reading the file is the adapter
``config/markets.py``):

* ccxt's ``markets`` (what ``exchange.load_markets()`` returns, dumped to JSON)::

      {"BTC/USDT": {"id": "BTCUSDT", "precision": {"amount": 0.00001, "price": 0.01},
                    "limits": {"amount": {"min": 0.00001, "max": 9000},
                               "cost": {"min": 5}}, ...}}

  ``precision`` is a step (``execution.precision_mode: tick_size``, ccxt's mode for most
  exchanges since v4) or a number of decimals (``decimal_places``). Every other ccxt key is
  ignored; a market is found by its key and by its ``id`` (Layer 2 writes ``BTCUSDT``);
* a small table: ``{"BTC-USD": {"step_size": 0.0001, "tick_size": 0.01,
  "min_quantity": 0.0001, "max_quantity": 100, "min_notional": 10}}`` (every key optional).

Rounding is decimal (``0.3 / 0.1`` is 2.999... in binary floating point: a float floor would
drop a whole step) and monotone: a quantity rounded *toward zero* is never larger than the
one asked for, so rounding can never push a position past a cap.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Literal

from .._exceptions import ConfigError

__all__ = ["MarketRules", "Markets", "PrecisionMode", "parse_markets"]

PrecisionMode = Literal["tick_size", "decimal_places"]
_FLAT_KEYS = frozenset({"step_size", "tick_size", "min_quantity", "max_quantity",
                        "min_notional"})


@functools.lru_cache(maxsize=1024)
def _decimals(step: float) -> int:
    """Decimal places of a step as written (0.001 -> 3, 0.25 -> 2, 25.0 -> 0)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _grid(x: float, step: float, rounding: str) -> float:
    """``x`` (>= 0) on the grid of ``step``, rounded down (``ROUND_FLOOR``) or up: the same
    number the decimal computation gives. The float path keeps the multiple ``n * step``
    rounded to the step's decimals (so 3 x 0.1 is 0.3) and corrects ``n`` by one where the
    binary quotient fell on the wrong side; huge multiples take the decimal path."""
    ratio = x / step
    if ratio > 1e15:
        units = (Decimal(repr(x)) / Decimal(repr(step))).to_integral_value(rounding=rounding)
        return float(units * Decimal(repr(step)))
    k = _decimals(step)
    if rounding == ROUND_FLOOR:
        n = math.floor(ratio)
        if round(n * step, k) > x:
            n -= 1
        elif round((n + 1) * step, k) <= x:
            n += 1
    else:
        n = math.ceil(ratio)
        if round(n * step, k) < x:
            n += 1
        elif n > 0 and round((n - 1) * step, k) >= x:
            n -= 1
    return round(n * step, k)


@dataclass(frozen=True, slots=True)
class MarketRules:
    """One instrument's constraints (None / 0: no constraint). Quantities in base units,
    prices and notionals in the quote currency (USD)."""

    symbol: str
    step_size: float | None = None
    tick_size: float | None = None
    min_quantity: float = 0.0
    max_quantity: float | None = None
    min_notional: float = 0.0

    def __post_init__(self) -> None:
        for name in ("step_size", "tick_size", "max_quantity"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0.0):
                raise ConfigError(f"markets[{self.symbol}].{name} was {value!r}, "
                                  "expected a finite number > 0 (or none)")
        for name in ("min_quantity", "min_notional"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"markets[{self.symbol}].{name} was {value!r}, "
                                  "expected a finite number >= 0")

    def floor_quantity(self, qty: float) -> float:
        """``qty`` (>= 0) rounded toward zero to the step size."""
        return qty if self.step_size is None else _grid(qty, self.step_size, ROUND_FLOOR)

    def ceil_quantity(self, qty: float) -> float:
        """``qty`` (>= 0) rounded away from zero to the step size."""
        return qty if self.step_size is None else _grid(qty, self.step_size, ROUND_CEILING)

    def round_price(self, price: float, *, up: bool) -> float:
        """``price`` (> 0) on the tick grid, rounded up or down (never to 0: one tick)."""
        if self.tick_size is None:
            return price
        out = _grid(price, self.tick_size, ROUND_CEILING if up else ROUND_FLOOR)
        return out if out > 0.0 else self.tick_size

    def to_dict(self) -> dict[str, Any]:
        """The flat-table form (what ``GET /v1/state`` shows)."""
        return {"step_size": self.step_size, "tick_size": self.tick_size,
                "min_quantity": self.min_quantity, "max_quantity": self.max_quantity,
                "min_notional": self.min_notional}


class Markets:
    """The instruments a book may trade. Without a markets file (``rules`` None) every
    symbol trades unconstrained; with one, a symbol it does not list has no rules (None):
    the book opens no risk there (it still reduces)."""

    def __init__(self, rules: Mapping[str, MarketRules] | None = None) -> None:
        self.configured = rules is not None
        self._rules = dict(rules or {})
        self._free: dict[str, MarketRules] = {}  # unconstrained rules, one per symbol seen

    def rules(self, symbol: str) -> MarketRules | None:
        """The symbol's rules; unconstrained ones without a file; None if the file does not
        list it."""
        found = self._rules.get(symbol)
        if found is not None or self.configured:
            return found
        free = self._free.get(symbol)
        if free is None:
            if len(self._free) >= 4096:  # bounded: symbols come from requests
                self._free.clear()
            free = self._free[symbol] = MarketRules(symbol)
        return free

    def __len__(self) -> int:
        return len(self._rules)


def _num(entry: Mapping[str, Any], where: str, *path: str) -> float | None:
    """A number at ``path`` inside ``entry`` (None when absent or null)."""
    node: Any = entry
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    if node is None:
        return None
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise ConfigError(f"markets[{where}].{'.'.join(path)} was {node!r}, expected a number")
    return float(node)


def _step(value: float | None, where: str, field: str, mode: PrecisionMode) -> float | None:
    if value is None or mode == "tick_size":
        return value
    if value < 0 or value != int(value) or value > 18:
        raise ConfigError(f"markets[{where}].{field} was {value!r}, expected a number of "
                          "decimal places 0..18 (execution.precision_mode: decimal_places)")
    return float(Decimal(1).scaleb(-int(value)))


def _ccxt(symbol: str, entry: Mapping[str, Any], mode: PrecisionMode) -> MarketRules:
    return MarketRules(
        symbol,
        step_size=_step(_num(entry, symbol, "precision", "amount"), symbol,
                        "precision.amount", mode),
        tick_size=_step(_num(entry, symbol, "precision", "price"), symbol,
                        "precision.price", mode),
        min_quantity=_num(entry, symbol, "limits", "amount", "min") or 0.0,
        max_quantity=_num(entry, symbol, "limits", "amount", "max"),
        min_notional=_num(entry, symbol, "limits", "cost", "min") or 0.0)


def _flat(symbol: str, entry: Mapping[str, Any]) -> MarketRules:
    unknown = sorted(set(entry) - _FLAT_KEYS)
    if unknown:
        raise ConfigError(f"markets[{symbol}].{unknown[0]}: unknown key (expected "
                          f"{', '.join(sorted(_FLAT_KEYS))}, or ccxt's precision/limits)")
    return MarketRules(symbol, step_size=_num(entry, symbol, "step_size"),
                       tick_size=_num(entry, symbol, "tick_size"),
                       min_quantity=_num(entry, symbol, "min_quantity") or 0.0,
                       max_quantity=_num(entry, symbol, "max_quantity"),
                       min_notional=_num(entry, symbol, "min_notional") or 0.0)


def parse_markets(data: Any, mode: PrecisionMode = "tick_size") -> dict[str, MarketRules]:
    """Rules per symbol from a ccxt ``markets`` mapping or a flat table (see the module
    docstring). A ccxt market is also listed under its ``id`` unless another market has
    that name. Errors (`ConfigError`) name the symbol and the field."""
    if not isinstance(data, Mapping) or not data:
        raise ConfigError("markets: expected a non-empty mapping of symbol -> market")
    out: dict[str, MarketRules] = {}
    aliases: dict[str, MarketRules] = {}
    for symbol, entry in data.items():
        if not isinstance(symbol, str) or not symbol.strip() or not isinstance(entry, Mapping):
            raise ConfigError(f"markets[{symbol!r}]: expected a symbol name mapped to a "
                              "market object")
        ccxt = "precision" in entry or "limits" in entry
        rules = _ccxt(symbol, entry, mode) if ccxt else _flat(symbol, entry)
        out[symbol] = rules
        alias = entry.get("id") if ccxt else None
        if isinstance(alias, str) and alias and alias != symbol:
            aliases[alias] = rules
    for alias, rules in aliases.items():
        out.setdefault(alias, rules)
    return out
