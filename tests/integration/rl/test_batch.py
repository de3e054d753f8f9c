"""The batch RL contract end to end: the reference server on 127.0.0.1 advertising its batch
route (or not), the HTTP transport discovering it at start, and every way a batch answer can
fail, judged per signal exactly as per-signal answers are; plus the start-up warm-up against
models that answer, refuse or hang, and lying health answers through httpx.MockTransport."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from conftest import fault_server
from himari_l3._clock import ManualClock
from himari_l3.config.schema import Layer3Config, RLConfig
from himari_l3.contracts import MarketRegime, RLPrediction, TacticalAction, TacticalSignal
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.resilience import CircuitBreaker
from himari_l3.rl import RLFailure, RLPolicy, TransformerRLClient
from himari_l3.rl.http import REPROBE_SEC
from himari_l3.rl.server import BackgroundRLServer, FaultInjector

pytestmark = pytest.mark.integration

Server = tuple[BackgroundRLServer, FaultInjector]


def signal(symbol: str, action: str = "BUY") -> TacticalSignal:
    return TacticalSignal("momentum", symbol, TacticalAction(action), 0.8, 0.3,
                          MarketRegime.TRENDING_UP, timestamp_ns=1, expected_return=0.02,
                          predicted_volatility=0.04)


SIGNALS = [signal("A"), signal("B", "SELL"), signal("C")]


def reasons(results: list[RLPrediction | RLFailure]) -> list[str]:
    return [r.reason if isinstance(r, RLFailure) else "ok" for r in results]


@pytest.fixture(scope="module")
def batch_server() -> Iterator[Server]:
    """The reference server advertising its batch route."""
    with fault_server(1.0) as started:
        yield started


@pytest.fixture(scope="module")
def single_server() -> Iterator[Server]:
    """The reference server without a batch route (a per-signal-only model)."""
    with fault_server(1.0, batch=False) as started:
        yield started


@pytest.fixture
def clock() -> ManualClock:
    """The client's and its breaker's clock (tests advance it, never sleep through it)."""
    return ManualClock()


@pytest.fixture
def fault(batch_server: Server) -> Iterator[FaultInjector]:
    """The batch server's injector, reset before and after."""
    batch_server[1].reset()
    yield batch_server[1]
    batch_server[1].reset()


@pytest.fixture
def client(batch_server: Server, fault: FaultInjector,
           clock: ManualClock) -> Iterator[TransformerRLClient]:
    """A client of the batch server (0.5 s timeout), warmed up at construction."""
    c = TransformerRLClient(f"{batch_server[0].url}/predict", timeout_sec=0.5, clock=clock)
    yield c
    c.close()


def test_the_batch_route_is_discovered_at_start_and_used(
        client: TransformerRLClient, fault: FaultInjector) -> None:
    """Start reads /healthz on ten connections; a decision is then one batch request whose
    answers are the policy's, in order."""
    route = client.http.batch_route
    assert route is not None
    assert (route.url.rsplit("/", 2)[-2:], route.max_signals) == (["predict", "batch"], 256)
    assert fault.health_requests == 10 and len(client.http.clients) == 10
    results = client.predict_many_sync(SIGNALS, {"mid": 1.0}, total_deadline_sec=1.0)
    assert reasons(results) == ["ok"] * 3
    assert (fault.batch_requests, fault.requests, fault.asked) == (1, 0, 3)
    policy = RLPolicy.default()
    for s, r in zip(SIGNALS, results, strict=True):
        assert isinstance(r, RLPrediction)
        assert r.optimal_position_pct == pytest.approx(policy.predict(s)["position_pct"])
    assert fault.health_requests == 10  # no probe on a decision's path


async def test_async_and_single_signal_paths(client: TransformerRLClient,
                                             fault: FaultInjector) -> None:
    """The async API batches too; a lone signal takes the per-signal route."""
    assert reasons(await client.predict_many(SIGNALS, total_deadline_sec=1.0)) == ["ok"] * 3
    assert reasons([await client.predict(signal("D"))]) == ["ok"]
    assert (fault.batch_requests, fault.requests) == (1, 1)


