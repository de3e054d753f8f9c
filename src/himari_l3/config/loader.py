"""Load ``config/layer3.yaml`` into the typed tree, and ``himari-l3 check-config``.

YAML is an adapter concern: the core only ever sees a validated, frozen `Layer3Config`.
Every failure is a `ConfigError` whose message starts with the file and then the key path::

    config/layer3.yaml: sizing.kelly.fraction: Input should be less than or equal to 1 (value 1.7)

The one secret, ``service.auth_token``, can come from the environment instead of the file:
``HIMARI_L3_AUTH_TOKEN`` (if set and non-empty) overrides the file's value, and is validated
like any other key (its value is never echoed in an error). ``HIMARI_L3_PAPER=1`` sets
``execution.paper`` (what ``himari-l3 run --paper`` does for its process, so that every
reload of the file keeps it).

One top-level key is a directive to the hot reloader, not configuration:
``confirm_limit_removal: [dotted.key, ...]`` confirms that the file drops those limit keys on
purpose (``config/reload.py``). `read_config_bytes` returns it with the config and the key
paths the file wrote; everything else ignores it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._exceptions import ConfigError
from .markets import load_markets
from .schema import Layer3Config, parse_config

__all__ = [
    "AUTH_TOKEN_ENV",
    "CONFIRM_LIMIT_REMOVAL",
    "PAPER_ENV",
    "ConfigFile",
    "check_config_main",
    "config_version",
    "leaf_paths",
    "load_config",
    "load_config_bytes",
    "read_config_bytes",
]

AUTH_TOKEN_ENV = "HIMARI_L3_AUTH_TOKEN"
PAPER_ENV = "HIMARI_L3_PAPER"
CONFIRM_LIMIT_REMOVAL = "confirm_limit_removal"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A validated config file: the config, the dotted leaf keys the file itself wrote (not
    the defaults filled in), and the limit keys it confirms removing."""

    config: Layer3Config
    keys: frozenset[str]
    confirmed_removals: frozenset[str]


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML would
    silently keep the last one, hiding the first from the operator who wrote it)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool | None):
                continue  # unhashable keys: SafeLoader reports them itself
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike[str],
                env: Mapping[str, str] | None = None) -> Layer3Config:
    """Read, parse and validate the YAML file at ``path``; an empty file gives the defaults.

    ``env`` defaults to ``os.environ`` (tests pass a dict). Raises `ConfigError`.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{os.fspath(path)}: cannot read: {err.strerror or err}") from None
    return load_config_bytes(data, os.fspath(path), env)


def load_config_bytes(data: bytes, source: str = "<config>",
                      env: Mapping[str, str] | None = None) -> Layer3Config:
    """Parse and validate YAML ``data``; ``source`` prefixes every error message."""
    return read_config_bytes(data, source, env).config


def read_config_bytes(data: bytes, source: str = "<config>",
                      env: Mapping[str, str] | None = None) -> ConfigFile:
    """`load_config_bytes`, also returning the keys the file wrote and its
    ``confirm_limit_removal`` directive (a list of dotted keys; anything else is an error)."""
    try:
        raw = yaml.load(data, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {_yaml_problem(err)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, "
                          f"got {type(raw).__name__}")
    confirmed = raw.pop(CONFIRM_LIMIT_REMOVAL, [])
    if not isinstance(confirmed, list) or not all(isinstance(k, str) for k in confirmed):
        raise ConfigError(f"{source}: {CONFIRM_LIMIT_REMOVAL}: expected a list of dotted "
                          f"keys, e.g. [sizing.limits.max_position_usd] (value {confirmed!r})")
    keys = frozenset(leaf_paths(raw))
    environ = os.environ if env is None else env
    token = environ.get(AUTH_TOKEN_ENV)
    if token:
        _override(raw, "service", "auth_token", token)
    if environ.get(PAPER_ENV, "").strip().lower() in ("1", "true", "yes"):
        _override(raw, "execution", "paper", True)
    try:
        cfg = parse_config(Layer3Config, raw)
    except ConfigError as err:
        errors = tuple(f"{source}: {e}" for e in err.errors)
        raise ConfigError("\n".join(errors), errors) from None
    problem = cfg.service.token_problem()
    if problem is not None:
        raise ConfigError(f"{source}: {problem}", (f"{source}: {problem}",))
    return ConfigFile(cfg, keys, frozenset(confirmed))


def _override(raw: dict[str, Any], section: str, key: str, value: Any) -> None:
    """Set ``section.key`` in the raw file before validation (an environment override)."""
    node = raw.get(section)
    if node is None:
        node = raw[section] = {}
    if isinstance(node, dict):
        node[key] = value
    # else: leave it; validation reports the section as not a mapping.


def leaf_paths(data: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into ``{"a.b.c": value}`` (leaves only; an empty mapping,
    such as ``streams.symbol_map: {}``, is a leaf)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(leaf_paths(value, path + "."))
        else:
            out[path] = value
    return out


def config_version(cfg: Layer3Config) -> str:
    """A short content hash of ``cfg`` (12 hex digits of the SHA-256 of its canonical JSON).

    Equal configs give equal versions whatever the file's layout, comments or key order; the
    auth token is left out. Audit records carry it so a decision can be tied to its config.
    """
    data = cfg.public_dump()
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def check_config_main(argv: Sequence[str] | None = None) -> int:
    """``himari-l3 check-config PATH``: 0 and "OK <path> (version …)" if the file is valid,
    2 and one "ERROR <file>: <key path>: <problem>" line per problem on stderr if not."""
    parser = argparse.ArgumentParser(
        prog="himari-l3 check-config",
        description="Validate a Layer 3 config file (unknown keys and bad values are errors).")
    parser.add_argument("path", help="the YAML file, e.g. config/layer3.yaml")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (2) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        cfg = load_config(args.path)
        markets = load_markets(cfg.execution)  # the service would refuse to start too
    except ConfigError as err:
        for problem in err.errors:
            print(f"ERROR {problem}", file=sys.stderr)
        return 2
    listed = f", {len(markets)} markets" if markets.configured else ""
    print(f"OK {args.path} (version {config_version(cfg)}{listed})")
    return 0


def _yaml_problem(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError):
        where = ""
        if err.problem_mark is not None:
            where = (f" at line {err.problem_mark.line + 1}, "
                     f"column {err.problem_mark.column + 1}")
        return f"{err.problem or err.context or 'syntax error'}{where}"
    return str(err)
