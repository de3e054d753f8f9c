"""The book: positions, fills, standing targets, whole-book limits and order intents
(docs/execution.md). Core domain: no I/O (the markets file is read by
``himari_l3.config.markets``)."""

from ..trading import TradingState
from .book import (
    DEFAULT_PORTFOLIO,
    AllocationPlan,
    Book,
    BookStep,
    FillsResult,
    ReconcileResult,
)
from .fills import Fill, PositionsSnapshot, SnapshotPosition
from .intents import DroppedIntent, IntentCause, IntentReason, IntentStatus, OrderIntent
from .layer3_book import BookAllocation, Layer3Book
from .markets import MarketRules, Markets, parse_markets
from .positions import ClosedTrade

__all__ = [
    "DEFAULT_PORTFOLIO",
    "AllocationPlan",
    "Book",
    "BookAllocation",
    "BookStep",
    "ClosedTrade",
    "DroppedIntent",
    "Fill",
    "FillsResult",
    "IntentCause",
    "IntentReason",
    "IntentStatus",
    "Layer3Book",
    "MarketRules",
    "Markets",
    "OrderIntent",
    "PositionsSnapshot",
    "ReconcileResult",
    "SnapshotPosition",
    "TradingState",
    "parse_markets",
]
