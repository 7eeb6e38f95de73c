"""Random-weight CosyVoice model directories of the released layout: tiny, mid (v2) or full size (v2).

No CosyVoice weights can be fetched here, so tests and the embedded default model use directories
built from the real upstream component classes (``cosyvoice``, ``matcha``) with small sizes and random
weights, plus small ONNX frontends with the released models' inputs and outputs. A loader reads them
exactly like a released CosyVoice-300M (v1) or CosyVoice2-0.5B (v2) directory.

    python -m cosyvoice_runtime.tiny OUT --version 2 [--size tiny|mid|full] [--seed 0]

Utterance lengths: a random LLM never samples end-of-speech, so every utterance would run to the
20x-text cap. The builder flattens the LLM's output layer and gives end-of-speech a fixed bias, so that
after upstream's minimum of 2 speech tokens per text token an utterance ends with a steady chance per
step (``EOS_SHARE``). Measured with upstream ``inference`` (see ``EOS_SHARE``): 2-4 speech tokens per
text token for sentence-length texts, deterministic for a given ``torch.manual_seed``.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SPEECH_VOCAB = {1: 4096, 2: 6561}
YAML_NAME = {1: "cosyvoice.yaml", 2: "cosyvoice2.yaml"}
SAMPLE_RATE = {1: 22050, 2: 24000}
BLANK_EN = "CosyVoice-BlankEN"
SPEAKER = "tiny_speaker"
# The whisper-style encoding upstream's get_tokenizer builds (multilingual_zh_ja_yue_char_del plus its
# specials) has 60510 ids, and Chinese text maps above 51866 (the released v1 value), so the v1 text
# embedding is sized to cover every id the tokenizer can produce.
V1_TEXT_VOCAB = 60515

# Chance per step (after the upstream minimum length) that the LLM ends the utterance. ras_sampling
# keeps the top_k=25 candidates (top_p=0.8 never bites on near-flat logits) and samples among them; an
# end-of-speech pick is always kept (it is never a "repeat"), so the per-step end chance is about this
# share and the mean length is 2 * text + 1 / share. v1's whisper tokenizer makes fewer text tokens per
# sentence than the tiny 400-entry BPE of v2, hence a larger share.
# Measured with upstream inference, seed 0 weights, 7 English/Chinese texts x 20 sampling seeds (speech
# tokens per text token, mean per text; tests/test_tiny.py checks a fixed-seed average lands in [2, 4]):
#   v2, share 0.10, 5/10/17/23/30/34/62 BPE tokens: 4.25 2.92 2.46 2.48 2.34 2.24 2.21 (all 2.70)
#   v1, share 0.15, 3/5/9/11/12/14/21 whisper tokens: 4.47 3.69 2.59 2.55 2.41 2.54 2.29 (all 2.93)
# Texts of only a few tokens land above 4: the tail of about 1 / share tokens dominates them.
EOS_SHARE: dict[int, float] = {1: 0.15, 2: 0.10}
TOP_K = 25

SIZES: dict[tuple[int, str], dict[str, Any]] = {
    # The flow encoder stays at 512: PreLookaheadLayer/Upsample1D hard-code 512 channels.
    (2, "tiny"): dict(hidden=64, layers=2, heads=4, kv_heads=2, ff=128, vocab=512,
                      enc_heads=8, enc_ff=64, enc_blocks=1, dec_channels=64, dec_head_dim=32, dec_blocks=1,
                      dec_mid=1, dec_heads=2, hift_channels=32),
    # Between the two, for timings where the flow's share matters (e.g. benchmarks/flow_context.py):
    # a 4-layer 256-wide LLM, 3 encoder blocks, a decoder with 4 mid blocks of 2 transformer blocks.
    (2, "mid"): dict(hidden=256, layers=4, heads=4, kv_heads=2, ff=1024, vocab=512,
                     enc_heads=8, enc_ff=1024, enc_blocks=3, dec_channels=128, dec_head_dim=32, dec_blocks=2,
                     dec_mid=4, dec_heads=4, hift_channels=128),
    # The released CosyVoice2-0.5B shapes.
    (2, "full"): dict(hidden=896, layers=24, heads=14, kv_heads=2, ff=4864, vocab=151936,
                      enc_heads=8, enc_ff=2048, enc_blocks=6, dec_channels=256, dec_head_dim=64, dec_blocks=4,
                      dec_mid=12, dec_heads=8, hift_channels=512),
    (1, "tiny"): dict(text_dim=32, llm_dim=64, llm_heads=4, llm_ff=128, llm_blocks=2, flow_dim=64,
                      enc_heads=2, enc_ff=64, enc_blocks=1, dec_channels=64, dec_head_dim=32, dec_blocks=1,
                      dec_mid=1, dec_heads=2, hift_channels=32),
}

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


def _hift_yaml(s: dict[str, Any], upsample: list[int], kernels: list[int], source_kernels: list[int]) -> str:
    dil = ", ".join(["[1, 3, 5]"] * len(source_kernels))
    return f"""hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {s['hift_channels']}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: {upsample}
    upsample_kernel_sizes: {kernels}
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: {source_kernels}
    source_resblock_dilation_sizes: [{dil}]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {s['hift_channels']}
