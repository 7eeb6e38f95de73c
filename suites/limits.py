"""The gate suites' thresholds: options like every other of the plugin's (pytest_cosyvoice.options),
each from a command-line flag, its COSY_GATE_* environment variable or an ini key (README, "Gate
suites"): `--cosy-gate-max-rtf 0.5`, `COSY_GATE_MAX_RTF=0.5`, ini `cosy_gate_max_rtf = 0.5`.

The suites' conftest registers them (pytest_addoption) and resolves them in pytest_configure, so a
bad value stops the session as a usage error before anything is collected. The suite modules are
imported later, during collection, and read `LIMITS` (the resolved values) for their marker arguments;
a fixture or hook reads the same values from the config (`of(config)`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import pytest

from pytest_cosyvoice.options import BadValue, Option, register_options, resolve_options

PREFIX = "COSY_GATE_"


@dataclass(frozen=True)
class GateLimits:
    """Defaults let the embedded tiny model pass on a 2-core CPU runner; a GPU gate tightens them.
    The defaults are written here only: the options (and their help) are made from these fields."""

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


HELP = {
    "max_rtf": "rtf(max=...) of every streamed mode/text test",
    "max_gap_ms": "streaming(max_gap_ms=...): worst playback stall of one stream, ms",
    "prebuffer_ms": "streaming(prebuffer_ms=...) of single streams, ms",
    "concurrent_prebuffer_ms": "prebuffer of each of the 4 concurrent streams, ms",
    "max_first_chunk_ms": "first_chunk(max_ms=...) of the cold-start test (its first request is the cold one)",
    "rtf_repeat": "rtf(repeat=...): measured RTF rounds per streamed test, the samples the drift rule compares",
}


def _number(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise BadValue("expected a number") from None
    if x < 0:
        raise BadValue("expected a number >= 0")
    return x


def _whole(v: str) -> int:
    x = _number(v)
    if x < 1 or not x.is_integer():  # inf and nan included
        raise BadValue("expected a whole number >= 1")
    return int(x)


def _option(name: str, default: Any, is_int: bool) -> Option[Any]:
    return Option(name, "--cosy-gate-" + name.replace("_", "-"), "cosy_gate_" + name, GateLimits.variable(name),
                  _whole if is_int else _number, default, f"{HELP[name]} (default: {default:g}).",
                  metavar="N" if is_int else "NUMBER")


GATE_OPTIONS: tuple[Option[Any], ...] = tuple(_option(f.name, f.default, f.type in (int, "int"))
                                              for f in fields(GateLimits))
_KEY = pytest.StashKey[GateLimits]()
_current: GateLimits | None = None


def add_options(parser: pytest.Parser) -> None:
    register_options(parser, GATE_OPTIONS, "cosyvoice-gate", "CosyVoice release-gate suites (suites/limits.py)")


def resolve(config: pytest.Config, environ: dict[str, str] | None = None) -> GateLimits:
    """The limits from the command line, environment (default: os.environ) and ini, defaults for the
    rest; `pytest.UsageError` naming the flag, variable or ini key and what was expected."""
    values, _ = resolve_options(config, GATE_OPTIONS, environ)
    return GateLimits(**values)


def configure(config: pytest.Config) -> GateLimits:
    """Resolve the limits for this session: kept on the config, and as `LIMITS` for the suite modules
    that collection imports next (their marker arguments are evaluated at import)."""
    global _current
    limits = resolve(config)
    config.stash[_KEY] = limits
    _current = limits
    return limits


def unconfigure(config: pytest.Config) -> None:
    global _current
    if config.stash.get(_KEY, None) is _current:
        _current = None


def of(config: pytest.Config) -> GateLimits:
    """This session's resolved limits."""
    return config.stash[_KEY]


def __getattr__(name: str) -> Any:
    # `LIMITS` is read on use, not at import: the conftest imports this module before it resolves
    # the options in pytest_configure, where a bad one is a clean usage error.
    if name == "LIMITS":
        if _current is None:
            raise RuntimeError("suites.limits.LIMITS is resolved in the suites' pytest_configure: "
                               "run the suites with pytest (`pytest suites`)")
        return _current
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
