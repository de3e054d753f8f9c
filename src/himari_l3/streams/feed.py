"""``himari-l3 feed``: replay recorded Layer 2 messages (JSON lines) into a stream.

Each line of the file is one message, a JSON object. By default it is appended as Layer 2's
field form (each field a string, as ``XADD`` stores it; nested values as JSON text); with
``--format data`` as one ``data`` field holding the JSON. ``--rate N`` paces the replay at N
messages per second (0: as fast as Redis takes them, pipelined). Blank lines and lines
starting with ``#`` are skipped; a line that is not a JSON object stops the replay with its
line number (nothing after it is sent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from redis import Redis

__all__ = ["feed_main", "message_fields", "read_messages"]

_BATCH = 500


def read_messages(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, message) for each message line of ``path``."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                msg = json.loads(text)
            except ValueError as err:
                raise ValueError(f"{path}:{n}: not JSON ({err})") from None
            if not isinstance(msg, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object")
            yield n, msg


def message_fields(msg: dict[str, Any], form: str) -> dict[str, str]:
    """The entry fields of ``msg`` in ``form`` ("fields" or "data")."""
    if form == "data":
        return {"data": json.dumps(msg, separators=(",", ":"))}
    out: dict[str, str] = {}
    for k, v in msg.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, (dict, list)):
            out[k] = json.dumps(v, separators=(",", ":"))
        else:
            out[k] = str(v)
    return out


def feed(redis: Redis, stream: str, path: str, rate: float, form: str,
         maxlen: int | None) -> int:
    """Append every message of ``path`` to ``stream``; returns how many were sent."""
    sent = 0
    start = time.monotonic()
    pipe = redis.pipeline(transaction=False)
    for _, msg in read_messages(path):
        pipe.xadd(stream, message_fields(msg, form),  # type: ignore[arg-type]
                  maxlen=maxlen, approximate=maxlen is not None)
        sent += 1
        if rate > 0:
            pipe.execute()
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elif sent % _BATCH == 0:
            pipe.execute()
    pipe.execute()
    return sent


def feed_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``himari-l3 feed``; returns the exit code."""
    p = argparse.ArgumentParser(prog="himari-l3 feed",
                                description="Replay recorded Layer 2 messages (JSON lines) "
                                            "into a Redis stream.")
    p.add_argument("file", help="JSON lines: one Layer 2 message per line")
    p.add_argument("--redis", required=True, help="redis://host:port/db (password: env "
                                                  "HIMARI_L3_REDIS_PASSWORD)")
    p.add_argument("--stream", required=True, help="the stream to append to")
    p.add_argument("--rate", type=float, default=0.0,
                   help="messages per second (default 0: as fast as possible)")
    p.add_argument("--format", choices=("fields", "data"), default="fields",
                   help="fields: one entry field per message field (default); data: one "
                        "'data' field holding the JSON")
    p.add_argument("--maxlen", type=int, default=None, help="trim the stream to about this")
    args = p.parse_args(argv)
    if args.rate < 0:
        p.error(f"--rate was {args.rate}, expected >= 0")
    redis = Redis.from_url(args.redis, password=os.environ.get("HIMARI_L3_REDIS_PASSWORD"))
    try:
        sent = feed(redis, args.stream, args.file, args.rate, args.format, args.maxlen)
    except (OSError, ValueError) as err:
        print(f"ERROR {err}", file=sys.stderr)
        return 2
    finally:
        redis.close()
    print(f"sent {sent} messages to {args.stream}")
    return 0
