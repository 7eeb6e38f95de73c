"""Load released CosyVoice model directories and stream speech from them, with the fixes of
upstream's orchestration (see README)."""
from __future__ import annotations

from .errors import CosyVoiceError, InvalidInput, ModelLoadError, StreamError, StreamStalled, TokenLimitExceeded
from .limits import DEFAULT_STALL_TIMEOUT_S, MAX_TEXT_CHARS, check_device, check_timeout
from .types import Chunk, StreamStats, Synthesis

__all__ = [
    "DEFAULT_STALL_TIMEOUT_S", "MAX_TEXT_CHARS", "Chunk", "CosyVoiceError", "InvalidInput", "ModelLoadError",
    "Runtime", "StreamError", "StreamStalled", "StreamStats", "Synthesis", "TokenLimitExceeded", "check_device",
    "check_timeout", "load",
]


def __getattr__(name: str):
    # torch and the upstream classes load only when a model is loaded.
    if name in ("load", "Runtime"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(name)
