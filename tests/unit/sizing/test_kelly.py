"""Bayesian Kelly: closed forms, no-uncertainty limits, monotonicity, learned state."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3.config.schema import KellyConfig
from himari_l3.sizing.kelly import (
    BayesianKelly,
    KellyStats,
    binary_kelly,
    gaussian_kelly,
    two_point_kelly,
)

# The binary model's closed forms (the predictive default has its own module of tests).
EXACT = KellyConfig(model="binary", uncertainty_z=0.0, risk_weight=0.0, fraction=1.0,
                    max_fraction=1.0)


def _est(cfg: KellyConfig = EXACT, *, conf: float = 0.6, risk: float = 0.0,
         er: float | None = None, vol: float | None = None, kelly: BayesianKelly | None = None):
    return (kelly or BayesianKelly(cfg)).estimate("s", "BTC", conf, risk, er, vol)


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize(("p", "b", "expected"), [
    (0.6, 1.0, 0.2), (0.5, 2.0, 0.25), (0.25, 3.0, 0.0), (0.5, 1.0, 0.0), (1.0, 1.0, 1.0),
    (0.4, 1.0, -0.2),
])
def test_binary_kelly_closed_form(p: float, b: float, expected: float) -> None:
    """binary_kelly is p - (1-p)/b."""
    assert binary_kelly(p, b) == pytest.approx(expected, abs=1e-15)
    assert binary_kelly(p, b) == p - (1.0 - p) / b


@pytest.mark.parametrize(("mu", "sigma", "expected"), [
    (0.01, 0.1, 1.0), (0.02, 0.2, 0.5), (0.0, 0.3, 0.0), (-0.01, 0.1, -1.0), (0.5, 0.5, 2.0),
])
def test_gaussian_kelly_closed_form(mu: float, sigma: float, expected: float) -> None:
    """gaussian_kelly is mu / sigma^2."""
    assert gaussian_kelly(mu, sigma) == pytest.approx(expected, rel=1e-12)


@given(p=st.floats(0.01, 1.0), mu=st.floats(1e-4, 1.0), sigma=st.floats(1e-3, 5.0))
@settings(max_examples=200, deadline=None)
def test_two_point_kelly_is_binary_kelly_with_implied_payoff(p: float, mu: float,
                                                             sigma: float) -> None:
    """two_point_kelly equals binary_kelly with b = (mu + (1-p) sigma) / (p sigma)."""
    b = (mu + (1.0 - p) * sigma) / (p * sigma)
    assert two_point_kelly(p, mu, sigma) == pytest.approx(binary_kelly(p, b), rel=1e-9,
                                                          abs=1e-12)


def test_two_point_kelly_exact_value() -> None:
    """p=0.5, mu=0.01, sigma=0.05: f = 0.005 / 0.035."""
    assert two_point_kelly(0.5, 0.01, 0.05) == 0.5 * 0.01 / (0.01 + 0.5 * 0.05)


@pytest.mark.parametrize(("p", "mu"), [(0.7, 0.0), (0.7, -0.01), (0.0, 0.02)])
def test_two_point_kelly_no_edge_is_zero(p: float, mu: float) -> None:
    """No edge (mu <= 0) or no chance of winning: no bet."""
    assert two_point_kelly(p, mu, 0.05) == 0.0


# ------------------------------------------------------ no-uncertainty limits (engine)
@pytest.mark.parametrize("conf", [0.0, 0.3, 0.55, 0.8, 1.0])
def test_z0_effective_win_prob_is_confidence(conf: float) -> None:
    """With uncertainty_z=0 and no trades, p_eff equals the signal's confidence exactly."""
    k = _est(conf=conf)
    assert k.win_prob == conf and k.win_prob_effective == conf


@pytest.mark.parametrize("conf", [0.55, 0.6, 0.8, 0.99])
def test_binary_engine_reproduces_binary_kelly_exactly(conf: float) -> None:
    """No edge/vol given, z=0, full Kelly, no risk haircut: f = p - (1-p)/b, b = default 1."""
    k = _est(conf=conf)
    assert k.full_kelly == binary_kelly(conf, 1.0)
    assert k.fraction == binary_kelly(conf, 1.0)
    assert k.payoff_ratio == 1.0


