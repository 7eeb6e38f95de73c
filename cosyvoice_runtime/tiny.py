"""Tiny (or full-size) random-weight CosyVoice model directories of the released layout.

No CosyVoice weights can be fetched here, so tests and the embedded default model use directories
built from the real upstream component classes with small sizes and random weights, plus small ONNX
frontends with the released models' inputs and outputs.

    python -m cosyvoice_runtime.tiny OUT --version 2 [--size tiny|full] [--seed 0]

A random LLM never samples end-of-speech, so every utterance would run to the 20x-text cap. The
builder flattens the LLM's output layer and gives end-of-speech a fixed bias, so that after the
upstream minimum of 2 tokens per text token an utterance ends with a steady chance per step: about
2-4 speech tokens per text token, deterministic for a torch seed.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Share of end-of-speech among the candidates ras_sampling keeps (top_k=25): e^b / (e^b + 24).
EOS_SHARE = 0.06
TOP_K = 25

_SAMPLING = """sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1"""

_CFM = """cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'"""

SIZES: dict[tuple[int, str], dict[str, Any]] = {
    (2, "tiny"): dict(hidden=64, layers=2, heads=4, kv_heads=2, ff=128, vocab=512,
                      enc_heads=8, enc_ff=64, enc_blocks=1, dec_channels=64, dec_head_dim=32, dec_blocks=1,
                      dec_mid=1, dec_heads=2, hift_channels=32),
    (2, "full"): dict(hidden=896, layers=24, heads=14, kv_heads=2, ff=4864, vocab=151936,
                      enc_heads=8, enc_ff=2048, enc_blocks=6, dec_channels=256, dec_head_dim=64, dec_blocks=4,
                      dec_mid=12, dec_heads=8, hift_channels=512),
    (1, "tiny"): dict(text_dim=32, llm_dim=64, llm_heads=4, llm_ff=128, llm_blocks=2, flow_dim=64,
                      enc_heads=2, enc_ff=64, enc_blocks=1, dec_channels=64, dec_head_dim=32, dec_blocks=1,
                      dec_mid=1, dec_heads=2, hift_channels=32),
}


def yaml_v2(s: dict[str, Any]) -> str:
    return f"""# Tiny CosyVoice2 layout (random weights) built by cosyvoice_runtime.tiny
sample_rate: 24000
llm_input_size: {s['hidden']}
llm_output_size: {s['hidden']}
spk_embed_dim: 192
qwen_pretrain_path: ''
token_frame_rate: 25
token_mel_ratio: 2
chunk_size: 25
num_decoding_left_chunks: -1

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: 6561
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    {_SAMPLING}

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: 512
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 6561
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: 512
        attention_heads: {s['enc_heads']}
        linear_units: {s['enc_ff']}
        num_blocks: {s['enc_blocks']}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 512
        use_cnn_module: False
        macaron_style: False
        static_chunk_size: !ref <chunk_size>
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        {_CFM}
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [{s['dec_channels']}]
            dropout: 0.0
            attention_head_dim: {s['dec_head_dim']}
            n_blocks: {s['dec_blocks']}
            num_mid_blocks: {s['dec_mid']}
            num_heads: {s['dec_heads']}
            act_fn: 'gelu'
            static_chunk_size: !ref <chunk_size> * <token_mel_ratio>
            num_decoding_left_chunks: !ref <num_decoding_left_chunks>

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {s['hift_channels']}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {s['hift_channels']}

get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
    token_path: !ref <qwen_pretrain_path>
    skip_special_tokens: True
allowed_special: 'all'

feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
    center: False
"""


