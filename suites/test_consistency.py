"""Stream vs non-stream: same duration for the same tokens, audio equal where upstream's is."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.no_deprecations()
def test_stream_and_non_stream_durations_agree(cosy_model) -> None:
    vocab = 4096 if cosy_model.version == 1 else 6561
    tokens = [int(x) for x in np.random.default_rng(0).integers(0, vocab, 150)]

    def forced(*a, **k):
        yield from tokens

    spk = {"speaker": cosy_model.speakers[0]} if cosy_model.speakers else None
    if spk is None:
        pytest.skip("needs a speaker in spk2info.pt")
    cosy_model.llm.inference = forced
    try:
        streamed = sum(c.audio.size for c in cosy_model.stream("x", **spk))
        whole = cosy_model.synthesize("x", **spk).audio.size
    finally:
        del cosy_model.llm.inference
    frame = 256 if cosy_model.version == 1 else 480
    assert abs(streamed - whole) <= 8 * frame
