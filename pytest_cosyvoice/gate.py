"""End of session on the controller: hardware key, baseline, drift, report, --cosy-save-baseline and
--cosy-fail-on-drift. `finish()` does the work and returns what the terminal summary prints and
the exit status the session should end with; plugin.py only calls it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .baseline import Baseline, BaselineError, BaselineStore
from .drift import DriftResult, compare, regressions
from .figures import TestFigures
from .hardware import HardwareKey, current_commit

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


def session_key(session: "CosySession") -> HardwareKey:
    """The hardware key of what this session ran: the model dir, device, dtype and engine it used."""
    rt = session._runtime  # loaded in this process (no xdist); the controller of workers has none
    if rt is not None:
        device, fp16 = str(rt.device), bool(rt.fp16)
    else:
        from cosyvoice_runtime.runtime import resolve_device

        device, fp16 = str(resolve_device(session.settings.device)), session.settings.fp16
    return HardwareKey.detect(session.model_dir(), device=device, dtype="fp16" if fp16 else "fp32",
                              engine=session.settings.engine)


def passed(figures: list[TestFigures]) -> list[TestFigures]:
    return [f for f in figures if f.outcome == "passed"]


def finish(session: "CosySession", exitstatus: int | pytest.ExitCode, base_dir: Path) -> GateResult | None:
    """None when no test recorded figures (the model was not used): nothing to judge or write."""
    figures, _ = session.results()
    if not figures:
        return None
    s = session.settings
    out = GateResult(exitstatus=exitstatus)
    key = session_key(session)
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
    if baseline is not None:
        drift = compare(figures, baseline, s.rtf_tolerance)
    elif not broken:
        out.lines.append(f"no baseline stored for this hardware key ({key.describe()})")
    out.lines.append(summary(figures, drift))

    if not s.no_report:
        from .report import ReportInput, write_report

        report_dir = resolve(s.report_dir, base_dir)
        try:
            files = write_report(report_dir, ReportInput(
                figures, key, drift, baseline, session.report_streams(), tolerance=s.rtf_tolerance,
                history_path=report_dir / "history.jsonl", repo_dir=base_dir))
        except Exception as e:  # noqa: BLE001 - a report that cannot be written must not hide the results
            out.lines.append(f"report not written to {report_dir}: {type(e).__name__}: {e}")
        else:
            out.report = files.html
            out.lines.append(f"report: {files.html}")

    if s.save_baseline:
        good = [f for f in passed(figures) if f.rtf]
        if broken:
            out.lines.append(f"baseline not saved: {store.path_for(key)} is left as it is (see the error above)")
        elif not good:
            out.lines.append("baseline not saved: no passed test recorded RTF figures")
        else:
            try:
                path = store.save(key, good, current_commit(base_dir))
            except BaselineError as e:
                out.lines.append(f"ERROR: baseline not saved: {e}")
                out.exitstatus = pytest.ExitCode.USAGE_ERROR
            else:
                out.lines.append(f"baseline saved ({len(good)} test(s)): {path}")

    bad = regressions(drift or [])
    if bad:
        head = "RTF regression(s) beyond the tolerance" + (
            " (--cosy-fail-on-drift: the session fails)" if s.fail_on_drift else " (reported only)")
        out.lines.append(head + ":")
        out.lines += [f"  {r.nodeid}: RTF {r.current_median:.3f} vs baseline {r.baseline_median:.3f} "
                      f"({r.drift_pct:+.1f}%" + ("" if r.p_value is None else f", p={r.p_value:.3g}") + ")"
                      for r in bad]
        if s.fail_on_drift and out.exitstatus == pytest.ExitCode.OK:
            out.exitstatus = pytest.ExitCode.TESTS_FAILED
    return out


def summary(figures: list[TestFigures], drift: list[DriftResult] | None) -> str:
    from .report import summary_table

    return summary_table(figures, drift)
