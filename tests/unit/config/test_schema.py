"""Config loading: YAML -> typed tree, errors naming file and key path, env override,
check-config, config_version, and the shipped config/layer3.yaml and docs/config.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO
from himari_l3 import ConfigError
from himari_l3.config.loader import (
    AUTH_TOKEN_ENV,
    check_config_main,
    config_version,
    load_config,
    load_config_bytes,
)
from himari_l3.config.reload import LIVE_KEYS, RESTART_ONLY_KEYS, _covered, is_live, leaf_paths
from himari_l3.config.schema import Layer3Config, parse_config

ROOT = REPO
SHIPPED = ROOT / "config" / "layer3.yaml"
DOC = ROOT / "docs" / "config.md"
NO_ENV: dict[str, str] = {}
TOKEN = "s3cret-token-0123456789"


def _load(text: str, env: dict[str, str] | None = None) -> Layer3Config:
    return load_config_bytes(text.encode(), "config/layer3.yaml", NO_ENV if env is None else env)


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(text)
    return str(info.value)


def _leaves() -> set[str]:
    return set(leaf_paths(Layer3Config().model_dump()))


# ------------------------------------------------------------------------- loading
def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    """An empty (or comment-only) file is the default config."""
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing\n")
    assert load_config(f, NO_ENV) == Layer3Config()


def test_partial_file_overrides_only_its_keys() -> None:
    """Given keys override defaults; the rest keep their defaults."""
    cfg = _load("sizing:\n  kelly:\n    fraction: 0.1\nportfolio:\n  max_strategy_pct: 0.3\n")
    assert cfg.sizing.kelly.fraction == 0.1 and cfg.portfolio.max_strategy_pct == 0.3
    assert cfg.sizing.kelly.max_fraction == Layer3Config().sizing.kelly.max_fraction


def test_error_names_file_key_path_and_value() -> None:
    """An out-of-range value: file, dotted key path, what was allowed and the value."""
    msg = _error("sizing:\n  kelly:\n    fraction: 1.7\n")
    assert msg == ("config/layer3.yaml: sizing.kelly.fraction: Input should be less than or "
                   "equal to 1 (value 1.7)")


@pytest.mark.parametrize(("text", "path"), [
    ("portfolio_valu: 1\n", "portfolio_valu"),
    ("sizing:\n  kelly:\n    fractoin: 0.2\n", "sizing.kelly.fractoin"),
    ("sizing:\n  regime:\n    multipliers:\n      SIDEWAYS: 1.0\n",
     "sizing.regime.multipliers.SIDEWAYS"),
    ("portfolio:\n  correlation:\n    windw: 10\n", "portfolio.correlation.windw"),
    ("extra_section:\n  a: 1\n", "extra_section"),
])
def test_unknown_keys_rejected_at_every_depth(text: str, path: str) -> None:
    """A typo at any depth is an 'unknown key' error naming its full path."""
    assert f"config/layer3.yaml: {path}: unknown key" in _error(text)


@pytest.mark.parametrize(("text", "path", "words"), [
    ("sizing:\n  kelly:\n    fraction: abc\n", "sizing.kelly.fraction", "valid number"),
    ("sizing:\n  conformal:\n    window: 2.5\n", "sizing.conformal.window", "integer"),
    ("sizing:\n  sentiment:\n    enabled: maybe\n", "sizing.sentiment.enabled", "boolean"),
    ("sizing:\n  kelly:\n    model: kelly\n", "sizing.kelly.model", "'binary' or 'gaussian'"),
    ("rl:\n  timeout_sec: [1]\n", "rl.timeout_sec", "valid number"),
    ("portfolio: 0.5\n", "portfolio", "dictionary"),
])
def test_wrong_types_rejected(text: str, path: str, words: str) -> None:
    """A value of the wrong type names the key path and the expected type."""
    msg = _error(text)
    assert msg.startswith(f"config/layer3.yaml: {path}: ") and words in msg


@pytest.mark.parametrize("literal", [".nan", ".inf", "-.inf"])
def test_nan_and_inf_rejected(literal: str) -> None:
    """NaN and ±inf are refused for every float key (allow_inf_nan=False)."""
    msg = _error(f"circuit_breaker:\n  window_sec: {literal}\n")
    assert msg.startswith("config/layer3.yaml: circuit_breaker.window_sec: ")
    assert "finite" in msg


@pytest.mark.parametrize(("text", "path"), [
    ("portfolio_value: 0\n", "portfolio_value"),
    ("sizing:\n  conformal:\n    alpha: 0.5\n", "sizing.conformal.alpha"),
    ("portfolio:\n  max_portfolio_pct: 1.5\n", "portfolio.max_portfolio_pct"),
    ("circuit_breaker:\n  failure_threshold: 0\n", "circuit_breaker.failure_threshold"),
    ("rl:\n  max_rl_weight: -0.1\n", "rl.max_rl_weight"),
    ("service:\n  port: 70000\n", "service.port"),
])
def test_out_of_range_rejected(text: str, path: str) -> None:
    """Range checks name the key path."""
    assert _error(text).startswith(f"config/layer3.yaml: {path}: Input should be")


@pytest.mark.parametrize(("text", "path", "words"), [
    ("sizing:\n  cascade:\n    weights:\n      oi_drop: 0.5\n", "sizing.cascade.weights",
     "summed to"),
    ("sizing:\n  cascade:\n    reduce_50_above: 0.7\n", "sizing.cascade",
     "reduce_50_above <= reduce_75_above <= exit_above"),
    ("sizing:\n  conformal:\n    window: 10\n    min_samples: 11\n", "sizing.conformal",
     "min_samples was 11, expected <= window (10)"),
    ("portfolio:\n  correlation:\n    window: 10\n", "portfolio.correlation",
     "min_observations was 20, expected <= window (10)"),
    ("circuit_breaker:\n  initial_timeout_sec: 600\n", "circuit_breaker",
     "max_timeout_sec was 300.0, expected >= initial_timeout_sec (600.0)"),
    ("portfolio:\n  max_position_pct: 0.1\n", "Layer3Config",
     "sizing.limits.max_position_pct was 0.15, expected equal to portfolio.max_position_pct"),
])
def test_cross_field_validators(text: str, path: str, words: str) -> None:
    """Cross-field rules fail with the sub-tree path and name the keys involved."""
    msg = _error(text)
    assert msg.startswith(f"config/layer3.yaml: {path}: ") and words in msg


def test_position_caps_changed_together_are_accepted() -> None:
    """The two position caps may change, as long as they stay equal."""
    cfg = _load("sizing:\n  limits:\n    max_position_pct: 0.1\n"
                "portfolio:\n  max_position_pct: 0.1\n")
    assert cfg.portfolio.max_position_pct == cfg.sizing.limits.max_position_pct == 0.1


@pytest.mark.parametrize(("text", "words"), [
    ("sizing:\n  kelly: [1\n", "invalid YAML"),
    ("a: 1\na: 2\n", "duplicate key 'a' at line 2"),
    ("sizing:\n\tkelly: 1\n", "invalid YAML"),
])
def test_yaml_syntax_errors(text: str, words: str) -> None:
    """Broken YAML (and a key given twice) is a ConfigError naming the file and line."""
    msg = _error(text)
    assert msg.startswith("config/layer3.yaml: ") and words in msg


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "42\n", "just a string\n"])
def test_non_mapping_root_rejected(text: str) -> None:
    """The top level must be a mapping."""
    assert "the top level must be a mapping" in _error(text)


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    """An unreadable path is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml", NO_ENV)


