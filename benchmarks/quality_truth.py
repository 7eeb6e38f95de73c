"""How well the quality gate (issue 18) sees real defects and leaves clean reruns alone, measured on
real sessions of suites/test_quality.py.

    .venv/bin/python benchmarks/quality_truth.py --engine tiny      [--calibrate 5] [--clean 5] [--defects all]
    .venv/bin/python benchmarks/quality_truth.py --engine speaking  [--asr pocketsphinx] [...]

Per engine ("tiny": the embedded tiny model, defects through its components with `-p inject`;
"speaking": espeak-ng behind `--cosy-engine benchmarks.defective_engine:build`, defects on its chunks),
in a scratch folder (`--workdir`, default a temporary one), each session its own report folder:
1. `--calibrate` sessions with `--cosy-save-baseline`: the goldens and the clean score samples;
2. `--clean` reruns of the same code, nothing saved: every quality failure there is a false one;
3. one session per defect (`--defects`, default all that apply to the engine), nothing saved.
Every session runs the same command line and engine (only COSY_INJECT differs), so all share one run
key. After each, `<report>/quality.json` and the exit code are kept in
benchmarks/results/quality_truth/<engine>/<label>.json; at the end the matrix (rows: defects and
"clean"; cells: failed tests / tests where that check was judged) is printed and written to
matrix.md there, with the false failures of the clean reruns and the time the checks took.
`--matrix-only` runs nothing and rebuilds the matrix from those results files.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "quality_truth"
SUITE = "suites/test_quality.py"
CHECKS = ("tokens", "token2wav", "audio", "streamed_vs_offline", "dnsmos", "plcmos", "wer", "sim")
ENGINES = ("tiny", "speaking")
SPEAKING_FACTORY = "benchmarks.defective_engine:build"
# The defects each engine can take (benchmarks/inject.py QUALITY_DEFECTS, benchmarks/defective_engine.py
# DEFECTS), and the check named to catch each: the one whose failure says what changed.
NAMED_CHECK = {
    "vocoder-noise-20": "token2wav",
    "vocoder-noise-30": "token2wav",
    "joins-zeroed": "streamed_vs_offline",
    "joins-click": "streamed_vs_offline",
    "flow-mel-perturbed": "token2wav",
    "llm-top-k": "tokens",
    "speaker-swapped": "token2wav",
    "flow-fp16": "token2wav",
}
# The speaking engine renders nothing of given tokens (no token2wav, no streamed_vs_offline): its
# defects are named to the checks that judge its audio alone.
SPEAKING_NAMED_CHECK = {
    "vocoder-noise-20": "audio",
    "vocoder-noise-30": "audio",
    "joins-zeroed": "audio",
    "joins-click": "audio",
    "speaker-swapped": "audio",
}
JOIN_DEFECTS = ("joins-zeroed", "joins-click")   # only streamed calls have joins


def engine_defects(engine: str) -> dict[str, str]:
    """defect -> its named check, for the defects that apply to `engine`."""
    return dict(NAMED_CHECK) if engine == "tiny" else dict(SPEAKING_NAMED_CHECK)


@dataclass
class Session:
    label: str                 # "calibrate-1", "clean-3", the defect's name
    kind: str                  # "calibrate" | "clean" | "defect"
    returncode: int
    wall_s: float
    defect: str = ""
    quality: dict[str, Any] = field(default_factory=dict)   # the report's quality.json ({} when none)
    error: str = ""            # why quality.json could not be read


def read_quality(path: Path) -> dict[str, Any]:
    """A report's quality.json; ValueError naming the file and what is wrong."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: missing (did the session reach its end?)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("tests"), dict):
        raise ValueError(f"{path}: expected {{'schema': 1, 'tests': {{...}}}}, got keys "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def streamed(nodeid: str, test: dict[str, Any]) -> bool:
    """Whether a test has chunk joins: a streamed call that delivered 2 or more chunks (quality.json's
    "calls"); without that list, whether its id or a call label says it streams."""
    calls = test.get("calls")
    if calls is not None:
        return any(c.get("kind") == "stream" and int(c.get("chunks") or 0) >= 2 for c in calls)
    labels = [nodeid] + [str(c.get("call", "")) for c in test.get("checks", [])]
    return any("stream" in x.lower() for x in labels)


def tally(quality: dict[str, Any], only: set[str] | None = None) -> dict[str, tuple[int, int]]:
    """check -> (tests where it failed, tests where it was judged: passed or failed in some call), and
    "any" -> (tests with any failed check, tests); over the tests in `only` when given."""
    out = {name: (0, 0) for name in (*CHECKS, "any")}
    for nodeid, test in quality.get("tests", {}).items():
        if only is not None and nodeid not in only:
            continue
        checks = test.get("checks", [])
        for name in CHECKS:
            statuses = {c.get("status") for c in checks if c.get("name") == name}
            failed, judged = out[name]
            out[name] = (failed + ("fail" in statuses), judged + bool(statuses & {"pass", "fail"}))
        failed, n = out["any"]
        out["any"] = (failed + any(c.get("status") == "fail" for c in checks), n + 1)
    return out


# Tests a defect cannot reach on an engine, by design: the speaking engine's voice conversion returns the
# source recording itself (see benchmarks/speaking_engine.py), so no voice of its own is swapped there; and
# voice conversion's speech tokens come from the source recording's tokenizer, not from LLM sampling, so a
# changed sampling top_k never reaches it.
UNREACHED = {("speaking", "speaker-swapped"): "test_voice_conversion",
             ("tiny", "llm-top-k"): "test_voice_conversion"}


def affected(defect: str, quality: dict[str, Any], engine: str = "tiny") -> set[str]:
    """The tests a defect can reach: every quality test, but only those with chunk joins for the join
    defects, and none that UNREACHED names for the engine."""
    tests = quality.get("tests", {})
    skip = UNREACHED.get((engine, defect))
    return {n for n, t in tests.items()
            if (defect not in JOIN_DEFECTS or streamed(n, t)) and not (skip and skip in n)}


def add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def cell(counts: tuple[int, int]) -> str:
    return "-" if counts[1] == 0 else f"{counts[0]}/{counts[1]}"


@dataclass
class Row:
    label: str
    counts: dict[str, tuple[int, int]]        # check (and "any") -> (failed, judged), affected tests only
    named: str = ""                            # the defect's named check
    caught: tuple[int, int] = (0, 0)           # (affected tests its named check failed, affected tests)
    sessions: int = 1
    exit_codes: list[int] = field(default_factory=list)
    unread: int = 0                            # sessions without a readable quality.json


def build_matrix(sessions: list[Session], engine: str) -> list[Row]:
    """One row per defect session (over the tests it affects), then "clean" (all clean reruns summed)."""
    named = engine_defects(engine)
    rows = []
    for s in sessions:
        if s.kind != "defect":
            continue
        only = affected(s.defect, s.quality, engine)
        counts = tally(s.quality, only)
        check = named.get(s.defect, "")
        caught = (counts[check][0], len(only)) if check else (0, len(only))
        rows.append(Row(s.defect, counts, check, caught, 1, [s.returncode], unread=int(bool(s.error))))
    clean = [s for s in sessions if s.kind == "clean"]
    if clean:
        total = {name: (0, 0) for name in (*CHECKS, "any")}
        for s in clean:
            for name, c in tally(s.quality).items():
                total[name] = add(total[name], c)
        rows.append(Row("clean", total, sessions=len(clean), exit_codes=[s.returncode for s in clean],
                        unread=sum(bool(s.error) for s in clean)))
    return rows


def render_matrix(rows: list[Row], engine: str) -> str:
    head = ["defect", *CHECKS, "any", "named check: caught"]
    lines = [f"Quality gate, engine `{engine}`: failed tests / tests where the check was judged "
             "(defects: over the tests each affects; clean: summed over the reruns).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.label == "clean":
            verdict = f"{r.counts['any'][0]} false failure(s) in {r.sessions} session(s)"
            if any(r.exit_codes):
                verdict += f", exit codes {r.exit_codes}"
        else:
            share = r.caught[0] / r.caught[1] if r.caught[1] else 0.0
            mark = "ok" if r.caught[1] and share >= 0.95 else "MISSED"
            verdict = f"{r.named}: {r.caught[0]}/{r.caught[1]} ({share:.0%}, {mark})"
        if r.unread:
            verdict += f"; {r.unread} session(s) without quality.json"
        lines.append("| " + " | ".join([r.label, *(cell(r.counts[c]) for c in (*CHECKS, "any")), verdict]) + " |")
    return "\n".join(lines) + "\n"


def costs(sessions: list[Session]) -> str:
    """The checks' time per test (the tests' "seconds") and per session, and the sessions' wall time."""
    lines = []
    for kind in ("calibrate", "clean", "defect"):
        these = [s for s in sessions if s.kind == kind]
        if not these:
            continue
        per_test = [float(t["seconds"]) for s in these for t in s.quality.get("tests", {}).values()
                    if isinstance(t.get("seconds"), (int, float))]
        per_session = [sum(float(t.get("seconds") or 0.0) for t in s.quality.get("tests", {}).values())
                       for s in these]
        lines.append(f"- {kind}: {len(these)} session(s), wall {statistics.mean(s.wall_s for s in these):.1f} s "
                     f"mean; quality checks "
                     + (f"{statistics.mean(per_test):.2f} s per test (mean of {len(per_test)}), "
                        f"{statistics.mean(per_session):.1f} s per session" if per_test else "time not reported"))
    return "\n".join(lines) + "\n"


# -- running ---------------------------------------------------------------------------------------
def pytest_cmd(engine: str, work: Path, report: Path, *, save: bool, select: str, asr: str) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / SUITE), "-p", "no:cacheprovider", "-q",
           "--cosy-runner=quality-truth", f"--cosy-baseline-dir={work / 'baseline'}", f"--cosy-report={report}"]
    # The same plugins and engine in every session (only COSY_INJECT differs): one run key for all.
    cmd += ["-p", "inject"] if engine == "tiny" else [f"--cosy-engine={SPEAKING_FACTORY}"]
    if save:
        cmd.append("--cosy-save-baseline")
    if select:
        cmd += ["-k", select]
    if asr:
        cmd.append(f"--cosy-asr={asr}")
    return cmd


