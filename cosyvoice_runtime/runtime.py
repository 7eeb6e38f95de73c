"""The Runtime: a loaded model directory and the streaming orchestration with upstream's fixes."""
from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch

from .audio import check_samples, resample
from .channel import TokenChannel, start_producer
from .errors import InvalidInput, shown
from .frontend import PROMPT_RATE, Frontend, ModelInput
from .limits import DEFAULT_STALL_TIMEOUT_S, check_seed, check_timeout, resolve_auto
from .loader import load_model
from .observer import StreamObserver, check_observer
from .requests import Plan, RequestPlanner, TextStreamInput, available_modes, check_speech_tokens, check_speed
from .scoring import TokenScores, forced_logp, ranks_of, sampling_top_k
from .text import warm as warm_normalisers
from .token2wav import Schedule, make_renderer
from .token_source import LLMTokenSource
from .types import Chunk, ChunkTally, StreamStats, Synthesis

log = logging.getLogger("cosyvoice_runtime")
_ids = itertools.count(1)
# The dtypes of the reference render's CPU copies (``Runtime.render(..., reference=True)``): the vocoder
# in float64; the flow in float32, because upstream's flow decoders refuse float64 (their attention
# masks assert float32/bfloat16/float16: ``cosyvoice.utils.common.mask_to_bias``).
REFERENCE_DTYPES: dict[str, torch.dtype] = {"flow": torch.float32, "hift": torch.float64}


