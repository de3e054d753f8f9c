"""``himari-l3 demo``: the whole system on built-in, seeded synthetic data (no network, no files).

A regime-switching market for three symbols (a common factor, so they correlate), three
strategies signalling every hour, and two stress episodes where Layer 1's cascade readings
spike. It runs Phase 1 on the first hour's signals, Phase 2 over the whole period, then
Phase 3 with a seeded mock RL model whose endpoint suffers an outage halfway through, so the
circuit breaker opens, decisions fall back to the baseline, and a probe later closes it.
Last, the closed loop a paper deployment runs: Phase 2 through the book, the paper executor
filling its intents (fees, slippage, impact, partial fills), the trading states judging
every hour (a stress episode's cascade EXIT halts a symbol; a cool-down lifts it), an
operator's kill switch that flattens the book, and the operator's resume a day later.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from ._clock import ManualClock
from .book import Layer3Book
from .book.desk import ExecutionDesk
from .config.schema import Layer3Config, parse_config
from .contracts import CascadeIndicators, MarketRegime, TacticalAction, TacticalSignal
from .events import Event
from .executors import PaperExecutor
from .fills import SimFill
from .observability.metrics import Layer3Metrics
from .observability.prometheus import PrometheusObserver
from .observers import Observer
from .phase1 import Layer3Phase1
from .phase2 import Layer3Phase2Portfolio
from .phase3 import Layer3Phase3Hybrid
from .resilience import CircuitBreaker, CircuitEvent
from .rl.mock import MockTransformerRLClient
from .trading import TradingState, TradingStateChanged

__all__ = ["SyntheticMarket", "main", "run_demo"]

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
STRATEGIES = ("momentum", "mean_reversion", "breakout")
# Hourly drift and volatility per regime; the chain is sticky (p_stay) so regimes persist.
_REGIMES = {
    MarketRegime.TRENDING_UP: (0.0008, 0.006),
    MarketRegime.TRENDING_DOWN: (-0.0008, 0.007),
    MarketRegime.RANGING: (0.0, 0.004),
    MarketRegime.HIGH_VOLATILITY: (0.0, 0.015),
    MarketRegime.CRISIS: (-0.004, 0.03),
}
HOUR_NS = 3_600_000_000_000


@dataclass
class Bar:
    step: int
    timestamp_ns: int
    prices: dict[str, float]
    returns: dict[str, float]
    regime: MarketRegime
    stress: float  # 0 calm .. 1 full cascade


class SyntheticMarket:
    """Seeded regime-switching prices with stress episodes."""

    def __init__(self, seed: int = 7, steps: int = 600, p_stay: float = 0.97) -> None:
        self.rng = random.Random(seed)
        self.steps = steps
        self.p_stay = p_stay
        self.stress_windows = [(int(steps * 0.30), int(steps * 0.30) + 12),
                               (int(steps * 0.75), int(steps * 0.75) + 8)]

    def bars(self) -> list[Bar]:
        rng = self.rng
        prices = {"BTC/USDT": 60_000.0, "ETH/USDT": 3_000.0, "SOL/USDT": 150.0}
        betas = {"BTC/USDT": 1.0, "ETH/USDT": 1.2, "SOL/USDT": 1.5}
        regime = MarketRegime.RANGING
        out = []
        for t in range(self.steps):
            stress = max((1.0 - abs(t - (a + b) / 2) / ((b - a) / 2) for a, b in
                          self.stress_windows if a <= t <= b), default=0.0)
            if stress > 0.5:
                regime = MarketRegime.CRISIS
            elif rng.random() > self.p_stay:
                regime = rng.choice([r for r in _REGIMES if r is not MarketRegime.CRISIS])
            mu, sigma = _REGIMES[regime]
            factor = rng.gauss(mu, sigma)
            rets = {}
            for sym in SYMBOLS:
                r = betas[sym] * factor + rng.gauss(0.0, sigma * 0.6)
                rets[sym] = max(-0.5, min(0.5, r))
                prices[sym] *= 1.0 + rets[sym]
            out.append(Bar(t, 1_735_689_600_000_000_000 + t * HOUR_NS, dict(prices), rets,
                           regime, stress))
        return out


def cascade_for(bar: Bar, symbol: str) -> CascadeIndicators:
    s = bar.stress
    return CascadeIndicators(
        funding_rate=0.0001 + 0.0015 * s, oi_change_pct=-0.15 * s,
        volume_ratio=1.0 + 3.0 * s, onchain_whale_pressure=min(1.0, 0.1 + 0.9 * s),
        exchange_netflow_zscore=3.5 * s,
        liquidation_volume_24h=1e6 * (1 + 50 * s) if symbol == "BTC/USDT" else None)


def signals_for(history: list[Bar], bar: Bar) -> list[TacticalSignal]:
    """Three simple strategies using only bars up to and including ``bar``."""
    out = []
    for sym in SYMBOLS:
        closes = [b.prices[sym] for b in history[-48:]]
        rets = [b.returns[sym] for b in history[-48:]]
        vol = max(0.002, math.sqrt(sum(r * r for r in rets) / max(1, len(rets))))
        horizon_vol = vol * math.sqrt(8)  # an 8-hour holding horizon
        fast = sum(closes[-6:]) / len(closes[-6:])
        slow = sum(closes) / len(closes)
        trend = (fast - slow) / slow
        z = (closes[-1] - slow) / (slow * max(vol, 1e-4) * 4)
        views = {
            "momentum": trend / max(horizon_vol, 1e-4),
            "mean_reversion": -z,
            "breakout": (closes[-1] - max(closes[:-1] or closes)) / closes[-1] / vol,
        }
        for strat, view in views.items():
            if abs(view) < 0.15:
                action = TacticalAction.HOLD
            elif abs(view) > 1.0:
                action = TacticalAction.STRONG_BUY if view > 0 else TacticalAction.STRONG_SELL
            else:
                action = TacticalAction.BUY if view > 0 else TacticalAction.SELL
            conf = 0.5 + 0.45 * math.tanh(abs(view))
            out.append(TacticalSignal(
                strat, sym, action, conf, min(1.0, bar.stress + vol * 20), bar.regime,
                bar.timestamp_ns, expected_return=min(0.06, abs(view) * horizon_vol * 0.5),
                predicted_volatility=horizon_vol, sentiment_score=0.5 + 0.3 * math.tanh(trend * 50),
                sentiment_confidence=0.6))
    return out


def run_demo(out_dir: Path, seed: int = 7, steps: int = 600) -> dict[str, Any]:
    """Run the three phases; write the report into ``out_dir``; return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bars = SyntheticMarket(seed, steps).bars()
    warm = 48
    registry = CollectorRegistry()
    observer = PrometheusObserver(Layer3Metrics(registry))
    summary: dict[str, Any] = {"seed": seed, "steps": steps, "symbols": list(SYMBOLS),
                               "strategies": list(STRATEGIES)}

    summary["phase1"] = _demo_phase1(bars, warm, observer)
    # Phase 2 over the whole period.
    p2 = Layer3Phase2Portfolio(portfolio_value=100_000, enable_metrics=False, observer=observer)
    summary["phase2"], alloc_rows = _replay(p2.process_multi_strategy_signals, p2, bars, warm)
    p2.export_weight_history(out_dir / "weight_history.csv")
    summary["phase3"], events = _demo_phase3(bars, warm, steps, seed, observer)
    summary["paper"], paper_rows = _demo_paper(bars, warm, observer)
    _write_files(out_dir, alloc_rows, events)
    _write_paper(out_dir, summary["paper"]["transitions"], paper_rows)
    (out_dir / "metrics.prom").write_bytes(generate_latest(registry))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n",
                                          encoding="utf-8")
    return summary


