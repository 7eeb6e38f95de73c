"""tracking.ranks: the rank statistics the A/B verdicts rest on, checked against scipy's exact tests and
against their own bounds (an interval and a test that cannot disagree)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, wilcoxon

from pytest_cosyvoice.tracking import ranks


@pytest.mark.parametrize("n", [5, 8, 13, 21])
def test_signed_rank_p_is_scipys_exact_p(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(20):
        d = rng.normal(0.03, 0.1, n)
        for greater in (True, False):
            want = wilcoxon(d, alternative="greater" if greater else "less", method="exact").pvalue
            assert ranks.one_sample_p(d, 0.0, greater=greater) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(("m", "n"), [(3, 4), (5, 5), (10, 10), (7, 12)])
def test_rank_sum_p_is_scipys_exact_p(m: int, n: int) -> None:
    rng = np.random.default_rng(m * 100 + n)
    for _ in range(20):
        x, y = rng.normal(0.2, 1, m), rng.normal(0, 1, n)
        for greater in (True, False):
            want = mannwhitneyu(x, y, alternative="greater" if greater else "less", method="exact").pvalue
            assert ranks.two_sample_p(x, y, 0.0, greater=greater) == pytest.approx(want, abs=1e-12)


def test_null_tables_sum_to_one_and_match_the_smallest_p() -> None:
    assert ranks.signed_rank_cdf(10, 10 * 11 // 2) == 1.0
    assert ranks.signed_rank_cdf(10, 0) == 2.0 ** -10
    assert ranks.rank_sum_cdf(5, 5, 0) == pytest.approx(1 / math.comb(10, 5))
    assert ranks.rank_sum_cdf(5, 5, 25) == 1.0


def test_the_bound_excludes_theta0_exactly_when_the_test_rejects() -> None:
    rng = np.random.default_rng(7)
    alpha = 0.005
    for _ in range(100):
        d = rng.normal(0.05, 0.1, 20)
        s = ranks.one_sample(d, alpha)
        for theta in (s.low - 1e-9, s.low + 1e-9, s.high - 1e-9, s.high + 1e-9):
            assert (s.low > theta) == (ranks.one_sample_p(d, theta, greater=True) <= alpha)
            assert (s.high < theta) == (ranks.one_sample_p(d, theta, greater=False) <= alpha)
        x, y = rng.normal(0.05, 0.1, 10), rng.normal(0, 0.1, 10)
        t = ranks.two_sample(x, y, alpha)
        for theta in (t.low - 1e-9, t.low + 1e-9):
            assert (t.low > theta) == (ranks.two_sample_p(x, y, theta, greater=True) <= alpha)


def test_too_few_values_give_no_bound() -> None:
    s = ranks.one_sample([0.1, 0.2, 0.3], 0.005)    # smallest one-sided p of 3 values: 1/8
    assert s.low == -math.inf and s.high == math.inf
    assert s.estimate == pytest.approx(0.2)


def test_crossover_removes_a_period_effect_and_covers_the_effect() -> None:
    # d_AB = delta + p, d_BA = delta - p: the head's effect 5 %, the first call 4 % slower.
    rng = np.random.default_rng(3)
    covered, trials = 0, 2000
    periods = []
    for _ in range(trials):
        ab, ba = rng.normal(0.05 + 0.04, 0.1, 10), rng.normal(0.05 - 0.04, 0.1, 10)
        treatment, period = ranks.crossover(ab, ba, 0.025)
        covered += treatment.low <= 0.05 <= treatment.high
        periods.append(period.estimate)
    assert 0.93 <= covered / trials <= 0.97
    assert np.median(periods) == pytest.approx(0.04, abs=0.01)


def test_crossover_p_inverts_the_treatment_bound() -> None:
    rng = np.random.default_rng(11)
    ab, ba = rng.normal(0.1, 0.05, 10), rng.normal(0.06, 0.05, 10)
    treatment, _ = ranks.crossover(ab, ba, 0.005)
    assert ranks.crossover_p(ab, ba, treatment.low - 1e-9, greater=True) <= 0.005
    assert ranks.crossover_p(ab, ba, treatment.low + 1e-9, greater=True) > 0.005


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        ranks.one_sample([], 0.01)
    with pytest.raises(ValueError, match="not finite"):
        ranks.two_sample([1.0, math.nan], [1.0], 0.01)
    with pytest.raises(ValueError, match="alpha 0.7"):
        ranks.one_sample([1.0, 2.0], 0.7)
