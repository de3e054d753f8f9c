"""The book's limit checks: each cap named, strategies attributed by their target shares,
and the quick boolean check agreeing with the full one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3.book.exposure import (
    TargetStats,
    any_breach,
    attributed,
    breaches,
    targets_fit,
)
from himari_l3.book.settings import BookCaps

CAPS = BookCaps(position=0.15, strategy=0.4, gross=0.8, net=0.5, leverage=1.0)


def test_each_limit_is_named() -> None:
    """Position, strategy, gross, net and leverage breaches come out by name."""
    targets = {"a": {"X": 10_000.0, "Y": 10_000.0}, "b": {"Y": 10_000.0}}
    assert breaches({"X": 16_000.0}, targets, 100_000.0, CAPS) == ["position:X"]
    assert breaches({"X": 5_000.0, "Y": -5_000.0}, targets, 100_000.0, CAPS) == []
    caps = BookCaps(0.15, 0.1, 0.8, 0.5, 0.2)
    assert breaches({"X": 15_000.0, "Y": 10_000.0}, targets, 100_000.0, caps) == [
        "strategy:a", "leverage"]  # a: 15,000 of X and half of Y's 10,000
    assert breaches({"X": 15_000.0, "Y": 70_000.0}, {}, 100_000.0, CAPS) == [
        "position:Y", "gross", "net"]  # 85,000: over the 80 % gross, under 1x leverage
    assert "net" in breaches({"X": 15_000.0, "Y": 15_000.0}, targets, 50_000.0, CAPS)


def test_attribution_follows_the_target_shares() -> None:
    """Y's exposure is split between a and b by their shares of Y's target."""
    targets = {"a": {"X": 10_000.0, "Y": 3_000.0}, "b": {"Y": -1_000.0}}
    got = attributed({"X": 5_000.0, "Y": 4_000.0, "Z": 9_999.0}, targets)
    assert got == {"a": 5_000.0 + 3_000.0, "b": 1_000.0}


def test_without_equity_only_a_flat_book_complies() -> None:
    """Equity at or below 0: every cap is 0."""
    assert breaches({}, {}, -5.0, CAPS) == []
    assert breaches({"X": 1.0}, {}, -5.0, CAPS) == ["position:X", "gross", "net", "leverage"]
    assert not targets_fit({"a": {"X": 1.0}}, 0.0, CAPS)


exposures = st.dictionaries(st.sampled_from("WXYZ"), st.floats(-3e4, 3e4), max_size=4)
books = st.dictionaries(st.sampled_from(["a", "b"]),
                        st.dictionaries(st.sampled_from("WXYZ"), st.floats(-3e4, 3e4),
                                        min_size=1), max_size=2)


@settings(max_examples=300, deadline=None)
@given(exposure=exposures, targets=books, equity=st.floats(-1e4, 2e5))
def test_the_quick_check_agrees_with_the_full_one(exposure: dict[str, float],
                                                 targets: dict[str, dict[str, float]],
                                                 equity: float) -> None:
    """any_breach is exactly bool(breaches(...)), with or without the targets' bound."""
    full = bool(breaches(exposure, targets, equity, CAPS))
    assert any_breach(exposure, targets, equity, CAPS) == full
    assert any_breach(exposure, targets, equity, CAPS, TargetStats.of(targets)) == full
    assert targets_fit(targets, equity, CAPS) == TargetStats.of(targets).fit(equity, CAPS)
