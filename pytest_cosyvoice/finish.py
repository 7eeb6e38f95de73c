"""End of session on the controller: `finish()` asks report.findings to gather what the session
found (baseline, drift, A/B verdicts, machine health, report, --cosy-save-baseline) and word it for
the terminal, appends the Markdown summary, names the JUnit properties, and turns the findings into
the session's exit status; plugin.py only calls it."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# pytest's own key for its JUnit writer (LogXML), as its `record_testsuite_property` fixture reads
# it; that fixture cannot be asked at session end (nor on an xdist controller), so the key is.
from _pytest.junitxml import xml_key

from .report.findings import EndOptions, Findings, gather, summary_lines
from .report.markdown import append_markdown, markdown_summary
from .settings import absolute
from .tracking.goldens import GoldenError

if TYPE_CHECKING:
    from .session import CosySession
    from .settings import Settings
    from .tracking.runkey import RunKey


@dataclass
class FinishResult:
    """What `finish` found: lines for the terminal summary and the session's new exit status."""

    lines: list[str] = field(default_factory=list)
    exitstatus: int | pytest.ExitCode = pytest.ExitCode.OK
    junit: list[tuple[str, str]] = field(default_factory=list)    # testsuite properties (`junit_properties`)


STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def markdown_path(s: Settings, base_dir: Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """--cosy-markdown, else $GITHUB_STEP_SUMMARY when set (GitHub Actions' job page), else None."""
    env = os.environ if environ is None else environ
    raw = s.markdown if s.markdown is not None else (env.get(STEP_SUMMARY_ENV) or None)
    return None if raw is None else absolute(Path(raw), base_dir)


def end_options(s: Settings, base_dir: Path, *, ab_base: str = "", ab_versions: Mapping[str, str] | None = None,
                environ: Mapping[str, str] | None = None) -> EndOptions:
    # The settings' folders are absolute already (settings.resolve): the goldens and baselines share one.
    return EndOptions(s.baseline_dir, None if s.no_report else s.report_dir,
                      tolerance=s.rtf_tolerance, machine_tolerance=s.machine_tolerance,
                      save_baseline=s.save_baseline, fail_on_drift=s.fail_on_drift,
                      ab_max_pairs=s.ab_max_pairs, markdown=markdown_path(s, base_dir, environ),
                      ab_base=ab_base, ab_versions=dict(ab_versions or {}))


def junit_properties(found: Findings) -> list[tuple[str, str]]:
    """The A/B verdicts as JUnit testsuite properties: `cosy_ab_pooled` (the pooled RTF line) and
    `cosy_ab_<nodeid>` per test (its RTF verdict); first-chunk latency as `cosy_ab_first_chunk_pooled`
    and `cosy_ab_first_chunk_<nodeid>`. None outside A/B mode."""
    ab = found.ab
    if ab is None:
        return []
    out: list[tuple[str, str]] = []
    for metric, paired, pooled in ab.metrics():
        prefix = "cosy_ab_" if metric == "RTF" else "cosy_ab_first_chunk_"
        out.append((f"{prefix}pooled", ab.pooled_line(pooled)))
        out += [(f"{prefix}{r.nodeid}", r.describe()) for r in paired]
    return out


def add_junit_properties(config: pytest.Config, properties: Sequence[tuple[str, str]]) -> None:
    """Adds testsuite properties to the JUnit XML of --junitxml (nothing without it). pytest writes
    that file in its own pytest_sessionfinish: the caller runs before it (tryfirst)."""
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    for name, value in properties:
        xml.add_global_property(name, value)


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
    options = end_options(session.settings, base_dir, ab_base=session.ab_base, ab_versions=session.ab_versions)
    found = gather(figures, streams, key, device, options, health=session.health(), repo_dir=base_dir,
                   quality=list(session.quality.results.values()), golden_audio=session.quality.golden_audio())
    lines = summary_lines(found)
    status = exit_status(found, exitstatus)
    quality_lines, quality_failed = _quality(session, key)
    lines += quality_lines
    if quality_failed:
        status = pytest.ExitCode.USAGE_ERROR
    if options.markdown is not None:
        error = append_markdown(options.markdown, markdown_summary(found))
        if error:
            lines.append(f"note: the Markdown summary was not written to {options.markdown}: {error}")
    return FinishResult(lines, status, junit_properties(found))


def _quality(session: CosySession, key: RunKey) -> tuple[list[str], bool]:
    """The quality gate's end: --cosy-save-baseline saves the goldens; a golden store that cannot be
    written is an error of the session (True: exit 4), named, and nothing is overwritten."""
    gate = session.quality
    lines: list[str] = []
    if not gate.results:
        return lines, False
    if gate.missing_extra:
        lines.append(f"note: quality MOS not scored: {gate.missing_extra}")
    wer = [c.wer for tq in gate.results.values() for c in tq.calls if c.wer is not None]
    if wer:   # Seed-TTS-eval's two figures: the mean of per-utterance WER, and the utterances above 50 %
        from .judging.intelligibility import summarise

        s = summarise(wer)
        lines.append(f"quality WER (--cosy-asr): mean {s.mean:.3f} over {s.n} utterances, {s.over_half} above 50 %")
    if session.settings.save_baseline:
        try:
            path = gate.save(key)
        except GoldenError as e:
            lines.append(f"ERROR quality goldens not saved: {e}")
            return lines, True
        lines.append(f"quality goldens saved: {path} ({len(gate.results)} tests)")
    return lines, False
