"""The guard starts its transport: the warm-up happens when the guard is built, once, with
the configured bound, for any transport (checked with the port's fake)."""

from __future__ import annotations

import math

import pytest

from fakes import AnsweringModel, prediction
from himari_l3 import ManualClock
from himari_l3.resilience import CircuitBreaker
from himari_l3.rl_guard import DEFAULT_WARMUP_TIMEOUT_SEC, GuardedModel


def test_building_the_guard_warms_its_transport_up_once() -> None:
    """The transport's warm_up runs at construction with the given bound, not on a call."""
    model = AnsweringModel(lambda s: prediction())
    guard = GuardedModel(model, CircuitBreaker("rl", clock=ManualClock()),
                         warmup_timeout_sec=0.4)
    assert model.warmed == [0.4]
    assert model.calls == []
    GuardedModel(AnsweringModel(lambda s: prediction()))
    assert guard.model is model


def test_the_default_warm_up_bound() -> None:
    """Without a bound the guard uses the documented default (rl.warmup_timeout_sec)."""
    model = AnsweringModel(lambda s: prediction())
    GuardedModel(model)
    assert model.warmed == [DEFAULT_WARMUP_TIMEOUT_SEC] == [1.0]


@pytest.mark.parametrize("bad", [0.0, -1.0, 61.0, math.inf, math.nan])
def test_a_warm_up_bound_out_of_range_is_refused(bad: float) -> None:
    """A warm-up bound must be finite, > 0 and <= 60 s; the error names it."""
    model = AnsweringModel(lambda s: prediction())
    with pytest.raises(ValueError, match="warmup_timeout_sec"):
        GuardedModel(model, warmup_timeout_sec=bad)
    assert model.warmed == []
