"""Unit tests of the rolling, time-aligned correlation monitor and its Ledoit-Wolf shrinkage."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from himari_l3.portfolio.correlation import (
    CorrelationMonitor,
    InvalidReturnsException,
    ledoit_wolf_correlation,
)


def direct_lw(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf toward I on the correlation scale, written with plain loops."""
    n, p = x.shape
    z = np.zeros_like(x)
    for j in range(p):
        col = x[:, j]
        sd = math.sqrt(sum((c - col.mean()) ** 2 for c in col) / n)
        if sd > 0:
            z[:, j] = (col - col.mean()) / sd
    s = np.eye(p)
    for i in range(p):
        for j in range(p):
            if i != j:
                s[i, j] = sum(z[k, i] * z[k, j] for k in range(n)) / n
    pi = 0.0
    for k in range(n):
        for i in range(p):
            for j in range(p):
                if i != j:
                    pi += (z[k, i] * z[k, j] - s[i, j]) ** 2
    pi /= n * n
    d2 = sum((s[i, j] - (1.0 if i == j else 0.0)) ** 2 for i in range(p) for j in range(p))
    delta = 1.0 if d2 == 0 else min(1.0, max(0.0, pi / d2))
    return delta * np.eye(p) + (1 - delta) * s, delta


@pytest.mark.parametrize(("n", "p", "mix"), [(30, 3, 0.8), (25, 4, 0.3), (200, 2, 0.95),
                                              (12, 5, 0.0)])
def test_ledoit_wolf_matches_direct_computation(n: int, p: int, mix: float) -> None:
    """The vectorised estimator equals a loop-by-loop computation of the same formula."""
    rng = np.random.default_rng(n * p)
    common = rng.normal(size=(n, 1))
    x = mix * common + (1 - mix) * rng.normal(size=(n, p))
    r, delta = ledoit_wolf_correlation(x)
    r2, delta2 = direct_lw(x)
    assert delta == pytest.approx(delta2, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(r, r2, rtol=1e-10, atol=1e-12)


def test_ledoit_wolf_result_is_a_correlation_matrix() -> None:
    """The shrunk matrix is symmetric, unit-diagonal, bounded and positive semi-definite."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 6)) + rng.normal(size=(8, 1))  # p close to n: noisy sample
    r, delta = ledoit_wolf_correlation(x)
    assert 0.0 <= delta <= 1.0
    np.testing.assert_allclose(r, r.T)
    np.testing.assert_allclose(np.diag(r), 1.0)
    assert np.all(np.abs(r) <= 1.0 + 1e-12)
    assert np.linalg.eigvalsh(r).min() >= -1e-12


def test_shrinkage_falls_with_more_data() -> None:
    """Strong true correlation: shrinkage with 500 rows is smaller than with 20."""
    rng = np.random.default_rng(5)
    common = rng.normal(size=(500, 1))
    x = common + 0.3 * rng.normal(size=(500, 3))
    _, few = ledoit_wolf_correlation(x[:20])
    r, many = ledoit_wolf_correlation(x)
    assert many < few
    assert r[0, 1] > 0.8


def test_constant_series_gives_no_nan() -> None:
    """A constant column is uncorrelated (0) with the others, never NaN."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.02, size=(40, 3))
    x[:, 1] = 0.01
    r, delta = ledoit_wolf_correlation(x)
    assert np.all(np.isfinite(r)) and math.isfinite(delta)
    assert r[0, 1] == 0.0 and r[1, 2] == 0.0 and r[1, 1] == 1.0
    m = CorrelationMonitor(window=50, min_observations=5)
    for t in range(40):
        m.update({"A": float(x[t, 0]), "B": 0.0, "C": float(x[t, 2])}, t)
    corr, _, n = m.correlation(["A", "B", "C"])
    assert n == 40 and np.all(np.isfinite(corr))
    assert m.stats()["max_abs_correlation"] < 1.0


def test_all_constant_series_gives_identity() -> None:
    """When every column is constant, the estimator returns the identity with shrinkage 1."""
    r, delta = ledoit_wolf_correlation(np.ones((30, 3)))
    np.testing.assert_array_equal(r, np.eye(3))
    assert delta == 1.0


def test_short_data_gives_identity() -> None:
    """Fewer aligned rows than min_observations: identity and shrinkage 1."""
    m = CorrelationMonitor(window=100, min_observations=20)
    for t in range(19):
        m.update({"A": 0.01 * t, "B": 0.01 * t}, t)
    corr, delta, n = m.correlation(["A", "B"])
    np.testing.assert_array_equal(corr, np.eye(2))
    assert (delta, n) == (1.0, 19)
    m.update({"A": 0.5, "B": 0.5}, 19)
    corr, delta, n = m.correlation(["A", "B"])
    assert n == 20 and corr[0, 1] > 0.5 and delta < 1.0


def test_rows_align_on_timestamps() -> None:
    """Returns for one timestamp given in two updates are merged into one aligned row."""
    m = CorrelationMonitor(window=100, min_observations=3)
    for t in range(5):
        m.update({"A": 0.01 * t}, t * 10)
        m.update({"B": -0.02 * t}, t * 10)  # same timestamp: same row
    assert len(m.rows_) == 5
    corr, _, n = m.correlation(["A", "B"])
    assert n == 5
    assert corr[0, 1] < -0.3  # perfectly anti-correlated, shrunk toward 0


def test_out_of_order_timestamp_rejected() -> None:
    """A row older than the last one is refused, naming timestamp_ns."""
    m = CorrelationMonitor()
    m.update({"A": 0.0}, 100)
    with pytest.raises(InvalidReturnsException, match="timestamp_ns"):
        m.update({"A": 0.0}, 99)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.5, 11.0, True, "0.1"])
