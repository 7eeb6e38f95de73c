"""The quality defects of benchmarks/inject.py (issue 18's benchmark): each changes what the tiny v2
model's seeded stream emits, by the mechanism its description states, and taking it out gives the
clean seeded output back bit for bit."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.inject import (
    CLICK,
    JOIN_ZEROS_S,
    MEL_NOISE,
    QUALITY_DEFECTS,
    TOP_K,
    Patches,
    apply_defect,
)
from cosyvoice_runtime import Runtime, StreamObserver, StreamStats

# Long enough for three streamed chunks (two joins) on the tiny model with this seed.
TEXT = ("The quick brown fox jumps over the lazy dog, then it rests under the old oak tree by the river bank "
        "for a while.")
SEED = 7


@pytest.fixture(scope="module")
def runtime(tiny_v2_dir: Path) -> Runtime:
    import cosyvoice_runtime

    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


@pytest.fixture(scope="module")
def voice() -> dict[str, Any]:
    from pytest_cosyvoice.host import default_prompt

    p = default_prompt()
    return {"prompt_wav": str(p.wav), "prompt_text": p.text}


def stream(rt: Runtime, voice: dict[str, Any]) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """The seeded stream's chunks (copies) and its speech tokens."""
    seen: list[StreamStats] = []

    class Keep(StreamObserver):
        def on_end(self, stats: StreamStats, error: BaseException | None) -> None:
            seen.append(stats)

    chunks = [c.audio.copy() for c in rt.stream(TEXT, seed=SEED, observer=Keep(), **voice)]
    return chunks, seen[0].speech_tokens or ()


@pytest.fixture(scope="module")
def clean(runtime: Runtime, voice: dict[str, Any]) -> tuple[list[np.ndarray], tuple[int, ...]]:
    chunks, tokens = stream(runtime, voice)
    assert len(chunks) >= 3, "the text must give at least two joins"
    return chunks, tokens


@pytest.fixture(scope="module")
def synthesized(runtime: Runtime, voice: dict[str, Any]) -> np.ndarray:
    """The clean seeded synthesis (taking a defect out is checked on the stream, in `injected`)."""
    audio: np.ndarray = runtime.synthesize(TEXT, seed=SEED, **voice).audio.copy()
    return audio


@pytest.fixture
def injected(runtime: Runtime, voice: dict[str, Any], clean: tuple[list[np.ndarray], tuple[int, ...]],
             request: pytest.FixtureRequest) -> Iterator[Patches]:
    """The defect named by the test's parameter, in place during the test; afterwards it is taken out
    and the seeded stream must be the clean one again, bit for bit."""
    patches = apply_defect(request.param, runtime)
    try:
        yield patches
    finally:
        patches.restore()
    chunks, tokens = stream(runtime, voice)
    assert tokens == clean[1]
    assert len(chunks) == len(clean[0]) and all(np.array_equal(a, b) for a, b in zip(chunks, clean[0], strict=True))


def recorded(patches: Patches, obj: Any) -> list[tuple[dict[str, Any], Any]]:
    """Each `obj.inference` call's keyword arguments and result, from now on (taken out with `patches`)."""
    calls: list[tuple[dict[str, Any], Any]] = []
    fn = obj.inference

    def record(*a: Any, **k: Any) -> Any:
        out = fn(*a, **k)
        calls.append((k, out))
        return out
    patches.set(obj, "inference", record)
    return calls


def same_lengths(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert [len(x) for x in a] == [len(x) for x in b]


@pytest.mark.parametrize(("injected", "db"), [("vocoder-noise-20", 20.0), ("vocoder-noise-30", 30.0)],
                         indirect=["injected"])
def test_vocoder_noise_at_the_stated_level(runtime: Runtime, voice: dict[str, Any], clean: Any,
                                           injected: Patches, db: float) -> None:
    before_np, before_torch = np.random.get_state(legacy=False)["state"], torch.get_rng_state().clone()
    chunks, tokens = stream(runtime, voice)
    # Its own generator: neither global RNG moved (the seeded request's draws are its own too).
    after_np = np.random.get_state(legacy=False)["state"]
    assert np.array_equal(after_np["key"], before_np["key"]) and after_np["pos"] == before_np["pos"]
    assert torch.equal(torch.get_rng_state(), before_torch)
    assert tokens == clean[1]
    same_lengths(chunks, clean[0])
    ref, got = np.concatenate(clean[0]), np.concatenate(chunks)
    snr = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((got - ref).astype(np.float64) ** 2))
    assert abs(snr - db) < 1.0, f"noise at {snr:.2f} dB below the audio, stated {db}"


@pytest.mark.parametrize("injected", ["joins-zeroed"], indirect=True)
def test_joins_zeroed_puts_20_ms_of_exact_zeros_at_each_join(runtime: Runtime, voice: dict[str, Any], clean: Any,
                                                             injected: Patches) -> None:
    chunks, _ = stream(runtime, voice)
    same_lengths(chunks, clean[0])
    n = round(JOIN_ZEROS_S * runtime.sample_rate)
    for i, (got, ref) in enumerate(zip(chunks, clean[0], strict=True)):
        if i < len(chunks) - 1:  # a join follows this chunk
            assert np.all(got[-n:] == 0.0), f"chunk {i}: the {n} samples before the join are not all zero"
            assert np.count_nonzero(ref[-n:]) > n // 2, "the clean audio there was not silent already"
            assert np.array_equal(got[:-n], ref[:-n]), f"chunk {i}: changed before the zeroed stretch"
        else:  # the stream's end is no join
            assert np.array_equal(got, ref)