@pytest.mark.parametrize(("mode", "expected"), [
    ("short", ["invalid_response"] * 3),
    ("bad_item", ["invalid_response", "ok", "ok"]),
    ("malformed", ["invalid_response"] * 3),
    ("out_of_range", ["invalid_response"] * 3),
    ("nan", ["invalid_response"] * 3),
    ("http_500", ["http_error"] * 3),
    ("hang", ["timeout"] * 3),
    ("slow", ["slow"] * 3),
])
def test_batch_failures_are_judged_per_signal_like_single_requests(
        client: TransformerRLClient, fault: FaultInjector, clock: ManualClock,
        mode: str, expected: list[str]) -> None:
    """A wrong count, a body that is not JSON, a 500, a hang or a late answer fails every
    signal of the request with the per-signal reason; a bad item fails only its own signal;
    each failure is one breaker failure, as per signal."""
    fault.set(mode)
    fault.on_slow = lambda: clock.advance(1.0)
    start = time.monotonic()
    results = client.predict_many_sync(SIGNALS, total_deadline_sec=0.5)
    assert time.monotonic() - start < 0.5 + 0.9  # a hang ends at the deadline (loose bound)
    assert reasons(results) == expected
    assert fault.batch_requests == 1
    failures = sum(r != "ok" for r in expected)
    assert client.circuit_breaker.get_state()["total_failures"] == failures
    assert client.get_state()["failures_by_reason"] == {expected[0]: failures}


def test_a_per_signal_only_server_gets_one_request_per_signal(single_server: Server,
                                                              clock: ManualClock) -> None:
    """Without an advertisement the client falls back to parallel per-signal requests."""
    srv, fault = single_server
    fault.reset()
    c = TransformerRLClient(f"{srv.url}/predict", timeout_sec=1.0, clock=clock)
    try:
        assert c.http.batch_route is None
        assert reasons(c.predict_many_sync(SIGNALS, total_deadline_sec=1.0)) == ["ok"] * 3
        assert (fault.requests, fault.batch_requests, fault.asked) == (3, 0, 3)
    finally:
        c.close()


def test_a_larger_batch_than_advertised_is_split(clock: ManualClock) -> None:
    """More signals than max_signals go out as several batch requests, answers in order."""
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"capabilities": {"predict_batch": {
                "path": "/predict/batch", "max_signals": 2}}})
        signals = json.loads(request.content)["signals"]
        seen.append(len(signals))
        return httpx.Response(200, json={"predictions": [
            {"position_pct": 0.01 * ord(s["symbol"][0]) / 100, "confidence": 0.9,
             "predicted_return": 0.0, "predicted_volatility": 0.02, "model_version": "m",
             "symbol": s["symbol"]} for s in signals]})

    c = TransformerRLClient("http://rl.test/predict", clock=clock,
                            transport=httpx.MockTransport(handler))
    try:
        many = [signal(x) for x in "ABCDE"]
        results = c.predict_many_sync(many, total_deadline_sec=1.0)
    finally:
        c.close()
    assert sorted(seen) == [1, 2, 2]
    assert [r.optimal_position_pct for r in results if isinstance(r, RLPrediction)] == \
        pytest.approx([0.01 * ord(x) / 100 for x in "ABCDE"])


def _streamed_batch(pad_chunks: int, pulled: list[int],
                    route: str = "/predict/batch") -> httpx.MockTransport:
    """A model advertising ``route`` whose batch answer is three valid predictions then
    ``pad_chunks`` x 64 KiB of JSON whitespace, streamed; ``pulled`` counts bytes read."""
    pred = {"position_pct": 0.1, "confidence": 0.9, "predicted_return": 0.0,
            "predicted_volatility": 0.02, "model_version": "m"}
    head = json.dumps({"predictions": [pred] * 3}).encode()
    pad = b" " * 65_536

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            for part in (head, *([pad] * pad_chunks)):
                pulled[0] += len(part)
                yield part

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"capabilities": {"predict_batch": {
                "path": route, "max_signals": 16}}})
        return httpx.Response(200, stream=Body())

    return httpx.MockTransport(handler)


def test_an_oversized_batch_answer_is_not_read_past_its_limit(clock: ManualClock) -> None:
    """The batch limit is max_response_bytes per signal: 3 x 64 KiB here; 64 MiB streamed
    is `oversize` for every signal after reading at most the limit plus one chunk."""
    pulled = [0]
    c = TransformerRLClient("http://rl.test/predict", clock=clock, timeout_sec=5.0,
                            transport=_streamed_batch(1024, pulled))
    try:
        results = c.predict_many_sync(SIGNALS, total_deadline_sec=5.0)
    finally:
        c.close()
    assert reasons(results) == ["oversize"] * 3
    assert pulled[0] <= 3 * 65_536 + 65_536 + 200
    assert c.circuit_breaker.get_state()["total_failures"] == 3


def test_a_batch_answer_within_its_scaled_limit_is_read(clock: ManualClock) -> None:
    """Two 64 KiB pads after three predictions: over one signal's limit, within three's."""
    pulled = [0]
    c = TransformerRLClient("http://rl.test/predict", clock=clock,
                            transport=_streamed_batch(2, pulled))
    try:
        assert reasons(c.predict_many_sync(SIGNALS, total_deadline_sec=1.0)) == ["ok"] * 3
    finally:
        c.close()


