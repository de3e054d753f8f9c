"""The service's paper observations: what the paper executor did at a price observation,
as the journal entry that lets a replay apply the same fills (``book`` table, kind
``paper``: the prices and volumes observed, the fills made, the rests cancelled)."""

from __future__ import annotations

from typing import Any

from ..book.desk import ExecutionDesk
from ..persistence import JournalEntry
from .jsonio import dumps
from .requests import apply_paper

__all__ = ["paper_entry"]


def paper_entry(desk: ExecutionDesk, prices: dict[str, float],
                volumes: dict[str, float] | None, seq: int, ts_ns: int,
                config_version: str) -> tuple[dict[str, Any], JournalEntry]:
    """Work the desk's orders against one observation (stamped ``ts_ns``; ``seq`` stamps
    the re-plans' intents); returns what it did (for the reply) and its journal entry."""
    step = apply_paper(desk, {"prices": prices, "volumes": volumes}, seq, ts_ns,
                       replay=False)
    request = {"prices": prices, "volumes": volumes,
               "fills": [f.to_dict() for f in step.fills], "cancelled": list(step.cancelled)}
    entry = JournalEntry("book", {"seq": seq, "ts_ns": ts_ns, "kind": "paper",
                                  "portfolio": None, "config_version": config_version,
                                  "request": dumps(request)})
    return {"paper_id": seq, **step.to_dict()}, entry