def yaml_v1(s: dict[str, Any]) -> str:
    return f"""# Tiny CosyVoice (v1) layout (random weights) built by cosyvoice_runtime.tiny
sample_rate: 22050
text_encoder_input_size: {s['text_dim']}
llm_input_size: {s['llm_dim']}
llm_output_size: {s['llm_dim']}
spk_embed_dim: 192

llm: !new:cosyvoice.llm.llm.TransformerLM
    text_encoder_input_size: !ref <text_encoder_input_size>
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    text_token_size: 51866
    speech_token_size: 4096
    length_normalized_loss: True
    lsm_weight: 0
    spk_embed_dim: !ref <spk_embed_dim>
    text_encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        input_size: !ref <text_encoder_input_size>
        output_size: !ref <text_encoder_input_size>
        attention_heads: 2
        linear_units: 64
        num_blocks: 1
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.0
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        use_cnn_module: False
        macaron_style: False
        use_dynamic_chunk: False
        use_dynamic_left_chunk: False
        static_chunk_size: 1
    llm: !new:cosyvoice.transformer.encoder.TransformerEncoder
        input_size: !ref <llm_input_size>
        output_size: !ref <llm_output_size>
        attention_heads: {s['llm_heads']}
        linear_units: {s['llm_ff']}
        num_blocks: {s['llm_blocks']}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.0
        input_layer: 'linear_legacy'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        static_chunk_size: 1
    {_SAMPLING}

flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: {s['flow_dim']}
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 4096
    input_frame_rate: 50
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        output_size: {s['flow_dim']}
        attention_heads: {s['enc_heads']}
        linear_units: {s['enc_ff']}
        num_blocks: {s['enc_blocks']}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: {s['flow_dim']}
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1, 1, 1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        {_CFM}
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [{s['dec_channels']}]
            dropout: 0.0
            attention_head_dim: {s['dec_head_dim']}
            n_blocks: {s['dec_blocks']}
            num_mid_blocks: {s['dec_mid']}
            num_heads: {s['dec_heads']}
            act_fn: 'gelu'

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {s['hift_channels']}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 8]
    upsample_kernel_sizes: [16, 16]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {s['hift_channels']}

get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_tokenizer
    multilingual: True
    num_languages: 100
    language: 'en'
    task: 'transcribe'
allowed_special: 'all'

feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1024
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 256
    win_size: 1024
    fmin: 0
    fmax: 8000
    center: False
"""


_CORPUS = [
    "Hello world, this is a test of the tiny CosyVoice model.",
    "The quick brown fox jumps over the lazy dog. Numbers like 1 2 3 4 5 6 7 8 9 0 appear too!",
    "Speech synthesis turns text into audio; streaming sends it chunk by chunk?",
    "你好世界，这是一个测试。今天天气很好，我们去公园散步吧。",
    "Mixed text: CosyVoice 语音合成 works in English and 中文.",
]


