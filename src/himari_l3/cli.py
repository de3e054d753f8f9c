"""``himari-l3``: the command line (demo, serve, rl-serve, backtest, check-config, run, feed,
halt, resume).

Each subcommand imports its implementation lazily, so ``himari-l3 check-config`` does not
pay for FastAPI and ``himari-l3 demo`` does not pay for matplotlib.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ._version import __version__

__all__ = ["main"]


def _demo(argv: list[str]) -> int:
    from .demo import main as demo_main

    return demo_main(argv)


def _serve(argv: list[str]) -> int:
    from .service.main import serve_main

    return serve_main(argv)


def _rl_serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="himari-l3 rl-serve",
                                description="Serve the reference RL model (POST /predict, "
                                            "POST /predict/batch, GET /healthz).")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--model", default=None,
                   help="JSON model file (default: the packaged reference policy)")
    p.add_argument("--no-batch", action="store_true",
                   help="serve POST /predict only and advertise no batch route (clients "
                        "then ask one request per signal)")
    args = p.parse_args(argv)
    from .rl.server import serve_rl

    serve_rl(args.host, args.port, args.model, batch=not args.no_batch)
    return 0


def _backtest(argv: list[str]) -> int:
    from .backtest.cli import main as backtest_main

    return backtest_main(argv)


def _run(argv: list[str]) -> int:
    from .streams.command import run_main

    return run_main(argv)


def _feed(argv: list[str]) -> int:
    from .streams.feed import feed_main

    return feed_main(argv)


def _check_config(argv: list[str]) -> int:
    from .config.loader import check_config_main

    return check_config_main(argv)


def _halt(argv: list[str]) -> int:
    from .control import control_main

    return control_main("halt", argv)


def _resume(argv: list[str]) -> int:
    from .control import control_main

    return control_main("resume", argv)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "demo": (_demo, "run Phases 1-3 on built-in synthetic data and print a summary"),
    "serve": (_serve, "run the HTTP service (POST /v1/size, /v1/allocate, GET /metrics ...)"),
    "rl-serve": (_rl_serve, "run the reference RL model server"),
    "backtest": (_backtest, "replay OHLCV bars through a phase and report statistics"),
    "check-config": (_check_config, "validate a YAML config file"),
    "run": (_run, "run the live loop: Layer 2's Redis stream in, decisions out (--paper)"),
    "feed": (_feed, "replay recorded Layer 2 messages (JSON lines) into a Redis stream"),
    "halt": (_halt, "halt trading on a running service (portfolio or --symbol)"),
    "resume": (_resume, "resume trading on a running service (portfolio or --symbol)"),
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: himari-l3 COMMAND [options]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<13} {help_}")
        print("\n'himari-l3 COMMAND --help' describes a command's options.")
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"himari-l3 {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"himari-l3: unknown command {args[0]!r}; try 'himari-l3 --help'",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return command[0](args[1:])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
