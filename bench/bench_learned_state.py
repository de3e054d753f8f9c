"""Learned state under a stream of never-repeated ids (issue 13): memory, snapshots, state
reads and allocation latency stay bounded.

Two services run in child processes, each on its own SQLite store (``sqlite_synchronous:
normal``: the disk is not what is measured), driven through `SizingService` directly (the
HTTP layer adds a constant cost per request and nothing that grows with the state):

* ``loaded``: first ``--ids`` (100,000) distinct strategy x symbol ids over time — allocations
  of 10 signals, each a new strategy on a new symbol, and a trade outcome for one pair in
  five — then the probe stream;
* ``empty``: only the probe stream.

The probe stream is the same in both: allocations of one fixed 10-signal batch (3
strategies, 5 symbols). The parent alternates chunks of ``--probe`` probes between the two
children (``--rounds`` rounds), so both are timed on the same machine at the same time, and
reports the p50 / p99 of each and their ratio. The loaded child also reports its RSS as the
ids arrive, its snapshot size, the ``/v1/state`` body size (``read_state``) with and without
``learned=true``, and its throughput.

``--before-src DIR`` also runs the loaded scenario (``--before-ids`` ids, no probes: the
unbounded state makes it slow) against another checkout's ``src``, e.g. the commit before
the retention caps exported with ``git archive``.

    .venv/bin/python bench/bench_learned_state.py [--ids 100000] [--before-src /tmp/base/src]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_correlation_memory import _rss_mb  # (bench/ is on the path: run as a script)

RESULTS = Path(__file__).resolve().parent / "results"
SRC = Path(__file__).resolve().parents[1] / "src"
TIMEOUT_SEC = 600
CAS = {"funding_rate": 0.0001, "oi_change_pct": 0.0, "volume_ratio": 1.0,
       "onchain_whale_pressure": 0.0, "exchange_netflow_zscore": 0.0}


def _signal(strategy: str, symbol: str, i: int) -> dict[str, Any]:
    return {"strategy_id": strategy, "symbol": symbol, "action": "SELL" if i % 7 == 0 else "BUY",
            "confidence": 0.55 + 0.04 * (i % 10), "risk_score": 0.3,
            "regime": ("RANGING", "TRENDING_UP", "HIGH_VOLATILITY")[i % 3],
            "expected_return": 0.02, "predicted_volatility": 0.05}


class Child:
    """One service in this process, driven by commands on stdin (see the module docstring)."""

    def __init__(self, tmp: Path) -> None:
        from himari_l3.bootstrap.service import build_service
        from himari_l3.config.schema import Layer3Config, parse_config

        cfg = parse_config(Layer3Config, {"persistence": {
            "url": f"sqlite:///{tmp / 'l3.sqlite'}", "sqlite_synchronous": "normal"}})
        self.svc = build_service(cfg)
        self.db = tmp / "l3.sqlite"

    async def _allocate(self, sigs: list[dict[str, Any]], mode: str = "incremental") -> None:
        from himari_l3.contracts import CascadeIndicators, TacticalSignal

        syms = sorted({s["symbol"] for s in sigs})
        await self.svc.allocate([TacticalSignal(**s) for s in sigs],
                                {s: CascadeIndicators(**CAS) for s in syms},
                                dict.fromkeys(syms, 100.0), False, mode=mode)

    async def churn(self, ids: int) -> dict[str, Any]:
        """``ids`` new strategy x symbol ids, 10 per allocation; one trade outcome in five.
        The allocations are full batches (each the whole portfolio: the book keeps only its
        10 targets), so the ids reach Phase 1's learners; the book's standing targets are
        filled separately (`fill_book`)."""
        rss: list[tuple[int, float]] = [(0, _rss_mb())]
        t0 = time.perf_counter()
        for k in range(0, ids, 10):
            sigs = [_signal(f"s{k + j}", f"X{k + j}", k + j) for j in range(10)]
            await self._allocate(sigs, mode="full")
            for j in range(0, 10, 5):
                await self.svc.outcome(f"X{k + j}", 0.01 * ((k + j) % 5 - 2), f"s{k + j}",
                                       None, None, None, False)
            if (k + 10) % 10_000 == 0:
                rss.append((k + 10, round(_rss_mb(), 1)))
        seconds = time.perf_counter() - t0
        return {"ids": ids, "seconds": round(seconds, 1),
                "requests_per_sec": round(ids / 10 * 3 / seconds, 1), "rss_mb": rss}

    async def fill_book(self, batches: int = 400) -> dict[str, Any]:
        """``batches`` incremental batches of 10 new pairs (4,000 > book.max_targets): the
        book keeps what its limits and its target cap allow; the next probes run against
        that full book (its standing targets and open intents, which every step walks)."""
        from himari_l3._exceptions import ValidationError

        await self.probe(1)  # the probe batch's own targets first
        accepted = refused = 0
        for k in range(0, batches * 10, 10):
            sigs = [_signal(f"b{k + j}", f"B{k + j}", k + j) for j in range(10)]
            try:
                await self._allocate(sigs)
                accepted += 1
            except ValidationError:
                refused += 1
        pb = self.svc.book.book.portfolios["default"]
        return {"accepted_batches": accepted, "refused_batches": refused,
                "targets": len(pb.targets), "open_intents": len(pb.by_cid),
                "marks": len(pb.marks), "rss_mb": round(_rss_mb(), 1)}

    async def probe(self, n: int) -> list[float]:
        """``n`` allocations of the fixed batch; latency of each (ms), journal commit in."""
        sigs = [_signal(f"p{i % 3}", f"P{i % 5}", i) for i in range(10)]
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await self._allocate(sigs)
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    async def report(self) -> dict[str, Any]:
        from himari_l3.persistence import Store
        from himari_l3.runtime.jsonio import dumps

        if self.svc._snapshot_task is not None:
            await self.svc._snapshot_task
        await self.svc._snapshot("bench")
        store = Store(f"sqlite:///{self.db}")
        snap = store.latest_snapshot()
        store.close()
        state = dumps(await self.svc.read_state(learned=False, digest=False))
        learned = dumps(await self.svc.read_state(learned=True, digest=False))
        return {"rss_mb": round(_rss_mb(), 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                     1),
                "snapshot_bytes": len(snap.state) if snap is not None else None,
                "state_bytes": len(state), "state_learned_bytes": len(learned)}

    async def serve(self, ids: int) -> None:
        await self.svc.start()
        gc.collect()
        gc.freeze()  # what `himari-l3 serve` does after start-up
        print(json.dumps({"ready": True, "rss_mb": round(_rss_mb(), 1)}), flush=True)
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "churn":
                out: Any = await self.churn(ids)
            elif cmd == "fill_book":
                out = await self.fill_book()
            elif cmd == "probe":
                out = await self.probe(int(arg))
            elif cmd == "report":
                out = await self.report()
            else:
                break
            print(json.dumps(out), flush=True)
        await self.svc.stop()


def worst_case() -> dict[str, Any]:
    """The learned state with every bounded structure full at the default caps:
    10,000 Kelly posteriors and last predictions, 1,000 conformal windows of 250 scores,
    2,000 regime states, 10,000 weight-history rows, 120 correlation rows of 512 symbols,
    10,000 RL-vs-baseline outcomes per path and a last allocation of 1,000 signals (built in
    the parent, which holds nothing else: its RSS is the engine's worst case). Its JSON size
    bounds a snapshot (and ``/v1/state?learned=true``)."""
    from himari_l3 import CascadeIndicators, ManualClock, MarketRegime, TacticalSignal
    from himari_l3.phase3 import Layer3Phase3Hybrid
    from himari_l3.runtime.jsonio import dumps

    clock = ManualClock()
    h = Layer3Phase3Hybrid(enable_metrics=False, clock=clock)
    p2, p1 = h.phase2, h.phase2.phase1
    calm = CascadeIndicators(**CAS)
    rng = random.Random(13)  # full-precision returns: the longest JSON numbers
    t0 = time.perf_counter()
    for _ in range(120):  # correlation window: 120 rows x 512 symbols
        clock.advance(1.0)
        p2.update_correlations({f"C{j}": rng.uniform(-0.05, 0.05) for j in range(512)})
    for k in range(1000):  # weight history: 1,000 batches x 10 strategies
        sigs = [TacticalSignal(**_signal(f"W{j}", f"Q{j}", k + j)) for j in range(10)]
        p2.process_multi_strategy_signals(sigs, calm, {f"Q{j}": 100.0 for j in range(10)})
    for _ in range(10_000):  # RL-vs-baseline history (a symbol no strategy holds)
        h.record_outcome("NONE", rng.uniform(-0.05, 0.05), used_rl=True)
        h.record_outcome("NONE", rng.uniform(-0.05, 0.05), used_rl=False)
    for i in range(250):  # 1,000 strategies x 10 symbols: 25 trades per pair
        for s in range(1000):
            p1.update_from_trade_result(f"S{s:04d}", f"Y{s % 200 * 10 + i % 10:04d}",
                                        rng.uniform(-0.05, 0.05))
    for r in range(3):  # 2,000 regime states with full windows, sides diverged
        for y in range(2000):
            p1.observe_regime(f"Y{y:04d}", MarketRegime(("RANGING", "TRENDING_UP",
                                                          "CRISIS")[r]),
                              MarketRegime(("TRENDING_DOWN", "RANGING",
                                            "HIGH_VOLATILITY")[r]))
    sigs = [TacticalSignal(**_signal(f"S{s:04d}", f"Y{s % 200 * 10:04d}", s))
            for s in range(1000)]  # the last allocation: 1,000 signals
    p2.process_multi_strategy_signals(sigs, calm, {x.symbol: 100.0 for x in sigs})
    state = h.export_state()
    sizes = {"kelly": p1.kelly.export_state(), "conformal": p1.conformal.export_state(),
             "regime": p1.regimes.export_state(), "weights": p2.weights.export_state(),
             "correlation": p2.correlations.export_state(),
             "last_allocation": p2.last_allocation_.to_dict()
             if p2.last_allocation_ is not None else None}
    gc.collect()
    return {"seconds": round(time.perf_counter() - t0, 1), "rss_mb": round(_rss_mb(), 1),
            "keys": p1.get_state()["retention"],
            "bytes": {k: len(dumps(v)) for k, v in sizes.items()},
            "export_bytes": len(dumps(state)),
            "snapshot_bytes": len(dumps(state)) + len(dumps(sizes["last_allocation"]))}


def child_main(ids: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(Child(Path(tmp)).serve(ids))


class Proc:
    """A child process and its command channel."""

    def __init__(self, src: Path, ids: int) -> None:
        self.p = subprocess.Popen(
            [sys.executable, __file__, "--child", "--ids", str(ids)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
        self.ready = self._read()

    def _read(self) -> Any:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited ({self.p.wait(10)})")
        return json.loads(line)

    def ask(self, cmd: str) -> Any:
        assert self.p.stdin is not None
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        self.p.wait(60)


def _pct(xs: list[float], q: float) -> float:
    return round(statistics.quantiles(xs, n=100)[int(q) - 1], 3)


def run(ids: int, rounds: int, probe: int, before_src: Path | None,
        before_ids: int) -> dict[str, Any]:
    loaded, empty = Proc(SRC, ids), Proc(SRC, 0)
    try:
        churn = loaded.ask("churn")
        lat: dict[str, list[float]] = {"empty": [], "loaded": [], "empty_2": [],
                                       "loaded_full_book": []}
        for _ in range(rounds):  # interleaved: both children timed under the same load
            lat["empty"] += empty.ask(f"probe {probe}")
            lat["loaded"] += loaded.ask(f"probe {probe}")
        churn["book"] = loaded.ask("fill_book")
        for _ in range(rounds):
            lat["empty_2"] += empty.ask(f"probe {probe}")
            lat["loaded_full_book"] += loaded.ask(f"probe {probe}")
        out: dict[str, Any] = {"after": {"churn": churn, "report": loaded.ask("report"),
                                         "empty_report": empty.ask("report")}}
    finally:
        loaded.close()
        empty.close()
    out["probes"] = {k: {"n": len(v), "p50_ms": _pct(v, 50), "p99_ms": _pct(v, 99)}
                     for k, v in lat.items()}
    out["probes"]["p99_ratio"] = round(out["probes"]["loaded"]["p99_ms"]
                                       / out["probes"]["empty"]["p99_ms"], 2)
    out["probes"]["p50_ratio"] = round(out["probes"]["loaded"]["p50_ms"]
                                       / out["probes"]["empty"]["p50_ms"], 2)
    for q in ("p50", "p99"):
        out["probes"][f"full_book_{q}_ratio"] = round(
            out["probes"]["loaded_full_book"][f"{q}_ms"] / out["probes"]["empty_2"][f"{q}_ms"],
            2)
    out["worst_case"] = worst_case()
    if before_src is not None:
        before = Proc(before_src, before_ids)
        try:
            out["before"] = {"churn": before.ask("churn"), "report": before.ask("report")}
        finally:
            before.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ids", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--probe", type=int, default=300)
    ap.add_argument("--before-src", type=Path, default=None)
    ap.add_argument("--before-ids", type=int, default=20_000)
    args = ap.parse_args()
    if args.child:
        child_main(args.ids)
        return
    out = run(args.ids, args.rounds, args.probe, args.before_src, args.before_ids)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learned_state.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
