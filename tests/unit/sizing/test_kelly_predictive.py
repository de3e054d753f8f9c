"""The predictive Kelly model: exact closed form, exact posterior, learning, exploration,
volatility target — closed-form values next to invariants (docs/sizing-math.md §2)."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3.config.schema import KellyConfig
from himari_l3.sizing.kelly import (
    LEVERAGE_BOUND,
    BayesianKelly,
    binary_kelly,
    two_point_notional_kelly,
)

CFG = KellyConfig()  # predictive is the default


def _two_point(p: float, up: float, down: float) -> tuple[float, float]:
    """(mean, std) of +up with probability p, -down otherwise."""
    return p * up - (1 - p) * down, (up + down) * math.sqrt(p * (1 - p))


def _learn(kelly: BayesianKelly, returns: list[float], key: tuple[str, str] = ("s", "X")) -> None:
    for r in returns:
        kelly.update(*key, r)


def _planted(p: float, up: float, down: float, n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [up if rng.random() < p else -down for _ in range(n)]


# ------------------------------------------------------------------ closed form
@given(p=st.floats(0.02, 0.98), up=st.floats(1e-3, 2.0), down=st.floats(1e-3, 0.99))
@settings(max_examples=300, deadline=None)
def test_notional_kelly_is_exact_for_any_two_point_trade(p: float, up: float,
                                                          down: float) -> None:
    """From (mean, std, p) the form gives p/d - (1-p)/u of the planted trade exactly."""
    mean, std = _two_point(p, up, down)
    exact = p / down - (1 - p) / up
    got = two_point_notional_kelly(mean, std, p)
    if mean <= 0:
        assert got == 0.0
    else:
        assert got == pytest.approx(min(exact, LEVERAGE_BOUND), rel=1e-9)


def test_notional_kelly_closed_values() -> None:
    """Coin 55/45 at +-20 %: f* = 0.5; 2:1 payoff at p = 0.4: f* = 0.5; symmetric shape:
    m / (s^2 - m^2)."""
    assert two_point_notional_kelly(*_two_point(0.55, 0.2, 0.2), 0.55) == pytest.approx(0.5)
    assert two_point_notional_kelly(*_two_point(0.4, 0.4, 0.2), 0.4) == pytest.approx(0.5)
    assert two_point_notional_kelly(0.01, 0.1, 0.5) == pytest.approx(0.01 / (0.01 - 1e-4))


def test_notional_kelly_no_edge_and_no_downside() -> None:
    """Mean <= 0: no bet; a lower point that is not a loss: the (finite) leverage bound."""
    assert two_point_notional_kelly(0.0, 0.1, 0.5) == 0.0
    assert two_point_notional_kelly(-0.01, 0.1, 0.5) == 0.0
    assert two_point_notional_kelly(0.2, 0.1, 0.5) == LEVERAGE_BOUND


@given(m=st.floats(1e-5, 0.5), s1=st.floats(1e-3, 5.0), s2=st.floats(1e-3, 5.0),
       p=st.floats(0.01, 0.99))
@settings(max_examples=300, deadline=None)
def test_notional_kelly_non_increasing_in_volatility(m: float, s1: float, s2: float,
                                                     p: float) -> None:
    """More dispersion around the same positive mean never raises the notional optimum."""
    lo, hi = sorted((s1, s2))
    assert two_point_notional_kelly(m, hi, p) <= two_point_notional_kelly(m, lo, p) * (1 + 1e-12)


# ------------------------------------------------------------ exact posterior
def test_fresh_estimate_matches_the_posterior_formula() -> None:
    """N = 1/(kappa sigma)^2 + c n_r, edge = c n_r mu / N, std = sigma sqrt(1 + 1/N),
    p = 1/2; fraction = fraction x full x (1 - w rho)."""
    k = BayesianKelly(CFG).estimate("s", "X", 0.7, 0.4, 0.02, 0.05)
    big_n = 1 / 0.05**2 + 0.7
    edge = 0.7 * 0.02 / big_n
    full = two_point_notional_kelly(edge, 0.05 * math.sqrt(1 + 1 / big_n), 0.5)
    assert k.edge == pytest.approx(edge, rel=1e-12)
    assert k.edge_std == pytest.approx(0.05 / math.sqrt(big_n), rel=1e-12)
    assert (k.model, k.win_prob, k.observations, k.exploring) == ("predictive", 0.5, 0, False)
    assert k.full_kelly == pytest.approx(full, rel=1e-12)
    assert k.fraction == pytest.approx(0.25 * full * 0.8, rel=1e-12)


def test_learned_estimate_matches_the_posterior_formula() -> None:
    """With outcomes: edge = (c n_r mu + sum r)/(1/(kappa sigma)^2 + c n_r + n) and
    p = (n0/2 + wins)/(n0 + n)."""
    kelly = BayesianKelly(CFG)
    rets = [0.05, -0.02, 0.03, 0.04, -0.01]
    _learn(kelly, rets)
    k = kelly.estimate("s", "X", 0.6, 0.0, 0.01, 0.04)
    big_n = 1 / 0.04**2 + 0.6 + 5
    edge = (0.6 * 0.01 + sum(rets)) / big_n
    p = (25.0 + 3) / 55.0
    assert k.edge == pytest.approx(edge, rel=1e-12) and k.win_prob == pytest.approx(p)
    assert k.full_kelly == pytest.approx(
        two_point_notional_kelly(edge, 0.04 * math.sqrt(1 + 1 / big_n), p), rel=1e-12)


def test_missing_expected_return_reads_confidence_as_a_sigma_bet() -> None:
    """No expected return: the report is (2c - 1) sigma (a +-sigma bet won with probability c)."""
    a = BayesianKelly(CFG).estimate("s", "X", 0.7, 0.0, None, 0.05)
    b = BayesianKelly(CFG).estimate("s", "X", 0.7, 0.0, 0.4 * 0.05, 0.05)
    assert a.fraction == pytest.approx(b.fraction, rel=1e-12)
    assert BayesianKelly(CFG).estimate("s", "X", 0.45, 0.0, None, 0.05).fraction == 0.0


def test_no_volatility_uses_the_binary_rule() -> None:
    """Without a volatility there is no notional scale: the binary rule, labelled as such."""
    k = BayesianKelly(CFG).estimate("s", "X", 0.8, 0.0, None, None)
    p_eff = 0.8 - 0.5 / math.sqrt(51.0)
    assert k.model == "binary" and k.full_kelly == pytest.approx(binary_kelly(p_eff, 1.0))


# ------------------------------------------------------------------ learning
@pytest.mark.parametrize(("p", "up", "down"), [(0.55, 0.2, 0.2), (0.4, 0.4, 0.2),
                                               (0.25, 0.8, 0.2), (0.7, 0.12, 0.2)])
def test_learned_full_kelly_approaches_the_planted_optimum(p: float, up: float,
                                                           down: float) -> None:
    """After 20,000 planted outcomes the full Kelly is within 12 % of f* = p/d - (1-p)/u
    (the sampling error of the mean is about 7 % of the edge here)."""
    kelly = BayesianKelly(CFG)
    _learn(kelly, _planted(p, up, down, 20_000))
    mean, std = _two_point(p, up, down)
    k = kelly.estimate("s", "X", p, 0.0, mean, std)
    assert k.full_kelly == pytest.approx(p / down - (1 - p) / up, rel=0.12)


def test_sceptical_prior_keeps_fresh_sizes_small() -> None:
    """Before outcomes the size is about fraction x c mu / (1 + c sigma^2) (kappa = n_r = 1):
    a Sharpe-0.4 claim (quarter Kelly 200 % of equity) gets 0.4 %."""
    k = BayesianKelly(CFG).estimate("s", "X", 0.8, 0.0, 0.02, 0.05)
    assert k.fraction == pytest.approx(0.25 * 0.8 * 0.02 / (1 + 0.8 * 0.05**2), rel=0.01)
    assert k.fraction < 0.01 * 0.25 * 0.02 / 0.05**2


@pytest.mark.parametrize("overstate", [2.0, 5.0])
def test_overstated_report_is_learned_away(overstate: float) -> None:
    """After 4,000 outcomes an overstated expected return moves the size by < 1 %."""
    kelly = BayesianKelly(CFG)
    _learn(kelly, _planted(0.55, 0.2, 0.2, 4_000))
    mean, std = _two_point(0.55, 0.2, 0.2)
    honest = kelly.estimate("s", "X", 0.55, 0.0, mean, std).fraction
    loud = kelly.estimate("s", "X", 0.95, 0.0, overstate * mean, std).fraction
    assert honest <= loud <= 1.01 * honest


# ---------------------------------------------------------------- exploration
def test_dipped_key_is_explored_at_a_bounded_size() -> None:
    """Three losses put the posterior edge below 0: the size is the exploration floor,
    min(epsilon, fraction x optimistic Kelly), flagged, and never above that full Kelly."""
    kelly = BayesianKelly(CFG)
    _learn(kelly, [-0.2, -0.2, -0.2])
    k = kelly.estimate("s", "X", 0.55, 0.0, 0.02, 0.2)
    assert k.edge < 0.0 and k.exploring
    assert k.fraction == CFG.exploration_fraction <= CFG.fraction * k.full_kelly
    upper = k.edge + CFG.exploration_z * k.edge_std
    assert k.full_kelly == pytest.approx(
        two_point_notional_kelly(upper, 0.2 * math.sqrt(1 + 1 / 28.55), k.win_prob))


def test_exploration_stops_once_the_edge_is_ruled_out() -> None:
    """A planted loser (Sharpe -0.1) is explored, then dropped for good once
    edge + z sd(edge) <= 0 (about (z / 0.1)^2 - 1/(kappa sigma)^2 = 600 trades)."""
    kelly = BayesianKelly(CFG)
    rets = _planted(0.45, 0.2, 0.2, 3_000, seed=4)
    sizes = []
    for r in rets:
        sizes.append(kelly.estimate("s", "X", 0.55, 0.0, 0.02, 0.2).fraction)
        kelly.update("s", "X", r)
    assert max(sizes[1_000:]) <= CFG.exploration_fraction
    assert 0 < sum(f > 0 for f in sizes) < 1_500 and sizes[-1] == 0.0


def test_no_exploration_without_outcomes_or_without_a_claim() -> None:
    """A fresh key is sized by the prior alone; a report of no edge is never explored;
    exploration_fraction = 0 switches exploration off."""
    assert not BayesianKelly(CFG).estimate("s", "X", 0.55, 0.0, 1e-6, 0.2).exploring
    kelly = BayesianKelly(CFG)
    _learn(kelly, [-0.2, -0.2, -0.2])
    assert kelly.estimate("s", "X", 0.55, 0.0, 0.0, 0.2).fraction == 0.0
    assert kelly.estimate("s", "X", 0.55, 0.0, -0.01, 0.2).fraction == 0.0
    off = BayesianKelly(CFG.model_copy(update={"exploration_fraction": 0.0}))
    _learn(off, [-0.2, -0.2, -0.2])
    assert off.estimate("s", "X", 0.55, 0.0, 0.02, 0.2).fraction == 0.0


def test_no_volatility_rule_explores_with_an_optimistic_win_rate() -> None:
    """Without a volatility, a key whose learned win rate killed the bet is explored."""
    kelly = BayesianKelly(CFG)
    _learn(kelly, [-0.01] * 10)  # p_bar 0.5: p_eff 0.44 says no bet, p_up 0.63 says maybe
    k = kelly.estimate("s", "X", 0.6, 0.0, None, None)
    assert k.exploring and 0 < k.fraction <= CFG.exploration_fraction
    assert BayesianKelly(CFG.model_copy(update={"model": "binary"})).estimate(
        "s", "X", 0.6, 0.0, None, None).fraction > 0  # the binary model itself unchanged


# --------------------------------------------------------- volatility target, caps
def test_volatility_target_bounds_the_equity_volatility_of_a_trade() -> None:
    """fraction x predictive volatility <= volatility_target, flagged as the bound."""
    kelly = BayesianKelly(CFG.model_copy(update={"volatility_target": 0.001}))
    _learn(kelly, _planted(0.6, 0.02, 0.02, 500))
    k = kelly.estimate("s", "X", 0.6, 0.0, 0.004, 0.02)
    sd = 0.02 * math.sqrt(1 + 1 / (2500 + 0.6 + 500))
    assert k.bound == "volatility_target" and k.capped
    assert k.fraction == pytest.approx(0.001 / sd, rel=1e-12)


def test_max_fraction_wins_over_the_volatility_target() -> None:
    """The Kelly cap still bounds the size when the volatility target is loose."""
    cfg = CFG.model_copy(update={"volatility_target": 1.0, "max_fraction": 0.01})
    kelly = BayesianKelly(cfg)
    _learn(kelly, _planted(0.6, 0.02, 0.02, 500))
    k = kelly.estimate("s", "X", 0.6, 0.0, 0.004, 0.02)
    assert (k.fraction, k.bound) == (0.01, "max_fraction")


returns = st.lists(st.floats(-1.0, 10.0), max_size=40)


@given(rets=returns, conf=st.floats(0.0, 1.0), risk=st.floats(0.0, 1.0),
       er=st.none() | st.floats(-1.0, 1.0), vol=st.none() | st.floats(1e-300, 5.0),
       vt=st.none() | st.floats(1e-4, 1.0), n0=st.floats(1e-300, 1e6),
       kappa=st.floats(1e-3, 100.0))
@settings(max_examples=500, deadline=None)
def test_size_finite_bounded_and_never_above_full_kelly(rets: list[float], conf: float,
                                                        risk: float, er: float | None,
                                                        vol: float | None, vt: float | None,
                                                        n0: float, kappa: float) -> None:
    """For any learned history, prior and signal: finite, in [0, max_fraction], at most
    fraction x full Kelly, and while exploring at most exploration_fraction."""
    kelly = BayesianKelly(CFG.model_copy(update={
        "volatility_target": vt, "prior_strength": n0, "edge_prior_kelly": kappa}))
    _learn(kelly, rets)
    k = kelly.estimate("s", "X", conf, risk, er, vol)
    assert math.isfinite(k.fraction) and math.isfinite(k.full_kelly)
    assert 0.0 < k.win_prob < 1.0 or k.model == "binary"
    assert 0.0 <= k.fraction <= CFG.max_fraction
    assert k.fraction <= CFG.fraction * k.full_kelly * (1 + 1e-12)
    if k.exploring:
        assert k.fraction <= CFG.exploration_fraction
    if er is not None and er <= 0.0:
        assert k.fraction == 0.0


# -------------------------------------------------------- monotone in the prior
@pytest.mark.parametrize("knob", ["report_strength", "edge_prior_kelly"])
@given(a=st.floats(0.01, 100.0), b=st.floats(0.01, 100.0), conf=st.floats(0.0, 1.0),
       er=st.floats(1e-4, 0.5), vol=st.floats(1e-3, 2.0))
@settings(max_examples=200, deadline=None)
def test_more_sceptical_prior_never_increases_fresh_size(knob: str, a: float, b: float,
                                                         conf: float, er: float,
                                                         vol: float) -> None:
    """Fewer pseudo-trades for Layer 2's report, or a tighter prior on the Kelly leverage,
    never increase a fresh key's size."""
    lo, hi = sorted((a, b))
    sceptic = BayesianKelly(CFG.model_copy(update={knob: lo}))
    believer = BayesianKelly(CFG.model_copy(update={knob: hi}))
    assert sceptic.estimate("s", "X", conf, 0.0, er, vol).fraction <= believer.estimate(
        "s", "X", conf, 0.0, er, vol).fraction * (1 + 1e-12)


# ------------------------------------------------------------------ replay
def test_exploring_estimate_restores_exactly() -> None:
    """Exploration is a function of the exported state and the signal: a restored engine
    gives the identical estimate."""
    kelly = BayesianKelly(CFG)
    _learn(kelly, [-0.2, 0.2, -0.2, -0.2])
    other = BayesianKelly(CFG)
    other.restore_state(json.loads(json.dumps(kelly.export_state())))
    a = kelly.estimate("s", "X", 0.55, 0.1, 0.02, 0.2)
    assert a.exploring and other.estimate("s", "X", 0.55, 0.1, 0.02, 0.2) == a
