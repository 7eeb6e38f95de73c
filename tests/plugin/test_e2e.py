"""End to end: each check of each marker fails when it should and passes when it should, on the
tiny v2 model with injected faults. One inner pytest session (inline) runs the whole matrix; the
outer tests read its outcomes, messages and recorded figures.

Pass/fail never depends on timings except through the markers' own thresholds, chosen with wide
margins: the passing streams get a 1 s prebuffer (the tiny model renders a 0.84 s first chunk and
the next within ~0.3 s), the slowed flow sleeps 3 s.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


# The inner session's conftest: fault injectors and a dump of the recorded figures.
INNER_CONFTEST = '''
import dataclasses, json, threading, time, warnings
import numpy as np
import pytest
from pytest_cosyvoice.plugin import get_session

TOKENS = [int(x) for x in np.random.default_rng(7).integers(0, 6561, 140)]   # speaker mode: chunks of 25, 50, 65


def forced(fail_after=None, stall_after=None, warn=False):
    """An LLM stand-in yielding TOKENS (the real flow and HiFT render them)."""
    def inference(*args, **kwargs):
        for i, tok in enumerate(TOKENS):
            if i == fail_after:
                raise RuntimeError("injected LLM failure")
            if i == stall_after:
                time.sleep(3.0)
            if warn and i in (3, 4):
                warnings.warn("injected deprecation", FutureWarning)   # from the producer thread
            yield tok
    return inference


def on_call(fn, k, action):
    """Wraps fn so that action(result or None) runs around its k-th call (1-based)."""
    calls = []
    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == k:
            return action(fn, args, kwargs)
        return fn(*args, **kwargs)
    return wrapper


@pytest.fixture
def speaker(cosy_tts):
    return {"speaker": cosy_tts.speakers[0]}


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    figures, streams = get_session(session.config).results()
    out = {"figures": {f.nodeid: f.to_json() for f in figures},
           "streams": [{"nodeid": s.nodeid, "label": s.trace.label, "chunks": len(s.trace.chunk_samples),
                        "outcome": s.trace.outcome, "failed": s.failed, "click_joins": s.trace.click_joins,
                        "audio": 0 if s.audio is None else int(s.audio.size)} for s in streams]}
    (session.config.rootpath / "figures.json").write_text(json.dumps(out, indent=1, sort_keys=True))
'''

INNER_TESTS = '''
import dataclasses, threading, time, warnings
import numpy as np
import pytest
from cosyvoice_runtime import InvalidInput, StreamError, StreamStalled
from conftest import TOKENS, forced, on_call

TEXT = "Hello there, this is a test of streaming speech."
LENIENT = pytest.mark.streaming(prebuffer_ms=1000)


@LENIENT
@pytest.mark.first_chunk(max_ms=120000)
def test_stream_and_synthesize_pass(cosy_tts, speaker):
    chunks = list(cosy_tts.stream(TEXT, **speaker))
    assert len(chunks) >= 1 and all(c.sample_rate == cosy_tts.sample_rate for c in chunks)
    assert cosy_tts.synthesize("Short.", speed=1.5, **speaker).audio.size


@LENIENT
def test_zero_shot_with_default_prompt_passes(cosy_tts, cosy_prompt):
    list(cosy_tts.stream(TEXT, prompt_wav=str(cosy_prompt.wav), prompt_text=cosy_prompt.text))


@LENIENT
def test_forced_tokens_stream_passes(cosy_tts, cosy_model, speaker, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced())
    assert [c.tokens for c in cosy_tts.stream("x", **speaker)] == [25, 50, 65]


@LENIENT
def test_closed_stream_is_not_incomplete(cosy_tts, cosy_model, speaker, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced())
    for chunk in cosy_tts.stream("x", **speaker):
        break   # the test walks away; the runtime's producer must stop (tidy) and that is no failure


@LENIENT
def test_invalid_arguments_raise_as_from_the_runtime(cosy_tts):
    with pytest.raises(InvalidInput):
        cosy_tts.stream("x")            # no speaker, no prompt: no mode
    with pytest.raises(InvalidInput):
        cosy_tts.synthesize("x", speaker="nobody", speed=9)


@LENIENT
def test_llm_exception_fails_complete(cosy_tts, cosy_model, speaker, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced(fail_after=40))
    with pytest.raises(StreamError):
        list(cosy_tts.stream("x", **speaker))


@LENIENT
def test_llm_exception_uncaught(cosy_tts, cosy_model, speaker, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced(fail_after=40))
    list(cosy_tts.stream("x", **speaker))


@LENIENT
@pytest.mark.stall_timeout(1)
def test_llm_stall_fails_complete(cosy_tts, cosy_model, speaker, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced(stall_after=30))
    with pytest.raises(StreamStalled):
        list(cosy_tts.stream("x", **speaker))


@pytest.mark.streaming(prebuffer_ms=300)
def test_slow_flow_fails_gap_free(cosy_tts, cosy_model, speaker, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced())
    slow = lambda fn, a, k: (time.sleep(3.0), fn(*a, **k))[1]
    monkeypatch.setattr(cosy_model.flow, "inference", on_call(cosy_model.flow.inference, 2, slow))
    list(cosy_tts.stream("x", **speaker))


@LENIENT
def test_nan_chunk_fails_sound(cosy_tts, cosy_model, speaker, monkeypatch):
    def nan(fn, a, k):
        speech, source = fn(*a, **k)
        speech = speech.clone()
        speech[..., 2000] = float("nan")
        return speech, source
    monkeypatch.setattr(cosy_model.llm, "inference", forced())
    monkeypatch.setattr(cosy_model.hift, "inference", on_call(cosy_model.hift.inference, 2, nan))
    list(cosy_tts.stream("x", **speaker))


@LENIENT
def test_spliced_click_fails_sound(cosy_tts, cosy_model, speaker, monkeypatch):
    real = cosy_model.stream
    def clicky(*args, **kwargs):
        import dataclasses
        for c in real(*args, **kwargs):
            if c.index == 1:   # a decaying step at the join, as a missing cross-fade sounds
                n = min(480, c.audio.size)
                audio = c.audio.copy()
                audio[:n] += 0.5 * np.exp(-np.arange(n) / 48.0).astype(np.float32)
                c = dataclasses.replace(c, audio=audio)
            yield c
    monkeypatch.setattr(cosy_model.llm, "inference", forced())
    monkeypatch.setattr(cosy_model, "stream", clicky)
    list(cosy_tts.stream("x", **speaker))


@LENIENT
def test_future_warning_fails_clean(cosy_tts, cosy_model, speaker, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced(warn=True))
    list(cosy_tts.stream("x", **speaker))


@pytest.mark.streaming(prebuffer_ms=1000, allow_warnings=[r"injected deprecation"])
def test_future_warning_allowed_by_marker(cosy_tts, cosy_model, speaker, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced(warn=True))
    list(cosy_tts.stream("x", **speaker))


@pytest.mark.no_deprecations
def test_no_deprecations_sees_every_repeat_in_any_thread():
    def old_api():
        warnings.warn("old_api() is deprecated", DeprecationWarning)
    t = threading.Thread(target=lambda: [old_api() for _ in range(2)], name="worker")
    t.start()
    t.join()


@pytest.mark.no_deprecations(allow=["allowed by ini"])
def test_no_deprecations_allowed_by_ini_and_marker():
    warnings.warn("this one is allowed by ini", PendingDeprecationWarning)
    warnings.warn("allowed by ini too", FutureWarning)


@LENIENT
def test_leaked_thread_fails_tidy(cosy_tts, cosy_model, speaker, monkeypatch):
    def leak(fn, a, k):
        threading.Thread(target=time.sleep, args=(4.0,), name="leaky-helper", daemon=True).start()
        return fn(*a, **k)
    monkeypatch.setattr(cosy_model.flow, "inference", on_call(cosy_model.flow.inference, 1, leak))
    list(cosy_tts.stream(TEXT, **speaker))


@LENIENT
def test_concurrent_streams_pass(cosy_tts, cosy_model, speaker, monkeypatch):
    # Each stream's caller thread and the other streams' readers are not threads a stream leaked.
    monkeypatch.setattr(cosy_model.llm, "inference", forced())
    out = []
    threads = [threading.Thread(target=lambda: out.append(len(list(cosy_tts.stream("x", **speaker)))),
                                name=f"caller-{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert out == [3, 3, 3]


@LENIENT
def test_voice_conversion_passes_complete(cosy_tts, cosy_prompt):
    # vc takes its tokens from the source audio, not the LLM: the LLM's count of 0 is no gap.
    assert list(cosy_tts.stream("", source_wav=str(cosy_prompt.wav), prompt_wav=str(cosy_prompt.wav)))


@pytest.mark.rtf(max=100.0, warmup=1, repeat=3)
def test_rtf_repeat_records_rounds(cosy_tts, speaker):
    list(cosy_tts.stream("Hello.", **speaker))


@pytest.mark.rtf(max=1e-6, warmup=0)
def test_rtf_bound_fails(cosy_tts, speaker):
    cosy_tts.synthesize("Hello.", **speaker)


@pytest.mark.first_chunk(max_ms=0.001)
def test_first_chunk_bound_fails(cosy_tts, speaker):
    list(cosy_tts.stream("Hello.", **speaker))


@pytest.mark.stall_timeout(1)
def test_watchdog_fails_a_hung_engine(cosy_tts, cosy_model, speaker, monkeypatch):
    # The watchdog allows for the runtime's producer join; shorten it so the test stays short.
    monkeypatch.setattr(cosy_model, "settings", dataclasses.replace(cosy_model.settings, join_timeout_s=0.5))
    hang = lambda fn, a, k: (time.sleep(6.0), fn(*a, **k))[1]   # rendering stuck; no token, no chunk
    monkeypatch.setattr(cosy_model.llm, "inference", forced())
    monkeypatch.setattr(cosy_model.flow, "inference", on_call(cosy_model.flow.inference, 2, hang))
    list(cosy_tts.stream("x", **speaker))
'''

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
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_matrix=INNER_TESTS)
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
