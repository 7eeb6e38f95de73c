"""The gate suites' thresholds, from COSY_GATE_* environment variables (README, "Gate suites").

The suites' conftest checks them at startup, so a bad value stops the session as a usage error before
anything is collected; the suite modules import `LIMITS` for their marker arguments.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import pytest

PREFIX = "COSY_GATE_"


@dataclass(frozen=True)
class GateLimits:
    """Defaults let the embedded tiny model pass on a 2-core CPU runner; a GPU gate tightens them."""

    max_rtf: float = 3.0            # COSY_GATE_MAX_RTF
    max_gap_ms: float = 1000.0      # COSY_GATE_MAX_GAP_MS: worst playback stall of one stream
    prebuffer_ms: float = 2000.0    # COSY_GATE_PREBUFFER_MS
    concurrent_prebuffer_ms: float = 10_000.0  # COSY_GATE_CONCURRENT_PREBUFFER_MS: 4 streams share the device
    max_first_chunk_ms: float = 60_000.0  # COSY_GATE_MAX_FIRST_CHUNK_MS: the cold first request included
    # COSY_GATE_RTF_REPEAT: measured runs per streamed test; the drift rule needs >= 4 a side to be
    # able to call anything significant (docs/reports.md), 10 for reliable detection of a 15 % slowdown.
    rtf_repeat: int = 5

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of field `name`: COSY_GATE_ and the name in capitals."""
        return f"{PREFIX}{name.upper()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GateLimits:
        """The limits `environ` (default: os.environ) sets, defaults for the rest; `pytest.UsageError`
        naming the variable and what was expected for a bad value."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = cls.variable(f.name)
            raw = env.get(var)
            if raw is None:
                continue
            try:
                x = float(raw)
            except ValueError:
                raise pytest.UsageError(f"{var}={raw!r}: expected a number") from None
            if x < 0:
                raise pytest.UsageError(f"{var}={raw!r}: expected a number >= 0")
            if f.type in (int, "int"):
                if x < 1 or not x.is_integer():  # inf and nan included
                    raise pytest.UsageError(f"{var}={raw!r}: expected a whole number >= 1")
                x = int(x)
            values[f.name] = x
        return cls(**values)


@functools.cache
def _limits() -> GateLimits:
    return GateLimits.from_env()


def __getattr__(name: str) -> Any:
    # `LIMITS` is read on first use, not at import: the conftest imports this module before it checks
    # the variables in pytest_configure, where a bad one is a clean usage error.
    if name == "LIMITS":
        return _limits()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
