"""Turns a request's arguments into the tensors the LLM and flow take: text tokens, prompt speech
tokens (speech tokenizer ONNX), speaker embedding (campplus ONNX) and prompt mel (yaml feat_extractor)."""
from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import read_wav, resample
from .errors import InvalidInput, ModelLoadError
from .limits import checked_pieces

PROMPT_RATE = 16000
_FEAT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelInput:
    """One request's model inputs (batch 1), on the CPU."""

    mode: str
    text: torch.Tensor | None = None                      # [1, T] int32, None for vc
    prompt_text: torch.Tensor = torch.zeros(1, 0, dtype=torch.int32)
    llm_prompt_speech_token: torch.Tensor = torch.zeros(1, 0, dtype=torch.int32)
    flow_prompt_speech_token: torch.Tensor = torch.zeros(1, 0, dtype=torch.int32)
    prompt_speech_feat: torch.Tensor = torch.zeros(1, 0, 80)
    llm_embedding: torch.Tensor = torch.zeros(0, 192)
    flow_embedding: torch.Tensor = torch.zeros(0, 192)
    source_speech_token: torch.Tensor = torch.zeros(1, 0, dtype=torch.int32)


@dataclass(frozen=True)
class PromptFeatures:
    speech_token: torch.Tensor
    speech_feat: torch.Tensor
    embedding: torch.Tensor


