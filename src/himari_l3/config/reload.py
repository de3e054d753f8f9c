"""Hot reload of ``config/layer3.yaml``: validate -> refuse restart-only changes -> swap.

A `ConfigReloader` polls the file (stdlib only: a daemon thread, no watcher dependency).
When the file's content changes it

1. loads and validates it (`load_config_bytes`): any error keeps the last good config;
2. diffs it against the config in force (`diff_keys`): a change to a key outside
   `LIVE_KEYS` is refused with ``restart_required: <keys>`` and the last good config stays;
3. calls ``apply(new)`` under a lock (e.g. ``Layer3Phase3Hybrid.apply_config``, which swaps
   config references and keeps learned state and the breaker's state); if ``apply`` raises,
   the previous config is applied again;
4. counts the attempt (``reloads_ok`` / ``reloads_failed``, and the
   ``himari_l3_config_reloads_total{result}`` metric through the observer) and, on success,
   sets ``himari_l3_config_last_reload_timestamp_seconds``.

Each distinct file content is judged once: a broken file is counted and logged once, not on
every poll. The poll reads and hashes the file every time instead of trusting
``(mtime_ns, size)``: file timestamps are only as fine as the kernel's clock tick, so an
edit of the same length within one tick would otherwise be missed. Write the file
atomically (write a temporary file, then rename) so a half-written file is never judged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import ConfigError
from ..events import ConfigReloaded
from ..observers import NULL_OBSERVER, Observer
from .loader import config_version, load_config, load_config_bytes
from .schema import Layer3Config

__all__ = [
    "LIVE_KEYS",
    "RESTART_ONLY_KEYS",
    "ConfigReloader",
    "ReloadResult",
    "diff_keys",
    "is_live",
]

log = logging.getLogger(__name__)

# Keys (or whole sub-trees, by prefix) that `Layer3Phase3Hybrid.apply_config` swaps in while
# running, and why that is safe. Anything not listed here needs a restart: a new schema key is
# restart-only until someone makes it live on purpose.
LIVE_KEYS: Mapping[str, str] = {
    "portfolio_value": "equity fractions are taken of; Phase 2 and Phase 1 re-marked to it",
    "sizing.kelly": "Kelly model, fraction, cap, priors, risk weight; posteriors kept",
    "sizing.conformal": "alpha, window (keeps the newest scores if it shrinks), min_samples, "
                        "cold start, floor, ACI gamma, reference vol; scores kept",
    "sizing.sentiment": "sentiment switch, weight and neutral band (read per decision)",
    "sizing.regime": "regime multipliers and hysteresis periods; per-symbol state kept",
    "sizing.cascade": "cascade thresholds, weights and recommendation bands",
    "sizing.limits": "allow_short, per-position caps, minimum notional",
    "sizing.execution": "stop-loss / take-profit distances",
    "portfolio.max_position_pct": "per-symbol net cap (also Phase 1's per-signal cap)",
    "portfolio.max_strategy_pct": "per-strategy gross budget",
    "portfolio.max_portfolio_pct": "portfolio gross budget",
    "portfolio.drift_threshold": "weight-drift flag threshold",
    "portfolio.correlation.min_observations": "aligned rows needed before correlation counts",
    "portfolio.correlation.max_correlation": "pairwise penalty threshold",
    "portfolio.correlation.penalty_strength": "pairwise penalty strength",
    "portfolio.correlation.use_multi_asset_kelly": "multi-asset Kelly adjustment switch",
    "rl.timeout_sec": "total RL deadline per decision",
    "rl.min_confidence": "RL answers below it fall back (low_confidence)",
    "rl.max_rl_weight": "largest weight of the RL target in the blend",
    "circuit_breaker": "enabled, threshold, window, timeouts, backoff; breaker state kept",
}

# Keys that only take effect at start-up, and why a live change is refused.
RESTART_ONLY_KEYS: Mapping[str, str] = {
    "portfolio.weight_history_size": "bounded history is allocated at start-up",
    "portfolio.correlation.window": "the correlation row buffer is allocated at start-up",
    "rl.enabled": "creates or removes the RL client and its breaker",
    "rl.use_mock": "chooses the RL client class",
    "rl.endpoint": "the HTTP client and its connection pool are bound to it",
    "rl.mock_success_rate": "fixed in the mock client at construction",
    "rl.mock_seed": "seeds the mock client's generator at construction",
    "rl.performance_history_size": "bounded RL-vs-baseline history is allocated at start-up",
    "service": "listening socket, auth, request limits and the watcher interval",
    "persistence": "the database connection and snapshot schedule",
    "metrics": "the metric registry and its label bounds",
}


def _covered(key: str, table: Mapping[str, str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in table)


def is_live(key: str) -> bool:
    """True if the dotted leaf ``key`` may change without a restart."""
    return _covered(key, LIVE_KEYS) and not _covered(key, RESTART_ONLY_KEYS)


def leaf_paths(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into ``{"a.b.c": value}`` (leaves only)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(leaf_paths(value, path + "."))
        else:
            out[path] = value
    return out


def diff_keys(old: Layer3Config, new: Layer3Config) -> list[str]:
    """Sorted dotted leaf paths whose values differ between ``old`` and ``new``."""
    a, b = leaf_paths(old.model_dump()), leaf_paths(new.model_dump())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one check of the file did.

    ``status``: "unchanged" (same content, or a change that changes no value), "success"
    (applied) or "failure" (last good config kept; ``error`` says why, naming the key).
    """

    status: Literal["unchanged", "success", "failure"]
    changed_keys: tuple[str, ...] = ()
    error: str | None = None
    version: str | None = None


