"""Stream and non-stream synthesis on the tiny v1 and v2 models, every mode they support."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import cosyvoice_runtime
from cosyvoice_runtime import Chunk, Runtime

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning", "error::FutureWarning",
                                        "error::PendingDeprecationWarning")


@pytest.fixture(scope="module")
def v2(tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


@pytest.fixture(scope="module")
def v1(tiny_v1_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v1_dir, device="cpu")


@pytest.fixture(scope="module")
def v1_instruct(tiny_v1_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    # Upstream enables v1 instruct by '-Instruct' in the model path; the tiny v1 weights under that name.
    link = tmp_path_factory.mktemp("models") / "CosyVoice-300M-Instruct-tiny"
    link.symlink_to(tiny_v1_dir, target_is_directory=True)
    return cosyvoice_runtime.load(link, device="cpu")


def modes(rt: Runtime, voice: Path, source: Path) -> dict[str, dict]:
    spk = rt.speakers[0]
    out = {
        "sft": dict(speaker=spk),
        "zero_shot": dict(prompt_wav=voice, prompt_text="A short prompt sentence."),
        "cross_lingual": dict(prompt_wav=voice),
        "vc": dict(source_wav=source, prompt_wav=voice),
    }
    out["instruct"] = dict(speaker=spk, instruct="Speak calmly.") if rt.version == 1 else \
        dict(instruct="Speak calmly.", prompt_wav=voice)
    return out


def check_stream(rt: Runtime, chunks: list[Chunk]) -> None:
    assert chunks, "no chunk"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.audio.dtype == np.float32 and c.audio.ndim == 1 and c.audio.size > 0
        assert c.sample_rate == rt.sample_rate
        assert np.isfinite(c.audio).all()


@pytest.mark.parametrize("mode", ["sft", "zero_shot", "cross_lingual", "instruct", "vc"])
@pytest.mark.parametrize("version", [1, 2])
def test_every_mode_streams_and_synthesizes(request: pytest.FixtureRequest, version: int, mode: str,
                                            voice: Path, source: Path) -> None:
    rt: Runtime = request.getfixturevalue("v1_instruct" if (version, mode) == (1, "instruct") else f"v{version}")
    kw = modes(rt, voice, source)[mode]
    text = "Hello world, this is a test."
    chunks = list(rt.stream(text, **kw))
    check_stream(rt, chunks)
    syn = rt.synthesize(text, **kw)
    assert syn.sample_rate == rt.sample_rate and syn.audio.size > 0
    assert syn.stats.tokens > 0 and syn.stats.rtf is not None
    assert rt.active_requests == 0


def test_v2_streams_several_chunks_and_tokens_add_up(v2: Runtime, voice: Path) -> None:
    it = v2.stream("This sentence is long enough to need several chunks of streamed speech output.",
                   prompt_wav=voice, prompt_text="A short prompt sentence.")
    chunks = list(it)
    assert len(chunks) >= 2
    total = sum(c.tokens for c in chunks)
    # v2: 2 mel frames per token, 480 samples per frame
    samples = sum(c.audio.size for c in chunks)
    assert abs(samples - total * 960) <= 960


def test_sentences_stream_in_turn(v2: Runtime) -> None:
    spk = v2.speakers[0]
    one = v2.synthesize("The first sentence is here.", speaker=spk, text_frontend=False)
    two = v2.synthesize("The first sentence is here. " * 4 + "And then a second, different one follows!",
                        speaker=spk)
    assert two.stats.sentences >= 2
    assert one.stats.sentences == 1


def test_streaming_text_input_v2(v2: Runtime, voice: Path) -> None:
    pieces = iter(["Hello ", "there, ", "this text ", "arrives in pieces."])
    it = v2.stream(pieces, prompt_wav=voice, prompt_text="A short prompt sentence.")
    # upstream's bistream decoder rarely ends on a random LLM (it ran past 1000 tokens): take three
    # chunks, which proves text pieces turn into streamed speech, then walk away.
    chunks = [next(it) for _ in range(3)]
    it.close()
    check_stream(v2, chunks)
    assert chunks[0].tokens >= 25 and chunks[1].tokens == 50
    assert v2.active_requests == 0


def test_speed_changes_duration(v2: Runtime) -> None:
    spk = v2.speakers[0]
    import torch

    torch.manual_seed(3)
    normal = v2.synthesize("Speed test sentence.", speaker=spk)
    v2_tokens = normal.stats.tokens
    torch.manual_seed(3)
    fast = v2.synthesize("Speed test sentence.", speaker=spk, speed=1.5)
    assert fast.stats.tokens == v2_tokens
    assert fast.audio.size < normal.audio.size * 0.8


def test_no_deprecation_warning_on_any_runtime_path(v2: Runtime, voice: Path) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        list(v2.stream("Warnings check.", prompt_wav=voice, prompt_text="A short prompt sentence."))
        v2.synthesize("Warnings check.", speaker=v2.speakers[0])
    bad = [w for w in seen if issubclass(w.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning))]
    assert not bad, [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in bad]


def test_runtime_attributes(v1: Runtime, v2: Runtime) -> None:
    assert (v1.version, v1.sample_rate) == (1, 22050)
    assert (v2.version, v2.sample_rate) == (2, 24000)
    assert v2.speakers and v1.speakers
    for rt in (v1, v2):
        assert all(hasattr(rt, name) for name in ("llm", "flow", "hift"))
