"""What a session's end decides, in one place and before anything is written about it: the stored
baseline and its problems, drift against it, the machine against the baseline's, stack changes, the
A/B verdicts, and what --cosy-save-baseline saved (the baseline, then the quality goldens).

`decide` records whatever fails in the `Verdicts`, never raises (the results are still worth showing).
The report (report/) and the terminal summary only render what it decided; finish.py turns
`Verdicts.usage_error` / `Verdicts.fails_on_drift` into the session's exit status. No pytest import.

    verdicts = decide(figures, key, device, EndOptions(Path("baselines"), Path("reports")))
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..judging.measurements import TestFigures
from ..judging.quality_results import TestQuality
from .ab import AbRule, AbVerdicts, judge_ab
from .baseline import Baseline, BaselineError, BaselineStore, SavedSession
from .drift import DEFAULT_MACHINE_TOLERANCE, DEFAULT_TOLERANCE, DriftResult, DriftVerdict, Machine, compare
from .goldens import GoldenError, GoldenStore, GoldenTest
from .health import Health
from .paired import DEFAULT_CONFIRM_PAIRS, DEFAULT_FLOOR, DEFAULT_MAX_PAIRS
from .paired_results import PairedResult, PairedVerdict, PooledResult
from .runkey import RunKey
from .stack import detect_stack, stack_changes


@dataclass(frozen=True)
class EndOptions:
    """What the session's settings ask of its end (paths already resolved)."""

    baseline_dir: Path
    report_dir: Path | None                 # None: no report (--cosy-no-report)
    tolerance: float = DEFAULT_TOLERANCE
    machine_tolerance: float = DEFAULT_MACHINE_TOLERANCE
    save_baseline: bool = False
    fail_on_drift: bool = False
    ab_max_pairs: int = DEFAULT_MAX_PAIRS   # the screen's cap of each test's pairs (AbRule)
    ab_floor: float = DEFAULT_FLOOR         # what a failing A/B verdict guarantees
    ab_confirm_pairs: int = DEFAULT_CONFIRM_PAIRS   # a candidate's fresh pairs
    markdown: Path | None = None            # where the Markdown summary is appended; None: nowhere
    ab_base: str = ""                       # the base side's description; "" when not A/B
    ab_versions: dict[str, str] = field(default_factory=dict)     # the base side's stack

    @property
    def ab_rule(self) -> AbRule:
        return AbRule(self.tolerance, self.ab_max_pairs, self.ab_floor, self.ab_confirm_pairs)


@dataclass(frozen=True)
class SaveOutcome:
    """What --cosy-save-baseline did: saved `tests` tests to `path`, or why not."""

    path: Path | None = None
    tests: int = 0
    error: str = ""       # the store refused (a BaselineError / GoldenError): a usage error of the session
    # Not saved, and not an error: a broken stored baseline is left as it is, or nothing had RTF figures.
    skipped: Literal["", "baseline-broken", "no-rtf"] = ""


@dataclass
class Verdicts:
    figures: list[TestFigures]
    key: RunKey
    options: EndOptions
    baseline_file: Path                             # where this key's baseline lives
    baseline: Baseline | None = None
    baseline_error: str = ""                        # the stored baseline exists but cannot be used
    legacy_files: list[Path] = field(default_factory=list)      # schema-1 files, not used
    other_runners: list[str] = field(default_factory=list)      # runners that do have baselines
    drift: list[DriftResult] | None = None          # None: no usable baseline
    health: Health | None = None
    machine: Machine | None = None                  # against the latest saving session's machine
    stack: dict[str, str] = field(default_factory=dict)         # this session's (tracking.stack)
    stack_changes: list[str] = field(default_factory=list)
    saved: SaveOutcome | None = None                # None: not asked to save
    # A/B (issue #17): the paired verdicts of the passed tests that recorded pairs; None when none did.
    paired: list[PairedResult] | None = None                # RTF
    pooled: PooledResult | None = None
    paired_first_chunk: list[PairedResult] | None = None    # first-chunk latency (ms)
    pooled_first_chunk: PooledResult | None = None
    # The quality gate (issue #18): every quality test of the session, as judged, and its goldens' save.
    quality: list[TestQuality] = field(default_factory=list)
    goldens_saved: SaveOutcome | None = None        # None: not asked to save, or no quality test

    @property
    def regressions(self) -> list[DriftResult]:
        return [r for r in self.drift or [] if r.verdict == DriftVerdict.REGRESSION]

    @property
    def inconclusive(self) -> list[DriftResult]:
        return [r for r in self.drift or [] if r.verdict == DriftVerdict.INCONCLUSIVE]

    @property
    def ab_mode(self) -> bool:
        """A base side was given, or some test recorded pairs: the A/B verdicts lead the summary."""
        return bool(self.options.ab_base) or any(f.pairs for f in self.figures)

    @property
    def ab(self) -> AbVerdicts | None:
        """The A/B verdicts as the report, JUnit and Markdown take them; None when not A/B."""
        if not self.ab_mode:
            return None
        return AbVerdicts(self.options.ab_base, dict(self.options.ab_versions), self.paired, self.pooled,
                          self.paired_first_chunk, self.pooled_first_chunk)

    @property
    def ab_candidates(self) -> list[PairedResult]:
        """Per test, RTF and first chunk: flagged by the screen, not confirmed (reported, never failing)."""
        return [r for r in (self.paired or []) + (self.paired_first_chunk or [])
                if r.verdict is PairedVerdict.CANDIDATE]

    @property
    def ab_regressions(self) -> list[PairedResult]:
        """Per test, RTF and first chunk: the A/B regressions (confirmed on fresh pairs)."""
        return [r for r in (self.paired or []) + (self.paired_first_chunk or [])
                if r.verdict is PairedVerdict.REGRESSION]

    @property
    def ab_regressed(self) -> bool:
        """Any A/B regression: a test's, or the pooled one, of RTF or of first-chunk latency."""
        pooled = [p for p in (self.pooled, self.pooled_first_chunk) if p is not None]
        return bool(self.ab_regressions) or any(p.verdict is PairedVerdict.REGRESSION for p in pooled)

    @property
    def usage_error(self) -> bool:
        """A store cannot be used as asked (the baseline read, or a save refused): the session ends as a
        usage error."""
        return bool(self.baseline_error) or any(s is not None and bool(s.error)
                                                for s in (self.saved, self.goldens_saved))

    @property
    def fails_on_drift(self) -> bool:
        """--cosy-fail-on-drift and a regression, against the baseline or A/B (a test's confirmed one or
        the pooled one; first-chunk latency as well as RTF): the session fails. A/B candidates do not."""
        return self.options.fail_on_drift and (bool(self.regressions) or self.ab_regressed)


