"""`cosy_tts` on this project's Runtime: each call's tokens come from its own observer (the LLM is not
wrapped), a test's own observer still hears everything, and `@pytest.mark.stall_timeout` goes with
each request instead of changing the shared runtime's settings."""
from __future__ import annotations

from pathlib import Path

import pytest

INNER = '''
import time

import numpy as np
import pytest
from cosyvoice_runtime import StreamObserver, StreamStalled

TOKENS = [int(x) for x in np.random.default_rng(7).integers(0, 6561, 30)]


class Totals(StreamObserver):
    def __init__(self):
        self.totals = []
        self.chunks = 0

    def on_tokens(self, n_new, total):
        self.totals.append(total)

    def on_chunk(self, chunk):
        self.chunks += 1


@pytest.mark.streaming(prebuffer_ms=600000, max_gap_ms=600000)
def test_tokens_come_from_the_observer(cosy_tts, cosy_model, monkeypatch):
    wrapped = []

    def inference(*args, **kwargs):
        wrapped.append(cosy_model.llm.inference is not inference)   # the test's own, not a counter
        yield from TOKENS
    monkeypatch.setattr(cosy_model.llm, "inference", inference)
    mine = Totals()
    chunks = list(cosy_tts.stream("x", speaker=cosy_tts.speakers[0], observer=mine))
    assert wrapped == [False]
    assert mine.totals[-1] == len(TOKENS) and mine.chunks == len(chunks)
    assert cosy_tts.recordings[0].generated_tokens == sum(c.tokens for c in chunks) == len(TOKENS)


@pytest.mark.stall_timeout(0.5)
def test_the_marker_goes_with_the_request(cosy_tts, cosy_model, monkeypatch):
    def stalling(*args, **kwargs):
        yield from TOKENS[:5]
        time.sleep(2.0)
        yield from TOKENS[5:]
    monkeypatch.setattr(cosy_model.llm, "inference", stalling)
    with pytest.raises(StreamStalled, match=r"no new speech token for 0\\.5 s"):
        list(cosy_tts.stream("x", speaker=cosy_tts.speakers[0]))
    assert cosy_model.settings.stall_timeout_s == 20.0   # --cosy-stall-timeout, untouched


def test_a_bad_observer_is_refused_at_the_call(cosy_tts):
    # The harness chains only real observers: anything else reaches the engine, which refuses it.
    from cosyvoice_runtime import InvalidInput
    with pytest.raises(InvalidInput, match="observer=42"):
        cosy_tts.stream("x", speaker=cosy_tts.speakers[0], observer=42)


def test_the_next_test_waits_with_the_default(cosy_tts, cosy_model, monkeypatch):
    def slow(*args, **kwargs):
        yield from TOKENS[:5]
        time.sleep(1.0)   # past the previous test's 0.5 s, well within the default
        yield from TOKENS[5:]
    monkeypatch.setattr(cosy_model.llm, "inference", slow)
    assert sum(c.tokens for c in cosy_tts.stream("x", speaker=cosy_tts.speakers[0])) == len(TOKENS)
'''


def test_observer_and_per_request_stall_timeout(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "--cosy-stall-timeout=20",
                                "-o", "cosy_allowed_warnings=autocast\n__array_wrap__")
    result.assert_outcomes(passed=4)