"""


def _mel_yaml(n_fft: int, hop: int) -> str:
    return f"""feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: {n_fft}
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: {hop}
    win_size: {n_fft}
    fmin: 0
    fmax: 8000
    center: False
"""


def _yaml_v2(s: dict[str, Any], size: str) -> str:
    # Mirrors the released cosyvoice2.yaml; HiFT: 8*5*3 upsampling x istft hop 4 = 480 samples per mel frame.
    return f"""# CosyVoice2 layout, {size} sizes, random weights: built by cosyvoice_runtime.tiny
# qwen_pretrain_path must be overridden to <this dir>/{BLANK_EN} when loading (as for the released model).
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
    speech_token_size: {SPEECH_VOCAB[2]}
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
    vocab_size: {SPEECH_VOCAB[2]}
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

{_hift_yaml(s, [8, 5, 3], [16, 11, 7], [7, 7, 11])}
get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
    token_path: !ref <qwen_pretrain_path>
    skip_special_tokens: True
allowed_special: 'all'

{_mel_yaml(1920, 480)}"""


def _yaml_v1(s: dict[str, Any], size: str) -> str:
    # Mirrors the released CosyVoice-300M cosyvoice.yaml; HiFT: 8*8 upsampling x hop 4 = 256 samples per frame.
    return f"""# CosyVoice (v1) layout, {size} sizes, random weights: built by cosyvoice_runtime.tiny
sample_rate: 22050
text_encoder_input_size: {s['text_dim']}
llm_input_size: {s['llm_dim']}
llm_output_size: {s['llm_dim']}
spk_embed_dim: 192

llm: !new:cosyvoice.llm.llm.TransformerLM
    text_encoder_input_size: !ref <text_encoder_input_size>
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    text_token_size: {V1_TEXT_VOCAB}
    speech_token_size: {SPEECH_VOCAB[1]}
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
    vocab_size: {SPEECH_VOCAB[1]}
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

{_hift_yaml(s, [8, 8], [16, 16], [7, 11])}
get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_tokenizer
    multilingual: True
    num_languages: 100
    language: 'en'
    task: 'transcribe'
allowed_special: 'all'

