"""RL transport bench: batch requests, per-signal fan-out, and the first decision after start.

Every model server runs in its own process on 127.0.0.1 (in-process it would share our GIL);
every figure is a ratio of two timings taken interleaved in the same run.

* ``ratios``: decisions of 10 signals (Phase 3, metrics on) against a model answering each
  request after 20 ms, sync and async, vs one single-signal request to the same server,
  measured in turn in one loop. Servers: the reference server advertising its batch route
  (``ref_batch``: one request per decision; target <= 1.10x), the same server per-signal
  only (``ref_single``: ten requests per decision, each costing the server's FastAPI
  validation in series: shown, not a target), and a minimal keep-alive server without a
  batch route (``tiny_single``: the client's own fan-out cost; target <= 1.25x) or with one
  (``tiny_batch``).
* ``first``: a fresh interpreter per run (imports done first), start = building the hybrid
  (which warms its RL transport up), then the first decision and 15 more; the first vs the
  median of the others (target <= 1.2x), for a model that answers (``ref_batch``), refuses
  (a closed port) or hangs (a socket that never answers: the warm-up waits its bound,
  ``rl.warmup_timeout_sec``, then every decision its 150 ms deadline). With refuse and
  hang the breaker is disabled so that every decision asks (it would open after five).

    .venv/bin/python bench/bench_rl.py [--decisions 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_phase3 import (
    CASCADES,
    DEADLINE,
    PRICES,
    SERVER_DELAY,
    ChildServer,
    TinyRLServer,
    make_batches,
    p50,
)
from prometheus_client import CollectorRegistry

from himari_l3 import TacticalSignal
from himari_l3.observability.metrics import Layer3Metrics
from himari_l3.observability.prometheus import PrometheusObserver
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.resilience import CircuitBreaker
from himari_l3.rl import RLPolicy, TransformerRLClient
from himari_l3.rl.server import BackgroundRLServer, FaultInjector, create_rl_app

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"batch_ratio": 1.10, "per_signal_ratio": 1.25, "first_ratio": 1.2}
def _serve_in_child(kind: str, delay: float, port_q: Any, stop_ev: Any) -> None:
    """Child process: run one server until ``stop_ev`` is set."""
    if kind.startswith("tiny"):
        tiny = TinyRLServer(delay, batch=kind == "tiny_batch")
        port_q.put(tiny.port)
        stop_ev.wait(900)
    elif kind == "silent":  # accepts connections (the kernel's backlog) and never answers
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(4096)
            port_q.put(sock.getsockname()[1])
            stop_ev.wait(900)
    else:
        fault = FaultInjector(mode="slow", slow_sec=delay)
        app = create_rl_app(RLPolicy.default(), fault, batch=kind == "ref_batch")
        with BackgroundRLServer(app) as srv:
            port_q.put(srv.port)
            stop_ev.wait(900)


def child_server(kind: str) -> ChildServer:
    """A server of ``kind`` in a child process; ``url`` is its predict route."""
    return ChildServer(kind, SERVER_DELAY, serve=_serve_in_child)


def hybrid(url: str, **kw: Any) -> Layer3Phase3Hybrid:
    return Layer3Phase3Hybrid(portfolio_value=100_000.0, enable_rl=True, rl_endpoint=url,
                              enable_metrics=True,
                              observer=PrometheusObserver(Layer3Metrics(CollectorRegistry())),
                              **kw)


def ratios(url: str, batches: list[list[TacticalSignal]]) -> dict[str, Any]:
    """Interleaved: one single-signal request, one sync decision, one async decision."""
    single = TransformerRLClient(url, timeout_sec=1.0)
    h = hybrid(url)
    loop = asyncio.new_event_loop()
    sig = batches[0][0]
    one_t, sync_t, async_t = [], [], []
    for i, b in enumerate(batches[:5] + batches):
        t0 = time.perf_counter()
        single.predict_sync(sig)
        t1 = time.perf_counter()
        h.process_signals(b, CASCADES, PRICES)
        t2 = time.perf_counter()
        loop.run_until_complete(h.process_signals_async(b, CASCADES, PRICES))
        t3 = time.perf_counter()
        if i >= 5:  # the first five warm the server's and our code paths
            one_t.append(t1 - t0)
            sync_t.append(t2 - t1)
            async_t.append(t3 - t2)
    transport = h.rl_client.model if h.rl_client is not None else None
    batched = getattr(transport, "batch_route", None) is not None
    state = h.get_state()
    h.stop()
    single.close()
    loop.close()
    one = p50(one_t)
    return {"batch_route_used": batched, "single_request_p50_ms": one * 1e3,
            "sync_p50_ms": p50(sync_t) * 1e3, "async_p50_ms": p50(async_t) * 1e3,
            "sync_ratio": p50(sync_t) / one, "async_ratio": p50(async_t) / one,
            "rl_decisions": state["rl_decisions"],
            "fallback_decisions": state["fallback_decisions"]}


def first_decision_child(url: str, mode: str) -> dict[str, float]:
    """In a fresh interpreter: start, first decision, then 15 more (sync)."""
    batches = make_batches(16, 1)
    kw: dict[str, Any] = {}
    if mode != "answer":
        kw["circuit_breaker"] = CircuitBreaker("rl", enabled=False, call_deadline_sec=DEADLINE)
    t0 = time.perf_counter()
    h = hybrid(url, **kw)
    t1 = time.perf_counter()
    times = []
    for b in batches:
        s = time.perf_counter()
        h.process_signals(b, CASCADES, PRICES)
        times.append(time.perf_counter() - s)
    h.stop()
    warm = p50(times[1:])
    return {"start_ms": (t1 - t0) * 1e3, "first_ms": times[0] * 1e3, "warm_p50_ms": warm * 1e3,
            "ratio": times[0] / warm}


def first_decisions(runs: int) -> dict[str, Any]:
    """``runs`` fresh interpreters per mode, modes interleaved."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = f"http://127.0.0.1:{closed.getsockname()[1]}/predict"
    closed.close()
    out: dict[str, list[dict[str, float]]] = {"answer": [], "refuse": [], "hang": []}
    with child_server("ref_batch") as answering, child_server("silent") as silent:
        urls = {"answer": answering.url, "refuse": refused, "hang": silent.url}
        for _ in range(runs):
            for mode, url in urls.items():
                proc = subprocess.run([sys.executable, __file__, "--first-child", url, mode],
                                      capture_output=True, text=True, timeout=120, check=True)
                out[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {mode: {"runs": rs, "ratio_median": p50([r["ratio"] for r in rs]),
                   "ratio_max": max(r["ratio"] for r in rs),
                   "start_ms_max": max(r["start_ms"] for r in rs)}
            for mode, rs in out.items()}


def run(decisions: int = 60, runs: int = 3, seed: int = 0, write: bool = True) -> dict[str, Any]:
    """Every scenario; returns (and writes) the result dict. Bounded in count and time."""
    decisions = max(10, min(decisions, 300))
    runs = max(1, min(runs, 10))
    batches = make_batches(decisions, seed)
    out: dict[str, Any] = {"name": "bench_rl", "decisions": decisions, "runs": runs,
                           "seed": seed, "server_delay_ms": SERVER_DELAY * 1e3,
                           "deadline_ms": DEADLINE * 1e3, "python": platform.python_version(),
                           "targets": TARGETS}
    for kind in ("ref_batch", "tiny_batch", "tiny_single", "ref_single"):
        with child_server(kind) as srv:
            out[kind] = ratios(srv.url, batches)
    out["first"] = first_decisions(runs)
    worst = {k: max(out[k]["sync_ratio"], out[k]["async_ratio"]) for k in
             ("ref_batch", "tiny_batch", "tiny_single", "ref_single")}
    out["meets"] = {
        "batch": worst["ref_batch"] <= TARGETS["batch_ratio"],
        "per_signal": worst["tiny_single"] <= TARGETS["per_signal_ratio"],
        "first": all(out["first"][m]["ratio_median"] <= TARGETS["first_ratio"]
                     for m in ("answer", "refuse", "hang")),
    }
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "bench_rl.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def print_table(r: dict[str, Any]) -> None:
    labels = {"ref_batch": ("reference server, batch", TARGETS["batch_ratio"]),
              "tiny_batch": ("tiny server, batch", None),
              "tiny_single": ("tiny server, per-signal only", TARGETS["per_signal_ratio"]),
              "ref_single": ("reference server, per-signal only", None)}
    print(f"{'scenario':<44}{'one req':>9}{'sync':>9}{'async':>9}  ratios (target)")
    for key, (label, target) in labels.items():
        x = r[key]
        goal = f"<= {target:.2f}" if target else "-"
        print(f"{label:<44}{x['single_request_p50_ms']:>9.2f}{x['sync_p50_ms']:>9.2f}"
              f"{x['async_p50_ms']:>9.2f}  {x['sync_ratio']:.3f} / {x['async_ratio']:.3f} "
              f"({goal})")
    print(f"{'first decision after start':<44}{'start':>9}{'first':>9}{'warm':>9}  ratio "
          f"median / max (target <= {TARGETS['first_ratio']})")
    for mode in ("answer", "refuse", "hang"):
        f = r["first"][mode]
        last = f["runs"][-1]
        print(f"{'  model ' + mode + 's':<44}{f['start_ms_max']:>9.1f}{last['first_ms']:>9.2f}"
              f"{last['warm_p50_ms']:>9.2f}  {f['ratio_median']:.3f} / {f['ratio_max']:.3f}")
    print(f"meets: {r['meets']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first-child", nargs=2, metavar=("URL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.first_child:
        print(json.dumps(first_decision_child(*args.first_child)))
        return
    print_table(run(args.decisions, args.runs, args.seed))


if __name__ == "__main__":
    main()
