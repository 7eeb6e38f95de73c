"""The tiny model builder: released layout, real upstream classes, lengths that end, determinism, caching."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cosyvoice_runtime import tiny
from cosyvoice_runtime.tiny import frontends

LAYOUT = {
    1: {"cosyvoice.yaml", "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v1.onnx",
        "spk2info.pt"},
    2: {"cosyvoice2.yaml", "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx",
        "spk2info.pt", "CosyVoice-BlankEN"},
}
BLANK_EN_FILES = {"config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
                  "tokenizer_config.json"}
# Sentence-length texts: the length check is about ordinary sentences (very short ones run longer).
TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Streaming speech synthesis sends audio to the listener chunk by chunk.",
    "你好，欢迎使用语音合成。今天天气很好。",
    "Numbers like 42 and 1999 should be read aloud, slowly and clearly.",
]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {v: tiny.build(root / f"v{v}", version=v) for v in (1, 2)}


def _configs(d: Path, version: int) -> dict[str, Any]:
    from hyperpyyaml import load_hyperpyyaml

    overrides = {"qwen_pretrain_path": str(d / "CosyVoice-BlankEN")} if version == 2 else None
    with open(d / tiny.YAML_NAMES[version]) as f:
        return load_hyperpyyaml(f, overrides=overrides)


@pytest.fixture(scope="session")
def loaded(built: dict[int, Path]) -> dict[int, dict[str, Any]]:
    """Each yaml built with hyperpyyaml, the stored weights loaded strictly (cast back to fp32)."""
    out = {}
    for v, d in built.items():
        configs = _configs(d, v)
        for name in ("llm", "flow", "hift"):
            state = torch.load(d / f"{name}.pt", map_location="cpu")
            configs[name].load_state_dict({k: t.float() if t.is_floating_point() else t for k, t in state.items()},
                                          strict=True)
            configs[name].eval()
        out[v] = configs
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_layout_and_stored_weights(built: dict[int, Path], version: int) -> None:
    d = built[version]
    assert {p.name for p in d.iterdir()} == LAYOUT[version]
    if version == 2:
        assert {p.name for p in (d / "CosyVoice-BlankEN").iterdir()} == BLANK_EN_FILES
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")], "temp build dir left behind"
    for name in ("llm", "flow", "hift"):
        state = torch.load(d / f"{name}.pt", map_location="cpu")
        assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
    assert not any(k.startswith("generator.") for k in torch.load(d / "hift.pt"))
    spk = torch.load(d / "spk2info.pt")
    assert spk[tiny.SPEAKER]["embedding"].shape == (1, 192)
    assert all(oct(p.stat().st_mode)[-3:] in ("644", "755") for p in d.rglob("*"))


@pytest.mark.parametrize("version", [1, 2])
def test_yaml_components_are_upstream_and_consistent(loaded: dict[int, dict[str, Any]], version: int) -> None:
    c = loaded[version]
    assert c["sample_rate"] == tiny.SAMPLE_RATE[version]
    assert c["allowed_special"] == "all"
    assert callable(c["get_tokenizer"]) and callable(c["feat_extractor"])
    llm, flow, hift = c["llm"], c["flow"], c["hift"]
    expect = {1: ("TransformerLM", "MaskedDiffWithXvec"), 2: ("Qwen2LM", "CausalMaskedDiffWithXvec")}[version]
    assert (type(llm).__name__, type(flow).__name__, type(hift).__name__) == (*expect, "HiFTGenerator")
    assert type(llm).__module__ == "cosyvoice.llm.llm"
    assert llm.speech_token_size == tiny.SPEECH_VOCAB[version]
    assert llm.sampling.keywords["top_k"] == tiny.TOP_K  # the end-of-speech bias is computed from it
    # samples per mel frame = product of upsample rates x istft hop; must match feat_extractor's hop.
    hop = {1: 256, 2: 480}[version]
    assert int(np.prod([m.stride[0] for m in hift.ups])) * hift.istft_params["hop_len"] == hop
    if version == 2:
        assert (flow.token_mel_ratio, flow.pre_lookahead_len, flow.input_frame_rate) == (2, 3, 25)
        assert llm.llm.model.config.tie_word_embeddings and llm.llm.model.config.vocab_size == 512


@pytest.mark.parametrize("version", [1, 2])
def test_flow_and_hift_render_audio(loaded: dict[int, dict[str, Any]], version: int) -> None:
    """Smoke run of the random components: tokens -> mel -> waveform with the documented ratios."""
    flow, hift = loaded[version]["flow"], loaded[version]["hift"]
    torch.manual_seed(0)
    n = 20
    token = torch.randint(0, tiny.SPEECH_VOCAB[version], (1, n), dtype=torch.int32)
    empty = dict(prompt_token=torch.zeros(1, 0, dtype=torch.int32), prompt_token_len=torch.zeros(1, dtype=torch.int32),
                 prompt_feat=torch.zeros(1, 0, 80), prompt_feat_len=torch.zeros(1, dtype=torch.int32),
                 embedding=torch.randn(1, 192))
    with torch.inference_mode():
        if version == 2:
            mel, _ = flow.inference(token=token, token_len=torch.tensor([n], dtype=torch.int32), **empty,
                                    streaming=False, finalize=True)
            assert mel.shape == (1, 80, 2 * n)
        else:
            mel, _ = flow.inference(token=token, token_len=torch.tensor([n], dtype=torch.int32), **empty,
                                    flow_cache=torch.zeros(1, 80, 0, 2))
            assert mel.shape == (1, 80, int(n / 50 * 22050 / 256))
        speech, _ = hift.inference(speech_feat=mel, cache_source=torch.zeros(1, 1, 0))
    assert speech.shape == (1, mel.shape[2] * {1: 256, 2: 480}[version])
    assert torch.isfinite(speech).all() and speech.abs().max() <= 0.99 + 1e-6


def test_v2_tokenizer_loads_with_upstream_specials(built: dict[int, Path], loaded: dict[int, dict[str, Any]]) -> None:
    blank = built[2] / "CosyVoice-BlankEN"
    assert len(json.loads((blank / "vocab.json").read_text())) == 400
    tok = loaded[2]["get_tokenizer"]()
    ids = tok.encode("Hello<|endofprompt|>world [laughter] 你好")
    assert max(ids) < 512  # the Qwen text vocab
    for special in ("<|endofprompt|>", "[breath]", "[laughter]", "<|im_end|>"):
        assert len(tok.encode(special)) == 1, special
    assert tok.decode(tok.encode("Hello world, 你好")) == "Hello world, 你好"


def test_v1_tokenizer_ids_fit_the_text_embedding(loaded: dict[int, dict[str, Any]]) -> None:
    tok = loaded[1]["get_tokenizer"]()
    ids = tok.encode("你好世界，这是一个测试。<|endofprompt|> Hello", allowed_special="all")
    assert max(ids) < loaded[1]["llm"].text_embedding.num_embeddings


@pytest.mark.parametrize("version", [1, 2])
def test_onnx_frontends(built: dict[int, Path], version: int) -> None:
    import onnxruntime as ort

    d = built[version]
    camp = ort.InferenceSession(str(d / "campplus.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in camp.get_inputs()] == ["input"]
    fbank = np.random.default_rng(0).standard_normal((2, 150, 80)).astype(np.float32)
    emb = camp.run(None, {"input": fbank})[0]
    assert emb.shape == (2, 192) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.abs(emb).max() > 0.1  # mean-normalised input must not give a ~zero embedding

    tok = ort.InferenceSession(str(d / f"speech_tokenizer_v{version}.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in tok.get_inputs()] == ["feats", "feats_length"]
    stride = {1: 2, 2: 4}[version]
    rng = np.random.default_rng(1)
    for t in (401, 3, 1000):
        mel = rng.standard_normal((1, 128, t)).astype(np.float32)
        out = tok.run(None, {"feats": mel, "feats_length": np.array([t], np.int32)})[0]
        assert out.shape == (1, t // stride) and out.dtype == np.int32
        if out.size:
            assert 0 <= out.min() and out.max() < tiny.SPEECH_VOCAB[version]
            again = tok.run(None, {"feats": mel, "feats_length": np.array([t], np.int32)})[0]
            assert np.array_equal(out, again)
    assert len(np.unique(out)) > 100  # tokens spread over the vocabulary


def _speech_tokens(configs: dict[str, Any], d: Path, version: int, text: str, seed: int) -> tuple[list[int], int]:
    tok = configs["get_tokenizer"]()
    ids = tok.encode(text, allowed_special="all") if version == 1 else tok.encode(text)
    emb = torch.load(d / "spk2info.pt")[tiny.SPEAKER]["embedding"]
    zeros = torch.zeros(1, 0, dtype=torch.int32)
    torch.manual_seed(seed)
    tokens = [int(t) for t in configs["llm"].inference(
        text=torch.tensor([ids]), text_len=torch.tensor([len(ids)], dtype=torch.int32),
        prompt_text=zeros, prompt_text_len=torch.zeros(1, dtype=torch.int32),
        prompt_speech_token=zeros, prompt_speech_token_len=torch.zeros(1, dtype=torch.int32),
        embedding=emb)]
    return tokens, len(ids)


@pytest.mark.parametrize("version", [1, 2])
def test_llm_ends_naturally_at_speech_like_lengths(built: dict[int, Path], loaded: dict[int, dict[str, Any]],
                                                   version: int) -> None:
    ratios = []
    for i, text in enumerate(TEXTS):
        tokens, n = _speech_tokens(loaded[version], built[version], version, text, seed=i)
        assert 2 * n <= len(tokens) < 20 * n  # upstream's minimum, and ended before the cap
        assert all(0 <= t < tiny.SPEECH_VOCAB[version] for t in tokens)
        ratios.append(len(tokens) / n)
    assert 2.0 <= float(np.mean(ratios)) <= 4.0, ratios
    # Same torch seed before inference -> the same tokens.
    first = _speech_tokens(loaded[version], built[version], version, TEXTS[0], seed=7)
    assert _speech_tokens(loaded[version], built[version], version, TEXTS[0], seed=7) == first


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu")


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="full"):
        tiny.build(full, version=1)
    assert [p.name for p in full.iterdir()] == ["keep.txt"] and (full / "keep.txt").read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError):
        tiny.build(a_file, version=1)
    with pytest.raises(ValueError):
        tiny.build(tmp_path / "v3", version=3)
    with pytest.raises(ValueError):
        tiny.build(tmp_path / "v1full", version=1, size="full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]  # nothing half-built left
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (tiny.build(empty, version=1) / "cosyvoice.yaml").is_file()  # an empty dir is fine


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tiny.main([str(tmp_path / "m"), "--version", "1", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "m") in out and " MB" in out and " s" in out
    assert tiny.main([str(tmp_path / "m"), "--version", "1"]) == 2  # exists: refused
    assert "refusing" in capsys.readouterr().err


_WORKER = textwrap.dedent("""
    import os, sys
    from cosyvoice_runtime.tiny import default_model_dir
    d = default_model_dir(1)
    print(d, os.stat(d / "cosyvoice.yaml").st_ino)
