"""The sizing service: every state-changing request is applied, journaled, then acknowledged.

    lock -> (resync if a commit failed) -> apply to the engine with the clock pinned to the
    request's timestamp -> journal entry committed (durable) -> release -> reply

One `asyncio.Lock` orders the requests: the journal's ``seq`` is the order in which they
changed the learned state, and a request is acknowledged only after it and every request
before it is committed. Learned state is therefore always *latest snapshot + journal
entries after it, replayed in order* (`restore.Restorer`, owned by the service): replay is
exact because the only inputs of a state change are the journaled request, its timestamp and,
with RL on, the RL answers (recorded with the decision through the model guard's tape).
Snapshots (every ``persistence.snapshot_every_decisions`` journal entries, every
``persistence.snapshot_interval_sec`` seconds, after a restore and at shutdown) bound the
replay on start-up; they are encoded cooperatively so they do not stall requests.

The service knows no HTTP: it returns `Reply` records (the domain result plus the JSON that
was journaled for it) and raises the core's `ValidationError` for a bad input (before any
state changed); the transport in front of it (``service/app.py``) renders both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._exceptions import ValidationError
from ..book import DEFAULT_PORTFOLIO, Layer3Book
from ..book.desk import ExecutionDesk
from ..config.reload import ConfigReloader
from ..config.schema import Layer3Config
from ..contracts import DECISION_FIELDS, CascadeIndicators, TacticalSignal
from ..events import StoreFailed, StoreWritten
from ..observers import GatedObserver, Observer
from ..persistence import JournalEntry, Store
from ..phase3 import Layer3Phase3Hybrid
from ..rl_port import RLFailure, RLResult
from .clock import PinnedClock
from .errors import PersistenceUnavailable
from .jsonio import dumps, encode_cooperatively, record_fields
from .paper import paper_entry
from .requests import (
    apply_allocate,
    apply_fills,
    apply_outcome,
    apply_prices,
    apply_reconcile,
    apply_returns,
    apply_size,
    apply_trading_state,
)
from .restore import Restorer, RestoreResult

__all__ = ["PinnedClock", "Reply", "SizingService", "StreamSource"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """The service's answer to one state-changing request, as committed to the journal.

    ``record`` is the domain result (a `PositionSizingDecision`, a `BookAllocation` — the
    `EnsembleAllocation` and the book's step with its intents —, a `FillsResult`, a
    `ReconcileResult`, or what an outcome or returns row taught); ``body`` the response
    object as compact JSON
    (what the journal's audit column holds); a decision also carries its trace as JSON under
    ``trace_key`` ("diagnostics" or "trace").
    """

    id: int
    record: Any
    body: str
    trace_key: str | None = None
    trace: str | None = None


class StreamSource(NamedTuple):
    """The stream messages a decision answers: journaled in the decision's transaction
    (``stream_inputs``), so a redelivered message is found and never applied twice."""

    stream: str
    ids: tuple[str, ...]


class _Decision(NamedTuple):
    """The journal columns of a decision that the request itself decides."""

    seq: int
    ts_ns: int
    kind: str  # size | allocate
    path: str  # rl | baseline
    request: dict[str, Any]
    rl_results: str | None  # the RL answers returned, as JSON (None: RL off)


class SizingService:
    """Owns the engine, the store, the restorer and the order of state changes (see the
    module docstring). Built by ``bootstrap.build_service``; driven by a transport (HTTP
    today) through `start`, the request methods and `stop`."""

    def __init__(self, config: Layer3Config, hybrid: Layer3Phase3Hybrid, store: Store,  # noqa: PLR0913 - the collaborators bootstrap wires
                 gate: GatedObserver, clock: PinnedClock,
                 version_of: Callable[[Layer3Config], str], *, owns_store: bool = False,
                 reloader: ConfigReloader | None = None, book: Layer3Book | None = None,
                 desk: ExecutionDesk | None = None) -> None:
        """``gate`` wraps the observer the engine reports to (muted during replay); the
        service reports its own events (journal writes, failures) to ``gate.inner``.
        ``book``: the book driven by ``hybrid`` (default: one without instrument rules).
        ``desk``: the book's execution desk when the service fills its own intents
        (``execution.paper``; None: Layer 4 executes them)."""
        self.config = config
        self.hybrid = hybrid
        self.book = book or Layer3Book(hybrid, config=config, observer=gate, clock=clock)
        self.desk = desk
        self.store = store
        self.observer: Observer = gate.inner
        self.clock = clock
        self.version_of = version_of
        self.config_version = version_of(config)
        self.reloader = reloader
        self.restorer = Restorer(store, hybrid, clock, gate, version_of, self.book, desk)
        self._owns_store = owns_store
        p = config.persistence
        self.audit = p.audit_decisions
        self.snapshot_every = p.snapshot_every_decisions
        self.snapshot_interval = p.snapshot_interval_sec
        self.seq = 0
        self.last_snapshot_seq = 0
        self.restore_info: dict[str, Any] = {}
        self._since_snapshot = 0
        self._last_snapshot_mono = clock.monotonic()
        self._dirty = False
        self._lock = asyncio.Lock()
        self._snapshot_task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Restore learned state from the store, snapshot it, start the interval ticker and
        the config reloader."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        async with self._lock:
            result = await self.restorer.restore(self.config, startup=True)
            await self._adopt(result, startup=True)
            for _, pb in sorted(self.book.book.portfolios.items()):
                pb.trading.announce()  # the gauges learn the restored states
            await self._snapshot_locked_then_write("startup")
        self._ticker = asyncio.create_task(self._tick())
        if self.reloader is not None:
            self.reloader.start()

    async def stop(self) -> None:
        """Stop the reloader, write a final snapshot (graceful shutdown), close the RL client
        and, if the service opened it, the store."""
        if self.reloader is not None:
            self.reloader.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._snapshot_task is not None:
            with contextlib.suppress(Exception):
                await self._snapshot_task
        try:
            async with self._lock:
                if not self._dirty and self.seq != self.last_snapshot_seq:
                    await self._snapshot_locked_then_write("shutdown")
        except Exception:
            log.exception("final snapshot failed (the journal still has every request)")
        await self.hybrid.astop()
        if self._owns_store:
            self.store.close()

    async def _adopt(self, result: RestoreResult, *, startup: bool) -> None:
        """Take over what the restorer found. On start-up the config now in force is
        journaled (if it differs from the one the journal ends with) and applied; on a
        resync after a failed commit, the journal's config is the one in force."""
        self.seq = result.seq
        self.last_snapshot_seq = result.snapshot_seq or 0
        self.restore_info = result.info()
        applied = result.config
        if startup and (result.snapshot_seq is None
                        or self.version_of(applied) != self.config_version):
            seq = self.seq + 1
            await self._append(JournalEntry("config", {
                "seq": seq, "ts_ns": self.clock.base.time_ns(),
                "config_version": self.config_version,
                "config": dumps(self.config.public_dump())}), "config")
            self.seq = seq
            if applied is not self.config:
                self.hybrid.apply_config(self.config)
        elif not startup:
            self.config, self.config_version = applied, self.version_of(applied)
        log.info("restored learned state: %s", self.restore_info)

    # ------------------------------------------------------------- requests
    async def size(self, signal: TacticalSignal, cascade: CascadeIndicators, price: float,
                   current_position_usd: float | None, portfolio_value: float | None,
                   want_digest: bool) -> Reply:
        """Phase 1 sizing of one signal (advances the symbol's regime state)."""
        async with self._lock:
            await self._resync_if_dirty()
            ts, seq = self.clock.base.time_ns(), self.seq + 1
            with self._mutating(), self.clock.pinned(ts):
                d = apply_size(self.hybrid, signal, cascade, price, current_position_usd,
                               portfolio_value)
            out = {f: getattr(d, f) for f in DECISION_FIELDS}
            trace = d.diagnostics
            out.update(decision_id=seq, path="baseline", config_version=self.config_version)
            request = {"signal": signal.to_dict(), "cascade": cascade.to_dict(),
                       "price": price, "current_position_usd": current_position_usd,
                       "portfolio_value": portfolio_value}
            return await self._decision(
                _Decision(seq, ts, "size", "baseline", request, None), d, out, trace,
                "diagnostics", want_digest)

    async def allocate(self, signals: list[TacticalSignal],  # noqa: PLR0913 - keyword-only options of the book and of a stream
                       cascade: dict[str, CascadeIndicators], prices: dict[str, float],
                       want_digest: bool, request: dict[str, Any] | None = None, *,
                       portfolio: str = DEFAULT_PORTFOLIO, mode: str = "incremental",
                       source: StreamSource | None = None,
                       inputs: dict[str, Any] | None = None) -> Reply:
        """Phase 3 allocation of a batch (RL blend with fallback when RL is enabled) through
        the portfolio's book: every limit holds over the standing targets plus the batch,
        and the reply carries the intents (``mode``: incremental or full).

        ``request``: the same batch as plain JSON (signals with their timestamps filled
        in), journaled as is; built from the contracts when not given. ``source``: the
        stream messages the batch answers (journaled with the decision; its response is then
        kept even with ``audit_decisions`` off, to re-publish it after a crash). ``inputs``:
        what the transport substituted for missing inputs, recorded in the trace."""
        async with self._lock:
            await self._resync_if_dirty()
            ts, seq = self.clock.base.time_ns(), self.seq + 1
            client = self.hybrid.rl_client
            with self._mutating(), self.clock.pinned(ts), (
                    client.recording() if client is not None
                    else contextlib.nullcontext()) as tape:
                result = await apply_allocate(self.book, signals, cascade, prices, portfolio,
                                              mode, seq)
                paper = self._observe(prices, None, seq + 1, ts)
            alloc = result.allocation
            path = ("rl" if any(p.get("path") == "rl" for p in alloc.provenance.values())
                    else "baseline")
            out = record_fields(alloc)
            trace = out.pop("trace")
            if inputs:
                trace = {**trace, "inputs": inputs}
            out.update(decision_id=seq, path=path, config_version=self.config_version,
                       mode=mode, **result.step.to_dict(), book=self._summary(portfolio))
            if paper is not None:
                out["paper"] = paper[0]
            if request is None:
                request = {"signals": [s.to_dict() for s in signals],
                           "cascade": {k: c.to_dict() for k, c in sorted(cascade.items())},
                           "prices": prices}
            request = {**request, "portfolio": portfolio, "mode": mode}
            # Every answer the guard returned (an empty list too): replay never asks the model.
            rl = None if tape is None else dumps([_rl_result(r) for r in tape.results])
            return await self._decision(_Decision(seq, ts, "allocate", path, request, rl),
                                        result, out, trace, "trace", want_digest,
                                        source=source,
                                        then=None if paper is None else paper[1])

    def _summary(self, portfolio: str) -> dict[str, Any]:
        """The portfolio's whole-book numbers after a request."""
        view = self.book.positions(portfolio)
        return {k: view[k] for k in _SUMMARY}

    async def fills(self, fills: list[dict[str, Any]], want_digest: bool) -> Reply:
        """Fills of the book's intents: all checked first (a bad one refuses the request and
        changes nothing), then applied; each portfolio touched is re-planned."""
        async with self._lock:
            await self._resync_if_dirty()
            ts, seq = self.clock.base.time_ns(), self.seq + 1
            request = {"fills": fills}
            with self._mutating(), self.clock.pinned(ts):
                result = apply_fills(self.book, request, seq)
                self._synced()
            portfolios = sorted(s.portfolio for s in result.steps)
            out = {"fills_id": seq, **result.to_dict(),
                   "book": {p: self._summary(p) for p in portfolios}}
            return await self._journal(JournalEntry("book", {
                "seq": seq, "ts_ns": ts, "kind": "fills",
                "portfolio": portfolios[0] if len(portfolios) == 1 else None,
                "config_version": self.config_version, "request": dumps(request)}),
                result, out, want_digest)

    async def reconcile(self, portfolio: str, snapshot: dict[str, Any],
                        want_digest: bool) -> Reply:
        """An authoritative positions snapshot of one portfolio: every difference counted,
        logged and reported; open intents superseded; the book re-planned."""
        async with self._lock:
            await self._resync_if_dirty()
            ts, seq = self.clock.base.time_ns(), self.seq + 1
            stamp = snapshot.get("timestamp_ns")
            request = {**snapshot, "portfolio": portfolio,
                       "timestamp_ns": ts if stamp is None else stamp}
            with self._mutating(), self.clock.pinned(ts):
                result = apply_reconcile(self.book, request, seq)
                self._synced()
            out = {"reconcile_id": seq, **result.to_dict(), "book": self._summary(portfolio)}
            return await self._journal(JournalEntry("book", {
                "seq": seq, "ts_ns": ts, "kind": "reconcile", "portfolio": portfolio,
                "config_version": self.config_version, "request": dumps(request)}),
                result, out, want_digest)

    async def trading_state(self, portfolio: str, state: str, reason: str,
                            symbol: str | None, want_digest: bool) -> Reply:
        """An operator command (kill switch, reduce-only, resume) for a portfolio or one
        symbol: journaled, then the book re-plans (a halt that flattens issues its closes
        now; the paper executor fills them at the next price observation)."""
        async with self._lock:
            await self._resync_if_dirty()
            ts, seq = self.clock.base.time_ns(), self.seq + 1
            request = {"portfolio": portfolio, "state": state, "reason": reason,
                       "symbol": symbol}
            with self._mutating(), self.clock.pinned(ts):
                step = apply_trading_state(self.book, request, seq)
                self._synced()
            out = {"trading_state_id": seq, **self.book.trading_state(portfolio),
                   "step": step.to_dict(), "book": self._summary(portfolio)}
            return await self._journal(JournalEntry("book", {
                "seq": seq, "ts_ns": ts, "kind": "trading_state", "portfolio": portfolio,
                "config_version": self.config_version, "request": dumps(request)}),
                step, out, want_digest)

    async def prices(self, portfolio: str, prices: dict[str, float],
                     volumes: dict[str, float] | None, want_digest: bool) -> Reply:
        """New prices for a portfolio (a price feed, a live loop): the book is marked and
        re-planned (the trading states judge the new equity); with the paper executor the
        observation also fills what it can (journaled as its own entry, like an
        allocation's)."""
        async with self._lock:
            await self._resync_if_dirty()
            ts, seq = self.clock.base.time_ns(), self.seq + 1
            request = {"portfolio": portfolio, "prices": prices}
            with self._mutating(), self.clock.pinned(ts):
                step = apply_prices(self.book, request, seq)
                paper = self._observe(prices, volumes, seq + 1, ts)
            out = {"prices_id": seq, **step.to_dict(), "book": self._summary(portfolio)}
            entry = JournalEntry("book", {
                "seq": seq, "ts_ns": ts, "kind": "prices", "portfolio": portfolio,
                "config_version": self.config_version, "request": dumps(request)})
            if paper is None:
                return await self._journal(entry, step, out, want_digest)
            out["paper"] = paper[0]
            return await self._journal(entry, step, out, want_digest, paper[1])

    def _observe(self, prices: dict[str, float], volumes: dict[str, float] | None,
                 seq: int, ts: int) -> tuple[dict[str, Any], JournalEntry] | None:
        """With the paper executor: work the new intents against this observation (under
        the request's pinned time), and the journal entry that records what it did."""
        if self.desk is None:
            return None
        self.desk.sync()
        return paper_entry(self.desk, prices, volumes, seq, ts, self.config_version)

    def _synced(self) -> None:
        """The executor follows the book (the intents it issued or dropped just now)."""
        if self.desk is not None:
            self.desk.sync()

    async def read_trading_state(self, portfolio: str) -> dict[str, Any]:
        """``GET /v1/trading-state`` (consistent: under the lock)."""
        async with self._lock:
            return self.book.trading_state(portfolio)

    async def read_positions(self, portfolio: str) -> dict[str, Any]:
        """``GET /v1/positions`` (consistent: under the lock)."""
        async with self._lock:
            return self.book.positions(portfolio)

    async def read_intents(self, portfolio: str) -> dict[str, Any]:
        """``GET /v1/intents``: the portfolio's open intents."""
        async with self._lock:
            return {"portfolio": portfolio, "intents": self.book.intents(portfolio)}

    async def outcome(self, symbol: str, realized_return: float, strategy_id: str | None,
                      used_rl: bool | None, predicted_return: float | None,
                      predicted_volatility: float | None, want_digest: bool) -> Reply:
        """A realised return: per strategy (Phase 1 learners) or per path (RL vs baseline)."""
        async with self._lock:
            await self._resync_if_dirty()
            ts, seq = self.clock.base.time_ns(), self.seq + 1
            if strategy_id is None and used_rl is None:
                used_rl = self._last_path(symbol) == "rl"
            request = {"symbol": symbol, "realized_return": realized_return,
                       "strategy_id": strategy_id, "used_rl": used_rl,
                       "predicted_return": predicted_return,
                       "predicted_volatility": predicted_volatility}
            with self._mutating(), self.clock.pinned(ts):
                result = apply_outcome(self.hybrid, request)
            out: dict[str, Any] = {"outcome_id": seq, **result}
            kind = "trade" if strategy_id is not None else "path"
            return await self._journal(JournalEntry("outcome", {
                "seq": seq, "ts_ns": ts, "kind": kind, "strategy_id": strategy_id,
                "symbol": symbol, "realized_return": realized_return, "used_rl": used_rl,
                "config_version": self.config_version, "request": dumps(request),
            }), result, out, want_digest)

    async def returns(self, rets: dict[str, float], timestamp_ns: int | None,
                      want_digest: bool) -> Reply:
        """One aligned row of per-symbol returns for the correlation monitor."""
        async with self._lock:
            await self._resync_if_dirty()
            ts, seq = self.clock.base.time_ns(), self.seq + 1
            request = {"returns": rets, "timestamp_ns": ts if timestamp_ns is None
                       else timestamp_ns}
            with self._mutating(), self.clock.pinned(ts):
                stats = apply_returns(self.hybrid, request)
            return await self._journal(JournalEntry("returns", {
                "seq": seq, "ts_ns": ts, "config_version": self.config_version,
                "request": dumps(request)}), stats, {"returns_id": seq, "correlation": stats},
                want_digest)

    async def apply_config(self, cfg: Layer3Config) -> None:
        """Journal a config change, then swap it in (hot reload; learned state kept)."""
        async with self._lock:
            await self._resync_if_dirty()
            seq, ts = self.seq + 1, self.clock.base.time_ns()
            version = self.version_of(cfg)
            await self._append(JournalEntry("config", {
                "seq": seq, "ts_ns": ts, "config_version": version,
                "config": dumps(cfg.public_dump())}), "config")
            self.seq = seq
            with self._mutating(), self.clock.pinned(ts):
                self.book.apply_config(cfg, seq)
                self._synced()
            self.config, self.config_version = cfg, version
            self._since_snapshot += 1

    def apply_config_threadsafe(self, cfg: Layer3Config, timeout_sec: float = 30.0) -> None:
        """`ConfigReloader`'s ``apply``: runs `apply_config` on the service's loop."""
        loop = self._loop
        if loop is None or not loop.is_running():
            raise RuntimeError("the service is not running")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("apply_config_threadsafe must not run on the event loop "
                               "thread: await SizingService.apply_config instead")
        asyncio.run_coroutine_threadsafe(self.apply_config(cfg), loop).result(timeout_sec)

    async def read_state(self, *, learned: bool, digest: bool) -> dict[str, Any]:
        """The hybrid's summary plus journal/snapshot positions (consistent: under the lock)."""
        async with self._lock:
            out: dict[str, Any] = {
                "service": {"config_version": self.config_version, "journal_seq": self.seq,
                            "last_snapshot_seq": self.last_snapshot_seq,
                            "store": self.store.dialect, "degraded": self._dirty,
                            "restore": self.restore_info},
                "hybrid": self.hybrid.get_state(),
                "book": {name: self._summary(name) for name in sorted(self.book.book.portfolios)},
            }
            if learned:
                out["learned_state"] = self.learned_state()
            if digest:
                out["learned_state_digest"] = self.digest()
            return out

    # --------------------------------------------------------------- state
    @property
    def degraded(self) -> bool:
        """True after a failed commit until a resync from the store succeeds."""
        return self._dirty

    def learned_state(self) -> dict[str, Any]:
        """What restart must bring back: ``export_state`` minus the breaker (whose export is
        relative to *now*, and is operational rather than learned)."""
        state = self.hybrid.export_state()
        state.pop("circuit_breaker", None)
        state["book"] = self.book.book.export_state()
        if self.desk is not None:
            state["desk"] = self.desk.export_state()
        return state

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of `learned_state`."""
        text = json.dumps(self.learned_state(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    # ------------------------------------------------------------ internals
    async def _decision(self, d: _Decision, record: Any, out: dict[str, Any], trace: Any,
                        trace_key: str, want_digest: bool, *,
                        source: StreamSource | None = None,
                        then: JournalEntry | None = None) -> Reply:
        """Journal a decision (with its stream inputs, and ``then``: the entry of what its
        prices filled, in the same transaction)."""
        if want_digest:
            out["state_digest"] = self.digest()
        body = dumps(out)
        trace_s = dumps(trace)
        entry = JournalEntry("decision", {
            "seq": d.seq, "ts_ns": d.ts_ns, "kind": d.kind, "path": d.path,
            "config_version": self.config_version, "request": dumps(d.request),
            "response": body if self.audit or source else None,
            "trace": trace_s if self.audit else None, "rl_results": d.rl_results})
        rows = [] if source is None else [
            JournalEntry("stream_input", {"stream": source.stream, "msg_id": i,
                                          "seq": d.seq}) for i in source.ids]
        if then is not None:
            then.row["response"] = entry.row["response"]  # the reply both belong to
            rows.append(then)
        await self._append(entry, "decision", rows or None)
        self._committed(d.seq if then is None else then.seq)
        return Reply(d.seq, record, body, trace_key, trace_s)

    async def _journal(self, entry: JournalEntry, record: Any, out: dict[str, Any],
                       want_digest: bool, then: JournalEntry | None = None) -> Reply:
        if want_digest:
            out["state_digest"] = self.digest()
        body = dumps(out)
        if self.audit:
            entry.row["response"] = body
            if then is not None:
                then.row["response"] = body  # the reply both belong to
        await self._append(entry, entry.table, None if then is None else [then])
        self._committed(entry.seq if then is None else then.seq)
        return Reply(entry.seq, record, body)

    async def _append(self, entry: JournalEntry, kind: str,
                      with_rows: list[JournalEntry] | None = None) -> None:
        t0 = time.perf_counter()
        try:
            # On the loop thread, on purpose: requests are serialised by the lock anyway, and
            # a worker-thread hop cost ~0.3 ms of CPU per request and raised the benchmark's
            # p99 from ~17 to ~29 ms. A commit is ~0.3 ms (one WAL fsync; checkpoints run
            # after snapshots, in a thread). Snapshots, the big writes, stay in threads.
            self.store.append([entry, *with_rows] if with_rows else [entry])
        except Exception as err:
            # The in-memory state is ahead of the store: resync before the next request.
            self._dirty = True
            self.observer.emit(StoreFailed("append"))
            log.exception("journal commit failed (seq %d)", entry.seq)
            raise PersistenceUnavailable(f"the store could not commit: {err}") from err
        self.observer.emit(StoreWritten(kind, time.perf_counter() - t0))

    def _committed(self, seq: int) -> None:
        self.seq = seq
        self._since_snapshot += 1
        if self._since_snapshot >= self.snapshot_every:
            self._schedule_snapshot("count")

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        """Any unexpected error while the hybrid mutates leaves memory ahead of the
        journal: mark it for resync (validation errors are raised before any change)."""
        try:
            yield
        except ValidationError:
            raise
        except BaseException:
            self._dirty = True
            raise

    async def _resync_if_dirty(self) -> None:
        if not self._dirty:
            return
        try:
            result = await self.restorer.restore(self.config, startup=False)
            await self._adopt(result, startup=False)
        except Exception as err:
            self.observer.emit(StoreFailed("restore"))
            log.exception("resync from the store failed")
            raise PersistenceUnavailable(f"the store is unavailable: {err}") from err
        self._dirty = False

    def _last_path(self, symbol: str) -> str | None:
        last = self.hybrid.phase2.last_allocation_
        return last.provenance.get(symbol, {}).get("path") if last is not None else None

    # ------------------------------------------------------------ snapshots
    def _schedule_snapshot(self, reason: str) -> None:
        if self._snapshot_task is None or self._snapshot_task.done():
            self._snapshot_task = asyncio.create_task(self._snapshot(reason))

    async def _snapshot(self, reason: str) -> None:
        async with self._lock:
            if self._dirty:
                return
            taken = self._export()
        await self._write_snapshot(taken, reason)

    async def _snapshot_locked_then_write(self, reason: str) -> None:
        await self._write_snapshot(self._export(), reason)

    def _export(self) -> tuple[int, dict[str, Any]]:
        last = self.hybrid.phase2.last_allocation_
        state = {"version": 1, "seq": self.seq, "config_version": self.config_version,
                 "config": self.config.public_dump(),
                 "hybrid": self.hybrid.export_state(),
                 "book": self.book.book.export_state(),
                 "desk": None if self.desk is None else self.desk.export_state(),
                 "last_allocation": last.to_dict() if last is not None else None}
        self._since_snapshot = 0
        self._last_snapshot_mono = self.clock.monotonic()
        return self.seq, state

    async def _write_snapshot(self, taken: tuple[int, dict[str, Any]], reason: str) -> None:
        seq, state = taken
        t0 = time.perf_counter()
        try:
            text = await encode_cooperatively(state)
            await asyncio.to_thread(self.store.save_snapshot, seq=seq,
                                    ts_ns=self.clock.base.time_ns(),
                                    config_version=state["config_version"], state=text)
        except Exception:
            self.observer.emit(StoreFailed("snapshot"))
            log.exception("snapshot (%s) at seq %d failed", reason, seq)
            self._since_snapshot = max(self._since_snapshot, self.snapshot_every)
            return
        self.last_snapshot_seq = max(self.last_snapshot_seq, seq)
        self.observer.emit(StoreWritten("snapshot", time.perf_counter() - t0))
        try:
            await asyncio.to_thread(self.store.checkpoint)
        except Exception:
            self.observer.emit(StoreFailed("checkpoint"))
            log.exception("WAL checkpoint failed (retried after the next snapshot)")
        log.debug("snapshot (%s) at seq %d: %d bytes", reason, seq, len(text))

    async def _tick(self) -> None:
        period = min(1.0, self.snapshot_interval)
        while True:
            await asyncio.sleep(period)
            due = self.clock.monotonic() - self._last_snapshot_mono >= self.snapshot_interval
            if due and self._since_snapshot > 0:
                self._schedule_snapshot("interval")


_SUMMARY = ("equity", "cash", "gross_exposure_pct", "net_exposure_pct",
            "projected_gross_exposure_pct", "projected_net_exposure_pct", "open_intents")


def _rl_result(r: RLResult) -> dict[str, Any]:
    if isinstance(r, RLFailure):
        return {"failure": dataclasses.asdict(r)}
    return {"prediction": r.to_dict()}
