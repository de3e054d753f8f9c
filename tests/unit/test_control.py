"""Unit tests of `himari-l3 halt|resume` against a mock transport: the request it sends,
the token from the environment (never printed), exit statuses and messages."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest

from himari_l3.control import control_main

TOKEN = "op-token-0123456789abcdef"
URL = "http://127.0.0.1:8080"


class Service:
    """A mock service recording each request and answering with ``status``."""

    def __init__(self, status: int = 200, detail: Any = None) -> None:
        self.status = status
        self.detail = detail
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"detail": self.detail})
        body = json.loads(request.content)
        return httpx.Response(200, json={"state": body["state"], "reason": "manual",
                                         "since": "2026-01-01T00:00:00.000+00:00",
                                         "symbols": {}})


def run(command: str, argv: list[str], service: Service,
        env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the command; returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = control_main(command, argv, transport=httpx.MockTransport(service),
                        env={"HIMARI_L3_AUTH_TOKEN": TOKEN} if env is None else env,
                        out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_halt_posts_the_command_with_the_token_and_prints_the_state() -> None:
    """halt → POST /v1/trading-state {HALTED, reason}; bearer token sent, never printed."""
    svc = Service()
    code, out, err = run("halt", ["--url", URL, "--reason", "exchange incident"], svc)
    assert code == 0 and err == ""
    (req,) = svc.requests
    assert req.method == "POST" and str(req.url) == URL + "/v1/trading-state"
    assert json.loads(req.content) == {"state": "HALTED", "reason": "exchange incident"}
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(out)["state"] == "HALTED" and TOKEN not in out + err


def test_halt_reducing_and_symbol_and_resume() -> None:
    """--reducing sends REDUCING; --symbol is passed; resume sends ACTIVE."""
    svc = Service()
    assert run("halt", ["--url", URL, "--symbol", "ETH-USD", "--reducing", "--reason",
                        "wind down"], svc)[0] == 0
    assert run("resume", ["--url", URL, "--symbol", "ETH-USD", "--reason", "ok"], svc)[0] == 0
    bodies = [json.loads(r.content) for r in svc.requests]
    assert bodies == [{"state": "REDUCING", "reason": "wind down", "symbol": "ETH-USD"},
                      {"state": "ACTIVE", "reason": "ok", "symbol": "ETH-USD"}]


def test_no_token_in_the_environment_sends_no_header() -> None:
    """Without HIMARI_L3_AUTH_TOKEN no Authorization header is sent."""
    svc = Service()
    run("resume", ["--url", URL, "--reason", "x"], svc, env={})
    assert "authorization" not in svc.requests[0].headers


def test_refusals_exit_1_with_the_detail_and_a_hint_for_401() -> None:
    """401 → exit 1 naming the variable (not its value); 422 → exit 1 with the detail."""
    code, out, err = run("halt", ["--url", URL, "--reason", "x"],
                         Service(401, "missing or wrong bearer token"))
    assert code == 1 and out == "" and "HTTP 401" in err and "HIMARI_L3_AUTH_TOKEN" in err
    assert TOKEN not in err
    code, _, err = run("halt", ["--url", URL, "--reason", "x"],
                       Service(422, [{"loc": ["body", "reason"], "msg": "too long"}]))
    assert code == 1 and "reason" in err


def test_unreachable_service_exits_1() -> None:
    """A connection error is exit 1 with the URL in the message."""
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    err = io.StringIO()
    code = control_main("halt", ["--url", URL, "--reason", "x"],
                        transport=httpx.MockTransport(refuse), env={}, out=io.StringIO(),
                        err=err)
    assert code == 1 and URL in err.getvalue()


def test_usage_errors_exit_2() -> None:
    """Missing --reason / --url, or an empty reason: exit status 2."""
    svc = Service()
    with pytest.raises(SystemExit) as exc:
        run("halt", ["--url", URL], svc)
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        run("resume", ["--reason", "x"], svc)
    assert run("halt", ["--url", URL, "--reason", "  "], svc)[0] == 2
    assert svc.requests == []


def test_portfolio_is_passed_when_given() -> None:
    """--portfolio names the portfolio in the body (absent: the service's default)."""
    svc = Service()
    code, _, _ = run("resume", ["--url", URL, "--portfolio", "fund-b", "--symbol", "ETH-USD",
                                "--reason", "ok"], svc)
    assert code == 0
    assert json.loads(svc.requests[0].content) == {
        "state": "ACTIVE", "reason": "ok", "symbol": "ETH-USD", "portfolio": "fund-b"}