def _write_tokenizer(folder: Path, vocab_size: int = 400) -> None:
    """A byte-level BPE with Qwen2Tokenizer's file layout (vocab.json + merges.txt)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tok.model.save(str(folder))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 32768, "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "bos_token": None, "clean_up_tokenization_spaces": False,
        "add_prefix_space": False, "errors": "replace", "split_special_tokens": False}, indent=1))


def _flatten_decoder(decoder: Any, eos: int, skip: list[int], scale: float = 0.01) -> None:
    """Near-flat speech-token logits plus a fixed end-of-speech bias (see module docstring)."""
    import math

    import torch

    with torch.no_grad():
        decoder.weight.mul_(scale)
        decoder.bias.zero_()
        decoder.weight[eos].zero_()
        decoder.bias[eos] = math.log(EOS_SHARE * (TOP_K - 1) / (1 - EOS_SHARE))
        for i in skip:  # ids the LLM would only skip over
            decoder.weight[i].zero_()
            decoder.bias[i] = -30.0


def _state(module: Any, fp16: bool) -> dict[str, Any]:
    import torch

    return {k: (v.half() if fp16 and v.is_floating_point() else v).clone() for k, v in module.state_dict().items()}


def _onnx_campplus(path: Path, seed: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((80, 192)).astype(np.float32) * 0.1
    g = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["m", "w"], ["output"])],
        "campplus_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", "T", 80])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 192])],
        [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


def _onnx_tokenizer(path: Path, seed: int, stride: int, vocab: int) -> None:
    """[1,128,T] log-mel + int32 length -> int32 tokens [1, T // stride], a fixed function of the mel."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed + 1).standard_normal((128, 1)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("AveragePool", ["feats"], ["p"], kernel_shape=[stride], strides=[stride]),
         helper.make_node("Transpose", ["p"], ["pt"], perm=[0, 2, 1]),
         helper.make_node("MatMul", ["pt", "w"], ["y"]),
         helper.make_node("Mul", ["y", "k"], ["y2"]),
         helper.make_node("Abs", ["y2"], ["y3"]),
         helper.make_node("Mod", ["y3", "v"], ["y4"], fmod=1),
         helper.make_node("Floor", ["y4"], ["y5"]),
         helper.make_node("Squeeze", ["y5", "ax"], ["y6"]),
         helper.make_node("Cast", ["y6"], ["indices"], to=TensorProto.INT32)],
        "speech_tokenizer_tiny",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("indices", TensorProto.INT32, [1, "N"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(997.0, np.float32), "k"),
         numpy_helper.from_array(np.array(float(vocab), np.float32), "v"),
         numpy_helper.from_array(np.array([2], np.int64), "ax")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


def _build_into(out: Path, version: int, size: str, seed: int, fp16_weights: bool) -> None:
    import torch
    from hyperpyyaml import load_hyperpyyaml

    s = SIZES.get((version, size))
    if s is None:
        raise ValueError(f"no {size!r} size for version {version}; known: {sorted(SIZES)}")
    torch.manual_seed(seed)
    overrides: dict[str, str] = {}
    if version == 2:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        blank = out / "CosyVoice-BlankEN"
        blank.mkdir()
        _write_tokenizer(blank)
        cfg = Qwen2Config(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ff"],
                          num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                          num_key_value_heads=s["kv_heads"], tie_word_embeddings=True,
                          max_position_embeddings=32768, rope_theta=1000000.0)
        qwen = Qwen2ForCausalLM(cfg)
        if fp16_weights:
            qwen = qwen.half()
        qwen.save_pretrained(str(blank))
        del qwen
        text = yaml_v2(s)
        (out / "cosyvoice2.yaml").write_text(text)
        overrides["qwen_pretrain_path"] = str(blank)
    else:
        text = yaml_v1(s)
        (out / "cosyvoice.yaml").write_text(text)
    torch.manual_seed(seed)
    configs = load_hyperpyyaml(text, overrides=overrides or None)
    llm, flow, hift = configs["llm"], configs["flow"], configs["hift"]
    eos = llm.speech_token_size
    _flatten_decoder(llm.llm_decoder, eos, skip=list(range(eos + 1, llm.llm_decoder.out_features)))
    torch.save(_state(llm, fp16_weights), out / "llm.pt")
    torch.save(_state(flow, fp16_weights), out / "flow.pt")
    torch.save(_state(hift, fp16_weights), out / "hift.pt")
    gen = torch.Generator().manual_seed(seed + 7)
    torch.save({"tiny_speaker": {"embedding": torch.randn(1, 192, generator=gen)}}, out / "spk2info.pt")
    _onnx_campplus(out / "campplus.onnx", seed)
    _onnx_tokenizer(out / f"speech_tokenizer_v{version}.onnx", seed, stride=4 if version == 2 else 2,
                    vocab=6561 if version == 2 else 4096)


def build(out_dir: str | os.PathLike[str], *, version: int = 2, size: str = "tiny", seed: int = 0,
          fp16_weights: bool = True) -> Path:
    """Writes a model directory into ``out_dir`` (absent or empty); never overwrites anything."""
    out = Path(out_dir)
    if version not in (1, 2):
        raise ValueError(f"version={version!r}: the builder makes v1 or v2 directories (no v3 classes are installed)")
    if size not in ("tiny", "full"):
        raise ValueError(f"size={size!r}: expected 'tiny' or 'full'")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed at the end: a crash never leaves a half directory.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _build_into(tmp, version, size, seed, fp16_weights)
        if out.exists():
            out.rmdir()
        tmp.chmod(0o755)  # mkdtemp makes it private; a model dir is shared like any other
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def cache_root() -> Path:
    return Path(os.environ.get("COSY_CACHE_DIR") or Path.home() / ".cache" / "pytest-cosyvoice")


def default_model_dir(version: int = 2, *, size: str = "tiny", seed: int = 0) -> Path:
    """The embedded default model: built once into the cache, safe under parallel workers."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]
    root = cache_root()
    target = root / f"tiny-v{version}-{size}-s{seed}-{digest}"
    if (target / ("cosyvoice2.yaml" if version == 2 else "cosyvoice.yaml")).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first process builds, the others wait and reuse it
        try:
            if not target.exists():
                build(target, version=version, size=size, seed=seed)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cosyvoice_runtime.tiny", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="directory to create (must not exist or be empty)")
    ap.add_argument("--version", type=int, choices=(1, 2), default=2)
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny",
                    help="full: the CosyVoice2-0.5B shapes (about 1 GB with fp16-stored weights)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp32-weights", action="store_true", help="store weights as fp32 (default fp16)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = build(args.out, version=args.version, size=args.size, seed=args.seed, fp16_weights=not args.fp32_weights)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"{out}: CosyVoice v{args.version} {args.size}, {mb:.1f} MB, built in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