def _demo_phase1(bars: list[Bar], warm: int, observer: PrometheusObserver,
                 ) -> list[dict[str, Any]]:
    """Phase 1: one signal at a time, on a calm hour and on the worst stress hour."""
    p1 = Layer3Phase1(portfolio_value=100_000, kelly_fraction=0.25, enable_metrics=False,
                      observer=observer)
    worst = max(bars[warm:], key=lambda b: b.stress)
    rows = []
    for bar in (bars[warm], worst):
        for sig in signals_for(bars[: bar.step + 1], bar)[:3]:
            d = p1.calculate_position(sig, cascade_for(bar, sig.symbol), bar.prices[sig.symbol])
            rows.append({"step": bar.step, "strategy": sig.strategy_id,
                         "symbol": sig.symbol, "action": sig.action.value,
                         "size_usd": round(d.position_size_usd, 2),
                         "cascade_score": round(d.cascade_risk_score, 3),
                         "recommendation": d.cascade_recommendation.value,
                         "regime": d.current_regime.value,
                         "status": d.validation_status.value,
                         "reasons": list(d.reason_codes)})
    return rows


def _demo_phase3(bars: list[Bar], warm: int, steps: int, seed: int,
                 observer: PrometheusObserver) -> tuple[dict[str, Any], list[CircuitEvent]]:
    """Phase 3: mock RL, with an outage of its endpoint in the middle of the run."""
    # Wall time starts at the end of the data, so no bar's returns row is stamped ahead of
    # the clock (the correlation monitor refuses rows from the future); the monotonic part
    # moves ten seconds per hourly step for the breaker.
    clock = ManualClock(wall_ns=bars[-1].timestamp_ns)
    events: list[CircuitEvent] = []
    breaker = CircuitBreaker("rl", clock=clock, listeners=[events.append])
    client = MockTransformerRLClient(success_rate=0.99, seed=seed, circuit_breaker=breaker,
                                     clock=clock)
    p3 = Layer3Phase3Hybrid(portfolio_value=100_000, enable_rl=True, enable_metrics=False,
                            rl_client=client, observer=observer, clock=clock)
    outage = (warm + (steps - warm) // 3, warm + (steps - warm) // 2)

    def step3(sigs: list[TacticalSignal], cas: dict[str, CascadeIndicators],
              prices: dict[str, float]) -> Any:
        clock.advance(10.0)  # ten seconds of wall time between hourly decisions
        t = _current_step[0]
        client.success_rate = 0.0 if outage[0] <= t < outage[1] else 0.99
        return p3.process_signals(sigs, cas, prices)

    _current_step[0] = 0
    out, _ = _replay(step3, p3.phase2, bars, warm, hybrid=p3)
    state = p3.get_state()
    out.update({
        "rl_decisions": state["rl_decisions"], "fallback_decisions": state["fallback_decisions"],
        "rl_usage_rate": state["rl_usage_rate"], "fallback_reasons": state["fallback_reasons"],
        "outage_steps": list(outage),
        "breaker_transitions": [f"{e.old_state.value} -> {e.new_state.value} ({e.reason})"
                                for e in events if e.kind == "state_change"],
        "breaker": state["circuit_breaker"],
        "performance": p3.get_performance_comparison(),
    })
    p3.stop()
    return out, events


def _write_files(out_dir: Path, alloc_rows: list[list[Any]],
                 events: list[CircuitEvent]) -> None:
    with (out_dir / "allocations_phase2.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "symbol", "allocation_usd"])
        w.writerows(alloc_rows)
    with (out_dir / "breaker_events.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["clock_sec", "kind", "old_state", "new_state", "reason"])
        w.writerows([e.timestamp, e.kind, e.old_state.value, e.new_state.value, e.reason]
                     for e in events)


PAPER = "paper"
# A thin market: each symbol trades $20k an hour, so the participation cap (10 %) makes a
# larger order fill over several hours (partial fills), and impact grows with its size.
_HOURLY_VOLUME_USD = 20_000.0
_PAPER_FILL_FIELDS = ("step", "symbol", "side", "quantity", "price", "reference_price",
                      "slippage_bps", "fee", "partial", "reduce_only")


class _Transitions(Observer):
    """Keeps every trading-state transition (with the demo's step) and passes each event on
    to the metrics."""

    def __init__(self, inner: Observer) -> None:
        self.inner = inner
        self.step = 0
        self.rows: list[dict[str, Any]] = []

    def emit(self, event: Event) -> None:
        if isinstance(event, TradingStateChanged) and event.is_transition:
            self.rows.append({"step": self.step, "scope": event.symbol or "portfolio",
                              "from": event.old.value, "to": event.new.value,
                              "reason": event.reason.value, "detail": event.detail})
        self.inner.emit(event)


def _paper_setup(bars: list[Bar], warm: int, observer: PrometheusObserver,
                 ) -> tuple[Layer3Book, ExecutionDesk, ManualClock, _Transitions]:
    """The book (Phase 3, RL off: the Phase 2 baseline) on a clock at the bars' own time,
    the paper executor with the default fill model, trading states with a 6-hour
    cool-down."""
    clock = ManualClock(start=0.0, wall_ns=bars[warm].timestamp_ns)
    tee = _Transitions(observer)
    config = parse_config(Layer3Config, {"portfolio_value": 100_000.0,
                                         "trading_state": {"cooldown_sec": 6 * 3600.0}})
    book = Layer3Book(config=config, observer=tee, clock=clock)
    desk = ExecutionDesk(book.book, PaperExecutor(config.execution.fill_model),
                         apply_fills=book.apply_fills)
    return book, desk, clock, tee


def _demo_paper(bars: list[Bar], warm: int, observer: PrometheusObserver,
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The closed loop of a paper deployment, hour by hour (module docstring): allocate
    through the book, the paper executor fills the intents against the hour's prices and
    volumes; the operator halts at the first hour past 40 % of the run in which the book
    holds $500 or more, and resumes 24 hours later (sooner on a short run)."""
    book, desk, clock, tee = _paper_setup(bars, warm, observer)
    pb = book.book.portfolio(PAPER)
    assert pb is not None
    planned, operator = warm + (len(bars) - warm) * 40 // 100, [-1, -1]
    fills: list[dict[str, Any]] = []
    states: Counter[str] = Counter()
    closed = 0
    for t in range(warm, len(bars)):
        bar = bars[t]
        clock.advance((bar.timestamp_ns - clock.time_ns()) / 1e9)
        tee.step = t
        held = sum(abs(pb.position_qty(s)) * bar.prices[s] for s in SYMBOLS)
        if operator[0] < 0 and t >= planned and held >= 500.0:
            operator = [t, t + max(2, min(24, (len(bars) - t) // 2))]
            book.set_trading_state(TradingState.HALTED, "kill switch drill",
                                   portfolio=PAPER, request_id=3 * t + 1)
        elif t == operator[1]:
            book.set_trading_state(TradingState.ACTIVE, "drill over", portfolio=PAPER,
                                   request_id=3 * t + 1)
        book.phase2.update_correlations(bar.returns, bar.timestamp_ns)
        book.allocate(signals_for(bars[: t + 1], bar),
                      {s: cascade_for(bar, s) for s in SYMBOLS}, bar.prices,
                      portfolio=PAPER, decision_id=3 * t + 2)
        desk.sync()
        step = desk.observe(bar.prices, clock.time_ns(), 3 * t + 3,
                            volumes={s: _HOURLY_VOLUME_USD / p for s, p in bar.prices.items()})
        fills += [_fill_row(t, f) for f in step.fills]
        closed += len(step.fills_result.closed_trades) if step.fills_result else 0
        states[pb.trading.state.value] += 1
    return _paper_summary(book, tee, fills, states, closed, (operator[0], operator[1])), fills


def _fill_row(step: int, fill: SimFill) -> dict[str, Any]:
    d = fill.to_dict()
    return {"step": step, **{k: d[k] for k in _PAPER_FILL_FIELDS[1:-2]},
            "partial": not fill.done, "reduce_only": fill.reduce_only}


def _paper_summary(book: Layer3Book, tee: _Transitions, fills: list[dict[str, Any]],
                   states: Counter[str], closed: int,
                   operator: tuple[int, int]) -> dict[str, Any]:
    view = book.positions(PAPER)
    return {
        "decisions": sum(states.values()), "fills": len(fills),
        "partial_fills": sum(f["partial"] for f in fills),
        "reduce_only_fills": sum(f["reduce_only"] for f in fills),
        "traded_usd": round(sum(f["quantity"] * f["price"] for f in fills), 2),
        "fees_paid": round(view["fees_paid"], 2), "closed_trades": closed,
        "final_equity": round(view["equity"], 2),
        "total_return_pct": round(100 * (view["equity"] / 100_000 - 1), 3),
        "hours_by_state": {s.value: states[s.value] for s in TradingState},
        "operator": {"halt_step": operator[0], "resume_step": operator[1]},
        "transitions": tee.rows,
        "fills_at_halt": [f for f in fills if f["step"] == operator[0]],
    }


def _write_paper(out_dir: Path, transitions: list[dict[str, Any]],
                 fills: list[dict[str, Any]]) -> None:
    with (out_dir / "trading_states.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["step", "scope", "from", "to", "reason", "detail"])
        w.writeheader()
        w.writerows(transitions)
    with (out_dir / "paper_fills.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, _PAPER_FILL_FIELDS)
        w.writeheader()
        w.writerows(fills)


_current_step = [0]


def _replay(process: Any, p2: Layer3Phase2Portfolio, bars: list[Bar], warm: int,
            hybrid: Layer3Phase3Hybrid | None = None) -> tuple[dict[str, Any], list[list[Any]]]:
    equity = 100_000.0
    peak, max_dd = equity, 0.0
    recs: Counter[str] = Counter()
    binding: Counter[str] = Counter()
    util: list[float] = []
    rows: list[list[Any]] = []
    drifted = 0
    last: dict[str, float] = {}
    for t in range(warm, len(bars)):
        bar = bars[t]
        _current_step[0] = t
        # Realised P&L of the targets held over the last hour, then learn from it.
        pnl = sum(usd * bar.returns[sym] for sym, usd in last.items())
        equity += pnl
        peak, max_dd = max(peak, equity), max(max_dd, (peak - equity) / peak)
        for sym, usd in last.items():
            if usd != 0.0 and hybrid is not None:
                hybrid.record_outcome(sym, math.copysign(1.0, usd) * bar.returns[sym],
                                      used_rl=_path(hybrid, sym) == "rl")
        p2.update_correlations(bar.returns, bar.timestamp_ns)
        p2.set_portfolio_value(equity)
        sigs = signals_for(bars[: t + 1], bar)
        alloc = process(sigs, {s: cascade_for(bar, s) for s in SYMBOLS}, bar.prices)
        for s in alloc.trace.get("signals", []):
            recs.update(r for r in s["reasons"] if r.startswith("CASCADE"))
        binding.update(v for v in alloc.binding_limits.values() if v != "none")
        util.append(alloc.utilization_pct)
        drifted += bool(alloc.drifted_strategies)
        last = dict(alloc.allocations)
        rows.extend([t, sym, round(usd, 2)] for sym, usd in sorted(last.items()))
    final = p2.last_allocation_
    return {
        "decisions": len(bars) - warm, "final_equity": round(equity, 2),
        "total_return_pct": round(100 * (equity / 100_000 - 1), 3),
        "max_drawdown_pct": round(100 * max_dd, 3),
        "mean_utilization_pct": round(sum(util) / len(util), 2),
        "max_utilization_pct": round(max(util), 2),
        "cascade_events": dict(recs), "binding_limits": dict(binding),
        "drift_flags": drifted,
        "final_allocations": {k: round(v, 2) for k, v in (final.allocations.items()
                                                          if final else [])},
        "final_strategy_weights": ({k: round(v, 4) for k, v in final.strategy_weights.items()}
                                   if final else {}),
    }, rows


def _path(hybrid: Layer3Phase3Hybrid, symbol: str) -> str:
    last = hybrid.phase2.last_allocation_
    return last.provenance.get(symbol, {}).get("path", "baseline") if last else "baseline"


def _print(summary: dict[str, Any], out_dir: Path) -> None:
    p = print
    p("HIMARI OPUS V2 Layer 3 - demo on seeded synthetic data "
      f"(seed {summary['seed']}, {summary['steps']} hourly bars, {len(SYMBOLS)} symbols, "
      f"{len(STRATEGIES)} strategies)")
    p("=" * 88)
    p("\nPhase 1 - one signal at a time (a calm hour, then the worst stress hour)")
    p(f"  {'step':>4} {'strategy':<15}{'symbol':<10}{'action':<12}{'size USD':>11} "
      f"{'cascade':>8} {'advice':<11}{'regime':<16}{'status':<7}")
    for r in summary["phase1"]:
        p(f"  {r['step']:>4} {r['strategy']:<15}{r['symbol']:<10}{r['action']:<12}"
          f"{r['size_usd']:>11,.2f} {r['cascade_score']:>8.3f} {r['recommendation']:<11}"
          f"{r['regime']:<16}{r['status']:<7}")
    for name in ("phase2", "phase3"):
        s = summary[name]
        title = ("Phase 2 - multi-strategy portfolio" if name == "phase2"
                 else "Phase 3 - hybrid with mock RL and an RL outage")
        p(f"\n{title}")
        p(f"  decisions {s['decisions']}, final equity ${s['final_equity']:,.2f} "
          f"({s['total_return_pct']:+.2f} %), max drawdown {s['max_drawdown_pct']:.2f} %")
        p(f"  utilisation: mean {s['mean_utilization_pct']:.1f} %, max "
          f"{s['max_utilization_pct']:.1f} %")
        p(f"  cascade events: {s['cascade_events'] or 'none'}")
        p(f"  limits that bound: {s['binding_limits'] or 'none'}; drift flags: "
          f"{s['drift_flags']}")
        p("  final allocations: " + ", ".join(f"{k} ${v:,.0f}"
                                              for k, v in s["final_allocations"].items()))
    s = summary["phase3"]
    p(f"\n  RL decisions {s['rl_decisions']}, fallback decisions {s['fallback_decisions']} "
      f"(RL usage {100 * s['rl_usage_rate']:.1f} %); outage at steps "
      f"{s['outage_steps'][0]}-{s['outage_steps'][1]}")
    p(f"  fallback reasons: {s['fallback_reasons']}")
    trans = s["breaker_transitions"]
    opened = sum(1 for t in trans if "-> open" in t)
    p(f"  breaker transitions: {len(trans)} ({opened} openings); the first ones:")
    for line in trans[:6]:
        p(f"    {line}")
    p(f"  breaker now: {s['breaker']['state']}, timeout {s['breaker']['current_timeout_sec']:g}s,"
      f" success rate {100 * s['breaker']['success_rate']:.1f} %")
    perf = s["performance"]
    adv = perf["rl_advantage"]
    p(f"  RL path: {perf['rl']['trades']} outcomes, mean {perf['rl']['mean']:+.5f}; "
      f"baseline: {perf['baseline']['trades']} outcomes, mean "
      f"{perf['baseline']['mean']:+.5f}; RL advantage "
      f"{'n/a' if adv is None else f'{adv:+.5f}'}")
    _print_paper(summary["paper"])
    p(f"\nReport written to {out_dir}/ (summary.json, allocations_phase2.csv, "
      "weight_history.csv, breaker_events.csv, trading_states.csv, paper_fills.csv, "
      "metrics.prom)")


def _print_paper(s: dict[str, Any]) -> None:
    p = print
    p("\nTrading states and the paper executor - the book fills its own intents")
    p(f"  decisions {s['decisions']}, final equity ${s['final_equity']:,.2f} "
      f"({s['total_return_pct']:+.2f} %)")
    p(f"  paper fills {s['fills']} ({s['partial_fills']} partial, {s['reduce_only_fills']} "
      f"reduce-only), traded ${s['traded_usd']:,.0f}, fees ${s['fees_paid']:,.2f}; "
      f"{s['closed_trades']} closed trades taught the learners")
    hours = s["hours_by_state"]
    p("  hours by portfolio state: " + ", ".join(f"{k} {v}" for k, v in hours.items()))
    rows = s["transitions"]
    p(f"  state transitions ({len(rows)}; operator halt at step "
      f"{s['operator']['halt_step']}, resume at {s['operator']['resume_step']}):")
    for r in rows[:14]:
        p(f"    {r['step']:>4} {r['scope']:<10} {r['from']:>8} -> {r['to']:<8} "
          f"{r['reason']:<12} {r['detail'][:72]}")
    if len(rows) > 14:
        p(f"    ... {len(rows) - 14} more in trading_states.csv")
    if s["operator"]["halt_step"] < 0:
        p("  (the book never held $500: no kill switch drill in so short a run)")
        return
    p(f"  paper fills at the kill switch (step {s['operator']['halt_step']}):")
    for f in s["fills_at_halt"]:
        p(f"    {f['symbol']:<9} {f['side']:<4} {f['quantity']:>12.6f} @ {f['price']:>11,.2f}"
          f" (ref {f['reference_price']:,.2f}, {f['slippage_bps']:.1f} bps, fee "
          f"${f['fee']:,.2f}{', partial' if f['partial'] else ''}"
          f"{', reduce-only' if f['reduce_only'] else ''})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="himari-l3 demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="himari_l3_demo_report",
                    help="report folder (default ./himari_l3_demo_report)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--steps", type=int, default=600, help="hourly bars to simulate (>= 100)")
    args = ap.parse_args(argv)
    if args.steps < 100:
        ap.error(f"--steps was {args.steps}, expected >= 100")
    out = Path(args.out).resolve()
    # The summary reports every breaker transition; its per-transition warnings would only
    # interleave with the printout here.
    logging.getLogger("himari_l3.resilience").setLevel(logging.ERROR)
    summary = run_demo(out, args.seed, args.steps)
    _print(summary, out)
    return 0
