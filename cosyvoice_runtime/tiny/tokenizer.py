"""The v2 text tokenizer: a small byte-level BPE trained here, stored in Qwen2Tokenizer's file layout."""
from __future__ import annotations

import json
from pathlib import Path

# Enough distinct text (English, digits, punctuation, Chinese) that a byte-level BPE fills 400 entries.
_CORPUS = [
    "Hello world, this is a test of the tiny CosyVoice model.",
    "The quick brown fox jumps over the lazy dog. Numbers like 1 2 3 4 5 6 7 8 9 0 appear too!",
    "Speech synthesis turns text into audio; streaming sends it chunk by chunk?",
    "Good morning, how are you today? The weather is nice and the river is calm.",
    "你好世界，这是一个测试。今天天气很好，我们去公园散步吧。",
    "Mixed text: CosyVoice 语音合成 works in English and 中文.",
]


def write_qwen_tokenizer(folder: Path, vocab_size: int = 400) -> None:
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
