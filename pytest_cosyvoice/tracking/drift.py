"""Drift of a session's samples against the stored baseline, and the verdict rule.

One sample per test per **round** (see pytest_cosyvoice.rounds: rounds are spread over the session
in shuffled order, so one slow minute touches one sample of many tests, not every sample of one).
The machine's own speed is known from the calibration workload, and the model's kernels on it from
the model reference (pytest_cosyvoice.tracking.health):

    drift      = median(current) / median(baseline) - 1                 (what is judged)
    machine    = calibration_now / calibration_at_baseline               (1.10: 10 % slower)
    reference  = model_reference_now / model_reference_at_baseline     (the components' own work)
    calibrated = median(current / scale) / median(baseline) - 1         (shown beside it)
    scale      = reference where both sides measured it, else machine

Neither ratio is a correction: both are validity checks, and `calibrated` is shown, never judged
(measured on the 2-core VM, a quiet rerun whose RTF did not move saw its calibration 6 % faster).
The model reference is the scale where there is one because it tracks the tests better: over 10
clean reruns against one baseline on the 2-core VM, while the tests' median RTF ratio wandered from
x1.20 to x0.73, the model reference was within 0.034 of it (median absolute difference; calibration
0.072; docs/reports.md, `benchmarks/gate_truth.py --tracking`).

Verdicts, per test:

* "regression" / "improvement": |drift| > tolerance AND a one-sided Mann-Whitney U test of the
  current samples against the baseline's gives p < alpha, AND the machine is comparable with the
  baseline's (calibration within `machine_tolerance`, no contention, no throttling).
* "inconclusive": the same size of change, but the machine is not comparable: it is X % slower
  or faster than at baseline, or busy (other processes, steal, GPU throttling), or the model
  reference moved beyond the machine tolerance (the model's kernels ran slower or faster: the
  machine, or the components' code or torch; only an A/B run in one session tells them apart).
  The note says why; a slow VM or a busy neighbour is never called a regression.
* "ok": |drift| <= tolerance, or beyond it but not significant (note).
* "new": the baseline has no samples for this test.
* "insufficient-samples": |drift| > tolerance but the sample counts cannot reach p < alpha even
  with complete separation (the exact one-sided minimum is 1 / C(n+m, n): 4 vs 4 gives 0.014,
  4 vs 5 0.0079, 5 vs 5 0.004), or fewer than `min_samples` a side; the drift is still shown.

No pytest import here; scipy is a core dependency of the plugin.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypedDict

from ..judging.measurements import TestFigures
from ..stats import median
from .baseline import Baseline

DEFAULT_TOLERANCE = 0.05
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_SAMPLES = 4
DEFAULT_MACHINE_TOLERANCE = 0.10



class DriftVerdict(str, Enum):
    """A test's drift verdict (the module docstring gives the rule). The values are what rtf.csv, the
    report and the terminal show, and what users' scripts compare with: a member equals its value
    (`DriftVerdict.OK == "ok"`), hashes like it and formats as it, as `enum.StrEnum` (Python 3.11+)
    does; written out by hand because the plugin still supports Python 3.10."""

    OK = "ok"
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"
    INSUFFICIENT_SAMPLES = "insufficient-samples"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class Machine:
    """How this session's machine compares with the baseline's (pytest_cosyvoice.tracking.health)."""

    ratio: float | None = None          # calibration now / at baseline; None: not measured on a side
    problems: tuple[str, ...] = ()      # contention or throttling seen in this session
    tolerance: float = DEFAULT_MACHINE_TOLERANCE
    # model reference now / at baseline; None: not measured on a side (a baseline saved before it)
    reference_ratio: float | None = None

    @property
    def reference_moved(self) -> bool:
        """The model's own kernels ran slower or faster than at baseline, beyond the machine tolerance."""
        return self.reference_ratio is not None and abs(self.reference_ratio - 1.0) > self.tolerance

    @property
    def scale(self) -> float | None:
        """What `calibrated_drift` divides by: the model reference's ratio where both sides measured it
        (it tracks the tests' RTF better, see the module docstring), else the calibration's."""
        for r in (self.reference_ratio, self.ratio):
            if r is not None and r > 0:
                return r
        return None

    @property
    def comparable(self) -> bool:
        return (not self.problems and (self.ratio is None or abs(self.ratio - 1.0) <= self.tolerance)
                and not self.reference_moved)

    def describe(self) -> str:
        """'machine 23 % slower than at baseline (other processes used 48 % of the CPU)', then the
        model reference: 'model reference x1.02', or where it moved 'the model's kernels ran 24 %
        slower than at baseline (model reference x1.24): the machine or the component code; an A/B
        run decides'."""
        if self.ratio is None:
            head = "machine speed not compared (no calibration on one side)"
        else:
            pct = 100.0 * (self.ratio - 1.0)
            head = (f"machine {abs(pct):.0f} % {'slower' if pct >= 0 else 'faster'} than at baseline "
                    f"(calibration x{self.ratio:.2f})")
        why = list(self.problems)
        if self.ratio is not None and abs(self.ratio - 1.0) > self.tolerance:
            why.append(f"beyond the machine tolerance of {self.tolerance:.0%}")
        text = head + (f" ({'; '.join(why)})" if why else "")
        if self.reference_ratio is None:
            return text
        if not self.reference_moved:
            return f"{text}; model reference x{self.reference_ratio:.2f}"
        pct = 100.0 * (self.reference_ratio - 1.0)
        return (f"{text}; the model's kernels ran {abs(pct):.0f} % {'slower' if pct >= 0 else 'faster'} than "
                f"at baseline (model reference x{self.reference_ratio:.2f}): the machine or the component "
                "code; an A/B run decides")