def test_bad_return_rejected(bad: object) -> None:
    """Non-finite, out-of-range or non-numeric returns are refused, naming the symbol."""
    m = CorrelationMonitor()
    with pytest.raises(InvalidReturnsException, match=r"returns\[X\]"):
        m.update({"A": 0.0, "X": bad}, 1)  # type: ignore[dict-item]
    assert len(m.rows_) == 0


def test_symbol_missing_from_some_rows_keeps_its_history() -> None:
    """A symbol absent from later rows is not deleted: its history and volatility stay, and
    correlations use only rows where both symbols were observed."""
    m = CorrelationMonitor(window=100, min_observations=5)
    rng = np.random.default_rng(2)
    a = rng.normal(0, 0.02, 30)
    for t in range(30):
        row = {"A": float(a[t])}
        if t < 10:
            row["B"] = float(2 * a[t])
        m.update(row, t)
    assert m.symbols == ["A", "B"]
    vol_b = m.volatility("B")
    assert vol_b == pytest.approx(float(np.std(2 * a[:10], ddof=1)))
    corr, _, n = m.correlation(["B", "A"])
    assert n == 10
    assert corr[0, 1] > 0.5
    m.update({"C": 0.01}, 30)
    assert m.symbols == ["A", "B", "C"]
    assert m.volatility("B") == vol_b


def test_matrix_order_is_sorted_not_argument_order() -> None:
    """The matrix is indexed in sorted symbol order whatever order the caller passes."""
    m = CorrelationMonitor(window=100, min_observations=5)
    rng = np.random.default_rng(4)
    for t in range(50):
        x = float(rng.normal(0, 0.02))
        m.update({"Z": x, "A": -x + float(rng.normal(0, 0.001)),
                  "M": float(rng.normal(0, 0.02))}, t)
    c1, _, _ = m.correlation(["Z", "M", "A"])
    c2, _, _ = m.correlation(["A", "M", "Z"])
    np.testing.assert_array_equal(c1, c2)
    assert c1[0, 2] < -0.5  # A x Z


def test_window_rolls() -> None:
    """Only the last `window` rows are kept."""
    m = CorrelationMonitor(window=10, min_observations=3)
    for t in range(25):
        m.update({"A": 0.0}, t)
    assert len(m.rows_) == 10 and m.rows_[0][0] == 15


def test_state_round_trip() -> None:
    """export_state / restore_state keeps rows and gives the same matrix."""
    m = CorrelationMonitor(window=50, min_observations=5)
    rng = np.random.default_rng(6)
    for t in range(20):
        m.update({"A": float(rng.normal(0, .02)), "B": float(rng.normal(0, .02))}, t)
    m2 = CorrelationMonitor(window=50, min_observations=5)
    m2.restore_state(m.export_state())
    np.testing.assert_array_equal(m.correlation(["A", "B"])[0], m2.correlation(["A", "B"])[0])


def test_multi_asset_kelly_ratio_matches_a_direct_solve() -> None:
    """The cached-inverse multi-asset Kelly ratio equals (Σ⁻¹μ)_s / (μ_s/σ_s²) from a direct
    numpy solve with Σ = D R D, clipped to [0, 1]."""
    import numpy as np

    from himari_l3.portfolio.budgets import correlation_multipliers

    order = ["A", "B", "C"]
    r = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    net = {"A": 1_000.0, "B": 2_000.0, "C": -500.0}
    edge = {"A": 0.02, "B": 0.01, "C": 0.03}
    vol = {"A": 0.05, "B": 0.04, "C": 0.08}
    mult, penalty, note = correlation_multipliers(
        net, r.tolist(), order, edge, vol, max_correlation=0.9, penalty_strength=0.5,
        inverse=lambda syms: np.linalg.inv(
            r[np.ix_([order.index(s) for s in syms], [order.index(s) for s in syms])]).tolist())
    assert note == "applied" and penalty == dict.fromkeys(order, 0.0)
    d = np.array([vol[s] for s in order])
    mu = np.array([edge[s] * (1 if net[s] > 0 else -1) for s in order])
    joint = np.linalg.solve(np.outer(d, d) * r, mu)
    expected = np.clip(joint / (mu / d**2), 0.0, 1.0)
    assert [mult[s] for s in order] == pytest.approx(list(expected), rel=1e-12)


def test_observations_count_rows_holding_every_aligned_symbol() -> None:
    """stats' observations equals a plain scan of the window for one symbol, for symbols
    in every row and for symbols missing from some rows (its shortcuts change nothing)."""
    rng = random.Random(5)
    mon = CorrelationMonitor(window=40, min_observations=5)
    for t in range(1, 120):
        row = {s: rng.gauss(0.0, 0.01) for s in ("A", "B", "C")
               if s == "A" or rng.random() < (0.9 if s == "B" else 0.6)}
        mon.update(row, t)
        stats = mon.stats()
        aligned = stats["aligned_symbols"]
        scan = sum(1 for _, r in mon.rows_ if all(s in r for s in aligned))
        assert stats["observations"] == scan
        for subset in (["A"], ["A", "B"], ["B", "C"], ["A", "B", "C"]):
            assert mon._rows_with_all(subset) == sum(
                1 for _, r in mon.rows_ if all(s in r for s in subset))
