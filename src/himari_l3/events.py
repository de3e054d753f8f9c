"""Typed events: what the core (and the service around it) reports to observers.

Every event is an immutable record (a ``NamedTuple``: several are built per decision, and a
named tuple costs a third of a frozen dataclass). The core emits them through the observer port
(`himari_l3.observers.Observer.emit`); it never names a metric. Adapters decide what an event
means for them: the Prometheus adapter (`observability/prometheus.py`) maps each event type
to metric writes, a test's recording observer keeps them in a list, an audit log could
serialise them. Adding an event is: a record here, a handler in each adapter that cares.

The circuit breaker's own `CircuitEvent` (``resilience/events.py``) and the trading-state
machine's `TradingStateChanged` (``trading/states.py``) travel the same port.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

from .resilience.events import CircuitEvent
from .trading.states import TradingStateChanged

if TYPE_CHECKING:
    from .contracts import EnsembleAllocation, MarketRegime, PositionSizingDecision

__all__ = [
    "AllocationMade",
    "BookMarked",
    "BookStepped",
    "CircuitEvent",
    "ConfigReloaded",
    "CorrelationUpdated",
    "Event",
    "FillRecorded",
    "HttpRequestServed",
    "HybridDecided",
    "InputKind",
    "InputRejected",
    "IntentsCancelled",
    "Layer1Substituted",
    "LearnedStateEvicted",
    "LeaseChanged",
    "MessageDeadLettered",
    "OutcomeLearned",
    "PaperFilled",
    "PathOutcomeRecorded",
    "PositionsReconciled",
    "RLLimitClipped",
    "RLPredictionBlended",
    "RLRequestsCompleted",
    "RLSymbolFellBack",
    "RegimeObserved",
    "SizingDecided",
    "StoreFailed",
    "StoreWritten",
    "StreamBacklog",
    "StreamDelivered",
    "StreamMessagesHandled",
    "StreamRedisFailed",
    "StreamTicked",
    "TradeClosed",
    "TradingStateChanged",
]


class InputKind(enum.StrEnum):
    """What kind of input a validation rejected (a bounded metric label)."""

    SIGNAL = "signal"
    CASCADE = "cascade"
    PRICE = "price"
    OUTCOME = "outcome"
    RETURNS = "returns"
    FILL = "fill"
    POSITIONS = "positions"
    REQUEST = "request"


# ---------------------------------------------------------------------- Phase 1
class SizingDecided(NamedTuple):
    """A Phase 1 decision was made (its typed trace says how)."""

    decision: PositionSizingDecision


class InputRejected(NamedTuple):
    """An input failed validation; ``field`` names it."""

    kind: InputKind
    field: str


class OutcomeLearned(NamedTuple):
    """A realised trade outcome updated a strategy's learners."""

    strategy_id: str
    symbol: str
    realized_return: float
    trades: int
    conformal_alpha: float
    conformal_samples: int
    conformal_coverage: float | None


class LearnedStateEvicted(NamedTuple):
    """Phase 1 forgot its least recently used keys beyond a retention cap: per structure
    (``strategy_symbol``, ``strategy``, ``symbol``), how many."""

    counts: tuple[tuple[str, int], ...]


class RegimeObserved(NamedTuple):
    """A symbol's regime hysteresis advanced one period."""

    symbol: str
    effective_long: MarketRegime
    observed: MarketRegime
    last_change: str  # "tighten" | "loosen" | "none"
    false_flips: int


# ---------------------------------------------------------------------- Phase 2
class AllocationMade(NamedTuple):
    """A Phase 2 or Phase 3 allocation was produced."""

    phase: str  # "phase2" | "phase3"
    allocation: EnsembleAllocation
    latency_sec: float


class CorrelationUpdated(NamedTuple):
    """The correlation monitor took a new row of returns."""

    max_abs_correlation: float
    observations: int
    shrinkage: float


# ---------------------------------------------------------------------- Phase 3
class RLRequestsCompleted(NamedTuple):
    """The outcomes of one batch's RL requests, counted per outcome (sorted)."""

    outcomes: tuple[tuple[str, int], ...]


class RLPredictionBlended(NamedTuple):
    """An RL prediction was blended into a strategy's contribution."""

    latency_sec: float
    weight: float


class RLSymbolFellBack(NamedTuple):
    """A symbol was decided by the baseline; ``reason`` is the fallback reason."""

    reason: str


class RLLimitClipped(NamedTuple):
    """A blended RL target was cut back by a Phase 1/2 limit."""

    limit: str


class HybridDecided(NamedTuple):
    """A Phase 3 decision finished on ``path`` ("rl" or "fallback")."""

    path: str
    latency_sec: float
    rl_usage_ratio: float


class PathOutcomeRecorded(NamedTuple):
    """A realised outcome was recorded for a decision path; the running RL advantage."""

    path: str
    rl_advantage: float | None


# ---------------------------------------------------------------------- the book
class BookMarked(NamedTuple):
    """A portfolio's book after a change: equity, exposures over equity, PnL, open
    intents."""

    portfolio: str
    equity: float
    gross_ratio: float
    net_ratio: float
    realized_pnl: float
    unrealized_pnl: float
    fees_paid: float
    open_intents: int