""")


def test_default_model_dir_concurrent_and_deterministic(tmp_path: Path, built: dict[int, Path]) -> None:
    """Two processes at once: one build, both get the same directory; same seed -> same weights."""
    env = {**os.environ, "COSY_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-2000:]
    lines = {out.strip().splitlines()[-1] for out, _ in results}
    assert len(lines) == 1, lines  # same path and the very same file: built once
    path = Path(lines.pop().rsplit(" ", 1)[0])
    assert path.parent == tmp_path / "cache" and path.name.startswith("cosyvoice-v1-tiny-seed0-")
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")] == [path.name]

    os.environ["COSY_CACHE_DIR"], old = str(tmp_path / "cache"), os.environ.get("COSY_CACHE_DIR")
    try:
        assert tiny.default_model_dir(1) == path  # reused, not rebuilt
    finally:
        if old is None:
            del os.environ["COSY_CACHE_DIR"]
        else:
            os.environ["COSY_CACHE_DIR"] = old

    # Built in another process with the same seed: identical bytes and tensors.
    for name in ("llm.pt", "flow.pt", "hift.pt", "spk2info.pt", "campplus.onnx", "speech_tokenizer_v1.onnx"):
        assert (path / name).read_bytes() == (built[1] / name).read_bytes(), name
    other = tiny.build(tmp_path / "seed1", version=1, seed=1)
    a, b = _tensors(path / "llm.pt"), _tensors(other / "llm.pt")
    assert a.keys() == b.keys()
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_v2_same_seed_same_weights(tmp_path: Path, built: dict[int, Path]) -> None:
    again = tiny.build(tmp_path / "again", version=2, seed=0)
    for name in ("llm.pt", "flow.pt", "hift.pt", "CosyVoice-BlankEN/model.safetensors", "CosyVoice-BlankEN/vocab.json"):
        assert (again / name).read_bytes() == (built[2] / name).read_bytes(), name
    a, b = _tensors(again / "llm.pt"), _tensors(built[2] / "llm.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_full_size_parameter_counts() -> None:
    """The CosyVoice2-0.5B shapes, counted on the meta device (no weights built)."""
    counts = tiny.param_counts(2, "full")
    assert counts["llm"] == pytest.approx(505.8e6, abs=0.05e6)
    assert counts["flow"] == pytest.approx(112.5e6, abs=0.05e6)
    assert counts["hift"] == pytest.approx(20.8e6, abs=0.05e6)


def test_mid_size_between_tiny_and_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """v2 mid: every component larger than tiny and smaller than full (meta-device counts); v1 has none."""
    small, mid, full = (tiny.param_counts(2, size) for size in ("tiny", "mid", "full"))
    for name in ("llm", "flow", "hift"):
        assert small[name] < mid[name] < full[name], name
    assert mid["llm"] == pytest.approx(7.44e6, abs=0.01e6)
    assert mid["flow"] == pytest.approx(27.86e6, abs=0.01e6)
    assert mid["hift"] == pytest.approx(1.42e6, abs=0.01e6)
    assert tiny.main([str(tmp_path / "m"), "--version", "1", "--size", "mid"]) == 2
    assert "no size 'mid' for version 1" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("COSY_SLOW") != "1", reason="builds a ~1 GB model (about a minute); COSY_SLOW=1")
def test_full_size_build(tmp_path: Path) -> None:
    d = tiny.build(tmp_path / "full", version=2, size="full")
    state = _tensors(d / "llm.pt")
    assert state["llm.model.model.embed_tokens.weight"].shape == (151936, 896)
    # Tied embeddings are stored once and still load as two keys.
    assert state["llm.model.lm_head.weight"].data_ptr() == state["llm.model.model.embed_tokens.weight"].data_ptr()
    del state
    configs = _configs(d, 2)
    counts = tiny.param_counts(2, "full")
    for name in ("llm", "flow", "hift"):
        module = configs[name]
        assert sum(p.numel() for p in module.parameters()) == counts[name]
        stored = _tensors(d / f"{name}.pt")
        module.load_state_dict({k: t.float() if t.is_floating_point() else t for k, t in stored.items()}, strict=True)
        module.eval()
    tokens, n = _speech_tokens(configs, d, 2, TEXTS[0], seed=0)
    assert 2 * n <= len(tokens) < 20 * n


def _without_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import onnx` raise ImportError, as on an install without the extra.
    monkeypatch.setitem(sys.modules, "onnx", None)


def test_build_without_onnx_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _without_onnx(monkeypatch)
    with pytest.raises(tiny.MissingExtra, match=r"'onnx'.*pip install 'pytest-cosyvoice\[onnx\]'") as info:
        tiny.build(tmp_path / "m", version=1)
    assert isinstance(info.value, ImportError) and info.value.name == "onnx"
    assert list(tmp_path.iterdir()) == []  # refused before building anything
    # The frontends themselves (the only place importing onnx) raise it too, not a bare ImportError.
    with pytest.raises(tiny.MissingExtra, match=re.escape(tiny.ONNX_HINT)):
        frontends.write_campplus(tmp_path / "campplus.onnx", 0)
    assert tiny.main([str(tmp_path / "m"), "--version", "1"]) == 2
    assert "pip install 'pytest-cosyvoice[onnx]'" in capsys.readouterr().err
    monkeypatch.setenv("COSY_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(tiny.MissingExtra):
        tiny.default_model_dir(1)
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]  # no model dir, no temp dir
