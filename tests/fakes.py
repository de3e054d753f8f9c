"""Hand-written fakes of Layer 3's ports (cosmicpython's habit: fakes over mocks).

Type-checked with mypy --strict by ``scripts/check``: a fake that drifts from its port fails
the gate, not a test run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from himari_l3 import ManualClock, RLPrediction, TacticalSignal
from himari_l3.resilience import CircuitBreaker
from himari_l3.rl import GuardedModel, RLFailure, RLModel, RLResult

Answer = Callable[[TacticalSignal], RLResult]


class AnsweringModel:
    """An `RLModel` transport answering from a function; records every batch it is asked."""

    endpoint = "fake://rl"

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[list[tuple[str, str]]] = []
        self.closed = 0
        self.warmed: list[float] = []

    def _run(self, signals: Sequence[TacticalSignal]) -> list[RLResult]:
        self.calls.append([(s.strategy_id, s.symbol) for s in signals])
        return [self.answer(s) for s in signals]

    async def predict_many(self, signals: Sequence[TacticalSignal],
                           market_data: dict[str, Any] | None,
                           deadline_sec: float) -> list[RLResult]:
        await asyncio.sleep(0)
        return self._run(signals)

    def predict_many_blocking(self, signals: Sequence[TacticalSignal],
                              market_data: dict[str, Any] | None,
                              deadline_sec: float) -> list[RLResult]:
        return self._run(signals)

    def warm_up(self, timeout_sec: float) -> None:
        self.warmed.append(timeout_sec)

    def close(self) -> None:
        self.closed += 1


class ScriptedModel(AnsweringModel):
    """Answers from a script keyed by (strategy, symbol); unscripted keys time out."""

    def __init__(self) -> None:
        super().__init__(self._scripted)
        self.script: dict[tuple[str, str], RLResult] = {}

    def _scripted(self, s: TacticalSignal) -> RLResult:
        return self.script.get((s.strategy_id, s.symbol),
                               RLFailure(s.symbol, s.strategy_id, "timeout"))


class FakeRL(GuardedModel):
    """A guarded `AnsweringModel` with its own breaker (on a manual clock)."""

    def __init__(self, answer: Answer, clock: ManualClock | None = None) -> None:
        self.fake = AnsweringModel(answer)
        super().__init__(self.fake, CircuitBreaker("rl", clock=clock or ManualClock()))

    @property
    def calls(self) -> list[list[tuple[str, str]]]:
        return self.fake.calls


def prediction(pct: float = 0.05, confidence: float = 0.8) -> RLPrediction:
    """A valid prediction of ``pct`` of the portfolio at ``confidence``."""
    return RLPrediction(pct, confidence, 0.01, 0.02, "fake-1", 1.0, 1)


def _conforms() -> list[RLModel]:
    """The fakes satisfy the port (checked by mypy, never called)."""
    return [AnsweringModel(lambda s: prediction()), ScriptedModel()]
