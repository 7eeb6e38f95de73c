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
from ..judging.quality import TestQuality
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
from ..tracking.history import history_problems, quality_counts
from ..tracking.paired import DEFAULT_MAX_PAIRS, Pair, PairedResult, PairedVerdict, PooledResult, judge_pairs, pool
from ..tracking.runkey import RunKey
from ..tracking.stack import detect_stack, stack_changes
from .model import AbVerdicts, GoldenAudio, ReportFiles, ReportInput, StreamRecord, machine_line, pct
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
    ab_max_pairs: int = DEFAULT_MAX_PAIRS   # the cap of each test's pairs (tracking.paired.judge_pairs)
    markdown: Path | None = None            # where the Markdown summary is appended; None: nowhere
    ab_base: str = ""                       # the base side's description; "" when not A/B
    ab_versions: dict[str, str] = field(default_factory=dict)     # the base side's stack


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
    # A/B (issue #17): the paired verdicts of the passed tests that recorded pairs; None when none did.
    paired: list[PairedResult] | None = None                # RTF
    pooled: PooledResult | None = None
    paired_first_chunk: list[PairedResult] | None = None    # first-chunk latency (ms)
    pooled_first_chunk: PooledResult | None = None
    # The quality gate (issue #18): every quality test of the session, as judged.
    quality: list[TestQuality] = field(default_factory=list)

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
    def ab_regressions(self) -> list[PairedResult]:
        """Per test, RTF and first chunk: the A/B regressions."""
        return [r for r in (self.paired or []) + (self.paired_first_chunk or [])
                if r.verdict is PairedVerdict.REGRESSION]

    @property
    def ab_regressed(self) -> bool:
        """Any A/B regression: a test's, or the pooled one, of RTF or of first-chunk latency."""
        pooled = [p for p in (self.pooled, self.pooled_first_chunk) if p is not None]
        return bool(self.ab_regressions) or any(p.verdict is PairedVerdict.REGRESSION for p in pooled)

    @property
    def usage_error(self) -> bool:
        """The baseline store cannot be used as asked: the session ends as a usage error."""
        return bool(self.baseline_error) or (self.saved is not None and bool(self.saved.error))

    @property
    def fails_on_drift(self) -> bool:
        """--cosy-fail-on-drift and a regression, against the baseline or A/B (a test's or the pooled
        one; first-chunk latency as well as RTF): the session fails."""
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


AB_METRICS = ("RTF", "first chunk")


def ab_pairs(figures: Sequence[TestFigures], metric: str = "RTF") -> dict[str, list[Pair]]:
    """Per passed test, its (head, base) pairs of `metric` ("RTF" or "first chunk", in ms); a test
    without such pairs is left out. Only passed tests, as for the RTF rounds (rounds.py): a test
    that failed gets no more rounds, so its pairs could never reach a verdict."""
    if metric not in AB_METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(AB_METRICS)}")
    out: dict[str, list[Pair]] = {}
    for f in figures:
        if f.outcome != "passed":
            continue
        raw: list[tuple[float | None, float | None]] = (
            [(p.head_rtf, p.base_rtf) for p in f.pairs] if metric == "RTF"
            else [(p.head_first_chunk_ms, p.base_first_chunk_ms) for p in f.pairs])
        # A side that produced no figure (no chunk, an error) says nothing about the ratio.
        pairs = [(float(h), float(b)) for h, b in raw if h is not None and b is not None and h > 0 and b > 0]
        if pairs:
            out[f.nodeid] = pairs
    return out


def judge_ab(figures: Sequence[TestFigures], options: EndOptions, metric: str = "RTF"
             ) -> tuple[list[PairedResult] | None, PooledResult | None]:
    """The A/B verdicts of `metric`: per test (`judge_pairs`) and pooled (`pool`), with the session's
    tolerance and pair cap; (None, None) when no passed test recorded pairs of it."""
    by_test = ab_pairs(figures, metric)
    if not by_test:
        return None, None
    results = [judge_pairs(nodeid, pairs, tolerance=options.tolerance, max_pairs=options.ab_max_pairs)
               for nodeid, pairs in by_test.items()]
    return results, pool(by_test, results, tolerance=options.tolerance, max_pairs=options.ab_max_pairs,
                         metric=metric)


