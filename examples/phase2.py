"""Phase 2: three strategies over BTC and ETH, netted and budgeted into one portfolio."""

import tempfile
from pathlib import Path

from himari_l3 import (
    CascadeIndicators,
    Layer3Phase2Portfolio,
    MarketRegime,
    TacticalAction,
    TacticalSignal,
)


def main() -> None:
    portfolio = Layer3Phase2Portfolio(
        portfolio_value=100000, kelly_fraction=0.25, max_position_pct=0.15,
        max_strategy_pct=0.40, max_portfolio_pct=0.80, max_correlation=0.7,
        enable_metrics=True)
    signals = [
        TacticalSignal("momentum", "BTC/USDT", TacticalAction.STRONG_BUY, 0.85, 0.2,
                       MarketRegime.TRENDING_UP, expected_return=0.04,
                       predicted_volatility=0.035),
        TacticalSignal("mean_reversion", "BTC/USDT", TacticalAction.SELL, 0.6, 0.3,
                       MarketRegime.RANGING, expected_return=0.01, predicted_volatility=0.035),
        TacticalSignal("carry", "ETH/USDT", TacticalAction.BUY, 0.72, 0.25,
                       MarketRegime.TRENDING_UP, expected_return=0.03,
                       predicted_volatility=0.045),
    ]
    calm = CascadeIndicators(funding_rate=0.0001, oi_change_pct=0.01, volume_ratio=1.1,
                             onchain_whale_pressure=0.1, exchange_netflow_zscore=0.2)
    allocation = portfolio.process_multi_strategy_signals(
        signals, {"BTC/USDT": calm, "ETH/USDT": calm},
        {"BTC/USDT": 43250.0, "ETH/USDT": 2280.0})
    print("HIMARI OPUS V2 - Phase 2 Example")
    print("=" * 60)
    for symbol, usd in allocation.allocations.items():
        print(f"  {symbol:<10} ${usd:>12,.2f}  (limit: {allocation.binding_limits[symbol]})")
    print(f"Total allocated: ${allocation.total_allocated_usd:,.2f}")
    print(f"Utilization:     {allocation.utilization_pct:.1f}%")
    print(f"Strategy weights: {allocation.strategy_weights}")
    print(f"Remaining budget: ${portfolio.get_remaining_risk_budget()['portfolio_usd']:,.2f}")
    out = Path(tempfile.mkdtemp()) / "weights.csv"
    rows = portfolio.export_weight_history(out)
    print(f"Weight history: {rows} rows -> {out}")


if __name__ == "__main__":
    main()
