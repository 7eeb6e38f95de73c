"""The report's data and its text helpers, shared by the session (which records streams), the
writers (writer.py: terminal table, rtf.csv, the history line), the graphs (plots.py, trends.py,
stream_plot.py), the page (page.py) and the end-of-session summary (terminal.py, markdown.py). It
imports none of them and no pytest, so they never import each other for a type, a colour or the
machine's text.

    write_report("reports", ReportInput(figures=..., key=..., drift=..., baseline=...,
                                        streams=[StreamRecord(nodeid, trace, audio)]))
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..judging.measurements import StreamTrace, TestFigures
from ..tracking.ab import AbVerdicts
from ..tracking.baseline import Baseline
from ..tracking.drift import DEFAULT_ALPHA, DEFAULT_TOLERANCE, DriftResult, DriftVerdict, Machine
from ..tracking.health import Health
from ..tracking.paired_results import PairedVerdict
from ..tracking.runkey import RunKey

if TYPE_CHECKING:
    import numpy as np

    from ..judging.quality_results import QualityCheck, TestQuality
    from ..tracking.changepoints import ChangePoint

INSTALL_HINT = "pip install pytest-cosyvoice[report]"

VERDICT_COLOURS: dict[DriftVerdict, str] = {
    DriftVerdict.OK: "#2b7bba", DriftVerdict.REGRESSION: "#d62728", DriftVerdict.IMPROVEMENT: "#2ca02c",
    DriftVerdict.NEW: "#7f7f7f", DriftVerdict.INSUFFICIENT_SAMPLES: "#ff7f0e", DriftVerdict.INCONCLUSIVE: "#9467bd"}

PAIRED_COLOURS: dict[PairedVerdict, str] = {
    PairedVerdict.SAME: "#2b7bba", PairedVerdict.REGRESSION: "#d62728", PairedVerdict.IMPROVEMENT: "#2ca02c",
    PairedVerdict.UNKNOWN: "#ff7f0e", PairedVerdict.INCONCLUSIVE: "#9467bd", PairedVerdict.CANDIDATE: "#e377c2"}


# -- data ------------------------------------------------------------------------------------

@dataclass
class StreamRecord:
    """One recorded stream with its audio (mono float32 at trace.sample_rate): what the session
    captures, what travels from an xdist worker, and what the report draws."""

    nodeid: str
    trace: StreamTrace
    audio: np.ndarray | None = None
    prebuffer_s: float = 0.0        # the test's prebuffer, as the gap-free check used it
    failed: bool = False            # listed under "failing streams" in index.html

    def to_wire(self) -> dict[str, Any]:
        from cosyvoice_runtime.audio import pack_audio  # numpy: the report types load without it

        return {"nodeid": self.nodeid, "trace": asdict(self.trace), "prebuffer_s": self.prebuffer_s,
                "failed": self.failed, "audio": pack_audio(self.audio)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> StreamRecord:
        from cosyvoice_runtime.audio import unpack_audio

        audio = unpack_audio(d["audio"])
        return cls(d["nodeid"], StreamTrace(**d["trace"]), audio, d["prebuffer_s"], d["failed"])


# nodeid -> call label -> (mono float samples, sample rate): the stored golden audio of a test's calls.
GoldenAudio = Mapping[str, Mapping[str, "tuple[np.ndarray, int]"]]


@dataclass
class ReportInput:
    figures: list[TestFigures]
    key: RunKey
    drift: list[DriftResult] | None = None      # None: no baseline for this key
    baseline: Baseline | None = None            # its samples draw the baseline spread
    streams: list[StreamRecord] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE     # as passed to drift.compare (drawn as the band)
    alpha: float = DEFAULT_ALPHA
    history_path: Path | None = None            # default: <out_dir>/history.jsonl
    commit: str | None = None                   # None: git rev-parse HEAD in repo_dir; "": none
    repo_dir: Path | None = None
    title: str = "pytest-cosyvoice report"
    stack: dict[str, str] = field(default_factory=dict)        # this session's (tracking.stack.detect_stack)
    stack_changes: list[str] = field(default_factory=list)     # since the baseline, e.g. "torch a -> b"
    health: Health | None = None                                # calibration and contention
    machine: Machine | None = None                              # against the baseline's machine
    ab: AbVerdicts | None = None                                # A/B mode (issue #17)
    # The quality gate (issue #18): each quality test's judged calls, and the golden audio of its calls
    # where a golden exists (nodeid -> call label -> (samples, sample rate)), drawn beside the current.
    quality: list[TestQuality] = field(default_factory=list)
    golden_audio: GoldenAudio = field(default_factory=dict)


@dataclass
class QualityAudio:
    """One call of a quality test as the page plays it: this session's audio and the golden's, each
    None when there is none (`note` says why)."""

    nodeid: str
    call: str
    current: Path | None
    golden: Path | None
    note: str = ""


@dataclass
class StreamFiles:
    stream: StreamRecord
    png: Path
    wav: Path | None


@dataclass
class ReportFiles:
    out_dir: Path
    csv: Path
    history: Path
    drift_png: Path
    trend_png: Path
    html: Path
    streams: list[StreamFiles] = field(default_factory=list)
    # Change points of each test's RTF over the history of this key; None: not computed, and
    # changes_note says why (ruptures missing).
    changes: dict[str, list[ChangePoint]] | None = None
    changes_note: str = ""
    # A/B mode: the raw pairs, the verdicts and the forest plot; None when no test recorded pairs.
    ab_csv: Path | None = None
    ab_verdicts_csv: Path | None = None
    ab_forest_png: Path | None = None
    # The quality gate: quality.json, each call's current and golden wav under audio/, the trend graph
    # (None: fewer than two sessions of this key recorded quality); all None / empty without quality tests.
    quality_json: Path | None = None
    quality_audio: list[QualityAudio] = field(default_factory=list)
    quality_trend_png: Path | None = None

    @property
    def change_lines(self) -> list[str]:
        """One plain-text line per change point (for the terminal summary)."""
        from ..tracking.changepoints import describe

        return [describe(cp) for cps in (self.changes or {}).values() for cp in cps]


# -- text helpers ----------------------------------------------------------------------------

def short_id(nodeid: str, width: int = 56) -> str:
    """`suites/perf/test_rtf.py::test_rtf[v2]` -> `test_rtf.py::test_rtf[v2]`, middle-elided."""
    path, sep, rest = nodeid.partition("::")
    label = (path.rsplit("/", 1)[-1] + sep + rest) if sep else nodeid
    if len(label) <= width:
        return label
    keep = width - 1
    return label[: keep // 2] + "…" + label[len(label) - (keep - keep // 2):]


def sanitise_nodeid(nodeid: str, limit: int = 120) -> str:
    """A file name for a test id: readable, safe on every OS, unique via a hash when cut."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid.replace("::", "__")).strip("._") or "test"
    if len(name) > limit:
        name = name[:limit] + "-" + hashlib.sha256(nodeid.encode()).hexdigest()[:8]
    return name


