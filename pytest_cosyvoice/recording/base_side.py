"""The base side of an A/B session: what `cosy_tts` runs beside the head (the session's own engine,
model and interpreter) on the same inputs and seed, to pair their timings (issue #17).

A base side is built once per process by `host.EngineHost` from `--cosy-base-engine`,
`--cosy-base-model` and `--cosy-base-python`:

    InProcessBase   another engine and/or another model directory, in this interpreter
    WorkerBase      another interpreter: the base engine runs in a worker process (base_worker.py),
                    served by other_interpreter.py's `WorkerBase`

Either way one call is recorded exactly as the head's are (a `CosyTTS` of the base's own, behind the
same watchdog), so both halves of a pair are timed by the same code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..judging.checks import Recording
from .attribution import EngineAttribution, Takes
from .calls import CosyTTS

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime

    from ..engine import Engine


class BaseSideError(Exception):
    """The base side cannot serve a call (its worker died, hung or refused); the message names the
    base side and what happened (exit status, last stderr lines)."""


class BaseSide(Protocol):
    """What the pairing code needs of a base side."""

    description: str        # e.g. "engine fixed, model /m, this interpreter"
    versions: dict[str, str]  # the base side's stack: python, torch, ... (its interpreter's)

    def takes(self, kind: str) -> Takes | None:
        """What the base engine's `kind` call is passed of ours (observer=, stall_timeout_s=, seed=);
        None where the base side does not say (a worker of an older pytest-cosyvoice)."""
        ...

    def call(self, kind: str, text: str, kwargs: dict[str, Any], *, label: str, round: int, measured: bool,
             seed: int | None, stall_timeout_s: float, seed_per_request: bool = True) -> Recording:
        """Runs one complete call (a stream drained, or a synthesize) and returns its recording.
        `seed`: passed as `seed=` where `seed_per_request` and the base engine takes one (and the test
        passed none), else torch's global generator is seeded with it right before the call (None:
        left alone)."""
        ...

    def close(self) -> None: ...


def seed_torch(seed: int | None) -> None:
    """Seeds torch's global generator right before one side's call of a pair, so both sides start
    from the same state (the suites seed it per test the same way). A seeded *stream* is still not
    reproducible: the LLM's sampling and the vocoder's noise draw from it in two threads (an engine
    that takes `seed=` gets the seed per request instead: see `InProcessBase.call`)."""
    if seed is None:
        return
    import torch

    torch.manual_seed(seed)


class InProcessBase:
    """The base engine in this interpreter: `engine` over `runtime` (the head's runtime when only
    `--cosy-base-engine` is given, a second loaded one for `--cosy-base-model`)."""

    def __init__(self, engine: Engine, runtime: Runtime, description: str, versions: dict[str, str]) -> None:
        self.engine = engine
        self.runtime = runtime
        self.description = description
        self.versions = dict(versions)
        self._attribution = EngineAttribution(engine, runtime)

    def takes(self, kind: str) -> Takes | None:
        return self._attribution.takes[kind]

    def call(self, kind: str, text: str, kwargs: dict[str, Any], *, label: str, round: int, measured: bool,
             seed: int | None, stall_timeout_s: float, seed_per_request: bool = True) -> Recording:
        tts = CosyTTS(self.engine, self.runtime, self._attribution, stall_timeout_s=stall_timeout_s, round=round)
        if seed is not None and seed_per_request and self._attribution.takes[kind].seed and "seed" not in kwargs:
            kwargs = {**kwargs, "seed": seed}   # the request's own draws: the global generator is left alone
        else:
            seed_torch(seed)
        return tts.record(kind, text, kwargs, label=label, measured=measured)

    def close(self) -> None:
        self._attribution.close()