# ------------------------------------------------------------------ env override
def test_env_paper_sets_execution_paper() -> None:
    """HIMARI_L3_PAPER=1 (what `run --paper` sets) turns the paper executor on over the
    file's value; anything but 1/true/yes leaves the file's value."""
    assert _load("", {"HIMARI_L3_PAPER": "1"}).execution.paper is True
    assert _load("execution:\n  paper: false\n", {"HIMARI_L3_PAPER": "true"}).execution.paper
    assert _load("execution:\n  order_type: limit\n",
                 {"HIMARI_L3_PAPER": "yes"}).execution.order_type == "limit"
    assert _load("", {"HIMARI_L3_PAPER": "0"}).execution.paper is False
    assert _load("execution:\n  paper: true\n").execution.paper is True


def test_env_token_sets_auth_token() -> None:
    """HIMARI_L3_AUTH_TOKEN sets service.auth_token, over the file's value."""
    assert _load("", {AUTH_TOKEN_ENV: TOKEN}).service.auth_token == TOKEN
    cfg = _load("service:\n  auth_token: file-token-0123456789\n", {AUTH_TOKEN_ENV: TOKEN})
    assert cfg.service.auth_token == TOKEN
    assert _load("service:\n  port: 9000\n", {AUTH_TOKEN_ENV: TOKEN}).service.port == 9000


def test_empty_env_token_is_ignored() -> None:
    """An empty HIMARI_L3_AUTH_TOKEN does not override the file."""
    assert _load("", {AUTH_TOKEN_ENV: ""}).service.auth_token is None


def test_env_token_validated_and_never_echoed() -> None:
    """A too-short token fails on service.auth_token without printing the secret."""
    with pytest.raises(ConfigError) as info:
        _load("", {AUTH_TOKEN_ENV: "short-secret"})
    msg = str(info.value)
    assert "service.auth_token" in msg and "short-secret" not in msg and "redacted" in msg