Samples = Mapping[str, Sequence[float]]
CurrentInput = Samples | Sequence[TestFigures]
BaselineInput = Baseline | Samples | None


@dataclass(frozen=True)
class DriftResult:
    nodeid: str
    current_median: float | None
    baseline_median: float | None
    drift: float | None         # fraction: 0.15 means 15 % slower (for RTF)
    p_value: float | None       # one-sided, in the direction of the drift; None when not tested
    verdict: DriftVerdict
    n_current: int = 0
    n_baseline: int = 0
    note: str = ""
    calibrated_drift: float | None = None   # median(current / machine.scale) against the baseline; shown only

    @property
    def drift_pct(self) -> float | None:
        return None if self.drift is None else 100.0 * self.drift


class _Counts(TypedDict):
    n_current: int
    n_baseline: int


class _Calibrated(TypedDict, total=False):
    calibrated_drift: float


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
            metric: str = "rtf", min_samples: int = DEFAULT_MIN_SAMPLES,
            machine: Machine | Mapping[str, Machine] | None = None) -> list[DriftResult]:
    """One `DriftResult` per current test, in the order given (see the module docstring).

    `current`: nodeid -> samples, or the session's TestFigures (their `metric` samples).
    `baseline`: a loaded `Baseline`, nodeid -> samples, or None (every test is "new").
    `machine`: this session's machine against the baseline's, one for all tests or per nodeid (the
    baseline of each test may come from another saving session); None: not compared (raw figures).
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
    def machine_of(nodeid: str) -> Machine | None:
        return machine.get(nodeid) if isinstance(machine, Mapping) else machine
    return [judge(nodeid, samples, base.get(nodeid, []), tolerance, alpha, min_samples, machine_of(nodeid))
            for nodeid, samples in cur.items()]


def judge(nodeid: str, current: Sequence[float], baseline: Sequence[float],
          tolerance: float = DEFAULT_TOLERANCE, alpha: float = DEFAULT_ALPHA,
          min_samples: int = DEFAULT_MIN_SAMPLES, machine: Machine | None = None) -> DriftResult:
    """The rule for one test."""
    from scipy.stats import mannwhitneyu

    machine = machine or Machine()
    n_cur, n_base = len(current), len(baseline)
    cur_med = median(current) if current else None
    base_med = median(baseline) if baseline else None
    counts: _Counts = {"n_current": n_cur, "n_baseline": n_base}
    if base_med is None:
        return DriftResult(nodeid, cur_med, None, None, None, DriftVerdict.NEW, **counts,
                           note="no baseline for this test")
    if cur_med is None:
        return DriftResult(nodeid, None, base_med, None, None, DriftVerdict.INSUFFICIENT_SAMPLES, **counts,
                           note="no current samples")
    if base_med <= 0:
        return DriftResult(nodeid, cur_med, base_med, None, None, DriftVerdict.INSUFFICIENT_SAMPLES,
                           **counts, note="baseline median is not positive")

    drift = (cur_med - base_med) / base_med
    extra: _Calibrated = {}
    scale = machine.scale
    if scale:
        cal_med = median([v / scale for v in current])
        extra = dict(calibrated_drift=(cal_med - base_med) / base_med)
    testable = (min(n_cur, n_base) >= min_samples
                and min_attainable_p(n_cur, n_base) < alpha)
    p_value: float | None = None
    if testable:
        side = "greater" if drift >= 0 else "less"
        p_value = float(mannwhitneyu(current, baseline, alternative=side).pvalue)

    if abs(drift) <= tolerance:
        return DriftResult(nodeid, cur_med, base_med, drift, p_value, DriftVerdict.OK, **counts, **extra)
    if not machine.comparable:
        # Whatever the samples say, this machine cannot vouch for them.
        return DriftResult(nodeid, cur_med, base_med, drift, p_value, DriftVerdict.INCONCLUSIVE, **counts, **extra,
                           note=machine.describe())
    if p_value is None:
        return DriftResult(nodeid, cur_med, base_med, drift, None, DriftVerdict.INSUFFICIENT_SAMPLES,
                           **counts, **extra, note=f"{n_cur} current vs {n_base} baseline samples cannot "
                           f"reach p < {alpha:g}")
    if p_value < alpha:
        verdict = DriftVerdict.REGRESSION if drift > 0 else DriftVerdict.IMPROVEMENT
        return DriftResult(nodeid, cur_med, base_med, drift, p_value, verdict, **counts, **extra)
    return DriftResult(nodeid, cur_med, base_med, drift, p_value, DriftVerdict.OK, **counts, **extra,
                       note=f"beyond tolerance but not significant (p={p_value:.3g})")
