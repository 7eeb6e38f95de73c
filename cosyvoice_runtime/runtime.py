"""The Runtime: a loaded model directory and its public API. A request is checked and planned by
``requests.RequestPlanner`` and streamed by ``streaming.Streamer``; the quality API (``render``,
``score_tokens``, ``speaker_embedding``) is ``runtime_quality.QualityAPI``'s."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch

from .errors import InvalidInput
from .frontend import Frontend
from .limits import DEFAULT_STALL_TIMEOUT_S, check_seed, check_timeout, resolve_auto
from .loader import load_model
from .observer import StreamObserver, check_observer
from .requests import Plan, RequestPlanner, available_modes, check_speed
from .runtime_quality import QualityAPI
from .runtime_settings import RuntimeSettings
from .scoring import TokenScores, sampling_top_k
from .streaming import Streamer
from .text import warm as warm_normalisers
from .token_source import LLMTokenSource
from .types import Chunk, StreamStats, Synthesis

log = logging.getLogger("cosyvoice_runtime")

def resolve_device(device: str) -> torch.device:
    resolved = resolve_auto(device)
    if device == "auto":  # torch.device("cuda"): the current CUDA device, not a fixed index
        return torch.device(resolved)
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InvalidInput(f"device={device!r}: CUDA is not available on this machine (torch {torch.__version__})")
    idx = int(device.split(":", 1)[1]) if ":" in device else 0
    if idx >= torch.cuda.device_count():
        raise InvalidInput(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device("cuda", idx)


class Runtime:
    """A loaded CosyVoice model. ``stream`` and ``synthesize`` may be called from several threads.

    A request is checked and planned by ``requests.RequestPlanner``, its tokens come from
    ``token_source.LLMTokenSource`` in a producer thread, and ``streaming.Streamer`` renders them into
    chunks; ``render``, ``score_tokens`` and ``speaker_embedding`` are ``runtime_quality.QualityAPI``'s."""

    # What a test harness may pass or call beyond text and voice, said as plain data (the harness reads
    # it, this package knows nothing of it; pytest-cosyvoice's ``EngineAbilities``): ``stream`` and
    # ``synthesize`` take ``seed=``, ``observer=`` and ``stall_timeout_s=``; ``render``,
    # ``score_tokens`` and ``speaker_embedding`` exist. A wrapper that hands attributes on to a Runtime
    # hands this on too.
    cosy_abilities: ClassVar[Mapping[str, bool]] = MappingProxyType({
        "seed": True, "observer": True, "stall_timeout": True, "render": True, "score_tokens": True,
        "speaker_embedding": True})

    def __init__(self, model_dir: str | os.PathLike[str], *, device: str = "auto", fp16: bool = False,
                 stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> None:
        self.device = resolve_device(device)
        if fp16 and self.device.type != "cuda":
            raise InvalidInput(f"fp16=True needs a CUDA device; device={device!r} resolved to {self.device}")
        self.settings = RuntimeSettings(stall_timeout_s=stall_timeout_s)
        self.fp16 = bool(fp16)
        t0 = time.perf_counter()
        loaded = load_model(model_dir)
        self.model_dir = Path(model_dir)
        self.version = loaded.files.version
        self.configs = loaded.configs
        self.sample_rate = int(loaded.configs["sample_rate"])
        self.llm, self.flow, self.hift = loaded.llm, loaded.flow, loaded.hift
        for m in (self.llm, self.flow, self.hift):
            m.to(self.device).eval()
        if self.fp16:
            self.llm.half()
            self.flow.half()
        self.frontend = Frontend(loaded.configs, loaded.files.campplus, loaded.files.speech_tokenizer,
                                 loaded.spk2info, self.sample_rate, self.version)
        self.spk2info_file = loaded.files.spk2info
        # Upstream's rule (cli/cosyvoice.py): v1 instruct only for a model path containing '-Instruct'
        # (CosyVoice-300M-Instruct); the weights alone do not say. v2/v3 instruct with a prompt wav.
        self.supports_instruct = self.version >= 2 or "-Instruct" in str(Path(model_dir).absolute())
        self._planner = RequestPlanner(self.frontend, version=self.version, model_dir=self.model_dir,
                                       spk2info_file=self.spk2info_file, supports_instruct=self.supports_instruct)
        tokens = LLMTokenSource(self.version, self.llm, self.flow, self.frontend, self.device, self.autocast)
        self._streamer = Streamer(self, tokens)
        self._quality = QualityAPI(self)
        warm_normalisers()  # the text normalisers' imports are slow: at load, not in the first request
        log.info("loaded CosyVoice v%d from %s on %s (fp16=%s) in %.2f s", self.version, self.model_dir,
                 self.device, self.fp16, time.perf_counter() - t0)

    # -- public --------------------------------------------------------------------------------
    @property
    def speakers(self) -> list[str]:
        return sorted(self.frontend.spk2info)

    @property
    def modes(self) -> list[str]:
        """The modes this model can run (sft needs speakers; v1 instruct an Instruct model and a speaker)."""
        return available_modes(self.version, has_speakers=bool(self.speakers),
                               supports_instruct=self.supports_instruct)

    @property
    def active_requests(self) -> int:
        """Requests whose state is still held (0 once every stream finished or was closed)."""
        return self._streamer.active_requests

    @property
    def speech_vocab(self) -> int:
        """How many speech token ids the loaded flow embeds (v1 4096, v2/v3 6561): the valid ids of
        ``render`` are 0 to speech_vocab - 1."""
        return self._quality.speech_vocab

    @property
    def sampling_top_k(self) -> int | None:
        """The top_k the LLM samples with, read from the loaded sampler (``llm.sampling``, a
        functools.partial of the yaml's sampling function) each time, so a replaced sampler shows; None
        when it is not readable."""
        return sampling_top_k(self.llm)

    @property
    def reference_available(self) -> bool:
        """Whether ``render(..., reference=True)`` can run: always here (CPU copies of the loaded flow
        and vocoder, in ``runtime_quality.REFERENCE_DTYPES``, are made at the first such render)."""
        return True

    @property
    def has_campplus(self) -> bool:
        """Whether ``speaker_embedding`` can run: always, the loader refuses a model directory without
        campplus.onnx (ModelLoadError naming it). Engines that may lack it answer False."""
        return True

    def speaker_embedding(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The speaker embedding (1-D float32) campplus.onnx gives ``audio`` (mono float samples at
        ``sample_rate``): ``runtime_quality.QualityAPI.speaker_embedding``."""
        return self._quality.speaker_embedding(audio, sample_rate)

    def render(self, text: str | Iterable[str], tokens: Any, *, speaker: str | None = None, prompt_wav: Any = None,
               prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
               text_frontend: bool = True, streamed: bool = False, seed: int | None = None,
               reference: bool = False) -> Synthesis:
        """Token -> wav of the given speech ``tokens`` in the voice of the request the other arguments
        describe, offline or on the hop schedule (``streamed``), seeded, or on float64 CPU copies
        (``reference``): ``runtime_quality.QualityAPI.render`` says it all."""
        return self._quality.render(text, tokens, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text,
                                    instruct=instruct, source_wav=source_wav, text_frontend=text_frontend,
                                    streamed=streamed, seed=seed, reference=reference)

    def score_tokens(self, text: str, tokens: Any, *, speaker: str | None = None, prompt_wav: Any = None,
                     prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
                     text_frontend: bool = True) -> TokenScores:
        """Teacher forcing: the LLM's rank of each given token given the text (one sentence), the voice
        and the tokens before it: ``runtime_quality.QualityAPI.score_tokens``."""
        return self._quality.score_tokens(text, tokens, speaker=speaker, prompt_wav=prompt_wav,
                                          prompt_text=prompt_text, instruct=instruct, source_wav=source_wav,
                                          text_frontend=text_frontend)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The autocast the loaded components run under (fp16 on CUDA, else off)."""
        return torch.autocast(device_type=self.device.type, enabled=self.fp16)  # torch.amp's, not torch.cuda.amp's

    def configure(self, **changes: Any) -> RuntimeSettings:
        known = {f.name for f in fields(RuntimeSettings)}
        bad = sorted(set(changes) - known)
        if bad:
            raise InvalidInput(f"unknown setting(s) {bad}; valid: {sorted(known)}")
        self.settings = replace(self.settings, **changes)
        return self.settings

    def stream(self, text: str | Iterable[str], *, speaker: str | None = None, prompt_wav: Any = None,
               prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
               speed: float = 1.0, text_frontend: bool = True, observer: StreamObserver | None = None,
               stall_timeout_s: float | None = None, seed: int | None = None) -> Iterator[Chunk]:
        """Streams chunks as soon as hop + lookahead tokens exist. Arguments are checked now, not at the
        first ``next``. Raises StreamError / StreamStalled / TokenLimitExceeded after the chunks already
        rendered, and InvalidInput for a bad piece of a text iterator (those are read lazily).

        ``observer`` hears of this request's tokens, chunks and end (see ``StreamObserver``);
        ``stall_timeout_s`` replaces ``settings.stall_timeout_s`` for this request only. ``seed`` (a whole
        number 0 <= seed < 2**63) makes the request's random draws its own (``seeding.SeededDraws``): the
        same inputs and seed give the same tokens and audio, alone or beside other requests; None draws
        from torch's global generator as upstream does."""
        if check_speed(speed) != 1.0:
            raise InvalidInput(f"speed={speed!r}: speed change is only supported by synthesize() (non-streamed)")
        stall = self._stall_timeout(stall_timeout_s)
        seed = check_seed(seed)
        check_observer(observer)
        plan = self.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                         source_wav=source_wav, text_frontend=text_frontend)
        return self._streamer.run(plan, streaming=True, speed=1.0, stats=StreamStats(), stall_timeout_s=stall,
                                  observer=observer, seed=seed)

    def synthesize(self, text: str | Iterable[str], *, speaker: str | None = None, prompt_wav: Any = None,
                   prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
                   speed: float = 1.0, text_frontend: bool = True, observer: StreamObserver | None = None,
                   stall_timeout_s: float | None = None, seed: int | None = None) -> Synthesis:
        """Non-streamed synthesis (all tokens rendered at once, per sentence), like upstream's stream=False.
        ``observer``, ``stall_timeout_s`` and ``seed`` as for ``stream`` (the same seed gives the same
        tokens as a stream, but not the same audio: the vocoder's noise is drawn per rendered piece)."""
        speed = check_speed(speed)
        stall = self._stall_timeout(stall_timeout_s)
        seed = check_seed(seed)
        check_observer(observer)
        plan = self.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                         source_wav=source_wav, text_frontend=text_frontend)
        stats = StreamStats()
        chunks = list(self._streamer.run(plan, streaming=False, speed=speed, stats=stats, stall_timeout_s=stall,
                                         observer=observer, seed=seed))
        return Synthesis.from_chunks(chunks, self.sample_rate, stats)

    def plan(self, text: str | Iterable[str], *, speaker: str | None = None, prompt_wav: Any = None,
             prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
             text_frontend: bool = True) -> Plan:
        """Checks a request's arguments and prepares its model inputs, without running any model part
        but the frontend (text normalisation, prompt features and tokens, speaker embedding): what
        ``stream``/``synthesize`` run, and what another orchestration (``upstream.UpstreamEngine``) can
        drive. Raises InvalidInput as those do."""
        return self._planner.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text,
                                  instruct=instruct, source_wav=source_wav, text_frontend=text_frontend)

    # -- internals -------------------------------------------------------------------------------
    def _stall_timeout(self, value: float | None) -> float:
        return self.settings.stall_timeout_s if value is None else check_timeout("stall_timeout_s", value)


def load(model_dir: str | os.PathLike[str], *, device: str = "auto", fp16: bool = False,
         stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> Runtime:
    return Runtime(model_dir, device=device, fp16=fp16, stall_timeout_s=stall_timeout_s)
