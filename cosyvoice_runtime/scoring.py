"""What the loaded LLM samples with."""
from __future__ import annotations

import functools
import inspect
from typing import Any


def sampling_top_k(llm: Any) -> int | None:
    """The top_k the LLM samples with as loaded: hyperpyyaml's ``!name:...ras_sampling`` (or another
    sampler taking ``top_k``) builds ``llm.sampling`` as a functools.partial; its ``top_k`` keyword, else
    the function's default. None for a sampler that is not such a partial or takes no top_k."""
    fn = getattr(llm, "sampling", None)
    if not isinstance(fn, functools.partial):
        return None
    k = fn.keywords.get("top_k", inspect.Parameter.empty)
    if k is inspect.Parameter.empty:
        try:
            k = inspect.signature(fn.func).parameters["top_k"].default
        except (KeyError, TypeError, ValueError):
            return None
    if isinstance(k, bool) or not isinstance(k, int):
        return None
    return k