_Fingerprint = tuple[int, int, str]  # (mtime_ns, size, sha256) of the content last judged


class ConfigReloader:
    """Watch ``path`` and hot-swap validated, live-only changes through ``apply``.

    Parameters
    ----------
    path : the YAML file.
    apply : called with the new config under the reloader's lock; must swap it in (for the
        orchestrator: ``hybrid.apply_config``).
    initial : the config in force now (default: loaded from ``path``, errors raise).
    interval_sec : poll period of the background thread (`start`).
    observer : receives ``config_reloads{result}`` and ``config_last_reload`` events.
    clock : source of the reload timestamps.
    env : environment for the ``HIMARI_L3_AUTH_TOKEN`` override (default ``os.environ``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        apply: Callable[[Layer3Config], None],
        initial: Layer3Config | None = None,
        interval_sec: float = 1.0,
        observer: Observer | None = None,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not interval_sec > 0:
            raise ValueError(f"interval_sec was {interval_sec!r}, expected > 0")
        self.path = Path(path)
        self._apply = apply
        self._env = env
        self.interval_sec = float(interval_sec)
        self.observer = observer or NULL_OBSERVER
        self.clock = clock or SYSTEM_CLOCK
        self._lock = threading.Lock()  # one check at a time (poll thread vs tests/API)
        # The content judged last: the file as it is now, so only later edits reload.
        self._seen: _Fingerprint | None = None
        if initial is None:
            initial = load_config(self.path, env)  # a bad file at start-up raises
        with contextlib.suppress(OSError):  # unreadable now: judged by the first poll
            self._seen, _ = self._read()
        self._current = initial
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> Layer3Config:
        """The last good config (the one in force)."""
        return self._current

    @property
    def version(self) -> str:
        """`config_version` of the config in force."""
        return config_version(self._current)

    # -------------------------------------------------------------------- checking
    def _read(self) -> tuple[_Fingerprint, bytes]:
        st = os.stat(self.path)
        data = self.path.read_bytes()
        return (st.st_mtime_ns, len(data), hashlib.sha256(data).hexdigest()), data

    def check_now(self) -> ReloadResult:  # noqa: PLR0911 - one return per outcome of an attempt
        """Check the file once and reload if its content changed (what the thread runs)."""
        with self._lock:
            try:
                fp, data = self._read()
            except OSError as err:
                missing: _Fingerprint = (-1, -1, f"unreadable: {err.strerror or err}")
                if self._seen == missing:
                    return ReloadResult("unchanged")
                self._seen = missing
                return self._fail(f"{self.path}: cannot read: {err.strerror or err}")
            if self._seen is not None and fp[2] == self._seen[2]:
                self._seen = fp  # touched, same content
                return ReloadResult("unchanged")
            self._seen = fp
            try:
                new = load_config_bytes(data, str(self.path), self._env)
            except ConfigError as err:
                return self._fail(str(err))
            changed = diff_keys(self._current, new)
            if not changed:
                return ReloadResult("unchanged")
            blocked = [k for k in changed if not is_live(k)]
            if blocked:
                return self._fail(f"restart_required: {', '.join(blocked)}", changed)
            old = self._current
            try:
                self._apply(new)
            except Exception as err:
                self._restore(old)
                return self._fail(f"apply failed: {type(err).__name__}: {err}", changed)
            self._current = new
            return self._succeed(changed)

    def _restore(self, old: Layer3Config) -> None:
        try:
            self._apply(old)
        except Exception:
            log.exception("config reload: re-applying the previous config failed as well")

    def _fail(self, error: str, changed: list[str] | None = None) -> ReloadResult:
        self.reloads_failed += 1
        self.last_error = error
        log.warning("config reload refused, keeping version %s: %s", self.version, error)
        self.observer.emit(ConfigReloaded(False))
        return ReloadResult("failure", tuple(changed or ()), error, self.version)

    def _succeed(self, changed: list[str]) -> ReloadResult:
        self.reloads_ok += 1
        self.last_error = None
        version = self.version
        log.info("config reloaded from %s: version %s, changed %s", self.path, version,
                 ", ".join(changed))
        self.observer.emit(ConfigReloaded(True, self.clock.time_ns() / 1e9))
        return ReloadResult("success", tuple(changed), None, version)

    # ---------------------------------------------------------------------- thread
    def start(self) -> None:
        """Poll every ``interval_sec`` in a daemon thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="himari-l3-config-watch",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_sec: float = 5.0) -> None:
        """Stop polling and join the thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_sec)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_sec):
            try:
                self.check_now()
            except Exception:  # a bug here must not kill the watcher silently
                log.exception("config watcher: unexpected error while checking %s", self.path)

    def __enter__(self) -> ConfigReloader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
