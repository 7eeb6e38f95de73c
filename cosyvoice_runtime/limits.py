"""Limits every request is held to, and the one validator of timeouts the runtime, its CLI and the
pytest plugin share (so "finite, positive, at most a day" is written once)."""
from __future__ import annotations

import math
import numbers

from .errors import InvalidInput

# A timeout must fit threading's waits (OverflowError above threading.TIMEOUT_MAX, ~292 years) and mean
# something: no token for a day is a dead stream, not a slow one.
MAX_TIMEOUT_S = 86400.0

# Text per request, as characters (str) or as all the pieces of a text iterator. ~5-6 minutes of speech
# at 15 characters a second; longer texts are refused rather than split, because a request is the unit
# callers observe (one Synthesis held in memory, one StreamStats, one stall timeout): the caller splits,
# e.g. by paragraph, and gets audio back per part instead of nothing for many minutes.
MAX_TEXT_CHARS = 5000

# Speech tokens per LLM call: upstream's own ratio (the LLM's ``max_token_text_ratio``, 20) times the
# text tokens received so far, at least MIN_CAP_S of speech (upstream's 20 per token cuts a one-word
# text at 0.8 s; 20 s covers any short utterance, pauses included) and at most MAX_SPEECH_S of speech
# (a 5000-character text is 5-6 minutes). Past the cap the model is not ending the utterance: the
# stream ends with TokenLimitExceeded instead of running on, or stopping silently as upstream's does.
DEFAULT_TOKEN_TEXT_RATIO = 20.0
MIN_CAP_S = 20.0
MAX_SPEECH_S = 600.0


def check_timeout(name: str, value: object) -> float:
    """``value`` as float seconds if it is a finite number > 0 and <= MAX_TIMEOUT_S; InvalidInput naming
    ``name`` and the value otherwise."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value))
            or not 0 < float(value) <= MAX_TIMEOUT_S):
        raise InvalidInput(f"{name}={value!r}: expected a positive number of seconds, finite and at most "
                           f"{MAX_TIMEOUT_S:g}")
    return float(value)


def token_cap(text_tokens: int, ratio: float, token_rate: float) -> int:
    """The most speech tokens one LLM call may produce for ``text_tokens`` text tokens, at
    ``token_rate`` speech tokens per second (the flow's ``input_frame_rate``: 50 for v1, 25 for v2/v3)."""
    return min(int(MAX_SPEECH_S * token_rate), max(int(MIN_CAP_S * token_rate), int(text_tokens * ratio)))
