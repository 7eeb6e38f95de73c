"""4 streams at once: each completes with the chunk schedule it gets alone."""
from __future__ import annotations

import threading

import numpy as np


def test_four_concurrent_streams_keep_the_solo_schedule(cosy_model) -> None:
    vocab = 4096 if cosy_model.version == 1 else 6561
    tokens = [int(x) for x in np.random.default_rng(1).integers(0, vocab, 200)]

    def forced(*a, **k):
        yield from tokens

    spk = cosy_model.speakers[0]
    cosy_model.llm.inference = forced
    try:
        solo = [(c.tokens, c.audio.size) for c in cosy_model.stream("x", speaker=spk)]
        out: dict[int, object] = {}

        def run(i: int) -> None:
            try:
                out[i] = [(c.tokens, c.audio.size) for c in cosy_model.stream("x", speaker=spk)]
            except Exception as e:  # noqa: BLE001 - reported below
                out[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        del cosy_model.llm.inference
    assert all(out[i] == solo for i in range(4)), out
