"""Read the markets file (``execution.markets_file``) into the book's instrument rules.

An adapter: the file may be JSON (a dump of ccxt's ``exchange.load_markets()``; ``.json``)
or YAML (a small table; any other suffix); ``book/markets.py`` turns the mapping into
`MarketRules` and says which shapes it takes. A relative path is taken from the working
directory, like ``persistence.url``. Every problem is a `ConfigError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .._exceptions import ConfigError
from ..book.markets import Markets, parse_markets
from .schema import OrderExecutionConfig

__all__ = ["load_markets"]


def load_markets(cfg: OrderExecutionConfig) -> Markets:
    """The rules ``cfg.markets_file`` lists (no file configured: every symbol trades
    unconstrained)."""
    if cfg.markets_file is None:
        return Markets()
    path = Path(cfg.markets_file)
    where = f"execution.markets_file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{where}: cannot read: {err.strerror or err}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"{where}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}:"
                          f" {err}") from None
    try:
        return Markets(parse_markets(data, cfg.precision_mode))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
