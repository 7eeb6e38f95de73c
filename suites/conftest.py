"""Release-gate suites: run with `pytest suites --cosy-model PATH` (default: the embedded tiny model)."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
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



@dataclass(frozen=True)
class GateLimits:
    """The suites' thresholds. Defaults let the embedded tiny model pass on a 2-core CPU runner; a GPU
    gate tightens them through the environment (see README, "Gate suites")."""

    max_rtf: float = 3.0            # COSY_GATE_MAX_RTF
    max_gap_ms: float = 1000.0      # COSY_GATE_MAX_GAP_MS: worst playback stall of one stream
    prebuffer_ms: float = 2000.0    # COSY_GATE_PREBUFFER_MS
    concurrent_prebuffer_ms: float = 10_000.0  # COSY_GATE_CONCURRENT_PREBUFFER_MS: 4 streams share the device
    max_first_chunk_ms: float = 60_000.0  # COSY_GATE_MAX_FIRST_CHUNK_MS: the cold first request included
    # COSY_GATE_RTF_REPEAT: measured runs per streamed test; the drift rule needs >= 4 a side to be
    # able to call anything significant (docs/reports.md), 10 for reliable detection of a 15 % slowdown.
    rtf_repeat: int = 5

    @classmethod
    def from_env(cls) -> "GateLimits":
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            var = f"COSY_GATE_{name.upper()}"
            raw = os.environ.get(var)
            if raw is None:
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                raise pytest.UsageError(f"{var}={raw!r}: expected a number") from None
            if values[name] < 0:
                raise pytest.UsageError(f"{var}={raw!r}: expected a number >= 0")
            if name == "rtf_repeat" and (values[name] < 1 or values[name] != int(values[name])):
                raise pytest.UsageError(f"{var}={raw!r}: expected a whole number >= 1")
            if name == "rtf_repeat":
                values[name] = int(values[name])
        return cls(**values)


LIMITS = GateLimits.from_env()

# The first request after load is the cold one: the test that measures it runs first.
COLD_TEST = "test_cold_start.py::test_cold_then_warm_first_chunk"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.endswith(COLD_TEST))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Each test starts from the same torch seed, so a run's texts yield comparable token counts."""
    import torch

    torch.manual_seed(0)


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


@pytest.fixture
def forced_tokens(cosy_model: Any) -> Iterator[Callable[[int, int], list[int]]]:
    """Forces the LLM to emit a seeded random token sequence (audio then depends only on the tokens);
    the model's own LLM is put back afterwards."""
    vocab = 4096 if cosy_model.version == 1 else 6561

    def force(n: int, seed: int = 0) -> list[int]:
        tokens = [int(x) for x in np.random.default_rng(seed).integers(0, vocab, n)]

        def inference(*args: Any, **kwargs: Any) -> Iterator[int]:
            yield from tokens
        cosy_model.llm.inference = inference
        return tokens

    yield force
    cosy_model.llm.__dict__.pop("inference", None)
