"""The paired A/B verdict's statistics (pytest_cosyvoice.tracking.paired): verdicts on crafted pairs,
and its error rates, detection and CI coverage over seeded simulated tests (log-normal noise; the
real-rerun tables of issue #17 come with the A/B mode itself)."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from pytest_cosyvoice.tracking import drift
from pytest_cosyvoice.tracking.paired import (
    DEFAULT_ALPHA,
    DEFAULT_TOLERANCE,
    Pair,
    PairedResult,
    PairedVerdict,
    judge_pairs,
    looks,
    min_attainable_p,
    min_pairs,
    pairs_wanted,
    pool,
    ratios,
    wants_more_pairs,
)

RTF = 0.30


def draw(seed: int | np.random.Generator, n: int, shift: float, noise: float = 0.10) -> list[Pair]:
    """n pairs (head, base) around RTF 0.30, head `shift` times slower; each side log-normal with
    `noise` (so the ratio's own noise is noise * sqrt(2))."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    base = RTF * np.exp(rng.normal(0.0, noise, n))
    head = RTF * shift * np.exp(rng.normal(0.0, noise, n))
    return list(zip(head.tolist(), base.tolist(), strict=True))


def sequential(seed: int, shift: float, noise: float = 0.10) -> PairedResult:
    """What the A/B rounds will do: add the pairs the test wants until it has a verdict or its cap."""
    rng = np.random.default_rng(seed)
    pairs = draw(rng, looks()[0], shift, noise)
    result = judge_pairs("t", pairs)
    while wants := pairs_wanted(result):
        pairs += draw(rng, wants, shift, noise)
        result = judge_pairs("t", pairs)
    return result


def with_ratios(rs: list[float]) -> list[Pair]:
    return [(RTF * r, RTF) for r in rs]


def test_verdicts_are_typed_and_written_as_their_names() -> None:
    assert [v.value for v in PairedVerdict] == ["regression", "improvement", "same", "unknown", "inconclusive"]
    r = judge_pairs("t", draw(1, 20, 1.5))
    assert r.verdict is PairedVerdict.REGRESSION and r.verdict == "regression"
    assert str(r.verdict) == f"{r.verdict}" == "regression" and f"{r.verdict:>11}|" == " regression|"
    assert {"regression": 1}[r.verdict] == 1 and json.dumps([r.verdict]) == '["regression"]'


def test_defaults_are_the_drift_rules() -> None:
    # One source for alpha and tolerance: the cross-session rule's constants.
    assert DEFAULT_ALPHA == drift.DEFAULT_ALPHA == 0.01 and DEFAULT_TOLERANCE == drift.DEFAULT_TOLERANCE == 0.05
    r = judge_pairs("t", draw(1, 10, 1.0))
    assert (r.alpha, r.tolerance) == (drift.DEFAULT_ALPHA, drift.DEFAULT_TOLERANCE)


def test_ratio_is_head_over_base() -> None:
    assert ratios([(0.33, 0.30), (0.2, 0.4)]) == [pytest.approx(1.1), pytest.approx(0.5)]


def test_a_clear_slowdown_is_a_regression_and_a_clear_speedup_an_improvement() -> None:
    slow = judge_pairs("t", with_ratios([1.18, 1.22, 1.25, 1.19, 1.21, 1.30, 1.17, 1.24, 1.20, 1.23]))
    assert slow.verdict is PairedVerdict.REGRESSION
    assert slow.median_ratio == pytest.approx(1.215)
    # All ten ratios above 1, none tied: the exact one-sided p is 1 / 2^10.
    assert slow.p_value == pytest.approx(1 / 1024)
    assert 1.17 <= slow.ci_low <= slow.median_ratio <= slow.ci_high <= 1.30
    assert slow.describe() == (f"{slow.median_ratio:.2f}x (95 % CI {slow.ci_low:.2f}..{slow.ci_high:.2f}), "
                               "p = 0.000977, 10 pairs: regression")
    fast = judge_pairs("t", with_ratios([1 / r for r in [1.18, 1.22, 1.25, 1.19, 1.21, 1.30, 1.17, 1.24,
                                                        1.20, 1.23]]))
    assert fast.verdict is PairedVerdict.IMPROVEMENT and fast.p_value == pytest.approx(1 / 1024)
    assert not wants_more_pairs(slow) and not wants_more_pairs(fast)


def test_significant_but_within_tolerance_is_not_a_regression() -> None:
    # Every pair 2-4 % slower: as significant as ten pairs can be, but not beyond the 5 % tolerance.
    r = judge_pairs("t", with_ratios([1.02, 1.03, 1.04, 1.025, 1.035, 1.03, 1.02, 1.04, 1.03, 1.035]))
    assert r.p_value < 0.005 and r.verdict is PairedVerdict.SAME
    assert 0.95 <= r.ci_low and r.ci_high <= 1.05


def test_each_look_tests_at_alpha_over_the_looks() -> None:
    # 10 pairs, 8 above 1 and the two below ranked 1st and 2nd: p = 5/1024 = 0.0049, significant with
    # the default split (alpha 0.01 over 2 looks, 0.005 a look); 9 above and the one below ranked 5th
    # gives p = 10/1024 = 0.0098: significant at 0.01, not at a look's 0.005.
    r = judge_pairs("t", with_ratios([0.99, 0.995, 1.12, 1.15, 1.18, 1.2, 1.22, 1.25, 1.3, 1.35]))
    assert r.p_value == pytest.approx(5 / 1024) and r.verdict is PairedVerdict.REGRESSION
    near = with_ratios([1.08, 1.1, 1.12, 0.86, 1.16, 1.18, 1.2, 1.22, 1.25, 1.3])
    r = judge_pairs("t", near)
    assert r.alpha_per_look == 0.005 and r.p_value == pytest.approx(10 / 1024)
    assert r.verdict is PairedVerdict.UNKNOWN and pairs_wanted(r) == 10
    # One look only (n_looks=1: judged once, at max_pairs) tests at alpha itself.
    assert judge_pairs("t", near, n_looks=1, max_pairs=10).verdict is PairedVerdict.REGRESSION


def test_four_pairs_can_never_be_significant() -> None:
    assert min_attainable_p(4) == 1 / 16 > 0.05 and min_attainable_p(5) == 1 / 32
    assert min_pairs(0.05) == 5 and min_pairs(0.01) == 7 and min_pairs(1 / 32) == 5
    # Four pairs each twice as slow: all on one side, the smallest p there is, and still no verdict.
    r = judge_pairs("t", with_ratios([2.0, 2.1, 2.2, 2.3]))
    assert r.p_value == pytest.approx(1 / 16) and r.verdict is PairedVerdict.UNKNOWN
    assert wants_more_pairs(r) and pairs_wanted(r) == 6          # up to the first look, 10 pairs
    for seed in range(50):
        assert judge_pairs("t", draw(seed, 4, 3.0)).verdict is PairedVerdict.UNKNOWN
    # A cap below the fewest pairs that can reach a look's alpha is refused, naming both.
    with pytest.raises(ValueError, match=r"max_pairs 4 is below 5, .* p <= 0.05"):
        judge_pairs("t", with_ratios([2.0, 2.1, 2.2, 2.3]), alpha=0.05, n_looks=1, max_pairs=4)


def test_looks_and_the_pairs_each_wants() -> None:
    assert looks() == (10, 20) and looks(n_looks=1) == (20,) and looks(0.01, 30, 3) == (10, 20, 30)
    assert looks(0.01, 20, 3) == (9, 14, 20)          # alpha 0.0033 a look: none before 9 pairs
    first = judge_pairs("t", draw(3, 3, 1.0))
    assert first.verdict is PairedVerdict.UNKNOWN and pairs_wanted(first) == 7
    assert first.note == "3 pairs: the first look is at 10"


def test_unknown_at_the_cap_is_inconclusive_with_its_interval() -> None:
    # Around +6 %, spread 3 % .. 30 % either way: the median is beyond the tolerance, 11 of 20 ratios
    # above it is not significant, and the interval straddles the tolerance.
    spread = with_ratios([1.06 * math.exp(sign * 0.03 * k) for k in range(1, 11) for sign in (1, -1)])
    r = judge_pairs("t", spread)
    assert r.median_ratio > 1.05 and r.p_value > 0.1 and r.ci_low < 1.0 < 1.05 < r.ci_high
    assert r.verdict is PairedVerdict.INCONCLUSIVE and not wants_more_pairs(r) and pairs_wanted(r) == 0
    assert r.note == f"inconclusive: 20 pairs, CI {r.ci_low:.2f}..{r.ci_high:.2f}" == r.describe()
    assert r.note == "inconclusive: 20 pairs, CI 0.93..1.21"
    # The same pairs below a higher cap want more: up to its next look (15 and 30 pairs).
    more = judge_pairs("t", spread, max_pairs=30)
    assert more.verdict is PairedVerdict.UNKNOWN and pairs_wanted(more) == 10


def test_identical_sides_are_the_same() -> None:
    r = judge_pairs("t", [(0.3, 0.3)] * 10)
    assert (r.median_ratio, r.ci_low, r.ci_high, r.p_value) == (1.0, 1.0, 1.0, 1.0)
    assert r.verdict is PairedVerdict.SAME


def test_results_are_reproducible() -> None:
    pairs = draw(5, 12, 1.04)
    assert judge_pairs("a", pairs) == judge_pairs("a", pairs)
    session = {"a": pairs, "b": draw(6, 12, 1.2)}
    assert pool(session) == pool(dict(session))
    # Other seeds give other bootstraps (on 12 pairs the bootstrap medians take few values, so often
    # the same percentiles), on the same point estimate and p.
    others = [judge_pairs("a", pairs, seed=seed) for seed in range(10)]
    assert {(o.median_ratio, o.p_value) for o in others} == {(others[0].median_ratio, others[0].p_value)}
    assert max(o.ci_low for o in others) - min(o.ci_low for o in others) < 0.03
    assert max(o.ci_high for o in others) - min(o.ci_high for o in others) < 0.03


def test_a_a_pairs_give_no_false_verdicts_beyond_alpha() -> None:
    # Head and base the same code, 10 % log-normal noise a side, each of 200 tests run as the A/B
    # rounds will run it (pairs added at the looks until a verdict or the cap). The rule's bound is
    # alpha a direction (0.01 split over the looks); allow twice that for a finite simulation.
    results = [sequential(1000 + s, 1.0) for s in range(200)]
    regressions = sum(r.verdict is PairedVerdict.REGRESSION for r in results)
    improvements = sum(r.verdict is PairedVerdict.IMPROVEMENT for r in results)
    assert regressions <= 2 * DEFAULT_ALPHA * len(results), regressions
    assert improvements <= 2 * DEFAULT_ALPHA * len(results), improvements
    assert all(r.verdict in (PairedVerdict.SAME, PairedVerdict.INCONCLUSIVE) for r in results
               if r.verdict not in (PairedVerdict.REGRESSION, PairedVerdict.IMPROVEMENT))


def test_a_twenty_percent_slowdown_is_found_with_ten_pairs() -> None:
    # 10 % noise on the ratio (7 % a side): the first look, at 10 pairs, finds +20 % nearly always.
    found = sum(judge_pairs("t", draw(s, 10, 1.2, noise=0.07)).verdict is PairedVerdict.REGRESSION
                for s in range(100))
    assert found >= 90, found
    # 10 % a side (14 % on the ratio): the second look catches what the first missed.
    found = sum(sequential(2000 + s, 1.2).verdict is PairedVerdict.REGRESSION for s in range(100))
    assert found >= 95, found


def test_the_interval_contains_the_true_ratio_in_most_trials() -> None:
    # Log-normal noise around a true ratio of 1.1: its median ratio is 1.1. A 95 % percentile
    # bootstrap of a median on 10-20 pairs covers a little less than 95 %; 85 % leaves a margin.
    for n in (10, 20):
        hits = 0
        for s in range(200):
            r = judge_pairs("t", draw(3000 + s, n, 1.1))
            hits += r.ci_low <= 1.1 <= r.ci_high
        assert hits >= 170, (n, hits)


def test_the_pooled_line() -> None:
    session = {f"test_{i}": draw(100 + i, 10, 1.2) for i in range(3)}
    pooled = pool(session)
    medians = [judge_pairs(k, v).median_ratio for k, v in session.items()]
    assert pooled.ratio == pytest.approx(math.prod(medians) ** (1 / 3))      # geometric mean
    assert pooled.ci_low < pooled.ratio < pooled.ci_high and pooled.ci_low > 1.05
    assert pooled.verdict is PairedVerdict.REGRESSION and pooled.p_value <= DEFAULT_ALPHA
    assert (pooled.n_tests, pooled.n_pairs) == (3, 30)
    assert pooled.describe() == (f"head/base RTF {pooled.ratio:.2f}x (95 % CI {pooled.ci_low:.2f}-"
                                 f"{pooled.ci_high:.2f}) over 3 tests, 30 pairs: regression")
    assert re.fullmatch(r"head/base RTF 1\.\d\dx \(95 % CI 1\.\d\d-1\.\d\d\) over 3 tests, 30 pairs: regression",
                        pooled.describe())
    ms = pool({"t": [(120.0, 100.0)] * 10}, metric="first-chunk ms")
    assert ms.describe() == "head/base first-chunk ms 1.20x (95 % CI 1.20-1.20) over 1 test, 10 pairs: regression"


def test_pooled_verdicts() -> None:
    # A/A over 36 tests: the pooled ratio is pinned near 1, "same".
    aa = pool({f"t{i}": draw(200 + i, 10, 1.0) for i in range(36)})
    assert aa.verdict is PairedVerdict.SAME and 0.95 <= aa.ci_low <= aa.ci_high <= 1.05
    # A speedup pooled over tests.
    assert pool({f"t{i}": draw(300 + i, 10, 0.8) for i in range(5)}).verdict is PairedVerdict.IMPROVEMENT
    # Undecided while a test still wants pairs; inconclusive once none does.
    short = {"a": draw(7, 5, 1.04), "b": draw(8, 5, 1.04)}
    assert pool(short).verdict is PairedVerdict.UNKNOWN
    capped = {"a": draw(9, 20, 1.04), "b": draw(10, 20, 1.04)}
    results = [judge_pairs(k, v) for k, v in capped.items()]
    assert all(r.verdict is PairedVerdict.INCONCLUSIVE for r in results)
    assert pool(capped, results).verdict is PairedVerdict.INCONCLUSIVE


def test_pooling_one_test_gives_its_median() -> None:
    pairs = draw(12, 10, 1.3)
    assert pool({"t": pairs}).ratio == pytest.approx(judge_pairs("t", pairs).median_ratio)


@pytest.mark.parametrize(("pairs", "message"), [
    ([], r"test 'tests/x.py::t' has no pairs"),
    ([(0.3, 0.3), (0.0, 0.3)], r"pair 2 has head 0\.0; paired values must be positive finite"),
    ([(0.3, -0.1)], r"pair 1 has base -0\.1;"),
    ([(0.3, 0.3), (0.3, 0.3), (math.nan, 0.3)], r"pair 3 has head nan;"),
    ([(0.3, math.inf)], r"pair 1 has base inf;"),
    ([(0.3, 0.3, 0.3)], r"pair 1 is \(0\.3, 0\.3, 0\.3\), not \(head, base\)"),
])
def test_bad_pairs_are_refused_naming_the_value(pairs: list[Pair], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge_pairs("tests/x.py::t", pairs)
    with pytest.raises(ValueError, match=message):
        pool({"tests/x.py::t": pairs})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alpha": 0.0}, r"alpha 0\.0 is not between 0 and 0\.5"),
    ({"alpha": 0.7}, r"alpha 0\.7"),
    ({"tolerance": -0.05}, r"tolerance -0\.05 is not a fraction"),
    ({"confidence": 95}, r"confidence 95 is not between 0 and 1"),
    ({"resamples": 10}, r"resamples 10 is too few"),
    ({"n_looks": 0}, r"n_looks 0 is not a positive number"),
    ({"max_pairs": 6}, r"max_pairs 6 is below 8, .* p <= 0\.005 \(alpha 0\.01 over 2 looks\)"),
])
def test_bad_rules_are_refused_naming_the_value(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge_pairs("t", draw(1, 10, 1.0), **kwargs)  # type: ignore[arg-type]


def test_no_tests_to_pool() -> None:
    with pytest.raises(ValueError, match="no tests to pool"):
        pool({})
