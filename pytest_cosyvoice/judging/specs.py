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


TOKEN_MODES = ("identical", "top_k", "off")


@dataclass(frozen=True)
class QualitySpec:
    """The quality drift gate's limits (issue 18; judged in `judging/quality.py`). None: the default
    (`snr_db` by the run's dtype, `streamed_mel_db` the measured default; see docs/plugin.md)."""

    marker: ClassVar[str] = "quality"
    snr_db: float | None = None           # token->wav and call audio vs golden: at least this SNR
    streamed_mel_db: float | None = None  # streamed vs offline render of the same tokens: at most this
    tokens: str = "identical"             # "identical", "top_k" (golden tokens within the LLM's top-k), "off"
    mos_slack: float = 0.97               # DNSMOS/PLCMOS: at least the worst clean run x this
    wer_slack: float = 1.25               # WER: at most the worst clean run x this (+0.05)
    sim_drop: float = 0.05                # speaker similarity: at least the worst clean run - this
    min_clean_runs: int = 5               # fewer saved clean runs: scores are uncalibrated, never gate

    def __post_init__(self) -> None:
        if self.snr_db is not None:
            object.__setattr__(self, "snr_db", _number("snr_db", self.snr_db))
        if self.streamed_mel_db is not None:
            object.__setattr__(self, "streamed_mel_db", _number("streamed_mel_db", self.streamed_mel_db, strict=True))
        if self.tokens not in TOKEN_MODES:
            raise SpecError(f"tokens={self.tokens!r}: expected one of {', '.join(map(repr, TOKEN_MODES))}")
        slack = _number("mos_slack", self.mos_slack, strict=True)
        if slack > 1.0:
            raise SpecError(f"mos_slack={self.mos_slack!r}: expected a fraction in (0, 1]")
        object.__setattr__(self, "mos_slack", slack)
        object.__setattr__(self, "wer_slack", _number("wer_slack", self.wer_slack, minimum=1.0))
        object.__setattr__(self, "sim_drop", _number("sim_drop", self.sim_drop))
        _count("min_clean_runs", self.min_clean_runs, minimum=1)


MarkerSpec = StreamingSpec | RtfSpec | FirstChunkSpec | NoDeprecationsSpec | StallTimeoutSpec | QualitySpec
SPECS: tuple[type[MarkerSpec], ...] = (StreamingSpec, RtfSpec, FirstChunkSpec, NoDeprecationsSpec, StallTimeoutSpec,
                                       QualitySpec)
