"""A Runtime's settings (``RuntimeSettings``: what ``Runtime.configure`` changes) and what the
Runtime's parts read of it (``RuntimeView``: ``streaming.Streamer`` and ``runtime_quality.QualityAPI``
read the loaded components and the settings from the Runtime at each call, so a component or the
settings replaced on a Runtime are what its next request uses)."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .errors import InvalidInput
from .frontend import Frontend
from .limits import DEFAULT_STALL_TIMEOUT_S, check_timeout
from .requests import Plan
from .token2wav import Schedule


@dataclass(frozen=True)
class RuntimeSettings:
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S  # no new token for this long -> StreamStalled
    join_timeout_s: float = 5.0        # producer join at the end of a request
    token_hop_len: int = 25            # v2/v3 first hop (tokens)
    token_max_hop_len: int = 100       # v2/v3 hop ceiling
    stream_scale_factor: float = 2.0   # v2/v3 hop growth per chunk, per request
    flow_context_tokens: int | None = None  # bounded-context flow (None: exact, all tokens)
    empty_cuda_cache: bool = False     # torch.cuda.empty_cache() after each request

    def __post_init__(self) -> None:
        for name in ("stall_timeout_s", "join_timeout_s"):
            object.__setattr__(self, name, check_timeout(name, getattr(self, name)))
        for name in ("token_hop_len", "token_max_hop_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidInput(f"{name}={v!r}: expected a positive whole number of tokens")
        if self.token_max_hop_len < self.token_hop_len:
            raise InvalidInput(f"token_max_hop_len={self.token_max_hop_len} is below "
                               f"token_hop_len={self.token_hop_len}")
        f = self.stream_scale_factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 1 <= f < math.inf:
            raise InvalidInput(f"stream_scale_factor={f!r}: expected a finite number >= 1")
        k = self.flow_context_tokens
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise InvalidInput(f"flow_context_tokens={k!r}: expected None (exact) or a positive whole number")
        if not isinstance(self.empty_cuda_cache, bool):
            raise InvalidInput(f"empty_cuda_cache={self.empty_cuda_cache!r}: expected True or False")

    def schedule(self) -> Schedule:
        """The v2/v3 hop schedule these settings give a request's renderer."""
        return Schedule(self.token_hop_len, self.token_max_hop_len, self.stream_scale_factor)

    def empty_cache(self, device: torch.device) -> None:
        """``torch.cuda.empty_cache()`` after a request, where the device is CUDA and the setting asks."""
        if device.type == "cuda" and self.empty_cuda_cache:
            torch.cuda.empty_cache()


class RuntimeView(Protocol):
    """What the Runtime's parts read of a ``runtime.Runtime`` (it is one), each time they run."""

    version: int
    device: torch.device
    sample_rate: int
    settings: RuntimeSettings
    llm: Any
    flow: Any
    hift: Any
    frontend: Frontend

    def autocast(self) -> contextlib.AbstractContextManager[object]: ...

    def plan(self, text: str | Iterable[str], *, speaker: str | None = None, prompt_wav: Any = None,
             prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
             text_frontend: bool = True) -> Plan: ...
