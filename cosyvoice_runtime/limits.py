"""Limits every request is held to, and the validators of timeouts and devices the runtime, its CLI and
the pytest plugin share (so "finite, positive, at most a day" and "auto, cpu, cuda or cuda:N" are
written once), with the stall timeout's default."""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Iterator

from .errors import InvalidInput

# A timeout must fit threading's waits (OverflowError above threading.TIMEOUT_MAX, ~292 years) and mean
# something: no token for a day is a dead stream, not a slow one.
MAX_TIMEOUT_S = 86400.0

# No new speech token for this long ends a stream with StreamStalled: the default of the runtime, its
# CLI (--stall-timeout) and the plugin (--cosy-stall-timeout).
DEFAULT_STALL_TIMEOUT_S = 30.0

# The forms of a device string (N: a GPU index); whether that CUDA device exists is decided at load.
DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")

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


# A request's seed (`seed=`, --seed): torch generators take 64-bit seeds; a signed 64-bit range keeps it
# representable everywhere a seed travels (JSON, C longs).
MAX_SEED = 2**63


def check_seed(seed: object) -> int | None:
    """``seed`` as given when it is None or a whole number 0 <= seed < 2**63; InvalidInput otherwise."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
        raise InvalidInput(f"seed={seed!r}: expected None or a whole number from 0 to 2**63-1")
    return seed


def check_device(device: object) -> str:
    """``device`` if it is 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index); InvalidInput naming the value
    otherwise. Only the form is checked: no CUDA is needed."""
    if not isinstance(device, str) or not _DEVICE_RE.fullmatch(device):
        forms = [repr(f) for f in DEVICE_FORMS]
        raise InvalidInput(f"device={device!r}: expected {', '.join(forms[:-1])} or {forms[-1]}")
    return device


def resolve_auto(device: str) -> str:
    """Where ``device`` loads, without loading: 'auto' is 'cuda' where torch sees a CUDA device and 'cpu'
    elsewhere; the other forms are returned as given (whether that CUDA device exists is decided at
    load). The one place 'auto' is resolved: the runtime, its upstream engine and the plugin ask here.
    InvalidInput for a string that is not a device form (`check_device`). torch is imported only for 'auto'."""
    if check_device(device) != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def token_cap(text_tokens: int, ratio: float, token_rate: float) -> int:
    """The most speech tokens one LLM call may produce for ``text_tokens`` text tokens, at
    ``token_rate`` speech tokens per second (``rates.token_rate``: 50 for v1, 25 for v2/v3)."""
    return min(int(MAX_SPEECH_S * token_rate), max(int(MIN_CAP_S * token_rate), int(text_tokens * ratio)))


def checked_pieces(pieces: Iterable[object]) -> Iterator[str]:
    """A text iterator's pieces, checked as they are read: InvalidInput for a piece that is not a str,
    or once the pieces pass MAX_TEXT_CHARS (the same words wherever a text iterator is read)."""
    chars = 0
    for piece in pieces:
        if not isinstance(piece, str):
            raise InvalidInput(f"text iterator yielded {type(piece).__name__} {piece!r}; expected str pieces")
        chars += len(piece)
        if chars > MAX_TEXT_CHARS:
            raise InvalidInput(f"text iterator: {chars} characters received, at most {MAX_TEXT_CHARS} per request; "
                               "split the text into several requests")
        yield piece
