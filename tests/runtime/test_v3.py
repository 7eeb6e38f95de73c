"""CosyVoice3 (v3) through the public API, with stand-in DiT flow and CausalHiFT (tests/runtime/v3_standins.py):
the packaged upstream components have neither. The directory is the tiny v2 one (real Qwen2 LLM,
ONNX frontends, tokenizer) with a cosyvoice3.yaml whose flow and hift are the stand-ins.

Because the stand-ins are deterministic and causal, streamed audio must equal the whole-utterance
audio sample for sample; that pins the v3 renderer's chunk schedule, its mel accumulation and the
speech offset it cuts the re-vocoded audio at."""
from __future__ import annotations

import re
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import cosyvoice_runtime
from cosyvoice_runtime import InvalidInput, Runtime
from cosyvoice_runtime.loader import detect_version
from pytest_cosyvoice.faults import forced_llm, forced_tokens

from .helpers import llm_threads
from .v3_standins import CausalHiFTStandIn, FlowStandIn

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning", "error::FutureWarning",
                                        "error::PendingDeprecationWarning")

# flow.pt / hift.pt hold weights from these seeds; the yaml builds the modules with their default
# seeds, so only a working strict load gives the audio the tests expect.
FLOW_SEED, HIFT_SEED = 11, 12
SAMPLES_PER_FRAME = 480
LOOK_RIGHT = 3     # mel frames the stand-in vocoder holds back on a non-final call
LOOKAHEAD = 3      # flow pre_lookahead_len (tokens)
RATIO = 2          # token_mel_ratio
TOKENS = forced_tokens(3, 230, seed=30)

FLOW_YAML = """flow: !new:{module}.FlowStandIn
    vocab_size: 6561
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: {lookahead}
    input_frame_rate: !ref <token_frame_rate>

"""
HIFT_YAML = """hift: !new:{module}.CausalHiFTStandIn
    in_channels: 80
    samples_per_frame: {spf}
    look_right: {look_right}
    sampling_rate: !ref <sample_rate>

"""


def replace_top_level_block(text: str, key: str, block: str) -> str:
    """Swaps the yaml entry ``key:`` (its line and the indented lines under it) for ``block``."""
    pattern = re.compile(rf"^{key}:.*?(?=^\S)", re.M | re.S)
    new, n = pattern.subn(lambda _: block, text)
    assert n == 1, f"expected one top-level {key!r} entry in the v2 yaml, found {n}"
    return new


