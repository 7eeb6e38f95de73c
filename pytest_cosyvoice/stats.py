"""Median and friends: the one place the plugin computes a sample's centre.

Plain Python, no pytest and nothing else of ours, so every room (judging, tracking, the report) and a
script can use it. `median` is `statistics.median` (what pytest-benchmark's `Stats.median` computes,
so the gate's drift and the report's tables agree without the gate needing the `[report]` extra).
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable

__all__ = ["median", "median_or_none"]


def median(values: Iterable[float]) -> float:
    """The median of the values (the mean of the middle two for an even count).

    Raises ValueError on no values: a caller that can have none says what it shows instead
    (see `median_or_none`), rather than getting a NaN that compares False with every limit.
    """
    data = [float(v) for v in values]
    if not data:
        raise ValueError("median of no values")
    return float(statistics.median(data))


def median_or_none(values: Iterable[float]) -> float | None:
    """The median, or None for no values (a table cell shown as "-")."""
    data = [float(v) for v in values]
    return median(data) if data else None
