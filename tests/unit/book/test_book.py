"""The book through its library object: budget sharing, TTL decay, limit changes, intents,
fills, reconciliation, restore — one behaviour per test, with closed-form numbers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import make_cascade, make_signal
from himari_l3 import Layer3Config, ManualClock, TacticalAction
from himari_l3._exceptions import InvalidBookRequestException
from himari_l3.book import Layer3Book, MarketRules, Markets
from himari_l3.config.schema import parse_config
from himari_l3.observers import RecordingObserver
from himari_l3.phase3 import Layer3Phase3Hybrid

STRONG = {"confidence": 0.95, "risk_score": 0.0, "expected_return": 0.08,
          "predicted_volatility": 0.02}
PRICES = {"BTC-USD": 50_000.0, "ETH-USD": 2_500.0, "SOL-USD": 100.0}
H = 0.999  # targets are sized 0.1 % inside the caps (book.settings.LIMIT_HEADROOM)
CAP = 0.15 * 100_000 * H  # a strong signal's target: the position cap


TRUSTED = {"report_strength": 10_000.0}  # Layer 2's edges trusted: strong signals hit caps
MILD_TRUST = {"kelly": {"report_strength": 50.0}}  # sizes under the cap, moving with confidence


def book(markets: Markets | None = None, observer: Any = None, **cfg: Any) -> Layer3Book:
    """A Layer3Book over a Phase 3 engine (RL off) with a manual clock; Kelly trusts the
    signals' reported edges (so that a strong signal sizes to the position cap)."""
    sizing = cfg.setdefault("sizing", {})
    sizing["kelly"] = {**TRUSTED, **sizing.get("kelly", {})}
    config = parse_config(Layer3Config, cfg)
    clock = ManualClock()
    engine = Layer3Phase3Hybrid(enable_metrics=False, config=config, clock=clock,
                                observer=observer)
    return Layer3Book(engine, markets=markets, clock=clock, observer=observer)


def clock_of(lb: Layer3Book) -> ManualClock:
    c = lb.book.clock
    assert isinstance(c, ManualClock)
    return c


def allocate(lb: Layer3Book, *pairs: tuple[str, str], mode: str = "incremental",
             portfolio: str = "default", **over: Any) -> Any:
    """Signals stamped now (older ones would be stale data: the symbol would be REDUCING)."""
    over.setdefault("timestamp_ns", clock_of(lb).time_ns())
    sigs = [make_signal(strategy_id=s, symbol=y, **{**STRONG, **over}) for s, y in pairs]
    return lb.allocate(sigs, make_cascade(), PRICES, mode=mode, portfolio=portfolio)


def target_usd(lb: Layer3Book, portfolio: str = "default") -> dict[str, float]:
    return {s: t["usd"] for s, t in lb.positions(portfolio)["targets"].items()}


def fill_all(lb: Layer3Book, out: Any, share: float = 1.0, price: float | None = None) -> Any:
    return lb.apply_fills([{"symbol": i.symbol, "side": i.side, "quantity": i.quantity * share,
                            "price": price or i.reference_price, "client_order_id":
                            i.client_order_id} for i in out.step.result.issued])


# ------------------------------------------------------------------ budget sharing
def test_ten_single_symbol_batches_respect_the_strategy_budget() -> None:
    """The issue's scenario: ten batches, one symbol each, one strategy — the standing
    targets stop at 40 % of equity for the strategy (not 150 %), and the gross at 80 %."""
    lb = book()
    for i in range(10):
        clock_of(lb).advance(60.0)
        sym = f"S{i}-USD"
        lb.allocate([make_signal(symbol=sym, **STRONG)], make_cascade(), {sym: 100.0})
    targets = target_usd(lb)
    assert sum(abs(x) for x in targets.values()) <= 0.40 * 100_000 * H + 1e-6
    assert max(abs(x) for x in targets.values()) <= CAP + 1e-6
    assert len(targets) == 3  # 15 % + 15 % + 10 %: the rest found no room
    view = lb.positions()
    assert view["projected_gross_exposure_pct"] <= 40.0 + 1e-9


