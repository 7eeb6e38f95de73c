"""The end-to-end matrix (run as an inner session by tests/plugin/test_e2e.py): each check of each
marker, failing where the test names it and passing elsewhere."""
import dataclasses
import threading
import time
import warnings

import numpy as np
import pytest

from conftest import forced, on_call
from cosyvoice_runtime import InvalidInput, StreamError, StreamStalled

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
