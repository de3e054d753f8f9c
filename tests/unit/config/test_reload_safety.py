"""Hot reload applies only complete files and never silently drops a limit.

The scenario from issue 13: an operator edits ``config/layer3.yaml`` in place; the poller
reads it while it is half-written, without its ``max_position_usd`` line, and hot-applied
it: a sizing of 5,563 USD against a 1,000 USD cap. Now a file edited in place is applied
only once two polls saw it unchanged (size, mtime and content hash), a file renamed into
place at once, and a reload that would drop a limit key the file in force had is refused
unless the new file confirms it (``confirm_limit_removal: [key, ...]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import make_cascade, make_signal
from himari_l3 import ManualClock
from himari_l3.config.loader import load_config, load_config_bytes
from himari_l3.config.reload import ConfigReloader, is_limit
from himari_l3.phase3 import Layer3Phase3Hybrid

SYM = "BTC-USD"
FULL = """\
portfolio_value: 100000.0
sizing:
  kelly:
    fraction: 0.2
  limits:
    max_position_pct: 0.15
    max_position_usd: 1000.0
"""
# The same file caught before its last line was written.
HALF = FULL[: FULL.index("    max_position_usd")]


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _in_place(path: Path, text: str) -> None:
    with path.open("r+") as f:  # same inode, as an editor writing in place
        f.seek(0)
        f.truncate()
        f.write(text)


@pytest.fixture
def capped(tmp_path: Path) -> Any:
    """A hybrid built from FULL (1,000 USD cap) and its reloader."""
    path = tmp_path / "layer3.yaml"
    _atomic(path, FULL)
    hybrid = Layer3Phase3Hybrid(enable_metrics=False, config=load_config(path, {}),
                                clock=ManualClock())
    reloader = ConfigReloader(path, hybrid.apply_config, initial=hybrid.config,
                              clock=ManualClock(), env={})
    yield path, hybrid, reloader
    hybrid.stop()


def _size(h: Layer3Phase3Hybrid) -> float:
    """USD on SYM for one strong signal: ~2,150 USD uncapped before any outcome (the
    sceptical Kelly prior sizes a report at about fraction x confidence x expected return)."""
    sigs = [make_signal(strategy_id="momentum", confidence=0.9, risk_score=0.0,
                        expected_return=0.15)]
    return h.process_signals(sigs, make_cascade(), {SYM: 50_000.0}).allocations[SYM]


def test_half_written_file_is_never_applied(capped: Any) -> None:
    """The issue's scenario: the half-written file (no max_position_usd) is not applied
    while it is being written, nor when the writer stalls; the cap holds throughout."""
    path, hybrid, reloader = capped
    assert _size(hybrid) == pytest.approx(1_000.0)
    _in_place(path, HALF)
    assert reloader.check_now().status == "pending"  # seen once: may be incomplete
    assert hybrid.config.sizing.limits.max_position_usd == 1_000.0
    assert _size(hybrid) == pytest.approx(1_000.0)
    # The writer stalls: two polls see the same half file. It is complete as far as anyone
    # can tell, and it drops a limit key: refused.
    result = reloader.check_now()
    assert result.status == "failure"
    assert result.error is not None
    assert "sizing.limits.max_position_usd" in result.error
    assert "confirm_limit_removal" in result.error
    assert hybrid.config.sizing.limits.max_position_usd == 1_000.0
    assert _size(hybrid) == pytest.approx(1_000.0)
    assert reloader.reloads_ok == 0


def test_in_place_edit_applies_once_stable(capped: Any) -> None:
    """An in-place edit is applied on the second poll that sees it unchanged."""
    path, hybrid, reloader = capped
    text = FULL.replace("max_position_usd: 1000.0", "max_position_usd: 500.0")
    _in_place(path, HALF)
    assert reloader.check_now().status == "pending"
    _in_place(path, text)  # the writer finished between two polls
    assert reloader.check_now().status == "pending"
    result = reloader.check_now()
    assert result.status == "success", result
    assert result.changed_keys == ("sizing.limits.max_position_usd",)
    assert _size(hybrid) == pytest.approx(500.0)
    assert reloader.last_error is None


def test_atomic_replacement_applies_at_once(capped: Any) -> None:
    """A file renamed into place is complete: applied on the first poll."""
    path, hybrid, reloader = capped
    _atomic(path, FULL.replace("fraction: 0.2", "fraction: 0.15"))
    assert reloader.check_now().status == "success"
    assert hybrid.config.sizing.kelly.fraction == 0.15


def test_dropping_a_limit_key_needs_confirmation(capped: Any) -> None:
    """Removing max_position_usd is refused, then applied when the file confirms it."""
    path, hybrid, reloader = capped
    _atomic(path, HALF)
    result = reloader.check_now()
    assert result.status == "failure"
    assert result.error == (
        "limit_keys_removed: sizing.limits.max_position_usd (keep them, or confirm with "
        "confirm_limit_removal: [sizing.limits.max_position_usd])")
    _atomic(path, "confirm_limit_removal: [sizing.limits.max_position_usd]\n" + HALF)
    result = reloader.check_now()
    assert result.status == "success", result
    assert hybrid.config.sizing.limits.max_position_usd is None
    assert _size(hybrid) > 1_000.0


def test_dropping_a_whole_section_lists_every_limit_it_changes(capped: Any) -> None:
    """A file truncated before ``sizing:`` drops every limit below it: refused, naming the
    ones whose value would change (max_position_pct is at its default: harmless)."""
    path, _, reloader = capped
    _atomic(path, "portfolio_value: 100000.0\n")
    result = reloader.check_now()
    assert result.status == "failure"
    assert result.error is not None
    assert result.error.startswith("limit_keys_removed: sizing.kelly.fraction, "
                                   "sizing.limits.max_position_usd (")


def test_dropping_a_limit_key_at_its_default_value_changes_nothing(capped: Any) -> None:
    """A dropped key whose value equals the default changes no value: unchanged, allowed."""
    path, hybrid, reloader = capped
    text = FULL.replace("    max_position_pct: 0.15\n", "")
    _atomic(path, text)
    assert reloader.check_now().status == "unchanged"
    # The file in force now lacks the key, so it can no longer be "dropped".
    _atomic(path, text.replace("fraction: 0.2", "fraction: 0.15"))
    assert reloader.check_now().status == "success"
    assert hybrid.config.sizing.kelly.fraction == 0.15


def test_confirming_a_key_that_is_not_a_limit_is_an_error(capped: Any) -> None:
    """A typo in confirm_limit_removal is named (it would confirm nothing)."""
    path, _, reloader = capped
    _atomic(path, "confirm_limit_removal: [sizing.limits.max_positon_usd]\n" + HALF)
    result = reloader.check_now()
    assert result.status == "failure"
    assert result.error is not None
    assert "sizing.limits.max_positon_usd" in result.error and "not a limit key" in result.error


def test_confirmation_must_be_a_list_of_keys() -> None:
    """confirm_limit_removal: true (a blanket yes) is refused at load, naming the key."""
    from himari_l3 import ConfigError

    with pytest.raises(ConfigError, match="confirm_limit_removal"):
        load_config_bytes(b"confirm_limit_removal: true\n", "c.yaml", {})
    cfg = load_config_bytes(b"confirm_limit_removal: [portfolio_value]\n", "c.yaml", {})
    assert cfg.portfolio_value == 100_000.0  # a directive, not a config key


def test_last_error_clears_when_the_good_config_is_back(capped: Any) -> None:
    """After a refused edit, restoring the file in force clears last_error ("unchanged")."""
    path, _, reloader = capped
    _atomic(path, FULL.replace("fraction: 0.2", "fraction: 7"))
    assert reloader.check_now().status == "failure"
    assert reloader.last_error is not None
    _atomic(path, FULL)
    result = reloader.check_now()
    assert result.status == "unchanged"
    assert reloader.last_error is None
    assert (reloader.reloads_ok, reloader.reloads_failed) == (0, 1)


def test_limit_keys_are_the_ones_that_bound_a_size() -> None:
    """is_limit covers caps, budgets, equity and the RL weight; not tuning knobs."""
    assert all(is_limit(k) for k in (
        "portfolio_value", "sizing.limits.max_position_usd", "sizing.limits.allow_short",
        "portfolio.max_position_pct", "portfolio.max_strategy_pct",
        "portfolio.max_portfolio_pct", "sizing.kelly.max_fraction", "rl.max_rl_weight",
        "sizing.cascade.exit_above"))
    assert not any(is_limit(k) for k in (
        "sizing.sentiment.weight", "rl.timeout_sec", "circuit_breaker.window_sec",
        "portfolio.drift_threshold", "service.port"))


def test_yaml_helpers_round_trip() -> None:
    """(sanity) the fixture's FULL and HALF differ only by the max_position_usd line."""
    assert yaml.safe_load(FULL)["sizing"]["limits"]["max_position_usd"] == 1000.0
    assert "max_position_usd" not in yaml.safe_load(HALF)["sizing"]["limits"]