def test_binary_engine_uses_configured_payoff_ratio() -> None:
    """default_payoff_ratio is the b of the binary formula with no trade history."""
    cfg = EXACT.model_copy(update={"default_payoff_ratio": 2.0})
    assert _est(cfg, conf=0.5).full_kelly == binary_kelly(0.5, 2.0) == 0.25


@pytest.mark.parametrize(("conf", "er", "vol"), [(0.6, 0.02, 0.05), (0.9, 0.001, 0.25),
                                                 (0.35, 0.06, 0.01)])
def test_two_point_engine_reproduces_closed_form_exactly(conf: float, er: float,
                                                         vol: float) -> None:
    """With edge and vol given, z=0: f = p mu / (mu + (1-p) sigma) exactly."""
    k = _est(conf=conf, er=er, vol=vol)
    assert k.full_kelly == two_point_kelly(conf, er, vol)
    assert k.fraction == k.full_kelly


@pytest.mark.parametrize(("mu", "sigma"), [(0.01, 0.1), (0.002, 0.05), (0.05, 0.25)])
def test_gaussian_engine_approaches_mu_over_sigma2(mu: float, sigma: float) -> None:
    """Gaussian model, huge prior_strength: f -> mu / sigma^2 (posterior variance vanishes)."""
    cfg = EXACT.model_copy(update={"model": "gaussian", "prior_strength": 1e6})
    k = _est(cfg, conf=1.0, er=mu, vol=sigma)
    assert k.full_kelly == pytest.approx(gaussian_kelly(mu, sigma), rel=2e-6)
    assert k.full_kelly < gaussian_kelly(mu, sigma)  # uncertainty only ever shrinks it


def test_gaussian_engine_exact_predictive_variance() -> None:
    """Gaussian model: f = mu / (sigma^2 (1 + 1/(n0 c + n)))."""
    cfg = EXACT.model_copy(update={"model": "gaussian", "prior_strength": 50.0})
    k = _est(cfg, conf=0.8, er=0.01, vol=0.1)
    assert k.full_kelly == pytest.approx(0.01 / (0.01 * (1.0 + 1.0 / 40.0)), rel=1e-12)


def test_fraction_and_risk_multiplier_apply() -> None:
    """fraction x full Kelly x (1 - w risk_score)."""
    cfg = KellyConfig(model="binary", uncertainty_z=0.0, fraction=0.25, risk_weight=0.5)
    k = _est(cfg, conf=0.6, risk=0.4, er=0.02, vol=0.05)
    assert k.risk_multiplier == 0.8
    assert k.fraction == pytest.approx(0.25 * two_point_kelly(0.6, 0.02, 0.05) * 0.8, rel=1e-12)


def test_cap_clips_and_flags() -> None:
    """Above max_fraction the fraction is clipped and flagged as capped."""
    cfg = EXACT.model_copy(update={"max_fraction": 0.1})
    k = _est(cfg, conf=0.9)
    assert k.full_kelly == pytest.approx(0.8) and k.fraction == 0.1 and k.capped
    assert not _est(conf=0.9).capped


def test_uncertainty_penalty_formula() -> None:
    """p_eff = p_bar - z / (2 sqrt(N + 1)), N = prior + observed trades."""
    cfg = KellyConfig(uncertainty_z=2.0, prior_strength=48.0)
    k = _est(cfg, conf=0.7)
    assert k.win_prob_effective == pytest.approx(0.7 - 2.0 * 0.5 / 7.0, abs=1e-15)


def test_effective_win_prob_clipped_to_unit_interval() -> None:
    """A big penalty never makes p_eff negative."""
    cfg = KellyConfig(uncertainty_z=5.0, prior_strength=1.0)
    k = _est(cfg, conf=0.1)
    assert k.win_prob_effective == 0.0 and k.full_kelly == 0.0


# ------------------------------------------------------------ no edge means no bet
@pytest.mark.parametrize("er", [0.0, -0.05, -1.0])
@pytest.mark.parametrize("vol", [None, 0.05])
@pytest.mark.parametrize("model", ["predictive", "binary", "gaussian"])
def test_non_positive_expected_return_means_no_bet(er: float, vol: float | None,
                                                   model: str) -> None:
    """expected_return <= 0 is a value ("no edge"), with or without a volatility: size 0."""
    cfg = KellyConfig(model=model)  # type: ignore[arg-type]
    k = _est(cfg, conf=0.9, er=er, vol=vol)
    assert k.full_kelly == 0.0 and k.fraction == 0.0


