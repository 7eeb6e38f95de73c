"""How far the gate's verdicts can be trusted, measured on real reruns of the gate suites.

    .venv/bin/python benchmarks/gate_truth.py [--clean 5] [--contended 3] [--slow-runs 2]
                                              [--levels 0.1,0.2,0.4] [--repeat 5] [--defects]

On the embedded tiny model, in a scratch folder (`--workdir`, default a temporary one):
1. one run saves a baseline (runner `gate-truth`);
2. `--clean` reruns of the same code;
3. `--contended` reruns while a busy process (a pure-Python loop) shares the cores;
4. `--slow-runs` reruns per level with every component (LLM per token, flow, vocoder) made that share
   slower through the loaded components (benchmarks/inject.py);
5. with `--defects`, one run per functional defect injected through the components, and whether the
   named check caught it in every affected test.

Prints one markdown table per part: the share of test verdicts per verdict, the median raw and
calibrated drift, and the machine figures the gate saw. `--json FILE` keeps every run's rows.

    .venv/bin/python benchmarks/gate_truth.py --ab [--ab-clean 10] [--ab-busy 5] [--ab-levels 0.05,0.1,0.2]
                                              [--ab-slow-runs 5] [--ab-gate 2] [--ab-max-pairs 20]

A/B in one session (issue 17) instead of the parts above, each session with its own report folder
(kept under <workdir>/ab/, raw pairs in ab.csv, so the tables can be re-judged with `--ab-rejudge`):
1. `--ab-clean` A/A sessions: the base is the head's own code, alternately the model under another
   path (`--cosy-base-model`, a copy made once in the workdir) and `--cosy-base-engine fixed`;
2. `--ab-busy` the same beside a busy process;
3. `--ab-slow-runs` A/B sessions per level: the head is benchmarks/slow_engine.py with COSY_SLOW=level,
   the base `--cosy-base-engine fixed`;
4. `--ab-kinds` A/A sessions across engine kinds: a pass-through wrapper (benchmarks/passthrough_engine.py)
   as head, `--cosy-base-engine fixed` over the model copy as base (same compute: must read "same");
5. `--ab-gate` sessions without a base: the time a cross-session gate session takes, for comparison.
Prints the verdicts per condition and the slowdown each level actually applied.

`--tracking clean,contended` (with an earlier run's `--json` and `--workdir`) runs nothing: it prints
how well the calibration and the model reference track the tests' RTF ratio to the baseline over
those parts' runs (see `tracking`).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import inject  # benchmarks/inject.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
RTF_TESTS = "test_stream and (short-en or medium-en or zh)"      # 4 modes x 3 texts = 12 verdicts a run
DEFECT_TESTS = "test_stream and (short-en or medium-en)"
# defect -> (tests to run, the named check, texts of which the failure must contain one, extra pytest args)
DEFECT_CHECKS: dict[str, tuple[str, str, tuple[str, ...], list[str]]] = {
    "vocoder-nan": (DEFECT_TESTS, "sound", ("sound:",), []),
    "vocoder-short": (DEFECT_TESTS, "complete", ("complete:",), []),
    "flow-futurewarning": (DEFECT_TESTS, "clean", ("clean:",), []),
    # the runtime's stall timeout (StreamStalled), or the harness's watchdog for a foreign engine
    "llm-stall": (DEFECT_TESTS, "stall timeout", ("StreamStalled", "nothing produced for"),
                  ["--cosy-stall-timeout=2"]),
    "thread-left": (DEFECT_TESTS, "tidy", ("tidy:",), []),
    "tensor-kept": ("test_fifty_sequential_streams_keep_memory_flat", "soak: live tensors",
                    ("more live tensors",), []),
    # a second chunk needs a text long enough for two
    "chunk-late": ("test_stream and (medium-en or long-en)", "gap-free", ("gap-free:",), []),
}
VERDICTS = ("regression", "improvement", "inconclusive", "ok", "insufficient-samples", "new")


@dataclass
class Run:
    part: str
    label: str
    seconds: float
    returncode: int
    verdicts: dict[str, str] = field(default_factory=dict)       # nodeid -> verdict
    p_values: dict[str, float] = field(default_factory=dict)
    raw_drift: dict[str, float] = field(default_factory=dict)
    drift: dict[str, float] = field(default_factory=dict)
    calibration_s: float | None = None
    others_cpu: float | None = None
    caught: dict[str, str] = field(default_factory=dict)          # nodeid -> failure text ("" passed)
    reference_s: float | None = None                               # the model reference's median


def pytest_cmd(work: Path, select: str, extra: list[str], report: str) -> list[str]:
    # Defect runs keep their own baseline and report folders: the timed runs' history stays theirs.
    bl = "bl" if report == "rep" else f"bl-{report}"
    return [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-p", "inject", "-p", "no:cacheprovider",
            "-q", "-k", select, "--cosy-runner=gate-truth", f"--cosy-baseline-dir={work / bl}",
            f"--cosy-report={work / report}", f"--junitxml={work / 'junit.xml'}", *extra]


def run_gate(work: Path, part: str, label: str, select: str, *, inject: str = "", repeat: int = 5,
             extra: list[str] | None = None, report: str = "rep") -> Run:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]),
           "COSY_INJECT": inject, "COSY_GATE_RTF_REPEAT": str(repeat)}
    t = time.monotonic()
    proc = subprocess.run(pytest_cmd(work, select, extra or [], report), cwd=work, env=env, capture_output=True,
                          text=True)
    run = Run(part, label, time.monotonic() - t, proc.returncode)
    (work / f"{part}-{label}.log").write_text(proc.stdout + proc.stderr)
    csv_path = work / report / "rtf.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                run.verdicts[row["nodeid"]] = row["verdict"] or "no baseline"
                if row["drift"]:
                    run.raw_drift[row["nodeid"]] = float(row["drift"])
                if row["p_value"]:
                    run.p_values[row["nodeid"]] = float(row["p_value"])
                if row["calibrated_drift"]:
                    run.drift[row["nodeid"]] = float(row["calibrated_drift"])
    history = work / report / "history.jsonl"
    if history.is_file():
        last = json.loads(history.read_text().splitlines()[-1])
        health = last.get("health") or {}
        run.calibration_s, run.others_cpu = health.get("calibration_s"), health.get("others_cpu")
        run.reference_s = health.get("reference_s")
    if (work / "junit.xml").is_file():
        for case in ET.parse(work / "junit.xml").getroot().iter("testcase"):
            nodeid = f"{case.get('classname', '').replace('.', '/')}::{case.get('name')}"
            failure = case.find("failure")
            error = case.find("error")
            bad = failure if failure is not None else error
            run.caught[nodeid] = "" if bad is None else (bad.get("message", "") + (bad.text or ""))
    if csv_path.is_file():   # kept per run, so the verdicts can be re-derived for another tolerance
        csv_path.replace(work / f"{part}-{label}-{len(list(work.glob(f'{part}-{label}-*.csv')))}.csv")
    return run


def busy_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def verdict_table(runs: list[Run], baseline_cal: float | None) -> str:
    head = ("| runs | condition | verdicts | regression | improvement | inconclusive | ok | other | "
            "median raw drift | median calibrated drift | machine vs baseline | other processes' CPU |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for label in dict.fromkeys(r.label for r in runs):
        group = [r for r in runs if r.label == label]
        counts: Counter[str] = Counter(v for r in group for v in r.verdicts.values())
        n = sum(counts.values()) or 1
        raw = [d for r in group for d in r.raw_drift.values()]
        cal = [d for r in group for d in r.drift.values()]
        ratios = [r.calibration_s / baseline_cal for r in group if r.calibration_s and baseline_cal]
        others = [r.others_cpu for r in group if r.others_cpu is not None]
        other = n - sum(counts[v] for v in ("regression", "improvement", "inconclusive", "ok"))

        def pct(k: int, n: int = n) -> str:
            return f"{100 * k / n:.0f} % ({k})"
        rows.append(
            f"| {len(group)} | {label} | {sum(counts.values())} | {pct(counts['regression'])} | "
            f"{pct(counts['improvement'])} | {pct(counts['inconclusive'])} | {pct(counts['ok'])} | {pct(other)} | "
            + (f"{100 * statistics.median(raw):+.1f} %" if raw else "-") + " | "
            + (f"{100 * statistics.median(cal):+.1f} %" if cal else "-") + " | "
            + (f"x{min(ratios):.2f} .. x{max(ratios):.2f}" if ratios else "-") + " | "
            + (f"{100 * min(others):.0f} .. {100 * max(others):.0f} %" if others else "-") + " |")
    return head + "\n" + "\n".join(rows)


def defect_table(runs: list[Run]) -> str:
    head = "| defect | expected check | affected tests | caught by that check |\n|---|---|---|---|"
    rows = []
    for r in runs:
        _, check, texts, _ = DEFECT_CHECKS[r.label]
        hits = sum(1 for text in r.caught.values() if any(t in text for t in texts))
        n = len(r.caught)
        rows.append(f"| {r.label}: {inject.DEFECTS[r.label]} | {check} | {n} | "
                    f"{100 * hits / max(n, 1):.0f} % ({hits}/{n}) |")
    return head + "\n" + "\n".join(rows)


def rejudge(work: Path, runs: list[Run], tolerance: float) -> list[Run]:
    """The same real samples (every run's rtf.csv kept in `work`) judged again at another tolerance."""
    sys.path.insert(0, str(ROOT))
    from pytest_cosyvoice.tracking.drift import Machine, judge
    from pytest_cosyvoice.tracking.health import OTHERS_CPU_LIMIT

    samples = rtf_samples
    base_run = next(r for r in runs if r.part == "baseline")
    base = samples(next(work.glob("baseline-*-0.csv")))
    seen: Counter[tuple[str, str]] = Counter()
    out = []
    for r in runs:
        if r.part not in ("clean", "contended", "slow"):
            continue
        k = seen[(r.part, r.label)]
        seen[(r.part, r.label)] += 1
        cur = samples(work / f"{r.part}-{r.label}-{k}.csv")
        ratio = (r.calibration_s / base_run.calibration_s) if r.calibration_s and base_run.calibration_s else None
        busy = ((f"other processes used {r.others_cpu:.0%} of the CPU",)
                if (r.others_cpu or 0) > OTHERS_CPU_LIMIT else ())
        reference = (r.reference_s / base_run.reference_s) if r.reference_s and base_run.reference_s else None
        machine = Machine(ratio, busy, reference_ratio=reference)
        again = Run(r.part, r.label, r.seconds, r.returncode, calibration_s=r.calibration_s, others_cpu=r.others_cpu,
                    reference_s=r.reference_s)
        for nodeid, values in cur.items():
            res = judge(nodeid, values, base.get(nodeid, []), tolerance=tolerance, machine=machine)
            again.verdicts[nodeid] = res.verdict
            if res.drift is not None:
                again.raw_drift[nodeid] = res.drift
            if res.calibrated_drift is not None:
                again.drift[nodeid] = res.calibrated_drift
        out.append(again)
    return out


# -- A/B in one session (issue 17): `--ab` ------------------------------------------------------------
# Head and base run back to back in each session; the session writes its paired verdicts to
# <report>/ab_verdicts.csv and its raw pairs to <report>/ab.csv. Every run keeps its report folder.
AB_VERDICTS = ("regression", "improvement", "candidate", "same", "inconclusive", "unknown")
POOLED = "(pooled)"
RTF_METRIC, FIRST_CHUNK_METRIC = "RTF", "first chunk"
AB_DEFAULT_MAX_PAIRS = 20     # tracking.paired.DEFAULT_MAX_PAIRS, the plugin's default
AB_PARTS = ("aa-clean", "aa-busy", "aa-kinds", "ab-slow", "gate")


@dataclass(frozen=True)
class AbVerdict:
    """One row of ab_verdicts.csv."""

    nodeid: str
    metric: str
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    pairs: int
    verdict: str
    note: str = ""


@dataclass(frozen=True)
class AbPair:
    """One row of ab.csv: a test's pair of one round."""

    nodeid: str
    round: int
    order: str
    head_rtf: float | None
    base_rtf: float | None
    head_first_chunk_ms: float | None
    base_first_chunk_ms: float | None
    outputs: str                    # "identical", "differs" or "not compared"


@dataclass(frozen=True)
class AbSession:
    """One planned A/B session: the head's and the base's own pytest arguments, COSY_SLOW, and
    whether a busy process shares the cores."""

    part: str
    label: str
    head: tuple[str, ...] = ()
    base: tuple[str, ...] = ()
    level: float | None = None
    busy: bool = False


@dataclass
class AbRun:
    part: str
    label: str
    report: str                      # the run's report folder, relative to the workdir
    seconds: float
    returncode: int
    base: str = ""                   # the base option(s) of the run
    level: float | None = None       # COSY_SLOW of the head
    max_pairs: int = AB_DEFAULT_MAX_PAIRS
    verdicts: dict[str, str] = field(default_factory=dict)        # nodeid -> per-test RTF verdict
    ratios: dict[str, float] = field(default_factory=dict)        # nodeid -> median head/base RTF
    pairs: dict[str, int] = field(default_factory=dict)           # nodeid -> pairs it needed
    pooled_verdict: dict[str, str] = field(default_factory=dict)  # metric -> pooled verdict
    pooled_ratio: dict[str, float] = field(default_factory=dict)  # metric -> pooled ratio
    outputs_differ: int = 0          # pairs whose outputs differ
    pairs_total: int = 0             # rows of ab.csv
    others_cpu: float | None = None  # other processes' share of the CPU (history.jsonl's health)
    # What --cosy-fail-on-drift fails on in A/B mode: a confirmed per-test regression (RTF or first
    # chunk) or a pooled one.
    failing: bool = False
    first_chunk_verdicts: dict[str, str] = field(default_factory=dict)  # nodeid -> per-test first-chunk verdict

    @property
    def judged(self) -> bool:
        """Whether the session wrote a pooled RTF verdict."""
        return RTF_METRIC in self.pooled_verdict


def _number(raw: str | None) -> float | None:
    return float(raw) if raw not in (None, "") else None


def read_ab_verdicts(path: Path) -> list[AbVerdict]:
    """The rows of an ab_verdicts.csv (empty numbers are None)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [AbVerdict(nodeid=row["nodeid"], metric=row["metric"], ratio=_number(row["ratio"]),
                          ci_low=_number(row["ci_low"]), ci_high=_number(row["ci_high"]),
                          p_value=_number(row["p_value"]), pairs=int(row["pairs"] or 0), verdict=row["verdict"],
                          note=row.get("note") or "")
                for row in csv.DictReader(fh)]


def read_ab_pairs(path: Path) -> dict[str, list[AbPair]]:
    """The rows of an ab.csv per test, in round order."""
    out: dict[str, list[AbPair]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["nodeid"], []).append(AbPair(
                nodeid=row["nodeid"], round=int(row["round"]), order=row["order"],
                head_rtf=_number(row["head_rtf"]), base_rtf=_number(row["base_rtf"]),
                head_first_chunk_ms=_number(row["head_first_chunk_ms"]),
                # an ab.csv written before its outputs_detail column held "differs: <what>" in outputs
                base_first_chunk_ms=_number(row["base_first_chunk_ms"]), outputs=row["outputs"].partition(":")[0]))
    for pairs in out.values():
        pairs.sort(key=lambda p: p.round)
    return out


def read_ab_report(run: AbRun, report: Path) -> AbRun:
    """`run` with what its report folder holds: per-test RTF verdicts, pooled verdicts, output counts,
    and the machine's contention as the session's history line has it."""
    verdicts = report / "ab_verdicts.csv"
    if verdicts.is_file():
        for v in read_ab_verdicts(verdicts):
            run.failing |= v.verdict == "regression"
            if v.nodeid != POOLED and v.metric == FIRST_CHUNK_METRIC:
                run.first_chunk_verdicts[v.nodeid] = v.verdict
            if v.nodeid == POOLED:
                run.pooled_verdict[v.metric] = v.verdict
                if v.ratio is not None:
                    run.pooled_ratio[v.metric] = v.ratio
            elif v.metric == RTF_METRIC:
                run.verdicts[v.nodeid] = v.verdict
                run.pairs[v.nodeid] = v.pairs
                if v.ratio is not None:
                    run.ratios[v.nodeid] = v.ratio
    raw = report / "ab.csv"
    if raw.is_file():
        rows = [p for pairs in read_ab_pairs(raw).values() for p in pairs]
        run.pairs_total = len(rows)
        run.outputs_differ = sum(1 for p in rows if p.outputs == "differs")
    history = report / "history.jsonl"
    lines = history.read_text(encoding="utf-8").splitlines() if history.is_file() else []
    if lines:
        run.others_cpu = (json.loads(lines[-1]).get("health") or {}).get("others_cpu")
    return run


def _project_on_path() -> None:
    # Run as a script from benchmarks/, the project's packages are importable only from the root.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def model_copy(work: Path) -> Path:
    """A copy of the embedded tiny model's directory in the workdir (made once): a base model that is
    the head's, under another path."""
    _project_on_path()
    from cosyvoice_runtime.tiny import default_model_dir

    copy = work / "tiny-model-copy"
    if not copy.is_dir():
        tmp = work / "tiny-model-copy.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(default_model_dir(), tmp)
        tmp.rename(copy)
    return copy


def ab_plan(copy: Path, *, clean: int, busy: int, levels: list[float], slow_runs: int, gate: int,
            kinds: int = 0) -> list[AbSession]:
    """The sessions of `--ab`, in the order they run. A/A sessions alternate the two ways of a base
    that is the head's own code (its model under another path; the fixed engine, which the head is
    by default); the slow levels' head is the slow engine, their base the fixed engine; the gate
    sessions have no base (the cross-session gate's session time, for comparison)."""
    aa = [("--cosy-base-model", str(copy)), ("--cosy-base-engine", "fixed")]
    out: list[AbSession] = []
    for part, label, n in (("aa-clean", "A/A clean", clean), ("aa-busy", "A/A beside a busy process", busy)):
        for i in range(n):
            flag, value = aa[i % 2]
            out.append(AbSession(part, label, base=(f"{flag}={value}",), busy=part == "aa-busy"))
    for _ in range(kinds):
        # Two engine kinds, identical compute: a pass-through serving wrapper against the fixed engine
        # over a copy of the model (issue 23: this read "improvement, 0.87x" while the sides were driven
        # differently).
        out.append(AbSession("aa-kinds", "A/A across engine kinds (pass-through wrapper vs fixed)",
                             head=("--cosy-engine=benchmarks.passthrough_engine:build",),
                             base=("--cosy-base-engine=fixed", f"--cosy-base-model={copy}")))
    for level in levels:
        for _ in range(slow_runs):
            out.append(AbSession("ab-slow", f"A/B head +{100 * level:g} % (COSY_SLOW={level:g})",
                                 head=("--cosy-engine=benchmarks.slow_engine:build",),
                                 base=("--cosy-base-engine=fixed",), level=level))
    for _ in range(gate):
        out.append(AbSession("gate", "cross-session gate session (no base)"))
    return out


def ab_cmd(work: Path, report: Path, session: AbSession, *, select: str, max_pairs: int) -> list[str]:
    """The pytest command line of one A/B session. Its Markdown summary goes to its report folder
    (not to a CI job's $GITHUB_STEP_SUMMARY), its baselines to the workdir."""
    ab = ([f"--cosy-ab-max-pairs={max_pairs}", "--cosy-fail-on-drift", f"--cosy-markdown={report / 'summary.md'}"]
          if session.base else [])
    return [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-p", "no:cacheprovider", "-q", "-k", select,
            "--cosy-runner=gate-truth", f"--cosy-baseline-dir={work / 'bl-ab'}", f"--cosy-report={report}",
            *session.head, *session.base, *ab]


def ab_env(session: AbSession, repeat: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COSY_SLOW", "GITHUB_STEP_SUMMARY")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               COSY_GATE_RTF_REPEAT=str(repeat))
    if session.level is not None:
        env["COSY_SLOW"] = repr(session.level)
    return env


def run_ab(work: Path, session: AbSession, index: int, *, select: str, repeat: int, max_pairs: int) -> AbRun:
    report = work / "ab" / f"{index:03d}-{session.part}"
    shutil.rmtree(report, ignore_errors=True)
    cmd = ab_cmd(work, report, session, select=select, max_pairs=max_pairs)
    busy = busy_process() if session.busy else None
    t = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=work, env=ab_env(session, repeat), capture_output=True, text=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    run = AbRun(session.part, session.label, str(report.relative_to(work)), time.monotonic() - t, proc.returncode,
                base=" ".join(session.base), level=session.level, max_pairs=max_pairs)
    report.mkdir(parents=True, exist_ok=True)
    (report / "session.log").write_text(proc.stdout + proc.stderr)
    return read_ab_report(run, report)


def _pct(k: int, n: int) -> str:
    return f"{100 * k / max(n, 1):.0f} % ({k})"


def _counts(values: list[str]) -> str:
    counts = Counter(values)
    order = [v for v in AB_VERDICTS if counts[v]] + sorted(v for v in counts if v not in AB_VERDICTS)
    return ", ".join(f"{v} {counts[v]}" for v in order) or "-"


def _median(values: list[float], fmt: str) -> str:
    return format(statistics.median(values), fmt) if values else "-"


def ab_table(runs: list[AbRun]) -> str:
    """One row per condition: its sessions, the per-test RTF verdicts, the pooled verdicts (RTF and
    first chunk), the median pooled RTF ratio, the median pairs a test needed, the median session time."""
    head = ("| condition | sessions | failing sessions | per-test RTF verdicts | regression | improvement | "
            "candidate | same | inconclusive | unknown | first-chunk regression | pooled RTF | pooled first chunk | "
            "median pooled RTF ratio | median pairs per test | outputs differ | median session s | "
            "other processes' CPU |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for label in dict.fromkeys(r.label for r in runs):
        group = [r for r in runs if r.label == label]
        sessions = str(len(group))
        others = [r.others_cpu for r in group if r.others_cpu is not None]
        cpu = f"{100 * min(others):.0f} .. {100 * max(others):.0f} %" if others else "-"
        if group[0].part == "gate":   # no base: only its time is of interest
            rows.append(f"| {label} | {sessions} | - | - | - | - | - | - | - | - | - | - | - | - | - | - | "
                        f"{_median([r.seconds for r in group], '.0f')} | {cpu} |")
            continue
        unjudged = sum(1 for r in group if not r.judged)
        if unjudged:
            sessions += f" ({unjudged} without A/B verdicts)"
        verdicts = [v for r in group for v in r.verdicts.values()]
        n = len(verdicts)
        per_test = " | ".join(_pct(verdicts.count(v), n) for v in AB_VERDICTS)
        pooled = [r.pooled_ratio[RTF_METRIC] for r in group if RTF_METRIC in r.pooled_ratio]
        pairs = [float(p) for r in group for p in r.pairs.values()]
        differ = sum(r.outputs_differ for r in group)
        total = sum(r.pairs_total for r in group)
        pooled_rtf = [r.pooled_verdict[RTF_METRIC] for r in group if RTF_METRIC in r.pooled_verdict]
        pooled_first = [r.pooled_verdict[FIRST_CHUNK_METRIC] for r in group if FIRST_CHUNK_METRIC in r.pooled_verdict]
        failing = sum(r.failing for r in group)
        first = [v for r in group for v in r.first_chunk_verdicts.values()]
        rows.append(
            f"| {label} | {sessions} | {failing} of {len(group)} | {n} | {per_test} | "
            f"{_pct(first.count('regression'), len(first))} | {_counts(pooled_rtf)} | {_counts(pooled_first)} | "
            f"{_median(pooled, '.3f')} | {_median(pairs, 'g')} | {differ} of {total} | "
            f"{_median([r.seconds for r in group], '.0f')} | {cpu} |")
    return head + "\n" + "\n".join(rows)


def slowdown_table(runs: list[AbRun]) -> str:
    """Per COSY_SLOW level: the slowdown it actually applied (the median pooled ratio; the head sleeps
    while the Runtime's producer keeps working, so less than the level) and how often it was found."""
    head = ("| COSY_SLOW | sessions | measured slowdown (median pooled RTF ratio) | pooled RTF ratios | "
            "median pooled first-chunk ratio | pooled RTF regression | per-test RTF regression |\n"
            "|---|---|---|---|---|---|---|")
    rows = []
    for level in sorted({r.level for r in runs if r.part == "ab-slow" and r.level is not None}):
        group = [r for r in runs if r.part == "ab-slow" and r.level == level]
        pooled = [r.pooled_ratio[RTF_METRIC] for r in group if RTF_METRIC in r.pooled_ratio]
        first = [r.pooled_ratio[FIRST_CHUNK_METRIC] for r in group if FIRST_CHUNK_METRIC in r.pooled_ratio]
        found = sum(1 for r in group if r.pooled_verdict.get(RTF_METRIC) == "regression")
        verdicts = [v for r in group for v in r.verdicts.values()]
        rows.append(f"| {level:g} | {len(group)} | "
                    + (f"{100 * (statistics.median(pooled) - 1):+.1f} %" if pooled else "-") + " | "
                    + (f"{min(pooled):.3f} .. {max(pooled):.3f}" if pooled else "-") + " | "
                    + f"{_median(first, '.3f')} | {_pct(found, len(group))} | "
                    + f"{_pct(verdicts.count('regression'), len(verdicts))} |")
    return head + "\n" + "\n".join(rows)


def rejudge_ab(work: Path, runs: list[AbRun], tolerance: float) -> list[AbRun]:
    """The kept raw pairs (every run's ab.csv under `work`) judged again at another tolerance, with the
    plugin's own rule (tracking.paired, with the pairs' orders), each run at its own pair cap."""
    _project_on_path()
    from pytest_cosyvoice.tracking.paired import Rule, judge_pairs
    from pytest_cosyvoice.tracking.pooled import pool

    out = []
    for r in runs:
        again = AbRun(r.part, r.label, r.report, r.seconds, r.returncode, base=r.base, level=r.level,
                      max_pairs=r.max_pairs, outputs_differ=r.outputs_differ, pairs_total=r.pairs_total,
                      others_cpu=r.others_cpu)
        raw = work / r.report / "ab.csv"
        rule = Rule(tolerance=tolerance, max_pairs=r.max_pairs)
        if r.part != "gate" and raw.is_file():
            by_test = read_ab_pairs(raw)
            for metric, side in ((RTF_METRIC, "rtf"), (FIRST_CHUNK_METRIC, "first_chunk_ms")):
                kept = {nodeid: [p for p in rows if getattr(p, f"head_{side}") and getattr(p, f"base_{side}")]
                        for nodeid, rows in by_test.items()}
                kept = {nodeid: rows for nodeid, rows in kept.items() if rows}
                if not kept:
                    continue
                pairs = {nodeid: [(getattr(p, f"head_{side}"), getattr(p, f"base_{side}")) for p in rows]
                         for nodeid, rows in kept.items()}
                orders = {nodeid: [p.order for p in rows] for nodeid, rows in kept.items()}
                results = [judge_pairs(nodeid, p, orders[nodeid], rule=rule) for nodeid, p in pairs.items()]
                pooled = pool(pairs, results, orders_by_test=orders, rule=rule, metric=metric)
                again.pooled_verdict[metric] = str(pooled.verdict)
                again.pooled_ratio[metric] = pooled.ratio
                again.failing |= str(pooled.verdict) == "regression" or any(
                    str(res.verdict) == "regression" for res in results)
                if metric == FIRST_CHUNK_METRIC:
                    again.first_chunk_verdicts = {res.nodeid: str(res.verdict) for res in results}
                if metric == RTF_METRIC:
                    for res in results:
                        again.verdicts[res.nodeid] = str(res.verdict)
                        again.ratios[res.nodeid] = res.ratio
                        again.pairs[res.nodeid] = res.n_pairs
        out.append(again)
    return out


def ab_tables(runs: list[AbRun]) -> str:
    text = ab_table(runs)
    if any(r.part == "ab-slow" for r in runs):
        text += "\n\n" + slowdown_table(runs)
    return text


def ab_main(args: argparse.Namespace) -> int:
    """`--ab` (run the A/B sessions and print their tables) or `--ab-rejudge` (judge kept pairs again)."""
    if args.ab_rejudge:
        if args.json is None or args.workdir is None:
            raise SystemExit("--ab-rejudge needs the --json and --workdir of the earlier --ab run")
        old = [AbRun(**d) for d in json.loads(args.json.read_text())]
        for tol in [float(t) for t in args.ab_rejudge.split(",")]:
            print(f"\ntolerance {tol:g}:\n" + ab_tables(rejudge_ab(args.workdir, old, tol)))
        return 0
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="gate-truth-ab-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir: {work}", flush=True)
    levels = [float(x) for x in args.ab_levels.split(",") if x]
    plan = ab_plan(model_copy(work), clean=args.ab_clean, busy=args.ab_busy, levels=levels,
                   slow_runs=args.ab_slow_runs, gate=args.ab_gate, kinds=args.ab_kinds)
    runs: list[AbRun] = []
    for i, session in enumerate(plan):
        r = run_ab(work, session, i, select=args.select, repeat=args.repeat, max_pairs=args.ab_max_pairs)
        runs.append(r)
        if args.json:   # after every run: a stopped benchmark keeps what it measured
            args.json.write_text(json.dumps([asdict(x) for x in runs], indent=1))
        print(f"{r.part:8s} {r.label:44s} rc={r.returncode} {r.seconds:5.0f}s pooled {r.pooled_verdict or '-'} "
              f"{dict(Counter(r.verdicts.values()))}", flush=True)
    print("\n" + ab_tables(runs))
    return 0


def add_ab_arguments(ap: argparse.ArgumentParser) -> None:
    ab = ap.add_argument_group("A/B in one session (--ab: these parts instead of the cross-session ones)")
    ab.add_argument("--ab", action="store_true", help="run the A/B sessions and print their tables")
    ab.add_argument("--ab-clean", type=int, default=10, help="A/A sessions (base: a copy of the model, or "
                    "--cosy-base-engine fixed, alternately)")
    ab.add_argument("--ab-busy", type=int, default=5, help="A/A sessions beside a busy process")
    ab.add_argument("--ab-levels", default="0.05,0.1,0.2", help="COSY_SLOW levels of the slowed head")
    ab.add_argument("--ab-slow-runs", type=int, default=5, help="A/B sessions per level")
    ab.add_argument("--ab-kinds", type=int, default=0, help="A/A sessions across engine kinds: a pass-through "
                    "wrapper (benchmarks/passthrough_engine.py) as head, the fixed engine over a model copy as base")
    ab.add_argument("--ab-gate", type=int, default=2, help="sessions without a base, for the time a "
                    "cross-session gate session takes")
    ab.add_argument("--ab-max-pairs", type=int, default=AB_DEFAULT_MAX_PAIRS, help="--cosy-ab-max-pairs")
    ab.add_argument("--ab-rejudge", type=str, default="",
                    help="with --json of an earlier --ab run and its --workdir: judge its kept pairs again at "
                         "these tolerances (comma-separated) instead of running anything")


def rtf_samples(path: Path) -> dict[str, list[float]]:
    """nodeid -> the RTF samples of one kept rtf.csv."""
    out: dict[str, list[float]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["rtf"]:
                out.setdefault(row["nodeid"], []).append(float(row["rtf"]))
    return out


def tracking(work: Path, runs: list[Run], parts: list[str]) -> str:
    """How well each machine reference tracks the tests' own RTF across sessions of the same code: per
    run of `parts`, the median over tests of median RTF(run) / median RTF(baseline) beside the
    calibration's and the model reference's ratio to the baseline run's; then per candidate the
    median absolute difference from the tests' ratio ("none" is no correction, a ratio of 1: what the
    tests moved). The candidate with the smallest difference is the one to divide the drift by."""
    base_run = next(r for r in runs if r.part == "baseline")
    base = rtf_samples(next(work.glob("baseline-*-0.csv")))
    seen: Counter[tuple[str, str]] = Counter()
    rows: list[tuple[Run, float, float | None, float | None]] = []
    for r in runs:
        if r.part == "baseline" or r.part == "defect":
            continue
        k = seen[(r.part, r.label)]            # the kept csv files are numbered per part and label
        seen[(r.part, r.label)] += 1
        path = work / f"{r.part}-{r.label}-{k}.csv"
        if r.part not in parts or not path.is_file():
            continue
        cur = rtf_samples(path)
        ratios = [statistics.median(v) / statistics.median(base[n]) for n, v in cur.items()
                  if v and base.get(n) and statistics.median(base[n]) > 0]
        if not ratios:
            continue
        cal = r.calibration_s / base_run.calibration_s if r.calibration_s and base_run.calibration_s else None
        ref = r.reference_s / base_run.reference_s if r.reference_s and base_run.reference_s else None
        rows.append((r, statistics.median(ratios), cal, ref))

    def x(v: float | None) -> str:
        return "-" if v is None else f"x{v:.2f}"
    out = ["| run | part | condition | tests' RTF ratio (median) | calibration ratio | model reference ratio |",
           "|---|---|---|---|---|---|"]
    out += [f"| {i} | {r.part} | {r.label} | {x(t)} | {x(c)} | {x(m)} |" for i, (r, t, c, m) in enumerate(rows, 1)]
    out += ["", "| candidate | runs | median abs. difference from the tests' ratio | largest |", "|---|---|---|---|"]
    candidates = {"none (x1.00)": [(1.0, t) for _, t, _, _ in rows],
                  "calibration": [(c, t) for _, t, c, _ in rows if c is not None],
                  "model reference": [(m, t) for _, t, _, m in rows if m is not None]}
    for name, pairs in candidates.items():
        diffs = [abs(c - t) for c, t in pairs]
        out.append(f"| {name} | {len(diffs)} | "
                   + (f"{statistics.median(diffs):.3f} | {max(diffs):.3f} |" if diffs else "- | - |"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", type=int, default=5)
    ap.add_argument("--contended", type=int, default=3)
    ap.add_argument("--slow-runs", type=int, default=2)
    ap.add_argument("--levels", default="0.1,0.2,0.4")
    ap.add_argument("--repeat", type=int, default=5, help="RTF rounds per test (COSY_GATE_RTF_REPEAT)")
    ap.add_argument("--select", default=RTF_TESTS, help="pytest -k expression of the timed tests")
    ap.add_argument("--defects", action="store_true", help="also run the functional defects")
    ap.add_argument("--only-defects", action="store_true", help="run the functional defects only")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--rejudge", type=str, default="",
                    help="with --json of an earlier run and its --workdir: judge its samples again at these "
                         "tolerances (comma-separated) instead of running anything")
    ap.add_argument("--tracking", type=str, default="",
                    help="with --json of an earlier run and its --workdir: how well the calibration and the "
                         "model reference track the tests' RTF over the runs of these parts (comma-separated, "
                         "e.g. clean,contended) instead of running anything")
    add_ab_arguments(ap)
    args = ap.parse_args(argv)
    if args.ab or args.ab_rejudge:
        return ab_main(args)
    if args.tracking:
        old = [Run(**d) for d in json.loads(args.json.read_text())]
        print(tracking(args.workdir, old, [p for p in args.tracking.split(",") if p]))
        return 0
    if args.rejudge:
        old = [Run(**d) for d in json.loads(args.json.read_text())]
        base = next(r for r in old if r.part == "baseline")
        for tol in [float(t) for t in args.rejudge.split(",")]:
            print(f"\ntolerance {tol:g}:\n" + verdict_table(rejudge(args.workdir, old, tol), base.calibration_s))
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gate-truth-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir: {work}", flush=True)
    runs: list[Run] = []

    def step(part: str, label: str, **kw: object) -> Run:
        r = run_gate(work, part, label, **kw)  # type: ignore[arg-type]
        runs.append(r)
        if args.json:   # after every run: a stopped benchmark keeps what it measured
            args.json.write_text(json.dumps([asdict(x) for x in runs], indent=1))
        counts = Counter(r.verdicts.values())
        print(f"{part:10s} {label:28s} rc={r.returncode} {r.seconds:5.0f}s {dict(counts)}", flush=True)
        return r

    if args.only_defects:
        args.defects, args.clean, args.contended, args.levels = True, 0, 0, ""
    base = None if args.only_defects else step("baseline", "save baseline", select=args.select, repeat=args.repeat,
                                                extra=["--cosy-save-baseline"])
    for _ in range(args.clean):
        step("clean", "clean rerun", select=args.select, repeat=args.repeat)
    for _ in range(args.contended):
        busy = busy_process()
        try:
            step("contended", "rerun + 1 busy process", select=args.select, repeat=args.repeat)
        finally:
            busy.kill()
            busy.wait()
    for level in [float(x) for x in args.levels.split(",") if x]:
        for _ in range(args.slow_runs):
            pct = f"{100 * level:.0f}"
            step("slow", f"LLM+flow+vocoder +{pct} %", select=args.select, repeat=args.repeat,
                 inject=f"slow:llm={level},flow={level},hift={level}")
    defects: list[Run] = []
    if args.defects:
        for name, (select, _, _, extra) in DEFECT_CHECKS.items():
            r = step("defect", name, select=select, repeat=1, inject=f"defect:{name}", extra=extra,
                     report="rep-defects")
            defects.append(r)
    timed = [r for r in runs if r.part in ("clean", "contended", "slow")]
    if base is not None and timed:
        print("\n" + verdict_table(timed, base.calibration_s))
    if defects:
        print("\n" + defect_table(defects))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
