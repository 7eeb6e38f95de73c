"""End to end: each check of each marker fails when it should and passes when it should, on the
tiny v2 model with injected faults. One inner pytest session (inline) runs the whole matrix
(tests/plugin/examples/e2e_matrix, copied by `pytester.copy_example`); the outer tests read its
outcomes, messages and recorded figures.

Pass/fail never depends on timings except through the markers' own thresholds, chosen with wide
margins: the passing streams get a 1 s prebuffer (the tiny model renders a 0.84 s first chunk and
the next within ~0.3 s), the slowed flow sleeps 3 s.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

EXPECTED_FAILED_CHECKS = {
    "test_stream_and_synthesize_pass": [],
    "test_zero_shot_with_default_prompt_passes": [],
    "test_forced_tokens_stream_passes": [],
    "test_closed_stream_is_not_incomplete": [],
    "test_invalid_arguments_raise_as_from_the_runtime": [],
    "test_llm_exception_fails_complete": ["complete"],
    "test_llm_exception_uncaught": ["complete"],
    "test_llm_stall_fails_complete": ["complete"],
    "test_slow_flow_fails_gap_free": ["gap-free"],
    "test_nan_chunk_fails_sound": ["sound"],
    "test_spliced_click_fails_sound": ["sound"],
    "test_future_warning_fails_clean": ["clean"],
    "test_future_warning_allowed_by_marker": [],
    "test_leaked_thread_fails_tidy": ["tidy"],
    "test_concurrent_streams_pass": [],
    "test_voice_conversion_passes_complete": [],
    "test_rtf_repeat_records_rounds": [],
    "test_rtf_bound_fails": ["rtf"],
    "test_first_chunk_bound_fails": ["first_chunk"],
}


def test_fault_matrix(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.copy_example("e2e_matrix")   # tests/plugin/examples/e2e_matrix: conftest.py, test_matrix.py
    pytester.makeini("[pytest]\ncosy_allowed_warnings =\n    allowed by ini\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--junitxml=junit.xml")
    figures = json.loads((pytester.path / "figures.json").read_text())

    result.assert_outcomes(passed=10, failed=12)
    # Tests without a cosy_tts call (no_deprecations alone) carry no figures.
    assert not any("no_deprecations" in n for n in figures["figures"])
    got = {nodeid.split("::")[1]: f["failed_checks"] for nodeid, f in figures["figures"].items()}
    assert {k: got.get(k) for k in EXPECTED_FAILED_CHECKS} == EXPECTED_FAILED_CHECKS
    check_messages(result)
    check_uncaught_error_section(result.stdout.str())
    check_streams(figures)
    check_junit((pytester.path / "junit.xml").read_text())


def check_messages(result: pytest.RunResult) -> None:
    result.stdout.fnmatch_lines_random([
        "*complete: stream 0: ended with StreamError after 1 chunk(s): *injected LLM failure",
        "*complete: stream 0: ended with StreamStalled after 1 chunk(s): *",
        "*gap-free: stream 0: playback stalled * ms at chunk 1 of 3 (max_gap_ms=0, prebuffer_ms=300); "
        "a prebuffer of * ms would have been needed; first chunk after * ms",
        "*sound: stream 0: chunk 1 has * non-finite sample(s) (NaN *, Inf 0) from sample *",
        "*sound: stream 0: click at the join into chunk 1 (sample *): jump * is *x the largest jump within 5 ms "
        "(max_click_ratio=3)",
        "*clean: FutureWarning: injected deprecation at */conftest.py:* (thread cosyvoice-llm-*) [[]x2]",
        "*clean: DeprecationWarning: old_api() is deprecated at */test_matrix.py:* (thread worker) [[]x2]",
        "*tidy: stream 0: thread(s) started by the call still alive after it: leaky-helper",
        "*rtf: real-time factor * > max 1e-06 (rounds: *; wall time / audio seconds after 0 warm-up run(s))",
        "*first_chunk: stream 0: first chunk after * ms > max_ms 0.001",
        "*cosy_tts stream 0: nothing produced for * s (stall timeout 1 s) after 1 chunk(s); waited * s in all; "
        "reader thread 'cosy-tts-reader-*' abandoned inside the engine",
    ])


def check_uncaught_error_section(text: str) -> None:
    # The test's own StreamError keeps its traceback; the checks come as a report section.
    section = text.split("_ test_llm_exception_uncaught _", 1)[1].split("\n____", 1)[0]
    assert "cosyvoice_runtime.errors.StreamError" in section
    assert "cosyvoice checks call" in section and "complete: stream 0: ended with StreamError" in section


def check_streams(figures: dict[str, Any]) -> None:
    by_test: dict[str, list[dict[str, Any]]] = {}
    for s in figures["streams"]:
        by_test.setdefault(s["nodeid"].split("::")[1], []).append(s)
    # rtf(warmup=1, repeat=3): three measured rounds in the figures, the warm-up is not recorded; the
    # report keeps one passing stream per test (the first) and every failing one.
    assert [s["label"] for s in by_test["test_rtf_repeat_records_rounds"]] == ["stream 0"]
    fig = figures["figures"]["test_matrix.py::test_rtf_repeat_records_rounds"]
    assert len(fig["rtf"]) == 3 and len(fig["first_chunk_ms"]) == 3 and len(fig["worst_gap_ms"]) == 3
    assert [s["label"] for s in by_test["test_stream_and_synthesize_pass"]] == ["stream 0"]
    assert all(s["audio"] > 0 for s in by_test["test_stream_and_synthesize_pass"])
    assert by_test["test_llm_exception_fails_complete"][0]["outcome"] == "StreamError"
    assert len(by_test["test_concurrent_streams_pass"]) == 1
    assert [s["outcome"] for s in by_test["test_closed_stream_is_not_incomplete"]] == ["closed"]
    assert "test_invalid_arguments_raise_as_from_the_runtime" not in by_test   # refused calls made no stream
    assert by_test["test_spliced_click_fails_sound"][0]["click_joins"] == [1]
    assert by_test["test_spliced_click_fails_sound"][0]["failed"] is True
    assert by_test["test_watchdog_fails_a_hung_engine"][0]["outcome"] == "watchdog"
    fig = figures["figures"]["test_matrix.py::test_stream_and_synthesize_pass"]
    assert fig["outcome"] == "passed" and fig["engine"] == "fixed" and fig["cold"] is True
    assert figures["figures"]["test_matrix.py::test_rtf_bound_fails"]["outcome"] == "failed"


def check_junit(xml: str) -> None:
    import xml.etree.ElementTree as ET

    cases = {c.get("name"): c for c in ET.fromstring(xml).iter("testcase")}
    props = {p.get("name"): float(p.get("value")) for p in cases["test_rtf_repeat_records_rounds"].iter("property")}
    assert set(props) == {"rtf", "first_chunk_ms", "worst_gap_ms"}
    assert props["rtf"] > 0 and props["first_chunk_ms"] > 0
    gap = {p.get("name"): float(p.get("value")) for p in cases["test_slow_flow_fails_gap_free"].iter("property")}
    assert gap["worst_gap_ms"] > 0
