"""The session's report, written from what tracking.verdicts decided: `write_findings` writes the
report files (report.writer) and notes the history's problems; `Findings` is the verdicts with what
was written, as the terminal summary (report.terminal), JUnit and Markdown take it. It decides nothing
and saves nothing. No pytest import.

    found = write_findings(decide(figures, key, device, EndOptions(Path("baselines"), Path("reports"))))
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..tracking.history import history_problems
from ..tracking.verdicts import Verdicts
from .model import GoldenAudio, ReportFiles, ReportInput, StreamRecord
from .writer import write_report


@dataclass
class Findings(Verdicts):
    """The verdicts, and the report written of them."""

    report: ReportFiles | None = None
    report_error: str = ""                          # the report could not be written, and why
    history_problems: list[str] = field(default_factory=list)


def write_findings(verdicts: Verdicts, streams: Sequence[StreamRecord] = (), *, repo_dir: Path | None = None,
                   golden_audio: GoldenAudio | None = None) -> Findings:
    """Writes the report of `verdicts` where their options ask (nothing with --cosy-no-report); a report
    that cannot be written is recorded in `report_error`, never raised (the results are still worth
    showing). `golden_audio`: the quality tests' golden calls' audio, for the page's players."""
    found = Findings(**{f.name: getattr(verdicts, f.name) for f in fields(Verdicts)})
    options = found.options
    if options.report_dir is None:
        return found
    history = options.report_dir / "history.jsonl"
    found.history_problems = history_problems(history)
    try:
        found.report = write_report(options.report_dir, ReportInput(
            found.figures, found.key, found.drift, found.baseline, list(streams), tolerance=options.tolerance,
            history_path=history, repo_dir=repo_dir or Path.cwd(), stack=found.stack,
            stack_changes=found.stack_changes, health=found.health, machine=found.machine,
            commit=found.stack.get("commit", ""), ab=found.ab, quality=found.quality,
            golden_audio=golden_audio or {}))
    except Exception as e:  # noqa: BLE001 - a report that cannot be written must not hide the results
        found.report_error = f"{type(e).__name__}: {e}"
    return found
