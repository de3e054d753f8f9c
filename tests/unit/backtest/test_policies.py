"""make_policy: a bad initial capital is refused with the config's named error (in the
compiled build too, where a ``float`` parameter would raise a bare TypeError)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from himari_l3.backtest.policies import make_policy


@pytest.mark.parametrize("name", ["fixed_fraction", "phase1", "phase2"])
@pytest.mark.parametrize("capital", ["abc", -1.0, float("nan")])
def test_bad_capital_names_portfolio_value(name: str, capital: Any) -> None:
    """A string, negative or NaN capital is a validation error naming portfolio_value."""
    with pytest.raises(pydantic.ValidationError, match="portfolio_value"):
        make_policy(name, capital)


def test_numeric_capital_is_taken_as_float() -> None:
    """An int capital works like the same float."""
    policy = make_policy("phase2", 100_000)
    policy.close()
