"""Soak (memory flat over 50 streams), recovery after a producer failure, cold vs warm first chunk."""
from __future__ import annotations

import gc

import psutil
import pytest

from cosyvoice_runtime import StreamError

RSS_BOUND_MB = 64


@pytest.mark.no_deprecations()
def test_fifty_sequential_streams_keep_memory_flat(cosy_model, cosy_prompt, record_property) -> None:
    proc = psutil.Process()
    kw = {"prompt_wav": cosy_prompt.wav, "prompt_text": cosy_prompt.text}
    for _ in range(5):
        list(cosy_model.stream("Warm up.", **kw))
    gc.collect()
    before = proc.memory_info().rss
    cuda_before = _cuda_mem(cosy_model)
    for i in range(50):
        assert list(cosy_model.stream(f"Soak request number {i}.", **kw))
    gc.collect()
    grown_mb = (proc.memory_info().rss - before) / 2**20
    record_property("rss_growth_mb", round(grown_mb, 1))
    assert grown_mb < RSS_BOUND_MB, f"RSS grew {grown_mb:.1f} MB over 50 streams (bound {RSS_BOUND_MB} MB)"
    if cuda_before is not None:
        grown_cuda = (_cuda_mem(cosy_model) - cuda_before) / 2**20
        record_property("cuda_growth_mb", round(grown_cuda, 1))
        assert grown_cuda < RSS_BOUND_MB
    assert cosy_model.active_requests == 0


def _cuda_mem(model) -> int | None:
    import torch

    if model.device.type != "cuda":
        return None
    torch.cuda.synchronize(model.device)
    return torch.cuda.memory_allocated(model.device)


@pytest.mark.streaming(max_gap_ms=1000)
def test_next_request_succeeds_after_a_producer_failure(cosy_tts, cosy_model) -> None:
    spk = cosy_model.speakers[0]

    def broken(*a, **k):
        yield 1
        raise RuntimeError("injected producer failure")

    cosy_model.llm.inference = broken
    try:
        with pytest.raises(StreamError):
            list(cosy_model.stream("This one fails.", speaker=spk))
    finally:
        del cosy_model.llm.inference
    assert list(cosy_tts.stream("This one works.", speaker=spk))


@pytest.mark.first_chunk(max_ms=60_000)
def test_cold_then_warm_first_chunk(cosy_tts, cosy_model, cosy_prompt, record_property) -> None:
    """The first request after load is reported separately from warm ones (rtf.csv / JUnit)."""
    kw = {"prompt_wav": cosy_prompt.wav, "prompt_text": cosy_prompt.text}
    cold = cosy_model.synthesize("Cold start.", **kw).stats.first_chunk_s
    warm = [cosy_model.synthesize("Warm start.", **kw).stats.first_chunk_s for _ in range(3)]
    record_property("cold_first_chunk_ms", round(cold * 1000, 1))
    record_property("warm_first_chunk_ms", round(sorted(warm)[1] * 1000, 1))
    assert list(cosy_tts.stream("Warm stream.", **kw))
