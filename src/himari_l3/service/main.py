"""``himari-l3 serve`` / ``python -m himari_l3.service.main``: run the service with uvicorn.

uvicorn handles SIGTERM and SIGINT by finishing the requests in flight and running the app's
shutdown (final snapshot, RL client closed). Without ``--config`` the defaults are used.
``--host``/``--port`` default to ``service.host``/``service.port`` (127.0.0.1:8080).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ..config.schema import Layer3Config

__all__ = ["run_service", "serve_main"]


def run_service(config_path: str | None, host: str | None = None,
                port: int | None = None) -> None:
    """Load the config (if given), build the app and serve it until SIGTERM/SIGINT."""
    import uvicorn

    from .app import create_app
    from .server import header_timeout_protocol

    if config_path is not None:
        from ..config.loader import load_config

        cfg = load_config(config_path)
    else:
        cfg = Layer3Config()
    app = create_app(cfg, config_path=config_path)
    app.state.freeze_gc = True
    uvicorn.run(app, host=host or cfg.service.host,
                port=cfg.service.port if port is None else port,
                log_level="info", access_log=False, timeout_graceful_shutdown=10,
                http=header_timeout_protocol(cfg.service.header_read_timeout_sec))


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``himari-l3 serve``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="himari-l3 serve",
                                     description="Run the Layer 3 HTTP service.")
    parser.add_argument("--config", default=None, help="YAML config file (hot reloaded)")
    parser.add_argument("--host", default=None,
                        help="bind address (default: service.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="port (default: service.port, 8080)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .._exceptions import ConfigError

    try:
        run_service(args.config, args.host, args.port)
    except ConfigError as err:
        print(f"ERROR {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(serve_main())