def test_an_advertised_route_that_is_not_served_falls_back_at_once(
        clock: ManualClock) -> None:
    """A lying advertisement (the batch route answers 404): this request is re-sent per
    signal within its deadline, and the route is forgotten for later ones."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "GET":
            return httpx.Response(200, json={"capabilities": {"predict_batch": {
                "path": "/nowhere", "max_signals": 8}}})
        if request.url.path != "/predict":
            return httpx.Response(404)
        return httpx.Response(200, json={"position_pct": 0.1, "confidence": 0.9,
                                         "predicted_return": 0.0, "predicted_volatility": 0.02,
                                         "model_version": "m"})

    c = TransformerRLClient("http://rl.test/predict", clock=clock,
                            transport=httpx.MockTransport(handler))
    try:
        assert c.http.batch_route is not None
        calls.clear()
        assert reasons(c.predict_many_sync(SIGNALS, total_deadline_sec=1.0)) == ["ok"] * 3
        assert c.http.batch_route is None
        assert reasons(c.predict_many_sync(SIGNALS, total_deadline_sec=1.0)) == ["ok"] * 3
    finally:
        c.close()
    assert calls == ["POST /nowhere"] + ["POST /predict"] * 6
    assert c.circuit_breaker.get_state()["total_failures"] == 0


def _health(respond: Callable[[httpx.Request], httpx.Response],
            hosts: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(f"{request.method} {request.url.host}{request.url.path}")
        if request.method == "GET":
            return respond(request)
        return httpx.Response(200, json={"position_pct": 0.1, "confidence": 0.9,
                                         "predicted_return": 0.0, "predicted_volatility": 0.02,
                                         "model_version": "m"})

    return httpx.MockTransport(handler)


class _Endless(httpx.AsyncByteStream):
    """A health answer that never ends (64 KiB of JSON whitespace at a time)."""

    def __init__(self, pulled: list[int]) -> None:
        self.pulled = pulled

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b'{"capabilities": {"predict_batch": {"path": "/b", "max_signals": 8}}'
        for _ in range(1024):
            self.pulled[0] += 65_536
            yield b" " * 65_536


@pytest.mark.parametrize("case", ["elsewhere", "endless", "garbage", "error"])
def test_a_lying_healthz_never_crashes_oversizes_or_redirects(clock: ManualClock,
                                                              case: str) -> None:
    """A health answer pointing at another host, never ending, not JSON or failing leaves
    the client asking per signal: nothing crashes, at most 16 KiB (+ a chunk) is read per
    probe, and no request leaves the model's host."""
    hosts: list[str] = []
    pulled = [0]
    answers: dict[str, Callable[[httpx.Request], httpx.Response]] = {
        "elsewhere": lambda r: httpx.Response(200, json={"capabilities": {"predict_batch": {
            "path": "http://evil.test/steal", "max_signals": 8}}}),
        "endless": lambda r: httpx.Response(200, stream=_Endless(pulled)),
        "garbage": lambda r: httpx.Response(200, content=b"\x00\xff" * 100),
        "error": lambda r: httpx.Response(500, content=b"{}"),
    }
    c = TransformerRLClient("http://rl.test/predict", clock=clock,
                            transport=_health(answers[case], hosts))
    try:
        assert c.http.batch_route is None
        assert reasons(c.predict_many_sync(SIGNALS, total_deadline_sec=1.0)) == ["ok"] * 3
    finally:
        c.close()
    assert {h.split(" ")[1].split("/")[0] for h in hosts} == {"rl.test"}
    assert pulled[0] <= 10 * (16_384 + 65_536)


def test_a_model_that_advertises_later_is_found_by_a_background_probe(
        clock: ManualClock) -> None:
    """No advertisement at start; REPROBE_SEC later (on the client's clock) a decision
    triggers one background probe (never waited for), and later decisions batch."""
    advertise = [False]
    hosts: list[str] = []

    def health(request: httpx.Request) -> httpx.Response:
        caps = {"predict_batch": {"path": "/predict/batch", "max_signals": 8}}
        return httpx.Response(200, json={"capabilities": caps if advertise[0] else {}})

    c = TransformerRLClient("http://rl.test/predict", clock=clock,
                            transport=_health(health, hosts))
    try:
        assert c.http.batch_route is None
        advertise[0] = True
        c.predict_many_sync(SIGNALS, total_deadline_sec=1.0)
        assert c.http.batch_route is None  # too soon: no probe
        assert hosts.count("GET rl.test/healthz") == 10
        clock.advance(REPROBE_SEC)
        c.predict_many_sync(SIGNALS, total_deadline_sec=1.0)
        for _ in range(500):  # the probe's own I/O, bounded; no clock time needs to pass
            if c.http.batch_route is not None:
                break
            time.sleep(0.01)
        assert c.http.batch_route is not None
        assert hosts.count("GET rl.test/healthz") == 11
    finally:
        c.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A model that accepts connections and never answers (hung)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/predict"


