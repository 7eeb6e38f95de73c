"""Before/after evidence: the gate suites on the installed upstream orchestration class and on this
project's runtime, test by test and check by check, with each upstream failure's message.

    .venv/bin/python benchmarks/before_after.py [--model DIR] [--device cpu] [-k EXPR]

Runs `pytest suites --cosy-engine upstream` and `--cosy-engine fixed` (each in its own process, the
autocast FutureWarning allowed through ini `cosy_allowed_warnings` so it hides nothing, the timing
thresholds wide open and one RTF run per test: this is about behaviour, not speed), writes the raw
results to benchmarks/results/before_after.json and renders docs/before-after.md from them.
`--render-only` re-renders the doc from the JSON.

This module is also the pytest plugin (`-p before_after`) that records, per test, the outcome and
every problem line of its failure and of its "cosyvoice checks" section.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JSON_PATH = ROOT / "benchmarks" / "results" / "before_after.json"
DOC_PATH = ROOT / "docs" / "before-after.md"
# The before/after compares how each orchestration streams. The quality module judges a session's sound
# against goldens saved on the runner (none exist for this comparison; upstream's class takes no seed=, so
# its quality calls are notes by design): it is measured apart (docs/reports.md, benchmarks/quality_truth.py).
NOT_COMPARED = ("suites/test_quality.py",)
FORMAT = 1
ENGINES = ("upstream", "fixed")
ALLOWED = r"FutureWarning: `torch\.cuda\.amp\.autocast"
WIDE_OPEN = {
    "COSY_GATE_MAX_RTF": "1000", "COSY_GATE_MAX_GAP_MS": "600000", "COSY_GATE_PREBUFFER_MS": "600000",
    "COSY_GATE_CONCURRENT_PREBUFFER_MS": "600000", "COSY_GATE_MAX_FIRST_CHUNK_MS": "600000",
    "COSY_GATE_RTF_REPEAT": "1",
}
OUT_ENV = "COSY_BEFORE_AFTER_OUT"
PROBLEM_RE = re.compile(r"^\s{2,}([a-z][a-z -]{1,30}): (.+)$")


# -- the plugin side (runs inside each pytest process) -----------------------------------------------
_results: dict[str, dict[str, Any]] = {}


def problems_of(message: str, sections: list[tuple[str, str]]) -> list[list[str]]:
    """[check, text] pairs: the '  <check>: <text>' lines of the failure and of its checks section;
    a failure without such lines is one problem named after what raised it."""
    out: list[list[str]] = []
    texts = ([message] if message else []) + [t for name, t in sections if "cosyvoice checks" in name]
    for text in texts:
        raw = text.splitlines()
        lines = [ln[4:] for ln in raw if ln.startswith("E   ")] or raw  # a traceback: its E lines
        found = [[m.group(1), m.group(2).strip()] for m in map(PROBLEM_RE.match, lines) if m]
        if found:
            out += found
        elif text is message:
            first = next((ln.strip() for ln in lines if ln.strip()), "")
            check = "watchdog" if first.startswith("cosy_tts ") and "nothing produced" in first else "failed"
            out.append([check, first])
    return out


def pytest_runtest_logreport(report: Any) -> None:
    entry = _results.setdefault(report.nodeid, {"outcome": "passed", "problems": []})
    if report.when == "call" or report.outcome != "passed":
        if report.skipped:
            entry["outcome"] = "skipped"
            entry["problems"].append(["skipped", str(report.longrepr[2]) if isinstance(report.longrepr, tuple)
                                      else report.longreprtext])
            return
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
        message = report.longreprtext if report.failed else ""
        entry["problems"] += problems_of(message, list(report.sections) if report.when == "call" else [])


def pytest_sessionfinish(session: Any) -> None:
    out = os.environ.get(OUT_ENV)
    if out:
        Path(out).write_text(json.dumps(_results, indent=1, sort_keys=True), encoding="utf-8")


# -- the driver ---------------------------------------------------------------------------------------
def run_engine(engine: str, model: str | None, device: str, select: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        env = {**os.environ, **WIDE_OPEN, OUT_ENV: str(out),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "pytest", "suites", *(f"--ignore={p}" for p in NOT_COMPARED),
               "-p", "before_after", "-p", "no:cacheprovider", "-q",
               f"--cosy-engine={engine}", f"--cosy-device={device}", "--cosy-no-report",
               "-o", f"cosy_allowed_warnings={ALLOWED}"]
        if model:
            cmd.append(f"--cosy-model={model}")
        if select:
            cmd += ["-k", select]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if not out.exists():
            raise SystemExit(f"{engine}: pytest wrote no results (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                             f"{proc.stderr[-3000:]}")
        return {"exit": proc.returncode, "tests": json.loads(out.read_text(encoding="utf-8"))}


def environment(model: str | None, device: str) -> dict[str, str]:
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"
    try:
        import cosyvoice.cli.model as up
        where = Path(up.__file__).as_posix().split("site-packages/")[-1]
    except Exception as e:  # noqa: BLE001 - recorded as found
        where = f"not importable ({type(e).__name__})"
    return {"model": model or "the embedded tiny v2 model", "device": device, "python": platform.python_version(),
            "torch": version("torch"), "upstream package": f"cosyvoice-minicpmo {version('cosyvoice-minicpmo')}",
            "upstream class module": where, "cpu": platform.processor() or platform.machine()}


def short(text: str, n: int = 320) -> str:
    """One line, at most n characters, without what differs from run to run or machine to machine (the
    install prefix `.../site-packages/`, thread numbers, repeat counts), so equal problems group."""
    text = re.sub(r"\S*/site-packages/", "", " ".join(text.split())).replace("|", "\\|")
    text = re.sub(r"\b(cosy-tts-reader|Thread)-\d+", r"\1-N", re.sub(r" \[x\d+\]$", "", text))
    return text if len(text) <= n else text[: n - 1] + "…"


def render(data: dict[str, Any]) -> str:
    """docs/before-after.md from the results; pinned by tests/test_before_after.py."""
    runs = data["runs"]
    tests = sorted(set().union(*(runs[e]["tests"] for e in ENGINES)))
    lines = [
        "# Before / after: the gate suites on upstream's orchestration class and on this runtime",
        "",
        f"<!-- generated by benchmarks/before_after.py (format {FORMAT}); do not edit by hand -->",
        "",
        "`pytest suites` run twice over the same loaded components: `--cosy-engine upstream` (the installed",
        "upstream class, `cosyvoice.cli.model`, driving them) and `--cosy-engine fixed` (this runtime). The",
        f"autocast FutureWarning is allowed (`cosy_allowed_warnings = {data['allowed']}`), so no failure",
        "below is that warning; timing thresholds are wide open and each RTF test runs once: this compares",
        "behaviour, not speed. Regenerate with `.venv/bin/python benchmarks/before_after.py`. The quality",
        "module (`suites/test_quality.py`, judged against goldens saved on the runner) is measured apart:",
        "docs/reports.md, \"The quality gate: measured on real reruns\".",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in data["environment"].items()],
        "",
    ]
    counts = {e: {o: sum(1 for t in runs[e]["tests"].values() if t["outcome"] == o)
                  for o in ("passed", "failed", "error", "skipped")} for e in ENGINES}
    for e in ENGINES:
        c = counts[e]
        lines.append(f"- **{e}**: {c['passed']} passed, {c['failed']} failed, {c['error']} errors, "
                     f"{c['skipped']} skipped of {len(runs[e]['tests'])} (pytest exit {runs[e]['exit']})")
    lines += ["", "## Test by test", "", "| test | upstream | this runtime | upstream's failed checks |",
              "|---|---|---|---|"]
    for t in tests:
        up, ours = runs["upstream"]["tests"].get(t), runs["fixed"]["tests"].get(t)
        checks = sorted({p[0] for p in up["problems"]}) if up and up["outcome"] != "passed" else []
        lines.append(f"| `{t.removeprefix('suites/')}` | {up['outcome'] if up else '-'} | "
                     f"{ours['outcome'] if ours else '-'} | {', '.join(checks)} |")
    lines += ["", "## Upstream's failures and skips, check by check", "",
              "Tests that failed with the same problems are listed together.", ""]
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for t in tests:
        up = runs["upstream"]["tests"].get(t)
        if up and up["outcome"] != "passed":
            problems = tuple(dict.fromkeys((check, short(text)) for check, text in up["problems"]))
            groups.setdefault(problems, []).append(t)
    for problems, members in groups.items():
        lines += [f"### `{members[0].removeprefix('suites/')}`"
                  + (f" and {len(members) - 1} more" if len(members) > 1 else ""), ""]
        if len(members) > 1:
            lines += ["Also: " + ", ".join(f"`{m.removeprefix('suites/')}`" for m in members[1:]), ""]
        lines += [f"- **{check}**: {text}" for check, text in problems] + [""]
    failing_ours = [t for t in tests if runs["fixed"]["tests"].get(t, {}).get("outcome") not in ("passed", None)]
    lines += ["## This runtime's failures", ""]
    if not failing_ours:
        lines.append("None: every suite test passes.")
    for t in failing_ours:
        lines.append(f"- `{t.removeprefix('suites/')}`: " + "; ".join(
            f"{c}: {short(x, 160)}" for c, x in runs["fixed"]["tests"][t]["problems"]))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the embedded tiny v2 model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-k", dest="select", default=None, help="only the suite tests pytest -k selects")
    ap.add_argument("--json", type=Path, default=JSON_PATH)
    ap.add_argument("--doc", type=Path, default=DOC_PATH)
    ap.add_argument("--render-only", action="store_true", help="re-render the doc from --json")
    args = ap.parse_args(argv)
    if args.render_only:
        data = json.loads(args.json.read_text(encoding="utf-8"))
    else:
        data = {"format": FORMAT, "allowed": ALLOWED, "environment": environment(args.model, args.device),
                "runs": {e: run_engine(e, args.model, args.device, args.select) for e in ENGINES}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        data = json.loads(args.json.read_text(encoding="utf-8"))  # the doc is always what the JSON renders to
    args.doc.write_text(render(data), encoding="utf-8")
    print(f"wrote {args.doc}" + ("" if args.render_only else f" and {args.json}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
