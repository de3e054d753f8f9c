"""Phase 3 latency bench against a loopback reference RL server (127.0.0.1 only).

Scenarios (10 signals over 5 symbols per decision):

* ``rl_sync`` / ``rl_async``: the server answers each request after 20 ms (FaultInjector
  "slow"); decision p50 vs the p50 of one single request to the same server in the same run
  (target <= 1.15x: the ten requests really run in parallel);
* ``breaker_open``: the breaker forced open; decision p50 vs Phase 2 alone on the same
  batches (target: within 100 µs);
* ``hang``: the server never answers in time; max decision time vs the deadline (default
  0.15 s; target <= deadline + 20 ms). The breaker is disabled here so every decision waits;
* ``mock``: the mock RL client (sync path), p50.

    .venv/bin/python bench/bench_phase3.py [--decisions 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from himari_l3 import CascadeIndicators, ManualClock, MarketRegime, TacticalSignal
from himari_l3.config.schema import Layer3Config, RLConfig
from himari_l3.observability.metrics import Layer3Metrics
from himari_l3.observability.prometheus import PrometheusObserver
from himari_l3.phase2 import Layer3Phase2Portfolio
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.resilience import CircuitBreaker
from himari_l3.rl import RLPolicy, TransformerRLClient
from himari_l3.rl.server import BackgroundRLServer, FaultInjector, create_rl_app

RESULTS = Path(__file__).resolve().parent / "results"
SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "AVAX-USD", "LINK-USD"]
STRATEGIES = ["momentum", "mean_reversion", "breakout", "carry", "sentiment"]
SERVER_DELAY = 0.020
DEADLINE = 0.15
CASCADES = {s: CascadeIndicators.calm() for s in SYMBOLS}
PRICES = dict.fromkeys(SYMBOLS, 100.0)


_PREDICTION = {"position_pct": 0.05, "confidence": 0.6, "predicted_return": 0.01,
               "predicted_volatility": 0.02, "model_version": "tiny-1"}


class TinyRLServer:
    """A minimal keep-alive HTTP/1.1 model on 127.0.0.1: every request answered after
    ``delay`` with fixed valid predictions (per signal, or per batch when ``batch``, which it
    then advertises on GET /healthz); isolates the client's cost from a server's."""

    def __init__(self, delay: float, batch: bool = False) -> None:
        self.delay, self.batch = delay, batch
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _answer(self, head: bytes, body: bytes) -> tuple[bytes, bytes]:
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"GET /healthz"):
            caps = {"predict_batch": {"path": "/predict/batch", "max_signals": 256}}
            return b"200 OK", json.dumps({"status": "ok", "capabilities":
                                          caps if self.batch else {}}).encode()
        if line.startswith(b"POST /predict/batch") and self.batch:
            n = len(json.loads(body)["signals"])
            return b"200 OK", json.dumps({"predictions": [_PREDICTION] * n}).encode()
        if line.startswith(b"POST /predict "):
            return b"200 OK", json.dumps(_PREDICTION).encode()
        return b"404 Not Found", b"{}"

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                status, out = self._answer(head, body)
                if not head.startswith(b"GET"):
                    await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (status, len(out), out))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def _serve_in_child(kind: str, delay: float, port_q: Any, stop_ev: Any) -> None:
    """Child process: run one of the servers until ``stop_ev`` is set (a model server is
    another process in production; in-process it would share our GIL)."""
    if kind == "tiny":
        tiny = TinyRLServer(delay)
        port_q.put(tiny.port)
        stop_ev.wait(600)
        tiny.stop()
    else:
        fault = FaultInjector(mode="hang" if kind == "hang" else "slow", slow_sec=delay,
                              hang_sec=0.4)
        with BackgroundRLServer(create_rl_app(RLPolicy.default(), fault)) as srv:
            port_q.put(int(srv.url.rsplit(":", 1)[1]))
            stop_ev.wait(600)


class ChildServer:
    """A server in a child process on 127.0.0.1; ``url`` is its predict route (``serve``:
    the child's function, ``serve(kind, delay, port_queue, stop_event)``)."""

    def __init__(self, kind: str, delay: float,
                 serve: Callable[[str, float, Any, Any], None] | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._q, self._stop = ctx.Queue(), ctx.Event()
        self._proc = ctx.Process(target=serve or _serve_in_child,
                                 args=(kind, delay, self._q, self._stop), daemon=True)
        self._proc.start()
        self.url = f"http://127.0.0.1:{self._q.get(timeout=60)}/predict"

    def __enter__(self) -> ChildServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def parallel_vs_single(url: str, batches: list[list[TacticalSignal]]) -> dict[str, float]:
    """p50 of one request, and of sync and async decisions, against ``url``."""
    single = TransformerRLClient(url, timeout_sec=1.0)
    sig = batches[0][0]
    for _ in range(5):
        single.predict_sync(sig)
    single_t = [timed(lambda: single.predict_sync(sig)) for _ in range(len(batches))]
    single.close()
    h = hybrid(url)
    for b in batches[:5]:
        h.process_signals(b, CASCADES, PRICES)
    sync_t = [timed(lambda b=b: h.process_signals(b, CASCADES, PRICES)) for b in batches]

    async def async_run() -> list[float]:
        ts = []
        for b in batches:
            t0 = time.perf_counter()
            await h.process_signals_async(b, CASCADES, PRICES)
            ts.append(time.perf_counter() - t0)
        return ts

    async_t = asyncio.run(async_run())
    state = h.get_state()
    h.stop()
    one = p50(single_t)
    return {"single_request_p50_ms": one * 1e3, "sync_p50_ms": p50(sync_t) * 1e3,
            "async_p50_ms": p50(async_t) * 1e3, "sync_ratio": p50(sync_t) / one,
            "async_ratio": p50(async_t) / one, "rl_decisions": state["rl_decisions"],
            "fallback_decisions": state["fallback_decisions"]}


def make_batches(n: int, seed: int) -> list[list[TacticalSignal]]:
    """``n`` batches of 10 BUY-side signals (all asked) on distinct strategy x symbol pairs."""
    rng = random.Random(seed)
    pairs = [(s, y) for s in STRATEGIES for y in SYMBOLS]
    regimes = [MarketRegime.RANGING, MarketRegime.TRENDING_UP, MarketRegime.HIGH_VOLATILITY]
    return [[TacticalSignal(st, sym, rng.choice(["BUY", "STRONG_BUY"]),
                            rng.uniform(0.3, 0.95), rng.uniform(0.0, 0.8), rng.choice(regimes),
                            t, rng.uniform(0.002, 0.06), rng.uniform(0.01, 0.25))
             for st, sym in rng.sample(pairs, 10)] for t in range(n)]


def p50(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def observer() -> PrometheusObserver:
    return PrometheusObserver(Layer3Metrics(CollectorRegistry()))


def hybrid(url: str, **kw: Any) -> Layer3Phase3Hybrid:
    return Layer3Phase3Hybrid(portfolio_value=100_000.0, enable_rl=True, rl_endpoint=url,
                              enable_metrics=True, observer=observer(), **kw)


def run(decisions: int = 100, seed: int = 0, write: bool = True) -> dict[str, Any]:
    """Run every scenario; returns (and writes) the result dict. Bounded in count and time."""
    decisions = max(10, min(decisions, 500))
    batches = make_batches(decisions, seed)
    fault = FaultInjector(mode="slow", slow_sec=SERVER_DELAY, hang_sec=0.4)
    out: dict[str, Any] = {"name": "bench_phase3", "decisions": decisions, "seed": seed,
                           "server_delay_ms": SERVER_DELAY * 1e3, "deadline_ms": DEADLINE * 1e3,
                           "python": platform.python_version()}
    with BackgroundRLServer(create_rl_app(RLPolicy.default(), fault)) as srv:
        url = f"{srv.url}/predict"

        with ChildServer("reference", SERVER_DELAY) as ref:
            out["reference"] = parallel_vs_single(ref.url, batches)
        with ChildServer("tiny", SERVER_DELAY) as tiny:
            out["tiny"] = parallel_vs_single(tiny.url, batches)
        out["target_ratio"] = 1.15

        # breaker forced open vs Phase 2 alone (same batches, fresh engines)
        h = hybrid(url, clock=ManualClock())
        assert h.circuit_breaker is not None
        h.circuit_breaker.force_open()
        p2 = Layer3Phase2Portfolio(100_000.0, enable_metrics=True, observer=observer(),
                                   clock=ManualClock())
        reps = [b for _ in range(10) for b in batches][:1000]
        for b in reps[:50]:
            h.process_signals(b, CASCADES, PRICES)
            p2.process_multi_strategy_signals(b, CASCADES, PRICES)
        open_t, p2_t = [], []
        for b in reps:  # interleaved, so both see the same machine noise
            open_t.append(timed(lambda b=b: h.process_signals(b, CASCADES, PRICES)))
            p2_t.append(timed(lambda b=b: p2.process_multi_strategy_signals(b, CASCADES,
                                                                             PRICES)))
        h.stop()
        out["breaker_open_p50_us"] = p50(open_t) * 1e6
        out["phase2_p50_us"] = p50(p2_t) * 1e6
        out["breaker_open_overhead_us"] = out["breaker_open_p50_us"] - out["phase2_p50_us"]
        out["target_overhead_us"] = 100.0

    # hanging endpoint (in its own process), default deadline, breaker disabled so every
    # decision waits for the deadline
    with ChildServer("hang", SERVER_DELAY) as hanging:
        h = hybrid(hanging.url, circuit_breaker=CircuitBreaker("rl", enabled=False,
                                                               call_deadline_sec=DEADLINE))
        hang_t = [timed(lambda b=b: h.process_signals(b, CASCADES, PRICES))
                  for b in batches[:30]]
        h.stop()
        out["hang_max_ms"] = max(hang_t) * 1e3
        out["hang_p50_ms"] = p50(hang_t) * 1e3
        out["target_hang_max_ms"] = (DEADLINE + 0.020) * 1e3

    # mock RL (no server)
    cfg = Layer3Config(rl=RLConfig(enabled=True, use_mock=True, mock_seed=seed))
    m = Layer3Phase3Hybrid(config=cfg, enable_metrics=True, observer=observer(),
                           clock=ManualClock())
    for b in batches[:20]:
        m.process_signals(b, CASCADES, PRICES)
    mock_t = [timed(lambda b=b: m.process_signals(b, CASCADES, PRICES)) for b in reps]
    out["mock_p50_us"] = p50(mock_t) * 1e6

    out["meets_rl_ratio_reference"] = max(out["reference"]["sync_ratio"],
                                          out["reference"]["async_ratio"]) <= 1.15
    out["meets_rl_ratio_tiny"] = max(out["tiny"]["sync_ratio"], out["tiny"]["async_ratio"]) <= 1.15
    out["meets_open_overhead"] = out["breaker_open_overhead_us"] <= 100.0
    out["meets_hang"] = out["hang_max_ms"] <= out["target_hang_max_ms"]
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "bench_phase3.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def print_table(r: dict[str, Any]) -> None:
    rows = []
    for key, label in (("reference", "reference server"), ("tiny", "tiny server")):
        x = r[key]
        rows += [
            (f"{label}: single req p50 (ms)", f"{x['single_request_p50_ms']:.2f}", ""),
            (f"{label}: sync p50 (ms)", f"{x['sync_p50_ms']:.2f}",
             f"ratio {x['sync_ratio']:.2f} <= 1.15"),
            (f"{label}: async p50 (ms)", f"{x['async_p50_ms']:.2f}",
             f"ratio {x['async_ratio']:.2f} <= 1.15"),
        ]
    rows += [
        ("breaker open p50 (µs)", f"{r['breaker_open_p50_us']:.0f}", ""),
        ("Phase 2 alone p50 (µs)", f"{r['phase2_p50_us']:.0f}",
         f"overhead {r['breaker_open_overhead_us']:.0f} <= 100"),
        ("hang max decision (ms)", f"{r['hang_max_ms']:.1f}",
         f"<= {r['target_hang_max_ms']:.0f}"),
        ("hang p50 decision (ms)", f"{r['hang_p50_ms']:.1f}", ""),
        ("mock RL p50 (µs)", f"{r['mock_p50_us']:.0f}", ""),
    ]
    print(f"{'scenario':<36}{'value':>10}  target")
    for name, value, target in rows:
        print(f"{name:<36}{value:>10}  {target}")
    print(f"meets: ratio reference {r['meets_rl_ratio_reference']}, ratio tiny "
          f"{r['meets_rl_ratio_tiny']}, open overhead {r['meets_open_overhead']}, "
          f"hang {r['meets_hang']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print_table(run(args.decisions, args.seed))


if __name__ == "__main__":
    main()
