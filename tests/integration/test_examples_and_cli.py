"""The README's first command path, the examples and the CLI, run as a user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


@pytest.mark.parametrize("script", ["phase1.py", "phase2.py", "phase3.py"])
def test_examples_run(script: str) -> None:
    """Each example script runs to completion and prints its headline numbers."""
    proc = _run(str(ROOT / "examples" / script))
    assert proc.returncode == 0, proc.stderr
    assert "HIMARI OPUS V2" in proc.stdout


def test_phase3_example_prints_the_users_statistics() -> None:
    """examples/phase3.py prints the sections of the user's example output."""
    out = _run(str(ROOT / "examples" / "phase3.py")).stdout
    for line in ("Total Allocated:", "Utilization:", "RL Statistics:", "Total Predictions:",
                 "Success Rate:", "Hybrid Orchestrator Stats:", "RL Usage Rate:",
                 "[SUCCESS] All Phase 3 examples completed!"):
        assert line in out


def test_demo_prints_summary_and_writes_report(tmp_path: Path) -> None:
    """`himari-l3 demo` shows all phases, the RL outage and breaker, the trading states'
    halt and resume with the paper executor's fills, and writes its report."""
    out_dir = tmp_path / "report"
    proc = _run("-m", "himari_l3", "demo", "--out", str(out_dir), "--steps", "300")
    assert proc.returncode == 0, proc.stderr
    for text in ("Phase 1", "Phase 2", "Phase 3", "cascade events", "RL decisions",
                 "fallback decisions", "breaker transitions", "Trading states and the paper",
                 "state transitions", "paper fills", str(out_dir)):
        assert text in proc.stdout
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["phase3"]["fallback_decisions"] > 0
    assert summary["phase3"]["rl_decisions"] > 0
    assert any("-> open" in t for t in summary["phase3"]["breaker_transitions"])
    paper = summary["paper"]
    manual = [(r["from"], r["to"]) for r in paper["transitions"]
              if r["scope"] == "portfolio" and r["reason"] == "manual"]
    assert manual == [("ACTIVE", "HALTED"), ("HALTED", "ACTIVE")]
    assert paper["hours_by_state"]["HALTED"] > 0 and paper["closed_trades"] > 0
    assert paper["fills"] > 0 and paper["fills_at_halt"]  # the kill switch flattened
    assert all(f["reduce_only"] and f["side"] == "sell" for f in paper["fills_at_halt"])
    for name in ("allocations_phase2.csv", "weight_history.csv", "breaker_events.csv",
                 "trading_states.csv", "paper_fills.csv", "metrics.prom"):
        assert (out_dir / name).stat().st_size > 0
    prom = (out_dir / "metrics.prom").read_text()
    assert "himari_l3_circuit_breaker_state" in prom
    assert "himari_l3_trading_state_transitions_total" in prom


def test_demo_is_reproducible(tmp_path: Path) -> None:
    """Two demo runs with the same seed write the same allocations, state transitions and
    paper fills."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert _run("-m", "himari_l3", "demo", "--out", str(d), "--steps", "150").returncode == 0
    for name in ("allocations_phase2.csv", "trading_states.csv", "paper_fills.csv"):
        assert (a / name).read_text() == (b / name).read_text()


def test_cli_help_and_unknown_command() -> None:
    """`himari-l3 --help` lists the commands; an unknown command exits 2 with a hint."""
    proc = _run("-m", "himari_l3", "--help")
    assert proc.returncode == 0
    for cmd in ("demo", "serve", "rl-serve", "backtest", "check-config"):
        assert cmd in proc.stdout
    bad = _run("-m", "himari_l3", "frobnicate")
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rl_serve_command_answers_predictions() -> None:
    """`himari-l3 rl-serve` on 127.0.0.1 serves /healthz (advertising its batch route) and
    valid /predict and /predict/batch answers."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "himari_l3", "rl-serve", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert health is not None and health["model_version"]
        body = {"strategy_id": "m", "symbol": "BTC/USDT", "action": "BUY", "confidence": 0.8,
                "risk_score": 0.2, "regime": "TRENDING_UP", "timestamp_ns": 1}
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json=body, timeout=5.0).json()
        assert -1.0 <= answer["position_pct"] <= 1.0
        assert answer["model_version"] == health["model_version"]
        route = health["capabilities"]["predict_batch"]
        assert route == {"path": "/predict/batch", "max_signals": 256}
        many = httpx.post(f"http://127.0.0.1:{port}{route['path']}", timeout=5.0,
                          json={"market_data": None, "signals": [body, body]}).json()
        assert [p["position_pct"] for p in many["predictions"]] == [answer["position_pct"]] * 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
