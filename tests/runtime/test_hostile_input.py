"""Hostile but realistic inputs through the public API on the embedded tiny models: each is refused
where it enters, with an error naming the value and what was expected (no traceback from torch,
numpy, threading or soundfile), and no generation runs without end."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import cosyvoice_runtime
from cosyvoice_runtime import InvalidInput, Runtime, TokenLimitExceeded

TIMEOUT_MSG = r"expected a positive number of seconds, finite and at most 86400"


@pytest.fixture(scope="module")
def rt(tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


# -- timeouts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -2.0, 1e12])
def test_load_refuses_bad_stall_timeout(tiny_v2_dir: Path, value: float) -> None:
    with pytest.raises(InvalidInput, match=rf"^stall_timeout_s={value!r}: {TIMEOUT_MSG}$"):
        cosyvoice_runtime.load(tiny_v2_dir, device="cpu", stall_timeout_s=value)


@pytest.mark.parametrize("name", ["stall_timeout_s", "join_timeout_s"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -1])
def test_configure_refuses_bad_timeouts(rt: Runtime, name: str, value: float) -> None:
    before = rt.settings
    with pytest.raises(InvalidInput, match=rf"^{name}={value!r}: {TIMEOUT_MSG}$"):
        rt.configure(**{name: value})
    assert rt.settings == before


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.5, True])
def test_configure_refuses_bad_scale_factor(rt: Runtime, value: float) -> None:
    with pytest.raises(InvalidInput, match=rf"stream_scale_factor={value!r}: expected a finite number >= 1"):
        rt.configure(stream_scale_factor=value)


# -- prompt and source audio ---------------------------------------------------------------------------
def clip(voice: Path, tmp_path: Path, seconds: float, name: str = "clip.wav") -> Path:
    x, rate = sf.read(voice, dtype="float32")
    out = tmp_path / name
    sf.write(out, x[: round(rate * seconds)], rate)
    return out


def poisoned(voice: Path, tmp_path: Path, value: float) -> Path:
    x, rate = sf.read(voice, dtype="float32")
    x[rate // 2] = value  # one sample at 0.5 s
    out = tmp_path / "poisoned.wav"
    sf.write(out, x, rate, subtype="FLOAT")
    return out


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_prompt_with_non_finite_samples(rt: Runtime, voice: Path, tmp_path: Path, value: float) -> None:
    p = poisoned(voice, tmp_path, value)
    with pytest.raises(InvalidInput, match=r"^prompt_wav='.*poisoned.wav': 1 samples are NaN or infinite "
                                           r"\(the first at 0.500 s\); expected finite audio samples$"):
        rt.stream("Hello.", prompt_wav=p, prompt_text="A prompt.")


def test_prompt_with_absurd_peak(rt: Runtime, voice: Path, tmp_path: Path) -> None:
    p = poisoned(voice, tmp_path, 1e30)
    with pytest.raises(InvalidInput, match=r"prompt_wav='.*': peak sample 1e\+30; expected samples within \+-100"):
        rt.synthesize("Hello.", prompt_wav=p)


def test_source_with_nan_in_voice_conversion(rt: Runtime, voice: Path, tmp_path: Path) -> None:
    p = poisoned(voice, tmp_path, float("nan"))
    with pytest.raises(InvalidInput, match=r"^source_wav='.*poisoned.wav': 1 samples are NaN or infinite"):
        rt.synthesize("", source_wav=p, prompt_wav=voice)


@pytest.mark.parametrize("seconds", [0.001, 0.02, 0.099])
def test_prompt_too_short(rt: Runtime, voice: Path, tmp_path: Path, seconds: float) -> None:
    p = clip(voice, tmp_path, seconds)
    ms = round(seconds * 1000)
    with pytest.raises(InvalidInput, match=rf"prompt_wav='.*clip.wav': {ms} ms long; prompt audio must be at least "
                                           r"100 ms \(the shortest the frontend can process\)"):
        rt.stream("Hello.", prompt_wav=p, prompt_text="A prompt.")


def test_source_too_short(rt: Runtime, voice: Path, tmp_path: Path) -> None:
    p = clip(voice, tmp_path, 0.02)
    with pytest.raises(InvalidInput, match=r"source_wav='.*': 20 ms long; prompt audio must be at least 100 ms"):
        rt.synthesize("", source_wav=p, prompt_wav=voice)


@pytest.mark.parametrize("version", [1, 2])
def test_shortest_prompt_is_processed(version: int, request: pytest.FixtureRequest, voice: Path,
                                      tmp_path: Path) -> None:
    model = cosyvoice_runtime.load(request.getfixturevalue(f"tiny_v{version}_dir"), device="cpu")
    p = clip(voice, tmp_path, 0.1)
    syn = model.synthesize("Hello there.", prompt_wav=p, prompt_text="Hi.")
    assert syn.audio.size > 0 and np.isfinite(syn.audio).all()


@pytest.mark.parametrize("value, kind", [(np.zeros(16000, np.float32), "ndarray"), (b"prompt.wav", "bytes"),
                                         (16000, "int")])
def test_prompt_that_is_not_a_path(rt: Runtime, value: object, kind: str) -> None:
    with pytest.raises(InvalidInput, match=rf"prompt_wav=.*: expected the path of an audio file "
                                           rf"\(str or os.PathLike\), got {kind}"):
        rt.stream("Hello.", prompt_wav=value)


def test_prompt_that_is_a_directory(rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"prompt_wav='.*': is a directory; expected an audio file"):
        rt.stream("Hello.", prompt_wav=tmp_path)


# -- request arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize("speed", ["fast", float("nan"), 3.0, True, None])
def test_stream_names_an_invalid_speed_first(rt: Runtime, speed: object) -> None:
    with pytest.raises(InvalidInput, match=rf"^speed={speed!r}: expected a number from 0.5 to 2.0$"):
        rt.stream("Hello.", speaker=rt.speakers[0], speed=speed)


def test_stream_refuses_a_valid_speed_change(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"speed=1.5: speed change is only supported by synthesize"):
        rt.stream("Hello.", speaker=rt.speakers[0], speed=1.5)


@pytest.mark.parametrize("prompt_text", ["", "   \n"])
def test_empty_prompt_text_is_refused_not_zero_shot(rt: Runtime, voice: Path, prompt_text: str) -> None:
    with pytest.raises(InvalidInput, match=rf"^prompt_text={re.escape(repr(prompt_text))}: empty transcript; "
                                           r"give the words spoken in prompt_wav \(zero-shot\), or leave prompt_text "
                                           r"out \(None\) for cross-lingual mode$"):
        rt.synthesize("Hello.", prompt_wav=voice, prompt_text=prompt_text)


def test_empty_instruct_is_refused(rt: Runtime, voice: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^instruct=' ': empty instruction"):
        rt.synthesize("Hello.", prompt_wav=voice, instruct=" ")


@pytest.mark.parametrize("name, value", [("speaker", 3), ("prompt_text", b"hi"), ("instruct", ["calm"])])
def test_text_arguments_must_be_str(rt: Runtime, voice: Path, name: str, value: object) -> None:
    kw: dict[str, object] = {"speaker": dict(speaker=value), "prompt_text": dict(prompt_wav=voice, prompt_text=value),
                             "instruct": dict(prompt_wav=voice, instruct=value)}[name]
    with pytest.raises(InvalidInput, match=rf"^{name}={re.escape(repr(value))}: expected a str, "
                                           rf"got {type(value).__name__}$"):
        rt.stream("Hello.", **kw)


def test_text_over_the_maximum_is_refused_up_front(rt: Runtime) -> None:
    text = "A sentence of words. " * 1000  # 21,000 characters
    with pytest.raises(InvalidInput, match=r"^text of 21000 characters: at most 5000 per request; "
                                           r"split it into several requests"):
        rt.synthesize(text, speaker=rt.speakers[0])


def test_text_iterator_over_the_maximum_ends_the_stream(rt: Runtime, voice: Path) -> None:
    # One oversized piece: the tiny LLM pulls text only as it needs it, and the first piece is pulled first.
    it = rt.stream(iter(["x" * 6000]), prompt_wav=voice)
    with pytest.raises(InvalidInput, match=r"text iterator: 6000 characters received, at most 5000 per request"):
        list(it)
    assert rt.active_requests == 0


def test_text_without_tokens(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"text='': gives no text token; expected text with words"):
        rt.synthesize("", speaker=rt.speakers[0], text_frontend=False)


@pytest.fixture(scope="module")
def no_spk2info(tiny_v2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    d = tmp_path_factory.mktemp("models") / "nospk"
    d.mkdir()
    for entry in tiny_v2_dir.iterdir():
        if entry.name != "spk2info.pt":
            (d / entry.name).symlink_to(entry)
    return cosyvoice_runtime.load(d, device="cpu")


def test_model_without_spk2info_and_no_voice(no_spk2info: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"^no voice given: '.*nospk' has no spk2info.pt, so this model has no "
                                           r"built-in speaker; pass prompt_wav= \(cross-lingual, plus prompt_text= "
                                           r"for zero-shot"):
        no_spk2info.stream("Hello.")
    assert no_spk2info.modes == ["zero_shot", "cross_lingual", "instruct", "vc"]


def test_model_without_spk2info_and_a_speaker(no_spk2info: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"^speaker='alice': '.*nospk' has no spk2info.pt"):
        no_spk2info.stream("Hello.", speaker="alice")


def test_v1_instruct_needs_an_instruct_model(tiny_v1_dir: Path, tmp_path: Path) -> None:
    v1 = cosyvoice_runtime.load(tiny_v1_dir, device="cpu")
    assert "instruct" not in v1.modes
    with pytest.raises(InvalidInput, match=r"^instruct='Speak calmly.': '.*' is not a CosyVoice v1 Instruct model; "
                                           r"like upstream, v1 instruct needs a model directory whose path "
                                           r"contains '-Instruct'"):
        v1.stream("Hello.", speaker=v1.speakers[0], instruct="Speak calmly.")
    link = tmp_path / "CosyVoice-300M-Instruct"
    link.symlink_to(tiny_v1_dir, target_is_directory=True)
    assert "instruct" in cosyvoice_runtime.load(link, device="cpu").modes


# -- runaway generation ----------------------------------------------------------------------------------
CAP_MSG = (r"^request \d+: the LLM generated more than {cap} speech tokens for \d+ text tokens without ending the "
           r"utterance \(cap: 20 per text token, at least 20 s and at most 600 s of speech\)")


def test_bistream_runaway_ends_with_a_named_error(rt: Runtime, voice: Path) -> None:
    # Upstream's inference_bistream has no length cap; the tiny LLM never samples its fill token, so
    # without ours this stream never ends.
    pieces = iter(["Hello ", "there, ", "this text ", "arrives in pieces."])
    before = rt.settings
    rt.configure(token_hop_len=100, token_max_hop_len=400)  # few flow runs before the cap
    chunks = []
    try:
        with pytest.raises(TokenLimitExceeded, match=CAP_MSG.format(cap=500)):
            for c in rt.stream(pieces, prompt_wav=voice, prompt_text="A short prompt sentence."):
                chunks.append(c)
    finally:
        rt.configure(token_hop_len=before.token_hop_len, token_max_hop_len=before.token_max_hop_len)
    assert chunks and sum(c.tokens for c in chunks) <= 500
    assert rt.active_requests == 0


def test_bistream_runaway_in_synthesize(rt: Runtime, voice: Path) -> None:
    with pytest.raises(TokenLimitExceeded, match=CAP_MSG.format(cap=500)):
        rt.synthesize(iter(["Hello there."]), prompt_wav=voice)


@pytest.fixture(scope="module")
def endless(tiny_v2_dir: Path) -> Runtime:
    """The tiny v2 model with end-of-speech pushed out of reach: it never ends an utterance."""
    import torch

    model = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
    with torch.no_grad():
        model.llm.llm_decoder.bias[model.llm.speech_token_size] = -30.0
    model.configure(token_hop_len=100, token_max_hop_len=400)  # few flow runs before the cap
    return model


def test_runaway_is_not_cut_silently_by_synthesize(endless: Runtime) -> None:
    # Upstream's own loop would stop at 20 tokens per text token and return that audio as if complete.
    with pytest.raises(TokenLimitExceeded, match=CAP_MSG.format(cap=500)):
        endless.synthesize("Hello there.", speaker=endless.speakers[0], text_frontend=False)
    assert endless.active_requests == 0


def test_runaway_under_a_kwargs_wrapper_is_not_cut_silently(endless: Runtime) -> None:
    # The plugin counts tokens with a (*args, **kwargs) wrapper around llm.inference; the runtime's cap
    # must still be the one that bites, not upstream's silent 20 per text token inside.
    real = endless.llm.inference
    seen: list[int] = []

    def counted(*args: object, **kwargs: object):
        for tok in real(*args, **kwargs):
            seen.append(tok)
            yield tok

    endless.llm.inference = counted  # type: ignore[method-assign]
    try:
        with pytest.raises(TokenLimitExceeded, match=CAP_MSG.format(cap=500)):
            endless.synthesize("Hello there.", speaker=endless.speakers[0], text_frontend=False)
    finally:
        del endless.llm.inference
    assert len(seen) == 501


def test_runaway_stream_delivers_then_raises(endless: Runtime) -> None:
    chunks = []
    with pytest.raises(TokenLimitExceeded, match=CAP_MSG.format(cap=500)):
        for c in endless.stream("Hello there.", speaker=endless.speakers[0], text_frontend=False):
            chunks.append(c)
    assert chunks and 100 < sum(c.tokens for c in chunks) <= 500


def test_cap_grows_with_the_text(endless: Runtime) -> None:
    text = ("This sentence has many more words than the minimum cap would allow for at twenty speech tokens per "
            "text token, so the cap is set by the text")
    n = len(endless.frontend.encode(text))
    assert n * 20 > 500
    with pytest.raises(TokenLimitExceeded, match=CAP_MSG.format(cap=n * 20)):
        endless.synthesize(text, speaker=endless.speakers[0], text_frontend=False)


# -- model directory ---------------------------------------------------------------------------------------
def test_model_dir_that_is_not_a_path() -> None:
    with pytest.raises(cosyvoice_runtime.ModelLoadError,
                       match=r"^model_dir=42: expected the path of a model directory"):
        cosyvoice_runtime.load(42, device="cpu")  # type: ignore[arg-type]


def test_yaml_that_is_not_utf8(tiny_v2_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    for entry in tiny_v2_dir.iterdir():
        if entry.name != "cosyvoice2.yaml":
            (d / entry.name).symlink_to(entry)
    (d / "cosyvoice2.yaml").write_bytes(b"sample_rate: 24000\n\xff\xfe llm: 1\n")
    with pytest.raises(cosyvoice_runtime.ModelLoadError, match=r"cosyvoice2.yaml: cannot be read as UTF-8 text "
                                                               r"\(UnicodeDecodeError"):
        cosyvoice_runtime.load(d, device="cpu")


def test_text_iterator_with_a_non_str_piece(rt: Runtime, voice: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^text iterator yielded int 7; expected str pieces$"):
        list(rt.stream(iter([7]), prompt_wav=voice))
    assert rt.active_requests == 0
