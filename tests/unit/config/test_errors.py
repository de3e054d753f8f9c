"""Every config error is reported at once (check-config lists them all, with key paths), and
``rl.endpoint`` must be an http(s) URL with a host and a valid port when the config loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from himari_l3 import ConfigError
from himari_l3.config.loader import AUTH_TOKEN_ENV, check_config_main, load_config_bytes
from himari_l3.config.schema import Layer3Config, RLConfig, parse_config

THREE_ERRORS = b"""\
sizing:
  kelly:
    fraction: 1.7
    fractoin: 0.2
rl:
  max_rl_weight: 2
"""


def test_config_error_carries_every_message() -> None:
    """parse_config reports all errors, each with its key path, in the order of the file."""
    with pytest.raises(ConfigError) as info:
        load_config_bytes(THREE_ERRORS, "c.yaml", {})
    errors = info.value.errors
    assert len(errors) == 3
    assert errors[0].startswith("c.yaml: sizing.kelly.fraction: Input should be less than or "
                                "equal to 1 (value 1.7)")
    assert errors[1] == "c.yaml: sizing.kelly.fractoin: unknown key (value 0.2)"
    assert errors[2].startswith("c.yaml: rl.max_rl_weight: Input should be less than or equal")
    assert str(info.value) == "\n".join(errors)


def test_single_error_message_is_unchanged() -> None:
    """One error: the message is that error (as before), and errors has it alone."""
    with pytest.raises(ConfigError) as info:
        parse_config(Layer3Config, {"rl": {"max_rl_weight": 2}})
    assert info.value.errors == (str(info.value),)
    assert str(info.value).startswith("rl.max_rl_weight: Input should be less than")


def test_check_config_lists_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """check-config prints one ERROR line per problem and exits 2."""
    monkeypatch.delenv(AUTH_TOKEN_ENV, raising=False)
    f = tmp_path / "bad.yaml"
    f.write_bytes(THREE_ERRORS)
    assert check_config_main([str(f)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "sizing.kelly.fraction", "sizing.kelly.fractoin", "rl.max_rl_weight"]
    assert all(line.startswith(f"ERROR {f}: ") for line in lines)


def test_secret_stays_redacted_among_many_errors() -> None:
    """A short auth token among other errors is still not echoed."""
    with pytest.raises(ConfigError) as info:
        parse_config(Layer3Config, {"service": {"auth_token": "short-secret", "port": -1}})
    text = str(info.value)
    assert "short-secret" not in text and "service.auth_token" in text
    assert "service.port" in text


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:8888/predict", "https://model.internal/predict", "http://[::1]:80/p",
    "http://localhost:0/predict", "http://h:65535",
])
def test_valid_endpoints_load(endpoint: str) -> None:
    """http(s) URLs with a host and a port in 0..65535 (or none) are accepted."""
    assert parse_config(RLConfig, {"endpoint": endpoint}).endpoint == endpoint


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:99999/predict", "http://127.0.0.1:-1/predict", "http://h:port/p",
    "ftp://127.0.0.1:21/predict", "127.0.0.1:8888/predict", "http:///predict", "not a url",
    "", "http://exa mple.com/p",
])
def test_bad_endpoint_is_refused_naming_key_and_value(endpoint: str) -> None:
    """A bad rl.endpoint fails at load with the key, the value and what is expected."""
    with pytest.raises(ConfigError) as info:
        parse_config(Layer3Config, {"rl": {"endpoint": endpoint}})
    msg = str(info.value)
    assert msg.startswith("rl.endpoint: ")
    assert repr(endpoint) in msg
    assert "http(s) URL" in msg


def test_bad_endpoint_from_the_library_constructor() -> None:
    """Layer3Phase3Hybrid(rl_endpoint=...) goes through the same check."""
    from himari_l3 import Layer3Phase3Hybrid

    with pytest.raises(ConfigError, match=r"rl\.endpoint.*99999"):
        Layer3Phase3Hybrid(enable_rl=True, rl_endpoint="http://127.0.0.1:99999/predict",
                           enable_metrics=False)
