"""The live loop: Layer 2's stream in → one allocation per tick → the output stream.

Each tick (`LiveLoop.tick`):

1. **collect** — its own pending entries first after a start or a failed tick, else a dead
   consumer's entries when due (``XAUTOCLAIM``), else new ones: the first read waits for a
   message, then the tick keeps reading for up to ``streams.tick_ms`` or until
   ``streams.tick_max_messages``;
2. **idempotency** — message ids already journaled (``stream_inputs``, written in the
   decision's own transaction) are not applied again: their decision's output entry is
   re-published from the journal and they are acknowledged;
3. **parse** — each message becomes a signal or is dead-lettered with its reason (with its
   acknowledgement, atomically): it never blocks the group;
4. **decide** — Layer 1's prices and readings for the tick's symbols, one
   ``SizingService.allocate`` (which journals the decision with the message ids before it
   returns);
5. **publish** — the output entry, its announcement and the acknowledgement of the inputs in
   one atomic script.

A crash anywhere leaves the unacknowledged messages pending: after a restart they are read
again, and step 2 makes the redelivery change nothing (at most the output entry is appended
a second time, with the same ``decision_id``: Layer 4 deduplicates on it). Redis errors are
retried with a bounded back-off; a store that cannot commit leaves the tick's messages
pending and the loop retries them; a lost lease stops the loop (`LeaseLost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._clock import Clock
from ..events import (
    Layer1Substituted,
    MessageDeadLettered,
    StreamBacklog,
    StreamDelivered,
    StreamMessagesHandled,
    StreamRedisFailed,
    StreamTicked,
)
from ..persistence.lease import Lease, LeaseLost
from ..runtime.errors import PersistenceUnavailable
from ..runtime.service import SizingService, StreamSource
from .batch import TickBatch, allocation_request, build_output, source_of
from .consumer import DeadLetter, Entry, Publisher, StreamConsumer
from .layer2 import parse_layer2
from .market import MarketReader
from .wire import MessageRejected, RejectCode, decode_entry

__all__ = ["LiveLoop"]

log = logging.getLogger(__name__)

_IDLE_BLOCK_MS = 250  # a read with nothing to do waits this long (stop stays responsive)
_BACKLOG_EVERY_SEC = 1.0
_BACKOFF_MIN_SEC, _BACKOFF_MAX_SEC = 0.05, 2.0
_NS_PER_MS = 1_000_000


class LiveLoop:
    """Drives ``service`` from the streams of ``service.config.streams`` (see the module
    docstring). ``lease``: the portfolio lease this process holds (None: no lease, e.g. a
    test of one process)."""

    def __init__(self, service: SizingService, redis: Redis, *, clock: Clock,
                 consumer_name: str, lease: Lease | None = None) -> None:
        cfg = service.config.streams  # the restart-only keys, bound here
        self.service = service
        self.clock = clock
        self.lease = lease
        self.stream = cfg.input_stream
        self.consumer = StreamConsumer(redis, cfg.input_stream, cfg.consumer_group,
                                       consumer_name, cfg.dead_letter_stream,
                                       cfg.dead_letter_maxlen)
        self.publisher = Publisher(redis, cfg.output_stream, cfg.output_channel,
                                   cfg.output_maxlen, cfg.input_stream, cfg.consumer_group)
        self.market = MarketReader(redis)
        self.observer = service.observer
        self._recover = True  # read our own pending entries first
        self._group_ready = False
        self._next_claim = 0.0
        self._next_backlog = 0.0
        self._backoff = _BACKOFF_MIN_SEC

    # ------------------------------------------------------------------ running
    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set (the tick in progress is finished first). Raises
        `LeaseLost` when the portfolio's lease is lost."""
        while not stop.is_set():
            self._check_lease()
            try:
                await self.tick()
                self._backoff = _BACKOFF_MIN_SEC
            except RedisError as err:
                log.warning("redis: %s (retrying)", err)
                await self._pause(stop)
            except PersistenceUnavailable as err:
                if isinstance(err.__cause__, LeaseLost):
                    raise err.__cause__ from err
                log.warning("store: %s (the tick's messages stay pending)", err)
                await self._pause(stop)

    def _check_lease(self) -> None:
        """Stop acting the moment the lease may have lapsed (a pause longer than the TTL
        ends here, before any side effect; the journal's fence covers the rest)."""
        if self.lease is not None and self.lease.expired():
            raise LeaseLost(f"lease of portfolio {self.lease.portfolio!r} lost")

    async def _pause(self, stop: asyncio.Event) -> None:
        self._recover = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self._backoff)
        self._backoff = min(_BACKOFF_MAX_SEC, self._backoff * 2)

    async def start(self) -> None:
        """Create the consumer group if needed (`tick` does it too, retried with the rest,
        so a loop started while Redis is down waits for it)."""
        await self.consumer.ensure_group()
        self._group_ready = True

    async def tick(self) -> int:
        """One tick (see the module docstring); returns the number of messages handled."""
        if not self._group_ready:
            await self._guard("read", self.start())
        cfg = self.service.config.streams  # the live keys, read per tick
        entries = await self._guard("read", self._collect(cfg.tick_ms,
                                                          cfg.tick_max_messages))
        await self._report_backlog()
        if not entries:
            return 0
        t0 = self.clock.monotonic()
        await self.handle(entries)
        self.observer.emit(StreamTicked(len(entries), self.clock.monotonic() - t0))
        return len(entries)

    async def _guard(self, operation: str, call: Any) -> Any:
        try:
            return await call
        except RedisError:
            self.observer.emit(StreamRedisFailed(operation))
            raise

    # ------------------------------------------------------------------ collect
    async def _collect(self, tick_ms: int, max_messages: int) -> list[Entry]:
        if self._recover:
            entries = await self.consumer.read_pending(max_messages)
            if entries:
                return entries
            self._recover = False
        now = self.clock.monotonic()
        if now >= self._next_claim:
            idle_ms = self.service.config.streams.claim_idle_ms
            self._next_claim = now + idle_ms / 2000.0
            claimed = await self.consumer.claim(idle_ms, max_messages)
            if claimed:
                self.observer.emit(StreamMessagesHandled("claimed", len(claimed)))
                return claimed
        entries = await self.consumer.read(max_messages, _IDLE_BLOCK_MS)
        if not entries:
            return entries
        deadline = self.clock.monotonic() + tick_ms / 1000.0
        while len(entries) < max_messages:
            left_ms = int((deadline - self.clock.monotonic()) * 1000.0)
            if left_ms <= 0:
                break
            more = await self.consumer.read(max_messages - len(entries), left_ms)
            if not more:
                break
            entries.extend(more)
        return entries

    async def _report_backlog(self) -> None:
        now = self.clock.monotonic()
        if now < self._next_backlog:
            return
        self._next_backlog = now + _BACKLOG_EVERY_SEC
        lag, pending = await self._guard("backlog", self.consumer.backlog())
        self.observer.emit(StreamBacklog(lag, pending))

    # ------------------------------------------------------------------- handle
    async def handle(self, entries: Sequence[Entry]) -> None:
        """Answer one tick's entries (steps 2-5 of the module docstring)."""
        self._check_lease()
        now_ns = self.clock.time_ns()
        # On the loop thread, as the service's own journal writes: one indexed read
        # (~0.1 ms on SQLite); a worker-thread hop cost more than the query.
        done = self.service.store.stream_input_seqs(self.stream, [i for i, _ in entries])
        batch, letters, trimmed = TickBatch(), [], []
        repeats: dict[int, list[str]] = {}
        cfg = self.service.config.streams
        for msg_id, fields in entries:
            if msg_id in done:
                repeats.setdefault(done[msg_id], []).append(msg_id)
            elif fields is None:
                trimmed.append(msg_id)
            else:
                try:
                    batch.add(msg_id, parse_layer2(decode_entry(fields), cfg, now_ns), fields)
                except MessageRejected as err:
                    letters.append(DeadLetter(msg_id, fields, err))
        await self._guard("ack", self.consumer.ack(trimmed))
        for seq, ids in sorted(repeats.items()):
            await self._republish(seq, ids)
        await self._dead_letter(letters, now_ns)
        if batch.signals:
            await self._decide(batch, now_ns)

    async def _republish(self, seq: int, ids: list[str]) -> None:
        row = await asyncio.to_thread(self.service.store.decision, seq)
        if row is None or row.get("response") is None:  # cannot happen: kept for sources
            log.error("decision %d answering %s has no stored response", seq, ids)
            await self._guard("ack", self.consumer.ack(ids))
        else:
            out = build_output(row["response"], source_of(row["request"]))
            await self._guard("publish", self.publisher.publish(out, ids))
        self.observer.emit(StreamMessagesHandled("duplicate", len(ids)))

    async def _dead_letter(self, letters: list[DeadLetter], now_ns: int) -> None:
        if not letters:
            return
        await self._guard("dead_letter", self.consumer.dead_letter(letters,
                                                                   now_ns // _NS_PER_MS))
        for d in letters:
            log.warning("dead-lettered %s: %s", d.msg_id, d.error)
            self.observer.emit(MessageDeadLettered(d.error.code.value))
        self.observer.emit(StreamMessagesHandled("dead_lettered", len(letters)))

    async def _decide(self, batch: TickBatch, now_ns: int) -> None:
        svc = self.service
        cfg = svc.config.streams
        prices, readings = await self._guard("market", self.market.read(
            batch.venue_symbols(), cfg))
        inputs = allocation_request(batch, self.stream, prices, readings, now_ns, cfg,
                                    cascade_config=svc.config.sizing.cascade)
        for note in inputs.notes.values():
            self._report_substitution(note)
        try:
            reply = await svc.allocate(inputs.signals, inputs.cascade, inputs.prices, False,
                                       inputs.request, portfolio=cfg.portfolio,
                                       source=StreamSource(self.stream, tuple(batch.ids)),
                                       inputs=inputs.notes or None)
        except PersistenceUnavailable:
            raise
        except Exception as err:
            # The engine refused (or failed on) this batch: never block the group on it.
            # (The service resyncs from its journal before the next request.)
            log.exception("the engine failed on a batch of %d messages", len(batch.ids))
            await self._dead_letter([DeadLetter(i, batch.raw[i], MessageRejected(
                RejectCode.ENGINE, "batch", len(batch.ids), f"an allocation ({err!r})"))
                for i in batch.ids], now_ns)
            return
        out = build_output(json.loads(reply.body), inputs.request["source"])
        self._check_lease()
        await self._guard("publish", self.publisher.publish(out, batch.ids))
        self.observer.emit(StreamMessagesHandled("processed", len(batch.ids)))
        oldest_ms = min(int(i.split("-", 1)[0]) for i in batch.ids)
        self.observer.emit(StreamDelivered(max(0.0, self.clock.time_ns() / 1e9
                                               - oldest_ms / 1e3)))

    def _report_substitution(self, note: dict[str, Any]) -> None:
        if "code" in note:
            self.observer.emit(Layer1Substituted(note["code"], note["policy"]))
        price = note.get("price")
        if isinstance(price, dict):
            self.observer.emit(Layer1Substituted(price["code"], price["policy"]))