def test_missing_expected_return_is_not_zero() -> None:
    """None (not given) falls back to the confidence-only binary bet; 0 does not."""
    assert _est(conf=0.9, er=None).fraction > 0.0
    assert _est(conf=0.9, er=0.0).fraction == 0.0


# ----------------------------------------------------------------- monotonicity
confs = st.floats(0.0, 1.0)
edges = st.floats(1e-4, 0.5)
vols = st.floats(1e-3, 2.0)
models = st.sampled_from(["predictive", "binary", "gaussian"])


@given(c1=confs, c2=confs, er=st.none() | edges, vol=st.none() | vols, model=models)
@settings(max_examples=300, deadline=None)
def test_size_non_decreasing_in_confidence(c1: float, c2: float, er: float | None,
                                          vol: float | None, model: str) -> None:
    """Higher confidence never gives a smaller Kelly fraction."""
    lo, hi = sorted((c1, c2))
    cfg = KellyConfig(model=model)  # type: ignore[arg-type]
    assert _est(cfg, conf=hi, er=er, vol=vol).fraction >= _est(cfg, conf=lo, er=er,
                                                               vol=vol).fraction


@given(e1=edges, e2=edges, conf=confs, vol=vols, model=models)
@settings(max_examples=300, deadline=None)
def test_size_non_decreasing_in_edge(e1: float, e2: float, conf: float, vol: float,
                                    model: str) -> None:
    """A larger expected return never gives a smaller Kelly fraction."""
    lo, hi = sorted((e1, e2))
    cfg = KellyConfig(model=model)  # type: ignore[arg-type]
    assert _est(cfg, conf=conf, er=hi, vol=vol).fraction >= _est(cfg, conf=conf, er=lo,
                                                                 vol=vol).fraction


@given(v1=vols, v2=vols, conf=confs, er=edges, model=models)
@settings(max_examples=200, deadline=None)
def test_size_non_increasing_in_volatility(v1: float, v2: float, conf: float, er: float,
                                          model: str) -> None:
    """More volatility never gives a larger Kelly fraction."""
    lo, hi = sorted((v1, v2))
    cfg = KellyConfig(model=model)  # type: ignore[arg-type]
    assert _est(cfg, conf=conf, er=er, vol=lo).fraction >= _est(cfg, conf=conf, er=er,
                                                                vol=hi).fraction


@given(z1=st.floats(0.0, 5.0), z2=st.floats(0.0, 5.0), conf=confs, er=st.none() | edges,
       vol=st.none() | vols)
@settings(max_examples=200, deadline=None)
def test_larger_uncertainty_z_never_increases_size(z1: float, z2: float, conf: float,
                                                   er: float | None, vol: float | None) -> None:
    """A larger uncertainty penalty never increases size (binary model)."""
    lo, hi = sorted((z1, z2))
    small = _est(KellyConfig(model="binary", uncertainty_z=hi), conf=conf, er=er,
                 vol=vol).fraction
    assert small <= _est(KellyConfig(model="binary", uncertainty_z=lo), conf=conf, er=er,
                         vol=vol).fraction


@given(n1=st.floats(1.0, 1e4), n2=st.floats(1.0, 1e4), conf=confs, er=st.none() | edges,
       vol=st.none() | vols, model=models)
@settings(max_examples=200, deadline=None)
def test_weaker_prior_never_increases_size(n1: float, n2: float, conf: float,
                                           er: float | None, vol: float | None,
                                           model: str) -> None:
    """Less prior information (smaller prior_strength) never increases size."""
    lo, hi = sorted((n1, n2))
    weak = _est(KellyConfig(model=model, prior_strength=lo), conf=conf, er=er,  # type: ignore[arg-type]
                vol=vol).fraction
    strong = _est(KellyConfig(model=model, prior_strength=hi), conf=conf, er=er,  # type: ignore[arg-type]
                  vol=vol).fraction
    assert weak <= strong