class BookStepped(NamedTuple):
    """A portfolio's book changed (``cause``: allocation, fill, reconcile, mark, config)
    and was re-planned: the reason of each intent issued and of each order dropped, intents
    superseded and expired, the repair stage if the plan needed one, the limits that scaled
    standing targets down (sorted), and the book's numbers after it (one event per step: the
    decision path builds it cheaply, the adapter counts)."""

    portfolio: str
    cause: str
    issued: tuple[str, ...]
    dropped: tuple[str, ...]
    superseded: int
    expired: int
    repair: str | None
    target_scaledowns: tuple[str, ...]
    marks: BookMarked


class FillRecorded(NamedTuple):
    """A fill was applied (``result`` "applied"), or recognised as already applied
    ("duplicate") or as already in a reconciled snapshot ("before_reconcile")."""

    portfolio: str
    side: str
    result: str
    notional_usd: float


class TradeClosed(NamedTuple):
    """A fill closed (part of) a position: its realised PnL and return. The full record,
    with the strategies behind the position (what the learners need), is the book's
    ``ClosedTrade`` in the fills result."""

    portfolio: str
    symbol: str
    side: str  # "long" | "short": the side that was closed
    quantity: float
    realized_pnl: float
    realized_return: float


class PaperFilled(NamedTuple):
    """The paper executor filled (part of) an intent: its side, notional and fee in USD,
    the adverse slippage in bps, and whether the order still has a rest after it."""

    side: str
    notional_usd: float
    fee_usd: float
    slippage_bps: float
    partial: bool


class IntentsCancelled(NamedTuple):
    """The executor gave up the rests of ``intents`` open intents (IOC / FOK rests, rests
    below one lot): the book closed them as cancelled."""

    portfolio: str
    intents: int


class PositionsReconciled(NamedTuple):
    """An authoritative snapshot reconciled a portfolio: differences counted per field
    (quantity, avg_price, cash; sorted) and their absolute USD value at the marks."""

    portfolio: str
    differences: tuple[tuple[str, int], ...]
    abs_usd: float


# ------------------------------------------------------------ service and operations
class HttpRequestServed(NamedTuple):
    endpoint: str
    code: str
    latency_sec: float


class StoreWritten(NamedTuple):
    """A journal entry or snapshot was committed (``kind``: decision, outcome, returns,
    book, config, snapshot)."""

    kind: str
    latency_sec: float


class StoreFailed(NamedTuple):
    """A store operation failed (``operation``: append, restore, snapshot, checkpoint;
    snapshot_decode: a snapshot skipped at restore; ack_record: recording the acknowledged
    seq outside the database)."""

    operation: str


class ConfigReloaded(NamedTuple):
    """A config reload was attempted; ``loaded_at_sec`` (Unix time) when it succeeded."""

    ok: bool
    loaded_at_sec: float | None = None


# ------------------------------------------------------------------ the stream loop
class StreamTicked(NamedTuple):
    """One tick of the live loop: messages read and handled, and how long it took."""

    messages: int
    seconds: float


class StreamMessagesHandled(NamedTuple):
    """``messages`` messages ended a tick as ``result``: processed (answered by a new
    decision), duplicate (already journaled: its decision re-published), dead_lettered, or
    claimed (taken over from a dead consumer's pending entries)."""

    result: str
    messages: int


class MessageDeadLettered(NamedTuple):
    """A message went to the dead-letter stream (``reason``: a ``RejectCode``)."""

    reason: str


class StreamBacklog(NamedTuple):
    """The consumer group's backlog: entries not yet delivered (``lag``; None when Redis
    cannot say) and delivered but not acknowledged (``pending``)."""

    lag: int | None
    pending: int


class StreamRedisFailed(NamedTuple):
    """A Redis operation of the loop failed (``operation``: read, market, publish, ack,
    dead_letter, claim, backlog); the loop retries."""

    operation: str


class StreamDelivered(NamedTuple):
    """A decision reached the output stream ``latency_sec`` after its oldest input message
    entered the input stream (by the input's stream id time)."""

    latency_sec: float


class Layer1Substituted(NamedTuple):
    """A symbol's Layer 1 readings (or price) were missing, stale or invalid (``code``, a
    ``ReasonCode``) and ``policy`` was applied."""

    code: str
    policy: str


class LeaseChanged(NamedTuple):
    """The portfolio lease changed hands for this process: acquired, lost or released."""

    event: str
    epoch: int


Event = (SizingDecided | InputRejected | OutcomeLearned | RegimeObserved | AllocationMade
         | LearnedStateEvicted
         | CorrelationUpdated | RLRequestsCompleted | RLPredictionBlended | RLSymbolFellBack
         | RLLimitClipped | HybridDecided | PathOutcomeRecorded | BookStepped
         | FillRecorded | TradeClosed | PaperFilled | IntentsCancelled
         | PositionsReconciled | HttpRequestServed
         | StoreWritten | StoreFailed | ConfigReloaded | CircuitEvent | StreamTicked
         | StreamMessagesHandled | MessageDeadLettered | StreamBacklog | StreamRedisFailed
         | StreamDelivered | Layer1Substituted | LeaseChanged
         | TradingStateChanged)
