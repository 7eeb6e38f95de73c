"""The quality drift gate's golden checks (issue 18): one call's speech tokens, renders and audio against its
stored golden (`compare_call`) or, in A/B mode, against the base side's run of the same call
(`compare_with_base`). The waveform distances are `audio_metrics`'s; no pytest here.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

import numpy as np

from .audio_metrics import SoundMismatch, compare_audio, snr_verdict, streamed_vs_offline
from .checks import Recording
from .figures import figure_text
from .quality_results import CallOutput, QualityCheck, Status, Why
from .specs import QualitySpec


def first_divergence(tokens_a: Iterable[int], tokens_b: Iterable[int]) -> int | None:
    """Index of the first differing speech token; the shorter length when one is a prefix of the other;
    None when both are identical."""
    a, b = [int(t) for t in tokens_a], [int(t) for t in tokens_b]
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def token_verdict(golden: Iterable[int], current: Iterable[int]) -> str:
    """ "tokens identical (120)" or "tokens diverge at 37 of 120" (of the golden's count)."""
    golden, current = [int(t) for t in golden], [int(t) for t in current]
    return divergence_text(first_divergence(golden, current), len(golden), len(current))


def divergence_text(at: int | None, golden_count: int, current_count: int) -> str:
    """`token_verdict`'s words for a divergence already found (`first_divergence`): one search a call."""
    if at is None:
        return f"tokens identical ({golden_count})"
    line = f"tokens diverge at {at} of {golden_count}"
    if current_count != golden_count:
        line += f" (current has {current_count})"
    return line



class GoldenLike(Protocol):
    """What `compare_call` reads of a stored golden call (tracking.goldens.GoldenCall; in A/B mode a
    CallOutput of the base side, whose audio is never None: hence read-only)."""
    sample_rate: int
    tokens: list[int] | None
    rendered: np.ndarray | None
    reference_snr: float | None

    @property
    def audio(self) -> np.ndarray | None: ...


# PyTorch's accuracy check for a new build: its error against a float64 reference at most 2x (fp32) /
# 3x (fp16, bf16) the old build's own error.
REFERENCE_ERROR_RATIO = {"fp32": 2.0, "fp16": 3.0, "bf16": 3.0}


def _reference_check(golden: GoldenLike, current: CallOutput, dtype: str, stack_change: str) -> QualityCheck:
    """token2wav after a stack change: this stack's render of the golden tokens against its float64 CPU
    reference, its error (in amplitude) at most REFERENCE_ERROR_RATIO x the golden stack's own error."""
    assert golden.reference_snr is not None and current.reference_snr is not None
    limit = REFERENCE_ERROR_RATIO[dtype]
    g, c = golden.reference_snr, current.reference_snr
    if math.isinf(g) and math.isinf(c):
        ratio = 1.0
    else:
        ratio = math.inf if math.isinf(g) else 10.0 ** ((g - c) / 20.0)
    status: Status = "pass" if ratio <= limit else "fail"
    return QualityCheck("token2wav", current.label, status, ratio, limit,
                        f"stack changed ({stack_change}): token->wav error against the float64 reference "
                        f"x{ratio:.2f} the golden stack's (limit x{limit:g}; {figure_text(c)} vs "
                        f"{figure_text(g)} dB SNR)")


def _tokens_check(golden: GoldenLike, current: CallOutput, limits: QualitySpec) -> QualityCheck:
    label = current.label
    if limits.tokens == "off":
        return QualityCheck.note("tokens", label, Why.NOT_JUDGED, "tokens not judged (tokens=\"off\")")
    if golden.tokens is None or current.tokens is None:
        side = "golden" if golden.tokens is None else "current call"
        return QualityCheck.note("tokens", label, Why.NOT_JUDGED, f"tokens not judged: the {side} has no speech tokens")
    at = first_divergence(golden.tokens, current.tokens)
    verdict = divergence_text(at, len(golden.tokens), len(current.tokens))
    if at is None:
        return QualityCheck("tokens", label, "pass", None, None, verdict)
    figure = float(at)
    if limits.tokens == "identical":
        return QualityCheck("tokens", label, "fail", figure, None, verdict)
    # top_k (vLLM's check_logprobs_close): at the first mismatch, the golden token must still be one the
    # current LLM could sample; past it the sequences are conditioned on different prefixes.
    if current.token_ranks is None or current.top_k is None:
        why = "no token scoring" if current.token_ranks is None else "no readable sampling top_k"
        return QualityCheck.note("tokens", label, Why.NOT_JUDGED,
                                 f"{verdict}: not judged (tokens=\"top_k\", but the engine offers {why})", figure)
    if at >= len(current.token_ranks):
        # The current call is longer: the golden ended here (its end-of-speech was not sampled again).
        return QualityCheck("tokens", label, "fail", figure, float(current.top_k),
                            f"{verdict}: the golden ends there, the current LLM went on (sampling changed)")
    rank = current.token_ranks[at]
    k = current.top_k
    if rank < k:
        return QualityCheck("tokens", label, "pass", figure, float(k),
                            f"{verdict}; the golden token there is rank {rank} under the current LLM, inside "
                            f"its top-{k} (numeric drift)")
    return QualityCheck("tokens", label, "fail", figure, float(k),
                        f"{verdict}; the golden token there is rank {rank} under the current LLM, outside its "
                        f"top-{k} (sampling changed)")


def _snr_check(name: str, what: str, golden: np.ndarray | None, current: np.ndarray | None, golden_rate: int,
               current_rate: int, limit: float, label: str, missing: str) -> QualityCheck:
    if current is None:
        return QualityCheck.note(name, label, Why.NOT_JUDGED, missing, limit=limit)
    if golden is None:
        return QualityCheck.note(name, label, Why.NOT_JUDGED, f"{what} not judged: the golden call has none stored",
                                 limit=limit)
    try:
        d = compare_audio(golden, current, golden_rate, current_rate)
    except SoundMismatch as exc:
        return QualityCheck(name, label, "fail", None, limit, f"{what} not comparable with the golden: {exc}")
    status: Status = "pass" if d.snr_db >= limit else "fail"
    return QualityCheck(name, label, status, d.snr_db, limit,
                        f"{snr_verdict(what, d.snr_db, limit)}; log-mel {d.spectral.mean_db:.2f} dB mean, "
                        f"{d.spectral.worst_db:.2f} dB worst at {d.spectral.worst_at_s:.2f} s; max abs {d.max_abs:.3g}")


def compare_call(golden: GoldenLike | None, current: CallOutput, limits: QualitySpec,
                 dtype: str, stack_change: str = "") -> list[QualityCheck]:
    """The golden checks of one call: tokens, token2wav (this stack's offline render of the golden tokens vs
    the golden's), audio (the call's output vs the golden's, only while the tokens are identical) and
    streamed_vs_offline (this stack's streamed vs offline render of the same tokens; no golden needed).
    With `stack_change` (the versions that differ from the golden's stack, worded) and both reference SNRs
    known, token2wav is judged by the error against a float64 reference instead (`_reference_check`).
    Nothing here raises on a mismatch of rates or lengths: that is a failed check naming both values."""
    limit = limits.snr_limit(dtype)
    label = current.label
    checks: list[QualityCheck] = []
    if golden is None:
        for name in ("tokens", "token2wav", "audio"):
            checks.append(QualityCheck.note(name, label, Why.NO_GOLDEN, "no golden for this call"))
    else:
        tokens = _tokens_check(golden, current, limits)
        checks.append(tokens)
        if stack_change and golden.reference_snr is not None and current.reference_snr is not None:
            # Another stack is not bit-identical by design: judged by its error, not by SNR vs golden.
            checks.append(_reference_check(golden, current, dtype, stack_change))
        else:
            checks.append(_snr_check("token2wav", "token->wav", golden.rendered, current.rendered,
                                     golden.sample_rate, current.sample_rate, limit, label,
                                     "token->wav not judged: the engine offers no render()"))
        if golden.tokens is not None and current.tokens is not None and list(golden.tokens) != list(current.tokens):
            checks.append(QualityCheck.note("audio", label, Why.NOT_JUDGED,
                                            "audio not compared sample by sample: the tokens differ "
                                            "(token->wav judges the renderer on the golden tokens)", limit=limit))
        else:
            checks.append(_snr_check("audio", "audio", golden.audio, current.audio, golden.sample_rate,
                                     current.sample_rate, limit, label, "audio not judged: no current audio"))
    checks.append(_streamed_check(current, limits))
    return checks


def _streamed_check(current: CallOutput, limits: QualitySpec) -> QualityCheck:
    label, limit = current.label, limits.streamed_mel_db
    if current.rendered is None or current.rendered_streamed is None:
        return QualityCheck.note("streamed_vs_offline", label, Why.NOT_JUDGED,
                                 "streamed vs offline not judged: the engine offers no render()", limit=limit)
    try:
        d = streamed_vs_offline(current.rendered_streamed, current.rendered, current.sample_rate)
    except SoundMismatch as exc:
        return QualityCheck("streamed_vs_offline", label, "fail", None, limit,
                            f"streamed vs offline not comparable: {exc}")
    status: Status = "pass" if d.worst_db <= limit else "fail"
    length = f"; streamed {d.length_difference:+d} samples" if d.length_difference else ""
    return QualityCheck("streamed_vs_offline", label, status, d.worst_db, limit,
                        f"streamed vs offline log-mel {d.worst_db:.2f} dB at the worst frame ({d.worst_at_s:.2f} s; "
                        f"limit {limit:g} dB), {d.mean_db:.2f} dB mean{length}")


def compare_with_base(current: CallOutput, base: Recording, limits: QualitySpec, dtype: str) -> list[QualityCheck]:
    """A/B mode: the call against the base side's run of it with the same seed (`base`), whose tokens and
    audio stand in for a golden (the base renders nothing else, so token2wav is the goldens' alone)."""
    label = f"{current.label} vs base"
    if base.outcome != "ok":
        return [QualityCheck("tokens", label, "fail", None, None,
                             f"the base side's call ended with {base.outcome}: {base.error}")]
    stand_in = CallOutput(label=current.label, kind=current.kind, seed=current.seed, sample_rate=base.sample_rate,
                          text=current.text, tokens=base.speech_tokens, audio=base.audio)
    head = replace(current, rendered=None, token_ranks=None)
    return [replace(c, call=label, text=c.text.replace("golden", "base"))
            for c in compare_call(stand_in, head, limits, dtype) if c.name in ("tokens", "audio")]