@pytest.mark.parametrize("model", ["predictive", "binary", "gaussian"])
def test_consistent_evidence_never_shrinks_size(model: str) -> None:
    """Trades that agree with the prior (win rate = confidence, mean = edge) reduce
    uncertainty, so size never goes down as they accumulate."""
    kelly = BayesianKelly(KellyConfig(model=model))  # type: ignore[arg-type]
    sizes = [_est(conf=0.6, er=0.001, vol=0.05, kelly=kelly).fraction]
    for _ in range(10):  # 3 wins of +3 %, 2 losses of -4.25 %: mean 0.1 %
        for r in (0.03, -0.0425, 0.03, -0.0425, 0.03):
            kelly.update("s", "BTC", r)
        sizes.append(_est(conf=0.6, er=0.001, vol=0.05, kelly=kelly).fraction)
    assert sizes[-1] < kelly.config.max_fraction  # not hidden behind the cap
    assert all(b >= a * (1 - 1e-12) for a, b in itertools.pairwise(sizes))
    assert sizes[-1] > sizes[0]


def test_losing_trades_shrink_size() -> None:
    """Realised losses pull the posterior win rate and edge down: smaller size."""
    kelly = BayesianKelly(KellyConfig())
    before = _est(conf=0.7, er=0.02, vol=0.05, kelly=kelly).fraction
    for _ in range(30):
        kelly.update("s", "BTC", -0.02)
    after = _est(conf=0.7, er=0.02, vol=0.05, kelly=kelly)
    assert after.fraction < before and after.observations == 30


def test_posterior_is_per_strategy_and_symbol() -> None:
    """Trades on (s, BTC) leave (s, ETH) and (t, BTC) untouched."""
    kelly = BayesianKelly(KellyConfig())
    for _ in range(20):
        kelly.update("s", "BTC", -0.03)
    fresh = BayesianKelly(KellyConfig()).estimate("s", "ETH", 0.7, 0.2, 0.02, 0.05)
    assert kelly.estimate("s", "ETH", 0.7, 0.2, 0.02, 0.05) == fresh
    assert kelly.estimate("t", "BTC", 0.7, 0.2, 0.02, 0.05).fraction == fresh.fraction
    assert kelly.estimate("s", "BTC", 0.7, 0.2, 0.02, 0.05).fraction < fresh.fraction


def test_empirical_payoff_ratio_shrinks_to_prior() -> None:
    """b = (m0 b0 + n b_emp) / (m0 + n) once there are wins and losses."""
    kelly = BayesianKelly(KellyConfig(payoff_prior_strength=20.0, default_payoff_ratio=1.0))
    for r in (0.04, -0.01) * 10:  # b_emp = 4
        kelly.update("s", "BTC", r)
    k = kelly.estimate("s", "BTC", 0.5, 0.0, None, None)
    assert k.payoff_ratio == pytest.approx((20 * 1.0 + 20 * 4.0) / 40.0)


def test_posterior_edge_shrinks_to_realised_mean() -> None:
    """edge = (m0 mu_signal + sum r) / (m0 + n)."""
    kelly = BayesianKelly(KellyConfig(model="binary", payoff_prior_strength=20.0))
    for _ in range(20):
        kelly.update("s", "BTC", 0.0)
    assert kelly.estimate("s", "BTC", 0.6, 0.0, 0.02, 0.05).edge == pytest.approx(0.01)


def test_kelly_stats_counts_zero_return_as_loss() -> None:
    """A 0 return is not a win."""
    s = KellyStats()
    s.update(0.0)
    assert (s.n, s.wins, s.losses) == (1, 0, 1)


def test_export_restore_exact() -> None:
    """Exported posteriors, through JSON, restore to identical estimates."""
    kelly = BayesianKelly(KellyConfig())
    for i, r in enumerate((0.031, -0.017, 0.002, -0.04, 0.1 / 3)):
        kelly.update("s", f"SYM{i % 2}", r)
    state = json.loads(json.dumps(kelly.export_state()))
    other = BayesianKelly(KellyConfig())
    other.restore_state(state)
    assert other.stats_ == kelly.stats_
    for sym in ("SYM0", "SYM1", "SYM2"):
        assert other.estimate("s", sym, 0.63, 0.4, 0.013, 0.07) == kelly.estimate(
            "s", sym, 0.63, 0.4, 0.013, 0.07)
    assert math.isfinite(other.stats_[("s", "SYM0")].sum_return)
