"""Random-weight CosyVoice model directories of the released layout: tiny, mid (v2) or full size (v2).

No CosyVoice weights can be fetched here, so tests and the embedded default model use directories
built from the real upstream component classes (``cosyvoice``, ``matcha``) with small sizes and random
weights, plus small ONNX frontends with the released models' inputs and outputs. A loader reads them
exactly like a released CosyVoice-300M (v1) or CosyVoice2-0.5B (v2) directory.

    python -m cosyvoice_runtime.tiny OUT --version 2 [--size tiny|mid|full] [--seed 0]

Utterance lengths: a random LLM never samples end-of-speech, so every utterance would run to the
20x-text cap. The builder flattens the LLM's output layer and gives end-of-speech a fixed bias, so that
after upstream's minimum of 2 speech tokens per text token an utterance ends with a steady chance per
step (``EOS_SHARE``). Measured with upstream ``inference`` (see ``builder.EOS_SHARE``): 2-4 speech tokens per
text token for sentence-length texts, deterministic for a given ``torch.manual_seed``.

Modules: ``spec`` (vocabularies, sample rates, sizes), ``templates`` (the yaml text), ``tokenizer``
(the v2 BPE), ``frontends`` (the ONNX models; the only user of the optional ``onnx`` package),
``builder`` (weights, end-of-speech bias, atomic publish, parameter counts), ``cache`` (the embedded
default model under a cross-process lock), ``cli``. Building needs the ``onnx`` extra
(``pip install 'pytest-cosyvoice[onnx]'``); loading a built model does not.
"""
from __future__ import annotations

from ..loader import YAML_NAMES
from .builder import EOS_SHARE, build, param_counts
from .cache import cache_root, default_model_dir
from .cli import main
from .frontends import ONNX_HINT, MissingExtra
from .spec import BLANK_EN, SAMPLE_RATE, SIZES, SPEAKER, SPEECH_VOCAB, TOP_K, V1_TEXT_VOCAB
from .templates import yaml_text

__all__ = [
    "BLANK_EN", "EOS_SHARE", "ONNX_HINT", "SAMPLE_RATE", "SIZES", "SPEAKER", "SPEECH_VOCAB", "TOP_K",
    "V1_TEXT_VOCAB", "YAML_NAMES", "MissingExtra", "build", "cache_root", "default_model_dir", "main",
    "param_counts", "yaml_text",
]
