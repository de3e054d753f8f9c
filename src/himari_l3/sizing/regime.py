"""Per-symbol regime hysteresis: slow to loosen, fast to tighten.

Each symbol keeps its own recent regime observations and, for each trade direction, the
regime in effect. A direction's multiplier table is the configured long table, mirrored for
shorts (a downtrend favours a short). On every observation, for each direction:

* **loosen** (move to a larger multiplier) only to the safest regime seen in the last
  ``confirmation_periods`` observations, so a looser regime needs that many confirmations;
* **tighten** (move to a smaller multiplier) to the loosest regime seen in the last
  ``escalation_periods`` observations, so a safer regime takes effect within that many.

The first observation of a symbol sets its state. A *false flip* is a raw regime change
whose run ended before reaching ``confirmation_periods`` observations.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..config.schema import RegimeConfig
from ..contracts import MarketRegime

__all__ = ["RegimeTracker", "SymbolRegimeState"]

_MIRROR = {
    MarketRegime.TRENDING_UP: MarketRegime.TRENDING_DOWN,
    MarketRegime.TRENDING_DOWN: MarketRegime.TRENDING_UP,
}


@dataclass(slots=True)
class SymbolRegimeState:
    """Learned regime state of one symbol."""

    recent: deque[MarketRegime]
    effective_long: MarketRegime
    effective_short: MarketRegime
    run_length: int = 1
    run_is_flip: bool = False
    observations: int = 1
    raw_changes: int = 0
    effective_changes: int = 0
    false_flips: int = 0
    last_change: str = field(default="none")  # "tighten" / "loosen" / "none"
    # What the short side observed, when it differs from the long side's view (Phase 2
    # observes the safest regime for each side when strategies disagree); None: same.
    recent_short: deque[MarketRegime] | None = None


class RegimeTracker:
    """Regime state per symbol; CRISIS on one symbol never touches another's multiplier."""

    def __init__(self, config: RegimeConfig) -> None:
        self.states_: dict[str, SymbolRegimeState] = {}
        self.reconfigure(config)

    def reconfigure(self, config: RegimeConfig) -> None:
        """New multipliers / periods; each symbol keeps its state and newest observations."""
        self.config = config
        m = config.multipliers
        self._long = {r: float(getattr(m, r.value)) for r in MarketRegime}
        self._short = {r: self._long[_MIRROR.get(r, r)] for r in MarketRegime}
        self._window = max(config.confirmation_periods, config.escalation_periods)
        for st in self.states_.values():
            st.recent = deque(st.recent, maxlen=self._window)
            if st.recent_short is not None:
                st.recent_short = deque(st.recent_short, maxlen=self._window)

    def table(self, direction: int) -> dict[MarketRegime, float]:
        return self._short if direction < 0 else self._long

    def observe(self, symbol: str, regime: MarketRegime,
                short_regime: MarketRegime | None = None) -> SymbolRegimeState:
        """Record one observation for ``symbol`` and update both directions' state.

        ``short_regime`` (default: ``regime``) is what the short side observes; the raw
        change and false-flip counts follow the long side's observations."""
        st = self.states_.get(symbol)
        if st is None:
            st = SymbolRegimeState(deque([regime], maxlen=self._window), regime,
                                   short_regime or regime)
            if short_regime is not None and short_regime != regime:
                st.recent_short = deque([short_regime], maxlen=self._window)
            self.states_[symbol] = st
            return st
        prev = st.recent[-1]
        if (regime is prev and regime is st.effective_long and regime is st.effective_short
                and st.recent_short is None and short_regime in (None, regime)):
            # Steady state: observing the regime both sides already apply can neither loosen
            # nor tighten anything; only the counters move.
            st.observations += 1
            st.run_length += 1
            st.recent.append(regime)
            st.last_change = "none"
            return st
        self._count_raw(st, regime, prev)
        self._record(st, regime, short_regime)
        self._advance(st)
        return st

    def _count_raw(self, st: SymbolRegimeState, regime: MarketRegime,
                   prev: MarketRegime) -> None:
        """Observation, raw-change and false-flip counters (the long side's view)."""
        st.observations += 1
        if regime != prev:
            st.raw_changes += 1
            if st.run_is_flip and st.run_length < self.config.confirmation_periods:
                st.false_flips += 1
            st.run_length, st.run_is_flip = 1, True
        else:
            st.run_length += 1

    def _record(self, st: SymbolRegimeState, regime: MarketRegime,
                short_regime: MarketRegime | None) -> None:
        """Append the observation to each side's window (the short side keeps its own window
        only once it has diverged)."""
        st.recent.append(regime)
        if st.recent_short is None and short_regime is not None and short_regime != regime:
            st.recent_short = deque(st.recent, maxlen=self._window)  # diverges from here
            st.recent_short[-1] = short_regime
        elif st.recent_short is not None:
            st.recent_short.append(short_regime or regime)

    def _advance(self, st: SymbolRegimeState) -> None:
        """One hysteresis step per side; ``last_change`` says whether anything tightened or
        loosened."""
        st.last_change = "none"
        new_long = self._step(st.effective_long, st.recent, self._long)
        new_short = self._step(st.effective_short, st.recent_short or st.recent, self._short)
        for old, new, table in ((st.effective_long, new_long, self._long),
                                (st.effective_short, new_short, self._short)):
            if new != old:
                st.effective_changes += 1
                # Judge each side by its own table (a downtrend loosens a short), and let a
                # tightening on either side win over a loosening on the other.
                if table[new] < table[old]:
                    st.last_change = "tighten"
                elif st.last_change == "none":
                    st.last_change = "loosen"
        st.effective_long, st.effective_short = new_long, new_short

    def _step(
        self, current: MarketRegime, recent: deque[MarketRegime], table: dict[MarketRegime, float]
    ) -> MarketRegime:
        cfg = self.config
        n = len(recent)
        conf, esc = cfg.confirmation_periods, cfg.escalation_periods
        if n >= conf:
            # The deque holds max(conf, esc) items: when it is conf long, take all of it.
            window: deque[MarketRegime] | list[MarketRegime] = (
                recent if n == conf else list(recent)[-conf:])
            safest = min(window, key=table.__getitem__)
            if table[safest] > table[current]:
                current = safest
        if n >= esc:
            tail = [recent[-1]] if esc == 1 else list(recent)[-esc:]
            loosest = max(tail, key=table.__getitem__)
            if table[loosest] < table[current]:
                current = loosest
        return current

    def effective(self, st: SymbolRegimeState, direction: int) -> tuple[MarketRegime, float]:
        """(regime in effect, multiplier) for a trade in ``direction``."""
        if direction < 0:
            return st.effective_short, self._short[st.effective_short]
        return st.effective_long, self._long[st.effective_long]

    def export_state(self) -> dict[str, Any]:
        return {
            sym: {
                "recent": [r.value for r in st.recent],
                "effective_long": st.effective_long.value,
                "effective_short": st.effective_short.value,
                "run_length": st.run_length, "run_is_flip": st.run_is_flip,
                "observations": st.observations, "raw_changes": st.raw_changes,
                "effective_changes": st.effective_changes, "false_flips": st.false_flips,
                "last_change": st.last_change,
                "recent_short": (None if st.recent_short is None
                                 else [r.value for r in st.recent_short]),
            }
            for sym, st in sorted(self.states_.items())
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.states_ = {
            sym: SymbolRegimeState(
                deque((MarketRegime(r) for r in d["recent"]), maxlen=self._window),
                MarketRegime(d["effective_long"]), MarketRegime(d["effective_short"]),
                int(d["run_length"]), bool(d["run_is_flip"]), int(d["observations"]),
                int(d["raw_changes"]), int(d["effective_changes"]), int(d["false_flips"]),
                str(d["last_change"]),
                None if d.get("recent_short") is None else deque(
                    (MarketRegime(r) for r in d["recent_short"]), maxlen=self._window),
            )
            for sym, d in state.items()
        }
