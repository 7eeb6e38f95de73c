"""The markers' arguments as frozen dataclasses (`Spec(*mark.args, **mark.kwargs)`), each checking
its values; no pytest here: `markers.py` binds them to a test's marks and reports misuse."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cosyvoice_runtime import InvalidInput, check_timeout

# Default click threshold: see checks.join_click_ratio. Natural speech stays below 1.6 with the
# max-of-neighbours reference (measured on a 5.5 s espeak-ng recording at every sample and on the
# tiny model's joins, <= 0.55); a step three times the largest nearby jump is a click, which leaves
# margin above the 1.6 of natural speech.
DEFAULT_MAX_CLICK_RATIO = 3.0


class SpecError(ValueError):
    """A marker argument with the wrong type or range; the message names it."""


def _number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise SpecError(f"{name}={value!r}: expected a number")
    if value < minimum or (strict and value == minimum):
        raise SpecError(f"{name}={value!r}: expected a number {'>' if strict else '>='} {minimum:g}")
    return float(value)


def _count(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{name}={value!r}: expected a whole number >= {minimum}")
    return value


def _patterns(name: str, value: Any) -> tuple[str | type[Warning], ...]:
    """A regex, a Warning subclass, or a sequence of them."""
    items = (value,) if isinstance(value, (str, type)) else value
    if not isinstance(items, Sequence):
        raise SpecError(f"{name}={value!r}: expected a regular expression, a Warning class or a sequence of them")
    out: list[str | type[Warning]] = []
    for it in items:
        if isinstance(it, type) and issubclass(it, Warning):
            out.append(it)
        elif isinstance(it, str):
            try:
                re.compile(it)
            except re.error as e:
                raise SpecError(f"{name}: {it!r} is not a regular expression ({e})") from None
            out.append(it)
        else:
            raise SpecError(f"{name}: {it!r} is neither a regular expression nor a Warning class")
    return tuple(out)


@dataclass(frozen=True)
class StreamingSpec:
    marker: ClassVar[str] = "streaming"
    prebuffer_ms: float = 0.0
    max_gap_ms: float = 0.0
    max_click_ratio: float = DEFAULT_MAX_CLICK_RATIO
    allow_warnings: tuple[str | type[Warning], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prebuffer_ms", _number("prebuffer_ms", self.prebuffer_ms))
        object.__setattr__(self, "max_gap_ms", _number("max_gap_ms", self.max_gap_ms))
        object.__setattr__(self, "max_click_ratio", _number("max_click_ratio", self.max_click_ratio, strict=True))
        object.__setattr__(self, "allow_warnings", _patterns("allow_warnings", self.allow_warnings))


@dataclass(frozen=True)
class RtfSpec:
    marker: ClassVar[str] = "rtf"
    max: float = 1.0
    warmup: int = 1
    repeat: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "max", _number("max", self.max, strict=True))
        _count("warmup", self.warmup, minimum=0)
        _count("repeat", self.repeat, minimum=1)


@dataclass(frozen=True)
class FirstChunkSpec:
    marker: ClassVar[str] = "first_chunk"
    max_ms: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_ms", _number("max_ms", self.max_ms, strict=True))


@dataclass(frozen=True)
class NoDeprecationsSpec:
    marker: ClassVar[str] = "no_deprecations"
    allow: tuple[str | type[Warning], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", _patterns("allow", self.allow))


@dataclass(frozen=True)
class StallTimeoutSpec:
    """Per-test override of --cosy-stall-timeout (the top of the settings resolution)."""

    marker: ClassVar[str] = "stall_timeout"
    seconds: float

    def __post_init__(self) -> None:
        # The runtime's own validator: the marker accepts exactly what the runtime can wait for.
        try:
            object.__setattr__(self, "seconds", check_timeout("seconds", self.seconds))
        except InvalidInput as e:
            raise SpecError(str(e)) from None


MarkerSpec = StreamingSpec | RtfSpec | FirstChunkSpec | NoDeprecationsSpec | StallTimeoutSpec
SPECS: tuple[type[MarkerSpec], ...] = (StreamingSpec, RtfSpec, FirstChunkSpec, NoDeprecationsSpec, StallTimeoutSpec)
