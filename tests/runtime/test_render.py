"""`Runtime.render` (issue #18): token -> wav of given speech tokens in a request's voice, offline (one
closing render) or streamed (the hop schedule, then the closing render), seeded draws of its own; and
`Runtime.speaker_embedding` / `sampling_top_k`; `render(..., reference=True)`, the same render on CPU
copies of the flow (float32) and vocoder (float64) with the float32 draws cast, that a render's
numerical error is measured against (issue #18, item 2b). Tiny v1 and v2 models on the CPU, fp32."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cosyvoice_runtime
from cosyvoice_runtime import InvalidInput, Runtime
from cosyvoice_runtime.tiny.spec import SPEAKER, SPEECH_VOCAB, TOP_K
from pytest_cosyvoice.faults import forced_tokens

TEXT = "Hello there, this is one sentence."
PROMPT_TEXT = "A short prompt sentence."
V1_MEL_HOP = 256   # samples per v1 mel frame (22050 Hz, HiFT 8*8*4)
# Token counts that give two streamed hops and a closing chunk (v1: hops of 100 + 20 overlap tokens;
# v2: 38 (25 padded for the 62 prompt tokens), 50, + 3 look-ahead), kept short: the v2 flow re-runs
# on every token so far at each hop, slow on two shared CPU cores.
TWO_HOPS = {1: 230, 2: 100}


@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def rt(request: pytest.FixtureRequest, tiny_v1_dir: Path, tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v1_dir if request.param == 1 else tiny_v2_dir, device="cpu")


@pytest.fixture(scope="module")
def kw(rt: Runtime, voice: Path) -> dict[str, Any]:
    """v1: a built-in speaker (sft); v2: zero-shot with the prompt recording."""
    if rt.version == 1:
        return dict(speaker=SPEAKER)
    return dict(prompt_wav=str(voice), prompt_text=PROMPT_TEXT)


def test_a_seeded_render_repeats_bit_for_bit_and_leaves_the_global_generator_alone(rt: Runtime,
                                                                                   kw: dict[str, Any]) -> None:
    tokens = forced_tokens(rt.version, TWO_HOPS[rt.version], seed=4)
    for streamed in (False, True):
        torch.manual_seed(7)
        before = torch.get_rng_state()
        a = rt.render(TEXT, tokens, seed=21, streamed=streamed, **kw)
        assert torch.equal(torch.get_rng_state(), before), "a seeded render drew from the global generator"
        torch.manual_seed(8)   # another global state: the render does not depend on it
        b = rt.render(TEXT, tokens, seed=21, streamed=streamed, **kw)
        assert a.audio.dtype == np.float32 and a.audio.size > 0 and np.isfinite(a.audio).all()
        assert np.array_equal(a.audio, b.audio)
        other = rt.render(TEXT, tokens, seed=22, streamed=streamed, **kw)
        assert other.audio.shape == a.audio.shape and not np.array_equal(other.audio, a.audio), \
            "the seed does not reach the vocoder's noise"
        assert a.stats.speech_tokens == tuple(tokens)
        assert sum(c.tokens for c in a.chunks) == len(tokens) == a.stats.tokens


def test_a_streamed_render_is_the_hop_schedule_then_the_closing_chunk(rt: Runtime, kw: dict[str, Any]) -> None:
    n = TWO_HOPS[rt.version]
    tokens = forced_tokens(rt.version, n, seed=5)
    offline = rt.render(TEXT, tokens, seed=3, **kw)
    streamed = rt.render(TEXT, tokens, seed=3, streamed=True, **kw)
    assert len(offline.chunks) == 1 and offline.chunks[0].tokens == n
    assert len(streamed.chunks) == 3
    hops = [c.tokens for c in streamed.chunks[:-1]]
    if rt.version == 1:
        # v1: fixed hops of 2 s of tokens (100 at 50 Hz), each needing 20 overlap tokens after it.
        assert hops == [100, 100] and streamed.chunks[-1].tokens == n - 200
        # Each window's mel frames are rounded down on their own: at most one frame per join apart.
        assert abs(len(streamed.audio) - len(offline.audio)) <= V1_MEL_HOP * (len(streamed.chunks) - 1)
    else:
        # v2: the first hop padded so prompt + hop fill whole hops of 25, then 50, 100, 100, ...
        assert hops == [38, 50]
        assert len(streamed.audio) == len(offline.audio) == n * 2 * 480
    assert np.array_equal(streamed.audio, np.concatenate([c.audio for c in streamed.chunks]))


def snr_db(reference: np.ndarray, audio: np.ndarray) -> float:
    """The SNR of ``audio`` against ``reference`` in dB (inf when they are equal)."""
    ref = reference.astype(np.float64)
    noise = float(np.sum((audio.astype(np.float64) - ref) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref ** 2)) / noise)


def _float32_everywhere(rt: Runtime) -> bool:
    return all(p.dtype == torch.float32 for m in (rt.flow, rt.hift) for p in (*m.parameters(), *m.buffers())
               if p.is_floating_point()) and rt.hift.stft_window.dtype == torch.float32


def test_a_reference_render_differs_from_the_render_by_precision_only(rt: Runtime, kw: dict[str, Any]) -> None:
    tokens = forced_tokens(rt.version, TWO_HOPS[rt.version], seed=4)
    assert rt.reference_available and _float32_everywhere(rt)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    a = rt.render(TEXT, tokens, seed=21, **kw)
    ref = rt.render(TEXT, tokens, seed=21, reference=True, **kw)
    again = rt.render(TEXT, tokens, seed=21, reference=True, **kw)
    assert torch.equal(torch.get_rng_state(), before), "a reference render drew from the global generator"
    assert ref.audio.dtype == np.float32 and np.isfinite(ref.audio).all()
    assert np.array_equal(ref.audio, again.audio), "the reference render does not repeat"
    assert ref.audio.shape == a.audio.shape and [c.tokens for c in ref.chunks] == [c.tokens for c in a.chunks]
    # The same function (the same draws, cast), in more precision: close, not equal. A different draw
    # or a dropped step would give an SNR near 0 dB.
    assert 60 < snr_db(ref.audio, a.audio) < math.inf
    # The loaded components are untouched: float32 still, and they render as before.
    assert _float32_everywhere(rt)
    assert np.array_equal(rt.render(TEXT, tokens, seed=21, **kw).audio, a.audio)
    # Another seed is another reference.
    assert not np.array_equal(rt.render(TEXT, tokens, seed=22, reference=True, **kw).audio, ref.audio)


def test_a_streamed_reference_render_follows_the_streamed_render(rt: Runtime, kw: dict[str, Any]) -> None:
    tokens = forced_tokens(rt.version, TWO_HOPS[rt.version], seed=4)
    a = rt.render(TEXT, tokens, seed=21, streamed=True, **kw)
    ref = rt.render(TEXT, tokens, seed=21, streamed=True, reference=True, **kw)
    assert [len(c.audio) for c in ref.chunks] == [len(c.audio) for c in a.chunks] and len(ref.chunks) == 3
    assert 60 < snr_db(ref.audio, a.audio) < math.inf


def test_a_mel_rounded_through_fp16_is_far_from_the_reference(rt: Runtime, kw: dict[str, Any]) -> None:
    """The point of the reference: a lower-precision step shows as a much larger error against it."""
    tokens = forced_tokens(rt.version, TWO_HOPS[rt.version], seed=4)
    ref = rt.render(TEXT, tokens, seed=21, reference=True, **kw)
    clean = snr_db(ref.audio, rt.render(TEXT, tokens, seed=21, **kw).audio)
    flow = rt.flow
    inference = flow.inference

    def fp16_mel(*args: Any, **kwargs: Any) -> Any:
        mel, cache = inference(*args, **kwargs)
        return mel.half().float(), cache

    flow.inference = fp16_mel   # an instance attribute of this test's runtime, removed below
    try:
        rounded = snr_db(ref.audio, rt.render(TEXT, tokens, seed=21, **kw).audio)
    finally:
        del flow.inference
    assert "inference" not in vars(flow)
    assert rounded < clean - 20, f"fp16-rounded mel: {rounded:.1f} dB vs {clean:.1f} dB for the fp32 render"


def test_a_reference_render_needs_a_seed(rt: Runtime, kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match=r"reference=True with seed=None: a reference render needs a seed"):
        rt.render(TEXT, [1, 2, 3], reference=True, **kw)
    with pytest.raises(InvalidInput, match=r"reference='yes': expected True or False"):
        rt.render(TEXT, [1, 2, 3], seed=1, reference="yes", **kw)  # type: ignore[arg-type]


def test_rendering_a_seeded_synthesis_tokens_gives_audio_of_its_length(rt: Runtime, kw: dict[str, Any]) -> None:
    syn = rt.synthesize(TEXT, seed=9, **kw)
    assert syn.stats.sentences == 1 and syn.stats.speech_tokens
    again = rt.render(TEXT, syn.stats.speech_tokens, seed=9, **kw)
    assert len(again.audio) == len(syn.audio)
    if rt.version == 2:
        # The v2 flow draws nothing, so the mel is the synthesis's; only the vocoder's noise (drawn under
        # another name) differs: the audio is close, not equal.
        assert not np.array_equal(again.audio, syn.audio)


def test_tokens_as_a_numpy_array_render_as_the_list(rt: Runtime, kw: dict[str, Any]) -> None:
    tokens = forced_tokens(rt.version, 30, seed=6)
    a = rt.render(TEXT, tokens, seed=1, **kw)
    b = rt.render(TEXT, np.array(tokens, dtype=np.int64), seed=1, **kw)
    assert np.array_equal(a.audio, b.audio)


@pytest.mark.parametrize("bad, says", [
    ([], "empty"),
    ("1 2 3", "got str"),
    ([1, 2.5], r"tokens\[1\]=2.5: not a whole number"),
    ([True], r"tokens\[0\]=True: not a whole number"),
    ([0, -1], r"tokens\[1\]=-1: outside the speech vocabulary"),
    (np.zeros((2, 3), dtype=np.int64), r"shape \(2, 3\)"),
    (None, "got NoneType"),
])
def test_bad_tokens_are_refused_with_the_valid_range(rt: Runtime, kw: dict[str, Any], bad: Any, says: str) -> None:
    top = SPEECH_VOCAB[rt.version] - 1
    with pytest.raises(InvalidInput, match=says) as e:
        rt.render(TEXT, bad, **kw)
    assert f"from 0 to {top}" in str(e.value)


def test_a_token_past_the_vocabulary_is_named(rt: Runtime, kw: dict[str, Any]) -> None:
    vocab = SPEECH_VOCAB[rt.version]
    assert rt.speech_vocab == vocab
    with pytest.raises(InvalidInput, match=rf"tokens\[2\]={vocab}: outside the speech vocabulary.*0 to {vocab - 1}"):
        rt.render(TEXT, [1, 2, vocab], **kw)
    with pytest.raises(InvalidInput, match="streamed=1"):
        rt.render(TEXT, [1, 2, 3], streamed=1, **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="seed"):
        rt.render(TEXT, [1, 2, 3], seed=-1, **kw)


def test_sampling_top_k_is_the_yaml_value(rt: Runtime) -> None:
    assert rt.sampling_top_k == TOP_K


def test_the_speaker_embedding_is_campplus_on_16k_audio(rt: Runtime, voice: Path) -> None:
    import soundfile as sf

    audio, rate = sf.read(voice, dtype="float32")
    assert rt.has_campplus
    emb = rt.speaker_embedding(audio, rate)
    assert emb.ndim == 1 and emb.dtype == np.float32 and emb.size > 0 and np.isfinite(emb).all()
    again = rt.speaker_embedding(audio.copy(), rate)
    cos = float(np.dot(emb, again) / (np.linalg.norm(emb) * np.linalg.norm(again)))
    assert cos == pytest.approx(1.0, abs=1e-6)
    # The prompt's embedding (what the frontend conditions the model on) is the same computation.
    prompt = rt.plan("Hi.", prompt_wav=str(voice)).inputs[0]
    assert np.allclose(prompt.flow_embedding.reshape(-1).numpy(), emb, atol=1e-5)  # type: ignore[union-attr]
    # Resampled to 16 kHz first: the same recording at 24 kHz gives (nearly) the same embedding.
    import torchaudio.functional as AF

    up = AF.resample(torch.from_numpy(audio), rate, 24000).numpy()
    e24 = rt.speaker_embedding(up, 24000)
    assert float(np.dot(emb, e24) / (np.linalg.norm(emb) * np.linalg.norm(e24))) > 0.99
    # And another voice gives another embedding.
    other = rt.speaker_embedding(np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3, 16000)
    assert not np.allclose(other, emb)


@pytest.mark.parametrize("audio, rate, says", [
    (np.zeros(0, np.float32), 16000, "no samples"),
    (np.full(16000, np.nan, np.float32), 16000, "NaN or infinite"),
    (np.zeros((2, 16000), np.float32), 16000, r"shape \(2, 16000\); expected mono"),
    (np.zeros(16000, np.float32), 0, "sample_rate=0: expected a positive"),
    (np.zeros(16000, np.float32), -16000, "sample_rate=-16000"),
    (np.zeros(16000, np.float32), 16000.0, "sample_rate=16000.0"),
    (np.zeros(16000, np.int16), 16000, "dtype int16; expected float"),
    (np.zeros(800, np.float32), 16000, "50.0 ms at 16000 Hz; expected at least 100 ms"),
    ([0.0] * 16000, 16000, "expected a numpy array"),
])
def test_bad_audio_for_the_speaker_embedding_is_refused(rt: Runtime, audio: Any, rate: Any, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        rt.speaker_embedding(audio, rate)


def test_default_float_makes_dtype_less_float_factories_in_its_dtype_only() -> None:
    from cosyvoice_runtime.token2wav import DefaultFloat

    with DefaultFloat(torch.float64):
        made = [torch.zeros(3), torch.ones(2, 2), torch.tensor([0.5]), torch.arange(0.0, 1.0, 0.25),
                torch.full((2,), 1.5)]
        kept = [torch.zeros(3, dtype=torch.float32), torch.tensor([1, 2]), torch.arange(4), torch.rand(3)]
    assert all(t.dtype == torch.float64 for t in made)
    assert [t.dtype for t in kept] == [torch.float32, torch.int64, torch.int64, torch.float32]
    assert torch.get_default_dtype() == torch.float32 and torch.zeros(1).dtype == torch.float32


def test_the_reference_runs_the_components_own_code_not_a_stand_in_on_the_loaded_instance(
        tiny_v2_dir: Path, voice: Path) -> None:
    """A defect injected on the loaded vocoder's instance before the first reference render (as the quality
    gate's tests do) is not copied into the reference: the reference stays the clean computation."""
    kw = dict(prompt_wav=str(voice), prompt_text=PROMPT_TEXT)
    clean_rt = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
    tokens = forced_tokens(2, 60, seed=3)
    clean = clean_rt.render(TEXT, tokens, seed=21, reference=True, **kw).audio

    rt = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
    loaded = rt.hift.inference

    def silenced(*args: Any, **kwargs: Any) -> Any:
        speech, source = loaded(*args, **kwargs)
        return speech * 0, source

    rt.hift.inference = silenced
    try:
        assert not np.any(rt.render(TEXT, tokens, seed=21, **kw).audio)      # the defect is on the render
        assert np.array_equal(rt.render(TEXT, tokens, seed=21, reference=True, **kw).audio, clean)
    finally:
        del rt.hift.inference