{_mel_yaml(1024, 256)}"""


def _sizes(version: int, size: str) -> dict[str, Any]:
    if version not in (1, 2):
        raise ValueError(f"version={version!r}: the builder makes v1 or v2 directories")
    s = SIZES.get((version, size))
    if s is None:
        known = ", ".join(f"v{v} {n}" for v, n in sorted(SIZES))
        raise ValueError(f"no size {size!r} for version {version} (known: {known})")
    return s


def yaml_text(version: int = 2, size: str = "tiny") -> str:
    """The hyperpyyaml text written as cosyvoice.yaml (v1) / cosyvoice2.yaml (v2)."""
    s = _sizes(version, size)
    return _yaml_v2(s, size) if version == 2 else _yaml_v1(s, size)


def _qwen_config(s: dict[str, Any]) -> Any:
    from transformers import Qwen2Config

    # Qwen2-0.5B's settings except the sizes; tied embeddings as released. No sliding window (released:
    # configured but use_sliding_window false), which also spares a transformers warning per load.
    return Qwen2Config(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ff"],
                       num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                       num_key_value_heads=s["kv_heads"], tie_word_embeddings=True,
                       max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                       use_sliding_window=False, sliding_window=None, max_window_layers=s["layers"])


# Enough distinct text (English, digits, punctuation, Chinese) that a byte-level BPE fills 400 entries.
_CORPUS = [
    "Hello world, this is a test of the tiny CosyVoice model.",
    "The quick brown fox jumps over the lazy dog. Numbers like 1 2 3 4 5 6 7 8 9 0 appear too!",
    "Speech synthesis turns text into audio; streaming sends it chunk by chunk?",
    "Good morning, how are you today? The weather is nice and the river is calm.",
    "你好世界，这是一个测试。今天天气很好，我们去公园散步吧。",
    "Mixed text: CosyVoice 语音合成 works in English and 中文.",
]


def _write_tokenizer(folder: Path, vocab_size: int = 400) -> None:
    """A byte-level BPE in Qwen2Tokenizer's file layout (vocab.json + merges.txt + tokenizer_config.json).

    Upstream's QwenTokenizer adds 19 special tokens on load (<|endofprompt|>, [breath], ...), so text ids
    stay below 400 + 19 < the Qwen vocab of 512.
    """
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


def _bias_end_of_speech(decoder: Any, eos: int, share: float) -> None:
    """Near-flat speech-token logits plus a fixed end-of-speech logit (see EOS_SHARE).

    With the other top-k logits near 0, EOS gets share e^b / (e^b + TOP_K - 1) of the kept mass.
    Ids above EOS (Qwen2LM's two extra stop/fill ids) are pushed out of reach.
    """
    import torch

    with torch.no_grad():
        decoder.weight.mul_(0.01)  # logits differ by ~0.01: the top-k set still varies with context
        decoder.bias.zero_()
        decoder.weight[eos:].zero_()
        decoder.bias[eos] = math.log(share * (TOP_K - 1) / (1 - share))
        decoder.bias[eos + 1:] = -30.0


def _state_dict(module: Any, fp16: bool) -> dict[str, Any]:
    # Stored fp16 to halve the directory; loaders cast back to the module's dtype. Tied tensors (Qwen2's
    # embed_tokens / lm_head) stay one shared tensor, so torch.save writes them once (272 MB at full size).
    out: dict[str, Any] = {}
    done: dict[tuple[int, tuple[int, ...]], Any] = {}
    for k, v in module.state_dict().items():
        key = (v.data_ptr(), tuple(v.shape))
        if key not in done:
            done[key] = (v.half() if fp16 and v.is_floating_point() else v).detach().clone()
        out[k] = done[key]
    return out


def _save_onnx(graph: Any, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _onnx_campplus(path: Path, seed: int) -> None:
    """input [B,T,80] fbank -> output [B,192]: per-bin RMS over time, then a fixed projection.

    RMS rather than the mean because upstream mean-normalises the fbank, so its time mean is ~0.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = (np.random.default_rng(seed).standard_normal((80, 192)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "input"], ["sq"]),
         helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[1], keepdims=0),
         helper.make_node("Add", ["ms", "eps"], ["ms_eps"]),
         helper.make_node("Sqrt", ["ms_eps"], ["rms"]),
         helper.make_node("MatMul", ["rms", "w"], ["output"])],
        "campplus_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", "T", 80])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 192])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(1e-6, np.float32), "eps")])
    _save_onnx(graph, path)


