"""Phase 1: size one BUY signal with cascade indicators and read the decision's trace."""

from himari_l3 import (
    CascadeIndicators,
    Layer3Phase1,
    MarketRegime,
    TacticalAction,
    TacticalSignal,
)


def main() -> None:
    sizer = Layer3Phase1(portfolio_value=100000, kelly_fraction=0.25, enable_metrics=True,
                         enable_sentiment=True)
    signal = TacticalSignal(
        strategy_id="momentum_v2", symbol="BTC/USDT", action=TacticalAction.BUY,
        confidence=0.78, risk_score=0.25, regime=MarketRegime.TRENDING_UP,
        expected_return=0.025, predicted_volatility=0.04,
        sentiment_score=0.72, sentiment_confidence=0.8)
    cascade = CascadeIndicators(funding_rate=0.0003, oi_change_pct=-0.03, volume_ratio=1.4,
                                onchain_whale_pressure=0.3, exchange_netflow_zscore=0.8)
    d = sizer.calculate_position(signal, cascade, current_price=43250.0)
    print("HIMARI OPUS V2 - Phase 1 Example")
    print("=" * 60)
    print(f"Position size:      ${d.position_size_usd:,.2f} ({d.position_size_units:.6f} BTC)")
    print(f"Cascade risk score: {d.cascade_risk_score:.3f} -> {d.cascade_recommendation.value}")
    print(f"Current regime:     {d.current_regime.value}")
    print(f"Stop / take profit: {d.stop_loss_price:,.2f} / {d.take_profit_price:,.2f}")
    print(f"Status:             {d.validation_status.value} {list(d.reason_codes)}")
    print("Size after each stage (USD):")
    for stage in ("kelly", "conformal", "sentiment", "regime", "cascade", "capped"):
        print(f"  {stage:<10} {getattr(d, stage + '_size_usd'):>12,.2f}")
    print(f"Binding limit:      {d.diagnostics['binding_limit']}")
    # A closed trade teaches the Kelly posterior and the conformal window.
    learned = sizer.update_from_trade_result("momentum_v2", "BTC/USDT", realized_return=0.018)
    print(f"After one winning trade: {learned}")


if __name__ == "__main__":
    main()
