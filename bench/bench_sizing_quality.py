"""Sizing quality against a known optimum: planted-edge strategies through the real Phase 1.

Each strategy's trades have a planted win probability ``p`` and payoffs ``+u·a`` / ``−d·a``
per unit of notional (``a`` = move scale, 2 % or 20 %), so its growth-optimal notional Kelly
fraction and log growth are known in closed form:

    f* = p/(d·a) − (1 − p)/(u·a)          g(f) = p·ln(1 + f·u·a) + (1 − p)·ln(1 − f·d·a)

A run sizes ``trades`` consecutive BUY signals of one strategy with ``Layer3Phase1`` (the
shipped sizing path: Kelly, conformal, regime, cascade, caps) against the current equity,
draws the outcome, compounds the equity and feeds the outcome back through
``update_from_trade_result`` — every outcome, or only those of trades that were taken. The
target is ``g(min(fraction·f*, caps))``; the report compares realised log growth with it.

Run ``.venv/bin/python bench/bench_sizing_quality.py [--quick]``: it prints the tables that
docs/sizing-math.md §2.3-2.4 records and writes ``bench/results/sizing_quality.json``
(``--lockout SEEDS`` and ``--cost`` run the two side measurements that section cites).
``simulate`` and ``summarise`` are imported by ``tests/property/test_sizing_quality.py``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from himari_l3 import CascadeIndicators, ManualClock, MarketRegime, TacticalAction
from himari_l3.config.schema import KellyConfig, SizingConfig
from himari_l3.contracts import TacticalSignal
from himari_l3.phase1 import Layer3Phase1
from himari_l3.sizing.kelly import BayesianKelly

RESULTS = Path(__file__).resolve().parent / "results" / "sizing_quality.json"
START_EQUITY = 100_000.0
LATE = 1_000  # "after learning": the last LATE trades of a run
SETTLE_BAND = 0.25  # a size within 25 % of its target ...
SETTLE_HOLD = 100  # ... for this many consecutive trades has settled


@dataclass(frozen=True)
class Strategy:
    """Planted trade distribution: +up·a with probability p, −down·a otherwise."""

    name: str
    p: float
    up: float
    down: float

    def mean(self, scale: float) -> float:
        return scale * (self.p * self.up - (1.0 - self.p) * self.down)

    def std(self, scale: float) -> float:
        return scale * (self.up + self.down) * math.sqrt(self.p * (1.0 - self.p))

    def kelly(self, scale: float) -> float:
        """Growth-optimal notional fraction f* (negative: the trade has no edge)."""
        return self.p / (self.down * scale) - (1.0 - self.p) / (self.up * scale)

    def growth(self, f: float, scale: float) -> float:
        """Expected log growth per trade at notional fraction f."""
        return (self.p * math.log1p(f * self.up * scale)
                + (1.0 - self.p) * math.log1p(-f * self.down * scale))


EDGE = (
    Strategy("coin55", 0.55, 1.0, 1.0),       # symmetric
    Strategy("payoff2to1", 0.40, 2.0, 1.0),   # asymmetric: wins twice the loss
    Strategy("lottery", 0.25, 4.0, 1.0),      # rare large wins (positive skew)
    Strategy("steady", 0.70, 0.6, 1.0),       # frequent small wins, rare large losses
)
LOSER = Strategy("loser", 0.45, 1.0, 1.0)      # Layer 2 reports it as coin55
STRATEGIES = (*EDGE, LOSER)
SCALES = (0.02, 0.20)
VARIANTS = ("calibrated", "overconfident", "overstated")
FEEDBACK = ("every", "traded")
MODELS = ("predictive", "binary", "gaussian")


def report_of(strategy: Strategy, scale: float, variant: str) -> tuple[float, float, float]:
    """(confidence, expected_return, predicted_volatility) that Layer 2 sends.

    calibrated: confidence = p, the true mean and std; overconfident: confidence p + 0.25
    (at most 0.95); overstated: twice the true mean. The loser is reported as if it were
    coin55 (Layer 2 believes in an edge it does not have)."""
    s = EDGE[0] if strategy is LOSER else strategy
    conf, mean, std = s.p, s.mean(scale), s.std(scale)
    if variant == "overconfident":
        conf = min(0.95, conf + 0.25)
    elif variant == "overstated":
        mean *= 2.0
    return conf, mean, std


def target_fraction(strategy: Strategy, scale: float, config: SizingConfig) -> float:
    """min(fraction·f*, Kelly cap, position cap): what a perfect quarter-Kelly sizer bets."""
    k = config.kelly
    return max(0.0, min(k.fraction * strategy.kelly(scale), k.max_fraction,
                        config.limits.max_position_pct))


@dataclass
class Run:
    """One strategy, scale, report variant, feedback policy and seed."""

    sizes: list[float] = field(default_factory=list)  # notional / equity, per trade
    logs: list[float] = field(default_factory=list)   # realised ln(1 + f r), per trade
    exploring: int = 0                                 # trades sized by the exploration floor
    max_drawdown: float = 0.0
    final_equity: float = START_EQUITY


def simulate(strategy: Strategy, scale: float, variant: str, feedback: str, seed: int,
             trades: int, config: SizingConfig) -> Run:
    """Size ``trades`` signals of ``strategy`` with a fresh ``Layer3Phase1``; see module doc."""
    engine = Layer3Phase1(START_EQUITY, enable_metrics=False, config=config,
                          clock=ManualClock())
    conf, mean, std = report_of(strategy, scale, variant)
    signal = TacticalSignal(
        strategy_id=strategy.name, symbol="PLANTED", action=TacticalAction.BUY,
        confidence=conf, risk_score=0.0, regime=MarketRegime.RANGING, timestamp_ns=1,
        expected_return=mean, predicted_volatility=std)
    calm = CascadeIndicators.calm()
    # Outcomes depend on (seed, strategy, scale) only: every model and policy sees the same.
    rng = random.Random(f"{seed}:{strategy.name}:{scale}")
    gain, loss = strategy.up * scale, -strategy.down * scale
    outcomes = [gain if rng.random() < strategy.p else loss for _ in range(trades)]
    run = Run()
    equity = peak = START_EQUITY
    every = feedback == "every"
    size_of = engine.calculate_position
    learn = engine.update_from_trade_result
    for r in outcomes:
        decision = size_of(signal, calm, 100.0, portfolio_value=equity)
        f = decision.position_size_usd / equity
        run.exploring += bool(decision.diagnostics["kelly"].get("exploring")) and f > 0.0
        growth = math.log1p(f * r)
        equity *= math.exp(growth)
        peak = max(peak, equity)
        run.max_drawdown = max(run.max_drawdown, 1.0 - equity / peak)
        run.sizes.append(f)
        run.logs.append(growth)
        if every or f > 0.0:
            learn(strategy.name, "PLANTED", r)
    run.final_equity = equity
    return run


def _settle(sizes: list[float], target: float) -> int | None:
    """First trade from which the size stays within SETTLE_BAND of target for SETTLE_HOLD
    trades (or to the end); None if it never does."""
    lo, hi = (1 - SETTLE_BAND) * target, (1 + SETTLE_BAND) * target
    run_start, run_len = 0, 0
    for i, f in enumerate(sizes):
        if lo <= f <= hi:
            if run_len == 0:
                run_start = i
            run_len += 1
            if run_len >= SETTLE_HOLD:
                return run_start
        else:
            run_len = 0
    return run_start if run_len > 0 and run_start + run_len == len(sizes) else None


def summarise(strategy: Strategy, scale: float, runs: list[Run],
              config: SizingConfig) -> dict[str, Any]:
    """Per-cell statistics over seeds (see module docstring and docs/sizing-math.md §2.3)."""
    late = min(LATE, len(runs[0].sizes))
    finals = sorted(r.final_equity / START_EQUITY for r in runs)
    out: dict[str, Any] = {
        "seeds": len(runs),
        "final_equity_median": statistics.median(finals),
        "final_equity_p5": finals[int(0.05 * (len(finals) - 1))],
        "max_drawdown_median": statistics.median(r.max_drawdown for r in runs),
        "max_drawdown_worst": max(r.max_drawdown for r in runs),
        "size_early_mean": statistics.fmean(statistics.fmean(r.sizes[:100]) for r in runs),
        "size_late_mean": statistics.fmean(statistics.fmean(r.sizes[-late:]) for r in runs),
        "betting_at_end": sum(r.sizes[-1] > 0.0 for r in runs) / len(runs),
        "exploring_share": sum(r.exploring for r in runs) / sum(len(r.sizes) for r in runs),
    }
    f_star = strategy.kelly(scale)
    if f_star <= 0.0:
        after = [f for r in runs for f in r.sizes[1_000:]] or [0.0]
        out.update(size_after_1000_mean=statistics.fmean(after),
                   size_after_1000_max=max(after))
        return out
    target = target_fraction(strategy, scale, config)
    g_target = late * strategy.growth(target, scale)
    realised = statistics.fmean(sum(r.logs[-late:]) for r in runs)
    expected = statistics.fmean(sum(strategy.growth(f, scale) for f in r.sizes[-late:])
                                for r in runs)
    settles = [_settle(r.sizes, target) for r in runs]
    settled = sorted(s for s in settles if s is not None)
    out.update(
        f_star=f_star, target=target,
        growth_ratio=realised / g_target,
        expected_growth_ratio=expected / g_target,
        settle_median=statistics.median(settled) if len(settled) * 2 > len(runs) else None,
        settled_share=len(settled) / len(runs),
        lockout_rate=1.0 - out["betting_at_end"],
        max_size_over_f_star=max(max(r.sizes) for r in runs) / f_star,
    )
    return out


# ----------------------------------------------------------------------- the grid
TRADEOFF = (  # (label, KellyConfig overrides) for the growth-vs-drawdown table
    ("quarter Kelly (default)", {}),
    ("volatility_target 2 %", {"volatility_target": 0.02}),
    ("volatility_target 1 %", {"volatility_target": 0.01}),
    ("volatility_target 0.5 %", {"volatility_target": 0.005}),
    ("tenth Kelly", {"fraction": 0.1}),
    ("half Kelly", {"fraction": 0.5}),
)


def _config(**kelly: Any) -> SizingConfig:
    return SizingConfig(kelly=KellyConfig(**kelly))


def _cells(config: SizingConfig, strategies: tuple[Strategy, ...], variants: tuple[str, ...],
           feedbacks: tuple[str, ...], seeds: int, trades: int,
           quality_config: SizingConfig | None = None) -> dict[str, Any]:
    """{"variant/feedback/scale/strategy": summary} for one sizing config."""
    out: dict[str, Any] = {}
    for variant in variants:
        for feedback in feedbacks:
            for scale in SCALES:
                for s in strategies:
                    runs = [simulate(s, scale, variant, feedback, seed, trades, config)
                            for seed in range(seeds)]
                    out[f"{variant}/{feedback}/{scale}/{s.name}"] = summarise(
                        s, scale, runs, quality_config or config)
    return out


def run(seeds: int = 20, trades: int = 5_000) -> dict[str, Any]:
    """Every table of docs/sizing-math.md §2.3-2.4; returns the results dict."""
    t0 = time.perf_counter()
    models = {m: _cells(_config(model=m), STRATEGIES, VARIANTS, FEEDBACK, seeds, trades)
              for m in MODELS}
    default = _config()
    tradeoff = {label: _cells(_config(**kw), EDGE, ("calibrated",), ("every",), seeds, trades,
                              quality_config=default)
                for label, kw in TRADEOFF}
    return {
        "benchmark": "sizing_quality.planted_edge",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "seeds": seeds, "trades": trades, "late": LATE,
        "strategies": {s.name: {"p": s.p, "up": s.up, "down": s.down} for s in STRATEGIES},
        "models": models, "tradeoff": tradeoff,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ----------------------------------------------------------------------- tables
def _pct(x: float) -> str:
    return f"{100 * x:.2f} %" if x < 0.01 else f"{100 * x:.1f} %"


def _settle_text(cell: dict[str, Any]) -> str:
    return "never" if cell["settle_median"] is None else str(int(cell["settle_median"]))


def _outcome_columns(every: dict[str, Any], traded: dict[str, Any], settle: str) -> str:
    """The columns every row of the quality table shares (final equity to exploring)."""
    return (f"{every['final_equity_median']:.3g} ({every['final_equity_p5']:.3g}) | "
            f"{_pct(every['max_drawdown_median'])} | {settle} | "
            f"{_pct(traded['betting_at_end'])} | {_pct(traded['exploring_share'])} |")


def _quality_table(cells: dict[str, Any]) -> list[str]:
    lines = ["| strategy | move | f* | target | growth ratio every / traded | expected-growth "
             "ratio | final equity × median (p5) | max DD median | settle (trades) | "
             "betting at end, traded | exploring, traded |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for scale in SCALES:
        for s in EDGE:
            e = cells[f"calibrated/every/{scale}/{s.name}"]
            t = cells[f"calibrated/traded/{scale}/{s.name}"]
            lines.append(
                f"| {s.name} | {_pct(scale)} | {e['f_star']:.3g} | {_pct(e['target'])} | "
                f"{e['growth_ratio']:.2f} / {t['growth_ratio']:.2f} | "
                f"{e['expected_growth_ratio']:.2f} | " + _outcome_columns(e, t, _settle_text(e)))
    for scale in SCALES:
        e = cells[f"calibrated/every/{scale}/{LOSER.name}"]
        t = cells[f"calibrated/traded/{scale}/{LOSER.name}"]
        lines.append(
            f"| loser | {_pct(scale)} | < 0 | 0 | size after 1,000 trades: mean "
            f"{_pct(e['size_after_1000_mean'])} / {_pct(t['size_after_1000_mean'])}, max "
            f"{_pct(max(e['size_after_1000_max'], t['size_after_1000_max']))} | – | "
            + _outcome_columns(e, t, "–"))
    return lines


def _reports_table(cells: dict[str, Any]) -> list[str]:
    lines = ["| strategy | move | early size ×, overconfident / overstated | after learning "
             "×, overconfident / overstated (every) | after learning ×, traded |",
             "|---|---|---|---|---|"]
    for scale in SCALES:
        for s in EDGE:
            def ratio(variant: str, feedback: str, key: str, s: Strategy = s,
                      scale: float = scale) -> str:
                base = cells[f"calibrated/{feedback}/{scale}/{s.name}"][key]
                got = cells[f"{variant}/{feedback}/{scale}/{s.name}"][key]
                return f"{got / base:.2f}" if base > 0 else "n/a (calibrated at 0)"
            pairs = (f"{ratio('overconfident', fb, key)} / {ratio('overstated', fb, key)}"
                     for fb, key in (("every", "size_early_mean"), ("every", "size_late_mean"),
                                     ("traded", "size_late_mean")))
            lines.append(f"| {s.name} | {_pct(scale)} | " + " | ".join(pairs) + " |")
    return lines


def _tradeoff_table(tradeoff: dict[str, Any]) -> list[str]:
    lines = ["| setting | move | growth ÷ quarter-Kelly target (mean of 4) | max DD median "
             "(worst strategy) | final equity × p5 (worst strategy) |", "|---|---|---|---|---|"]
    for label, cells in tradeoff.items():
        for scale in SCALES:
            row = [cells[f"calibrated/every/{scale}/{s.name}"] for s in EDGE]
            lines.append(
                f"| {label} | {_pct(scale)} | "
                f"{statistics.fmean(c['growth_ratio'] for c in row):.2f} | "
                f"{_pct(max(c['max_drawdown_median'] for c in row))} | "
                f"{min(c['final_equity_p5'] for c in row):.3g} |")
    return lines


def lockout(seeds: int = 100, trades: int = 1_500,
            z_values: tuple[float, ...] = (2.0, 2.5)) -> dict[str, Any]:
    """Seeds (of ``seeds``) in which an edge strategy no longer bets after ``trades`` trades
    with traded-only feedback, per exploration_z: the tail behind docs/sizing-math.md §2.2."""
    out: dict[str, Any] = {}
    for z in z_values:
        config = _config(exploration_z=z)
        for scale in SCALES:
            for s in EDGE:
                runs = [simulate(s, scale, "calibrated", "traded", seed, trades, config)
                        for seed in range(seeds)]
                out[f"z={z}/{scale}/{s.name}"] = sum(r.sizes[-1] == 0.0 for r in runs)
    return {"seeds": seeds, "trades": trades, "locked_out": out}


def kelly_cost(rounds: int = 6, calls: int = 10_000) -> dict[str, float]:
    """Median µs per ``BayesianKelly.estimate`` call of each model, rounds interleaved in one
    process (absolute times across runs are not comparable on a shared machine)."""
    rng = random.Random(42)
    signals = [(f"s{rng.randrange(3)}", f"SYM{rng.randrange(20):02d}", rng.uniform(0.3, 0.95),
                rng.uniform(0.0, 1.0), rng.uniform(0.002, 0.06), rng.uniform(0.01, 0.25))
               for _ in range(calls)]
    engines = {m: BayesianKelly(KellyConfig(model=m)) for m in MODELS}
    for engine in engines.values():  # some learned history, as in production
        for i in range(600):
            engine.update(f"s{i % 3}", f"SYM{i % 20:02d}", rng.uniform(-0.05, 0.06))
    times: dict[str, list[float]] = {m: [] for m in engines}
    for _ in range(rounds):
        for model, engine in engines.items():
            estimate = engine.estimate
            t0 = time.perf_counter_ns()
            for sig in signals:
                estimate(*sig)
            times[model].append((time.perf_counter_ns() - t0) / calls / 1e3)
    return {m: round(statistics.median(t), 2) for m, t in times.items()}


def _print(result: dict[str, Any]) -> None:
    print(f"Sizing quality: {result['seeds']} seeds x {result['trades']} trades per cell, "
          f"last {result['late']} trades = after learning ({result['seconds']} s)")
    for model, cells in result["models"].items():
        print(f"\n### {model}: calibrated reports\n")
        print("\n".join(_quality_table(cells)))
        print(f"\n### {model}: miscalibrated reports (size ratio to calibrated)\n")
        print("\n".join(_reports_table(cells)))
    print("\n### growth vs drawdown (predictive, calibrated, every outcome)\n")
    print("\n".join(_tradeoff_table(result["tradeoff"])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 seeds x 2,000 trades (about a tenth of the full run)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--trades", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--lockout", type=int, metavar="SEEDS", default=0,
                        help="only count lock-outs (traded-only feedback) over SEEDS seeds "
                             "for exploration_z 2.0 and 2.5")
    parser.add_argument("--cost", action="store_true",
                        help="only time BayesianKelly.estimate per model (interleaved)")
    args = parser.parse_args(argv)
    if args.cost:
        print(f"BayesianKelly.estimate, median us per call: {kelly_cost()}")
        return 0
    if args.lockout:
        counts = lockout(seeds=args.lockout)
        for key, n in counts["locked_out"].items():
            print(f"{key}: locked out in {n} of {counts['seeds']} seeds")
        return 0
    seeds = args.seeds or (5 if args.quick else 20)
    trades = args.trades or (2_000 if args.quick else 5_000)
    result = run(seeds=seeds, trades=trades)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