def test_start_is_bounded_when_the_model_hangs(silent_url: str) -> None:
    """A hung model holds start-up for about rl.warmup_timeout_sec (read from the config),
    then decisions time out at their deadline, per signal."""
    cfg = Layer3Config(rl=RLConfig(enabled=True, endpoint=silent_url, timeout_sec=0.2,
                                   warmup_timeout_sec=0.3))
    start = time.monotonic()
    h = Layer3Phase3Hybrid(config=cfg, enable_metrics=False,
                           circuit_breaker=CircuitBreaker("rl", enabled=False))
    try:
        assert time.monotonic() - start < 0.3 + 1.5  # loose: a shared machine
        client = h.rl_client
        assert isinstance(client, TransformerRLClient)
        assert client.http.batch_route is None and len(client.http.clients) == 10
        results = client.predict_many_sync(SIGNALS, total_deadline_sec=0.2)
        assert reasons(results) == ["timeout"] * 3
    finally:
        h.stop()


def test_start_against_a_refusing_model() -> None:
    """A refused warm-up is no error: the client starts, asks per signal, and each signal
    fails connection_error."""
    c = TransformerRLClient(f"http://127.0.0.1:{_closed_port()}/predict", timeout_sec=1.0,
                            clock=ManualClock())
    try:
        assert c.http.batch_route is None
        assert reasons(c.predict_many_sync(SIGNALS, total_deadline_sec=1.0)) == \
            ["connection_error"] * 3
    finally:
        c.close()


def test_no_tls_context_is_built_for_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """http:// builds no certificate-verifying context; https:// keeps full verification
    (one context, shared by the pooled clients)."""
    loads: list[str] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append("load")
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    plain = TransformerRLClient(f"http://127.0.0.1:{_closed_port()}/predict",
                                warmup_timeout_sec=0.5)
    plain.close()
    assert loads == []
    secure = TransformerRLClient(f"https://127.0.0.1:{_closed_port()}/predict",
                                 warmup_timeout_sec=0.5)
    try:
        assert loads == ["load"]
        assert len(secure.http.clients) == 10
    finally:
        secure.close()


async def test_the_batch_route_rejects_bad_requests_with_422(batch_server: Server) -> None:
    """A bad signal, an empty or oversized batch gets a 422 naming the field, never a 500."""
    good = json.loads(json.dumps(signal("A").to_dict()))
    cases = {
        "confidence": [good, {**good, "confidence": 1.7}],
        "action": [good, {**good, "action": "JUMP"}],
        "signals": [],
    }
    async with httpx.AsyncClient(base_url=batch_server[0].url) as http:
        for field, signals in cases.items():
            resp = await http.post("/predict/batch", json={"signals": signals})
            assert resp.status_code == 422, field
            locs = [[str(x) for x in d["loc"]] for d in resp.json()["detail"]]
            assert any(field in "/".join(loc) for loc in locs), (field, locs)
        resp = await http.post("/predict/batch", json={"signals": [good] * 257})
        assert resp.status_code == 422
        resp = await http.post("/predict/batch", content=b"{nope",
                               headers={"content-type": "application/json"})
        assert resp.status_code == 422


def test_clients_cut_short_by_a_deadline_are_replaced(single_server: Server,
                                                      clock: ManualClock) -> None:
    """After a decision whose ten requests all hit the deadline, the next decision is
    answered in full: a client whose request was cancelled is closed and replaced, never
    left waiting on a connection its pool still believes busy (before: 6 of 10 clients
    timed out on every later request)."""
    srv, fault = single_server
    fault.reset()
    c = TransformerRLClient(f"{srv.url}/predict", timeout_sec=1.0, clock=clock,
                            circuit_breaker=CircuitBreaker("rl", enabled=False, clock=clock))
    many = [signal(f"S{i}") for i in range(10)]
    try:
        fault.set("hang")
        assert reasons(c.predict_many_sync(many, total_deadline_sec=0.05)) == ["timeout"] * 10
        fault.set("ok")
        for _ in range(3):
            assert reasons(c.predict_many_sync(many, total_deadline_sec=0.9)) == ["ok"] * 10
        assert len(c.http.clients) == 10
    finally:
        c.close()
        fault.reset()
