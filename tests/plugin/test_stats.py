"""pytest_cosyvoice.stats: the one median every room uses, on known values."""
from __future__ import annotations

import pytest

from pytest_cosyvoice.stats import median, median_or_none


def test_median_of_an_odd_count_is_the_middle_value() -> None:
    assert median([0.31, 0.12, 0.5]) == 0.31


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_median_takes_any_iterable_and_returns_a_float() -> None:
    got = median(x for x in (3, 1, 2))
    assert got == 2.0 and isinstance(got, float)


def test_median_ignores_an_outlier_that_moves_the_mean() -> None:
    assert median([0.25, 0.26, 0.24, 9.0, 0.25]) == 0.25


def test_median_of_no_values_raises_rather_than_nan() -> None:
    with pytest.raises(ValueError, match="median of no values"):
        median([])


def test_median_or_none() -> None:
    assert median_or_none([]) is None
    assert median_or_none([2.0, 6.0]) == 4.0


def test_median_agrees_with_pytest_benchmark_stats() -> None:
    # The report's tables show pytest-benchmark's Stats; the gate's drift uses this median: same number.
    stats = pytest.importorskip("pytest_benchmark.stats")
    values = [0.41, 0.39, 0.44, 0.40, 0.52, 0.38]
    st = stats.Stats()
    for v in values:
        st.update(v)
    assert median(values) == st.median
