"""Every inference mode the model supports, streamed and not, over short to long texts."""
from __future__ import annotations

import pytest

from .inputs import TEXTS, mode_kwargs
from .limits import LIMITS

MODES = ["sft", "zero_shot", "cross_lingual", "instruct"]


@pytest.mark.streaming(prebuffer_ms=LIMITS.prebuffer_ms, max_gap_ms=LIMITS.max_gap_ms)
@pytest.mark.rtf(max=LIMITS.max_rtf, warmup=1, repeat=LIMITS.rtf_repeat)
@pytest.mark.parametrize("text", list(TEXTS))
@pytest.mark.parametrize("mode", MODES)
def test_stream(cosy_tts, cosy_model, cosy_prompt, mode: str, text: str) -> None:
    kw = mode_kwargs(mode, cosy_model, cosy_prompt)
    chunks = list(cosy_tts.stream(TEXTS[text], **kw))
    assert chunks


@pytest.mark.no_deprecations()
@pytest.mark.parametrize("mode", MODES)
def test_non_stream(cosy_tts, cosy_model, cosy_prompt, mode: str) -> None:
    syn = cosy_tts.synthesize(TEXTS["medium-en"], **mode_kwargs(mode, cosy_model, cosy_prompt))
    assert syn.audio.size > 0


@pytest.mark.streaming(prebuffer_ms=LIMITS.prebuffer_ms, max_gap_ms=LIMITS.max_gap_ms)
def test_voice_conversion(cosy_tts, cosy_model, cosy_prompt) -> None:
    assert list(cosy_tts.stream("", **mode_kwargs("vc", cosy_model, cosy_prompt)))


@pytest.mark.no_deprecations()
@pytest.mark.parametrize("speed", [0.8, 1.25])
def test_speed_change(cosy_tts, cosy_model, cosy_prompt, forced_tokens, speed: float) -> None:
    tokens = forced_tokens(100)  # the same tokens at both speeds
    kw = mode_kwargs("zero_shot", cosy_model, cosy_prompt)
    normal = cosy_tts.synthesize(TEXTS["short-en"], **kw)
    changed = cosy_tts.synthesize(TEXTS["short-en"], speed=speed, **kw)
    assert changed.stats.tokens == normal.stats.tokens == len(tokens)
    assert changed.audio.size == pytest.approx(normal.audio.size / speed, rel=0.05)
