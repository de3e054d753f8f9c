"""``himari-l3 halt|resume``: the operator's kill switch against a running service.

::

    himari-l3 halt   --url URL [--symbol S] [--reducing] --reason TEXT
    himari-l3 resume --url URL [--symbol S] --reason TEXT

Each is one ``POST /v1/trading-state`` (``{"state", "reason", "symbol"?}``): ``halt`` sets
HALTED (``--reducing``: REDUCING, reduce-only), ``resume`` sets ACTIVE; the service journals
the command before it answers, so it survives a crash. The bearer token comes from the
environment variable ``HIMARI_L3_AUTH_TOKEN`` (never from the command line, where ``ps`` and
shell history would show it) and is never printed or logged. Prints the trading state the
service answers with; exit status 0 when the service accepted the command, 1 when it refused
it or could not be reached, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

import httpx

__all__ = ["AUTH_TOKEN_ENV", "control_main"]

AUTH_TOKEN_ENV = "HIMARI_L3_AUTH_TOKEN"


def _parser(command: str) -> argparse.ArgumentParser:
    what = ("halt trading (HALTED; with --reducing: reduce-only)" if command == "halt"
            else "resume trading (ACTIVE)")
    p = argparse.ArgumentParser(
        prog=f"himari-l3 {command}",
        description=f"{what.capitalize()} on a running Layer 3 service, for the portfolio or "
                    f"one symbol. The bearer token is read from ${AUTH_TOKEN_ENV}.")
    p.add_argument("--url", required=True,
                   help="the service's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--symbol", default=None, help="one symbol (default: the portfolio)")
    p.add_argument("--portfolio", default=None,
                   help="the portfolio (default: the service's default portfolio)")
    p.add_argument("--reason", required=True, help="why (journaled with the command)")
    if command == "halt":
        p.add_argument("--reducing", action="store_true",
                       help="REDUCING (only reduce-only intents) instead of HALTED")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    return p


def control_main(command: str, argv: Sequence[str], *,
                 transport: httpx.BaseTransport | None = None,
                 env: Mapping[str, str] | None = None, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """Run ``himari-l3 halt`` or ``resume`` (``command``) with ``argv``; returns the exit
    status. ``transport`` and ``env`` are test seams (default: the network, os.environ)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = _parser(command).parse_args(list(argv))
    if not args.reason.strip():
        print(f"himari-l3 {command}: --reason must not be empty", file=err)
        return 2
    state = "ACTIVE" if command == "resume" else (
        "REDUCING" if args.reducing else "HALTED")
    body: dict[str, str] = {"state": state, "reason": args.reason}
    for key in ("symbol", "portfolio"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    token = (env if env is not None else os.environ).get(AUTH_TOKEN_ENV)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=args.url, timeout=args.timeout,
                          transport=transport) as client:
            reply = client.post("/v1/trading-state", json=body, headers=headers)
    except (httpx.HTTPError, ValueError) as exc:
        # The message names the URL and the failure; the token is only in a header.
        print(f"himari-l3 {command}: cannot reach {args.url}: {type(exc).__name__}: {exc}",
              file=err)
        return 1
    if reply.status_code != 200:
        hint = (f" (set {AUTH_TOKEN_ENV} to the service's token)"
                if reply.status_code == 401 else "")
        print(f"himari-l3 {command}: the service refused: HTTP {reply.status_code}{hint}: "
              f"{_detail(reply)}", file=err)
        return 1
    print(json.dumps(reply.json(), indent=2, sort_keys=True), file=out)
    return 0


def _detail(reply: httpx.Response) -> str:
    try:
        return json.dumps(reply.json().get("detail"))
    except (ValueError, AttributeError):
        return reply.text[:500]