def test_a_batch_reports_what_the_book_left_it() -> None:
    """With the strategy at its budget, a new symbol gets 0, named by the strategy limit."""
    lb = book()
    allocate(lb, ("momentum", "BTC-USD"), ("momentum", "ETH-USD"))
    out = allocate(lb, ("momentum", "SOL-USD"))
    assert out.allocation.allocations["SOL-USD"] == pytest.approx(10_000.0 * H)
    assert out.allocation.binding_limits["SOL-USD"] == "strategy"
    out = lb.allocate([make_signal(symbol="XRP-USD", **STRONG)], make_cascade(),
                      {"XRP-USD": 1.0})
    assert out.allocation.allocations["XRP-USD"] == 0.0
    assert out.allocation.trace["book"]["committed"]["momentum"]["BTC-USD"] == CAP


def test_incremental_keeps_absent_symbols_full_zeroes_them() -> None:
    """Incremental: a symbol missing from the batch keeps its target. Full: it goes to 0."""
    lb = book()
    allocate(lb, ("momentum", "BTC-USD"), ("carry", "ETH-USD"))
    allocate(lb, ("momentum", "SOL-USD"))
    assert set(target_usd(lb)) == {"BTC-USD", "ETH-USD", "SOL-USD"}
    out = allocate(lb, ("momentum", "SOL-USD"), mode="full")
    assert set(target_usd(lb)) == {"SOL-USD"}
    assert out.step.result.superseded >= 2  # the open buys of BTC and ETH


def test_a_cascade_exit_zeroes_the_symbol_for_every_strategy() -> None:
    """Strategy A's standing BTC target goes to 0 when B's batch sees an EXIT on BTC."""
    lb = book()
    allocate(lb, ("a", "BTC-USD"))
    exit_ = make_cascade(funding_rate=0.01, oi_change_pct=-0.5, volume_ratio=10.0,
                         onchain_whale_pressure=1.0, exchange_netflow_zscore=10.0)
    lb.allocate([make_signal(strategy_id="b", symbol="BTC-USD", **STRONG)], exit_, PRICES)
    assert target_usd(lb) == {}


def test_targets_older_than_the_ttl_decay_and_the_position_is_closed() -> None:
    """A target not refreshed for book.target_ttl_sec is gone at the next step; its filled
    position gets a close intent."""
    lb = book(book={"target_ttl_sec": 600.0})
    fill_all(lb, allocate(lb, ("momentum", "BTC-USD")))
    clock_of(lb).advance(601.0)
    out = allocate(lb, ("carry", "ETH-USD"))
    assert "BTC-USD" not in target_usd(lb)
    assert out.step.decayed == ("BTC-USD",)
    closes = [i for i in out.step.result.issued if i.symbol == "BTC-USD"]
    assert [(i.side, i.reduce_only, i.reason.value) for i in closes] == [("sell", True,
                                                                          "close")]


def test_a_lowered_limit_scales_standing_targets_and_intents_follow() -> None:
    """A reload to a 5 % position cap scales the 15 % targets and reduces the positions."""
    lb = book()
    fill_all(lb, allocate(lb, ("momentum", "BTC-USD")))
    tight = parse_config(Layer3Config, {"portfolio": {"max_position_pct": 0.05},
                                        "sizing": {"kelly": TRUSTED,
                                                   "limits": {"max_position_pct": 0.05}}})
    (step,) = lb.apply_config(tight)
    assert target_usd(lb)["BTC-USD"] == pytest.approx(5_000.0 * H)
    assert step.scaled == ("position",)
    (sell,) = step.result.issued
    assert (sell.side, sell.reduce_only) == ("sell", True)
    assert sell.quantity == pytest.approx(0.1998)  # 14,985 -> 4,995 USD at 50,000


def test_net_cap_holds_over_a_long_short_book() -> None:
    """With shorts allowed and a 5 % net cap, longs and shorts may be large but balanced."""
    lb = book(portfolio={"max_net_pct": 0.05}, sizing={"limits": {"allow_short": True}})
    allocate(lb, ("a", "BTC-USD"))
    allocate(lb, ("b", "ETH-USD"), action=TacticalAction.SELL)
    t = target_usd(lb)
    assert abs(sum(t.values())) <= 5_000.0 + 1e-6
    assert t["ETH-USD"] < 0 < t["BTC-USD"]


