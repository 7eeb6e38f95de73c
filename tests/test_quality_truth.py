"""benchmarks/quality_truth.py's bookkeeping, on synthetic quality.json content: which check failed in
how many of the tests where it was judged, per defect (over the tests it affects) and over the clean
reruns; the sessions' command lines; the results folder it rebuilds the matrix from."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.quality_truth import (
    Session,
    affected,
    build_matrix,
    costs,
    main,
    pytest_cmd,
    read_quality,
    render_matrix,
    save,
    tally,
)


def check(name: str, status: str, call: str = "synthesize-0") -> dict[str, Any]:
    return {"name": name, "call": call, "status": status, "figure": 1.0, "limit": 2.0, "text": f"{name} {status}"}


def quality(tests: dict[str, list[dict[str, Any]]], seconds: float = 0.5) -> dict[str, Any]:
    return {"schema": 1, "tests": {n: {"status": "x", "checks": c, "scores": {}, "seconds": seconds}
                                   for n, c in tests.items()}}


# Two streamed tests and one not; token2wav fails in one call of the first and passes in its other.
DEFECT_RUN = quality({
    "suites/test_quality.py::test_stream[short]": [check("token2wav", "fail", "stream-0"),
                                                   check("token2wav", "pass", "stream-1"),
                                                   check("streamed_vs_offline", "fail", "stream-0"),
                                                   check("dnsmos", "note", "stream-0")],
    "suites/test_quality.py::test_stream[long]": [check("token2wav", "pass", "stream-0"),
                                                  check("streamed_vs_offline", "pass", "stream-0")],
    "suites/test_quality.py::test_synthesize[short]": [check("token2wav", "fail"), check("audio", "fail")],
})
CLEAN_RUN = quality({
    "suites/test_quality.py::test_stream[short]": [check("token2wav", "pass", "stream-0")],
    "suites/test_quality.py::test_synthesize[short]": [check("token2wav", "pass"), check("wer", "note")],
})


def test_tally_counts_tests_not_calls_and_notes_are_not_judged() -> None:
    counts = tally(DEFECT_RUN)
    assert counts["token2wav"] == (2, 3)          # failed in two tests (one of them in one call of two)
    assert counts["streamed_vs_offline"] == (1, 2)
    assert counts["audio"] == (1, 1)
    assert counts["dnsmos"] == (0, 0)             # only a note: not judged
    assert counts["any"] == (2, 3)
    only = {"suites/test_quality.py::test_stream[long]"}
    assert tally(DEFECT_RUN, only)["any"] == (0, 1)


def test_the_matrix_judges_join_defects_on_streamed_tests_and_sums_the_clean_reruns() -> None:
    sessions = [Session("calibrate-1", "calibrate", 0, 10.0, quality=CLEAN_RUN),
                Session("clean-1", "clean", 0, 9.0, quality=CLEAN_RUN),
                Session("clean-2", "clean", 1, 11.0, quality=quality({
                    "suites/test_quality.py::test_stream[short]": [check("token2wav", "fail", "stream-0")]})),
                Session("joins-click", "defect", 1, 12.0, "joins-click", DEFECT_RUN),
                Session("flow-fp16", "defect", 1, 12.0, "flow-fp16", DEFECT_RUN)]
    rows = {r.label: r for r in build_matrix(sessions, "tiny")}
    assert list(rows) == ["joins-click", "flow-fp16", "clean"]
    # joins: the two streamed tests only; named streamed_vs_offline failed in one of them.
    assert rows["joins-click"].counts["any"] == (1, 2) and rows["joins-click"].caught == (1, 2)
    assert rows["flow-fp16"].counts["token2wav"] == (2, 3) and rows["flow-fp16"].caught == (2, 3)
    assert rows["clean"].counts["token2wav"] == (1, 3) and rows["clean"].counts["any"] == (1, 3)
    assert rows["clean"].sessions == 2 and rows["clean"].exit_codes == [0, 1]
    text = render_matrix(list(rows.values()), "tiny")
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert lines["joins-click"].startswith("| joins-click | - | 1/2 | - | 1/2 | - | - | - | - | 1/2 |")
    assert "streamed_vs_offline: 1/2 (50%, MISSED)" in lines["joins-click"]
    assert "token2wav: 2/3 (67%, MISSED)" in lines["flow-fp16"]
    assert "1 false failure(s) in 2 session(s), exit codes [0, 1]" in lines["clean"]
    assert "- clean: 2 session(s), wall 10.0 s mean; quality checks 0.50 s per test" in costs(sessions)


def test_a_session_without_quality_json_is_said_not_counted_clean() -> None:
    rows = build_matrix([Session("clean-1", "clean", 4, 1.0, error="quality.json: missing")], "tiny")
    assert "0 false failure(s) in 1 session(s), exit codes [4]; 1 session(s) without quality.json" in \
        render_matrix(rows, "tiny")


def test_a_defect_caught_everywhere_is_marked_ok() -> None:
    run = quality({f"t::test_synthesize[{i}]": [check("tokens", "fail")] for i in range(20)})
    (row,) = build_matrix([Session("llm-top-k", "defect", 1, 1.0, "llm-top-k", run)], "tiny")
    assert "tokens: 20/20 (100%, ok)" in render_matrix([row], "tiny")


@pytest.mark.parametrize(("content", "says"), [(None, "missing"), ("{not json", "not readable as JSON"),
                                               ('{"schema": 2, "tests": {}}', "expected {'schema': 1")])
def test_read_quality_names_the_file_and_the_fault(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "quality.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=says) as err:
        read_quality(path)
    assert str(path) in str(err.value)


def test_every_session_of_an_engine_runs_the_same_command_but_the_save(tmp_path: Path) -> None:
    tiny = pytest_cmd("tiny", tmp_path, tmp_path / "r", save=True, select="short", asr="")
    assert tiny[tiny.index("-p", tiny.index("no:cacheprovider")) + 1] == "inject"
    assert "--cosy-save-baseline" in tiny and tiny[-2:] == ["-k", "short"]
    speaking = pytest_cmd("speaking", tmp_path, tmp_path / "r", save=False, select="", asr="pocketsphinx")
    assert "--cosy-engine=benchmarks.defective_engine:build" in speaking and "--cosy-asr=pocketsphinx" in speaking
    assert "--cosy-save-baseline" not in speaking and "inject" not in speaking


def test_matrix_only_rebuilds_from_the_results_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save(Session("clean-1", "clean", 0, 9.0, quality=CLEAN_RUN), tmp_path)
    save(Session("speaker-swapped", "defect", 1, 9.0, "speaker-swapped", DEFECT_RUN), tmp_path)
    assert main(["--engine", "speaking", "--out", str(tmp_path), "--matrix-only"]) == 0
    written = (tmp_path / "matrix.md").read_text()
    assert written in capsys.readouterr().out
    assert "| speaker-swapped |" in written and "audio: 1/3 (33%, MISSED)" in written
    assert json.loads((tmp_path / "clean-1.json").read_text())["quality"] == CLEAN_RUN


def test_a_defect_that_does_not_apply_to_the_engine_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--engine", "speaking", "--defects", "flow-fp16", "--matrix-only"])
    assert e.value.code == 2
    assert "--defects flow-fp16: not a defect of engine 'speaking'" in capsys.readouterr().err


def test_a_defect_does_not_count_on_tests_it_cannot_reach_on_that_engine() -> None:
    quality = {"tests": {"suites/test_quality.py::test_voice_conversion_sounds_the_same": {"checks": []},
                         "suites/test_quality.py::test_stream_sounds_the_same[sft-short-en]": {"checks": []}}}
    assert affected("speaker-swapped", quality, "speaking") == {
        "suites/test_quality.py::test_stream_sounds_the_same[sft-short-en]"}
    assert len(affected("speaker-swapped", quality, "tiny")) == 2
    # Voice conversion's tokens come from its source recording: LLM sampling never reaches it.
    assert affected("llm-top-k", quality, "tiny") == affected("speaker-swapped", quality, "speaking")
