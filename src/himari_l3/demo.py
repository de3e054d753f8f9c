"""``himari-l3 demo``: the whole system on built-in, seeded synthetic data (no network, no files).

A regime-switching market for three symbols (a common factor, so they correlate), three
strategies signalling every hour, and two stress episodes where Layer 1's cascade readings
spike. It runs Phase 1 on the first hour's signals, Phase 2 over the whole period, then
Phase 3 with a seeded mock RL model whose endpoint suffers an outage halfway through, so the
circuit breaker opens, decisions fall back to the baseline, and a probe later closes it.
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
from .contracts import CascadeIndicators, MarketRegime, TacticalAction, TacticalSignal
from .observability.metrics import Layer3Metrics
from .observability.prometheus import PrometheusObserver
from .phase1 import Layer3Phase1
from .phase2 import Layer3Phase2Portfolio
from .phase3 import Layer3Phase3Hybrid
from .resilience import CircuitBreaker, CircuitEvent
from .rl.mock import MockTransformerRLClient

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
    _write_files(out_dir, alloc_rows, events)
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
    p(f"\nReport written to {out_dir}/ (summary.json, allocations_phase2.csv, "
      "weight_history.csv, breaker_events.csv, metrics.prom)")


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