def machine_against(saved: SavedSession | None, health: Health | None, tolerance: float) -> Machine:
    """This session's machine against the one of a saving session (its calibration, model reference
    and health)."""
    now = health.calibration_s if health else None
    then = saved.health.calibration_s if saved else None
    ref_now = health.reference_s if health else None
    ref_then = saved.health.reference_s if saved else None
    return Machine(now / then if now and then else None, tuple(health.problems()) if health else (), tolerance,
                   ref_now / ref_then if ref_now and ref_then else None)


def machines(baseline: Baseline, health: Health | None, tolerance: float) -> dict[str, Machine]:
    """Per test: this session's machine against the one of the session that saved its baseline."""
    return {nodeid: machine_against(baseline.session_of(nodeid), health, tolerance) for nodeid in baseline.tests}


def decide(figures: list[TestFigures], key: RunKey, device: str, options: EndOptions, *,
           health: Health | None = None, repo_dir: Path | None = None,
           quality: Sequence[TestQuality] = ()) -> Verdicts:
    """Loads the baseline, judges drift and the A/B pairs, and saves the baseline and the quality
    goldens as `options` ask. `quality`: the session's quality tests, as judged."""
    stack = detect_stack(device, repo_dir or Path.cwd())
    store = BaselineStore(options.baseline_dir)
    found = Verdicts(figures, key, options, store.path_for(key), health=health, stack=stack,
                     legacy_files=store.legacy_files(), quality=list(quality))
    try:
        found.baseline = store.load(key)
    except BaselineError as e:
        found.baseline_error = str(e)
    if found.baseline is not None:
        found.drift = compare(figures, found.baseline, options.tolerance,
                              machine=machines(found.baseline, health, options.machine_tolerance))
        latest = found.baseline.latest()
        found.machine = machine_against(latest, health, options.machine_tolerance)
        if latest is not None:
            found.stack_changes = stack_changes(latest.stack, stack, with_commit=False)
    elif not found.baseline_error:
        found.other_runners = [r for r in store.runners() if r != key.runner]
    found.paired, found.pooled = judge_ab(figures, options.ab_rule, "RTF")
    found.paired_first_chunk, found.pooled_first_chunk = judge_ab(figures, options.ab_rule, "first chunk")
    if options.save_baseline:
        found.saved = save_baseline(store, key, figures, stack, health, broken=bool(found.baseline_error))
        if found.quality:
            found.goldens_saved = save_goldens(GoldenStore(options.baseline_dir), key, found.quality, stack)
    return found


def save_baseline(store: BaselineStore, key: RunKey, figures: list[TestFigures], stack: dict[str, str],
                  health: Health | None, *, broken: bool) -> SaveOutcome:
    """The passed tests' RTF figures become the key's baseline, unless the stored one is broken."""
    if broken:
        return SaveOutcome(skipped="baseline-broken")
    good = [f for f in figures if f.outcome == "passed" and f.rtf]
    if not good:
        return SaveOutcome(skipped="no-rtf")
    try:
        path = store.save(key, good, commit=stack.get("commit"), stack=stack, health=health)
    except BaselineError as e:
        return SaveOutcome(error=str(e))
    return SaveOutcome(path=path, tests=len(good))


def save_goldens(store: GoldenStore, key: RunKey, quality: Sequence[TestQuality],
                 stack: dict[str, str]) -> SaveOutcome:
    """This session's quality tests become the key's goldens; a store that cannot be written is named
    in `error` (exit 4), and nothing is overwritten."""
    try:
        path = store.save(key, [GoldenTest.from_quality(tq) for tq in quality], stack=stack)
    except GoldenError as e:
        return SaveOutcome(error=str(e))
    return SaveOutcome(path=path, tests=len(quality))
