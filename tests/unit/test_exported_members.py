"""The public surface of ``himari_l3``: a sorted ``__all__`` whose names all resolve."""

import himari_l3


def test_all_is_sorted_and_unique() -> None:
    """__all__ is sorted and has no duplicates (so additions are reviewed deliberately)."""
    assert himari_l3.__all__ == sorted(set(himari_l3.__all__))


def test_every_exported_name_resolves() -> None:
    """Each name in __all__ is an attribute of the package."""
    missing = [name for name in himari_l3.__all__ if not hasattr(himari_l3, name)]
    assert missing == []


def test_user_document_names_are_exported() -> None:
    """The names the user's document and the issues import from the package are there."""
    for name in ("Layer3Phase1", "Layer3Phase2Portfolio", "Layer3Phase3Hybrid",
                 "TacticalSignal", "TacticalAction", "MarketRegime", "CascadeIndicators",
                 "PositionSizingDecision", "EnsembleAllocation", "CircuitBreaker",
                 "CircuitState", "CircuitBreakerOpenException", "TransformerRLClient",
                 "MockTransformerRLClient", "InvalidSignalException",
                 "InvalidCascadeIndicatorsException"):
        assert name in himari_l3.__all__, name
