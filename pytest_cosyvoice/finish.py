"""End of session on the controller: `finish()` asks report.findings to gather what the session
found (baseline, drift, machine health, report, --cosy-save-baseline) and word it for the terminal,
and turns the findings into the session's exit status; plugin.py only calls it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .report.findings import EndOptions, Findings, gather, summary_lines

if TYPE_CHECKING:
    from .session import CosySession
    from .settings import Settings


@dataclass
class FinishResult:
    """What `finish` found: lines for the terminal summary and the session's new exit status."""

    lines: list[str] = field(default_factory=list)
    exitstatus: int | pytest.ExitCode = pytest.ExitCode.OK


def resolve(path: Path, base: Path) -> Path:
    """A setting's path, relative to the directory pytest was invoked from."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def end_options(s: Settings, base_dir: Path) -> EndOptions:
    return EndOptions(resolve(s.baseline_dir, base_dir), None if s.no_report else resolve(s.report_dir, base_dir),
                      tolerance=s.rtf_tolerance, machine_tolerance=s.machine_tolerance,
                      save_baseline=s.save_baseline, fail_on_drift=s.fail_on_drift)


def exit_status(found: Findings, exitstatus: int | pytest.ExitCode) -> int | pytest.ExitCode:
    """A baseline store that cannot be used as asked is a usage error (4); a regression under
    --cosy-fail-on-drift fails a session that passed otherwise (1)."""
    if found.usage_error:
        return pytest.ExitCode.USAGE_ERROR
    if found.fails_on_drift and exitstatus == pytest.ExitCode.OK:
        return pytest.ExitCode.TESTS_FAILED
    return exitstatus


def finish(session: CosySession, exitstatus: int | pytest.ExitCode, base_dir: Path) -> FinishResult | None:
    """None when no test recorded figures (the model was not used): nothing to judge or write."""
    figures, streams = session.results()
    if not figures:
        return None
    key, device = session.run_key()
    found = gather(figures, streams, key, device, end_options(session.settings, base_dir),
                   health=session.health(), repo_dir=base_dir)
    return FinishResult(summary_lines(found), exit_status(found, exitstatus))
