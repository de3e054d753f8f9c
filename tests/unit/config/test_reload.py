"""Hot reload against a real YAML file and a real Phase 3 orchestrator (mock RL): live
changes take effect, bad files and restart-only keys are refused and counted, learned and
breaker state survive, and the watcher thread picks a change up."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import make_cascade, make_metrics_observer, make_signal
from himari_l3 import ManualClock
from himari_l3.config.loader import load_config
from himari_l3.config.reload import ConfigReloader, diff_keys, is_live
from himari_l3.config.schema import Layer3Config
from himari_l3.events import ConfigReloaded
from himari_l3.observers import Observer
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.resilience.circuit_breaker import CircuitState

SYM = "BTC-USD"
PRICES = {SYM: 50_000.0}
BASE: dict[str, Any] = {
    "rl": {"enabled": True, "use_mock": True, "mock_seed": 3, "mock_success_rate": 1.0},
    # Layer 2's forecasts counted as 10,000 trades: strong reports reach the caps at once
    # (the sceptical default sizes them near fraction x c x mu before outcomes).
    "sizing": {"kelly": {"report_strength": 10_000.0}},
}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write YAML atomically (temporary file + rename), as operators are told to."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


def _with(**changes: Any) -> dict[str, Any]:
    """BASE plus dotted-path changes, e.g. _with(**{"sizing.kelly.fraction": 0.2})."""
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data


class Recorder(Observer):
    """Records the events it is sent."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    """(file, hybrid, reloader, clock, observer) wired as the service wires them."""
    path = tmp_path / "layer3.yaml"
    _write(path, BASE)
    clock = ManualClock()
    hybrid = Layer3Phase3Hybrid(enable_metrics=False, config=load_config(path, {}),
                                enable_rl=True, use_mock_rl=True, clock=clock)
    obs = Recorder()
    reloader = ConfigReloader(path, hybrid.apply_config, initial=hybrid.config,
                              interval_sec=0.02, observer=obs, clock=clock, env={})
    yield path, hybrid, reloader, clock, obs
    reloader.stop()
    hybrid.stop()


def _allocate(h: Layer3Phase3Hybrid) -> float:
    """Net USD on SYM for two strong same-direction strategies (sum well above any cap)."""
    sigs = [make_signal(strategy_id=s, confidence=0.9, risk_score=0.0, expected_return=0.05,
                        predicted_volatility=0.01)
            for s in ("momentum", "breakout")]
    return h.process_signals(sigs, make_cascade(), PRICES).allocations[SYM]


# ---------------------------------------------------------------------- live swap
def test_live_change_takes_effect_on_next_allocation(setup: Any) -> None:
    """portfolio.max_position_pct 0.15 -> 0.05 caps the very next allocation at 5 %."""
    path, hybrid, reloader, _, _ = setup
    assert _allocate(hybrid) == pytest.approx(15_000.0)
    _write(path, _with(**{"portfolio.max_position_pct": 0.05,
                          "sizing.limits.max_position_pct": 0.05}))
    result = reloader.check_now()
    assert result.status == "success"
    assert set(result.changed_keys) == {"portfolio.max_position_pct",
                                        "sizing.limits.max_position_pct"}
    assert reloader.current is hybrid.config and hybrid.config.portfolio.max_position_pct == 0.05
    assert _allocate(hybrid) == pytest.approx(5_000.0)
    assert (reloader.reloads_ok, reloader.reloads_failed, reloader.last_error) == (1, 0, None)


def test_success_is_reported_to_the_observer(setup: Any) -> None:
    """A success emits config_reloads{result=success} and config_last_reload (unix time)."""
    path, _, reloader, clock, obs = setup
    _write(path, _with(**{"rl.max_rl_weight": 0.3}))
    assert reloader.check_now().status == "success"
    assert obs.events == [ConfigReloaded(True, clock.time_ns() / 1e9)]


def test_reload_metrics_move_in_prometheus(tmp_path: Path) -> None:
    """With a Prometheus observer both config metric families are written."""
    path = tmp_path / "c.yaml"
    _write(path, {})
    obs = make_metrics_observer()
    applied: list[Layer3Config] = []
    r = ConfigReloader(path, applied.append, observer=obs, clock=ManualClock(), env={})
    _write(path, {"rl": {"max_rl_weight": 0.2}})
    r.check_now()
    _write(path, {"rl": {"max_rl_weight": 2.0}})
    r.check_now()
    reg = obs.metrics.registry
    ok = reg.get_sample_value("himari_l3_config_reloads_total", {"result": "success"})
    bad = reg.get_sample_value("himari_l3_config_reloads_total", {"result": "failure"})
    assert (ok, bad) == (1.0, 1.0) and len(applied) == 1
    assert reg.get_sample_value("himari_l3_config_last_reload_timestamp_seconds") > 1e9


# ------------------------------------------------------------------- bad content
@pytest.mark.parametrize(("changes", "key"), [
    ({"sizing.kelly.fraction": 1.7}, "sizing.kelly.fraction: Input should be less than"),
    ({"sizing.kelly.fractoin": 0.2}, "sizing.kelly.fractoin: unknown key"),
    ({"circuit_breaker.window_sec": "soon"}, "circuit_breaker.window_sec: Input should be"),
])
def test_invalid_file_keeps_last_good_config(setup: Any, changes: dict[str, Any],
                                             key: str) -> None:
    """A typo or bad value: old config stays in force, failure counted, last_error names key."""
    path, hybrid, reloader, _, obs = setup
    before_cfg, before = hybrid.config, _allocate(hybrid)
    _write(path, _with(**changes))
    result = reloader.check_now()
    assert result.status == "failure" and key in (result.error or "")
    assert reloader.last_error is not None and key in reloader.last_error
    assert str(path) in reloader.last_error
    assert (reloader.reloads_ok, reloader.reloads_failed) == (0, 1)
    assert hybrid.config is before_cfg and reloader.current is before_cfg
    assert _allocate(hybrid) == pytest.approx(before)
    assert obs.events == [ConfigReloaded(False)]


def test_broken_yaml_is_counted_once_then_a_fix_applies(setup: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Broken YAML is judged once (a warning, no traceback); the next good edit applies."""
    path, hybrid, reloader, _, _ = setup
    path.write_text("sizing: [unclosed\n")  # in place: judged once seen stable
    assert reloader.check_now().status == "pending"
    assert reloader.check_now().status == "failure"
    assert reloader.check_now().status == "unchanged"  # same broken content: not re-counted
    assert reloader.reloads_failed == 1 and "invalid YAML" in (reloader.last_error or "")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and all(r.exc_info is None for r in warnings)
    _write(path, _with(**{"rl.min_confidence": 0.1}))
    assert reloader.check_now().status == "success"
    assert hybrid.config.rl.min_confidence == 0.1 and reloader.last_error is None