# ------------------------------------------------------------------ intents
def test_intents_follow_the_instrument_rules_and_carry_brackets() -> None:
    """Quantities on the step, limit and bracket prices on the tick; exits carry none."""
    markets = Markets({"BTC-USD": MarketRules("BTC-USD", step_size=0.001, tick_size=0.5)})
    lb = book(markets, execution={"order_type": "limit", "limit_offset_bps": 10.0,
                                  "time_in_force": "IOC"})
    out = allocate(lb, ("momentum", "BTC-USD"))
    (buy,) = out.step.result.issued
    assert buy.quantity == 0.299  # 14,985 / 50,000 = 0.2997, down to the step
    assert buy.order_type == "limit" and buy.time_in_force == "IOC"
    assert buy.limit_price == 50_050.0  # 50,000 x 1.001, down to the tick
    assert buy.stop_loss_price is not None and buy.stop_loss_price % 0.5 == 0
    assert buy.stop_loss_price < 50_000.0 < buy.take_profit_price
    # ETH is not in the markets file: no risk opened there, and the book says why.
    out = allocate(lb, ("carry", "ETH-USD"))
    assert [d.reason for d in out.step.result.dropped] == ["no_market_rules"]


def test_a_resent_allocation_does_not_double_count() -> None:
    """The same batch again: the open intents already cover the change, nothing new."""
    lb = book()
    first = allocate(lb, ("momentum", "BTC-USD"))
    again = allocate(lb, ("momentum", "BTC-USD"))
    assert len(first.step.result.issued) == 1 and again.step.result.issued == []
    assert len(lb.intents()) == 1


def test_the_no_trade_band_holds_back_small_changes() -> None:
    """A change below the band is not traded (and reported), a larger one is."""
    lb = book(execution={"no_trade_band_usd": 1_000.0}, sizing=MILD_TRUST)
    mild = {"expected_return": 0.02, "predicted_volatility": 0.05}  # about 14,500 USD
    fill_all(lb, allocate(lb, ("momentum", "BTC-USD"), confidence=0.8, **mild))
    out = allocate(lb, ("momentum", "BTC-USD"), confidence=0.81, **mild)  # + ~165 USD
    assert out.step.result.issued == []
    assert [d.reason for d in out.step.result.dropped] == ["no_trade_band"]
    out = allocate(lb, ("momentum", "BTC-USD"), confidence=0.5, **mild)  # - ~5,100 USD
    assert [i.side for i in out.step.result.issued] == ["sell"]


def test_open_intents_expire_and_are_reissued() -> None:
    """Past execution.intent_ttl_sec an unfilled intent expires; the next step re-issues."""
    lb = book(execution={"intent_ttl_sec": 30.0})
    first = allocate(lb, ("momentum", "BTC-USD"))
    clock_of(lb).advance(31.0)
    out = lb.mark(PRICES)
    assert out.expired == 1
    (again,) = out.result.issued
    assert again.quantity == first.step.result.issued[0].quantity
    assert again.client_order_id != first.step.result.issued[0].client_order_id


# ------------------------------------------------------------------ fills
def test_fills_move_position_cash_and_close_the_intent() -> None:
    """A partial fill leaves the intent open with what is left; the rest fills it."""
    lb = book()
    (buy,) = allocate(lb, ("momentum", "BTC-USD")).step.result.issued
    base = {"symbol": "BTC-USD", "side": "buy", "price": 50_000.0,
            "client_order_id": buy.client_order_id}
    assert buy.quantity == pytest.approx(0.2997)
    lb.apply_fills([{**base, "quantity": 0.1, "fee": 5.0}])
    (open_,) = lb.intents()  # the same intent, still open, with what is left
    assert open_["client_order_id"] == buy.client_order_id
    assert open_["filled_quantity"] == pytest.approx(0.1)
    assert open_["remaining_quantity"] == pytest.approx(0.1997)
    lb.apply_fills([{**base, "quantity": 0.1997, "fee": 10.0}])
    view = lb.positions()
    assert lb.intents() == []
    assert view["positions"]["BTC-USD"]["quantity"] == pytest.approx(0.2997)
    assert view["cash"] == pytest.approx(100_000.0 - CAP - 15.0)
    assert view["equity"] == pytest.approx(100_000.0 - 15.0)


