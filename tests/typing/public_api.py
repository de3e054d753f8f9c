"""Type-checked (mypy --strict, from scripts/check) usage of the public API as the user's
document writes it: a signature change that breaks this code fails the gate.

Not collected by pytest (no test functions); importable and runnable on its own.
"""

from __future__ import annotations

from himari_l3 import (
    CascadeIndicators,
    CircuitBreaker,
    CircuitBreakerOpenException,
    CircuitState,
    EnsembleAllocation,
    Layer3Phase1,
    Layer3Phase2Portfolio,
    Layer3Phase3Hybrid,
    MarketRegime,
    MockTransformerRLClient,
    PositionSizingDecision,
    TacticalAction,
    TacticalSignal,
)
from himari_l3.book import Layer3Book, OrderIntent


def phase1() -> float:
    sizer = Layer3Phase1(portfolio_value=100000, kelly_fraction=0.25, enable_metrics=False,
                         enable_sentiment=True)
    signal = TacticalSignal(strategy_id="momentum", symbol="BTC/USDT",
                            action=TacticalAction.BUY, confidence=0.75, risk_score=0.3,
                            regime=MarketRegime.TRENDING_UP, expected_return=0.03,
                            predicted_volatility=0.05)
    cascade = CascadeIndicators(funding_rate=0.0002, oi_change_pct=-0.02, volume_ratio=1.3,
                                onchain_whale_pressure=0.2, exchange_netflow_zscore=0.5)
    decision: PositionSizingDecision = sizer.calculate_position(signal, cascade, 42000.0)
    sizer.update_from_trade_result("momentum", "BTC/USDT", 0.012)
    score: float = decision.cascade_risk_score
    regime: MarketRegime = decision.current_regime
    assert regime in MarketRegime
    return decision.position_size_usd + score


def phase2(signals: list[TacticalSignal], cascade: dict[str, CascadeIndicators],
           prices: dict[str, float]) -> EnsembleAllocation:
    portfolio = Layer3Phase2Portfolio(portfolio_value=100000, kelly_fraction=0.25,
                                      max_position_pct=0.15, max_strategy_pct=0.40,
                                      max_portfolio_pct=0.80, max_correlation=0.7,
                                      enable_metrics=False)
    allocation = portfolio.process_multi_strategy_signals(signals, cascade, prices)
    portfolio.update_correlations({"BTC/USDT": 0.01})
    portfolio.export_weight_history("/tmp/weights.csv")
    return allocation


def phase3(signals: list[TacticalSignal], cascade: dict[str, CascadeIndicators],
           prices: dict[str, float]) -> float:
    modes = [
        Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=False, enable_metrics=False),
        Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=True, use_mock_rl=True,
                           enable_metrics=False),
        Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=True,
                           rl_endpoint="http://127.0.0.1:8888/predict", rl_timeout_sec=5.0,
                           enable_metrics=False,
                           circuit_breaker=CircuitBreaker("rl", failure_threshold=5)),
    ]
    total = 0.0
    for hybrid in modes:
        allocation = hybrid.process_signals(signals, cascade, prices)
        hybrid.record_outcome("BTC/USDT", actual_return=0.01, used_rl=False)
        comparison = hybrid.get_performance_comparison()
        total += allocation.total_allocated_usd + float(comparison["baseline"]["trades"])
        hybrid.stop()
    return total


def breaker() -> CircuitState:
    cb = CircuitBreaker("rl", failure_threshold=5, window_sec=60.0)
    try:
        cb.before_call()
    except CircuitBreakerOpenException as exc:
        assert exc.retry_in_sec >= 0
    mock = MockTransformerRLClient(success_rate=0.9, seed=1)
    assert mock.circuit_breaker is not None
    return cb.state


def book(signals: list[TacticalSignal], cascade: dict[str, CascadeIndicators],
         prices: dict[str, float]) -> float:
    """The book through its library object: allocate, fill, read."""
    lb = Layer3Book(Layer3Phase3Hybrid(portfolio_value=100000, enable_metrics=False))
    out = lb.allocate(signals, cascade, prices, portfolio="main", mode="full")
    intents: list[OrderIntent] = out.step.result.issued
    fills = lb.apply_fills([{"symbol": i.symbol, "side": i.side, "quantity": i.quantity,
                             "price": i.reference_price, "client_order_id": i.client_order_id}
                            for i in intents])
    lb.reconcile("main", {"positions": {}})
    equity: float = lb.positions("main")["equity"]
    return equity + len(fills.closed_trades) + len(lb.intents("main"))
