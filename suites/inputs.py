"""What the suites say and with which voice: texts, and the arguments of a mode on the loaded model."""
from __future__ import annotations

from typing import Any

import pytest

TEXTS = {
    "short-en": "Hello there.",
    "medium-en": "The quick brown fox jumps over the lazy dog, then rests under the old oak tree.",
    "long-en": ("Streaming speech synthesis has to keep up with playback. Every chunk must arrive before the "
                "previous one has finished playing, or the listener hears a gap. This paragraph is long "
                "enough to need several sentences and many chunks."),
    "zh": "你好，欢迎使用语音合成系统。今天天气很好。",
    "mixed": "我们今天用 CosyVoice 做一个 streaming 测试。",
    "numbers": "Call me at 5 5 5, 1 2 3 4 before 10 30 on March 3rd, 2026.",
}


def mode_kwargs(mode: str, model: Any, prompt: Any) -> dict[str, Any]:
    """Arguments of a mode on this model, or a skip with the reason when the model lacks it."""
    if mode == "sft":
        if not model.speakers:
            pytest.skip("sft: the model's spk2info.pt lists no speaker")
        return {"speaker": model.speakers[0]}
    if mode == "zero_shot":
        return {"prompt_wav": prompt.wav, "prompt_text": prompt.text}
    if mode == "cross_lingual":
        return {"prompt_wav": prompt.wav}
    if mode == "instruct":
        if model.version == 1:
            if "instruct" not in model.modes:
                pytest.skip("instruct (v1) needs a CosyVoice-300M-Instruct model (upstream's rule: the "
                            "directory name contains '-Instruct') with a speaker in spk2info.pt")
            return {"speaker": model.speakers[0], "instruct": "Speak slowly and calmly."}
        return {"instruct": "Speak slowly and calmly.", "prompt_wav": prompt.wav}
    if mode == "vc":
        return {"source_wav": prompt.wav, "prompt_wav": prompt.wav}
    raise ValueError(f"unknown mode {mode!r}")


def voice_kwargs(model: Any, prompt: Any) -> dict[str, Any]:
    """A voice every model has: its first speaker, else the zero-shot prompt (CosyVoice2 ships none)."""
    if model.speakers:
        return {"speaker": model.speakers[0]}
    return {"prompt_wav": prompt.wav, "prompt_text": prompt.text}