def test_a_close_realises_pnl_and_reports_the_trade() -> None:
    """Bought at 50,000, sold at 55,000: +10 % on the closed quantity, fees apart."""
    lb = book(book={"target_ttl_sec": 60.0})
    fill_all(lb, allocate(lb, ("momentum", "BTC-USD")))
    clock_of(lb).advance(61.0)
    step = lb.mark({"BTC-USD": 55_000.0})
    result = fill_all(lb, type("O", (), {"step": step})(), price=55_000.0)
    (trade,) = result.closed_trades
    assert (trade.side, trade.quantity, trade.entry_price) == ("long", 0.2997, 50_000.0)
    assert trade.realized_pnl == pytest.approx(0.2997 * 5_000.0)
    assert trade.realized_return == pytest.approx(0.1)
    assert trade.strategies == {"momentum": 1.0}
    assert lb.positions()["realized_pnl"] == pytest.approx(0.2997 * 5_000.0)


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"client_order_id": "l3unknown"}, "client_order_id", "an intent this service issued"),
    ({"side": "sell"}, "side", "the intent's side"),
    ({"symbol": "ETH-USD"}, "symbol", "the intent's symbol"),
    ({"quantity": 0.31}, "quantity", "at most the intent's quantity"),
    ({"quantity": -1.0}, "quantity", "a finite number > 0"),
    ({"price": float("nan")}, "price", "a finite number > 0"),
    ({"fee": float("inf")}, "fee", "a finite number"),
])
def test_a_bad_fill_refuses_the_whole_request(change: dict[str, Any], field: str,
                                             words: str) -> None:
    """The good fill before the bad one is not applied either; the error names the field."""
    lb = book()
    (buy,) = allocate(lb, ("momentum", "BTC-USD")).step.result.issued
    good = {"symbol": "BTC-USD", "side": "buy", "price": 50_000.0, "quantity": 0.1,
            "client_order_id": buy.client_order_id}
    before = lb.book.export_state()
    with pytest.raises(InvalidBookRequestException) as err:
        lb.apply_fills([good, {**good, **change}])
    assert err.value.path == ("fills", 1, field)
    assert words in str(err.value)
    assert lb.book.export_state() == before


def test_over_fill_across_a_request_is_refused() -> None:
    """Two fills that together exceed the intent: refused, nothing applied."""
    lb = book()
    (buy,) = allocate(lb, ("momentum", "BTC-USD")).step.result.issued
    f = {"symbol": "BTC-USD", "side": "buy", "price": 50_000.0, "quantity": 0.2,
         "client_order_id": buy.client_order_id}
    with pytest.raises(InvalidBookRequestException, match="over-fill"):
        lb.apply_fills([f, {**f, "fill_id": "t2"}])
    assert lb.positions()["positions"] == {}


def test_a_resent_fill_changes_nothing() -> None:
    """Same fill_id again (or the same fields without one): recognised as a duplicate."""
    lb = book()
    (buy,) = allocate(lb, ("momentum", "BTC-USD")).step.result.issued
    f = {"symbol": "BTC-USD", "side": "buy", "price": 50_000.0, "quantity": 0.1,
         "client_order_id": buy.client_order_id, "fill_id": "trade-1"}
    assert lb.apply_fills([f]).results == ("applied",)
    state = lb.book.export_state()
    assert lb.apply_fills([f]).results == ("duplicate",)
    assert lb.book.export_state()["portfolios"] == state["portfolios"]


def test_a_fill_racing_a_cancel_is_taken_until_the_intent_is_forgotten() -> None:
    """A superseded intent still accepts its fill; once out of closed_intents_kept it does
    not (the venue must then send a positions snapshot)."""
    lb = book(execution={"closed_intents_kept": 2}, sizing=MILD_TRUST)
    mild = {"expected_return": 0.02, "predicted_volatility": 0.05}  # sizes move with it
    (old,) = allocate(lb, ("momentum", "BTC-USD"), confidence=0.5, **mild).step.result.issued
    allocate(lb, ("momentum", "BTC-USD"), confidence=0.6, **mild)
    f = {"symbol": "BTC-USD", "side": "buy", "price": 50_000.0, "quantity": 0.01,
         "client_order_id": old.client_order_id}
    assert lb.apply_fills([f]).results == ("applied",)
    for c in (0.7, 0.8, 0.9):
        allocate(lb, ("momentum", "BTC-USD"), confidence=c, **mild)
    with pytest.raises(InvalidBookRequestException, match="client_order_id"):
        lb.apply_fills([{**f, "fill_id": "late"}])


