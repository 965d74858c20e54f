"""Confidence intervals cover their true value at about the nominal rate; small statistics behave."""

from __future__ import annotations

import numpy as np
import pytest

from synthcohort.evaluation.stats import auc, ks, residual_risk, tvd, wilson


@pytest.mark.parametrize(("p", "n"), [(0.05, 200), (0.3, 150), (0.5, 60), (0.9, 400)])
def test_wilson_interval_covers_at_nominal_rate(p: float, n: int) -> None:
    rng = np.random.default_rng(11)
    trials = 2000
    hits = 0
    for k in rng.binomial(n, p, size=trials):
        r = wilson(int(k), n)
        hits += r.low <= p <= r.high
    coverage = hits / trials
    # nominal 95 %; Wilson is close to nominal even for small p (binomial sd of the estimate: 0.5 %)
    assert 0.925 <= coverage <= 0.975, coverage


@pytest.mark.parametrize(("main_p", "control_p"), [(0.30, 0.30), (0.45, 0.30), (0.62, 0.60), (0.10, 0.05)])
def test_residual_risk_interval_covers_true_risk(main_p: float, control_p: float) -> None:
    rng = np.random.default_rng(5)
    n, trials = 400, 2000
    true_risk = (main_p - control_p) / (1 - control_p)
    hits = 0
    for _ in range(trials):
        main = wilson(int(rng.binomial(n, main_p)), n)
        control = wilson(int(rng.binomial(n, control_p)), n)
        r = residual_risk(main, control, control)
        # the interval is clipped to [0, 1]: a true risk of 0 is covered when the clipped bound reaches it
        hits += r.low <= max(true_risk, 0.0) <= r.high
    coverage = hits / trials
    assert 0.92 <= coverage <= 0.98, coverage


def test_residual_risk_of_a_perfect_attack_is_one() -> None:
    r = residual_risk(wilson(200, 200), wilson(40, 200), wilson(10, 200))
    assert r.value > 0.95 and r.high == 1.0
    same = residual_risk(wilson(60, 200), wilson(60, 200), wilson(10, 200))
    assert same.value == pytest.approx(0.0) and same.low == 0.0


def test_wilson_handles_edges() -> None:
    assert wilson(0, 50).low == 0.0 and wilson(0, 50).high > 0
    assert wilson(50, 50).high == 1.0 and wilson(50, 50).low < 1
    assert np.isnan(wilson(0, 0).value)


def test_distances_between_distributions() -> None:
    assert tvd([1, 1, 2, 2], [1, 1, 2, 2]) == 0.0
    assert tvd([1, 1], [2, 2]) == 1.0
    assert tvd([1, 2, 2, 2], [1, 1, 1, 2]) == pytest.approx(0.5)
    assert ks(np.arange(10.0), np.arange(10.0)) == 0.0
    assert ks(np.array([]), np.arange(3.0)) is None
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == pytest.approx(0.5)
