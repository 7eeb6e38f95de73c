"""Same inputs, same sound: every mode, short and long text, streamed and not, each call seeded by the
quality marker and judged against the goldens saved with --cosy-save-baseline (tokens, token -> wav on
the golden tokens, the call's audio, streamed vs offline render), and DNSMOS/PLCMOS, WER (--cosy-asr)
and speaker similarity as drift from the saved clean runs (see docs/plugin.md, "The quality gate").

The first session on a runner has no goldens: its checks are notes ("no golden for this call"); save
them on a known-good commit with `pytest suites --cosy-save-baseline`, five times to calibrate the scores.
"""
from __future__ import annotations

import pytest

from .inputs import TEXTS, mode_kwargs

MODES = ["sft", "zero_shot", "cross_lingual", "instruct"]
LENGTHS = ["short-en", "long-en"]


@pytest.mark.quality()
@pytest.mark.parametrize("text", LENGTHS)
@pytest.mark.parametrize("mode", MODES)
def test_stream_sounds_the_same(cosy_tts, cosy_model, cosy_prompt, mode: str, text: str) -> None:
    assert list(cosy_tts.stream(TEXTS[text], **mode_kwargs(mode, cosy_model, cosy_prompt)))


@pytest.mark.quality()
@pytest.mark.parametrize("text", LENGTHS)
@pytest.mark.parametrize("mode", MODES)
def test_synthesis_sounds_the_same(cosy_tts, cosy_model, cosy_prompt, mode: str, text: str) -> None:
    assert cosy_tts.synthesize(TEXTS[text], **mode_kwargs(mode, cosy_model, cosy_prompt)).audio.size > 0


@pytest.mark.quality()
def test_voice_conversion_sounds_the_same(cosy_tts, cosy_model, cosy_prompt) -> None:
    assert list(cosy_tts.stream("", **mode_kwargs("vc", cosy_model, cosy_prompt)))
