"""Bounded learned state: Phase 1 forgets its least recently used keys beyond a cap.

Phase 1 learns per key, and keys come from the caller: a Kelly posterior and the last
prediction per strategy x symbol, a conformal window per strategy, a regime state per
symbol. Without a bound, a caller minting ids (a timestamp in ``strategy_id``, a typo per
request) grows memory, snapshots and replay time without limit. Each of the three key
spaces has a cap (``sizing.retention``); past it, the least recently *used* keys are
forgotten — used meaning decided on or learned from — and the key starts again from the
prior if it comes back.

Why least recently used and not a time-to-live: a TTL bounds memory only by the rate of new
keys times the TTL, and the rate is the caller's to choose; a count cap bounds it whatever
the caller does. Why evict rather than refuse new keys with a 4xx: a refusal would leave the
service's availability to whatever junk filled the cap first (nothing ever frees it), while
eviction keeps serving the keys in use and only forgets keys that a cap's worth of other
keys have been used since.

Deterministic, and part of the learned state: the order is a function of the sequence of
touches alone (no clock), it is exported and restored with the state, and eviction happens
at fixed points (the end of a decision, a batch, an outcome, a config change), so replaying
the journal evicts exactly the keys the live service evicted.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, NamedTuple, TypeVar

from ..config.schema import RetentionConfig

__all__ = ["STRUCTURES", "Evicted", "RecencyIndex", "Retention"]

K = TypeVar("K", bound=Hashable)

# The key spaces, as metric labels and state keys.
STRATEGY_SYMBOL, STRATEGY, SYMBOL = "strategy_symbol", "strategy", "symbol"
STRUCTURES = (STRATEGY_SYMBOL, STRATEGY, SYMBOL)


class RecencyIndex(Generic[K]):
    """Keys from least to most recently used (a dict as an ordered set: O(1) touch)."""

    __slots__ = ("_order",)

    def __init__(self, keys: Iterable[K] = ()) -> None:
        self._order: dict[K, None] = dict.fromkeys(keys)

    def reset(self, keys: Iterable[K]) -> None:
        """Replace the order (in place: callers may hold ``touch``)."""
        self._order.clear()
        self._order.update(dict.fromkeys(keys))

    def touch(self, key: K) -> None:
        """Mark ``key`` most recently used (adding it if new)."""
        order = self._order
        order.pop(key, None)
        order[key] = None

    def evict_beyond(self, cap: int) -> list[K]:
        """Drop the least recently used keys until at most ``cap`` remain; returns them."""
        order = self._order
        excess = len(order) - cap
        if excess <= 0:
            return []
        it = iter(order)
        victims = [next(it) for _ in range(excess)]
        for key in victims:
            del order[key]
        return victims

    def in_order(self) -> list[K]:
        """Least recently used first."""
        return list(self._order)

    def recent(self, n: int) -> list[K]:
        """The ``n`` most recently used keys, most recent first."""
        out: list[K] = []
        for key in reversed(self._order):
            if len(out) >= n:
                break
            out.append(key)
        return out

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._order


class Evicted(NamedTuple):
    """Keys forgotten by one trim, per key space."""

    pairs: list[tuple[str, str]]
    strategies: list[str]
    symbols: list[str]

    def counts(self) -> tuple[tuple[str, int], ...]:
        """(structure, keys forgotten) for the structures that lost any."""
        sizes = (len(self.pairs), len(self.strategies), len(self.symbols))
        return tuple((name, n) for name, n in zip(STRUCTURES, sizes, strict=True) if n)


class Retention:
    """The recency of Phase 1's three key spaces and their caps.

    Phase 1 touches a strategy x symbol and its strategy when it decides or learns, and a
    symbol when it observes its regime; ``trim`` then forgets what is beyond the caps,
    through the ``forget_*`` callbacks (which delete the learners' entries).
    """

    def __init__(self, config: RetentionConfig,
                 forget_pair: Callable[[tuple[str, str]], None],
                 forget_strategy: Callable[[str], None],
                 forget_symbol: Callable[[str], None]) -> None:
        self.config = config
        # Replaced in place only (Phase 1 holds their ``touch``).
        self.pairs: RecencyIndex[tuple[str, str]] = RecencyIndex()
        self.strategies: RecencyIndex[str] = RecencyIndex()
        self.symbols: RecencyIndex[str] = RecencyIndex()
        self.evictions_ = dict.fromkeys(STRUCTURES, 0)
        self._forget_pair = forget_pair
        self._forget_strategy = forget_strategy
        self._forget_symbol = forget_symbol

    def trim(self) -> Evicted | None:
        """Forget the least recently used keys beyond each cap (None: nothing to forget)."""
        cfg = self.config
        if (len(self.pairs) <= cfg.max_strategy_symbols
                and len(self.strategies) <= cfg.max_strategies
                and len(self.symbols) <= cfg.max_symbols):
            return None
        out = Evicted(self.pairs.evict_beyond(cfg.max_strategy_symbols),
                      self.strategies.evict_beyond(cfg.max_strategies),
                      self.symbols.evict_beyond(cfg.max_symbols))
        for pair in out.pairs:
            self._forget_pair(pair)
        for strategy in out.strategies:
            self._forget_strategy(strategy)
        for symbol in out.symbols:
            self._forget_symbol(symbol)
        for name, n in out.counts():
            self.evictions_[name] += n
        return out

    def summary(self) -> dict[str, Any]:
        """Sizes, caps and eviction counts (for ``get_state``)."""
        cfg = self.config
        return {
            "policy": "lru",
            STRATEGY_SYMBOL: {"keys": len(self.pairs), "cap": cfg.max_strategy_symbols,
                              "evicted": self.evictions_[STRATEGY_SYMBOL]},
            STRATEGY: {"keys": len(self.strategies), "cap": cfg.max_strategies,
                       "evicted": self.evictions_[STRATEGY]},
            SYMBOL: {"keys": len(self.symbols), "cap": cfg.max_symbols,
                     "evicted": self.evictions_[SYMBOL]},
        }

    def export_state(self) -> dict[str, Any]:
        """The recency order (least recently used first) and the eviction counts."""
        return {STRATEGY_SYMBOL: [list(k) for k in self.pairs.in_order()],
                STRATEGY: self.strategies.in_order(), SYMBOL: self.symbols.in_order(),
                "evictions": dict(self.evictions_)}

    def restore_state(self, state: dict[str, Any] | None, pairs: Iterable[tuple[str, str]],
                      strategies: Iterable[str], symbols: Iterable[str]) -> None:
        """Bring back an exported order over the learners' keys (``pairs``, ...). A key the
        learners hold but the order does not (a state saved before retention existed) is
        put first, least recently used, in name order: a deterministic choice."""
        exported: dict[str, Any] = state if state is not None else {
            STRATEGY_SYMBOL: [], STRATEGY: [], SYMBOL: [], "evictions": {}}
        self.pairs.reset(_merged([(str(s), str(y)) for s, y in exported[STRATEGY_SYMBOL]],
                                 pairs))
        self.strategies.reset(_merged([str(s) for s in exported[STRATEGY]], strategies))
        self.symbols.reset(_merged([str(s) for s in exported[SYMBOL]], symbols))
        self.evictions_ = {name: int(exported["evictions"].get(name, 0))
                           for name in STRUCTURES}


def _merged(order: list[K], held: Iterable[K]) -> list[K]:
    known = set(order)
    missing = sorted({k for k in held if k not in known})  # type: ignore[type-var]
    return [*missing, *order]
