"""The RL HTTP client against a real uvicorn server on 127.0.0.1 (the reference server with
switchable faults), plus contract edge cases through httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import fault_server
from himari_l3._clock import ManualClock
from himari_l3._exceptions import ConfigError
from himari_l3.contracts import MarketRegime, RLPrediction, TacticalAction, TacticalSignal
from himari_l3.resilience import CircuitBreaker, CircuitState
from himari_l3.rl import RLFailure, RLPolicy, TransformerRLClient, parse_prediction
from himari_l3.rl.server import BackgroundRLServer, FaultInjector

pytestmark = pytest.mark.integration


def signal(symbol: str = "BTC-USD", action: str = "BUY") -> TacticalSignal:
    return TacticalSignal("momentum", symbol, TacticalAction(action), 0.8, 0.3,
                          MarketRegime.TRENDING_UP,
                          timestamp_ns=1, expected_return=0.02, predicted_volatility=0.04)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[BackgroundRLServer, FaultInjector]]:
    """One reference server for the module; tests switch its fault mode."""
    with fault_server(1.0) as started:
        yield started


@pytest.fixture
def fault(server: tuple[BackgroundRLServer, FaultInjector]) -> FaultInjector:
    """The server's fault injector, reset to "ok" with a zero request count."""
    server[1].reset()
    return server[1]


@pytest.fixture
def clock() -> ManualClock:
    """Test clock for the client and its breaker (tests advance it, never sleep)."""
    return ManualClock()


@pytest.fixture
def client(server: tuple[BackgroundRLServer, FaultInjector],
           clock: ManualClock) -> Iterator[TransformerRLClient]:
    """A client of the reference server with a 0.3 s timeout and the default breaker."""
    c = TransformerRLClient(f"{server[0].url}/predict", timeout_sec=0.3, clock=clock)
    yield c
    c.close()


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reasons(results: list[RLPrediction | RLFailure]) -> list[str]:
    return [r.reason if isinstance(r, RLFailure) else "ok" for r in results]


async def test_ok_prediction(client: TransformerRLClient, fault: FaultInjector) -> None:
    """A healthy server gives a validated prediction from the reference policy."""
    r = await client.predict(signal(), {"mid": 50_000.0})
    assert isinstance(r, RLPrediction)
    assert r.model_version == "ref-linear-tanh-1"
    assert 0 < r.optimal_position_pct <= 0.25
    assert fault.requests == 1
    state = client.get_state()
    assert state["successful_predictions"] == 1
    assert state["circuit_breaker"]["state"] == "closed"


async def test_one_pooled_client_across_calls(client: TransformerRLClient,
                                              fault: FaultInjector) -> None:
    """predict, predict_many and predict_sync all reuse the clients made at start."""
    made = client.http.clients
    assert len(made) == 10
    assert client.http_client is made[0]
    await client.predict(signal())
    await client.predict_many([signal("A"), signal("B")], total_deadline_sec=1.0)
    client.predict_sync(signal("C"))
    assert client.http.clients == made
    assert (fault.requests, fault.batch_requests, fault.asked) == (2, 1, 4)


@pytest.mark.parametrize(("mode", "reason"), [
    ("http_500", "http_error"),
    ("malformed", "invalid_response"),
    ("out_of_range", "invalid_response"),
    ("nan", "invalid_response"),
    ("hang", "timeout"),
    ("slow", "slow"),
])
async def test_fault_opens_breaker_then_rejects_locally(
    client: TransformerRLClient, fault: FaultInjector, clock: ManualClock,
    mode: str, reason: str,
) -> None:
    """Five faults of one kind open the breaker; later calls never reach the server."""
    fault.set(mode)
    fault.on_slow = lambda: clock.advance(1.0)  # the answer "arrives" after the deadline
    results = await asyncio.gather(*(client.predict(signal(f"S{i}")) for i in range(5)))
    assert reasons(results) == [reason] * 5
    assert client.circuit_breaker.state is CircuitState.OPEN
    later = [await client.predict(signal()) for _ in range(3)]
    assert reasons(later) == ["circuit_open"] * 3
    assert fault.requests == 5
    state = client.get_state()
    assert state["failures_by_reason"] == {reason: 5, "circuit_open": 3}
    assert state["circuit_breaker"]["total_rejections"] == 3


