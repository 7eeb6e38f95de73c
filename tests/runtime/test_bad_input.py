"""Bad inputs: each gives its error type and a message naming the value and what was expected."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import cosyvoice_runtime
from cosyvoice_runtime import InvalidInput, ModelLoadError, Runtime

from .helpers import write_voice


@pytest.fixture(scope="module")
def rt(tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- model directories ------------------------------------------------------------------------------
def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model directory '.*nowhere' does not exist"):
        cosyvoice_runtime.load(tmp_path / "nowhere")


def test_directory_without_yaml(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text("a: 1\n")
    with pytest.raises(ModelLoadError, match=r"not a CosyVoice model directory: expected one of cosyvoice3.yaml, "
                                              r"cosyvoice2.yaml, cosyvoice.yaml, found \['other.yaml'\]"):
        cosyvoice_runtime.load(tmp_path)


def test_unknown_yaml_content(tmp_path: Path, tiny_v2_dir: Path) -> None:
    d = copy_model(tiny_v2_dir, tmp_path / "m")
    (d / "cosyvoice2.yaml").write_text("sample_rate: 24000\nllm: 1\n")
    with pytest.raises(ModelLoadError,
                       match=r"cosyvoice2.yaml: missing keys \['flow', 'hift', 'get_tokenizer', 'feat_extractor'\]"):
        cosyvoice_runtime.load(d)


@pytest.mark.parametrize("name", ["llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx"])
def test_missing_weights(tmp_path: Path, tiny_v2_dir: Path, name: str) -> None:
    d = copy_model(tiny_v2_dir, tmp_path / "m")
    (d / name).unlink()
    with pytest.raises(ModelLoadError, match=f"missing {name}"):
        cosyvoice_runtime.load(d)


def test_truncated_weights(tmp_path: Path, tiny_v2_dir: Path) -> None:
    d = copy_model(tiny_v2_dir, tmp_path / "m")
    data = (d / "flow.pt").read_bytes()
    (d / "flow.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"flow.pt: not a readable weights-only torch state dict"):
        cosyvoice_runtime.load(d)


def test_state_dict_key_mismatch(tmp_path: Path, tiny_v2_dir: Path) -> None:
    import torch

    d = copy_model(tiny_v2_dir, tmp_path / "m")
    state = torch.load(d / "hift.pt", weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    state.pop(next(iter(state)))
    torch.save(state, d / "hift.pt")
    with pytest.raises(ModelLoadError,
                       match=r"hift.pt: state dict keys do not match .* 1 missing .* 1 unexpected \['extra.weight'\]"):
        cosyvoice_runtime.load(d)


def test_bad_onnx(tmp_path: Path, tiny_v2_dir: Path) -> None:
    d = copy_model(tiny_v2_dir, tmp_path / "m")
    (d / "campplus.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match=r"campplus.onnx: not a loadable ONNX model"):
        cosyvoice_runtime.load(d)


def test_missing_upstream_package_has_install_hint(monkeypatch: pytest.MonkeyPatch, tiny_v2_dir: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cosyvoice" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"'cosyvoice' is not installed: install .*cosyvoice-minicpmo==0.1.0"):
        cosyvoice_runtime.load(tiny_v2_dir)


@pytest.mark.parametrize("device, msg", [("gpu", r"device='gpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
                                         ("cuda:x", r"device='cuda:x'")])
def test_bad_device(tiny_v2_dir: Path, device: str, msg: str) -> None:
    with pytest.raises(InvalidInput, match=msg):
        cosyvoice_runtime.load(tiny_v2_dir, device=device)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_forms_pass_without_cuda(device: str) -> None:
    assert cosyvoice_runtime.check_device(device) == device


@pytest.mark.parametrize("device", ["gpu", "CPU", " cpu", "cuda:", "cuda:x", "cuda:1 ", "cuda:-1", None, 0])
def test_device_form_is_checked_before_cuda(device: object) -> None:
    # The same answer on a machine with or without CUDA: the form is wrong, whatever is installed.
    with pytest.raises(InvalidInput, match=r"^device=.*: expected 'auto', 'cpu', 'cuda' or 'cuda:N'$"):
        cosyvoice_runtime.check_device(device)


def test_fp16_on_cpu_refused(tiny_v2_dir: Path) -> None:
    with pytest.raises(InvalidInput, match=r"fp16=True needs a CUDA device; device='cpu'"):
        cosyvoice_runtime.load(tiny_v2_dir, device="cpu", fp16=True)


# -- requests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, names", [
    ({}, "none"),
    ({"prompt_text": "t"}, r"\['prompt_text'\]"),
    ({"speaker": "s", "prompt_wav": "p.wav"}, r"\['prompt_wav', 'speaker'\]"),
    ({"source_wav": "s.wav"}, r"\['source_wav'\]"),
])
def test_wrong_mode_combination(rt: Runtime, kwargs: dict, names: str) -> None:
    with pytest.raises(InvalidInput,
                       match=f"arguments {names} do not name a mode of a v2 model; valid combinations: sft: speaker"):
        rt.stream("Hello.", **kwargs)


def test_unknown_speaker(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"speaker='nobody' is not in spk2info.pt; available: \["):
        rt.stream("Hello.", speaker="nobody")


def test_speed_in_stream_refused(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"speed=1.5: speed change is only supported by synthesize"):
        rt.stream("Hello.", speaker=rt.speakers[0], speed=1.5)


def test_empty_text(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"text='  ': nothing to synthesise"):
        rt.synthesize("  ", speaker=rt.speakers[0])


@pytest.mark.parametrize("kind, msg", [
    ("empty", "the file holds no samples"),
    ("silent", "the audio is silent"),
    ("long", r"31.0 s long; prompt audio must be at most 30 s"),
    ("garbage", "unreadable audio"),
    ("missing", "no such file"),
])
def test_bad_prompt_audio(rt: Runtime, tmp_path: Path, kind: str, msg: str) -> None:
    p = tmp_path / f"{kind}.wav"
    if kind == "empty":
        sf.write(p, np.zeros(0, np.float32), 16000)
    elif kind == "silent":
        sf.write(p, np.zeros(16000, np.float32), 16000)
    elif kind == "long":
        sf.write(p, 0.1 * np.sin(np.arange(31 * 8000) / 5).astype(np.float32), 8000)
    elif kind == "garbage":
        p.write_bytes(b"RIFF....garbage")
    with pytest.raises(InvalidInput, match=f"prompt_wav='.*{kind}.wav': {msg}"):
        rt.stream("Hello.", prompt_wav=p, prompt_text="hi")


def test_stereo_prompt_at_any_rate_is_accepted(rt: Runtime, tmp_path: Path) -> None:
    mono = write_voice(tmp_path / "m.wav", rate=44100)
    x, r = sf.read(mono, dtype="float32")
    sf.write(tmp_path / "s.wav", np.stack([x, x * 0.5], axis=1), r)
    chunks = list(rt.stream("Hello there.", prompt_wav=tmp_path / "s.wav", prompt_text="Prompt."))
    assert chunks


def test_bad_settings(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"stall_timeout_s=-1: expected a positive number of seconds"):
        rt.configure(stall_timeout_s=-1)
    with pytest.raises(InvalidInput, match=r"unknown setting\(s\) \['hop'\]"):
        rt.configure(hop=3)
