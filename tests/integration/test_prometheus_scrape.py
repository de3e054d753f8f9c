"""A real Prometheus scrapes Layer 3 metrics and the dashboards' Phase 1 queries return data.

Today the scrape target is a stand-in: ``prometheus_client``'s HTTP exposition of an isolated
registry that a ``Layer3Phase1`` writes to while a background driver keeps sizing signals and
recording outcomes. To test the real service instead, override the ``scrape_target_url``
fixture (start the service on a free loopback port and return its ``/metrics`` URL); the
Prometheus fixture and the queries stay as they are.

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
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from himari_l3._clock import ManualClock
from himari_l3.contracts import CascadeIndicators, MarketRegime, TacticalAction, TacticalSignal
from himari_l3.observability.metrics import Layer3Metrics
from himari_l3.observability.prometheus import PrometheusObserver
from himari_l3.phase1 import Layer3Phase1

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
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

def _signal(i: int) -> tuple[TacticalSignal, CascadeIndicators]:
    """A small rotating scenario: buys, sells, a HOLD and the odd cascade stress reading."""
    actions = [TacticalAction.BUY, TacticalAction.STRONG_BUY, TacticalAction.SELL,
               TacticalAction.HOLD]
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    signal = TacticalSignal(
        strategy_id=f"strat-{i % 2}", symbol=symbols[i % 3], action=actions[i % 4],
        confidence=0.55 + 0.05 * (i % 5), risk_score=0.2 + 0.1 * (i % 3),
        regime=MarketRegime.TRENDING_UP if i % 7 else MarketRegime.HIGH_VOLATILITY,
        timestamp_ns=1_700_000_000_000_000_000 + i, expected_return=0.01 + 0.002 * (i % 4),
        predicted_volatility=0.03)
    stressed = i % 5 == 4
    cascade = (CascadeIndicators(0.002, -0.2, 4.0, 0.9, 4.0) if stressed
               else CascadeIndicators.calm())
    return signal, cascade


def _drive(engine: Layer3Phase1, i: int) -> None:
    signal, cascade = _signal(i)
    engine.calculate_position(signal, cascade, 50_000.0, current_position_usd=1_000.0)
    ret = 0.012 if i % 3 else -0.008
    engine.record_outcome(signal.strategy_id, signal.symbol, ret)


@pytest.fixture(scope="module")
def stand_in_exporter() -> Iterator[str]:
    """Phase 1 on an isolated registry, exposed over HTTP on a free loopback port, with a
    driver thread that keeps deciding so rates and quantiles have fresh observations."""
    registry = CollectorRegistry()
    engine = Layer3Phase1(observer=PrometheusObserver(Layer3Metrics(registry)),
                          clock=ManualClock())
    for i in range(40):
        _drive(engine, i)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def keep_deciding() -> None:
        for i in range(40, 40 + 10_000):  # bounded: ~1000 s at 10 decisions per second
            if stop.wait(0.1):
                return
            _drive(engine, i)

    driver = threading.Thread(target=keep_deciding, name="phase1-driver", daemon=True)
    driver.start()
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        stop.set()
        driver.join(timeout=5)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def scrape_target_url(stand_in_exporter: str) -> str:
    """The /metrics URL Prometheus scrapes (swap for the real service later)."""
    return stand_in_exporter


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


def test_every_phase1_family_is_scraped(prometheus: httpx.Client) -> None:
    """Prometheus stored the Phase 1 families the sizing dashboard is built on."""
    names = set(prometheus.get("/api/v1/label/__name__/values").json()["data"])
    for name in ("himari_l3_sizing_decisions_total", "himari_l3_sizing_latency_seconds_bucket",
                 "himari_l3_position_size_usd_bucket", "himari_l3_cascade_risk_score",
                 "himari_l3_conformal_coverage_ratio", "himari_l3_build_info"):
        assert name in names, name