async def test_connection_refused(clock: ManualClock) -> None:
    """A closed port is a connection_error and opens the breaker after five."""
    c = TransformerRLClient(f"http://127.0.0.1:{free_closed_port()}/predict", timeout_sec=1.0,
                            clock=clock)
    try:
        results = [await c.predict(signal()) for _ in range(6)]
    finally:
        await c.aclose()
    assert reasons(results) == ["connection_error"] * 5 + ["circuit_open"]


async def test_probe_success_closes(client: TransformerRLClient, fault: FaultInjector,
                                    clock: ManualClock) -> None:
    """After the timeout exactly one of many concurrent calls reaches the server."""
    fault.set("http_500")
    for _ in range(5):
        await client.predict(signal())
    fault.set("ok")
    clock.advance(29.9)
    assert reasons([await client.predict(signal())]) == ["circuit_open"]
    clock.advance(0.1)
    results = await client.predict_many([signal(f"S{i}") for i in range(10)],
                                        total_deadline_sec=1.0)
    assert sorted(reasons(results)) == ["circuit_open"] * 9 + ["ok"]
    assert fault.requests == 1
    assert client.circuit_breaker.state is CircuitState.CLOSED
    assert client.circuit_breaker.get_state()["current_timeout_sec"] == 30.0


async def test_probe_failure_reopens_with_doubled_timeout(
    client: TransformerRLClient, fault: FaultInjector, clock: ManualClock,
) -> None:
    """A failed probe re-opens the breaker for twice as long."""
    fault.set("http_500")
    for _ in range(5):
        await client.predict(signal())
    clock.advance(30.0)
    assert reasons([await client.predict(signal())]) == ["http_error"]
    breaker = client.circuit_breaker.get_state()
    assert (breaker["state"], breaker["current_timeout_sec"]) == ("open", 60.0)
    clock.advance(30.0)
    assert reasons([await client.predict(signal())]) == ["circuit_open"]
    clock.advance(30.0)
    fault.set("ok")
    assert reasons([await client.predict(signal())]) == ["ok"]
    assert fault.requests == 1


async def test_total_deadline_cancels_hanging_calls(client: TransformerRLClient,
                                                    fault: FaultInjector) -> None:
    """predict_many returns at the total deadline; unfinished calls are timeout failures."""
    fault.set("hang")
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = await client.predict_many([signal("A"), signal("B"), signal("C")],
                                        total_deadline_sec=0.1)
    assert loop.time() - start < 0.9
    assert reasons(results) == ["timeout"] * 3
    assert client.circuit_breaker.get_state()["total_failures"] == 3


async def test_predict_sync_inside_running_loop(client: TransformerRLClient,
                                                fault: FaultInjector) -> None:
    """The sync wrapper works when called from a coroutine (a thread running a loop)."""
    asyncio.get_running_loop()  # we are inside pytest-asyncio's loop
    r = client.predict_sync(signal())
    many = client.predict_many_sync([signal("A"), signal("B", "SELL")], total_deadline_sec=1.0)
    assert isinstance(r, RLPrediction)
    assert reasons(many) == ["ok", "ok"]
    assert isinstance(many[1], RLPrediction)
    assert many[1].optimal_position_pct < 0


def test_predict_sync_from_thread_running_a_loop(client: TransformerRLClient,
                                                 fault: FaultInjector) -> None:
    """predict_sync also works from another thread whose own event loop is running."""
    out: list[RLPrediction | RLFailure] = []

    async def inside() -> None:
        out.append(client.predict_sync(signal()))

    t = threading.Thread(target=lambda: asyncio.run(inside()))
    t.start()
    t.join(10.0)
    assert reasons(out) == ["ok"]
    assert reasons([client.predict_sync(signal())]) == ["ok"]  # and with no loop at all


