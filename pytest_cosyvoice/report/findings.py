"""The end of a session, in two steps: `gather` finds what there is to say (the stored baseline and
its problems, drift, the machine against the baseline's, stack changes, the report files, the saved
baseline) and `summary_lines` words it for the terminal. Neither imports pytest: finish.py calls
both on the controller and turns `Findings.usage_error` / `Findings.fails_on_drift` into the
session's exit status.

    found = gather(figures, streams, key, device, EndOptions(Path("baselines"), Path("reports")))
    print("\n".join(summary_lines(found)))
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..judging.measurements import TestFigures
from ..tracking.baseline import RESAVE, Baseline, BaselineError, BaselineStore, SavedSession
from ..tracking.drift import (
    DEFAULT_MACHINE_TOLERANCE,
    DEFAULT_TOLERANCE,
    DriftResult,
    DriftVerdict,
    Machine,
    compare,
)
from ..tracking.health import Health
from ..tracking.history import history_problems
from ..tracking.runkey import RunKey
from ..tracking.stack import detect_stack, stack_changes
from .model import ReportFiles, ReportInput, StreamRecord, machine_line, pct
from .writer import summary_table, write_report


@dataclass(frozen=True)
class EndOptions:
    """What the session's settings ask of its end (paths already resolved)."""

    baseline_dir: Path
    report_dir: Path | None                 # None: no report (--cosy-no-report)
    tolerance: float = DEFAULT_TOLERANCE
    machine_tolerance: float = DEFAULT_MACHINE_TOLERANCE
    save_baseline: bool = False
    fail_on_drift: bool = False


@dataclass(frozen=True)
class SaveOutcome:
    """What --cosy-save-baseline did: saved `tests` tests to `path`, or why not."""

    path: Path | None = None
    tests: int = 0
    error: str = ""       # the store refused (a BaselineError): a usage error of the session
    # Not saved, and not an error: a broken stored baseline is left as it is, or nothing had RTF figures.
    skipped: Literal["", "baseline-broken", "no-rtf"] = ""


@dataclass
class Findings:
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
    stack_changes: list[str] = field(default_factory=list)
    history_problems: list[str] = field(default_factory=list)
    report: ReportFiles | None = None
    report_error: str = ""                          # the report could not be written, and why
    saved: SaveOutcome | None = None                # None: not asked to save

    @property
    def regressions(self) -> list[DriftResult]:
        return [r for r in self.drift or [] if r.verdict == DriftVerdict.REGRESSION]

    @property
    def inconclusive(self) -> list[DriftResult]:
        return [r for r in self.drift or [] if r.verdict == DriftVerdict.INCONCLUSIVE]

    @property
    def usage_error(self) -> bool:
        """The baseline store cannot be used as asked: the session ends as a usage error."""
        return bool(self.baseline_error) or (self.saved is not None and bool(self.saved.error))

    @property
    def fails_on_drift(self) -> bool:
        """--cosy-fail-on-drift and a regression: the session fails."""
        return self.options.fail_on_drift and bool(self.regressions)


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


def gather(figures: list[TestFigures], streams: Sequence[StreamRecord], key: RunKey, device: str,
           options: EndOptions, *, health: Health | None = None, repo_dir: Path | None = None) -> Findings:
    """Loads the baseline, judges drift, writes the report and saves the baseline as `options` ask;
    whatever fails is recorded in the findings, never raised (the results are still worth showing)."""
    base = repo_dir or Path.cwd()
    stack = detect_stack(device, base)
    store = BaselineStore(options.baseline_dir)
    found = Findings(figures, key, options, store.path_for(key), health=health,
                     legacy_files=store.legacy_files())
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

    if options.report_dir is not None:
        history = options.report_dir / "history.jsonl"
        found.history_problems = history_problems(history)
        try:
            found.report = write_report(options.report_dir, ReportInput(
                figures, key, found.drift, found.baseline, list(streams), tolerance=options.tolerance,
                history_path=history, repo_dir=base, stack=stack, stack_changes=found.stack_changes,
                health=health, machine=found.machine, commit=stack.get("commit", "")))
        except Exception as e:  # noqa: BLE001 - a report that cannot be written must not hide the results
            found.report_error = f"{type(e).__name__}: {e}"

    if options.save_baseline:
        found.saved = _save(store, key, figures, stack, health, broken=bool(found.baseline_error))
    return found


