"""The first request after load (cold) is reported separately from warm ones."""
from __future__ import annotations

import pytest

from pytest_cosyvoice.stats import median

from .limits import LIMITS


@pytest.mark.first_chunk(max_ms=LIMITS.max_first_chunk_ms)
def test_cold_then_warm_first_chunk(cosy_tts, cosy_prompt, record_property) -> None:
    """Runs first in the session (see conftest): its first stream is the model's first request. The
    report marks this test `cold`; its first-chunk figures land in JUnit as cold_/warm_first_chunk_ms."""
    kw = {"prompt_wav": cosy_prompt.wav, "prompt_text": cosy_prompt.text}
    for _ in range(4):
        assert list(cosy_tts.stream("Cold start, then warm ones.", **kw))
    cold, *warm = cosy_tts.recordings
    assert cold.cold and not any(r.cold for r in warm), "the first stream of the session must be the cold one"
    record_property("cold_first_chunk_ms", round(cold.arrivals_s[0] * 1000, 1))
    record_property("warm_first_chunk_ms", round(median(r.arrivals_s[0] for r in warm) * 1000, 1))
