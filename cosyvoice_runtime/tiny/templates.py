"""The hyperpyyaml text of the built models: the released cosyvoice.yaml (v1) / cosyvoice2.yaml (v2) with
the sizes of ``spec.SIZES`` and the vocabularies, sample rates and sampling of ``spec``."""
from __future__ import annotations

from typing import Any

from .spec import BLANK_EN, SAMPLE_RATE, SPEECH_VOCAB, TOP_K, V1_TEXT_VOCAB, sizes

_SAMPLING = f"""sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: {TOP_K}
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


def _encoder_body(s: dict[str, Any], input_size: int) -> str:
    """The flow's conformer encoder settings both releases share (their classes and extras differ)."""
    return f"""attention_heads: {s['enc_heads']}
        linear_units: {s['enc_ff']}
        num_blocks: {s['enc_blocks']}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: {input_size}
        use_cnn_module: False
        macaron_style: False"""


def _decoder_yaml(s: dict[str, Any], cfm: str, estimator: str) -> str:
    """The flow's CFM decoder and estimator: v2 uses the causal classes (plus chunk settings after)."""
    return f"""decoder: !new:cosyvoice.flow.flow_matching.{cfm}
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        {_CFM}
        estimator: !new:cosyvoice.flow.decoder.{estimator}
            in_channels: 320
            out_channels: 80
            channels: [{s['dec_channels']}]
            dropout: 0.0
            attention_head_dim: {s['dec_head_dim']}
            n_blocks: {s['dec_blocks']}
            num_mid_blocks: {s['dec_mid']}
            num_heads: {s['dec_heads']}
            act_fn: 'gelu'"""


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
sample_rate: {SAMPLE_RATE[2]}
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
        {_encoder_body(s, 512)}
        static_chunk_size: !ref <chunk_size>
    {_decoder_yaml(s, 'CausalConditionalCFM', 'CausalConditionalDecoder')}
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
sample_rate: {SAMPLE_RATE[1]}
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
        {_encoder_body(s, s['flow_dim'])}
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1, 1, 1]
    {_decoder_yaml(s, 'ConditionalCFM', 'ConditionalDecoder')}

{_hift_yaml(s, [8, 8], [16, 16], [7, 11])}
get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_tokenizer
    multilingual: True
    num_languages: 100
    language: 'en'
    task: 'transcribe'
allowed_special: 'all'

{_mel_yaml(1024, 256)}"""


def yaml_text(version: int = 2, size: str = "tiny") -> str:
    """The hyperpyyaml text written as ``YAML_NAMES[version]`` (cosyvoice.yaml / cosyvoice2.yaml)."""
    s = sizes(version, size)
    return _yaml_v2(s, size) if version == 2 else _yaml_v1(s, size)
