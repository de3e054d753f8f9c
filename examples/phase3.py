"""Phase 3: the hybrid orchestrator with a (mock) RL model, then with RL switched off."""

from himari_l3 import (
    CascadeIndicators,
    Layer3Phase3Hybrid,
    MarketRegime,
    TacticalAction,
    TacticalSignal,
)


def main() -> None:
    signals = [
        TacticalSignal("momentum", "BTC/USDT", TacticalAction.BUY, 0.8, 0.2,
                       MarketRegime.TRENDING_UP, expected_return=0.035,
                       predicted_volatility=0.04),
        TacticalSignal("carry", "ETH/USDT", TacticalAction.BUY, 0.7, 0.3,
                       MarketRegime.RANGING, expected_return=0.025, predicted_volatility=0.05),
    ]
    calm = CascadeIndicators(funding_rate=0.0001, oi_change_pct=0.0, volume_ratio=1.2,
                             onchain_whale_pressure=0.15, exchange_netflow_zscore=0.3)
    cascade = {"BTC/USDT": calm, "ETH/USDT": calm}
    prices = {"BTC/USDT": 43250.0, "ETH/USDT": 2280.0}

    print("HIMARI OPUS V2 - Phase 3 Hybrid Example (Mock RL)")
    print("=" * 80)
    hybrid = Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=True, use_mock_rl=True,
                                enable_metrics=True)
    allocation = hybrid.process_signals(signals, cascade, prices)
    print(f"Total Allocated: ${allocation.total_allocated_usd:,.2f}")
    print(f"Utilization: {allocation.utilization_pct:.1f}%")
    for symbol, how in allocation.provenance.items():
        print(f"   {symbol}: ${allocation.allocations[symbol]:,.2f} via {how['path']}"
              f" ({how['reason']})")
    rl = hybrid.get_state()["rl_client"]
    print("\nRL Statistics:")
    print(f"   Total Predictions: {rl['total_predictions']}")
    print(f"   Successful: {rl['successful_predictions']}")
    print(f"   Success Rate: {100 * rl['success_rate']:.0f}%")
    state = hybrid.get_state()
    print("\nHybrid Orchestrator Stats:")
    print(f"   Total Decisions: {state['total_decisions']}")
    print(f"   RL Decisions: {state['rl_decisions']}")
    print(f"   RL Usage Rate: {100 * state['rl_usage_rate']:.0f}%")
    print(f"   Circuit breaker: {state['circuit_breaker']['state']}")
    hybrid.record_outcome("BTC/USDT", actual_return=0.012, used_rl=True)
    hybrid.stop()

    print("\nFallback-only mode (enable_rl=False)")
    baseline = Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=False, enable_metrics=True)
    allocation = baseline.process_signals(signals, cascade, prices)
    print(f"Total Allocated: ${allocation.total_allocated_usd:,.2f} "
          f"(fallback decisions: {baseline.get_state()['fallback_decisions']})")
    print("\n[SUCCESS] All Phase 3 examples completed!")


if __name__ == "__main__":
    main()
