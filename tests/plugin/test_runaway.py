"""Through the plugin: a runaway generation (text as an iterator in zero-shot mode on the embedded
model, upstream's uncapped bistream loop) fails its test with the runtime's named error instead of
running until the watchdog, and the test after it runs normally."""
from __future__ import annotations

from pathlib import Path

import pytest


def test_runaway_bistream_fails_the_test_with_a_named_error(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makepyfile("""
        import pytest

        def test_runaway(cosy_tts, cosy_model, cosy_prompt):
            real = cosy_model.llm.inference_bistream

            def guarded(*args, **kwargs):  # without a cap this test would hang: fail it instead
                for i, tok in enumerate(real(*args, **kwargs)):
                    if i == 5000:
                        raise RuntimeError("no length cap: 5000 tokens")
                    yield tok

            cosy_model.llm.inference_bistream = guarded
            try:
                cosy_tts.synthesize(iter(["Hello ", "there, ", "in pieces."]), prompt_wav=cosy_prompt.wav,
                                    prompt_text=cosy_prompt.text)
            finally:
                cosy_model.llm.inference_bistream = real

        def test_after(cosy_tts):
            assert cosy_tts.synthesize("Hello.", speaker=cosy_tts.speakers[0]).audio.size > 0
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "--cosy-stall-timeout=60")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*TokenLimitExceeded: request *: the LLM generated more than 500 speech tokens for "
                                 "* text tokens without ending the utterance*"])