class Frontend:
    def __init__(self, configs: dict[str, Any], campplus: Path, speech_tokenizer: Path, spk2info: dict[str, Any],
                 sample_rate: int, version: int) -> None:
        try:
            import onnxruntime
        except ImportError as e:
            raise ModelLoadError(f"onnxruntime is needed for the ONNX frontends: pip install onnxruntime ({e})") from e
        self.tokenizer = configs["get_tokenizer"]()
        self.allowed_special = configs.get("allowed_special", "all")
        self.feat_extractor = configs["feat_extractor"]
        self.spk2info = spk2info
        self.sample_rate = sample_rate
        self.version = version
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        self._sessions = {}
        for name, path in (("campplus", campplus), ("speech_tokenizer", speech_tokenizer)):
            try:
                self._sessions[name] = onnxruntime.InferenceSession(str(path), sess_options=opts,
                                                                    providers=["CPUExecutionProvider"])
            except Exception as e:
                raise ModelLoadError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {e})") from e
        self._prompt_cache: OrderedDict[tuple[str, int, int], PromptFeatures] = OrderedDict()
        self._lock = threading.Lock()

    # -- text ---------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, allowed_special=self.allowed_special))

    def text_tokens(self, text: str) -> torch.Tensor:
        return torch.tensor([self.encode(text)], dtype=torch.int32)

    def text_token_stream(self, pieces: Iterator[str]) -> Iterator[torch.Tensor]:
        """Streaming text input: one [1,1] token tensor at a time, as upstream's bistream LLM takes it.
        Raises InvalidInput (in the producer; the stream re-raises it) for a non-str piece or once the
        pieces pass MAX_TEXT_CHARS."""
        for piece in checked_pieces(pieces):
            for tok in self.encode(piece):
                yield torch.tensor([[tok]], dtype=torch.int32)

    # -- audio --------------------------------------------------------------------------------
    def speech_tokens(self, audio16k: np.ndarray) -> torch.Tensor:
        import whisper

        feat = whisper.log_mel_spectrogram(torch.from_numpy(audio16k)[None], n_mels=128)
        sess = self._sessions["speech_tokenizer"]
        ins = sess.get_inputs()
        out = sess.run(None, {ins[0].name: feat.numpy(), ins[1].name: np.array([feat.shape[2]], dtype=np.int32)})[0]
        return torch.tensor(np.asarray(out).reshape(1, -1), dtype=torch.int32)

    def embedding(self, audio16k: np.ndarray) -> torch.Tensor:
        import torchaudio.compliance.kaldi as kaldi

        feat = kaldi.fbank(torch.from_numpy(audio16k)[None], num_mel_bins=80, dither=0, sample_frequency=PROMPT_RATE)
        feat = feat - feat.mean(dim=0, keepdim=True)
        sess = self._sessions["campplus"]
        out = sess.run(None, {sess.get_inputs()[0].name: feat[None].numpy()})[0]
        return torch.tensor(np.asarray(out, dtype=np.float32).reshape(1, -1))

    def speech_feat(self, audio: np.ndarray) -> torch.Tensor:
        with _FEAT_LOCK:
            # matcha's mel_spectrogram caches its window and mel basis by fmax and device only, so a v1
            # (n_fft 1024) and a v2 (n_fft 1920) model in one process would share the wrong window.
            mod = sys.modules.get(getattr(getattr(self.feat_extractor, "func", None), "__module__", "") or "")
            for name in ("hann_window", "mel_basis"):
                cache = getattr(mod, name, None)
                if isinstance(cache, dict):
                    cache.clear()
            feat: torch.Tensor = self.feat_extractor(torch.from_numpy(audio)[None])  # [1, 80, T]
        return feat.squeeze(0).transpose(0, 1)[None].float()  # [1, T, 80]

    def prompt(self, wav: str | os.PathLike[str], *, what: str = "prompt_wav") -> PromptFeatures:
        """Prompt tokens, mel and embedding of a file; cached by path, size and mtime."""
        # Not a path: read_wav below refuses it with the argument's name.
        p = Path(wav) if isinstance(wav, (str, os.PathLike)) else None
        st = p.stat() if p is not None and p.is_file() else None
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns) if st else None
        if key is not None:
            with self._lock:
                hit = self._prompt_cache.get(key)
            if hit is not None:
                return hit
        audio, rate = read_wav(wav, what=what)
        a16 = resample(audio, rate, PROMPT_RATE)
        tokens = self.speech_tokens(a16)
        feat = self.speech_feat(resample(audio, rate, self.sample_rate))
        if self.version >= 2:
            # The v2/v3 flow needs exactly 2 mel frames per prompt token.
            n = min(feat.shape[1] // 2, tokens.shape[1])
            feat, tokens = feat[:, : 2 * n], tokens[:, :n]
        if tokens.shape[1] == 0:  # a released tokenizer with a longer receptive field than measured
            raise InvalidInput(f"{what}={str(wav)!r}: too short to give any speech token; expected a longer recording")
        prompt = PromptFeatures(speech_token=tokens, speech_feat=feat, embedding=self.embedding(a16))
        if key is not None:
            with self._lock:
                self._prompt_cache[key] = prompt
                while len(self._prompt_cache) > 16:
                    self._prompt_cache.popitem(last=False)
        return prompt

    # -- modes --------------------------------------------------------------------------------
    def speaker_embedding(self, speaker: str) -> torch.Tensor:
        info = self.spk2info.get(speaker)
        if info is None:
            raise InvalidInput(f"speaker={speaker!r} is not in spk2info.pt; "
                               f"available: {sorted(self.spk2info) or 'none'}")
        emb: torch.Tensor = info["embedding"]
        return emb.float().reshape(1, -1)

    def build(self, mode: str, text: torch.Tensor | None, *, speaker: str | None, prompt_wav: Any,
              prompt_text: str | None, instruct: str | None, source_wav: Any) -> ModelInput:
        if mode == "sft":
            emb = self.speaker_embedding(speaker or "")
            return ModelInput(mode, text, llm_embedding=emb, flow_embedding=emb)
        if mode == "instruct" and self.version == 1:
            assert instruct is not None  # resolve_mode picks "instruct" only when an instruction was given
            emb = self.speaker_embedding(speaker or "")
            return ModelInput(mode, text, prompt_text=self.text_tokens(_end_prompt(instruct, "<endofprompt>")),
                              flow_embedding=emb)
        pr = self.prompt(prompt_wav)
        base = ModelInput(mode, text, flow_prompt_speech_token=pr.speech_token, prompt_speech_feat=pr.speech_feat,
                          llm_embedding=pr.embedding, flow_embedding=pr.embedding)
        if mode == "zero_shot":
            return replace(base, prompt_text=self.text_tokens(prompt_text or ""),
                           llm_prompt_speech_token=pr.speech_token)
        if mode == "cross_lingual":
            return base
        if mode == "instruct":  # v2/v3: instruct text as the LLM prompt, the wav gives the voice
            assert instruct is not None  # as above
            return replace(base, prompt_text=self.text_tokens(_end_prompt(instruct, "<|endofprompt|>")))
        if mode == "vc":
            src, rate = read_wav(source_wav, what="source_wav")
            return replace(base, text=None, source_speech_token=self.speech_tokens(resample(src, rate, PROMPT_RATE)))
        raise InvalidInput(f"unknown mode {mode!r}")


def _end_prompt(instruct: str, marker: str) -> str:
    """The instruction closed by the model's end-of-prompt marker; CosyVoice3 users often write the
    marker themselves (upstream's v3 examples do), and it must not appear twice."""
    return instruct if marker in instruct else f"{instruct}{marker}"