def test_missing_file_keeps_config_and_counts_once(setup: Any) -> None:
    """A deleted file is one failure; the config in force is kept."""
    path, hybrid, reloader, _, _ = setup
    cfg = hybrid.config
    path.unlink()
    assert reloader.check_now().status == "failure"
    assert reloader.check_now().status == "unchanged"
    assert reloader.reloads_failed == 1 and "cannot read" in (reloader.last_error or "")
    assert hybrid.config is cfg


def test_restart_only_change_is_refused(setup: Any) -> None:
    """A restart-only key is refused with restart_required; live keys of that edit too."""
    path, hybrid, reloader, _, _ = setup
    cfg = hybrid.config
    _write(path, _with(**{"portfolio.correlation.window": 60, "rl.max_rl_weight": 0.2,
                          "service.port": 9000}))
    result = reloader.check_now()
    assert result.status == "failure"
    assert result.error == "restart_required: portfolio.correlation.window, service.port"
    assert hybrid.config is cfg and hybrid.config.rl.max_rl_weight == 0.5
    assert reloader.reloads_failed == 1


def test_comment_only_edit_is_unchanged(setup: Any) -> None:
    """Same values in another layout: nothing applied, nothing counted."""
    path, _, reloader, _, obs = setup
    path.write_text("# reformatted\n" + yaml.safe_dump(BASE, default_flow_style=True))
    assert reloader.check_now().status == "pending"  # in place: judged once seen stable
    assert reloader.check_now().status == "unchanged"
    assert (reloader.reloads_ok, reloader.reloads_failed, obs.events) == (0, 0, [])


def test_apply_failure_restores_previous_config(tmp_path: Path) -> None:
    """If apply raises, the previous config is re-applied and the failure counted."""
    path = tmp_path / "c.yaml"
    _write(path, {})
    calls: list[Layer3Config] = []

    def apply(cfg: Layer3Config) -> None:
        calls.append(cfg)
        if cfg.rl.max_rl_weight == 0.2:
            raise RuntimeError("boom")

    r = ConfigReloader(path, apply, env={})
    _write(path, {"rl": {"max_rl_weight": 0.2}})
    result = r.check_now()
    assert result.status == "failure" and result.error == "apply failed: RuntimeError: boom"
    assert [c.rl.max_rl_weight for c in calls] == [0.2, 0.5]
    assert r.current == Layer3Config()