def _onnx_speech_tokenizer(path: Path, seed: int, stride: int, vocab: int) -> None:
    """feats [1,128,T] log-mel + feats_length int32 [1] -> indices int32 [1, T // stride] in [0, vocab).

    Each token hashes the projection of its `stride` frames (100 Hz mel -> 25 Hz for v2, 50 Hz for v1),
    so the tokens are a fixed function of the mel; strided Slices keep exactly T // stride tokens, also
    zero for T < stride.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed + 1).standard_normal((128, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["feats"], ["ft"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["ft", "w"], ["proj3"]),
        helper.make_node("Squeeze", ["proj3", "axis2"], ["proj"]),  # [1, T]
        helper.make_node("Shape", ["feats"], ["shape"]),
        helper.make_node("Gather", ["shape", "idx2"], ["t"]),  # [1] int64
        helper.make_node("Div", ["t", "stride"], ["n"]),
        helper.make_node("Mul", ["n", "stride"], ["end"]),
    ]
    parts = []
    for j in range(stride):
        nodes.append(helper.make_node("Constant", [], [f"start{j}"],
                                      value=numpy_helper.from_array(np.array([j], np.int64))))
        nodes.append(helper.make_node("Slice", ["proj", f"start{j}", "end", "axis1", "stride"], [f"part{j}"]))
        parts.append(f"part{j}")
    nodes += [
        helper.make_node("Sum", parts, ["y"]),
        helper.make_node("Mul", ["y", "k"], ["y2"]),
        helper.make_node("Abs", ["y2"], ["y3"]),
        helper.make_node("Mod", ["y3", "v"], ["y4"], fmod=1),
        helper.make_node("Floor", ["y4"], ["y5"]),
        helper.make_node("Cast", ["y5"], ["indices"], to=TensorProto.INT32),
    ]
    graph = helper.make_graph(
        nodes, "speech_tokenizer_tiny",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("indices", TensorProto.INT32, [1, "N"])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array([2], np.int64), "axis2"),
         numpy_helper.from_array(np.array([2], np.int64), "idx2"),
         numpy_helper.from_array(np.array([1], np.int64), "axis1"),
         numpy_helper.from_array(np.array([stride], np.int64), "stride"),
         numpy_helper.from_array(np.array(997.0, np.float32), "k"),
         numpy_helper.from_array(np.array(float(vocab), np.float32), "v")])
    _save_onnx(graph, path)


def _build_into(out: Path, version: int, size: str, seed: int, fp16_weights: bool) -> None:
    import torch

    from .loader import build_yaml

    s = _sizes(version, size)
    text = yaml_text(version, size)
    overrides: dict[str, str] = {}
    if version == 2:
        from transformers import Qwen2ForCausalLM

        blank = out / BLANK_EN
        blank.mkdir()
        _write_tokenizer(blank)
        torch.manual_seed(seed)
        qwen = Qwen2ForCausalLM(_qwen_config(s))
        if fp16_weights:
            qwen = qwen.half()
        qwen.save_pretrained(str(blank))
        del qwen
        overrides["qwen_pretrain_path"] = str(blank)
    (out / YAML_NAME[version]).write_text(text)
    torch.manual_seed(seed)  # the yaml-built modules draw their random init from here
    configs = build_yaml(text, overrides or None, YAML_NAME[version])
    llm, flow, hift = configs["llm"], configs["flow"], configs["hift"]
    _bias_end_of_speech(llm.llm_decoder, llm.speech_token_size, EOS_SHARE[version])
    torch.save(_state_dict(llm, fp16_weights), out / "llm.pt")
    torch.save(_state_dict(flow, fp16_weights), out / "flow.pt")
    # Plain HiFTGenerator keys (no "generator." prefix; upstream strips one if present).
    torch.save(_state_dict(hift, fp16_weights), out / "hift.pt")
    del configs, llm, flow, hift
    gen = torch.Generator().manual_seed(seed + 7)
    torch.save({SPEAKER: {"embedding": torch.randn(1, 192, generator=gen)}}, out / "spk2info.pt")
    _onnx_campplus(out / "campplus.onnx", seed)
    _onnx_speech_tokenizer(out / f"speech_tokenizer_v{version}.onnx", seed,
                           stride=4 if version == 2 else 2, vocab=SPEECH_VOCAB[version])


def _publish_permissions(root: Path) -> None:
    # mkdtemp and safetensors create private (0700/0600) entries; a model dir is shared like any other.
    root.chmod(0o755)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


def build(out_dir: str | os.PathLike[str], *, version: int = 2, size: str = "tiny", seed: int = 0,
          fp16_weights: bool = True) -> Path:
    """Writes a model directory into ``out_dir`` (absent or empty) and returns its path.

    Raises FileExistsError if ``out_dir`` is a file or a non-empty directory: nothing is overwritten.
    """
    out = Path(out_dir)
    _sizes(version, size)  # fail on bad arguments before touching the disk
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed at the end: a crash never leaves a half directory.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building.", dir=out.parent))
    try:
        _build_into(tmp, version, size, seed, fp16_weights)
        _publish_permissions(tmp)
        if out.exists():
            out.rmdir()  # empty (checked above); fails rather than overwrite if something appeared since
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def param_counts(version: int = 2, size: str = "tiny") -> dict[str, int]:
    """Parameter counts of llm/flow/hift, built on the meta device: no weights, no disk, a few seconds."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    s = _sizes(version, size)
    with torch.device("meta"):
        # llm: None skips the Qwen2Encoder, which could only be built from a saved Qwen2 folder.
        configs = load_hyperpyyaml(yaml_text(version, size), overrides={"llm": None} if version == 2 else None)
        counts = {k: sum(p.numel() for p in configs[k].parameters()) for k in ("flow", "hift")}
        if version == 2:
            from cosyvoice.llm.llm import Qwen2LM
            from transformers import Qwen2ForCausalLM

            qwen = Qwen2ForCausalLM(_qwen_config(s))
            rest = Qwen2LM(s["hidden"], s["hidden"], SPEECH_VOCAB[2], llm=torch.nn.Identity(), sampling=None)
            counts["llm"] = sum(p.numel() for p in qwen.parameters()) + sum(p.numel() for p in rest.parameters())
        else:
            counts["llm"] = sum(p.numel() for p in configs["llm"].parameters())
    return counts