def gather(figures: list[TestFigures], streams: Sequence[StreamRecord], key: RunKey, device: str,
           options: EndOptions, *, health: Health | None = None, repo_dir: Path | None = None,
           quality: Sequence[TestQuality] = (), golden_audio: GoldenAudio | None = None) -> Findings:
    """Loads the baseline, judges drift, writes the report and saves the baseline as `options` ask;
    whatever fails is recorded in the findings, never raised (the results are still worth showing).
    `quality`: the session's quality tests, `golden_audio` their golden calls' audio (for the page)."""
    base = repo_dir or Path.cwd()
    stack = detect_stack(device, base)
    store = BaselineStore(options.baseline_dir)
    found = Findings(figures, key, options, store.path_for(key), health=health,
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
    found.paired, found.pooled = judge_ab(figures, options, "RTF")
    found.paired_first_chunk, found.pooled_first_chunk = judge_ab(figures, options, "first chunk")

    if options.report_dir is not None:
        history = options.report_dir / "history.jsonl"
        found.history_problems = history_problems(history)
        try:
            found.report = write_report(options.report_dir, ReportInput(
                figures, key, found.drift, found.baseline, list(streams), tolerance=options.tolerance,
                history_path=history, repo_dir=base, stack=stack, stack_changes=found.stack_changes,
                health=health, machine=found.machine, commit=stack.get("commit", ""), ab=found.ab,
                quality=found.quality, golden_audio=golden_audio or {}))
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


_UNDECIDED = (PairedVerdict.INCONCLUSIVE, PairedVerdict.UNKNOWN)
UNDECIDED_SHOWN = 5     # undecided tests named in the terminal (the rest: ab_verdicts.csv)


def ab_lines(found: Findings) -> list[str]:
    """The A/B part of the terminal summary: the pooled line of each metric, then the tests that
    regressed or improved, those still undecided, and those whose outputs differ between the sides."""
    ab = found.ab
    if ab is None:
        return []
    metrics = ab.metrics()
    if not metrics:
        return [f"A/B against {ab.base or 'the base side'}: no passed test recorded pairs (pairs come from "
                "tests marked @pytest.mark.rtf that call cosy_tts)"]
    out = [ab.pooled_line(pooled) for _, _, pooled in metrics]
    fails = " (--cosy-fail-on-drift: the session fails)" if found.options.fail_on_drift else " (reported only)"
    for label, wanted, suffix in (("A/B regression(s)", (PairedVerdict.REGRESSION,), fails),
                                  ("A/B improvement(s)", (PairedVerdict.IMPROVEMENT,), ""),
                                  ("A/B undecided", _UNDECIDED, "")):
        hits = [(metric, r) for metric, paired, _ in metrics for r in paired if r.verdict in wanted]
        if hits:
            out.append(f"{label} ({len(hits)}){suffix}:")
            # Every regression and improvement is named; undecided tests can be most of a noisy session,
            # so the terminal names the first few and the report's ab_verdicts.csv has them all.
            shown = hits if wanted != _UNDECIDED else hits[:UNDECIDED_SHOWN]
            out += [f"  {r.nodeid} ({metric}): {r.describe()}" for metric, r in shown]
            if len(shown) < len(hits):
                out.append(f"  ... and {len(hits) - len(shown)} more (all in ab_verdicts.csv of the report)")
    differ = _outputs_differ(found.figures)
    if differ:
        out.append(f"head and base produced different outputs from the same inputs and seed ({len(differ)} "
                   "test(s); the speed ratio compares different work):")
        out += [f"  {line}" for line in differ]
    return out


def _outputs_differ(figures: Sequence[TestFigures]) -> list[str]:
    """Per test, the pairs whose outputs differ where the same inputs and seed should give the same
    output (`PairSample.outputs_differ`: not a seeded stream), the first difference and its rounds."""
    out = []
    for f in figures:
        differs = [p for p in f.pairs if p.outputs_differ]
        if differs:
            rounds = ", ".join(str(p.round) for p in differs)
            out.append(f"{f.nodeid}: {differs[0].outputs} (round(s) {rounds} of {len(f.pairs)} pairs)")
    return out


SAVE_FLAG = "--cosy-save-baseline"


def quality_line(qualities: Sequence[TestQuality], saving: bool = False) -> str | None:
    """'quality: N tests, F failed, U uncalibrated, G without golden' (tracking.history.quality_counts),
    and what it takes to gate: a session that compared nothing says so and names the flag that saves
    goldens; scores not gating yet say after how many saving sessions they will. None when the session
    had no quality test."""
    if not qualities:
        return None
    n = quality_counts(qualities)
    line = (f"quality: {n.tests} tests, {n.failed} failed, {n.uncalibrated} uncalibrated, "
            f"{n.without_golden} without golden")
    sessions = f"saving session{'' if n.saves_to_gate == 1 else 's'}"
    if n.without_golden == n.tests and not saving:
        line += f": nothing compared; save goldens with {SAVE_FLAG}"
        return line + (f" (MOS/WER/SIM gate after {n.saves_to_gate} {sessions})" if n.saves_to_gate else "")
    return line + (f"; MOS/WER/SIM gate after {n.saves_to_gate} more {sessions} ({SAVE_FLAG})"
                   if n.saves_to_gate else "")


def quality_failures(qualities: Sequence[TestQuality]) -> list[str]:
    """One line per failed quality test: 'quality FAILED <nodeid>: <call>: <text>; ...'."""
    return [f"quality FAILED {tq.nodeid}: " + "; ".join(f"{c.call}: {c.text}" if c.call else c.text
                                                        for c in tq.failed)
            for tq in qualities if tq.status == "fail"]


def quality_lines(qualities: Sequence[TestQuality], saving: bool = False) -> list[str]:
    """The quality part of the terminal summary: `quality_line`, then `quality_failures`."""
    line = quality_line(qualities, saving)
    return [] if line is None else [line, *quality_failures(qualities)]


def summary_lines(found: Findings) -> list[str]:
    """The terminal summary. In A/B mode the A/B verdicts first (`ab_lines`), then the rest as the
    cross-session view. The rest: baseline and stack, the machine, the table, round notes, the report
    and its change points, the saved baseline, then what is inconclusive and what regressed."""
    out: list[str] = ab_lines(found)
    if out:
        out.append("cross-session view (against the stored baseline; history and trends - the A/B "
                   "verdicts above compare head and base on the same machine at the same time):")
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
        out.append("notes from the RTF rounds (a later round's failed check keeps its sample; an A/B round "
                   "without a pair says why):")
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

    out += quality_lines(found.quality, found.options.save_baseline)
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