# ---------------------------------------------------------- state survives reload
def test_learned_and_breaker_state_survive_reload(setup: Any) -> None:
    """Kelly stats, conformal scores, regime and correlation rows, and an OPEN breaker are
    unchanged by a reload of live keys."""
    path, hybrid, reloader, _, _ = setup
    p2 = hybrid.phase2
    _allocate(hybrid)
    for r in (0.02, -0.01, 0.03):
        p2.phase1.update_from_trade_result("momentum", SYM, r)
    for regime in ("TRENDING_UP", "TRENDING_UP", "CRISIS"):
        p2.phase1.observe_regime(SYM, make_signal(regime=regime).regime)
    for i in range(5):
        p2.update_correlations({SYM: 0.01 * i, "ETH-USD": 0.02 * i}, timestamp_ns=i + 1)
    breaker = hybrid.circuit_breaker
    assert breaker is not None
    for _ in range(5):
        breaker.record_failure("timeout")
    assert breaker.state is CircuitState.OPEN
    learned, breaker_state = p2.export_state(), breaker.export_state()
    kelly_n = p2.phase1.kelly.stats_[("momentum", SYM)].n

    _write(path, _with(**{"sizing.kelly.fraction": 0.2, "sizing.regime.confirmation_periods": 4,
                          "circuit_breaker.failure_threshold": 7,
                          "circuit_breaker.initial_timeout_sec": 20.0}))
    assert reloader.check_now().status == "success"
    assert p2.export_state() == learned
    assert p2.phase1.kelly.stats_[("momentum", SYM)].n == kelly_n == 3
    assert breaker.export_state() == breaker_state and breaker.state is CircuitState.OPEN
    assert hybrid.circuit_breaker is breaker and breaker.failure_threshold == 7
    assert p2.phase1.kelly.config.fraction == 0.2


# ------------------------------------------------------------------ the thread
def test_watcher_thread_picks_up_a_change(setup: Any) -> None:
    """The background poller applies an edit within a bounded wait (deadline 5 s)."""
    path, hybrid, reloader, _, _ = setup
    reloader.start()
    reloader.start()  # idempotent
    _write(path, _with(**{"rl.max_rl_weight": 0.25}))
    deadline = time.monotonic() + 5.0
    while reloader.reloads_ok < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    reloader.stop()
    assert reloader.reloads_ok == 1 and hybrid.config.rl.max_rl_weight == 0.25


def test_initial_config_loaded_from_file_and_bad_start_raises(tmp_path: Path) -> None:
    """Without `initial`, the file is loaded at construction; a bad file raises there."""
    from himari_l3 import ConfigError

    path = tmp_path / "c.yaml"
    _write(path, {"rl": {"max_rl_weight": 0.4}})
    assert ConfigReloader(path, lambda c: None, env={}).current.rl.max_rl_weight == 0.4
    _write(path, {"rl": {"max_rl_weight": 4}})
    with pytest.raises(ConfigError, match=r"rl\.max_rl_weight"):
        ConfigReloader(path, lambda c: None, env={})


# ------------------------------------------------------------------- helpers
def test_diff_keys_lists_changed_leaves() -> None:
    """diff_keys returns sorted dotted leaf paths of changed values only."""
    a = Layer3Config()
    b = Layer3Config.model_validate(_with(**{"sizing.regime.multipliers.CRISIS": 0.1}))
    assert diff_keys(a, b) == ["rl.enabled", "rl.mock_seed", "rl.mock_success_rate",
                               "rl.use_mock", "sizing.kelly.report_strength",
                               "sizing.regime.multipliers.CRISIS"]
    assert diff_keys(a, a) == []


def test_is_live_examples() -> None:
    """Limits and blend parameters are live; sockets, URLs and buffer sizes are not."""
    assert all(is_live(k) for k in ("sizing.kelly.fraction", "portfolio.max_strategy_pct",
                                    "circuit_breaker.enabled", "rl.timeout_sec"))
    assert not any(is_live(k) for k in ("service.port", "persistence.url", "rl.enabled",
                                        "rl.endpoint", "portfolio.correlation.window",
                                        "metrics.enabled", "sizing"))
