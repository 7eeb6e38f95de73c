"""Drift of a session's samples against the stored baseline, and the regression rule.

    drift = (current median - baseline median) / baseline median

A change is declared only when it is both large and unlikely to be noise:

* "regression":  drift > +tolerance AND one-sided Mann-Whitney U (current > baseline) p < alpha
* "improvement": drift < -tolerance AND one-sided Mann-Whitney U (current < baseline) p < alpha
* "ok":          |drift| <= tolerance (no test needed to say "within tolerance"), or the drift is
                 beyond tolerance but not significant (`note` says so)
* "new":         the baseline has no samples for this test
* "insufficient-samples": |drift| > tolerance but the samples cannot carry a significance
                 verdict: either side has fewer than `min_samples` (default 3), or even complete
                 separation of the two sides could not reach p < alpha (the exact one-sided
                 Mann-Whitney minimum is 1 / C(n+m, n): 3 vs 3 gives 0.05, so at alpha 0.05
                 the smallest usable pair is 3 vs 4). Also used when the current side has no
                 samples at all, or the baseline median is not positive. The drift is still
                 reported, so a human can judge.

No pytest import here; scipy is a core dependency of the plugin.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

from .baseline import Baseline
from .figures import TestFigures

DEFAULT_TOLERANCE = 0.10
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_SAMPLES = 3

VERDICTS = ("ok", "regression", "improvement", "new", "insufficient-samples")

Samples = Mapping[str, Sequence[float]]
CurrentInput = Union[Samples, Sequence[TestFigures]]
BaselineInput = Union[Baseline, Samples, None]


@dataclass(frozen=True)
class DriftResult:
    nodeid: str
    current_median: float | None
    baseline_median: float | None
    drift: float | None         # fraction: 0.15 means 15 % slower (for RTF)
    p_value: float | None       # one-sided, in the direction of the drift; None when not tested
    verdict: str                # one of VERDICTS
    n_current: int = 0
    n_baseline: int = 0
    note: str = ""

    @property
    def drift_pct(self) -> float | None:
        return None if self.drift is None else 100.0 * self.drift


def _median(samples: Sequence[float]) -> float:
    # statistics.median is exactly what pytest_benchmark.stats.Stats.median computes; called
    # directly because pytest-benchmark is only a [report] extra, and the gate must not need it.
    return float(statistics.median(samples))


def min_attainable_p(n_current: int, n_baseline: int) -> float:
    """Smallest one-sided exact Mann-Whitney p-value these sample counts can produce."""
    if n_current == 0 or n_baseline == 0:
        return 1.0
    return 1.0 / math.comb(n_current + n_baseline, n_current)


def _as_samples(current: CurrentInput, metric: str) -> dict[str, list[float]]:
    if isinstance(current, Mapping):
        return {n: [float(v) for v in s] for n, s in current.items()}
    return {f.nodeid: [float(v) for v in getattr(f, metric)] for f in current}


def compare(current: CurrentInput, baseline: BaselineInput,
            tolerance: float = DEFAULT_TOLERANCE, alpha: float = DEFAULT_ALPHA,
            metric: str = "rtf", min_samples: int = DEFAULT_MIN_SAMPLES) -> list[DriftResult]:
    """One `DriftResult` per current test, in the order given (see the module docstring).

    `current`: nodeid -> samples, or the session's TestFigures (their `metric` samples).
    `baseline`: a loaded `Baseline`, nodeid -> samples, or None (every test is "new").
    Tests only in the baseline are not reported: they were not run (deselected), not slower.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    cur = _as_samples(current, metric)
    if baseline is None:
        base: dict[str, list[float]] = {}
    elif isinstance(baseline, Baseline):
        base = baseline.samples(metric)
    else:
        base = {n: [float(v) for v in s] for n, s in baseline.items()}
    return [judge(nodeid, samples, base.get(nodeid, []), tolerance, alpha, min_samples)
            for nodeid, samples in cur.items()]


def judge(nodeid: str, current: Sequence[float], baseline: Sequence[float],
          tolerance: float = DEFAULT_TOLERANCE, alpha: float = DEFAULT_ALPHA,
          min_samples: int = DEFAULT_MIN_SAMPLES) -> DriftResult:
    """The rule for one test."""
    from scipy.stats import mannwhitneyu

    n_cur, n_base = len(current), len(baseline)
    cur_med = _median(current) if current else None
    base_med = _median(baseline) if baseline else None
    counts = dict(n_current=n_cur, n_baseline=n_base)
    if base_med is None:
        return DriftResult(nodeid, cur_med, None, None, None, "new", **counts,
                           note="no baseline for this test")
    if cur_med is None:
        return DriftResult(nodeid, None, base_med, None, None, "insufficient-samples", **counts,
                           note="no current samples")
    if base_med <= 0:
        return DriftResult(nodeid, cur_med, base_med, None, None, "insufficient-samples",
                           **counts, note="baseline median is not positive")

    drift = (cur_med - base_med) / base_med
    testable = (min(n_cur, n_base) >= min_samples
                and min_attainable_p(n_cur, n_base) < alpha)
    p_value: float | None = None
    if testable:
        side = "greater" if drift >= 0 else "less"
        p_value = float(mannwhitneyu(current, baseline, alternative=side).pvalue)

    if abs(drift) <= tolerance:
        return DriftResult(nodeid, cur_med, base_med, drift, p_value, "ok", **counts)
    if p_value is None:
        return DriftResult(nodeid, cur_med, base_med, drift, None, "insufficient-samples",
                           **counts, note=f"{n_cur} current vs {n_base} baseline samples cannot "
                           f"reach p < {alpha:g}")
    if p_value < alpha:
        verdict = "regression" if drift > 0 else "improvement"
        return DriftResult(nodeid, cur_med, base_med, drift, p_value, verdict, **counts)
    return DriftResult(nodeid, cur_med, base_med, drift, p_value, "ok", **counts,
                       note=f"beyond tolerance but not significant (p={p_value:.3g})")


def regressions(results: Sequence[DriftResult]) -> list[DriftResult]:
    return [r for r in results if r.verdict == "regression"]
