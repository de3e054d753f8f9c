"""Hot reload of ``config/layer3.yaml``: complete file -> validate -> guard -> swap.

A `ConfigReloader` polls the file (stdlib only: a daemon thread, no watcher dependency).
When the file's content changes it

1. waits until the file is **complete**: replaced atomically (the path now names another
   inode than at the previous poll: a temporary file renamed into place), or unchanged over
   two consecutive polls (same inode, size, mtime and content hash). Until then the check
   reports "pending" and judges nothing, so a file read half-written is never applied;
2. loads and validates it (`read_config_bytes`): any error keeps the last good config;
3. diffs it against the config in force (`diff_keys`); refuses, keeping the last good config,
   an edit that **removes a limit key** (`LIMIT_KEYS`) the file in force wrote, unless the
   new file confirms it (``confirm_limit_removal: [key, ...]``) — a truncated file must not
   fall back to a looser default — and an edit of a key outside `LIVE_KEYS`
   (``restart_required: <keys>``);
4. calls ``apply(new)`` under a lock (e.g. ``Layer3Phase3Hybrid.apply_config``, which swaps
   config references and keeps learned state and the breaker's state); if ``apply`` raises,
   the previous config is applied again;
5. counts the attempt (``reloads_ok`` / ``reloads_failed``, and the
   ``himari_l3_config_reloads_total{result}`` metric through the observer) and, on success,
   sets ``himari_l3_config_last_reload_timestamp_seconds``. ``last_error`` is cleared by a
   success, and by a file that validates to the config already in force.

Each distinct file content is judged once: a broken file is counted and logged once, not on
every poll. The poll reads and hashes the file every time instead of trusting
``(mtime_ns, size)``: file timestamps are only as fine as the kernel's clock tick, so an
edit of the same length within one tick would otherwise be missed. Write the file
atomically (write a temporary file, then rename) to have it applied on the next poll; an
edit in place is applied one poll later, once seen stable.
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
from typing import Literal

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import ConfigError
from ..events import ConfigReloaded
from ..observers import NULL_OBSERVER, Observer
from .loader import (
    CONFIRM_LIMIT_REMOVAL,
    ConfigFile,
    config_version,
    leaf_paths,
    load_config,
    read_config_bytes,
)
from .schema import Layer3Config

__all__ = [
    "LIMIT_KEYS",
    "LIVE_KEYS",
    "RESTART_ONLY_KEYS",
    "ConfigReloader",
    "ReloadResult",
    "diff_keys",
    "is_limit",
    "is_live",
    "leaf_paths",
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
    "sizing.retention": "caps on learned keys; a lower cap forgets the least recently used "
                        "keys at once (journaled with the change, so replay does the same)",
    "portfolio.max_position_pct": "per-symbol net cap (also Phase 1's per-signal cap)",
    "portfolio.max_strategy_pct": "per-strategy gross budget",
    "portfolio.max_portfolio_pct": "portfolio gross budget",
    "portfolio.max_net_pct": "net exposure cap (standing targets that no longer fit are "
                             "scaled at the book's next step, and every portfolio re-planned)",
    "portfolio.max_leverage": "leverage cap (as max_net_pct)",
    "portfolio.drift_threshold": "weight-drift flag threshold",
    "portfolio.max_signal_clock_skew_sec": "bound checked on each signal taken in",
    "portfolio.correlation.min_observations": "aligned rows needed before correlation counts",
    "portfolio.correlation.max_correlation": "pairwise penalty threshold",
    "portfolio.correlation.penalty_strength": "pairwise penalty strength",
    "portfolio.correlation.use_multi_asset_kelly": "multi-asset Kelly adjustment switch",
    "portfolio.correlation.max_symbols_per_row": "cap checked on each new returns row",
    "portfolio.correlation.max_symbols": "cap checked on each new returns row",
    "portfolio.correlation.max_clock_skew_sec": "bound checked on each new returns row",
    "book.target_ttl_sec": "read at each step of the book (stale targets decay then)",
    "book.max_portfolios": "checked when a portfolio is created",
    "book.max_targets": "checked before each incremental allocation (targets kept)",
    "execution.intent_ttl_sec": "stamped on intents issued from now on",
    "execution.no_trade_band_pct": "read at each step of the book",
    "execution.no_trade_band_usd": "read at each step of the book",
    "execution.order_type": "stamped on intents issued from now on",
    "execution.time_in_force": "stamped on intents issued from now on",
    "execution.limit_offset_bps": "limit price of intents issued from now on",
    "trading_state": "triggers, halt action and cool-down, judged at the next step of each "
                     "portfolio (Book.apply_config reconfigures the machines; states kept)",
    "rl.timeout_sec": "total RL deadline per decision",
    "rl.min_confidence": "RL answers below it fall back (low_confidence)",
    "rl.max_rl_weight": "largest weight of the RL target in the blend",
    "circuit_breaker": "enabled, threshold, window, timeouts, backoff; breaker state kept",
    "streams.tick_ms": "read by the live loop at the start of each tick",
    "streams.tick_max_messages": "read by the live loop at the start of each tick",
    "streams.symbol_map": "read by the Layer 2 parser for each message",
    "streams.default_strategy_id": "read by the Layer 2 parser for each message",
    "streams.default_symbol": "read by the Layer 2 parser for each message",
    "streams.max_signal_age_ms": "read by the Layer 2 parser for each message",
    "streams.hold_above_uncertainty": "read by the Layer 2 parser for each message",
    "streams.l1_max_age_ms": "read when each tick's Layer 1 readings are resolved",
    "streams.l1_missing_policy": "read when each tick's Layer 1 readings are resolved",
    "streams.netflow_compression": "read when each Layer 1 reading is parsed",
    "streams.netflow_scale": "read when each Layer 1 reading is parsed",
    "streams.prices_key": "read when each tick's prices are fetched",
    "streams.cascade_key": "read when each tick's Layer 1 readings are fetched",
    "streams.claim_idle_ms": "read at each claim of a dead consumer's pending entries",
}

# Keys that only take effect at start-up, and why a live change is refused.
RESTART_ONLY_KEYS: Mapping[str, str] = {
    "portfolio.weight_history_size": "bounded history is allocated at start-up",
    "portfolio.correlation.window": "the correlation row buffer is allocated at start-up",
    "execution.markets_file": "the instrument rules are loaded at start-up",
    "execution.precision_mode": "how the markets file is read at start-up",
    "execution.closed_intents_kept": "bounded history of closed intents, sized at start-up",
    "execution.paper": "the paper executor is built (or not) at start-up",
    "execution.fill_model": "the paper executor's fill model is built at start-up",
    "rl.enabled": "creates or removes the RL client and its breaker",
    "rl.use_mock": "chooses the RL client class",
    "rl.endpoint": "the HTTP client and its connection pool are bound to it",
    "rl.mock_success_rate": "fixed in the mock client at construction",
    "rl.mock_seed": "seeds the mock client's generator at construction",
    "rl.performance_history_size": "bounded RL-vs-baseline history is allocated at start-up",
    "rl.max_response_bytes": "fixed in the HTTP transport at construction",
    "rl.warmup_timeout_sec": "the client warms up once, when it is built",
    "service": "listening socket, auth, request limits and the watcher interval",
    "persistence": "the database connection and snapshot schedule",
    "metrics": "the metric registry and its label bounds",
    "streams.redis_url": "the Redis connection pool is bound to it",
    "streams.input_stream": "the consumer group reads it from start-up",
    "streams.output_stream": "where decisions go; Layer 4 reads it",
    "streams.output_channel": "where decisions are announced; Layer 4 subscribes to it",
    "streams.output_maxlen": "bound of the output stream, fixed with the publisher",
    "streams.consumer_group": "the group (and its pending entries) the loop belongs to",
    "streams.consumer_name": "this process's name in the group",
    "streams.dead_letter_stream": "fixed with the consumer",
    "streams.dead_letter_maxlen": "fixed with the consumer",
    "streams.portfolio": "the lease and the journal belong to one portfolio",
    "streams.lease_ttl_ms": "the lease's renewal period is set at start-up",
}


# Keys (or sub-trees) that bound a size: removing one from the file would fall back to its
# default, which may be looser (no USD cap, 100,000 of equity, a wider budget). A reload
# that removes one the file in force wrote is refused unless the new file confirms it.
LIMIT_KEYS: Mapping[str, str] = {
    "portfolio_value": "equity every fraction and cap is taken of",
    "sizing.limits": "direction rule, per-position caps, minimum notional",
    "sizing.kelly.fraction": "fractional Kelly multiplier",
    "sizing.kelly.max_fraction": "cap of the Kelly fraction",
    "sizing.cascade.exit_above": "cascade EXIT band",
    "sizing.cascade.reduce_75_above": "cascade REDUCE_75% band",
    "sizing.cascade.reduce_50_above": "cascade REDUCE_50% band",
    "portfolio.max_position_pct": "net cap per symbol",
    "portfolio.max_strategy_pct": "gross budget per strategy",
    "portfolio.max_portfolio_pct": "gross budget of the portfolio",
    "portfolio.max_net_pct": "net exposure cap of the book",
    "portfolio.max_leverage": "leverage cap of the book",
    "rl.max_rl_weight": "largest weight of the RL target in the blend",
    "trading_state.daily_loss_limit_pct": "daily loss that halts trading",
    "trading_state.max_drawdown_pct": "drawdown that halts trading",
    "trading_state.reduce_at_fraction": "share of a loss limit from which trading is "
                                        "reduce-only",
    "trading_state.stale_after_sec": "age from which data is stale (reduce-only)",
}


def _covered(key: str, table: Mapping[str, str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in table)


def is_live(key: str) -> bool:
    """True if the dotted leaf ``key`` may change without a restart."""
    return _covered(key, LIVE_KEYS) and not _covered(key, RESTART_ONLY_KEYS)


_LEAVES = frozenset(leaf_paths(Layer3Config().model_dump()))


def is_limit(key: str) -> bool:
    """True if the dotted leaf ``key`` is a config key that bounds a size (`LIMIT_KEYS`)."""
    return key in _LEAVES and _covered(key, LIMIT_KEYS)


def diff_keys(old: Layer3Config, new: Layer3Config) -> list[str]:
    """Sorted dotted leaf paths whose values differ between ``old`` and ``new``."""
    a, b = leaf_paths(old.model_dump()), leaf_paths(new.model_dump())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one check of the file did.

    ``status``: "unchanged" (same content, or a change that changes no value), "pending"
    (the file changed in place since the previous poll: judged once it is seen stable),
    "success" (applied) or "failure" (last good config kept; ``error`` says why, naming the
    key).
    """

    status: Literal["unchanged", "pending", "success", "failure"]
    changed_keys: tuple[str, ...] = ()
    error: str | None = None
    version: str | None = None


