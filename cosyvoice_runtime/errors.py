"""Errors raised by the runtime. Every one names the value at fault and what was expected."""
from __future__ import annotations


class CosyVoiceError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelLoadError(CosyVoiceError):
    """The model directory is missing a file, or a file is not what the yaml expects."""


class InvalidInput(CosyVoiceError, ValueError):
    """Arguments of a request that cannot be synthesised (wrong mode combination, bad audio)."""


class StreamError(CosyVoiceError):
    """The token producer (LLM) failed; ``__cause__`` is the original exception.

    Raised in the consumer after every chunk that could be rendered was yielded.
    """


class StreamStalled(StreamError):
    """No new token arrived for ``stall_timeout_s`` seconds while the producer was still running."""


class TokenLimitExceeded(StreamError):
    """The LLM went past the length cap for the text it was given (see ``limits.token_cap``) without
    ending the utterance; the chunks up to the cap were yielded first."""


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: how an error message names a value that may be huge
    (a whole text, an array)."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."