@pytest.fixture(scope="session")
def tiny_v3_dir(tiny_v2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A v3 model directory: the tiny v2 one with cosyvoice3.yaml naming the stand-ins."""
    # hyperpyyaml resolves "!new:" names with pydoc.locate, which finds this module under the name
    # it was imported as (it is in sys.modules already: this file imported it).
    module = FlowStandIn.__module__
    assert CausalHiFTStandIn.__module__ == module
    out = tmp_path_factory.mktemp("v3") / "cosyvoice3-standin"
    shutil.copytree(tiny_v2_dir, out, ignore=shutil.ignore_patterns(
        "cosyvoice2.yaml", "flow.pt", "hift.pt", "speech_tokenizer_v2.onnx", ".*"))
    shutil.copyfile(tiny_v2_dir / "speech_tokenizer_v2.onnx", out / "speech_tokenizer_v3.onnx")
    text = (tiny_v2_dir / "cosyvoice2.yaml").read_text(encoding="utf-8")
    text = replace_top_level_block(text, "flow", FLOW_YAML.format(module=module, lookahead=LOOKAHEAD))
    text = replace_top_level_block(text, "hift", HIFT_YAML.format(module=module, spf=SAMPLES_PER_FRAME,
                                                                   look_right=LOOK_RIGHT))
    header = "# CosyVoice3 layout for tests: tiny v2 LLM and frontends, stand-in DiT flow and CausalHiFT\n"
    (out / "cosyvoice3.yaml").write_text(header + text, encoding="utf-8")
    torch.save(FlowStandIn(seed=FLOW_SEED).state_dict(), out / "flow.pt")
    torch.save(CausalHiFTStandIn(seed=HIFT_SEED).state_dict(), out / "hift.pt")
    return out


@pytest.fixture(scope="module")
def v3(tiny_v3_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v3_dir, device="cpu")


@pytest.fixture
def llm_calls(v3: Runtime) -> Iterator[Callable[[list[int]], list[dict[str, Any]]]]:
    """``force(tokens)`` makes the LLM yield exactly ``tokens`` and returns the list its calls' kwargs go to."""

    def force(tokens: list[int]) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        gen = forced_llm(tokens)

        def inference(**kw: Any) -> Iterator[int]:
            calls.append(kw)
            return gen(**kw)

        v3.llm.inference = inference  # type: ignore[method-assign]
        return calls

    yield force
    v3.llm.__dict__.pop("inference", None)


def mode_kwargs(rt: Runtime, voice: Path, source: Path) -> dict[str, dict[str, Any]]:
    return {
        "sft": dict(speaker=rt.speakers[0]),
        "zero_shot": dict(prompt_wav=voice, prompt_text="A short prompt sentence."),
        "cross_lingual": dict(prompt_wav=voice),
        "instruct": dict(instruct="Speak calmly.", prompt_wav=voice),
        "vc": dict(source_wav=source, prompt_wav=voice),
    }


def reference_audio(tokens: list[int], embedding: torch.Tensor, speed: float = 1.0) -> np.ndarray:
    """The stand-in vocoder on the stand-in flow's mel of all tokens at once, computed here from
    freshly built stand-ins with the saved weights' seeds (not through the runtime)."""
    flow, hift = FlowStandIn(seed=FLOW_SEED).eval(), CausalHiFTStandIn(seed=HIFT_SEED).eval()
    tok = torch.tensor([tokens], dtype=torch.int32)
    none = torch.zeros(1, 0, dtype=torch.int32)
    with torch.inference_mode():
        mel, _ = flow.inference(token=tok, token_len=torch.tensor([len(tokens)], dtype=torch.int32),
                                prompt_token=none, prompt_token_len=torch.tensor([0], dtype=torch.int32),
                                prompt_feat=torch.zeros(1, 0, 80), prompt_feat_len=torch.tensor([0], dtype=torch.int32),
                                embedding=embedding, streaming=False, finalize=True)
        assert mel.shape == (1, 80, RATIO * len(tokens))
        if speed != 1.0:
            mel = F.interpolate(mel, size=int(mel.shape[2] / speed), mode="linear")
        speech, _ = hift.inference(speech_feat=mel, finalize=True)
    return speech.squeeze(0).numpy()


def flow_embedding(rt: Runtime, tiny_v3_dir: Path, voice: Path | None = None) -> torch.Tensor:
    """The speaker embedding the flow should get: spk2info.pt's first speaker (sft), else the prompt's."""
    if voice is None:
        info = torch.load(tiny_v3_dir / "spk2info.pt", map_location="cpu", weights_only=True)
        return info[rt.speakers[0]]["embedding"].float().reshape(1, -1)
    return rt.frontend.prompt(voice).embedding


def expected_hops(n_tokens: int, prompt_tokens: int) -> list[int]:
    """v2/v3 schedule for the runtime's defaults: the first hop 25 padded so prompt + hop fill whole
    hops of 25, then 50, 100, 100, ...; a chunk needs its hop + 3 look-ahead tokens; the rest closes."""
    first = 25 + (-prompt_tokens) % 25
    hops, offset, hop, nxt = [], 0, 25, first
    while offset + nxt + LOOKAHEAD <= n_tokens:
        hops.append(nxt)
        offset += nxt
        hop = min(100, hop * 2)
        nxt = hop
    return hops + [n_tokens - offset]


# -- loading ---------------------------------------------------------------------------------------
def test_directory_loads_as_v3(v3: Runtime, tiny_v3_dir: Path) -> None:
    assert not (tiny_v3_dir / "cosyvoice2.yaml").exists()
    assert detect_version(tiny_v3_dir) == (tiny_v3_dir / "cosyvoice3.yaml", 3)
    assert (v3.version, v3.sample_rate) == (3, 24000)
    assert isinstance(v3.flow, FlowStandIn) and isinstance(v3.hift, CausalHiFTStandIn)
    assert (v3.flow.token_mel_ratio, v3.flow.pre_lookahead_len, v3.flow.input_frame_rate) == (RATIO, LOOKAHEAD, 25)
    assert type(v3.llm).__name__ == "Qwen2LM"  # the real tiny LLM of the v2 directory
    assert v3.speakers
    # flow.pt / hift.pt were loaded (strict keys) over the yaml-built modules' own init.
    for module, name, fresh in ((v3.flow, "flow.pt", FlowStandIn()), (v3.hift, "hift.pt", CausalHiFTStandIn())):
        saved = torch.load(tiny_v3_dir / name, map_location="cpu", weights_only=True)
        state = module.state_dict()
        assert sorted(saved) == sorted(state) == sorted(fresh.state_dict())
        for k, v in saved.items():
            assert torch.equal(state[k], v), f"{name}: {k} differs from the file"
        assert not torch.equal(fresh.state_dict()["proj.weight"], state["proj.weight"])


def test_v1_instruct_form_is_rejected_on_v3(v3: Runtime) -> None:
    # v3 instructs like v2 (instruct + prompt_wav); v1's speaker + instruct names no v3 mode.
    with pytest.raises(InvalidInput, match="v3"):
        v3.stream("Hello.", speaker=v3.speakers[0], instruct="Speak calmly.")


# -- streaming == whole, and the schedule ----------------------------------------------------------
@pytest.mark.parametrize("mode", ["sft", "zero_shot"])
def test_stream_schedule_and_audio_equal_whole_utterance(v3: Runtime, tiny_v3_dir: Path, voice: Path, source: Path,
                                                          llm_calls: Callable, mode: str) -> None:
    kw = mode_kwargs(v3, voice, source)[mode]
    p = 0 if mode == "sft" else v3.frontend.prompt(voice).speech_token.shape[1]
    if mode == "zero_shot":
        assert p % 25 != 0, "the prompt should need a pad, so the padded first hop is exercised"
    llm_calls(TOKENS)
    chunks = list(v3.stream("x", **kw))
    llm_calls(TOKENS)
    whole = v3.synthesize("x", **kw)
    assert v3.active_requests == 0

    hops = [c.tokens for c in chunks]
    assert hops == expected_hops(len(TOKENS), p)
    # literal check of the same schedule, so a shared mistake in expected_hops cannot hide
    pad = (-p) % 25
    assert hops == [25 + pad, 50, 100, len(TOKENS) - 175 - pad]
    assert sum(hops) == len(TOKENS) == whole.stats.tokens
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.sample_rate == 24000 and c.audio.dtype == np.float32 for c in chunks)

    # Samples per chunk: its tokens' frames, minus the vocoder's held-back frames on the first
    # chunk, plus them on the last.
    sizes = [RATIO * h * SAMPLES_PER_FRAME for h in hops]
    sizes[0] -= LOOK_RIGHT * SAMPLES_PER_FRAME
    sizes[-1] += LOOK_RIGHT * SAMPLES_PER_FRAME
    assert [c.audio.size for c in chunks] == sizes

    streamed = np.concatenate([c.audio for c in chunks])
    assert len(whole.chunks) == 1 and whole.chunks[0].tokens == len(TOKENS)
    assert streamed.size == whole.audio.size == RATIO * len(TOKENS) * SAMPLES_PER_FRAME
    np.testing.assert_allclose(streamed, whole.audio, rtol=0, atol=1e-6)
    ref = reference_audio(TOKENS, flow_embedding(v3, tiny_v3_dir, None if mode == "sft" else voice))
    np.testing.assert_allclose(whole.audio, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(streamed, ref, rtol=0, atol=1e-6)


def test_short_utterance_streams_one_closing_chunk(v3: Runtime, tiny_v3_dir: Path, llm_calls: Callable) -> None:
    tokens = TOKENS[:27]  # fewer than hop + look-ahead: no streamed chunk, only the closing one
    llm_calls(tokens)
    chunks = list(v3.stream("x", speaker=v3.speakers[0]))
    assert [c.tokens for c in chunks] == [27]
    emb = flow_embedding(v3, tiny_v3_dir)
    np.testing.assert_allclose(chunks[0].audio, reference_audio(tokens, emb), rtol=0, atol=1e-6)


def test_stream_exactly_hop_plus_lookahead_tokens(v3: Runtime, tiny_v3_dir: Path, llm_calls: Callable) -> None:
    tokens = TOKENS[:28]  # one streamed chunk of 25, then a closing chunk of the 3 look-ahead tokens
    llm_calls(tokens)
    chunks = list(v3.stream("x", speaker=v3.speakers[0]))
    assert [c.tokens for c in chunks] == [25, 3]
    assert [c.audio.size for c in chunks] == [(50 - LOOK_RIGHT) * 480, (6 + LOOK_RIGHT) * 480]
    emb = flow_embedding(v3, tiny_v3_dir)
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), reference_audio(tokens, emb),
                               rtol=0, atol=1e-6)


