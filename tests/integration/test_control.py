"""`himari-l3 halt` / `resume` as an operator runs them: separate processes against a real
service on 127.0.0.1, the token from the environment (never echoed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from integration.service.test_sigkill import free_port, start_server
from service_support import TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cli(*args: str, token: str | None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m himari_l3 ARGS`` with (or without) the token in the environment."""
    env = {k: v for k, v in os.environ.items() if k != "HIMARI_L3_AUTH_TOKEN"}
    if token is not None:
        env["HIMARI_L3_AUTH_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "himari_l3", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_halt_and_resume_a_running_service(tmp_path: Path) -> None:
    """halt (a symbol, then the portfolio reduce-only), resume; a missing token is refused
    with exit 1; the token never shows in any output."""
    cfg = tmp_path / "layer3.yaml"
    cfg.write_text(f"persistence:\n  url: 'sqlite:///{tmp_path / 'l3.sqlite'}'\n"
                   f"service:\n  auth_token: '{TOKEN}'\n")
    port = free_port()
    proc = start_server(cfg, port, tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        out = cli("halt", "--url", url, "--symbol", "BTC-USD", "--reason", "venue", token=TOKEN)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["symbols"] == {"BTC-USD": "HALTED"}
        out = cli("halt", "--url", url, "--reducing", "--reason", "risk off", token=TOKEN)
        assert out.returncode == 0 and json.loads(out.stdout)["state"] == "REDUCING"
        refused = cli("resume", "--url", url, "--reason", "no token", token=None)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        for args in (("--symbol", "BTC-USD"), ()):
            out = cli("resume", "--url", url, *args, "--reason", "all clear", token=TOKEN)
            assert out.returncode == 0, out.stderr
            assert TOKEN not in out.stdout + out.stderr
        st = httpx.get(f"{url}/v1/trading-state", timeout=5).json()
        assert (st["state"], st["symbols"]) == ("ACTIVE", {})
        down = cli("halt", "--url", "http://127.0.0.1:9", "--reason", "x", token=TOKEN)
        assert down.returncode == 1 and "cannot reach" in down.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