def test_env_override_read_from_process_environment(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """Without an explicit env, load_config reads os.environ."""
    f = tmp_path / "c.yaml"
    f.write_text("")
    monkeypatch.setenv(AUTH_TOKEN_ENV, TOKEN)
    assert load_config(f).service.auth_token == TOKEN


# ------------------------------------------------------------------ check-config
def test_check_config_ok(capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid file: exit 0 and 'OK <path> (version …)'."""
    monkeypatch.delenv(AUTH_TOKEN_ENV, raising=False)
    assert check_config_main([str(SHIPPED)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"OK {SHIPPED} (version {config_version(Layer3Config())})"


def test_check_config_error_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid file: exit 2 and the error (file and key path) on stderr."""
    monkeypatch.delenv(AUTH_TOKEN_ENV, raising=False)
    f = tmp_path / "bad.yaml"
    f.write_text("rl:\n  max_rl_weight: 2\n")
    assert check_config_main([str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}: rl.max_rl_weight: Input should be less than or equal to 1" in err


def test_check_config_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No PATH argument is a usage error (exit 2), not a traceback."""
    assert check_config_main([]) == 2
    assert "usage: himari-l3 check-config" in capsys.readouterr().err


def test_cli_dispatches_check_config(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`himari-l3 check-config PATH` reaches check_config_main."""
    from himari_l3.cli import main

    monkeypatch.delenv(AUTH_TOKEN_ENV, raising=False)
    assert main(["check-config", str(SHIPPED)]) == 0
    assert capsys.readouterr().out.startswith("OK ")


# ---------------------------------------------------------------- config_version
def test_config_version_is_stable_and_layout_independent() -> None:
    """Same values -> same version, whatever the layout, comments or key order."""
    a = _load("rl:\n  max_rl_weight: 0.3\n  timeout_sec: 0.2\n")
    b = _load("# comment\nrl: {timeout_sec: 0.20, max_rl_weight: 0.30}\n")
    assert config_version(a) == config_version(b)
    assert re.fullmatch(r"[0-9a-f]{12}", config_version(a))
    assert config_version(Layer3Config()) == config_version(Layer3Config())


def test_config_version_changes_with_any_value() -> None:
    """Any value change gives another version."""
    base = config_version(Layer3Config())
    assert config_version(_load("sizing:\n  kelly:\n    uncertainty_z: 1.5\n")) != base
    assert config_version(_load("metrics:\n  max_label_values: 65\n")) != base


def test_config_version_ignores_the_auth_token() -> None:
    """Rotating the secret changes no decision, so not the version either."""
    assert config_version(_load("", {AUTH_TOKEN_ENV: TOKEN})) == config_version(_load(""))


# ------------------------------------------------------- shipped file and the doc
def test_shipped_yaml_is_exactly_the_defaults() -> None:
    """config/layer3.yaml parses to Layer3Config() and lists exactly its leaf keys."""
    raw = yaml.safe_load(SHIPPED.read_text())
    assert set(leaf_paths(raw)) == _leaves()
    assert load_config(SHIPPED, NO_ENV) == Layer3Config()


def _yaml_tags() -> dict[str, str]:
    """{dotted leaf path: 'live' | 'restart'} from the shipped file's comments."""
    tags: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in SHIPPED.read_text().splitlines():
        m = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), key])
        tag = re.search(r"#\s*\[(live|restart)\]", rest)
        if tag:
            tags[path] = tag.group(1)
        stack.append((indent, key))
    return tags


def test_shipped_yaml_documents_every_key_and_its_reload_class() -> None:
    """Every leaf has a comment tagged [live]/[restart] that agrees with LIVE_KEYS."""
    tags = _yaml_tags()
    assert set(tags) == _leaves()
    wrong = {k: t for k, t in tags.items() if (t == "live") != is_live(k)}
    assert not wrong


def test_every_leaf_is_classified_live_or_restart_exactly_once() -> None:
    """No key escapes the live/restart decision, and none is in both tables."""
    for key in _leaves():
        assert _covered(key, LIVE_KEYS) != _covered(key, RESTART_ONLY_KEYS), key


def test_doc_lists_every_leaf_key_with_default_and_reload_class() -> None:
    """docs/config.md has a table row per leaf key: path, default, live/restart."""
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\|\s*`([A-Za-z0-9_.]+)`\s*\|(.*)$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    missing = _leaves() - set(rows)
    assert not missing
    defaults = leaf_paths(Layer3Config().model_dump(mode="json"))
    for key in _leaves():
        default, _range, live = rows[key][0], rows[key][1], rows[key][2]
        assert default.strip("`") == _doc_value(defaults[key]), key
        assert live == ("live" if is_live(key) else "restart"), key


def _doc_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def test_the_token_is_left_out_of_dumps_reprs_and_versions() -> None:
    """public_dump (journal, snapshots) and repr never carry service.auth_token (nor a
    password in persistence.url); the version ignores it; the dump parses back to the same
    config without it."""
    token = "tok-" + "9" * 20
    cfg = parse_config(Layer3Config, {"service": {"auth_token": token}})
    assert token not in json.dumps(cfg.public_dump())
    assert token not in repr(cfg) and token not in str(cfg)
    assert config_version(cfg) == config_version(Layer3Config())
    back = parse_config(Layer3Config, cfg.public_dump())
    assert back.service.auth_token is None
    pg = parse_config(Layer3Config, {"persistence": {
        "url": "postgresql+psycopg://l3:pg-s3cret@db.example:5432/himari"}})
    assert pg.public_dump()["persistence"]["url"] == (
        "postgresql+psycopg://l3:***@db.example:5432/himari")
    assert "pg-s3cret" not in json.dumps(pg.public_dump())
    assert back == cfg.model_copy(update={"service": cfg.service.model_copy(
        update={"auth_token": None})})