def cache_root() -> Path:
    return Path(os.environ.get("COSY_CACHE_DIR") or Path.home() / ".cache" / "pytest-cosyvoice")


def _source_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]


def default_model_dir(version: int = 2, *, size: str = "tiny", seed: int = 0) -> Path:
    """The embedded default model: built on first use into the cache, then reused.

    The folder name carries version, size, seed and a hash of this file, so a changed builder rebuilds.
    Safe when several processes (xdist workers) ask at once: one builds under a file lock, the others
    wait for it and reuse the result; the build itself ends in an atomic rename.
    """
    _sizes(version, size)
    root = cache_root()
    target = root / f"cosyvoice-v{version}-{size}-seed{seed}-{_source_digest()}"
    if (target / YAML_NAME[version]).is_file():  # only ever appears complete (atomic rename)
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (target / YAML_NAME[version]).is_file():
                build(target, version=version, size=size, seed=seed)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cosyvoice_runtime.tiny",
                                 description="Build a random-weight CosyVoice model directory.")
    ap.add_argument("out", help="directory to create (must not exist or be empty)")
    ap.add_argument("--version", type=int, choices=(1, 2), default=2)
    ap.add_argument("--size", choices=("tiny", "mid", "full"), default="tiny",
                    help="mid (v2 only): between tiny and full, for timings; full (v2 only): the "
                         "CosyVoice2-0.5B shapes, about 1 GB with fp16-stored weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp32-weights", action="store_true", help="store weights as fp32 (default: fp16)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = build(args.out, version=args.version, size=args.size, seed=args.seed,
                    fp16_weights=not args.fp32_weights)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"{out}: CosyVoice v{args.version} {args.size}, {mb:.1f} MB, built in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
