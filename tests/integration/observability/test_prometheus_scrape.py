"""A real Prometheus scrapes the real service and the dashboards' key queries return data.

The scrape target is ``himari-l3 serve`` started as a subprocess on a free loopback port
(mock RL, SQLite in a temporary folder) while a driver thread keeps calling its API (sizing,
allocations, outcomes), so rates and quantiles have fresh observations. Prometheus is
started on 127.0.0.1 with a one-second scrape interval.

Needs the ``prometheus`` binary (Debian package ``prometheus``): skipped when it is absent,
failed when it is absent and ``CI=true``. Everything listens on 127.0.0.1 only, and every
wait is bounded.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.integration

ROOT = REPO
DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"
JOB = "himari_l3"
STARTUP_TIMEOUT_SEC = 30.0
QUERY_TIMEOUT_SEC = 30.0

# Key Phase 1 queries, verbatim from the dashboards (a test checks they are still there),
# with the predicate each result must satisfy.
KEY_QUERIES: dict[str, Any] = {
    'sum(rate(himari_l3_sizing_decisions_total{job="$job"}[5m]))': lambda v: v > 0,
    'sum by (action) (rate(himari_l3_sizing_decisions_total{job="$job"}[5m]))':
        lambda v: v >= 0,
    'histogram_quantile(0.99, sum by (le) '
    '(rate(himari_l3_sizing_latency_seconds_bucket{job="$job"}[5m])))': lambda v: 0 < v <= 1,
    'sum(rate(himari_l3_position_size_usd_sum{job="$job"}[5m])) '
    '/ sum(rate(himari_l3_position_size_usd_count{job="$job"}[5m]))': lambda v: v > 0,
    'histogram_quantile(0.5, sum by (le) '
    '(rate(himari_l3_kelly_fraction_ratio_bucket{job="$job"}[5m])))': lambda v: 0 <= v <= 1,
    'topk(10, sum by (reason) (rate(himari_l3_reason_codes_total{job="$job"}[5m])))':
        lambda v: v >= 0,
    'sum(increase(himari_l3_outcomes_total{job="$job",result="win"}[1h])) '
    '/ sum(increase(himari_l3_outcomes_total{job="$job"}[1h]))': lambda v: 0 <= v <= 1,
    'himari_l3_cascade_risk_score{job="$job",symbol=~"$symbol"}': lambda v: 0 <= v <= 1,
    'max(up{job="$job"})': lambda v: v == 1,
    # Phase 2/3, the breaker and the service itself
    'max(himari_l3_portfolio_utilization_ratio{job="$job"})': lambda v: 0 <= v <= 0.8,
    'sum by (phase) (rate(himari_l3_allocations_total{job="$job"}[5m]))': lambda v: v > 0,
    'sum by (path) (rate(himari_l3_decisions_total{job="$job"}[5m]))': lambda v: v >= 0,
    'max by (breaker) (himari_l3_circuit_breaker_state{job="$job"})': lambda v: v in (0, 1, 2),
    'sum by (outcome) (rate(himari_l3_rl_requests_total{job="$job"}[5m]))': lambda v: v >= 0,
    'sum by (code) (rate(himari_l3_http_requests_total{job="$job"}[5m]))': lambda v: v > 0,
    'sum by (kind) (rate(himari_l3_persistence_writes_total{job="$job"}[5m]))':
        lambda v: v >= 0,
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prometheus_binary() -> str:
    path = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if path is None:
        message = ("prometheus server binary not found (install the Debian package "
                   "'prometheus'); cannot run the scrape integration test")
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# ------------------------------------------------------------------------ scrape target

CAS = {"funding_rate": 0.0001, "oi_change_pct": 0.0, "volume_ratio": 1.0,
       "onchain_whale_pressure": 0.0, "exchange_netflow_zscore": 0.0}
STRESS = {"funding_rate": 0.002, "oi_change_pct": -0.2, "volume_ratio": 4.0,
          "onchain_whale_pressure": 0.9, "exchange_netflow_zscore": 4.0}
SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]


def _signal(i: int, strategy: str, symbol: str) -> dict[str, Any]:
    """A rotating scenario: buys, sells and HOLDs over three symbols and two regimes."""
    return {"strategy_id": strategy, "symbol": symbol,
            "action": ["BUY", "STRONG_BUY", "SELL", "HOLD"][i % 4],
            "confidence": 0.55 + 0.05 * (i % 5), "risk_score": 0.2 + 0.1 * (i % 3),
            "regime": "TRENDING_UP" if i % 7 else "HIGH_VOLATILITY",
            "expected_return": 0.01 + 0.002 * (i % 4), "predicted_volatility": 0.03}


def _drive(client: httpx.Client, i: int) -> None:
    symbol = SYMBOLS[i % 3]
    cascade = STRESS if i % 5 == 4 else CAS
    client.post("/v1/size", json={"signal": _signal(i, f"strat-{i % 2}", symbol),
                                  "cascade": cascade, "price": 50_000.0,
                                  "current_position_usd": 1_000.0})
    client.post("/v1/allocate", json={
        "signals": [_signal(i + k, f"strat-{k}", s) for k in range(2) for s in SYMBOLS],
        "cascade": {s: (STRESS if s == symbol and i % 5 == 4 else CAS) for s in SYMBOLS},
        "prices": {"BTC-USD": 50_000.0, "ETH-USD": 3_000.0, "SOL-USD": 150.0}})
    client.post("/v1/outcomes", json={"symbol": symbol, "strategy_id": f"strat-{i % 2}",
                                      "realized_return": 0.012 if i % 3 else -0.008})
    client.post("/v1/outcomes", json={"symbol": symbol, "used_rl": i % 2 == 0,
                                      "realized_return": 0.01 if i % 4 else -0.01})


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``himari-l3 serve`` on a free loopback port with a driver thread keeping it busy."""
    tmp = tmp_path_factory.mktemp("service")
    config = tmp / "layer3.yaml"
    config.write_text(yaml.safe_dump({
        "rl": {"enabled": True, "use_mock": True, "mock_seed": 3},
        "persistence": {"url": f"sqlite:///{tmp / 'l3.sqlite'}"}}))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "HIMARI_L3_AUTH_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "himari_l3", "serve", "--config",
                             str(config), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=5.0)
    stop = threading.Event()
    driver: threading.Thread | None = None
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SEC
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the service exited with {proc.returncode} before answering")
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the service did not answer /healthz within "
                            f"{STARTUP_TIMEOUT_SEC:.0f} s")
            time.sleep(0.1)
        for i in range(20):
            _drive(client, i)

        def keep_deciding() -> None:
            for i in range(20, 20 + 5_000):  # bounded: ~500 s at 10 rounds per second
                if stop.wait(0.1):
                    return
                try:
                    _drive(client, i)
                except httpx.HTTPError:
                    return

        driver = threading.Thread(target=keep_deciding, name="service-driver", daemon=True)
        driver.start()
        yield f"{base}/metrics"
    finally:
        stop.set()
        if driver is not None:
            driver.join(timeout=10)
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def scrape_target_url(service_url: str) -> str:
    """The /metrics URL Prometheus scrapes: the real service's."""
    return service_url


