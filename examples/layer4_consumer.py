"""A small Layer 4: read Layer 3's decisions from its output stream and act on their intents.

    python examples/layer4_consumer.py --redis redis://127.0.0.1:6379/0 \
        --stream l3:decisions [--group layer4] [--count N]

It reads as a consumer group of its own (so several executors can share the work, and a
restart resumes where it stopped), acknowledges each entry after handling it, and skips a
decision it has already handled: after a crash Layer 3 may publish the same decision again
(same ``decision_id``). Here "acting" is printing each intent; a real executor would place
the order under the intent's ``client_order_id`` (idempotent at the venue). The entry format
is documented in docs/integration.md ("Output: what Layer 4 reads").
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis


def handle(decision: dict[str, Any]) -> list[str]:
    """What this Layer 4 does with one decision: one line per intent (or per target when the
    decision carries no intents)."""
    lines = [f"decision {decision['decision_id']} (portfolio {decision['portfolio']}, "
             f"inputs {len(decision['source_ids'])}, state {decision['trading_state']})"]
    venue = decision.get("venue_symbols", {})
    for intent in decision["intents"]:
        symbol = intent.get("symbol")
        lines.append(f"  intent {intent.get('client_order_id')}: {intent.get('side')} "
                     f"{intent.get('quantity')} {venue.get(symbol, symbol)}"
                     f"{' reduce-only' if intent.get('reduce_only') else ''}")
    if not decision["intents"]:
        for symbol, usd in sorted(decision["allocations"].items()):
            lines.append(f"  target {venue.get(symbol, symbol)}: {usd:+.2f} USD")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--stream", default="l3:decisions")
    p.add_argument("--group", default="layer4")
    p.add_argument("--consumer", default="executor-1")
    p.add_argument("--count", type=int, default=0, help="stop after N decisions (0: never)")
    p.add_argument("--block-ms", type=int, default=5000)
    args = p.parse_args()
    r = redis.Redis.from_url(args.redis)
    try:
        r.xgroup_create(args.stream, args.group, id="0", mkstream=True)
    except redis.ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise
    seen: set[int] = set()  # a real executor keeps this durable (or relies on the venue)
    handled = 0
    while args.count == 0 or handled < args.count:
        # Our own unacknowledged entries first (after a restart), then new ones.
        for start in ("0", ">"):
            got = r.xreadgroup(args.group, args.consumer, {args.stream: start}, count=10,
                               block=None if start == "0" else args.block_ms)
            entries = got[0][1] if got else []
            for entry_id, fields in entries:
                decision = json.loads(fields[b"data"])
                if decision["schema_version"] != 1:
                    raise SystemExit(f"unknown schema_version {decision['schema_version']}")
                if decision["decision_id"] not in seen:
                    print("\n".join(handle(decision)), flush=True)
                    seen.add(decision["decision_id"])
                    handled += 1
                r.xack(args.stream, args.group, entry_id)
            if entries:
                break
        else:
            if args.count:
                break  # nothing came within --block-ms
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