@dataclass(frozen=True)
class RuntimeSettings:
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S  # no new token for this long -> StreamStalled
    join_timeout_s: float = 5.0        # producer join at the end of a request
    token_hop_len: int = 25            # v2/v3 first hop (tokens)
    token_max_hop_len: int = 100       # v2/v3 hop ceiling
    stream_scale_factor: float = 2.0   # v2/v3 hop growth per chunk, per request
    flow_context_tokens: int | None = None  # bounded-context flow (None: exact, all tokens)
    empty_cuda_cache: bool = False     # torch.cuda.empty_cache() after each request

    def __post_init__(self) -> None:
        for name in ("stall_timeout_s", "join_timeout_s"):
            object.__setattr__(self, name, check_timeout(name, getattr(self, name)))
        for name in ("token_hop_len", "token_max_hop_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidInput(f"{name}={v!r}: expected a positive whole number of tokens")
        if self.token_max_hop_len < self.token_hop_len:
            raise InvalidInput(f"token_max_hop_len={self.token_max_hop_len} is below "
                               f"token_hop_len={self.token_hop_len}")
        f = self.stream_scale_factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 1 <= f < math.inf:
            raise InvalidInput(f"stream_scale_factor={f!r}: expected a finite number >= 1")
        k = self.flow_context_tokens
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise InvalidInput(f"flow_context_tokens={k!r}: expected None (exact) or a positive whole number")
        if not isinstance(self.empty_cuda_cache, bool):
            raise InvalidInput(f"empty_cuda_cache={self.empty_cuda_cache!r}: expected True or False")


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
    ``token_source.LLMTokenSource`` in a producer thread, and this class renders them into chunks."""

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
        self._tokens = LLMTokenSource(self.version, self.llm, self.flow, self.frontend, self.device, self._autocast)
        warm_normalisers()  # the text normalisers' imports are slow: at load, not in the first request
        self._lock = threading.Lock()
        self._reference_lock = threading.Lock()
        self._reference: tuple[Any, Any] | None = None   # (flow, hift): CPU copies, made at first use
        self._active: dict[str, threading.Thread | None] = {}
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
        with self._lock:
            return len(self._active)

    @property
    def speech_vocab(self) -> int:
        """How many speech token ids the loaded flow embeds (v1 4096, v2/v3 6561): the valid ids of
        ``render`` are 0 to speech_vocab - 1."""
        emb = getattr(self.flow, "input_embedding", None)
        n = getattr(emb, "num_embeddings", None) or getattr(self.flow, "vocab_size", None)
        if not isinstance(n, int) or n < 1:
            raise RuntimeError(f"the loaded flow ({type(self.flow).__name__}) names no speech vocabulary "
                               "(input_embedding.num_embeddings or vocab_size)")
        return n

    @property
    def sampling_top_k(self) -> int | None:
        """The top_k the LLM samples with, read from the loaded sampler (``llm.sampling``, a
        functools.partial of the yaml's sampling function) each time, so a replaced sampler shows; None
        when it is not readable."""
        return sampling_top_k(self.llm)

    @property
    def reference_available(self) -> bool:
        """Whether ``render(..., reference=True)`` can run: always here (CPU copies of the loaded flow
        and vocoder, in ``REFERENCE_DTYPES``, are made at the first such render)."""
        return True

    @property
    def has_campplus(self) -> bool:
        """Whether ``speaker_embedding`` can run: always, the loader refuses a model directory without
        campplus.onnx (ModelLoadError naming it). Engines that may lack it answer False."""
        return True

    def speaker_embedding(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The speaker embedding (1-D float32) the model directory's campplus.onnx gives ``audio`` (mono
        float samples at ``sample_rate``, resampled to 16 kHz): what the frontend computes for a prompt.
        InvalidInput for audio that is not mono float samples, has none, holds NaN/Inf or is under 100 ms,
        and for a sample rate that is not a positive whole number."""
        samples, rate = check_samples(audio, sample_rate)
        emb = self.frontend.embedding(resample(samples, rate, PROMPT_RATE))
        out: np.ndarray = emb.reshape(-1).numpy().astype(np.float32, copy=False)
        return out

    def render(self, text: str | Iterable[str], tokens: Any, *, speaker: str | None = None, prompt_wav: Any = None,
               prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
               text_frontend: bool = True, streamed: bool = False, seed: int | None = None,
               reference: bool = False) -> Synthesis:
        """Token -> wav of the given speech ``tokens`` (a flat sequence of ids, e.g. a request's
        ``StreamStats.speech_tokens``, every sentence's together) in the voice of the request the other
        arguments describe (``plan``'s first input: prompt tokens, prompt mel, speaker embedding; the text
        selects nothing else). Rendered as one piece: ``streamed=False`` is one closing render (offline);
        ``streamed=True`` renders the chunks of the runtime's hop schedule, then the closing one, as a
        stream renders them. ``seed`` names the vocoder's (and v1 flow's) draws ``render/...``: the same
        tokens, voice and seed give the same audio. The chunks carry the tokens each covers; the stats
        the given ids. InvalidInput for tokens that are not such a sequence, naming the valid range.

        ``reference=True`` (needs a seed) renders the same on the runtime's CPU copies of the loaded
        flow and vocoder (made once, at the first such call; the loaded ones are not changed), without
        autocast: the flow in float32 (upstream's flow decoders refuse float64), the vocoder in float64
        on the flow's mel cast to float64, every seeded draw made in float32 and cast
        (``SeededDraws(draw_dtype=float32)``), so it is the same function as the seeded render in
        (at least) float32 CPU precision: the reference a render's numerical error is measured
        against. The audio is float32 as always."""
        seed = check_seed(seed)
        if not isinstance(streamed, bool):
            raise InvalidInput(f"streamed={shown(streamed)}: expected True or False")
        if not isinstance(reference, bool):
            raise InvalidInput(f"reference={shown(reference)}: expected True or False")
        if reference and seed is None:
            raise InvalidInput("reference=True with seed=None: a reference render needs a seed (the same "
                               "draws as the seeded render it is compared with)")
        ids = check_speech_tokens(tokens, self.speech_vocab, version=self.version)
        plan = self.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                         source_wav=source_wav, text_frontend=text_frontend)
        first = plan.inputs[0]
        voice = first.inputs if isinstance(first, TextStreamInput) else first
        s = self.settings
        schedule = Schedule(s.token_hop_len, s.token_max_hop_len, s.stream_scale_factor)
        if reference:
            flow, hift = self._reference_components()
            renderer = make_renderer(self.version, flow, hift, voice, torch.device("cpu"), _no_autocast, schedule,
                                     context_tokens=s.flow_context_tokens, seed=seed, draws_name="render",
                                     dtype=REFERENCE_DTYPES["hift"], draw_dtype=torch.float32)
        else:
            renderer = make_renderer(self.version, self.flow, self.hift, voice, self.device, self._autocast,
                                     schedule, context_tokens=s.flow_context_tokens, seed=seed, draws_name="render")
        stats = StreamStats(sentences=1)
        stats.add_speech_tokens(ids)
        tally = ChunkTally(self.sample_rate, stats)
        chunks: list[Chunk] = []
        try:
            with torch.inference_mode():
                # The loop of `_request` with every token already there: a chunk whenever the renderer's
                # next hop (plus look-ahead / overlap) is covered, then the closing render of the rest.
                while streamed and renderer.tokens_needed() <= len(ids):
                    chunks.append(tally.chunk(*_samples(*renderer.render_next(ids))))
                chunks.append(tally.chunk(*_samples(*renderer.render_last(ids))))
        finally:
            stats.wall_s = tally.elapsed()
            del renderer
            if self.device.type == "cuda" and s.empty_cuda_cache:
                torch.cuda.empty_cache()
        return Synthesis.from_chunks(chunks, self.sample_rate, stats)

    def score_tokens(self, text: str, tokens: Any, *, speaker: str | None = None, prompt_wav: Any = None,
                     prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
                     text_frontend: bool = True) -> TokenScores:
        """Teacher forcing: the LLM's rank (0 = most probable) of each given token given the text (one
        sentence), the voice and the tokens before it, with the LLM's sampling top_k. InvalidInput for bad
        tokens, a text of several sentences (the LLM runs per sentence) and voice conversion (no LLM run);
        NotImplementedError for an LLM class whose input layout is unknown."""
        ids = check_speech_tokens(tokens, int(self.llm.speech_token_size), version=self.version)
        if not isinstance(text, str):
            raise InvalidInput(f"text={shown(text)}: score_tokens takes the text as a str (one sentence)")
        plan = self.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                         source_wav=source_wav, text_frontend=text_frontend)
        if plan.mode == "vc":
            raise InvalidInput("score_tokens: voice conversion (source_wav) runs no LLM; nothing to score")
        if len(plan.inputs) != 1:
            raise InvalidInput(f"score_tokens takes one sentence; the text has {len(plan.inputs)}")
        inp = plan.inputs[0]
        assert isinstance(inp, ModelInput)  # a str text plans one ModelInput per sentence
        logp = forced_logp(self.llm, inp, ids, self.device, self._autocast)
        if self.device.type == "cuda" and self.settings.empty_cuda_cache:
            torch.cuda.empty_cache()
        return TokenScores(ranks_of(logp, ids), self.sampling_top_k)

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
        return self._run(plan, streaming=True, speed=1.0, stats=StreamStats(), stall_timeout_s=stall,
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
        chunks = list(self._run(plan, streaming=False, speed=speed, stats=stats, stall_timeout_s=stall,
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

    def _reference_components(self) -> tuple[Any, Any]:
        """The CPU copies of the loaded flow and hift in ``REFERENCE_DTYPES`` (made once, under a lock):
        the runtime's own objects; the loaded modules are left as they are."""
        with self._reference_lock:
            if self._reference is None:
                self._reference = (_cpu_copy(self.flow, REFERENCE_DTYPES["flow"]),
                                   _cpu_copy(self.hift, REFERENCE_DTYPES["hift"]))
            return self._reference

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        return torch.autocast(device_type=self.device.type, enabled=self.fp16)  # torch.amp's, not torch.cuda.amp's

    def _run(self, plan: Plan, *, streaming: bool, speed: float, stats: StreamStats, stall_timeout_s: float,
             observer: StreamObserver | None, seed: int | None = None) -> Iterator[Chunk]:
        tally = ChunkTally(self.sample_rate, stats)
        progress = _Progress(observer)
        error: BaseException | None = None
        try:
            for inp in plan.inputs:
                stats.sentences += 1
                for speech, ntok in self._request(inp, streaming=streaming, speed=speed, stats=stats,
                                                  stall_timeout_s=stall_timeout_s, progress=progress, seed=seed):
                    chunk = tally.chunk(*_samples(speech, ntok))
                    log.debug("chunk %d: %d tokens, %.3f s audio, at %.3f s", chunk.index, ntok, chunk.seconds,
                              stats.wall_s)
                    if observer is not None:
                        observer.on_chunk(chunk)
                    yield chunk
        except GeneratorExit:
            raise  # the caller closed the stream: no error of the request
        except BaseException as e:
            error = e
            raise
        finally:
            stats.wall_s = tally.elapsed()
            rtf = stats.rtf
            log.info("%s done: %d tokens, %d chunks, %.2f s audio, first chunk %s, RTF %s",
                     "stream" if streaming else "synthesis", stats.tokens, stats.chunks, stats.audio_seconds,
                     f"{stats.first_chunk_s * 1000:.0f} ms" if stats.first_chunk_s is not None else "-",
                     f"{rtf:.3f}" if rtf is not None else "-")
            if observer is not None:  # last: an observer that raises cannot hide the log line
                observer.on_end(stats, error)

    def _request(self, inp: ModelInput | TextStreamInput, *, streaming: bool, speed: float, stats: StreamStats,
                 stall_timeout_s: float, progress: _Progress, seed: int | None = None,
                 ) -> Iterator[tuple[torch.Tensor, int]]:
        """One LLM run (a sentence, a text iterator, a vc source): (speech, tokens it covers) per render.
        With a seed, its draws are named by sentence (each sentence its own LLM run and renderer)."""
        rid = f"{next(_ids)}"
        progress.next_sentence()
        channel = TokenChannel(rid)
        base = inp.inputs if isinstance(inp, TextStreamInput) else inp
        s = self.settings
        renderer = make_renderer(self.version, self.flow, self.hift, base, self.device, self._autocast,
                                 Schedule(s.token_hop_len, s.token_max_hop_len, s.stream_scale_factor),
                                 context_tokens=s.flow_context_tokens, seed=seed,
                                 draws_name=f"sentence-{stats.sentences}")
        with self._lock:
            self._active[rid] = None
        thread: threading.Thread | None = None
        try:
            thread = start_producer(channel, self._tokens.tokens(rid, inp),
                                    self._tokens.context(seed, f"sentence-{stats.sentences}/llm"))
            with self._lock:
                self._active[rid] = thread
            with torch.inference_mode():
                if streaming:
                    while True:
                        count, done = progress.wait(channel, renderer.tokens_needed(), stall_timeout_s)
                        if count < renderer.tokens_needed():
                            break  # producer ended; the rest goes to the closing chunk
                        yield renderer.render_next(channel.tokens())
                else:
                    while not progress.wait(channel, 1 << 62, stall_timeout_s)[1]:
                        pass
                tokens = channel.tokens()
                stats.add_speech_tokens(tokens)   # the sentence's ids, all of them (the producer has ended)
                if tokens or not streaming:
                    yield renderer.render_last(tokens, speed=speed)
        finally:
            channel.cancel()
            if thread is not None:
                thread.join(s.join_timeout_s)
                if thread.is_alive():
                    log.warning("request %s: LLM producer still running %.1f s after the stream ended; abandoned "
                                "(daemon thread)", rid, s.join_timeout_s)
            with self._lock:
                self._active.pop(rid, None)
            del renderer
            if self.device.type == "cuda" and s.empty_cuda_cache:
                torch.cuda.empty_cache()


def _no_autocast() -> contextlib.AbstractContextManager[object]:
    return torch.autocast(device_type="cpu", enabled=False)


def _cpu_copy(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A deep copy of ``module`` on the CPU in ``dtype``, in eval mode, running its class's own
    ``inference``/``forward`` (not a stand-in set on the instance). Besides parameters and buffers,
    floating tensors a submodule keeps as a plain attribute (upstream's HiFT ``stft_window``, the v2
    flow's fixed ``rand_noise``) are cast too, on the copy only (the same values, cast)."""
    with torch.inference_mode(False):
        twin = copy.deepcopy(module).to(device="cpu", dtype=dtype).eval()
        for sub in twin.modules():
            # A stand-in set on the loaded component's instance (a test's injected fault or defect,
            # `pytest_cosyvoice.faults`) is copied as a closure over the loaded float32 component: the
            # reference runs the component's own code, so the copy's instance attribute goes.
            for name in ("inference", "forward"):
                if callable(vars(sub).get(name)):
                    delattr(sub, name)
            for name, value in list(vars(sub).items()):
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    setattr(sub, name, value.to("cpu", dtype))
    return twin


def _samples(speech: torch.Tensor, tokens: int) -> tuple[np.ndarray, int]:
    """A renderer's [1, N] speech as the 1-D float32 samples of a chunk, with the tokens it covers."""
    return speech.squeeze(0).float().cpu().numpy().astype(np.float32, copy=False), tokens


class _Progress:
    """A request's token count as its observer last heard it, over all its sentences (each sentence's
    channel counts from 0)."""

    def __init__(self, observer: StreamObserver | None) -> None:
        self.observer = observer
        self.total = 0
        self._base = 0

    def next_sentence(self) -> None:
        self._base = self.total

    def wait(self, channel: TokenChannel, count: int, stall_timeout_s: float) -> tuple[int, bool]:
        """``channel.wait_for(count)``; with an observer, it wakes on every token to report it (the
        channel's lock is released before the observer is called)."""
        if self.observer is None:
            return channel.wait_for(count, stall_timeout_s)
        while True:
            got, done = channel.wait_for(min(count, self.total - self._base + 1), stall_timeout_s)
            now = self._base + got
            if now > self.total:
                n_new, self.total = now - self.total, now
                self.observer.on_tokens(n_new, now)
            if got >= count:
                return got, done
            if done:
                # Ended short of `count`: ask once more for the full count so a producer failure is
                # raised exactly as without an observer (the call returns at once: the end flag is set).
                return channel.wait_for(count, stall_timeout_s)


def load(model_dir: str | os.PathLike[str], *, device: str = "auto", fp16: bool = False,
         stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> Runtime:
    return Runtime(model_dir, device=device, fp16=fp16, stall_timeout_s=stall_timeout_s)