# ------------------------------------------------------------------ reconciliation
def test_reconcile_counts_every_difference_and_replans() -> None:
    """Quantities, average entries and cash are taken from the snapshot; each difference
    is reported (and emitted), open intents are superseded and the book re-plans."""
    rec = RecordingObserver()
    lb = book(observer=rec)
    out = allocate(lb, ("momentum", "BTC-USD"), ("carry", "ETH-USD"))
    fill_all(lb, out, share=0.5)
    res = lb.reconcile("default", {"positions": {
        "BTC-USD": {"quantity": 0.2, "avg_price": 49_000.0},
        "SOL-USD": {"quantity": 10.0, "price": 100.0}}, "cash": 90_000.0})
    fields = sorted((d.symbol, d.field) for d in res.differences)
    assert fields == [("", "cash"), ("BTC-USD", "avg_price"), ("BTC-USD", "quantity"),
                      ("ETH-USD", "quantity"), ("SOL-USD", "quantity")]
    view = lb.positions()
    assert view["positions"]["BTC-USD"]["quantity"] == 0.2
    assert view["positions"]["ETH-USD"]["quantity"] == 0.0
    assert view["cash"] == 90_000.0
    assert res.step.result.superseded == 2
    sides = {i.symbol: i.side for i in res.step.result.issued}
    assert sides == {"BTC-USD": "buy", "ETH-USD": "buy", "SOL-USD": "sell"}
    (event,) = [e for e in rec.events if type(e).__name__ == "PositionsReconciled"]
    assert dict(event.differences) == {"avg_price": 1, "cash": 1, "quantity": 3}


def test_reconcile_without_cash_keeps_equity_and_skips_fills_it_includes() -> None:
    """A quantity difference without a cash balance is booked at the mark (equity does
    not jump); a fill stamped before the snapshot is already in it."""
    lb = book()
    (buy,) = allocate(lb, ("momentum", "BTC-USD")).step.result.issued
    now = clock_of(lb).time_ns()
    lb.reconcile("default", {"positions": {"BTC-USD": {"quantity": 0.1}}})
    assert lb.positions()["equity"] == pytest.approx(100_000.0)
    res = lb.apply_fills([{"symbol": "BTC-USD", "side": "buy", "price": 50_000.0,
                           "quantity": 0.1, "client_order_id": buy.client_order_id,
                           "timestamp_ns": now}])
    assert res.results == ("before_reconcile",)
    assert lb.positions()["positions"]["BTC-USD"]["quantity"] == 0.1


def test_a_snapshot_position_without_any_price_is_refused() -> None:
    """The book cannot value a position it has no price for: 422 on its price, no change."""
    lb = book()
    with pytest.raises(InvalidBookRequestException) as err:
        lb.reconcile("default", {"positions": {"NEW-USD": {"quantity": 1.0}}})
    assert err.value.path == ("positions", "NEW-USD", "price")
    assert lb.book.portfolios == {}


# ------------------------------------------------------------------ portfolios, state
def test_portfolios_are_separate_and_bounded() -> None:
    """Each portfolio has its own budget; one more than book.max_portfolios is refused."""
    lb = book(book={"max_portfolios": 2})
    allocate(lb, ("momentum", "BTC-USD"), portfolio="a")
    allocate(lb, ("momentum", "BTC-USD"), portfolio="b")
    assert target_usd(lb, "a") == target_usd(lb, "b") == {"BTC-USD": CAP}
    with pytest.raises(InvalidBookRequestException, match="max_portfolios"):
        allocate(lb, ("momentum", "BTC-USD"), portfolio="c")
    assert lb.positions("c")["equity"] == 100_000.0 and "c" not in lb.book.portfolios


def test_equity_below_zero_keeps_every_number_finite_and_flattens() -> None:
    """A book that lost more than its capital: no target fits; views stay finite."""
    lb = book()
    fill_all(lb, allocate(lb, ("momentum", "BTC-USD")))
    step = lb.mark({"BTC-USD": 50_000.0}, "default")
    lb.reconcile("default", {"positions": {"BTC-USD": {"quantity": 0.3}},
                             "cash": -200_000.0})
    view = lb.positions()
    assert view["equity"] < 0 and target_usd(lb) == {}
    assert all(isinstance(v, float) and v == v for k, v in view.items()
               if k.endswith(("_pct", "_usd")))
    assert [s.intent.reason.value for s in lb.book.portfolios["default"].open_intents()] == [
        "close"]
    assert step.result.repair is None


