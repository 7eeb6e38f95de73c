"""4 streams at once: each gap-free and with the chunk schedule it gets alone."""
from __future__ import annotations

import threading
from typing import Any

import pytest

from .inputs import voice_kwargs
from .limits import LIMITS

STREAMS = 4


@pytest.mark.streaming(prebuffer_ms=LIMITS.concurrent_prebuffer_ms, max_gap_ms=LIMITS.max_gap_ms)
def test_four_concurrent_streams_keep_the_solo_schedule(cosy_tts, cosy_model, cosy_prompt, forced_tokens) -> None:
    forced_tokens(200)
    kw = voice_kwargs(cosy_model, cosy_prompt)
    solo = [(c.tokens, c.audio.size) for c in cosy_tts.stream("x", **kw)]
    out: dict[int, Any] = {}

    def run(i: int) -> None:
        try:
            out[i] = [(c.tokens, c.audio.size) for c in cosy_tts.stream("x", **kw)]
        except BaseException as e:  # noqa: BLE001 - reported below; the watchdog's failure included
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,), name=f"suite-stream-{i}") for i in range(STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(cosy_tts.watchdog_s * 10)
    assert sorted(out) == list(range(STREAMS)), f"streams still running: {sorted(set(range(STREAMS)) - set(out))}"
    problems = [f"stream {i}: {type(out[i]).__name__}: {out[i]}" for i in range(STREAMS)
                if isinstance(out[i], BaseException)]
    problems += [f"stream {i}: (tokens, samples) per chunk {out[i]} differ from solo {solo}" for i in range(STREAMS)
                 if not isinstance(out[i], BaseException) and out[i] != solo]
    assert not problems, "\n".join(problems)