async def test_reference_server_rejects_bad_requests_with_422(
    server: tuple[BackgroundRLServer, FaultInjector], fault: FaultInjector,
) -> None:
    """Malformed requests get a 422 naming the field, never a 500."""
    good = json.loads(json.dumps(signal().to_dict()))
    cases = {
        "confidence": {**good, "confidence": 1.7},
        "action": {**good, "action": "JUMP"},
        "regime": {**good, "regime": "SIDEWAYS_UP"},
        "symbol": {k: v for k, v in good.items() if k != "symbol"},
    }
    async with httpx.AsyncClient(base_url=server[0].url) as http:
        for field, body in cases.items():
            resp = await http.post("/predict", json=body)
            assert resp.status_code == 422, field
            assert field in {str(x) for d in resp.json()["detail"] for x in d["loc"]}
        nan = json.dumps(good).replace('"confidence": 0.8', '"confidence": NaN')
        resp = await http.post("/predict", content=nan,
                               headers={"content-type": "application/json"})
        assert resp.status_code == 422
        resp = await http.post("/predict", content=b"{nope",
                               headers={"content-type": "application/json"})
        assert resp.status_code == 422
        health = (await http.get("/healthz")).json()
    assert health["model_version"] == "ref-linear-tanh-1"


def posts_only(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    """A mock model whose health route is absent (404: per-signal requests only) and whose
    predict route is ``handler``."""
    return httpx.MockTransport(
        lambda r: httpx.Response(404) if r.method == "GET" else handler(r))


def contract_body(**overrides: object) -> bytes:
    body: dict[str, object] = {"position_pct": 0.1, "confidence": 0.9, "predicted_return": 0.01,
                               "predicted_volatility": 0.03, "model_version": "m1"}
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


@pytest.mark.parametrize(("status", "content", "reason"), [
    (200, contract_body(), "ok"),
    (200, contract_body(position_pct="0.1"), "invalid_response"),
    (200, contract_body(confidence=True), "invalid_response"),
    (200, contract_body(predicted_volatility=...), "invalid_response"),
    (200, contract_body(model_version=""), "invalid_response"),
    (200, contract_body(predicted_return=1.5), "invalid_response"),
    (200, contract_body().replace(b"0.03", b"Infinity"), "invalid_response"),
    (200, b"[0.1, 0.9]", "invalid_response"),
    (200, b"<html>busy</html>", "invalid_response"),
    (404, contract_body(), "http_error"),
    (503, contract_body(), "http_error"),
    (200, contract_body(confidence=0.2), "low_confidence"),
])
async def test_response_contract_via_mock_transport(status: int, content: bytes,
                                                    reason: str) -> None:
    """Every way a response can break the contract is a failure with the right reason."""
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(status, content=content)

    breaker = CircuitBreaker(clock=ManualClock())
    c = TransformerRLClient("http://rl.test/predict", min_confidence=0.5,
                            circuit_breaker=breaker, transport=posts_only(handler))
    try:
        r = await c.predict(signal(), {"mid": 1.0})
    finally:
        await c.aclose()
    assert reasons([r]) == [reason]
    assert set(seen[0]) == {"strategy_id", "symbol", "action", "confidence", "risk_score",
                            "regime", "timestamp_ns", "expected_return", "predicted_volatility",
                            "signal_strength", "sentiment_score", "sentiment_confidence",
                            "market_data"}
    breaker_failures = breaker.get_state()["total_failures"]
    assert breaker_failures == (0 if reason in ("ok", "low_confidence") else 1)


async def test_no_budget_and_empty_batch_make_no_request() -> None:
    """A zero deadline fails fast without blaming the endpoint; an empty batch is empty."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=contract_body())

    c = TransformerRLClient("http://rl.test/predict", clock=ManualClock(),
                            transport=posts_only(handler))
    try:
        r = await c.predict(signal(), deadline_sec=0.0)
        assert await c.predict_many([], total_deadline_sec=0.1) == []
    finally:
        await c.aclose()
    assert reasons([r]) == ["timeout"]
    assert calls == []
    assert c.circuit_breaker.get_state()["total_failures"] == 0
    assert c.get_state()["failures_by_reason"] == {"timeout": 1}


def test_policy_outputs_respect_the_contract() -> None:
    """For any valid signal the reference policy's answer is a valid RLPrediction."""
    policy = RLPolicy.default()
    rng = random.Random(11)
    for _ in range(500):
        action = rng.choice(list(TacticalAction))
        sig = TacticalSignal(
            "s", "X", action, rng.random(), rng.random(), rng.choice(list(MarketRegime)),
            timestamp_ns=1, expected_return=rng.uniform(-1, 1),
            predicted_volatility=rng.choice([None, rng.uniform(1e-6, 5.0)]),
            signal_strength=rng.random(), sentiment_score=rng.random(),
            sentiment_confidence=rng.random())
        answer = policy.predict(sig)
        pred = parse_prediction(json.dumps(answer).encode(), 0.0, 1)
        assert abs(pred.optimal_position_pct) <= policy.max_position
        assert pred.optimal_position_pct * action.direction >= 0  # never reverses Layer 2
        if action is TacticalAction.HOLD:
            assert pred.optimal_position_pct == 0.0


def test_policy_file_round_trip_and_validation(tmp_path: Path) -> None:
    """save/load round-trips; a bad model file raises ConfigError naming the key."""
    policy = RLPolicy.default()
    path = tmp_path / "model.json"
    policy.save(path)
    assert RLPolicy.load(path) == policy
    data = json.loads(path.read_text())
    for key, value, match in (("max_position", 2.0, "max_position"),
                              ("weights", {"confidence": 1.0}, "weights"),
                              ("surprise", 1, "surprise"),
                              ("bias", float("nan"), "bias")):
        path.write_text(json.dumps({**data, key: value}))
        with pytest.raises(ConfigError, match=match):
            RLPolicy.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        RLPolicy.load(tmp_path / "missing.json")



def _streamed(head: bytes, chunks: int, pulled: list[int],
              declare: bool = False) -> httpx.MockTransport:
    """A model whose answer is ``head`` then ``chunks`` x 64 KiB of JSON whitespace, streamed;
    ``pulled`` counts the bytes the client actually read (``declare``: send the length)."""
    pad = b" " * 65_536

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            for part in (head, *([pad] * chunks)):
                pulled[0] += len(part)
                yield part

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-length": str(len(head) + chunks * len(pad))} if declare else {}
        return httpx.Response(200, headers=headers, stream=Body())

    return posts_only(handler)


@pytest.mark.parametrize("declare", [False, True])
async def test_an_oversized_answer_is_not_read_past_the_limit(declare: bool) -> None:
    """A valid prediction followed by 64 MiB of whitespace (still valid JSON), streamed with
    or without a Content-Length: the failure `oversize` after reading at most the limit plus
    one chunk; before, the whole body was read and accepted (1.34 GB for one decision)."""
    pulled = [0]
    breaker = CircuitBreaker(clock=ManualClock())
    c = TransformerRLClient("http://rl.test/predict", circuit_breaker=breaker,
                            transport=_streamed(contract_body(), 1024, pulled, declare),
                            max_response_bytes=4096, timeout_sec=5.0)
    try:
        r = await c.predict(signal())
    finally:
        await c.aclose()
    assert reasons([r]) == ["oversize"]
    assert c.get_state()["failures_by_reason"] == {"oversize": 1}
    assert pulled[0] <= 4096 + 65_536
    assert breaker.get_state()["total_failures"] == 1


async def test_an_answer_within_the_limit_is_read_whole() -> None:
    """A padded but valid answer under max_response_bytes is a prediction."""
    pulled = [0]
    c = TransformerRLClient("http://rl.test/predict", clock=ManualClock(),
                            transport=_streamed(contract_body() + b" " * 500, 0, pulled),
                            max_response_bytes=1024)
    try:
        r = await c.predict(signal())
    finally:
        await c.aclose()
    assert isinstance(r, RLPrediction)