def run_session(engine: str, work: Path, label: str, kind: str, *, defect: str = "", select: str = "",
                asr: str = "") -> Session:
    report = work / f"report-{label}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]),
           "COSY_INJECT": f"defect:{defect}" if defect else ""}
    cmd = pytest_cmd(engine, work, report, save=kind == "calibrate", select=select, asr=asr)
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    session = Session(label, kind, proc.returncode, time.monotonic() - t, defect)
    (work / f"{label}.log").write_text(" ".join(cmd) + "\n\n" + proc.stdout + proc.stderr)
    try:
        session.quality = read_quality(report / "quality.json")
    except ValueError as e:
        session.error = str(e)
    return session


def save(session: Session, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{session.label}.json").write_text(json.dumps(asdict(session), indent=1) + "\n")


def load_results(out: Path) -> list[Session]:
    sessions = []
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        sessions.append(Session(**data))
    order = {"calibrate": 0, "clean": 1, "defect": 2}
    return sorted(sessions, key=lambda s: (order.get(s.kind, 3), s.label))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--engine", choices=ENGINES, default="tiny")
    ap.add_argument("--calibrate", type=int, default=5, help="sessions that save the goldens and score samples")
    ap.add_argument("--clean", type=int, default=5, help="clean reruns (no save)")
    ap.add_argument("--defects", default="all", help="comma-separated defect names, 'all' (those that apply "
                    "to the engine) or 'none'")
    ap.add_argument("--select", default="", help="pytest -k expression within the quality suite")
    ap.add_argument("--asr", default="", help="--cosy-asr for every session (e.g. pocketsphinx, speaking engine)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS}/<engine>)")
    ap.add_argument("--matrix-only", action="store_true", help="run nothing; the matrix from the results folder")
    args = ap.parse_args(argv)
    out = args.out or RESULTS / args.engine
    valid = engine_defects(args.engine)
    names = {"all": list(valid), "none": []}.get(args.defects, [d for d in args.defects.split(",") if d])
    bad = [d for d in names if d not in valid]
    if bad:
        ap.error(f"--defects {','.join(bad)}: not a defect of engine {args.engine!r}; expected 'all', 'none' "
                 f"or of {', '.join(valid)}")
    if args.asr and args.engine == "tiny":
        print("note: --asr on the tiny model: its random weights speak noise, the WER says nothing", file=sys.stderr)

    if args.matrix_only:
        sessions = load_results(out)
    else:
        work = args.workdir or Path(tempfile.mkdtemp(prefix="quality-truth-"))
        work.mkdir(parents=True, exist_ok=True)
        print(f"workdir {work}; results {out}", file=sys.stderr)
        plan = ([(f"calibrate-{i + 1}", "calibrate", "") for i in range(args.calibrate)]
                + [(f"clean-{i + 1}", "clean", "") for i in range(args.clean)]
                + [(d, "defect", d) for d in names])
        sessions = []
        for label, kind, defect in plan:
            s = run_session(args.engine, work, label, kind, defect=defect, select=args.select, asr=args.asr)
            save(s, out)
            sessions.append(s)
            print(f"{label}: exit {s.returncode}, {s.wall_s:.1f} s, {len(s.quality.get('tests', {}))} quality tests"
                  + (f" ({s.error})" if s.error else ""), file=sys.stderr)
    text = render_matrix(build_matrix(sessions, args.engine), args.engine) + "\n" + costs(sessions)
    unread = [f"{s.label}: {s.error}" for s in sessions if s.error]
    if unread:
        text += "\nSessions without quality.json:\n" + "\n".join(f"- {u}" for u in unread) + "\n"
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
