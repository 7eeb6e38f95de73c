"""docs/before-after.md is what benchmarks/before_after.py renders from its stored results, those
results cover every gate suite test on both engines, and the script works end to end (on one test)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def before_after() -> ModuleType:
    return load_benchmark("before_after")


@pytest.fixture(scope="module")
def stored(before_after: ModuleType) -> dict:
    return json.loads(before_after.JSON_PATH.read_text(encoding="utf-8"))


def suite_tests() -> set[str]:
    """The suite tests the before/after compares: all but the modules it names as measured apart."""
    from benchmarks.before_after import NOT_COMPARED

    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *(f"--ignore={p}" for p in NOT_COMPARED)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {ln.strip() for ln in proc.stdout.splitlines() if ln.startswith("suites/") and "::" in ln}


def test_the_doc_is_the_rendering_of_the_stored_results(before_after: ModuleType, stored: dict) -> None:
    assert stored["format"] == before_after.FORMAT
    assert before_after.DOC_PATH.read_text(encoding="utf-8") == before_after.render(stored), \
        "docs/before-after.md differs from what benchmarks/before_after.py renders: regenerate it"


def test_the_results_cover_every_suite_test_on_both_engines(before_after: ModuleType, stored: dict) -> None:
    collected = suite_tests()
    assert len(collected) > 30
    for engine in before_after.ENGINES:
        assert set(stored["runs"][engine]["tests"]) == collected, engine
    doc = before_after.DOC_PATH.read_text(encoding="utf-8")
    assert all(f"`{t.removeprefix('suites/')}`" in doc for t in collected)


def test_the_evidence_names_upstreams_hang_and_dead_llm_thread(stored: dict) -> None:
    up, ours = stored["runs"]["upstream"]["tests"], stored["runs"]["fixed"]["tests"]
    not_passed = {k: v for k, v in ours.items() if v["outcome"] != "passed"}
    assert not not_passed, not_passed
    faults = "suites/test_faults.py::test_engine_recovers_from_a_fault"
    stream_checks = {c for c, _ in up[f"{faults}[llm-mid-stream]"]["problems"]}
    assert {"hang", "thread died"} <= stream_checks
    synth = up[f"{faults}[llm-mid-synthesize]"]["problems"]
    assert any(c == "silent result" and "llm_job" in text for c, text in synth)


def test_problem_lines_are_parsed_check_by_check(before_after: ModuleType) -> None:
    checks_failed = "cosyvoice checks failed:\n  clean: FutureWarning: old at x.py:3\n  tidy: stream 0: thread 't' left"
    assert before_after.problems_of(checks_failed, []) == [["clean", "FutureWarning: old at x.py:3"],
                                                           ["tidy", "stream 0: thread 't' left"]]
    watchdog = "cosy_tts stream 0: nothing produced for 3.0 s (stall timeout 1 s) after 2 chunk(s)"
    section = [("Captured cosyvoice checks call",
                "cosyvoice checks failed:\n  complete: stream 0: ended with watchdog")]
    assert before_after.problems_of(watchdog, section) == [["watchdog", watchdog],
                                                           ["complete", "stream 0: ended with watchdog"]]
    traceback = "    def test():\n>       assert x\nE       AssertionError: streams differ\nE       assert 1 == 2"
    assert before_after.problems_of(traceback, []) == [["failed", "AssertionError: streams differ"]]


def test_the_script_runs_both_engines_on_a_subset(before_after: ModuleType, tmp_path: Path, tiny_v2_dir: Path) -> None:
    doc, raw = tmp_path / "ba.md", tmp_path / "ba.json"
    assert before_after.main(["--model", str(tiny_v2_dir), "-k", "llm-mid-synthesize", "--json", str(raw),
                              "--doc", str(doc)]) == 0
    data = json.loads(raw.read_text(encoding="utf-8"))
    test = "suites/test_faults.py::test_engine_recovers_from_a_fault[llm-mid-synthesize]"
    assert data["runs"]["fixed"]["tests"] == {test: {"outcome": "passed", "problems": []}}
    up = data["runs"]["upstream"]["tests"][test]
    if up["outcome"] == "skipped":
        pytest.skip(f"upstream unusable here: {up['problems']}")
    assert up["outcome"] == "failed" and {"silent result", "thread died"} <= {c for c, _ in up["problems"]}
    assert doc.read_text(encoding="utf-8") == before_after.render(data)
