"""A serving wrapper that does the Runtime's work unchanged, for the A/A-across-engine-kinds part of
benchmarks/gate_truth.py (issue 23): `stream(*a, **k)` and `synthesize(*a, **k)` hand everything to
the Runtime, every other attribute is the Runtime's (`__getattr__`), as a team's thin serving layer
often is.

    python -m pytest suites --cosy-engine benchmarks.passthrough_engine:build \
        --cosy-base-engine fixed --cosy-base-model COPY_OF_THE_MODEL

It declares nothing of its own: its `__getattr__` hands on the Runtime's `cosy_abilities`, so the
harness drives it exactly as the Runtime (seed= and observer= per call). Head and base do the same
compute, so the paired verdict must read "same".
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime


class PassThrough:
    """The Runtime behind a `*args, **kwargs` front."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return self._runtime.stream(*args, **kwargs)

    def synthesize(self, *args: Any, **kwargs: Any) -> Any:
        return self._runtime.synthesize(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the wrapper lacks: sample_rate, version, cosy_abilities, render, ...
        return getattr(self._runtime, name)


def build(runtime: Runtime) -> PassThrough:
    return PassThrough(runtime)
