"""Load released CosyVoice model directories and stream speech from them, with the fixes of
upstream's orchestration (see README): `load` -> `Runtime` (stream, synthesize, render, score_tokens,
plan), the request checks and limits, per-request seeding, observers, the embedded tiny models
(`tiny`), and what the plugin needs publicly (`files`: cross-process lock and atomic write; `audio`:
prompt audio and the byte form of float32 samples). torch loads only with a model."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import CosyVoiceError, InvalidInput, ModelLoadError, StreamError, StreamStalled, TokenLimitExceeded
from .limits import DEFAULT_STALL_TIMEOUT_S, MAX_TEXT_CHARS, check_device, check_seed, check_timeout, resolve_auto
from .observer import StreamObserver
from .rates import token_rate
from .types import Chunk, StreamStats, Synthesis

if TYPE_CHECKING:  # type checkers see the lazy names below with their real types
    from .requests import Plan
    from .runtime import Runtime, load
    from .scoring import TokenScores

__all__ = [
    "DEFAULT_STALL_TIMEOUT_S", "MAX_TEXT_CHARS", "Chunk", "CosyVoiceError", "InvalidInput", "ModelLoadError", "Plan",
    "Runtime", "StreamError", "StreamObserver", "StreamStalled", "StreamStats", "Synthesis", "TokenLimitExceeded",
    "TokenScores", "check_device", "check_seed", "check_timeout", "load", "resolve_auto", "token_rate",
]


def __getattr__(name: str) -> Any:
    # torch and the upstream classes load only when a model is loaded.
    if name in ("load", "Runtime"):
        from . import runtime

        return getattr(runtime, name)
    if name == "TokenScores":
        from . import scoring

        return scoring.TokenScores
    if name == "Plan":
        from . import requests

        return requests.Plan
    raise AttributeError(name)