@pytest.mark.parametrize("injected", ["joins-click"], indirect=True)
def test_joins_click_steps_the_sample_before_each_join(runtime: Runtime, voice: dict[str, Any], clean: Any,
                                                       injected: Patches) -> None:
    chunks, _ = stream(runtime, voice)
    same_lengths(chunks, clean[0])
    for i, (got, ref) in enumerate(zip(chunks, clean[0], strict=True)):
        step = got.astype(np.float64) - ref
        if i < len(chunks) - 1:
            assert abs(abs(step[-1]) - CLICK) < 1e-6, f"chunk {i}: the last sample moved by {step[-1]}"
            assert np.all(step[:-1] == 0.0)
        else:
            assert np.all(step == 0.0)


@pytest.mark.parametrize("injected", ["flow-mel-perturbed"], indirect=True)
def test_flow_mel_perturbed_by_the_stated_share(runtime: Runtime, voice: dict[str, Any], clean: Any,
                                                injected: Patches) -> None:
    # What the flow gives (beneath the defect) and what the renderer gets (above it).
    inner = Patches()
    try:
        flow_out = recorded(inner, runtime.flow)   # the defect's wrapper was looked up before: record above it
        chunks, _ = stream(runtime, voice)
    finally:
        inner.restore()
    injected.restore()
    plain = Patches()
    try:
        flow_clean = recorded(plain, runtime.flow)
        stream(runtime, voice)
    finally:
        plain.restore()
    assert len(flow_out) == len(flow_clean) >= 3
    for (_, (mel, _)), (_, (ref, _)) in zip(flow_out, flow_clean, strict=True):
        share = float((mel - ref).double().std() / ref.double().std())
        assert abs(share - MEL_NOISE) < 0.2 * MEL_NOISE, f"mel noise {share:.3f} x the mel's std, stated {MEL_NOISE}"
    same_lengths(chunks, clean[0])
    assert not np.array_equal(np.concatenate(chunks), np.concatenate(clean[0]))


@pytest.mark.parametrize("injected", ["flow-fp16"], indirect=True)
def test_flow_fp16_rounds_the_mel_through_half(runtime: Runtime, voice: dict[str, Any], clean: Any,
                                               injected: Patches) -> None:
    inner = Patches()
    try:
        flow_out = recorded(inner, runtime.flow)
        chunks, _ = stream(runtime, voice)
    finally:
        inner.restore()
    injected.restore()
    plain = Patches()
    try:
        flow_clean = recorded(plain, runtime.flow)
        stream(runtime, voice)
    finally:
        plain.restore()
    for (_, (mel, _)), (_, (ref, _)) in zip(flow_out, flow_clean, strict=True):
        assert torch.equal(mel, ref.half().float()) and not torch.equal(mel, ref)
    same_lengths(chunks, clean[0])
    assert not np.array_equal(np.concatenate(chunks), np.concatenate(clean[0]))


@pytest.mark.parametrize("injected", ["llm-top-k"], indirect=True)
def test_llm_top_k_changes_the_sampling_and_the_tokens(runtime: Runtime, voice: dict[str, Any], clean: Any,
                                                       injected: Patches) -> None:
    assert runtime.llm.sampling.keywords["top_k"] == TOP_K
    _, tokens = stream(runtime, voice)
    assert tokens != clean[1]
    injected.restore()
    assert runtime.llm.sampling.keywords["top_k"] != TOP_K


def test_llm_top_k_restores_the_very_sampling_object(runtime: Runtime) -> None:
    before = runtime.llm.sampling
    apply_defect("llm-top-k", runtime).restore()
    assert runtime.llm.sampling is before


@pytest.mark.parametrize("injected", ["speaker-swapped"], indirect=True)
def test_speaker_swapped_gives_the_flow_the_negated_embedding(runtime: Runtime, voice: dict[str, Any], clean: Any,
                                                              injected: Patches) -> None:
    injected.restore()
    # Recorded beneath the defect: what the flow itself receives.
    plain = Patches()
    try:
        seen = recorded(plain, runtime.flow)
        stream(runtime, voice)
        swap = apply_defect("speaker-swapped", runtime)
        try:
            chunks, tokens = stream(runtime, voice)
        finally:
            swap.restore()
    finally:
        plain.restore()
    half = len(seen) // 2
    assert half >= 3 and len(seen) == 2 * half
    for (k_clean, _), (k_swapped, _) in zip(seen[:half], seen[half:], strict=True):
        assert torch.equal(k_swapped["embedding"], -k_clean["embedding"])
    assert tokens == clean[1]      # v2's LLM takes no speaker embedding
    same_lengths(chunks, clean[0])
    assert not np.array_equal(np.concatenate(chunks), np.concatenate(clean[0]))


@pytest.mark.parametrize("name", sorted(QUALITY_DEFECTS))
def test_each_defect_changes_the_seeded_synthesis_but_the_joins(runtime: Runtime, voice: dict[str, Any],
                                                                 synthesized: np.ndarray, name: str) -> None:
    patches = apply_defect(name, runtime)
    try:
        got = runtime.synthesize(TEXT, seed=SEED, **voice).audio
    finally:
        patches.restore()
    if name.startswith("joins-"):
        assert np.array_equal(got, synthesized), "one piece, no join: nothing to change"
    else:
        assert got.shape != synthesized.shape or not np.array_equal(got, synthesized)


def test_an_unknown_defect_names_the_valid_ones(runtime: Runtime) -> None:
    with pytest.raises(pytest.UsageError, match="defect:nope: expected one of .*joins-zeroed.*flow-fp16"):
        apply_defect("nope", runtime)
