"""End of session on the controller, in pytest-benchmark's order: `finish()` has tracking.verdicts
decide (baseline, drift, A/B verdicts, machine health; --cosy-save-baseline saves the baseline and the
quality goldens), then report.findings write the report, then report.terminal word it for the
terminal; it appends the Markdown summary, names the JUnit properties, and turns the verdicts into
the session's exit status. plugin.py only calls it."""
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

from .judging.measurements import TestFigures
from .judging.quality_results import TestQuality
from .options import absolute
from .report.findings import Findings, write_findings
from .report.markdown import append_markdown, markdown_summary
from .report.model import GoldenAudio, StreamRecord
from .report.terminal import summary_lines
from .tracking.ab import AbRule
from .tracking.health import Health
from .tracking.runkey import RunKey
from .tracking.verdicts import EndOptions, Verdicts, decide

if TYPE_CHECKING:
    from .session import CosySession
    from .settings import Settings


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


def ab_rule(s: Settings) -> AbRule:
    """The A/B rule the settings ask for: the rounds' looks and the end's verdicts both use it."""
    return AbRule(tolerance=s.rtf_tolerance, max_pairs=s.ab_max_pairs, floor=s.ab_floor,
                  confirm_pairs=s.ab_confirm_pairs)


def end_options(s: Settings, base_dir: Path, *, ab_base: str = "", ab_versions: Mapping[str, str] | None = None,
                environ: Mapping[str, str] | None = None) -> EndOptions:
    rule = ab_rule(s)
    # The settings' folders are absolute already (settings.resolve): the goldens and baselines share one.
    return EndOptions(s.baseline_dir, None if s.no_report else s.report_dir,
                      tolerance=rule.tolerance, machine_tolerance=s.machine_tolerance,
                      save_baseline=s.save_baseline, fail_on_drift=s.fail_on_drift,
                      ab_max_pairs=rule.max_pairs, ab_floor=rule.floor, ab_confirm_pairs=rule.confirm_pairs,
                      markdown=markdown_path(s, base_dir, environ),
                      ab_base=ab_base, ab_versions=dict(ab_versions or {}))


def gather(figures: list[TestFigures], streams: Sequence[StreamRecord], key: RunKey, device: str,
           options: EndOptions, *, health: Health | None = None, repo_dir: Path | None = None,
           quality: Sequence[TestQuality] = (), golden_audio: GoldenAudio | None = None) -> Findings:
    """The end's two steps without a pytest session: decide (tracking.verdicts), then write the report
    (report.findings). `golden_audio` is read before the goldens are saved: the page plays the goldens
    this session was judged against."""
    verdicts = decide(figures, key, device, options, health=health, repo_dir=repo_dir, quality=quality)
    return write_findings(verdicts, streams, repo_dir=repo_dir, golden_audio=golden_audio)


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


def exit_status(found: Verdicts, exitstatus: int | pytest.ExitCode) -> int | pytest.ExitCode:
    """A baseline or golden store that cannot be used as asked is a usage error (4); a regression under
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
    quality = list(session.quality.results.values())
    golden_audio = session.quality.golden_audio(key)     # before a save replaces them
    found = gather(figures, streams, key, device, options, health=session.health(), repo_dir=base_dir,
                   quality=quality, golden_audio=golden_audio)
    lines = summary_lines(found) + _quality_notes(session)
    if options.markdown is not None:
        error = append_markdown(options.markdown, markdown_summary(found))
        if error:
            lines.append(f"note: the Markdown summary was not written to {options.markdown}: {error}")
    return FinishResult(lines, exit_status(found, exitstatus), junit_properties(found))


def _quality_notes(session: CosySession) -> list[str]:
    """What the quality gate's scorers say of the whole session: a missing MOS scorer, and the WER."""
    gate = session.quality
    lines: list[str] = []
    if not gate.results:
        return lines
    if gate.scorers.missing_extra:
        lines.append(f"note: quality MOS not scored: {gate.scorers.missing_extra}")
    wer = [c.wer for tq in gate.results.values() for c in tq.calls if c.wer is not None]
    if wer:   # Seed-TTS-eval's two figures: the mean of per-utterance WER, and the utterances above 50 %
        from .judging.intelligibility import summarise

        s = summarise(wer)
        lines.append(f"quality WER (--cosy-asr): mean {s.mean:.3f} over {s.n} utterances, {s.over_half} above 50 %")
    return lines