# ----------------------------------------------------------------------- prometheus

def _wait_until(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes],
                log: Path) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode} while waiting for {what}:\n"
                        + log.read_text()[-4000:])
        try:
            last = predicate()
        except httpx.HTTPError as err:
            last = err
        else:
            if last:
                return last
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n"
                + log.read_text()[-4000:])


@pytest.fixture(scope="module")
def prometheus(scrape_target_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A real Prometheus on a free loopback port scraping the target every second; yields a
    client on its HTTP API once the target is up."""
    binary = _prometheus_binary()
    work = tmp_path_factory.mktemp("prometheus")
    target = urlsplit(scrape_target_url)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": JOB, "metrics_path": target.path or "/metrics",
                            "scheme": target.scheme,
                            "static_configs": [{"targets": [target.netloc]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = work / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, cwd=work)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2.0, trust_env=False)
    try:
        _wait_until(lambda: client.get("/-/ready").status_code == 200,
                    STARTUP_TIMEOUT_SEC, "prometheus /-/ready", proc, log)

        def target_up() -> bool:
            active = client.get("/api/v1/targets").json()["data"]["activeTargets"]
            return any(t["labels"]["job"] == JOB and t["health"] == "up" for t in active)

        _wait_until(target_up, STARTUP_TIMEOUT_SEC, f"target {scrape_target_url} up",
                    proc, log)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    body = client.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _dashboard_expressions() -> set[str]:
    return {t["expr"] for p in DASHBOARDS.glob("*.json")
            for panel in json.loads(p.read_text())["panels"] for t in panel["targets"]}


# ---------------------------------------------------------------------------- tests

def test_key_queries_are_the_dashboards_queries() -> None:
    """The queries below are copied verbatim from the dashboards, so they cannot drift."""
    missing = set(KEY_QUERIES) - _dashboard_expressions()
    assert not missing, missing


def test_dashboard_key_queries_return_data(prometheus: httpx.Client) -> None:
    """Each key Phase 1 query returns finite samples that make sense, within a bounded wait."""
    deadline = time.monotonic() + QUERY_TIMEOUT_SEC
    pending = dict(KEY_QUERIES)
    last: dict[str, Any] = {}
    while pending and time.monotonic() < deadline:
        for template, ok in list(pending.items()):
            expr = template.replace("$job", JOB).replace("$symbol", ".*")
            result = _query(prometheus, expr)
            values = [float(r["value"][1]) for r in result]
            last[template] = values
            if values and all(math.isfinite(v) and ok(v) for v in values):
                del pending[template]
        if pending:
            time.sleep(0.5)
    assert not pending, {q: last.get(q) for q in pending}


def test_key_families_are_scraped(prometheus: httpx.Client) -> None:
    """Prometheus stored the families the dashboards are built on, from every layer."""
    names = set(prometheus.get("/api/v1/label/__name__/values").json()["data"])
    for name in ("himari_l3_sizing_decisions_total", "himari_l3_sizing_latency_seconds_bucket",
                 "himari_l3_position_size_usd_bucket", "himari_l3_cascade_risk_score",
                 "himari_l3_build_info", "himari_l3_decisions_total",
                 "himari_l3_decision_latency_seconds_bucket",
                 "himari_l3_circuit_breaker_state", "himari_l3_circuit_breaker_timeout_sec",
                 "himari_l3_portfolio_allocated_usd", "himari_l3_http_requests_total",
                 "himari_l3_persistence_writes_total"):
        assert name in names, name
