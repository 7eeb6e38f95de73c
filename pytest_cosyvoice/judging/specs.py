"""The markers' arguments as frozen dataclasses (`Spec(*mark.args, **mark.kwargs)`), each checking
its values; no pytest here: `markers.py` binds them to a test's marks and reports misuse."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cosyvoice_runtime import InvalidInput, check_timeout

from .audio_metrics import TOLERANCES

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
DTYPES = ("fp32", "fp16", "bf16")

# The quality gate's defaults, each written once: the spec's fields, `pytest --markers` and the docs read them.
# token -> wav of the same tokens vs the golden's: the SNR limit in dB by the dtype the model runs in
# (benchmarks/quality_limits.py; docs/reports.md "Quality limits: how the defaults were chosen"). On CPU fp32 a
# seeded render is bit-identical, in a fresh process too (inf dB); the flow's mel rounded through fp16 - the
# smallest defect measured - gives 91-101 dB, white noise at -30 dB on the vocoder output 30 dB. fp32's limit,
# 110 dB, catches the fp16 rounding with a 9 dB margin and sits 8 dB under torch.testing's fp32 rtol (1.3e-6 is
# -118 dB). fp16 and bf16 are looser by the ratio of their rtol to fp32's (1e-3 and 1.6e-2: 58 and 82 dB).
SNR_FP32_DB = 110.0


def _looser(dtype: str) -> float:
    return 20.0 * math.log10(TOLERANCES[dtype].rtol / TOLERANCES["float32"].rtol)


DEFAULT_SNR_DB: dict[str, float] = {"fp32": SNR_FP32_DB,
                                    "fp16": float(round(SNR_FP32_DB - _looser("float16"))),     # 52 dB
                                    "bf16": float(round(SNR_FP32_DB - _looser("bfloat16")))}    # 28 dB
# Streamed vs offline rendering of the same tokens: the log-mel distance at the worst frame, in dB. Clean
# tiny-model streams measured up to 3.4 dB (v2) and 6.2 dB (v1, whose flow draws its noise per window), 20 ms
# zeroed or a click at each join at least 10.9 dB (real speech: 29 and 39 dB); 8.5 dB lies halfway, 2.3 dB
# from either. The mean over frames cannot tell them apart (a few joins in seconds of audio).
DEFAULT_STREAMED_MEL_DB = 8.5
DEFAULT_SIM_DROP = 0.05
DEFAULT_WER_SLACK = 1.25        # sglang-omni's TTS CI: worst clean WER x 1.25 (judging.scores.WER_FLOOR above it)
MOS_SLACK = 0.97                # sglang-omni's TTS CI: the MOS limit is the worst clean run x 0.97
MOS_MINIMUM_BASELINE = 5        # ... of 5 clean runs; fewer is uncalibrated and never gates


@dataclass(frozen=True)
class QualitySpec:
    """The quality drift gate's limits: the `quality` marker's arguments, judged by `judging/golden_checks.py`
    and `judging/scores.py`.

    snr_db: token -> wav and call audio vs golden, at least this SNR in dB (None: DEFAULT_SNR_DB of the
    run's dtype); streamed_mel_db: streamed vs offline render of the same tokens, at most this log-mel
    distance at the worst frame; tokens: "identical" (any divergence fails), "top_k" (a divergence passes
    while the golden token at the first divergence stays in the current LLM's sampling top_k: numeric drift,
    not changed sampling), "off"; mos_slack: DNSMOS/PLCMOS at least the worst clean run x this; wer_slack:
    WER at most the worst clean run x this; sim_drop: speaker similarity at least the worst clean run - this;
    min_clean_runs: fewer saved clean runs: the scores are uncalibrated and never gate."""

    marker: ClassVar[str] = "quality"
    snr_db: float | None = None
    streamed_mel_db: float = DEFAULT_STREAMED_MEL_DB
    tokens: str = "identical"
    mos_slack: float = MOS_SLACK
    wer_slack: float = DEFAULT_WER_SLACK
    sim_drop: float = DEFAULT_SIM_DROP
    min_clean_runs: int = MOS_MINIMUM_BASELINE

    def __post_init__(self) -> None:
        if self.snr_db is not None:
            object.__setattr__(self, "snr_db", _number("snr_db", self.snr_db))
        object.__setattr__(self, "streamed_mel_db", _number("streamed_mel_db", self.streamed_mel_db, strict=True))
        if self.tokens not in TOKEN_MODES:
            raise SpecError(f"tokens={self.tokens!r}: expected one of {', '.join(map(repr, TOKEN_MODES))}")
        slack = _number("mos_slack", self.mos_slack, strict=True)
        if slack > 1.0:
            raise SpecError(f"mos_slack={self.mos_slack!r}: expected a fraction in (0, 1] of the worst clean run")
        object.__setattr__(self, "mos_slack", slack)
        object.__setattr__(self, "wer_slack", _number("wer_slack", self.wer_slack, minimum=1.0))
        drop = _number("sim_drop", self.sim_drop)
        if drop > 2.0:
            raise SpecError(f"sim_drop={self.sim_drop!r}: expected a cosine drop in [0, 2]")
        object.__setattr__(self, "sim_drop", drop)
        _count("min_clean_runs", self.min_clean_runs, minimum=1)

    def snr_limit(self, dtype: str) -> float:
        """snr_db, else the default of the dtype the model runs in."""
        if self.snr_db is not None:
            return float(self.snr_db)
        if dtype not in DEFAULT_SNR_DB:
            raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DEFAULT_SNR_DB)}")
        return DEFAULT_SNR_DB[dtype]


MarkerSpec = StreamingSpec | RtfSpec | FirstChunkSpec | NoDeprecationsSpec | StallTimeoutSpec | QualitySpec
SPECS: tuple[type[MarkerSpec], ...] = (StreamingSpec, RtfSpec, FirstChunkSpec, NoDeprecationsSpec, StallTimeoutSpec,
                                       QualitySpec)
