"""``python -m himari_l3.persistence check|accept-loss URL``: the store's start-up checks.

``check`` prints what the service's start-up would refuse (exit 2), or ``OK`` (exit 0).
``accept-loss`` records the seqs the store lost as accepted — for when there is no backup to
restore — so the service can start; new decision ids continue after them (exit 0), or
prints why the damage cannot be accepted (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .recovery import StoreIntegrityError, accept_loss, find_losses
from .store import Store


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m himari_l3.persistence",
                                     description="Check a Layer 3 store, or accept its loss.")
    parser.add_argument("command", choices=("check", "accept-loss"))
    parser.add_argument("url", help="the store's URL, as persistence.url")
    args = parser.parse_args(argv)
    store = Store(args.url)
    try:
        if args.command == "check":
            problems = find_losses(store).problems
            for p in problems:
                print(f"ERROR {p}", file=sys.stderr)
            if not problems:
                print("OK")
            return 2 if problems else 0
        try:
            lost = accept_loss(store)
        except StoreIntegrityError as err:
            print(f"ERROR {err}", file=sys.stderr)
            return 2
        print("accepted as lost: " + (", ".join(f"{a}..{b}" for a, b in lost) or "nothing"))
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
