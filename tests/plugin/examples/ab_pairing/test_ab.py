import pytest

STREAMED = "Hello there."
SYNTHESIZED = "Good morning."


@pytest.mark.rtf(max=1000, repeat=2)
def test_streamed(cosy_tts):
    list(cosy_tts.stream(STREAMED, speaker=cosy_tts.speakers[0]))


@pytest.mark.rtf(max=1000)
def test_synthesized(cosy_tts):
    cosy_tts.synthesize(SYNTHESIZED, speaker=cosy_tts.speakers[0], speed=1.0)


@pytest.mark.rtf(max=1000, warmup=0)
def test_zz_dead_base(dead_base, cosy_tts):
    cosy_tts.synthesize(SYNTHESIZED, speaker=cosy_tts.speakers[0])
