"""Online conformal scaling: finite-sample quantile, cold start, monotone, ACI, state."""

from __future__ import annotations

import json
import math
import random
from statistics import NormalDist

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3.config.schema import ConformalConfig
from himari_l3.sizing.conformal import ConformalScaler

Q_REF = NormalDist().inv_cdf(0.95)  # alpha = 0.1


def _feed(scaler: ConformalScaler, scores: list[float], sid: str = "s") -> None:
    # realised = score, predicted 0, volatility 1: the non-conformity score is the value itself
    for x in scores:
        scaler.update(sid, x, 0.0, 1.0)


def test_score_is_normalised_residual() -> None:
    """s = |r - mu_hat| / sigma_hat."""
    c = ConformalScaler(ConformalConfig())
    assert c.update("s", 0.05, 0.02, 0.1) == pytest.approx(0.3)
    assert c.update("s", -0.01, 0.02, 0.1) == pytest.approx(0.3)


def test_score_uses_reference_volatility_when_none_given() -> None:
    """Without a predicted volatility the scale is reference_volatility; no prediction is 0."""
    c = ConformalScaler(ConformalConfig(reference_volatility=0.02))
    assert c.update("s", 0.01, None, None) == pytest.approx(0.5)


def test_zero_predicted_return_is_a_value() -> None:
    """A predicted return of 0 is used as 0 (same score as 0, not a default)."""
    c = ConformalScaler(ConformalConfig())
    assert c.update("s", 0.03, 0.0, 0.1) == pytest.approx(0.3)


def test_cold_start_factor_before_any_data() -> None:
    """An unseen strategy gets cold_start_factor and an unbounded quantile."""
    c = ConformalScaler(ConformalConfig(cold_start_factor=0.7))
    assert c.multiplier("new") == (0.7, math.inf, 0)
    assert c.coverage("new") is None


def test_cold_start_until_min_samples() -> None:
    """Below min_samples the multiplier stays cold_start_factor; at min_samples it is live."""
    c = ConformalScaler(ConformalConfig(min_samples=20, cold_start_factor=0.8))
    _feed(c, [0.1] * 19)
    assert c.multiplier("s")[0] == 0.8 and c.multiplier("s")[1] == math.inf
    _feed(c, [0.1])
    m, q, n = c.multiplier("s")
    assert n == 20 and q == pytest.approx(0.1) and m == 1.0


@pytest.mark.parametrize("n", [20, 29, 50, 99, 249])
def test_finite_sample_quantile_rank(n: int) -> None:
    """The quantile is the ceil((n+1)(1-alpha))-th smallest score."""
    c = ConformalScaler(ConformalConfig(alpha=0.1, aci_gamma=0.0, window=250))
    scores = [float(i) for i in range(1, n + 1)]
    random.Random(n).shuffle(scores)
    _feed(c, scores)
    k = math.ceil((n + 1) * 0.9)
    assert c.multiplier("s")[1] == float(k)
    assert c.multiplier("s")[1] == sorted(scores)[k - 1]


def test_quantile_infinite_when_rank_exceeds_window() -> None:
    """With alpha_t so small that ceil((n+1)(1-alpha)) > n, the interval is unbounded and the
    multiplier is its floor."""
    c = ConformalScaler(ConformalConfig(alpha=0.01, aci_gamma=0.0, min_samples=20,
                                        min_multiplier=0.3))
    _feed(c, [0.5] * 20)  # ceil(21 * 0.99) = 21 > 20
    m, q, _ = c.multiplier("s")
    assert q == math.inf and m == 0.3


def test_multiplier_formula() -> None:
    """m = clip(q_ref / q, m_min, 1) with q_ref = Phi^-1(1 - alpha/2)."""
    c = ConformalScaler(ConformalConfig(aci_gamma=0.0, min_multiplier=0.25))
    _feed(c, [2.0] * 30)
    assert c.multiplier("s")[0] == pytest.approx(Q_REF / 2.0)
    c2 = ConformalScaler(ConformalConfig(aci_gamma=0.0, min_multiplier=0.25))
    _feed(c2, [100.0] * 30)
    assert c2.multiplier("s")[0] == 0.25


def test_zero_quantile_gives_full_size() -> None:
    """Perfect forecasts (all scores 0) give multiplier 1, not a division by zero."""
    c = ConformalScaler(ConformalConfig())
    _feed(c, [0.0] * 30)
    assert c.multiplier("s")[:2] == (1.0, 0.0)


@given(scale1=st.floats(0.01, 50.0), scale2=st.floats(0.01, 50.0))
@settings(max_examples=100, deadline=None)
def test_wider_intervals_never_increase_size(scale1: float, scale2: float) -> None:
    """Scaling every residual up (wider intervals) never increases the multiplier."""
    base = [abs(random.Random(3).gauss(0, 1)) + 1e-3 for _ in range(60)]
    lo, hi = sorted((scale1, scale2))
    narrow, wide = (ConformalScaler(ConformalConfig(aci_gamma=0.0)) for _ in range(2))
    _feed(narrow, [x * lo for x in base])
    _feed(wide, [x * hi for x in base])
    assert wide.multiplier("s")[0] <= narrow.multiplier("s")[0]
    assert wide.multiplier("s")[1] >= narrow.multiplier("s")[1]


