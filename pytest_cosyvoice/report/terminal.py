"""The terminal summary of a session's end: `summary_lines` words what tracking.verdicts decided and
report.findings wrote (the A/B verdicts first in A/B mode, then the cross-session view, the saved
baseline and goldens, the quality tests, what is inconclusive and what regressed). No pytest import.

    print("\n".join(summary_lines(write_findings(decide(figures, key, device, options), streams))))
"""
from __future__ import annotations

from collections.abc import Sequence

from ..judging.measurements import TestFigures
from ..judging.quality_results import TestQuality
from ..tracking.baseline import RESAVE
from ..tracking.history import quality_counts
from ..tracking.paired_results import PairedVerdict
from ..tracking.verdicts import machine_against
from .findings import Findings
from .model import machine_line, pct
from .writer import summary_table

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
    order = metrics[0][2].order
    if order is not None:
        out.append(f"  {order.describe(metrics[0][2].confidence)}")
    rule = found.options.ab_rule
    out.append(f"  a failing regression is confirmed on fresh pairs: its one-sided 99 % bound lies above "
               f"{1 + rule.floor:.2f}x (--cosy-ab-floor {rule.floor:g})")
    fails = " (--cosy-fail-on-drift: the session fails)" if found.options.fail_on_drift else " (reported only)"
    for label, wanted, suffix in (("A/B regression(s)", (PairedVerdict.REGRESSION,), fails),
                                  ("A/B improvement(s)", (PairedVerdict.IMPROVEMENT,), ""),
                                  ("A/B candidate(s), not confirmed", (PairedVerdict.CANDIDATE,),
                                   " (reported only, never failing)"),
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
    output (`PairOutputs.finding`: not a seeded stream), the first difference and its rounds."""
    out = []
    for f in figures:
        differs = [p for p in f.pairs if p.outputs.finding]
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
    out += _goldens_lines(found)
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


def _goldens_lines(found: Findings) -> list[str]:
    saved = found.goldens_saved
    if saved is None:
        return []
    if saved.error:
        return [f"ERROR quality goldens not saved: {saved.error}"]
    return [f"quality goldens saved: {saved.path} ({saved.tests} tests)"]
