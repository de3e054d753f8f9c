"""The Redis side of the loop: the consumer group, the dead-letter stream, the output stream.

`StreamConsumer` reads Layer 2's stream as one consumer of a group: new entries
(``XREADGROUP ... >``), its own pending entries after a restart or a failed tick (``... 0``),
and a dead consumer's pending entries (``XAUTOCLAIM``); it dead-letters an invalid message
and acknowledges it in one transaction (``MULTI``), so a message is either still pending or
both dead-lettered and acknowledged. `Publisher` appends a decision to the output stream,
announces it on the pub/sub channel and acknowledges its input messages in one Lua script
(atomic, one round trip): a decision's inputs are acknowledged exactly when its output entry
exists. Nothing here parses a message or decides anything (see ``layer2.py``, ``loop.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .wire import MessageRejected

__all__ = ["Entry", "Publisher", "StreamConsumer"]

# (stream id, fields); fields None: the entry was trimmed from the stream while pending.
Entry = tuple[str, dict[bytes, bytes] | None]
_ACK_CHUNK = 1000


def _sid(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _entries(rows: Sequence[Any]) -> list[Entry]:
    return [(_sid(i), dict(f) if f else None) for i, f in rows]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input message refused with its reason."""

    msg_id: str
    fields: dict[bytes, bytes] | None
    error: MessageRejected


class StreamConsumer:
    """One consumer (``consumer``) of ``group`` on ``stream``."""

    def __init__(self, redis: Redis, stream: str, group: str, consumer: str,
                 dead_letter_stream: str, dead_letter_maxlen: int) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream
        self.dead_letter_maxlen = dead_letter_maxlen

    async def ensure_group(self) -> None:
        """Create the group from the stream's first entry (and the stream) if absent."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def read(self, count: int, block_ms: int | None) -> list[Entry]:
        """Up to ``count`` new entries, waiting up to ``block_ms`` (None: not at all)."""
        out: Any = await self.redis.xreadgroup(self.group, self.consumer,
                                               {self.stream: ">"}, count=count, block=block_ms)
        return _entries(out[0][1]) if out else []

    async def read_pending(self, count: int) -> list[Entry]:
        """Up to ``count`` entries delivered to this consumer and not acknowledged."""
        out: Any = await self.redis.xreadgroup(self.group, self.consumer,
                                               {self.stream: "0"}, count=count)
        return _entries(out[0][1]) if out else []

    async def claim(self, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over up to ``count`` entries pending (with any consumer of the group) for at
        least ``min_idle_ms``; entries trimmed meanwhile come back with no fields."""
        res = await self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                          min_idle_time=min_idle_ms, start_id="0-0",
                                          count=count)
        claimed = _entries(res[1])
        deleted = [(_sid(i), None) for i in (res[2] if len(res) > 2 else [])]
        return claimed + deleted

    async def dead_letter(self, letters: Sequence[DeadLetter], now_ms: int) -> None:
        """Append each refused message to the dead-letter stream with its reason, and
        acknowledge it, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for d in letters:
                pipe.xadd(self.dead_letter_stream, _dead_letter_fields(d, self.stream, now_ms),
                          maxlen=self.dead_letter_maxlen, approximate=True)
            pipe.xack(self.stream, self.group, *[d.msg_id for d in letters])
            await pipe.execute()

    async def ack(self, ids: Sequence[str]) -> None:
        """Acknowledge entries that need no answer (trimmed while pending)."""
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)

    async def backlog(self) -> tuple[int | None, int]:
        """(lag, pending) of the group (XINFO GROUPS; lag None where Redis cannot say)."""
        for g in await self.redis.xinfo_groups(self.stream):
            name = g.get("name")
            if name is not None and _sid(name) == self.group:
                lag = g.get("lag")
                return (None if lag is None else int(lag)), int(g.get("pending", 0))
        return None, 0


def _dead_letter_fields(d: DeadLetter, stream: str, now_ms: int) -> dict[Any, Any]:
    fields = d.fields or {}
    message = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
               for k, v in fields.items()}
    err = d.error
    return {"reason": err.code.value, "field": err.field, "detail": str(err),
            "source_stream": stream, "source_id": d.msg_id,
            "dead_lettered_at_ms": str(now_ms),
            "message": json.dumps(message, ensure_ascii=False)}


# KEYS: output stream, input stream. ARGV: maxlen, channel, group, data, decision id,
# portfolio, schema version, then the input ids to acknowledge.
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                      'schema_version', ARGV[7], 'decision_id', ARGV[5], 'data', ARGV[4])
redis.call('PUBLISH', ARGV[2], cjson.encode({stream = KEYS[1], id = id,
                                             decision_id = tonumber(ARGV[5]),
                                             portfolio = ARGV[6]}))
local n = 0
for i = 8, #ARGV, 1000 do
  local last = math.min(i + 999, #ARGV)
  n = n + redis.call('XACK', KEYS[2], ARGV[3], unpack(ARGV, i, last))
end
return {id, n}
"""


class Publisher:
    """Appends a decision to ``output_stream`` (``schema_version``, ``decision_id`` and the
    JSON ``data`` fields; approximate ``MAXLEN``), announces it on ``channel`` and
    acknowledges its input ids, atomically."""

    def __init__(self, redis: Redis, output_stream: str, channel: str, maxlen: int,
                 input_stream: str, group: str) -> None:
        self.output_stream = output_stream
        self.channel = channel
        self.maxlen = maxlen
        self.input_stream = input_stream
        self.group = group
        self._script = redis.register_script(_PUBLISH)

    async def publish(self, output: dict[str, Any], ack_ids: Sequence[str]) -> str:
        """Append ``output`` and acknowledge ``ack_ids``; returns the output entry id."""
        data = json.dumps(output, separators=(",", ":"), allow_nan=False)
        args = [self.maxlen, self.channel, self.group, data, output["decision_id"],
                output.get("portfolio") or "", output["schema_version"], *ack_ids]
        res = await self._script(keys=[self.output_stream, self.input_stream], args=args)
        return _sid(res[0])
