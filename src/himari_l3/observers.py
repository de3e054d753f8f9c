"""The observer port: how metrics, audit logs and tests watch the core without the core
importing any of them.

The core calls ``observer.emit(event)`` with a frozen record from `himari_l3.events`; it never
names a metric. `Observer` is the no-op base (override `emit`); `RecordingObserver` keeps
every event (handy in tests).

The user's documented calls (``Layer3Phase1(enable_metrics=True)`` and friends) ask for
"the metrics observer" without naming an adapter. Which adapter that is, is decided by the
composition root: `himari_l3.bootstrap` installs the Prometheus one with
`install_metrics_factory` when the package is imported (stamina installs its default
instrumentation hooks the same way). The core only ever calls `resolve_observer`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .events import Event

__all__ = [
    "NULL_OBSERVER",
    "GatedObserver",
    "Observer",
    "RecordingObserver",
    "install_metrics_factory",
    "resolve_observer",
]


class Observer:
    """Receives every event the core emits. The base does nothing; ``emit`` must not raise."""

    def emit(self, event: Event) -> None:
        """Handle one event (called on the decision path: keep it quick)."""

    def flush(self, max_items: int | None = None) -> int:
        """Apply work the observer deferred (all of it, or at most ``max_items``); returns
        how much is still pending. Observers that defer nothing return 0."""
        return 0


class GatedObserver(Observer):
    """Forwards to ``inner`` except while muted. The service mutes the engine's events while
    it replays its journal: those decisions were counted when they happened."""

    def __init__(self, inner: Observer) -> None:
        self.inner = inner
        self.muted = False

    def emit(self, event: Event) -> None:
        if not self.muted:
            self.inner.emit(event)

    def flush(self, max_items: int | None = None) -> int:
        return self.inner.flush(max_items)

    @contextlib.contextmanager
    def muting(self) -> Iterator[None]:
        """Drop every event inside the block."""
        before, self.muted = self.muted, True
        try:
            yield
        finally:
            self.muted = before


class RecordingObserver(Observer):
    """Keeps every event it sees, in order (for tests and debugging)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of_type(self, kind: type[Event]) -> list[Event]:
        """The events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]


NULL_OBSERVER = Observer()

_metrics_factory: Callable[[], Observer] | None = None


def install_metrics_factory(factory: Callable[[], Observer]) -> None:
    """Set what ``enable_metrics=True`` builds (the composition root calls this once)."""
    global _metrics_factory  # noqa: PLW0603 - the one wiring point, set by bootstrap
    _metrics_factory = factory


def resolve_observer(observer: Observer | None, enable_metrics: bool) -> Observer:
    """The observer to use: an explicit one wins; else the installed metrics observer when
    metrics are enabled; else the no-op observer."""
    if observer is not None:
        return observer
    if not enable_metrics:
        return NULL_OBSERVER
    if _metrics_factory is None:
        raise RuntimeError("enable_metrics=True but no metrics adapter is installed: import "
                           "himari_l3 (its bootstrap installs the Prometheus observer)")
    return _metrics_factory()
