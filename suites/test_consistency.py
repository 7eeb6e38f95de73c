"""Stream vs non-stream: the same tokens give the same duration."""
from __future__ import annotations

import pytest

from .inputs import voice_kwargs


@pytest.mark.no_deprecations()
def test_stream_and_non_stream_durations_agree(cosy_tts, cosy_model, cosy_prompt, forced_tokens) -> None:
    # Samples need not match (upstream's causal streaming flow differs from its offline pass); lengths must.
    tokens = forced_tokens(150)
    kw = voice_kwargs(cosy_model, cosy_prompt)
    chunks = list(cosy_tts.stream("x", **kw))
    whole = cosy_tts.synthesize("x", **kw)
    assert sum(c.tokens for c in chunks) == len(tokens) == whole.stats.tokens
    streamed = sum(c.audio.size for c in chunks)
    frame = cosy_tts.sample_rate // (50 if cosy_tts.version == 1 else 25)  # samples per token
    assert abs(streamed - whole.audio.size) <= frame, (streamed, whole.audio.size)
