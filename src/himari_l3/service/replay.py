"""Restore = latest snapshot + the journal entries after it, re-applied in ``seq`` order.

The same functions apply a request live (`runtime.SizingService`) and on replay, so the two
cannot drift apart. Replay pins the clock to each entry's journaled timestamp and serves a
decision's recorded RL answers back to the hybrid instead of asking the model again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from ..config.schema import Layer3Config, parse_config
from ..contracts import CascadeIndicators, EnsembleAllocation, RLPrediction, TacticalSignal
from ..observers import NULL_OBSERVER
from ..persistence import JournalEntry
from ..persistence.recovery import checked_snapshot
from ..phase3 import Layer3Phase3Hybrid
from ..rl.client import RLFailure
from ._json import dumps

if TYPE_CHECKING:
    from .runtime import SizingService

__all__ = ["apply_outcome", "apply_returns", "restore"]

log = logging.getLogger(__name__)


def apply_outcome(hybrid: Layer3Phase3Hybrid, req: dict[str, Any]) -> dict[str, Any]:
    """A strategy's trade result (Phase 1 learners) or a path's result (RL vs baseline)."""
    if req["strategy_id"] is not None:
        learned = hybrid.phase2.phase1.update_from_trade_result(
            req["strategy_id"], req["symbol"], req["realized_return"],
            predicted_return=req["predicted_return"],
            predicted_volatility=req["predicted_volatility"])
        return {"kind": "trade", "learned": learned}
    hybrid.record_outcome(req["symbol"], req["realized_return"], bool(req["used_rl"]))
    return {"kind": "path", "used_rl": bool(req["used_rl"]),
            "performance": hybrid.get_performance_comparison()}


def apply_returns(hybrid: Layer3Phase3Hybrid, req: dict[str, Any]) -> dict[str, Any]:
    """One row of returns into the correlation monitor."""
    return hybrid.phase2.update_correlations(req["returns"], req["timestamp_ns"])


@contextlib.contextmanager
def _silenced(hybrid: Layer3Phase3Hybrid) -> Iterator[None]:
    """Replayed requests were counted in metrics when they happened: do not count twice."""
    owners: list[Any] = [hybrid, hybrid.phase2, hybrid.phase2.phase1]
    saved = [o.observer for o in owners]
    for o in owners:
        o.observer = NULL_OBSERVER
    try:
        yield
    finally:
        for o, obs in zip(owners, saved, strict=True):
            o.observer = obs


async def _apply_entry(svc: SizingService, e: JournalEntry,
                       cfg: Layer3Config) -> Layer3Config:
    hybrid, row = svc.hybrid, e.row
    if e.table == "config":
        new = parse_config(Layer3Config, json.loads(row["config"]))
        hybrid.apply_config(new)
        return new
    req = json.loads(row["request"])
    with svc.clock.pinned(int(row["ts_ns"])):
        if e.table == "outcome":
            apply_outcome(hybrid, req)
        elif e.table == "returns":
            apply_returns(hybrid, req)
        elif row["kind"] == "size":
            hybrid.phase2.phase1.calculate_position(
                TacticalSignal.from_dict(req["signal"]),
                CascadeIndicators.from_dict(req["cascade"]), req["price"],
                current_position_usd=req["current_position_usd"],
                portfolio_value=req["portfolio_value"])
        else:
            signals = [TacticalSignal.from_dict(s) for s in req["signals"]]
            cascade = {k: CascadeIndicators.from_dict(c) for k, c in req["cascade"].items()}
            if row.get("rl_results") and hybrid.rl_client is not None:
                svc.set_rl_replay([_rl_from_json(r) for r in json.loads(row["rl_results"])])
            try:
                await hybrid.process_signals_async(signals, cascade, req["prices"])
            finally:
                svc.set_rl_replay(None)
    return cfg


def _rl_from_json(d: dict[str, Any]) -> RLPrediction | RLFailure:
    if "failure" in d:
        return RLFailure(**d["failure"])
    return RLPrediction.from_dict(d["prediction"])


def _snapshot_config(state: dict[str, Any]) -> Layer3Config | None:
    try:
        return parse_config(Layer3Config, state.get("config"))
    except ConfigError as err:  # written by another version of the schema
        log.warning("snapshot config not usable (%s): replaying under the current one", err)
        return None


async def restore(svc: SizingService, *, startup: bool) -> dict[str, Any]:
    """Bring ``svc.hybrid`` to the state after the last committed journal entry.

    On start-up the config now in force is journaled (if it differs from the one the
    journal ends with) and applied; on a resync after a failed commit, the journal's config
    is the one in force.
    """
    t0 = time.perf_counter()
    hybrid = svc.hybrid
    snap = await asyncio.to_thread(checked_snapshot, svc.store, svc.observer, startup=startup)
    base_seq = 0
    applied = svc.config
    with _silenced(hybrid):
        if snap is not None:
            state = json.loads(snap.state)
            snap_cfg = _snapshot_config(state)
            if snap_cfg is not None and svc.version_of(snap_cfg) != svc.version_of(applied):
                hybrid.apply_config(snap_cfg)
                applied = snap_cfg
            hybrid.restore_state(state["hybrid"])
            last = state.get("last_allocation")
            # Phase 2's export leaves out the last allocation, which outcomes are credited to.
            hybrid.phase2.last_allocation_ = (EnsembleAllocation.from_dict(last)
                                              if last else None)
            base_seq = snap.seq
        elif not startup:
            raise RuntimeError("no snapshot to resync from")
        entries = await asyncio.to_thread(svc.store.journal_after, base_seq)
        for e in entries:
            applied = await _apply_entry(svc, e, applied)
    svc.seq = max(base_seq, entries[-1].seq if entries else 0,
                  await asyncio.to_thread(svc.store.max_seq))
    svc.last_snapshot_seq = base_seq
    if startup and (snap is None or svc.version_of(applied) != svc.config_version):
        seq = svc.seq + 1
        await svc._append(JournalEntry("config", {
            "seq": seq, "ts_ns": svc.clock.base.time_ns(), "config_version": svc.config_version,
            "config": dumps(svc.config.model_dump(mode="json"))}), "config")
        svc.seq = seq
        if applied is not svc.config:
            hybrid.apply_config(svc.config)
    elif not startup:
        svc.config, svc.config_version = applied, svc.version_of(applied)
    info = {"snapshot_seq": snap.seq if snap is not None else None,
            "replayed": len(entries), "journal_seq": svc.seq,
            "seconds": round(time.perf_counter() - t0, 4)}
    log.info("restored learned state: %s", info)
    return info
