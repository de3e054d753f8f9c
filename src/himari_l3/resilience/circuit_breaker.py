"""A circuit breaker for the RL endpoint: a pure, thread-safe state machine that emits events.

::

    CLOSED ──(too many failures in the window: count or rate rule)──▶ OPEN
    OPEN ──(open timeout elapsed; exactly one caller admitted)──▶ HALF_OPEN
    HALF_OPEN ──(probe succeeds)──▶ CLOSED      (timeout back to initial_timeout_sec)
    HALF_OPEN ──(probe fails)──▶ OPEN           (timeout × backoff_multiplier, capped)

It opens on the seed's count rule (``failure_threshold`` failures within ``window_sec``)
while fewer than ``minimum_calls`` calls are in its window, and on a failure rate
(``failure_rate_threshold`` of the latest ``rate_window_calls`` calls) from then on: a busy
caller needs the rate, a quiet one the count (`window.OpeningRule`, docs/deployment.md).

With the defaults the open timeouts run 30 → 60 → 120 → 240 → 300 → 300 s. The breaker knows
nothing about HTTP or Prometheus: clients report outcomes (``record_success`` /
``record_failure``) and observers subscribe with ``add_listener`` to a frozen `CircuitEvent`.
Time comes from an injected `Clock`, so tests advance a ``ManualClock`` instead of sleeping.

Outcomes are not tied to the call that was admitted: a late failure of a call admitted before
the breaker opened is counted but does not change an OPEN state; a failure reported while
HALF_OPEN re-opens the circuit (the conservative reading). A probe that never reports back is
considered lost after one full open timeout and another probe is admitted, so a forgotten
outcome cannot wedge the breaker in HALF_OPEN. Listeners are called in event order, outside the
state lock, possibly on another thread than the one that caused the event: keep them quick and
thread-safe (Prometheus client objects are).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import CircuitBreakerOpenException, StateRestoreError
from ..observers import resolve_observer
from .events import CircuitEvent, CircuitState, Listener, failure_reason
from .window import CallWindow, OpeningRule, positive

__all__ = ["CircuitBreaker", "CircuitEvent", "CircuitState", "failure_reason"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_EXPORT_VERSION = 2  # 2: the rate window ("window"); version 1 exports still restore


class CircuitBreaker:
    """Guard an unreliable dependency: fail fast while it is down, probe it once to recover.

    Parameters
    ----------
    All but ``name`` are keyword-only.

    name : label used in events, logs and `CircuitBreakerOpenException`.
    failure_threshold : failures inside ``window_sec`` that open the circuit while fewer than
        ``minimum_calls`` calls are in the window (the count rule).
    window_sec : length of the sliding window (older outcomes expire).
    failure_rate_threshold : share of failed calls in the window (0 < x <= 1) that opens the
        circuit once at least ``minimum_calls`` calls are in it (the rate rule).
    minimum_calls : calls in the window from which the rate rule replaces the count rule
        (>= ``failure_threshold``).
    rate_window_calls : the window holds at most this many of the latest calls
        (>= ``minimum_calls``).
    initial_timeout_sec, max_timeout_sec, backoff_multiplier : the open timeout starts at
        ``initial_timeout_sec``, is multiplied after each failed probe and capped at the maximum.
    call_deadline_sec : if set, a successful call slower than this counts as a failure ("slow").
    enabled : when False the breaker always admits and never trips (outcomes are still counted).
    clock : time source (default the system clock).
    listeners : callables receiving every `CircuitEvent`; their exceptions are logged, not raised.
    enable_metrics : publish the breaker's metrics (``himari_l3_circuit_breaker_*``) on the
        process-wide Prometheus registry. The orchestrators wire their own observer instead.
    """

    def __init__(  # noqa: PLR0913 - the user's documented constructor
        self,
        name: str = "rl",
        *,
        failure_threshold: int = 5,
        window_sec: float = 60.0,
        initial_timeout_sec: float = 30.0,
        max_timeout_sec: float = 300.0,
        backoff_multiplier: float = 2.0,
        call_deadline_sec: float | None = None,
        enabled: bool = True,
        clock: Clock | None = None,
        listeners: Iterable[Listener] = (),
        enable_metrics: bool = False,
        failure_rate_threshold: float = 0.5,
        minimum_calls: int = 10,
        rate_window_calls: int = 100,
    ) -> None:
        self.name = name
        self._rule = OpeningRule(failure_threshold, failure_rate_threshold, minimum_calls,
                                 rate_window_calls)
        self.window_sec = positive("window_sec", window_sec)
        self.initial_timeout_sec = positive("initial_timeout_sec", initial_timeout_sec)
        self.max_timeout_sec = positive("max_timeout_sec", max_timeout_sec)
        if self.max_timeout_sec < self.initial_timeout_sec:
            raise ValueError(f"max_timeout_sec was {max_timeout_sec!r}, expected >= "
                             f"initial_timeout_sec ({initial_timeout_sec!r})")
        self.backoff_multiplier = positive("backoff_multiplier", backoff_multiplier)
        if self.backoff_multiplier < 1.0:
            raise ValueError(f"backoff_multiplier was {backoff_multiplier!r}, expected >= 1")
        self.call_deadline_sec = (
            None if call_deadline_sec is None else positive("call_deadline_sec", call_deadline_sec)
        )
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._lock = threading.Lock()
        self._listeners: list[Listener] = list(listeners)
        self._pending: deque[CircuitEvent] = deque()
        self._deliver_lock = threading.Lock()
        self._enabled = bool(enabled)
        self._init_locked()
        if enable_metrics:
            # The installed metrics observer (Prometheus, wired by bootstrap): the state
            # machine itself knows no metrics adapter.
            self.add_listener(resolve_observer(None, True).emit, announce=True)

    def _init_locked(self) -> None:
        self._state = CircuitState.CLOSED
        # The latest calls made while CLOSED (what the opening rule judges).
        self._window = CallWindow(self.rate_window_calls, self.window_sec)
        self._last_transition_reason = ""
        self._timeout = self.initial_timeout_sec
        self._opened_at = 0.0
        self._probe_started = 0.0
        self._consecutive_open = 0
        self._forced_open = False
        self._last_failure_reason = ""
        self._calls = self._successes = self._failures_total = 0
        self._rejections = self._fallbacks = 0

    # -- the opening rule (read-only: change it with `reconfigure`) -------------------------

    @property
    def failure_threshold(self) -> int:
        """Count rule: failures in the window that open it below ``minimum_calls`` calls."""
        return self._rule.failure_threshold

    @property
    def failure_rate_threshold(self) -> float:
        """Rate rule: failed share of the window's calls that opens it."""
        return self._rule.failure_rate_threshold

    @property
    def minimum_calls(self) -> int:
        """Calls in the window from which the rate rule decides."""
        return self._rule.minimum_calls

    @property
    def rate_window_calls(self) -> int:
        """Most calls the window holds."""
        return self._rule.rate_window_calls

    # -- observers -------------------------------------------------------------------------

    def add_listener(self, listener: Listener, *, announce: bool = False) -> None:
        """Subscribe ``listener`` to every `CircuitEvent` (how metrics observe the breaker);
        with ``announce`` it first gets an "init" event with the current state (so gauges
        exist before anything happens)."""
        with self._lock:
            self._listeners.append(listener)
            init = self._make_event("init", "", self._state, 1)
        if announce:
            try:
                listener(init)
            except Exception:
                logger.exception("circuit breaker %r: listener %r failed on init", self.name,
                                 listener)

    def _deliver(self) -> None:
        # Events are queued under the state lock (so their order is the order of the state
        # changes) and delivered here without it, so a listener may query the breaker. One
        # thread at a time drains the queue: a gauge fed by "state_change" events therefore
        # always ends on the breaker's real state, even when threads race.
        while self._pending:
            if not self._deliver_lock.acquire(blocking=False):
                return  # the thread holding it delivers our events too (it re-checks below)
            try:
                with self._lock:
                    listeners = tuple(self._listeners)
                while self._pending:
                    event = self._pending.popleft()
                    for listener in listeners:
                        try:
                            listener(event)
                        except Exception:
                            logger.exception("circuit breaker %r: listener %r failed on %s",
                                             self.name, listener, event.kind)
            finally:
                self._deliver_lock.release()

    def _event(self, kind: str, reason: str = "", old: CircuitState | None = None,
               count: int = 1) -> None:
        # Always called with the state lock held.
        self._pending.append(self._make_event(kind, reason,
                                              self._state if old is None else old, count))

    def _make_event(self, kind: str, reason: str, old: CircuitState,
                    count: int) -> CircuitEvent:
        attempted = self._successes + self._failures_total
        return CircuitEvent(self.name, kind, old, self._state, self._clock.monotonic(),
                            reason, count, self._timeout,
                            self._successes / attempted if attempted else 1.0)

    def _move_locked(self, new: CircuitState, reason: str) -> None:
        old, self._state = self._state, new
        if old is not new:
            self._last_transition_reason = reason
            log = logger.warning if new is CircuitState.OPEN else logger.info
            log("circuit breaker %r: %s -> %s (%s)", self.name, old.value, new.value, reason)
            self._event("state_change", reason, old)

    def _open_locked(self, now: float, reason: str) -> None:
        self._opened_at = now
        self._consecutive_open += 1
        self._move_locked(CircuitState.OPEN, reason)

    def _close_locked(self, reason: str) -> None:
        self._window.clear()
        self._timeout = self.initial_timeout_sec
        self._consecutive_open = 0
        self._move_locked(CircuitState.CLOSED, reason)

    def _prune_locked(self, now: float) -> None:
        self._window.prune(now)

    def _retry_in_locked(self, now: float) -> float:
        if self._forced_open:
            # No automatic retry while forced; report the current timeout as a finite back-off.
            return self._timeout
        if self._state is CircuitState.OPEN:
            return max(0.0, self._opened_at + self._timeout - now)
        return 0.0

    # -- admission -------------------------------------------------------------------------

    def _admit(self) -> tuple[bool, float]:
        with self._lock:
            now = self._clock.monotonic()
            admitted = self._admit_locked(now)
            retry_in = self._retry_in_locked(now)
            if not admitted:
                self._rejections += 1
                self._event("rejected", "forced_open" if self._forced_open else "open")
        self._deliver()
        return admitted, retry_in

    def _admit_locked(self, now: float) -> bool:
        if self._forced_open:
            return False
        if self._enabled and self._state is not CircuitState.CLOSED:
            if self._state is CircuitState.OPEN:
                if now - self._opened_at < self._timeout:
                    return False
                self._move_locked(CircuitState.HALF_OPEN, "open timeout elapsed")
            elif now - self._probe_started < self._timeout:
                return False  # HALF_OPEN and the single probe is still in flight
            # else: the probe never reported back within a full timeout; treat it as lost.
            self._probe_started = now
        self._calls += 1
        return True

    def reject_if_open(self, calls: int = 1) -> bool:
        """Fast path for a batch: if the breaker would reject any call right now (open, or
        forced open, and no probe is due), count ``calls`` rejections and return True
        without admitting anything; otherwise return False and change nothing (the caller
        then admits each call with `before_call`, so a due probe is still taken once)."""
        with self._lock:
            now = self._clock.monotonic()
            rejecting = self._forced_open or (
                self._enabled and (
                    (self._state is CircuitState.OPEN and now - self._opened_at < self._timeout)
                    or (self._state is CircuitState.HALF_OPEN
                        and now - self._probe_started < self._timeout)))
            if rejecting:
                self._rejections += calls
                self._event("rejected", "forced_open" if self._forced_open else "open",
                            count=calls)
        if rejecting:
            self._deliver()
        return rejecting

    def allow_request(self) -> bool:
        """Admit a call (True) or reject it (False, counted as a rejection)."""
        return self._admit()[0]

    def before_call(self) -> None:
        """Admit a call or raise `CircuitBreakerOpenException` with the time to the next probe."""
        admitted, retry_in = self._admit()
        if not admitted:
            raise CircuitBreakerOpenException(self.name, retry_in)

    # -- outcomes --------------------------------------------------------------------------

    def record_success(self, duration_sec: float | None = None) -> None:
        """Report a successful call; slower than ``call_deadline_sec`` counts as a failure."""
        deadline = self.call_deadline_sec
        if duration_sec is not None and deadline is not None and duration_sec > deadline:
            self.record_failure("slow")
            return
        with self._lock:
            self._successes += 1
            self._event("success")
            if self._state is CircuitState.CLOSED:
                self._window.record(self._clock.monotonic(), False)
            elif self._state is CircuitState.HALF_OPEN and not self._forced_open:
                self._close_locked("probe succeeded")
        self._deliver()

    def record_failure(self, reason: str) -> None:
        """Report a failed call (``reason`` is a short, bounded code such as "timeout")."""
        with self._lock:
            now = self._clock.monotonic()
            self._failures_total += 1
            self._last_failure_reason = reason
            self._event("failure", reason)
            if self._state is CircuitState.CLOSED:
                self._window.record(now, True)
            if self._forced_open or not self._enabled:
                pass  # counted above; an operator override decides the state
            elif self._state is CircuitState.HALF_OPEN:
                self._timeout = min(self._timeout * self.backoff_multiplier, self.max_timeout_sec)
                self._open_locked(now, f"probe failed: {reason}")
            elif self._state is CircuitState.CLOSED:
                why = self._rule.reason_to_open(len(self._window), self._window.failures,
                                                self.window_sec)
                if why is not None:
                    self._open_locked(now, f"{why}, last: {reason}")
        self._deliver()

    def record_fallback(self) -> None:
        """Count a fallback taken by the caller because of this breaker or its dependency."""
        with self._lock:
            self._fallbacks += 1
            self._event("fallback")
        self._deliver()

    # -- guarded calls ---------------------------------------------------------------------

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` under the breaker (the lock is not held while it runs)."""
        self.before_call()
        start = self._clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.record_failure(failure_reason(exc))
            raise
        self.record_success(self._clock.monotonic() - start)
        return result

    async def call_async(
        self, coro_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``coro_fn(*args, **kwargs)`` under the breaker; cancellation counts as failure."""
        self.before_call()
        start = self._clock.monotonic()
        try:
            result = await coro_fn(*args, **kwargs)
        except (Exception, asyncio.CancelledError) as exc:
            self.record_failure(failure_reason(exc))
            raise
        self.record_success(self._clock.monotonic() - start)
        return result

    # -- operator controls -----------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state (an OPEN breaker whose timeout elapsed stays OPEN until probed)."""
        return self._state

    @property
    def enabled(self) -> bool:
        """False: admit everything and never trip (a forced open still wins)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        with self._lock:
            self._enabled = bool(value)
            if not self._enabled and not self._forced_open:
                self._close_locked("disabled")
        self._deliver()

    def reconfigure(  # noqa: PLR0913 - one keyword per circuit_breaker config key
        self,
        *,
        failure_threshold: int | None = None,
        window_sec: float | None = None,
        initial_timeout_sec: float | None = None,
        max_timeout_sec: float | None = None,
        backoff_multiplier: float | None = None,
        call_deadline_sec: float | None = None,
        enabled: bool | None = None,
        failure_rate_threshold: float | None = None,
        minimum_calls: int | None = None,
        rate_window_calls: int | None = None,
    ) -> None:
        """Change parameters in place (config hot reload); state, counters and the window
        of recent calls are kept (a smaller ``rate_window_calls`` keeps the newest calls).

        A closed breaker takes the new initial timeout at once; an open one keeps its
        current timeout (clamped to the new maximum) until it next closes.
        """
        old = self._rule
        rule = OpeningRule(
            old.failure_threshold if failure_threshold is None else failure_threshold,
            old.failure_rate_threshold if failure_rate_threshold is None
            else failure_rate_threshold,
            old.minimum_calls if minimum_calls is None else minimum_calls,
            old.rate_window_calls if rate_window_calls is None else rate_window_calls)
        window = self.window_sec if window_sec is None else positive("window_sec", window_sec)
        initial = (self.initial_timeout_sec if initial_timeout_sec is None
                   else positive("initial_timeout_sec", initial_timeout_sec))
        maximum = (self.max_timeout_sec if max_timeout_sec is None
                   else positive("max_timeout_sec", max_timeout_sec))
        if maximum < initial:
            raise ValueError(f"max_timeout_sec was {maximum!r}, expected >= "
                             f"initial_timeout_sec ({initial!r})")
        backoff = (self.backoff_multiplier if backoff_multiplier is None
                   else positive("backoff_multiplier", backoff_multiplier))
        if backoff < 1.0:
            raise ValueError(f"backoff_multiplier was {backoff!r}, expected >= 1")
        deadline = (self.call_deadline_sec if call_deadline_sec is None
                    else positive("call_deadline_sec", call_deadline_sec))
        with self._lock:
            self._rule, self.window_sec = rule, window
            self._window.window_sec = window
            if rule.rate_window_calls != self._window.max_calls:
                self._window = self._window.resized(rule.rate_window_calls)
            self.initial_timeout_sec, self.max_timeout_sec = initial, maximum
            self.backoff_multiplier, self.call_deadline_sec = backoff, deadline
            if self._state is CircuitState.CLOSED:
                self._timeout = initial
            else:
                self._timeout = min(self._timeout, maximum)
        if enabled is not None:
            self.enabled = enabled

    def force_open(self) -> None:
        """Operator override: reject every call until `force_close` or `reset`."""
        with self._lock:
            self._forced_open = True
            if self._state is not CircuitState.OPEN:
                self._opened_at = self._clock.monotonic()
                self._move_locked(CircuitState.OPEN, "forced open")
        self._deliver()

    def force_close(self) -> None:
        """Operator override: close now and forget recent failures (counters are kept)."""
        with self._lock:
            self._forced_open = False
            self._close_locked("forced close")
        self._deliver()

    def reset(self) -> None:
        """Back to a fresh CLOSED breaker: window, timeout, override and counters cleared."""
        with self._lock:
            old = self._state
            self._init_locked()
            if old is not CircuitState.CLOSED:
                self._state = old
                self._move_locked(CircuitState.CLOSED, "reset")
        self._deliver()

    # -- introspection and persistence -----------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """A JSON-ready snapshot (all numbers finite)."""
        with self._lock:
            now = self._clock.monotonic()
            self._prune_locked(now)
            attempted = self._successes + self._failures_total
            return {
                "name": self.name,
                "state": self._state.value,
                "state_code": self._state.code,
                "failure_count": self._window.failures,
                "failure_threshold": self.failure_threshold,
                "window_calls": len(self._window),
                "window_failure_rate": (self._window.failures / len(self._window)
                                        if len(self._window) else 0.0),
                "failure_rate_threshold": self.failure_rate_threshold,
                "minimum_calls": self.minimum_calls,
                "rate_window_calls": self.rate_window_calls,
                "last_transition_reason": self._last_transition_reason,
                "total_failures": self._failures_total,
                "total_successes": self._successes,
                "total_calls": self._calls,
                "total_rejections": self._rejections,
                "total_fallbacks": self._fallbacks,
                "consecutive_open_count": self._consecutive_open,
                "current_timeout_sec": self._timeout,
                "time_until_retry_sec": self._retry_in_locked(now),
                "success_rate": self._successes / attempted if attempted else 1.0,
                "last_failure_reason": self._last_failure_reason,
                "forced_open": self._forced_open,
                "enabled": self._enabled,
            }

    def export_state(self) -> dict[str, Any]:
        """Persistable state; times are stored relative to now so any clock can restore them."""
        with self._lock:
            now = self._clock.monotonic()
            self._prune_locked(now)
            return {
                "version": _EXPORT_VERSION,
                "name": self.name,
                "state": self._state.value,
                "current_timeout_sec": self._timeout,
                "consecutive_open_count": self._consecutive_open,
                "opened_ago_sec": now - self._opened_at if self._state is not
                CircuitState.CLOSED else None,
                # The rate window, oldest first: [age in seconds, failed].
                "window": self._window.export(now),
                "forced_open": self._forced_open,
                "enabled": self._enabled,
                "last_failure_reason": self._last_failure_reason,
                "counters": {"calls": self._calls, "successes": self._successes,
                             "failures": self._failures_total, "rejections": self._rejections,
                             "fallbacks": self._fallbacks},
            }

    def restore_state(self, data: dict[str, Any]) -> None:
        """Restore `export_state` output. A HALF_OPEN export comes back OPEN and due for a probe
        (its probe's outcome was lost). Raises `StateRestoreError` on malformed input."""
        try:
            version = data["version"]
            if version not in (1, _EXPORT_VERSION):
                raise ValueError(f"version {version!r} not in (1, {_EXPORT_VERSION})")
            state = CircuitState(data["state"])
            timeout = float(data["current_timeout_sec"])
            if not self.initial_timeout_sec <= timeout <= self.max_timeout_sec:
                raise ValueError(f"current_timeout_sec {timeout!r} outside "
                                 f"[{self.initial_timeout_sec}, {self.max_timeout_sec}]")
            opened_ago = float(data["opened_ago_sec"] or 0.0)
            # Version 1 kept only failures: they come back as failed calls.
            calls = ([[a, True] for a in data["failure_ages_sec"]] if version == 1
                     else data["window"])
            window = CallWindow.restore(self.rate_window_calls, self.window_sec,
                                        self._clock.monotonic(), calls)
            counters = {k: int(data["counters"][k]) for k in
                        ("calls", "successes", "failures", "rejections", "fallbacks")}
            consecutive = int(data["consecutive_open_count"])
            if not math.isfinite(opened_ago) or opened_ago < 0 or min(
                counters.values()) < 0:
                raise ValueError("negative or non-finite ages or counters")
        except (KeyError, TypeError, ValueError) as err:
            raise StateRestoreError(f"circuit breaker {self.name!r}: cannot restore "
                                    f"state: {err!r}") from None
        with self._lock:
            now = self._clock.monotonic()
            old = self._state
            self._window = window
            self._timeout = timeout
            self._consecutive_open = consecutive
            self._forced_open = bool(data["forced_open"])
            self._enabled = bool(data["enabled"])
            self._last_failure_reason = str(data["last_failure_reason"])
            self._calls, self._successes = counters["calls"], counters["successes"]
            self._failures_total, self._rejections = counters["failures"], counters["rejections"]
            self._fallbacks = counters["fallbacks"]
            if state is CircuitState.HALF_OPEN:
                state, self._opened_at = CircuitState.OPEN, now - timeout
            else:
                self._opened_at = now - opened_ago
            self._state = old
            self._move_locked(state, "restored")
        self._deliver()

