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
`--tracking clean,contended` (with an earlier run's `--json` and `--workdir`) runs nothing: it prints
how well the calibration and the model reference track the tests' RTF ratio to the baseline over
those parts' runs (see `tracking`).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
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

    def samples(path: Path) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["rtf"]:
                    out.setdefault(row["nodeid"], []).append(float(row["rtf"]))
        return out

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
    args = ap.parse_args(argv)
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
