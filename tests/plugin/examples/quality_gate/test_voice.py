import pytest


@pytest.mark.quality()
def test_stream(cosy_tts, cosy_prompt):
    assert list(cosy_tts.stream("Hello there.", prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text))


@pytest.mark.quality()
def test_synthesize(cosy_tts, cosy_prompt):
    assert cosy_tts.synthesize("Hello there.", prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text).audio.size


@pytest.mark.quality()
def test_own_seed_is_kept(cosy_tts, cosy_prompt):
    assert list(cosy_tts.stream("Hello there.", prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text, seed=5))
    assert cosy_tts.recordings[-1].seed == 5
