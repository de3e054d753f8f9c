"""Reading the markets file: JSON or YAML, and every failure a ConfigError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from himari_l3._exceptions import ConfigError
from himari_l3.config.loader import check_config_main
from himari_l3.config.markets import load_markets
from himari_l3.config.schema import OrderExecutionConfig

DATA = Path(__file__).resolve().parents[2] / "data"


def test_no_file_is_unconstrained() -> None:
    """execution.markets_file null: every symbol trades without rules."""
    assert not load_markets(OrderExecutionConfig()).configured


def test_ccxt_json_dump_and_yaml_table(tmp_path: Path) -> None:
    """A ccxt JSON dump (found by key and id) and a YAML table both load."""
    m = load_markets(OrderExecutionConfig(markets_file=str(DATA / "markets_ccxt.json")))
    assert m.rules("BTC-USD") is not None and m.rules("BTC/USD") is not None
    y = tmp_path / "m.yaml"
    y.write_text("SOL-USD:\n  step_size: 0.1\n  min_notional: 5\n")
    rules = load_markets(OrderExecutionConfig(markets_file=str(y))).rules("SOL-USD")
    assert rules is not None and rules.step_size == 0.1


@pytest.mark.parametrize(("content", "words"), [
    (None, "cannot read"), ("{not json", "not valid JSON"), ("[]", "non-empty mapping"),
    ('{"X": {"precision": {"amount": -1}}}', "markets[X].step_size was -1.0")])
def test_errors_name_the_file(tmp_path: Path, content: str | None, words: str) -> None:
    """Missing, unparsable or invalid: a ConfigError that starts with the key and file."""
    path = tmp_path / "markets.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_markets(OrderExecutionConfig(markets_file=str(path)))
    assert str(err.value).startswith(f"execution.markets_file {str(path)!r}")
    assert words in str(err.value)


def test_check_config_reads_the_markets_file(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """himari-l3 check-config loads the markets file too (a bad one: exit 2)."""
    cfg = tmp_path / "layer3.yaml"
    cfg.write_text(f"execution:\n  markets_file: {DATA / 'markets_ccxt.json'}\n")
    assert check_config_main([str(cfg)]) == 0
    assert "4 markets" in capsys.readouterr().out
    cfg.write_text(f"execution:\n  markets_file: {tmp_path / 'missing.json'}\n")
    assert check_config_main([str(cfg)]) == 2
    assert "ERROR execution.markets_file" in capsys.readouterr().err
