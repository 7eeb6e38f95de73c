"""Rank-based estimates whose interval and test are one statement: Hodges-Lehmann with the inverted
Wilcoxon signed-rank interval (one sample of paired differences), and with the inverted Mann-Whitney
interval (the shift between two samples), plus the nonparametric two-period crossover analysis built
on the second (Koch 1972) that the A/B verdicts use.

Why these: the verdict's estimate, its interval and its test come from the same ranks, so "the
one-sided (1 - alpha) bound excludes theta0" and "the one-sided test of theta0 rejects at alpha" are
the same statement (up to ties); a median beside a bootstrap beside a signed-rank p could disagree.

    one_sample(d, alpha)        the centre of d: median of the Walsh averages (d_i + d_j) / 2, i <= j;
                                low = the k-th smallest Walsh average, high = the k-th largest, k the
                                largest count with P(T <= k - 1) <= alpha under the signed-rank null
    two_sample(x, y, alpha)     the shift x - y: median of the m*n differences x_i - y_j; bounds the
                                k-th smallest / largest difference, k from the Mann-Whitney null
    crossover(ab, ba, alpha)    d = log(head / base) per pair; "AB" pairs ran the head first. With a
                                period effect p (the first call of a pair slower by p): d_AB = delta + p,
                                d_BA = delta - p. delta is half the shift between d_AB and -d_BA, p half
                                the shift between d_AB and d_BA, each with its Mann-Whitney bounds

Each bound is one-sided at `alpha` (so [low, high] is a 1 - 2 alpha interval); a bound the sample
sizes cannot reach is -inf / +inf. The null distributions are exact (counted, integer arithmetic)
up to `EXACT_MAX` values a sample, normal beyond. No pytest import; numpy only.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = ["EXACT_MAX", "Shift", "crossover", "crossover_p", "one_sample", "one_sample_p", "rank_sum_cdf",
           "signed_rank_cdf", "two_sample", "two_sample_p"]

# Counting the null distribution is cheap up to here (the rank sum's table has m*n + 1 entries).
EXACT_MAX = 60

_Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Shift:
    """An estimate and its one-sided bounds, each at the alpha it was asked for."""

    estimate: float
    low: float          # -inf: the sample cannot reach a bound at this alpha
    high: float         # +inf: likewise
    n: int              # values (one sample) or m + n (two samples)

    def scaled(self, factor: float) -> Shift:
        """The same statement about factor * theta (the crossover's halves)."""
        lo, hi = self.low * factor, self.high * factor
        if factor < 0:
            lo, hi = hi, lo
        return Shift(self.estimate * factor, lo, hi, self.n)


@lru_cache(maxsize=256)
def _signed_rank_cdf_table(n: int) -> tuple[float, ...]:
    return _cumulative(_signed_rank_counts(n), 2 ** n)


@lru_cache(maxsize=1024)
def _rank_sum_cdf_table(m: int, n: int) -> tuple[float, ...]:
    return _cumulative(_rank_sum_counts(m, n), math.comb(m + n, m))


def _cumulative(counts: tuple[int, ...], total: int) -> tuple[float, ...]:
    out, running = [], 0
    for c in counts:
        running += c
        out.append(running / total)
    return tuple(out)


def _signed_rank_counts(n: int) -> tuple[int, ...]:
    # counts[w] = number of sign vectors with W+ = w; W+ ranges over 0 .. n(n+1)/2.
    counts = [1]
    for k in range(1, n + 1):
        grown = counts + [0] * k
        for w in range(len(counts)):
            grown[w + k] += counts[w]
        counts = grown
    return tuple(counts)


def _rank_sum_counts(m: int, n: int) -> tuple[int, ...]:
    # The Gaussian binomial [m+n choose m]_q: counts[u] = arrangements with Mann-Whitney U = u.
    # Product of (1 - q^(n+i)) / (1 - q^i), i = 1..m; each division by (1 - q^i) is a running sum.
    size = m * n + 1
    poly = [0] * (size + m + n + 1)
    poly[0] = 1
    for i in range(1, m + 1):
        shift = n + i
        for k in range(len(poly) - 1, shift - 1, -1):
            poly[k] -= poly[k - shift]
        for k in range(i, len(poly)):
            poly[k] += poly[k - i]
    return tuple(poly[:size])


def signed_rank_cdf(n: int, w: int) -> float:
    """P(W+ <= w) under the signed-rank null for n non-zero values (exact up to EXACT_MAX)."""
    if w < 0:
        return 0.0
    top = n * (n + 1) // 2
    if w >= top:
        return 1.0
    if n <= EXACT_MAX:
        return _signed_rank_cdf_table(n)[w]
    mean, var = top / 2.0, n * (n + 1) * (2 * n + 1) / 24.0
    return NormalDist(mean, math.sqrt(var)).cdf(w + 0.5)


def rank_sum_cdf(m: int, n: int, u: int) -> float:
    """P(U <= u) under the Mann-Whitney null for samples of m and n (exact up to EXACT_MAX each)."""
    if u < 0:
        return 0.0
    if u >= m * n:
        return 1.0
    if m <= EXACT_MAX and n <= EXACT_MAX:
        return _rank_sum_cdf_table(m, n)[u]
    mean, var = m * n / 2.0, m * n * (m + n + 1) / 12.0
    return NormalDist(mean, math.sqrt(var)).cdf(u + 0.5)


def _depth(cdf_at: Callable[[int], float], total: int, alpha: float) -> int:
    """The largest k (0 .. total) with P(stat <= k - 1) <= alpha: the bounds are the k-th order values."""
    lo, hi = 0, total            # P(stat <= -1) = 0 <= alpha, so k = 0 always qualifies
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cdf_at(mid - 1) <= alpha:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _check(alpha: float) -> None:
    if not (0.0 < alpha < 0.5):
        raise ValueError(f"alpha {alpha!r} is not between 0 and 0.5 (a one-sided level)")


def _bounds(sorted_values: _Floats, k: int) -> tuple[float, float]:
    if k <= 0:
        return -math.inf, math.inf
    return float(sorted_values[k - 1]), float(sorted_values[len(sorted_values) - k])


def _values(v: Sequence[float] | _Floats, what: str) -> _Floats:
    a = np.asarray(v, dtype=np.float64)
    if a.ndim != 1 or len(a) == 0:
        raise ValueError(f"{what} needs at least one value, got {len(a) if a.ndim == 1 else a.shape!r}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} has a value that is not finite: {a.tolist()!r}")
    return a


def one_sample(d: Sequence[float] | _Floats, alpha: float) -> Shift:
    """Hodges-Lehmann centre of d with its signed-rank bounds (each one-sided at alpha)."""
    _check(alpha)
    a = _values(d, "one_sample")
    i, j = np.triu_indices(len(a))
    walsh = np.sort((a[i] + a[j]) / 2.0)
    k = _depth(lambda w: signed_rank_cdf(len(a), w), len(walsh), alpha)
    low, high = _bounds(walsh, k)
    return Shift(float(np.median(walsh)), low, high, len(a))


def two_sample(x: Sequence[float] | _Floats, y: Sequence[float] | _Floats, alpha: float) -> Shift:
    """Hodges-Lehmann shift x - y with its Mann-Whitney bounds (each one-sided at alpha)."""
    _check(alpha)
    a, b = _values(x, "two_sample x"), _values(y, "two_sample y")
    diffs = np.sort(np.subtract.outer(a, b).ravel())
    k = _depth(lambda u: rank_sum_cdf(len(a), len(b), u), len(diffs), alpha)
    low, high = _bounds(diffs, k)
    return Shift(float(np.median(diffs)), low, high, len(a) + len(b))


def one_sample_p(d: Sequence[float] | _Floats, theta0: float, *, greater: bool) -> float:
    """One-sided signed-rank p of "centre > theta0" (greater) or "< theta0", the test the bounds invert
    (counted on the Walsh averages: W+ = how many lie above theta0, ties counting half)."""
    a = _values(d, "one_sample_p")
    i, j = np.triu_indices(len(a))
    walsh = (a[i] + a[j]) / 2.0
    beyond = np.sum(walsh < theta0) if greater else np.sum(walsh > theta0)
    ties = np.sum(walsh == theta0)
    # P(W <= observed count on the wrong side) under the null; ties split evenly (a conservative half).
    return signed_rank_cdf(len(a), int(math.floor(beyond + ties / 2.0)))


def two_sample_p(x: Sequence[float] | _Floats, y: Sequence[float] | _Floats, shift0: float, *,
                 greater: bool) -> float:
    """One-sided Mann-Whitney p of "shift x - y > shift0" (greater) or "< shift0"."""
    a, b = _values(x, "two_sample_p x"), _values(y, "two_sample_p y")
    diffs = np.subtract.outer(a, b).ravel()
    beyond = np.sum(diffs < shift0) if greater else np.sum(diffs > shift0)
    ties = np.sum(diffs == shift0)
    return rank_sum_cdf(len(a), len(b), int(math.floor(beyond + ties / 2.0)))


def crossover(ab: Sequence[float] | _Floats, ba: Sequence[float] | _Floats, alpha: float) -> tuple[Shift, Shift]:
    """(treatment, period) of a two-period crossover on log ratios d = log(head / base): `ab` the pairs
    whose head ran first, `ba` those whose base did. treatment: delta, the head's effect with the order
    effect removed; period: p, how much slower the first call of a pair ran than the second (log)."""
    a, b = _values(ab, "crossover ab"), _values(ba, "crossover ba")
    treatment = two_sample(a, -b, alpha).scaled(0.5)
    period = two_sample(a, b, alpha).scaled(0.5)
    return treatment, period


def crossover_p(ab: Sequence[float] | _Floats, ba: Sequence[float] | _Floats, delta0: float, *,
                greater: bool) -> float:
    """One-sided p of "delta > delta0" (greater) or "< delta0": the rank-sum test the crossover's
    treatment bounds invert."""
    return two_sample_p(ab, -np.asarray(ba, dtype=np.float64), 2.0 * delta0, greater=greater)