def test_bounded_flow_context_gives_the_same_audio(v3: Runtime, tiny_v3_dir: Path, llm_calls: Callable) -> None:
    # The stand-in flow is position-local, so flowing only the last ~K tokens must not change a sample:
    # this pins the context slicing and the mel cut of bounded-context mode on the v3 path.
    before = v3.settings
    try:
        v3.configure(flow_context_tokens=30)
        llm_calls(TOKENS)
        chunks = list(v3.stream("x", speaker=v3.speakers[0]))
    finally:
        v3.settings = before
    assert [c.tokens for c in chunks] == [25, 50, 100, 55]
    emb = flow_embedding(v3, tiny_v3_dir)
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), reference_audio(TOKENS, emb),
                               rtol=0, atol=1e-6)


def test_flow_calls_follow_upstream_v3(v3: Runtime, voice: Path, llm_calls: Callable,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Non-final chunks: streaming=True, finalize=False, tokens up to offset + hop + look-ahead; the
    closing call: streaming=False, finalize=True on every token; the prompt on every call."""
    seen: list[tuple[int, bool, bool, int]] = []
    real = v3.flow.inference

    def spy(**kw: Any) -> Any:
        seen.append((kw["token"].shape[1], kw["streaming"], kw["finalize"], kw["prompt_token"].shape[1]))
        return real(**kw)

    monkeypatch.setattr(v3.flow, "inference", spy)
    p = v3.frontend.prompt(voice).speech_token.shape[1]
    pad = (-p) % 25
    llm_calls(TOKENS)
    list(v3.stream("x", prompt_wav=voice, prompt_text="A short prompt sentence."))
    first = 25 + pad
    assert seen == [(first + 3, True, False, p), (first + 50 + 3, True, False, p),
                    (first + 150 + 3, True, False, p), (len(TOKENS), False, True, p)]


# -- speed, closing, modes, warnings ---------------------------------------------------------------
def test_speed_changes_duration(v3: Runtime, tiny_v3_dir: Path, llm_calls: Callable) -> None:
    spk = v3.speakers[0]
    llm_calls(TOKENS)
    normal = v3.synthesize("x", speaker=spk)
    llm_calls(TOKENS)
    fast = v3.synthesize("x", speaker=spk, speed=1.25)
    frames = RATIO * len(TOKENS)
    assert normal.audio.size == frames * 480
    assert fast.audio.size == int(frames / 1.25) * 480
    assert fast.stats.tokens == normal.stats.tokens == len(TOKENS)
    emb = flow_embedding(v3, tiny_v3_dir)
    np.testing.assert_allclose(fast.audio, reference_audio(TOKENS, emb, speed=1.25), rtol=0, atol=1e-6)
    with pytest.raises(InvalidInput, match="speed"):
        v3.stream("x", speaker=spk, speed=1.25)


def test_closing_after_one_chunk_releases_the_request(v3: Runtime, llm_calls: Callable) -> None:
    calls = llm_calls(TOKENS * 4)
    # slow the forced LLM so that it is still producing when the stream is closed
    gen = v3.llm.inference

    def slow(**kw: Any) -> Iterator[int]:
        for tok in gen(**kw):
            time.sleep(0.002)
            yield tok

    v3.llm.inference = slow  # type: ignore[method-assign]
    it = v3.stream("x", speaker=v3.speakers[0])
    try:
        first = next(it)
        held = v3.active_requests
    finally:
        it.close()
    assert v3.active_requests == 0
    assert held == 1
    assert first.tokens == 25 and first.audio.size == (50 - LOOK_RIGHT) * 480
    deadline = time.monotonic() + 5
    while llm_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not llm_threads(), [t.name for t in threading.enumerate()]
    assert len(calls) == 1


@pytest.mark.parametrize("mode", ["sft", "zero_shot", "cross_lingual", "instruct", "vc"])
def test_every_mode_resolves_on_v3(v3: Runtime, voice: Path, source: Path, llm_calls: Callable, mode: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[int] = []
    real = v3.flow.inference

    def spy(**kw: Any) -> Any:
        prompts.append(kw["prompt_token"].shape[1])
        return real(**kw)

    monkeypatch.setattr(v3.flow, "inference", spy)
    calls = llm_calls(TOKENS[:120])
    chunks = list(v3.stream("Hello world, this is a test.", **mode_kwargs(v3, voice, source)[mode]))
    assert chunks and all(c.audio.size > 0 and np.isfinite(c.audio).all() for c in chunks)
    assert v3.active_requests == 0
    p = v3.frontend.prompt(voice).speech_token.shape[1]
    assert set(prompts) == ({0} if mode == "sft" else {p})
    if mode == "vc":
        assert calls == []  # the source's speech tokens are the tokens; no LLM
        src = v3.frontend.build("vc", None, speaker=None, prompt_wav=voice, prompt_text=None, instruct=None,
                                source_wav=source).source_speech_token
        assert sum(c.tokens for c in chunks) == src.shape[1] > 0
        return
    assert len(calls) == 1
    llm_prompt = calls[0]["prompt_speech_token"].shape[1]
    prompt_text = calls[0]["prompt_text"].flatten().tolist()
    # zero-shot: the prompt's speech tokens go to the LLM; instruct: the instruction text does, no speech
    assert llm_prompt == (p if mode == "zero_shot" else 0)
    if mode == "instruct":
        assert prompt_text == v3.frontend.encode("Speak calmly.<|endofprompt|>")
    elif mode == "zero_shot":
        assert prompt_text == v3.frontend.encode("A short prompt sentence.")
    else:
        assert prompt_text == []
    assert sum(c.tokens for c in chunks) == 120


@pytest.mark.parametrize("instruct", ["Speak calmly.", "Speak calmly.<|endofprompt|>"])
def test_instruct_ends_with_one_end_of_prompt_marker(v3: Runtime, voice: Path, llm_calls: Callable,
                                                     instruct: str) -> None:
    """CosyVoice3 users write the marker themselves (upstream's v3 examples do); it is added only when missing."""
    calls = llm_calls(TOKENS[:30])
    list(v3.stream("Hello.", instruct=instruct, prompt_wav=voice))
    assert calls[0]["prompt_text"].flatten().tolist() == v3.frontend.encode("Speak calmly.<|endofprompt|>")


def test_real_tiny_llm_drives_the_v3_path(v3: Runtime, voice: Path) -> None:
    torch.manual_seed(0)
    syn = v3.synthesize("Hello world.", instruct="Speak calmly.", prompt_wav=voice)
    assert syn.stats.tokens > 0
    assert syn.audio.size == RATIO * syn.stats.tokens * SAMPLES_PER_FRAME
    torch.manual_seed(0)
    chunks = list(v3.stream("Hello world.", prompt_wav=voice, prompt_text="A short prompt sentence."))
    assert chunks and sum(c.tokens for c in chunks) > 0
    assert sum(c.audio.size for c in chunks) == RATIO * sum(c.tokens for c in chunks) * SAMPLES_PER_FRAME
    assert v3.active_requests == 0


def test_no_deprecation_warning_on_the_v3_path(tiny_v3_dir: Path, voice: Path) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rt = cosyvoice_runtime.load(tiny_v3_dir, device="cpu")
        rt.llm.inference = forced_llm(TOKENS)  # type: ignore[method-assign]
        list(rt.stream("Warnings check.", prompt_wav=voice, prompt_text="A short prompt sentence."))
        rt.synthesize("Warnings check.", speaker=rt.speakers[0], speed=1.25)
        list(rt.stream("Warnings check.", instruct="Speak calmly.", prompt_wav=voice))
    bad = [w for w in seen if issubclass(w.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning))]
    assert not bad, [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in bad]