def test_multiplier_bounded() -> None:
    """The multiplier always lies in [min_multiplier, 1]."""
    rng = random.Random(11)
    c = ConformalScaler(ConformalConfig(min_multiplier=0.25))
    for _ in range(500):
        c.update("s", rng.gauss(0, 0.05) * rng.choice((0.1, 1, 10)), 0.0, 0.05)
        m = c.multiplier("s")[0]
        assert 0.25 <= m <= 1.0


def test_window_keeps_last_scores() -> None:
    """Only the last `window` scores are kept."""
    c = ConformalScaler(ConformalConfig(window=10, min_samples=5))
    _feed(c, [100.0] * 10 + [0.1] * 10)
    assert list(c.states_["s"].scores) == [0.1] * 10


def test_state_is_per_strategy() -> None:
    """Scores of one strategy never change another's multiplier."""
    c = ConformalScaler(ConformalConfig())
    _feed(c, [5.0] * 40, sid="bad")
    _feed(c, [0.5] * 40, sid="good")
    assert c.multiplier("bad")[0] < c.multiplier("good")[0] == 1.0


def _drift_stream(seed: int, n: int = 4000) -> list[float]:
    """Residuals whose scale triples halfway (a volatility regime shift)."""
    rng = random.Random(seed)
    return [rng.gauss(0, 1.0 if i < n // 2 else 3.0) for i in range(n)]


def _run(stream: list[float], gamma: float) -> ConformalScaler:
    c = ConformalScaler(ConformalConfig(alpha=0.1, aci_gamma=gamma, window=500))
    for r in stream:
        c.update("s", r, 0.0, 1.0)
    return c


def test_aci_coverage_near_target_on_drift() -> None:
    """With ACI the empirical coverage on a drifting seeded stream is within 2 points of
    1 - alpha = 0.9, and closer to it than the same window without adaptation."""
    stream = _drift_stream(seed=2024)
    adaptive, static = _run(stream, 0.02), _run(stream, 0.0)
    cov_a, cov_s = adaptive.coverage("s"), static.coverage("s")
    assert cov_a is not None and cov_s is not None
    assert abs(cov_a - 0.9) < 0.02
    assert abs(cov_a - 0.9) < abs(cov_s - 0.9)


def test_aci_alpha_falls_after_misses() -> None:
    """Misses (err = 1) lower alpha_t: alpha_{t+1} = alpha_t + gamma (alpha - err)."""
    c = ConformalScaler(ConformalConfig(alpha=0.1, aci_gamma=0.01, min_samples=20))
    _feed(c, [1.0] * 20)
    _feed(c, [10.0])  # a miss
    assert c.states_["s"].alpha_t == pytest.approx(0.1 + 0.01 * (0.1 - 1.0))
    _feed(c, [0.5])  # a hit
    assert c.states_["s"].alpha_t == pytest.approx(0.1 + 0.01 * (0.1 - 1.0) + 0.01 * 0.1)
    assert c.coverage("s") == 0.5


def test_coverage_counts_only_live_intervals() -> None:
    """Coverage starts being counted once min_samples scores exist."""
    c = ConformalScaler(ConformalConfig(min_samples=20))
    _feed(c, [1.0] * 20)
    assert c.coverage("s") is None
    _feed(c, [0.5, 0.5, 5.0, 0.5])
    assert c.coverage("s") == 0.75


def test_export_restore_exact() -> None:
    """Window, alpha_t and coverage counts survive a JSON round trip exactly."""
    rng = random.Random(5)
    c = ConformalScaler(ConformalConfig(aci_gamma=0.01))
    for i in range(300):
        c.update(f"s{i % 3}", rng.gauss(0.001, 0.04), rng.gauss(0, 0.01),
                 rng.choice((None, 0.03, 0.07)))
    other = ConformalScaler(ConformalConfig(aci_gamma=0.01))
    other.restore_state(json.loads(json.dumps(c.export_state())))
    for sid in ("s0", "s1", "s2", "unseen"):
        assert other.multiplier(sid) == c.multiplier(sid)
        assert other.coverage(sid) == c.coverage(sid)
    assert other.export_state() == c.export_state()
    c.update("s0", 0.02, 0.0, 0.05)
    other.update("s0", 0.02, 0.0, 0.05)
    assert other.multiplier("s0") == c.multiplier("s0")


def test_kept_order_equals_a_sort_of_the_window_through_rollover_reload_and_restore() -> None:
    """The ordered copy the quantile is read from is always sorted(scores): past the
    window's length (evictions, ties included), after a shrinking reconfigure and a restore;
    the quantile is the order statistic of a fresh sort."""
    cfg = ConformalConfig(window=30, min_samples=5)
    sc = ConformalScaler(cfg)
    rng = random.Random(3)
    for i in range(200):
        r = round(rng.gauss(0.0, 0.02), 3) if i % 7 else 0.01  # repeated scores too
        sc.update("s", r, 0.0, 0.02)
        st = sc.states_["s"]
        assert st.ordered == sorted(st.scores)
        k = math.ceil((len(st.scores) + 1) * (1.0 - st.alpha_t))
        assert st.quantile == (sorted(st.scores)[k - 1] if k <= len(st.scores) else math.inf)
    sc.reconfigure(ConformalConfig(window=12, min_samples=5))
    assert sc.states_["s"].ordered == sorted(sc.states_["s"].scores)
    other = ConformalScaler(ConformalConfig(window=12, min_samples=5))
    other.restore_state(sc.export_state())
    assert other.states_["s"].ordered == sorted(other.states_["s"].scores)
    assert other.multiplier("s") == sc.multiplier("s")