STATUS_ORDER = {"fail": 0, "pass": 1, "note": 2}


def ordered_checks(checks: Sequence[QualityCheck]) -> list[QualityCheck]:
    """Failed checks first, then passed, then notes; otherwise in the order judged."""
    return sorted(checks, key=lambda c: STATUS_ORDER.get(c.status, len(STATUS_ORDER)))


def pct(fraction: float | None) -> str:
    """A drift fraction as a signed percentage; "-" when there is none."""
    return "-" if fraction is None else f"{100 * fraction:+.1f}%"


def machine_facts(health: Health | None, machine: Machine | None) -> list[tuple[str, str]]:
    """The machine's health as (what, value) pairs: calibration, contention, GPU state, and how it
    compares with the baseline's machine. The terminal's `machine:` line (`machine_line`) and the
    report's "Machine and stack" table are both written from these, so they always say the same."""
    if health is None:
        facts = [("calibration", "not measured (no model was loaded)")]
    else:
        cal_errors = [e.message for e in health.errors if e.check == "calibration"]
        ref_errors = [e.message for e in health.errors if e.check == "model reference"]
        if health.calibration_s is None:
            facts = [("calibration", "not calibrated" + (f" ({cal_errors[0]})" if cal_errors else ""))]
        else:
            facts = [("calibration", f"{1000 * health.calibration_s:.1f} ms (median of {len(health.calibration)})")]
            facts += [("calibration error", e) for e in cal_errors[:1]]
        if health.reference_s is not None:
            parts = ", ".join(f"{name} {1000 * v:.0f}" for name, v in health.reference_part_s().items())
            facts.append(("model reference", f"{1000 * health.reference_s:.1f} ms (median of "
                          f"{len(health.reference)}" + (f"; {parts} ms" if parts else "") + ")"))
        if ref_errors:
            facts.append(("model reference error", ref_errors[0]))
    if health is not None:
        if health.others_cpu is not None:
            facts.append(("other processes' CPU share", f"{health.others_cpu:.0%}"))
        if health.steal is not None:
            facts.append(("hypervisor steal", f"{health.steal:.0%}"))
        facts += [(f"GPU {k}", str(v)) for k, v in sorted(health.gpu.items())]
    if machine is not None:
        facts.append(("against the baseline's machine",
                      ("comparable: " if machine.comparable else "NOT comparable: ") + machine.describe()))
    elif health is not None and health.problems():
        facts.append(("busy", "; ".join(health.problems())))
    return facts


def machine_line(health: Health | None, machine: Machine | None) -> str:
    """The terminal summary's one line on the machine (see `machine_facts`)."""
    return "machine: " + "; ".join(f"{what}: {value}" for what, value in machine_facts(health, machine))


def sample_stats(values: Sequence[float]) -> Any:
    """pytest-benchmark's Stats (median, q1/q3/iqr, stddev, ...) over plain samples."""
    try:
        from pytest_benchmark.stats import Stats
    except ImportError as exc:
        raise ImportError(f"the report needs pytest-benchmark's statistics: {INSTALL_HINT}") from exc
    st = Stats()
    for v in values:
        st.update(float(v))
    return st
