"""Load benchmark of ``POST /v1/allocate`` (10 signals) against a real server on loopback.

Starts ``python -m himari_l3.service.main`` (uvicorn, 127.0.0.1, SQLite store in a temp dir,
default config otherwise), sends requests at a fixed rate with an async httpx load generator
(open loop: each request is sent on its schedule whatever the previous ones do; hard cap on
the count) over a pool of keep-alive HTTP/1.1 connections written with asyncio streams (httpx
itself cost ~6 ms of CPU per request here, more than the server, and became the bottleneck
on this 2-CPU machine), and records latency percentiles, errors, achieved rate and the
server's resident memory (VmRSS) at start, middle and end. Writes bench/results/service.json.

    python bench/bench_service.py --duration 30 --rate 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results" / "service.json"
SYMS = ["BTC-USD", "ETH-USD", "SOL-USD", "BNB-USD", "XRP-USD"]
CAS = {"funding_rate": 0.0001, "oi_change_pct": 0.0, "volume_ratio": 1.0,
       "onchain_whale_pressure": 0.0, "exchange_netflow_zscore": 0.0}


def body(i: int) -> dict[str, Any]:
    """Ten signals over five symbols and three strategies, varying per request."""
    sigs = [{"strategy_id": f"s{j % 3}", "symbol": SYMS[j % 5],
             "action": "SELL" if (i + j) % 7 == 0 else "BUY",
             "confidence": 0.5 + 0.04 * ((i + j) % 10), "risk_score": 0.3,
             "regime": "RANGING", "expected_return": 0.02, "predicted_volatility": 0.05}
            for j in range(10)]
    return {"signals": sigs, "cascade": {s: CAS for s in SYMS},
            "prices": {s: 100.0 * (k + 1) for k, s in enumerate(SYMS)}}


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in kB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def cpu_sec(pid: int) -> float:
    """User + system CPU seconds used by ``pid`` so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def server_env(src: Path | None) -> dict[str, str]:
    """The server's environment: ours without a token, ``src`` first on its path if given."""
    env = {k: v for k, v in os.environ.items() if k != "HIMARI_L3_AUTH_TOKEN"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


class _Pool:
    """Keep-alive HTTP/1.1 connections to 127.0.0.1:port (one request at a time each)."""

    # uvicorn closes a keep-alive connection after 5 s idle; a client must not reuse one
    # that old (the server may have closed it before the request arrives).
    MAX_IDLE_SEC = 2.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    async def post(self, path: str, payload: bytes, timeout: float = 5.0) -> int:
        now = time.monotonic()
        while self.idle and now - self.idle[-1][2] > self.MAX_IDLE_SEC:
            self.idle.pop()[1].close()
        if self.idle:
            reader, writer, _ = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened += 1
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        writer.write(head.encode() + payload)
        async with asyncio.timeout(timeout):
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header.split(b" ", 2)[1])
            length = 0
            for line in header.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
        self.idle.append((reader, writer, time.monotonic()))
        return status

    async def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()


async def _load(port: int, pid: int, duration: float, rate: float, cap: int,
                warmup: int) -> dict[str, Any]:
    path = "/v1/allocate"
    client = _Pool(port)
    try:
        for i in range(warmup):
            status = await client.post(path, json.dumps(body(i)).encode())
            if status != 200:
                raise RuntimeError(f"warm-up request answered {status}")
        n = min(cap, int(duration * rate))
        payloads = [json.dumps(body(i)).encode() for i in range(n)]
        lat: list[float] = []
        errors: dict[str, int] = {}
        rss = {"start": rss_kb(pid)}

        async def one(k: int) -> None:
            t0 = time.perf_counter()
            try:
                status = await client.post(path, payloads[k])
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                return
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
                return
            lat.append(time.perf_counter() - t0)

        tasks = []
        cpu0, own0 = cpu_sec(pid), time.process_time()
        start = time.perf_counter()
        for k in range(n):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(k)))
            if k == n // 2:
                rss["middle"] = rss_kb(pid)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        rss["end"] = rss_kb(pid)
        cpu = {"server_cpu_ms_per_request": round((cpu_sec(pid) - cpu0) / n * 1e3, 3),
               "loadgen_cpu_ms_per_request": round((time.process_time() - own0) / n * 1e3, 3),
               "connections_opened": client.opened}
    finally:
        await client.close()
    ms = [x * 1e3 for x in lat]
    return {"requests": n, "ok": len(lat), "errors": errors, "elapsed_sec": round(elapsed, 3),
            "achieved_rps": round(len(lat) / elapsed, 1),
            "latency_ms": {"p50": round(_percentile(ms, 0.50), 3),
                           "p90": round(_percentile(ms, 0.90), 3),
                           "p99": round(_percentile(ms, 0.99), 3),
                           "max": round(max(ms), 3) if ms else None},
            "rss_kb": rss, **cpu}


def run(duration_sec: float = 30.0, rate: float = 300.0, *, max_requests: int = 100_000,
        warmup: int = 300, snapshot_every: int | None = None, sqlite_synchronous: str = "full",
        write: bool = True, src: Path | None = None) -> dict[str, Any]:
    """Start a server, drive it, stop it (SIGTERM); returns (and writes) the results.

    ``snapshot_every``: ``persistence.snapshot_every_decisions`` of the server (None: the
    default config's, 1,000 since issue #14; 100 before). ``src``: a ``src/`` tree whose
    ``himari_l3`` the server runs instead of the installed one (``bench/compare_service.py``:
    another commit's)."""
    with tempfile.TemporaryDirectory(prefix="himari-bench-") as tmp:
        cfg = Path(tmp) / "layer3.yaml"
        every = ("" if snapshot_every is None
                 else f"  snapshot_every_decisions: {snapshot_every}\n")
        cfg.write_text(f"persistence:\n  url: 'sqlite:///{Path(tmp) / 'bench.sqlite'}'\n"
                       f"{every}  sqlite_synchronous: {sqlite_synchronous}\n")
        port = _free_port()
        log = Path(tmp) / "server.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "himari_l3.service.main", "--config", str(cfg),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
            env=server_env(src))
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"server did not start:\n{log.read_text()}")
                time.sleep(0.05)
            res = asyncio.run(_load(port, proc.pid, duration_sec, rate, max_requests,
                                    warmup))
            # Generous: a server that fell behind still works off its backlog first.
            state = httpx.get(f"http://127.0.0.1:{port}/v1/state", timeout=120).json()[
                "service"]
        finally:
            proc.terminate()
            proc.wait(30)
    res.update({"target_rps": rate, "duration_sec": duration_sec, "signals_per_request": 10,
                "snapshot_every_decisions": ("config default" if snapshot_every is None
                                             else snapshot_every),
                "journal_seq_at_end": state["journal_seq"],
                "last_snapshot_seq": state["last_snapshot_seq"],
                "store": f"sqlite (WAL, synchronous={sqlite_synchronous.upper()})",
                "python": sys.version.split()[0], "cpus": os.cpu_count()})
    if write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--snapshot-every", type=int, default=None,
                    help="persistence.snapshot_every_decisions (default: the config's)")
    ap.add_argument("--sqlite-synchronous", choices=("full", "normal"), default="full")
    a = ap.parse_args()
    print(json.dumps(run(a.duration, a.rate, max_requests=a.max_requests,
                         snapshot_every=a.snapshot_every,
                         sqlite_synchronous=a.sqlite_synchronous), indent=2))