def test_export_and_restore_round_trip_exactly() -> None:
    """A restored book has the same state and decides the same next step."""
    lb = book()
    out = allocate(lb, ("momentum", "BTC-USD"), ("carry", "ETH-USD"))
    fill_all(lb, out, share=0.5)
    state = lb.export_state()
    twin = book()
    twin.restore_state(state)
    clock_of(twin).advance(clock_of(lb).monotonic() - clock_of(twin).monotonic())
    assert twin.export_state() == state
    a = allocate(lb, ("momentum", "SOL-USD")).to_dict()
    b = allocate(twin, ("momentum", "SOL-USD")).to_dict()
    for d in (a, b):
        d.pop("trace", None)
    assert a == b


def test_the_engine_sizes_against_the_books_equity_and_keeps_its_own() -> None:
    """A batch is sized against the portfolio's marked equity (x 0.999 headroom); the
    engine's own portfolio value (what POST /v1/size uses) is put back afterwards."""
    lb = book()
    fill_all(lb, allocate(lb, ("momentum", "BTC-USD")))
    lb.mark({"BTC-USD": 40_000.0})  # the long loses 20 %: equity ~97,000
    out = allocate(lb, ("momentum", "ETH-USD"))
    equity = lb.positions()["equity"]
    assert out.allocation.portfolio_value == pytest.approx(equity * H)
    assert lb.phase2.portfolio_value == 100_000.0


def test_standing_targets_are_capped_per_portfolio_and_refused_beyond() -> None:
    """book.max_targets: an incremental batch that would leave more standing strategy x
    symbol targets is refused on signals before anything changes (a target is a position:
    forgetting one would trade); pairs already held, stale ones and a full batch fit."""
    lb = book(book={"max_targets": 3, "target_ttl_sec": 100.0})
    clock = lb.book.clock
    sigs = [make_signal(strategy_id=f"s{i}", symbol=f"S{i}-USD") for i in range(4)]
    prices = {s.symbol: 100.0 for s in sigs}
    lb.allocate(sigs[:3], make_cascade(), prices)
    before = json.dumps(lb.book.export_state(), sort_keys=True)
    with pytest.raises(InvalidBookRequestException, match=r"max_targets \(3\)") as err:
        lb.allocate(sigs[3:], make_cascade(), prices)
    assert err.value.field == "signals"
    assert json.dumps(lb.book.export_state(), sort_keys=True) == before
    lb.allocate(sigs[:2], make_cascade(), prices)  # already held: fits
    lb.allocate(sigs[1:], make_cascade(), prices, mode="full")  # the whole portfolio: fits
    with pytest.raises(InvalidBookRequestException):
        lb.allocate(sigs[:1], make_cascade(), prices)
    clock.advance(101.0)  # the three stand stale: room again
    lb.allocate(sigs[:1], make_cascade(), prices)
    with pytest.raises(InvalidBookRequestException):
        lb.allocate(sigs, make_cascade(), prices, mode="full")  # 4 > 3 even in full


def test_marks_of_symbols_the_book_holds_nothing_of_do_not_pile_up() -> None:
    """Every symbol a batch prices was marked for ever (20,000 marks after 2,000 batches of
    new symbols, each a snapshot entry); past book.max_targets marks, those of symbols with
    no position, target, bracket or open intent are dropped at the end of a step."""
    lb = book(book={"max_targets": 20})
    for k in range(60):
        sigs = [make_signal(strategy_id=f"s{k}", symbol=f"N{k}-{j}-USD") for j in range(5)]
        lb.allocate(sigs, make_cascade(), {s.symbol: 100.0 for s in sigs}, mode="full")
    pb = lb.book.portfolios["default"]
    used = pb.positions.keys() | pb.target_symbols() | pb.live.keys() | pb.brackets.keys()
    assert len(pb.marks) <= max(20 + 5, len(used) + 5)
    assert used <= pb.marks.keys()