# (st_dev, st_ino, mtime_ns, size, sha256) of a file as one poll read it.
_Fingerprint = tuple[int, int, int, int, str]
_INODE = slice(0, 2)
_SHA = 4


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
        # The content judged last (the file as it is now, so only later edits reload) and
        # the file as the previous poll saw it (an edit in place must be seen twice).
        self._seen: _Fingerprint | None = None
        self._polled: _Fingerprint | None = None
        # Keys the file in force wrote (a reload that drops a limit among them is refused).
        self._keys: frozenset[str] = frozenset()
        if initial is None:
            initial = load_config(self.path, env)  # a bad file at start-up raises
        with contextlib.suppress(OSError):  # unreadable now: judged by the first poll
            self._seen, data = self._read()
            self._polled = self._seen
            with contextlib.suppress(ConfigError):
                self._keys = read_config_bytes(data, str(self.path), env).keys
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
        with self.path.open("rb") as f:  # stat and content of the same file (inode)
            st = os.fstat(f.fileno())
            data = f.read()
        return (st.st_dev, st.st_ino, st.st_mtime_ns, len(data),
                hashlib.sha256(data).hexdigest()), data

    def check_now(self) -> ReloadResult:
        """Check the file once and reload if its content changed (what the thread runs)."""
        with self._lock:
            try:
                fp, data = self._read()
            except OSError as err:
                missing: _Fingerprint = (-1, -1, -1, -1,
                                         f"unreadable: {err.strerror or err}")
                self._polled = missing
                if self._seen == missing:
                    return ReloadResult("unchanged")
                self._seen = missing
                return self._fail(f"{self.path}: cannot read: {err.strerror or err}")
            previous, self._polled = self._polled, fp
            if self._seen is not None and fp[_SHA] == self._seen[_SHA]:
                self._seen = fp  # touched, same content
                return ReloadResult("unchanged")
            replaced = (previous is not None and previous[0] >= 0
                        and previous[_INODE] != fp[_INODE])
            if not replaced and fp != previous:
                return ReloadResult("pending")  # changed in place: maybe still being written
            self._seen = fp
            try:
                new = read_config_bytes(data, str(self.path), self._env)
            except ConfigError as err:
                return self._fail(str(err))
            return self._judge(new)

    def _judge(self, new: ConfigFile) -> ReloadResult:
        changed = diff_keys(self._current, new.config)
        if not changed:
            self._keys = new.keys
            self.last_error = None  # the file says what is in force: nothing is wrong
            return ReloadResult("unchanged")
        unknown = sorted(k for k in new.confirmed_removals if not is_limit(k))
        if unknown:
            return self._fail(f"{self.path}: {CONFIRM_LIMIT_REMOVAL}: {', '.join(unknown)} "
                              "is not a limit key (see LIMIT_KEYS in docs/config.md)", changed)
        removed = sorted(k for k in self._keys - new.keys
                         if is_limit(k) and k in changed and k not in new.confirmed_removals)
        if removed:
            keys = ", ".join(removed)
            return self._fail(f"limit_keys_removed: {keys} (keep them, or confirm with "
                              f"{CONFIRM_LIMIT_REMOVAL}: [{keys}])", changed)
        blocked = [k for k in changed if not is_live(k)]
        if blocked:
            return self._fail(f"restart_required: {', '.join(blocked)}", changed)
        old = self._current
        try:
            self._apply(new.config)
        except Exception as err:
            self._restore(old)
            return self._fail(f"apply failed: {type(err).__name__}: {err}", changed)
        self._current, self._keys = new.config, new.keys
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