def _save(store: BaselineStore, key: RunKey, figures: list[TestFigures], stack: dict[str, str],
          health: Health | None, *, broken: bool) -> SaveOutcome:
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


def summary_lines(found: Findings) -> list[str]:
    """The terminal summary: baseline and stack, the machine, the table, round notes, the report and
    its change points, the saved baseline, then what is inconclusive and what regressed."""
    out: list[str] = []
    if found.baseline_error:
        out.append(f"ERROR: the stored baseline cannot be used: {found.baseline_error}")
    out += [f"note: {legacy} is not a schema-2 baseline and is not used; {RESAVE}" for legacy in found.legacy_files]
    key, changes = found.key, found.stack_changes
    if found.baseline is not None:
        since = f"baseline of {found.baseline.updated_at} ({found.baseline.path})"
        out.append(f"drift against the {since}; stack "
                   + ("unchanged" if not changes else "changed: " + ", ".join(changes)))
    elif not found.baseline_error:
        others = found.other_runners
        out.append(f"no baseline for runner {key.runner} ({key.config_description()}): run with "
                   "--cosy-save-baseline on a known-good commit"
                   + (f" (baselines exist for runner(s) {', '.join(others)}; --cosy-runner NAME names "
                      "this machine as one of them)" if others else ""))
    out.append(machine_line(found.health, found.machine))
    out.append(summary_table(found.figures, found.drift))
    notes = [f"  {f.nodeid}: {n}" for f in found.figures for n in f.round_notes]
    if notes:
        out.append("later RTF rounds that failed a check (the sample is kept):")
        out += notes

    out += [f"note: {p}" for p in found.history_problems]
    if found.report_error:
        out.append(f"report not written to {found.options.report_dir}: {found.report_error}")
    elif found.report is not None:
        out.append(f"report: {found.report.html}")
        shifts = found.report.change_lines
        if shifts:
            out.append(f"change points in the RTF history ({len(shifts)}; see the report):")
            out += [f"  {line}" for line in shifts[:10]]
        elif found.report.changes is None:
            out.append(f"change points not computed: {found.report.changes_note}")

    if found.saved is not None:
        out += _saved_lines(found)

    unsure, bad = found.inconclusive, found.regressions
    if unsure:
        # A moved model reference is the machine or the model's code: a quiet rerun cannot tell which.
        moved = found.baseline is not None and machine_against(
            found.baseline.session_of(unsure[0].nodeid), found.health, found.options.machine_tolerance).reference_moved
        out.append(f"inconclusive ({len(unsure)}): {unsure[0].note}"
                   + ("" if moved else "; rerun on a quiet machine"))
    if bad:
        head = "RTF regression(s) beyond the tolerance" + (
            " (--cosy-fail-on-drift: the session fails)" if found.options.fail_on_drift else " (reported only)")
        out.append(head + (f"; stack changed since the baseline: {', '.join(changes)}" if changes else "") + ":")
        out += [f"  {r.nodeid}: RTF {r.current_median:.3f} vs baseline {r.baseline_median:.3f} "
                f"({pct(r.drift)}" + ("" if r.calibrated_drift is None else f", {pct(r.calibrated_drift)} calibrated")
                + ("" if r.p_value is None else f", p={r.p_value:.3g}") + ")"
                for r in bad]
    return out


def _saved_lines(found: Findings) -> list[str]:
    saved = found.saved
    assert saved is not None
    if saved.skipped == "baseline-broken":
        return [f"baseline not saved: {found.baseline_file} is left as it is (see the error above)"]
    if saved.skipped == "no-rtf":
        return ["baseline not saved: no passed test recorded RTF figures"]
    if saved.error:
        return [f"ERROR: baseline not saved: {saved.error}"]
    out = [f"baseline saved ({saved.tests} test(s)) for runner {found.key.runner}: {saved.path}"]
    problems = found.health.problems() if found.health is not None else []
    if problems:
        out.append(f"warning: the machine was busy while this baseline was measured "
                   f"({'; '.join(problems)}): re-save it on a quiet machine")
    return out
