"""benchmarks/gate_truth.py --ab (issue 17): the sessions it plans and the command lines it runs, how
it reads a session's ab_verdicts.csv and ab.csv, the tables it prints, and its re-judging of kept
pairs with the plugin's paired rule. The files here are written by the tests, in the columns the
plugin writes; the sessions themselves are the benchmark's to run."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERDICT_COLUMNS = ["nodeid", "metric", "ratio", "ci_low", "ci_high", "p_value", "pairs", "verdict", "note"]
PAIR_COLUMNS = ["nodeid", "round", "order", "head_rtf", "base_rtf", "head_first_chunk_ms", "base_first_chunk_ms",
                "outputs", "outputs_detail", "outputs_finding"]
A, B = "suites/test_streaming.py::test_stream[zero_shot-short-en]", "suites/test_streaming.py::test_stream[sft-zh]"


@pytest.fixture(scope="module")
def gate_truth() -> Iterator[ModuleType]:
    # The script imports its neighbour `inject` as a top-level module, as it does when run from
    # benchmarks/; its dataclasses need the module registered while it loads and is used.
    spec = importlib.util.spec_from_file_location("gate_truth", ROOT / "benchmarks" / "gate_truth.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(ROOT / "benchmarks"))


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def verdict(nodeid: str, metric: str, ratio: float | str, pairs: int, v: str, note: str = "") -> dict[str, Any]:
    low, high = (ratio * 0.97, ratio * 1.03) if isinstance(ratio, float) else ("", "")
    return {"nodeid": nodeid, "metric": metric, "ratio": ratio, "ci_low": low, "ci_high": high, "p_value": 0.004,
            "pairs": pairs, "verdict": v, "note": note}


def pair_rows(nodeid: str, head_over_base: float, n: int) -> list[dict[str, Any]]:
    """n pairs with head/base RTF near `head_over_base` (a spread of +-2 % that differs per round)."""
    rows = []
    for i in range(n):
        base = 0.5 + 0.01 * i
        wobble = 1.0 + 0.02 * math.sin(1.7 * i + len(nodeid))
        rows.append({"nodeid": nodeid, "round": i, "order": "AB" if i % 2 else "BA", "head_rtf": base * head_over_base
                     * wobble, "base_rtf": base, "head_first_chunk_ms": 200.0 * head_over_base * wobble,
                     "base_first_chunk_ms": 200.0, "outputs": "identical", "outputs_detail": "",
                     "outputs_finding": False})
    return rows


def session(work: Path, name: str, tests: dict[str, tuple[float, int, str]], pooled: dict[str, tuple[float, str]],
            differ: int = 0) -> Path:
    """A report folder as an A/B session leaves it: per-test RTF rows and pooled rows in ab_verdicts.csv
    (first-chunk rows per test too, which the RTF columns must not count), and the pairs in ab.csv."""
    report = work / "ab" / name
    rows = []
    for nodeid, (ratio, pairs, v) in tests.items():
        rows.append(verdict(nodeid, "RTF", ratio, pairs, v))
        rows.append(verdict(nodeid, "first chunk", ratio, pairs, "regression"))
    rows += [verdict("(pooled)", metric, ratio, sum(t[1] for t in tests.values()), v)
             for metric, (ratio, v) in pooled.items()]
    write_csv(report / "ab_verdicts.csv", VERDICT_COLUMNS, rows)
    raw = [r for nodeid, (ratio, pairs, _) in tests.items() for r in pair_rows(nodeid, ratio, pairs)]
    for r in raw[:differ]:
        r.update(outputs="differs", outputs_detail="tokens diverge at 37 of 120", outputs_finding=True)
    if differ:   # the first as ab.csv had it before its outputs_detail column: all its words in "outputs"
        raw[0].update(outputs="differs: tokens diverge at 37 of 120", outputs_detail="")
    write_csv(report / "ab.csv", PAIR_COLUMNS, raw)
    return report


def test_a_session_report_is_read_into_per_test_and_pooled_verdicts(gate_truth: ModuleType, tmp_path: Path) -> None:
    report = session(tmp_path, "000-ab-slow", {A: (1.12, 10, "regression"), B: (1.04, 20, "inconclusive")},
                     {"RTF": (1.08, "regression"), "first chunk": (1.02, "same")}, differ=3)
    run = gate_truth.AbRun("ab-slow", "A/B +10 %", "ab/000-ab-slow", 60.0, 0, level=0.1)
    gate_truth.read_ab_report(run, report)
    assert run.verdicts == {A: "regression", B: "inconclusive"}      # RTF rows only
    assert run.pairs == {A: 10, B: 20} and run.ratios == {A: 1.12, B: 1.04}
    assert run.pooled_verdict == {"RTF": "regression", "first chunk": "same"}
    assert run.pooled_ratio == {"RTF": 1.08, "first chunk": 1.02}
    assert (run.outputs_differ, run.pairs_total, run.judged) == (3, 30, True)
    by_test = gate_truth.read_ab_pairs(report / "ab.csv")
    assert [p.round for p in by_test[B]] == list(range(20)) and by_test[A][1].order == "AB"
    assert by_test[A][0].base_rtf == 0.5 and by_test[A][0].base_first_chunk_ms == 200.0


def test_a_session_that_wrote_nothing_counts_as_without_verdicts(gate_truth: ModuleType, tmp_path: Path) -> None:
    run = gate_truth.read_ab_report(gate_truth.AbRun("aa-clean", "A/A clean", "ab/x", 5.0, 3), tmp_path / "missing")
    assert not run.judged and run.verdicts == {} and run.pairs_total == 0


def test_the_table_counts_verdicts_per_condition(gate_truth: ModuleType, tmp_path: Path) -> None:
    runs = []
    for i, (tests, pooled) in enumerate([
        ({A: (1.01, 10, "same"), B: (0.99, 10, "same")}, {"RTF": (1.0, "same"), "first chunk": (1.0, "same")}),
        ({A: (1.02, 20, "inconclusive"), B: (0.98, 10, "same")}, {"RTF": (1.0, "same")}),
    ]):
        report = session(tmp_path, f"{i:03d}-aa-clean", tests, pooled, differ=i)
        (report / "history.jsonl").write_text(json.dumps({"health": {"others_cpu": 0.01}}) + "\n"
                                              + json.dumps({"health": {"others_cpu": 0.03 + 0.4 * i}}) + "\n")
        runs.append(gate_truth.read_ab_report(
            gate_truth.AbRun("aa-clean", "A/A clean", str(report), 100.0 + 20 * i, 0), report))
    runs.append(gate_truth.AbRun("aa-clean", "A/A clean", "ab/none", 30.0, 1))        # wrote no verdicts
    runs.append(gate_truth.AbRun("gate", "cross-session gate session (no base)", "ab/g", 40.0, 0))
    table = gate_truth.ab_table(runs).splitlines()
    assert len(table) == 4 and table[0].count("|") == table[2].count("|") == table[3].count("|")
    # The first-chunk rows say "regression" (session()): the sessions fail, the RTF columns do not count them.
    assert table[2] == ("| A/A clean | 3 (1 without A/B verdicts) | 2 of 3 | 4 | 0 % (0) | 0 % (0) | 0 % (0) | "
                        "75 % (3) | 25 % (1) | 0 % (0) | 100 % (4) | same 2 | same 1 | 1.000 | 10 | 1 of 50 | 100 | "
                        "3 .. 43 % |")
    assert table[3] == "| cross-session gate session (no base) | 1 |" + " - |" * 14 + " 40 | - |"


def test_the_slowdown_table_gives_what_each_level_applied(gate_truth: ModuleType) -> None:
    def run(level: float, ratio: float, pooled: str, tests: list[str]) -> Any:
        return gate_truth.AbRun("ab-slow", f"+{level}", "ab/x", 90.0, 0, level=level,
                                verdicts={f"t{i}": v for i, v in enumerate(tests)},
                                pooled_verdict={"RTF": pooled, "first chunk": "same"},
                                pooled_ratio={"RTF": ratio, "first chunk": 1.01})
    runs = [run(0.1, 1.06, "regression", ["regression", "same"]), run(0.1, 1.08, "regression", ["regression"] * 2),
            run(0.1, 1.07, "unknown", ["inconclusive", "regression"]), run(0.05, 1.03, "same", ["same", "same"])]
    lines = gate_truth.slowdown_table(runs).splitlines()
    assert lines[2] == "| 0.05 | 1 | +3.0 % | 1.030 .. 1.030 | 1.010 | 0 % (0) | 0 % (0) |"
    assert lines[3] == "| 0.1 | 3 | +7.0 % | 1.060 .. 1.080 | 1.010 | 67 % (2) | 67 % (4) |"


def test_the_plan_alternates_the_aa_bases_and_slows_only_the_head(gate_truth: ModuleType, tmp_path: Path) -> None:
    copy = tmp_path / "tiny-model-copy"
    plan = gate_truth.ab_plan(copy, clean=3, busy=2, levels=[0.05, 0.1], slow_runs=2, gate=1)
    assert [(s.part, s.base, s.busy) for s in plan[:5]] == [
        ("aa-clean", (f"--cosy-base-model={copy}",), False), ("aa-clean", ("--cosy-base-engine=fixed",), False),
        ("aa-clean", (f"--cosy-base-model={copy}",), False),
        ("aa-busy", (f"--cosy-base-model={copy}",), True), ("aa-busy", ("--cosy-base-engine=fixed",), True)]
    assert all(s.head == () and s.level is None for s in plan[:5])
    slow = plan[5:9]
    assert [s.level for s in slow] == [0.05, 0.05, 0.1, 0.1]
    assert all(s.head == ("--cosy-engine=benchmarks.slow_engine:build",) and s.base == ("--cosy-base-engine=fixed",)
               for s in slow)
    assert [(s.part, s.head, s.base) for s in plan[9:]] == [("gate", (), ())]


def test_the_aa_base_model_is_a_copy_of_the_heads_made_once(gate_truth: ModuleType, tmp_path: Path,
                                                             tiny_v2_dir: Path) -> None:
    copy = gate_truth.model_copy(tmp_path)
    assert copy.parent == tmp_path and copy != tiny_v2_dir

    def files(d: Path) -> dict[str, bytes]:
        return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
    assert files(copy) == files(tiny_v2_dir)
    marker = copy / "made-by-the-first-call"
    marker.write_text("")
    assert gate_truth.model_copy(tmp_path) == copy and marker.is_file()


def test_the_command_lines_and_environment(gate_truth: ModuleType, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    slow, gate = gate_truth.ab_plan(tmp_path / "copy", clean=0, busy=0, levels=[0.1], slow_runs=1, gate=1)
    report = tmp_path / "ab" / "000-ab-slow"
    cmd = gate_truth.ab_cmd(tmp_path, report, slow, select="test_stream", max_pairs=14)
    assert cmd[1:5] == ["-m", "pytest", str(ROOT / "suites"), "-p"]
    assert cmd[cmd.index("-k") + 1] == "test_stream"
    for arg in (f"--cosy-report={report}", "--cosy-engine=benchmarks.slow_engine:build", "--cosy-base-engine=fixed",
                "--cosy-ab-max-pairs=14", f"--cosy-markdown={report / 'summary.md'}",
                f"--cosy-baseline-dir={tmp_path / 'bl-ab'}"):
        assert arg in cmd
    plain = gate_truth.ab_cmd(tmp_path, report, gate, select="test_stream", max_pairs=14)
    assert not [a for a in plain if a.startswith(("--cosy-base-", "--cosy-ab", "--cosy-markdown", "--cosy-engine"))]
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary"))
    monkeypatch.setenv("COSY_SLOW", "9")
    env = gate_truth.ab_env(slow, 5)
    assert env["COSY_SLOW"] == "0.1" and env["COSY_GATE_RTF_REPEAT"] == "5" and "GITHUB_STEP_SUMMARY" not in env
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT)
    assert "COSY_SLOW" not in gate_truth.ab_env(gate, 5)


def test_kept_pairs_are_judged_again_at_another_tolerance(gate_truth: ModuleType, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # 40 pairs a test, head 15 % slower in every pair: a candidate at the first look (10 pairs),
    # confirmed on the 30 fresh pairs after it.
    session(tmp_path, "000-ab-slow", {A: (1.15, 40, "regression"), B: (1.15, 40, "regression")},
            {"RTF": (1.15, "regression")})
    run = gate_truth.AbRun("ab-slow", "A/B +20 %", "ab/000-ab-slow", 80.0, 0, level=0.2, max_pairs=20)
    tight, loose = (gate_truth.rejudge_ab(tmp_path, [run], tol)[0] for tol in (0.05, 0.3))
    assert tight.verdicts == {A: "regression", B: "regression"} and tight.pooled_verdict["RTF"] == "regression"
    assert tight.pairs == {A: 40, B: 40} and tight.ratios[A] == pytest.approx(1.15, abs=0.02)
    assert tight.pooled_ratio["RTF"] == pytest.approx(1.15, abs=0.02)
    assert tight.pooled_verdict["first chunk"] == "regression"
    # Beyond what a 15 % change can reach: its CI lies within +-30 %.
    assert loose.verdicts == {A: "same", B: "same"} and loose.pooled_verdict["RTF"] == "same"

    # The command line: --json of the earlier run and its --workdir, nothing run.
    rows = tmp_path / "ab.json"
    rows.write_text(json.dumps([asdict(run)]))
    assert gate_truth.AbRun(**json.loads(rows.read_text())[0]) == run
    assert gate_truth.main(["--ab-rejudge", "0.05,0.3", "--json", str(rows), "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tolerance 0.05:" in out and "tolerance 0.3:" in out
    assert "| A/B +20 % | 1 | 1 of 1 | 2 | 100 % (2) |" in out and "| 0.2 | 1 | +15." in out


def test_rejudging_needs_the_earlier_runs_files(gate_truth: ModuleType) -> None:
    with pytest.raises(SystemExit, match="--ab-rejudge needs the --json and --workdir"):
        gate_truth.main(["--ab-rejudge", "0.05"])


def test_the_engine_kinds_part_runs_a_pass_through_wrapper_against_the_fixed_engine_on_a_copy(
        gate_truth: ModuleType, tmp_path: Path) -> None:
    copy = tmp_path / "tiny-model-copy"
    plan = gate_truth.ab_plan(copy, clean=0, busy=0, levels=[], slow_runs=0, gate=0, kinds=2)
    assert [(s.part, s.head, s.base, s.level, s.busy) for s in plan] == [
        ("aa-kinds", ("--cosy-engine=benchmarks.passthrough_engine:build",),
         ("--cosy-base-engine=fixed", f"--cosy-base-model={copy}"), None, False)] * 2


def test_the_pass_through_wrapper_hands_everything_to_the_runtime_and_declares_what_it_does() -> None:
    from benchmarks.passthrough_engine import build
    from pytest_cosyvoice.engine import declared_abilities

    class Runtime:   # the attributes the wrapper forwards; no model needed to see the forwarding
        cosy_abilities = {"seed": True, "observer": True}
        sample_rate = 24000

        def stream(self, *args: object, **kwargs: object) -> object:
            return ("stream", args, kwargs)

        def synthesize(self, *args: object, **kwargs: object) -> object:
            return ("synthesize", args, kwargs)

    engine = build(Runtime())  # type: ignore[arg-type]
    assert engine.stream("hi", seed=3) == ("stream", ("hi",), {"seed": 3})
    assert engine.synthesize("hi", speaker="a") == ("synthesize", ("hi",), {"speaker": "a"})
    assert engine.sample_rate == 24000
    abilities = declared_abilities(engine)
    assert abilities is not None and abilities.seed and abilities.observer and not abilities.render
