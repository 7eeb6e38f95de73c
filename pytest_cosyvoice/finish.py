"""End of session on the controller: run key, baseline, machine health, drift, report,
--cosy-save-baseline and --cosy-fail-on-drift. `finish()` does the work and returns what the terminal
summary prints and the exit status the session should end with; plugin.py only calls it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .judging.measurements import TestFigures
from .report.model import machine_line, pct
from .report.writer import summary_table
from .tracking.baseline import RESAVE, Baseline, BaselineError, BaselineStore, SavedSession
from .tracking.drift import DriftResult, DriftVerdict, Machine, compare
from .tracking.health import Health
from .tracking.runkey import RunKey, detect_stack, stack_changes

if TYPE_CHECKING:
    from .session import CosySession


@dataclass
class GateResult:
    """What `finish` found: lines for the terminal summary and the session's new exit status."""

    lines: list[str] = field(default_factory=list)
    exitstatus: int | pytest.ExitCode = pytest.ExitCode.OK
    report: Path | None = None


def resolve(path: Path, base: Path) -> Path:
    """A setting's path, relative to the directory pytest was invoked from."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def session_key(session: CosySession) -> tuple[RunKey, str]:
    """The run key of what this session ran (runner, model, device kind, dtype, engine) and its device."""
    return session.run_key()


def passed(figures: list[TestFigures]) -> list[TestFigures]:
    return [f for f in figures if f.outcome == "passed"]


def machine_against(saved: SavedSession | None, health: Health | None, tolerance: float) -> Machine:
    """This session's machine against the one of a saving session (its calibration and health)."""
    now = health.calibration_s if health else None
    then = saved.health.calibration_s if saved else None
    return Machine(now / then if now and then else None, tuple(health.problems()) if health else (), tolerance)


def machines(baseline: Baseline, health: Health | None, tolerance: float) -> dict[str, Machine]:
    """Per test: this session's machine against the one of the session that saved its baseline."""
    return {nodeid: machine_against(baseline.session_of(nodeid), health, tolerance) for nodeid in baseline.tests}


def finish(session: CosySession, exitstatus: int | pytest.ExitCode, base_dir: Path) -> GateResult | None:
    """None when no test recorded figures (the model was not used): nothing to judge or write."""
    figures, streams = session.results()
    if not figures:
        return None
    s = session.settings
    out = GateResult(exitstatus=exitstatus)
    key, device = session_key(session)
    stack = detect_stack(device, base_dir)
    health = session.health()
    store = BaselineStore(resolve(s.baseline_dir, base_dir))
    baseline: Baseline | None = None
    drift: list[DriftResult] | None = None
    broken = False
    try:
        baseline = store.load(key)
    except BaselineError as e:
        broken = True
        out.lines.append(f"ERROR: the stored baseline cannot be used: {e}")
        out.exitstatus = pytest.ExitCode.USAGE_ERROR
    for legacy in store.legacy_files():
        out.lines.append(f"note: {legacy} is not a schema-2 baseline and is not used; {RESAVE}")
    changes: list[str] = []
    machine: Machine | None = None
    if baseline is not None:
        drift = compare(figures, baseline, s.rtf_tolerance, machine=machines(baseline, health, s.machine_tolerance))
        latest = baseline.latest()
        machine = machine_against(latest, health, s.machine_tolerance)
        if latest is not None:
            changes = stack_changes(latest.stack, stack, with_commit=False)
        since = f"baseline of {baseline.updated_at} ({baseline.path})"
        out.lines.append(f"drift against the {since}; stack "
                         + ("unchanged" if not changes else "changed: " + ", ".join(changes)))
    elif not broken:
        others = [r for r in store.runners() if r != key.runner]
        out.lines.append(f"no baseline for runner {key.runner} ({key.config_description()}): run with "
                         "--cosy-save-baseline on a known-good commit"
                         + (f" (baselines exist for runner(s) {', '.join(others)}; --cosy-runner NAME names "
                            "this machine as one of them)" if others else ""))
    out.lines.append(machine_line(health, machine))
    out.lines.append(summary_table(figures, drift))
    notes = [f"  {f.nodeid}: {n}" for f in figures for n in f.round_notes]
    if notes:
        out.lines.append("later RTF rounds that failed a check (the sample is kept):")
        out.lines += notes

    if not s.no_report:
        from .report.model import ReportInput
        from .report.writer import write_report
        from .tracking.history import history_problems

        report_dir = resolve(s.report_dir, base_dir)
        history = report_dir / "history.jsonl"
        out.lines += [f"note: {p}" for p in history_problems(history)]
        try:
            files = write_report(report_dir, ReportInput(
                figures, key, drift, baseline, streams, tolerance=s.rtf_tolerance,
                history_path=history, repo_dir=base_dir, stack=stack, stack_changes=changes,
                health=health, machine=machine, commit=stack.get("commit", "")))
        except Exception as e:  # noqa: BLE001 - a report that cannot be written must not hide the results
            out.lines.append(f"report not written to {report_dir}: {type(e).__name__}: {e}")
        else:
            out.report = files.html
            out.lines.append(f"report: {files.html}")
            shifts = files.change_lines
            if shifts:
                out.lines.append(f"change points in the RTF history ({len(shifts)}; see the report):")
                out.lines += [f"  {line}" for line in shifts[:10]]
            elif files.changes is None:
                out.lines.append(f"change points not computed: {files.changes_note}")

    if s.save_baseline:
        save(out, store, key, figures, stack, health, broken)

    judged = drift or []
    bad = [r for r in judged if r.verdict == DriftVerdict.REGRESSION]
    unsure = [r for r in judged if r.verdict == DriftVerdict.INCONCLUSIVE]
    if unsure:
        out.lines.append(f"inconclusive ({len(unsure)}): {unsure[0].note}; rerun on a quiet machine")
    if bad:
        head = "RTF regression(s) beyond the tolerance" + (
            " (--cosy-fail-on-drift: the session fails)" if s.fail_on_drift else " (reported only)")
        out.lines.append(head + (f"; stack changed since the baseline: {', '.join(changes)}" if changes else "")
                         + ":")
        out.lines += [f"  {r.nodeid}: RTF {r.current_median:.3f} vs baseline {r.baseline_median:.3f} "
                      f"({pct(r.drift)}" + ("" if r.calibrated_drift is None else
                                          f", {pct(r.calibrated_drift)} calibrated")
                      + ("" if r.p_value is None else f", p={r.p_value:.3g}") + ")"
                      for r in bad]
        if s.fail_on_drift and out.exitstatus == pytest.ExitCode.OK:
            out.exitstatus = pytest.ExitCode.TESTS_FAILED
    return out


def save(out: GateResult, store: BaselineStore, key: RunKey, figures: list[TestFigures],
         stack: dict[str, str], health: Health | None, broken: bool) -> None:
    good = [f for f in passed(figures) if f.rtf]
    if broken:
        out.lines.append(f"baseline not saved: {store.path_for(key)} is left as it is (see the error above)")
        return
    if not good:
        out.lines.append("baseline not saved: no passed test recorded RTF figures")
        return
    try:
        path = store.save(key, good, commit=stack.get("commit"), stack=stack, health=health)
    except BaselineError as e:
        out.lines.append(f"ERROR: baseline not saved: {e}")
        out.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    out.lines.append(f"baseline saved ({len(good)} test(s)) for runner {key.runner}: {path}")
    if health is not None and health.problems():
        out.lines.append(f"warning: the machine was busy while this baseline was measured "
                         f"({'; '.join(health.problems())}): re-save it on a quiet machine")
