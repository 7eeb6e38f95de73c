"""The Runtime: a loaded model directory and the streaming orchestration with upstream's fixes."""
from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .channel import TokenChannel, start_producer
from .errors import InvalidInput, TokenLimitExceeded
from .frontend import Frontend, ModelInput
from .limits import (
    DEFAULT_STALL_TIMEOUT_S,
    DEFAULT_TOKEN_TEXT_RATIO,
    MAX_SPEECH_S,
    MAX_TEXT_CHARS,
    MIN_CAP_S,
    check_timeout,
    resolve_auto,
    token_cap,
)
from .loader import load_model
from .observer import StreamObserver
from .text import prepare
from .token2wav import Schedule, make_renderer
from .types import Chunk, StreamStats, Synthesis

log = logging.getLogger("cosyvoice_runtime")
_ids = itertools.count(1)


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


def resolve_mode(version: int, *, speaker: Any, prompt_wav: Any, prompt_text: Any, instruct: Any,
                 source_wav: Any) -> str:
    given = {k for k, v in dict(speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text,
                                instruct=instruct, source_wav=source_wav).items() if v is not None}
    modes: list[tuple[str, set[str]]] = [
        ("sft", {"speaker"}),
        ("zero_shot", {"prompt_wav", "prompt_text"}),
        ("cross_lingual", {"prompt_wav"}),
        ("instruct", {"speaker", "instruct"} if version == 1 else {"instruct", "prompt_wav"}),
        ("vc", {"source_wav", "prompt_wav"}),
    ]
    for mode, args in modes:
        if given == args:
            return mode
    valid = "; ".join(f"{m}: {' + '.join(sorted(a))}" for m, a in modes)
    raise InvalidInput(f"arguments {sorted(given) or 'none'} do not name a mode of a v{version} model; "
                       f"valid combinations: {valid}")


def check_speed(speed: Any) -> float:
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.5 <= speed <= 2.0:
        raise InvalidInput(f"speed={speed!r}: expected a number from 0.5 to 2.0")
    return float(speed)


def check_texts(*, speaker: Any, prompt_text: Any, instruct: Any, text_frontend: Any) -> None:
    """Types and emptiness of the text-like arguments (the mode is decided on what is not None)."""
    for name, v in (("speaker", speaker), ("prompt_text", prompt_text), ("instruct", instruct)):
        if v is not None and not isinstance(v, str):
            raise InvalidInput(f"{name}={_short(v)}: expected a str, got {type(v).__name__}")
    if prompt_text is not None and not prompt_text.strip():
        # Upstream would run zero-shot with no transcript; the caller most likely meant cross-lingual.
        raise InvalidInput(f"prompt_text={prompt_text!r}: empty transcript; give the words spoken in prompt_wav "
                           "(zero-shot), or leave prompt_text out (None) for cross-lingual mode")
    if instruct is not None and not instruct.strip():
        raise InvalidInput(f"instruct={instruct!r}: empty instruction; expected text such as 'Speak calmly.', "
                           "or leave instruct out (None)")
    if not isinstance(text_frontend, bool):
        raise InvalidInput(f"text_frontend={text_frontend!r}: expected True or False")


def _short(value: object, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


class Runtime:
    """A loaded CosyVoice model. ``stream`` and ``synthesize`` may be called from several threads."""

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
        self._lock = threading.Lock()
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
        out = ["sft"] if self.speakers else []
        out += ["zero_shot", "cross_lingual"]
        if self.supports_instruct and (self.version >= 2 or self.speakers):
            out.append("instruct")
        return out + ["vc"]

    @property
    def active_requests(self) -> int:
        """Requests whose state is still held (0 once every stream finished or was closed)."""
        with self._lock:
            return len(self._active)

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
               stall_timeout_s: float | None = None) -> Iterator[Chunk]:
        """Streams chunks as soon as hop + lookahead tokens exist. Arguments are checked now, not at the
        first ``next``. Raises StreamError / StreamStalled / TokenLimitExceeded after the chunks already
        rendered, and InvalidInput for a bad piece of a text iterator (those are read lazily).

        ``observer`` hears of this request's tokens, chunks and end (see ``StreamObserver``);
        ``stall_timeout_s`` replaces ``settings.stall_timeout_s`` for this request only."""
        if check_speed(speed) != 1.0:
            raise InvalidInput(f"speed={speed!r}: speed change is only supported by synthesize() (non-streamed)")
        stall = self._stall_timeout(stall_timeout_s)
        _check_observer(observer)
        plan = self.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                         source_wav=source_wav, text_frontend=text_frontend)
        return self._run(plan, streaming=True, speed=1.0, stats=StreamStats(), stall_timeout_s=stall,
                         observer=observer)

    def synthesize(self, text: str | Iterable[str], *, speaker: str | None = None, prompt_wav: Any = None,
                   prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
                   speed: float = 1.0, text_frontend: bool = True, observer: StreamObserver | None = None,
                   stall_timeout_s: float | None = None) -> Synthesis:
        """Non-streamed synthesis (all tokens rendered at once, per sentence), like upstream's stream=False.
        ``observer`` and ``stall_timeout_s`` as for ``stream``."""
        speed = check_speed(speed)
        stall = self._stall_timeout(stall_timeout_s)
        _check_observer(observer)
        plan = self.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                         source_wav=source_wav, text_frontend=text_frontend)
        stats = StreamStats()
        chunks = list(self._run(plan, streaming=False, speed=speed, stats=stats, stall_timeout_s=stall,
                                observer=observer))
        audio = np.concatenate([c.audio for c in chunks]) if chunks else np.zeros(0, np.float32)
        return Synthesis(audio=audio, sample_rate=self.sample_rate, chunks=chunks, stats=stats)

    def plan(self, text: str | Iterable[str], *, speaker: str | None = None, prompt_wav: Any = None,
             prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
             text_frontend: bool = True) -> Plan:
        """Checks a request's arguments and prepares its model inputs, without running any model part
        but the frontend (text normalisation, prompt features and tokens, speaker embedding): what
        ``stream``/``synthesize`` run, and what another orchestration (``upstream.UpstreamEngine``) can
        drive. Raises InvalidInput as those do."""
        return Plan(*self._inputs(text, speaker, prompt_wav, prompt_text, instruct, source_wav, text_frontend))

    # -- internals -------------------------------------------------------------------------------
    def _stall_timeout(self, value: float | None) -> float:
        return self.settings.stall_timeout_s if value is None else check_timeout("stall_timeout_s", value)

    def _inputs(self, text: Any, speaker: Any, prompt_wav: Any, prompt_text: Any, instruct: Any, source_wav: Any,
                text_frontend: bool) -> tuple[str, tuple[ModelInput | TextStreamInput, ...]]:
        check_texts(speaker=speaker, prompt_text=prompt_text, instruct=instruct, text_frontend=text_frontend)
        self._check_voice(speaker, prompt_wav, source_wav)
        mode = resolve_mode(self.version, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text,
                            instruct=instruct, source_wav=source_wav)
        if mode == "instruct" and not self.supports_instruct:
            raise InvalidInput(
                f"instruct={instruct!r}: {str(self.model_dir)!r} is not a CosyVoice v1 Instruct model; like upstream, "
                "v1 instruct needs a model directory whose path contains '-Instruct' (e.g. CosyVoice-300M-Instruct)")
        if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"text of {len(text)} characters: at most {MAX_TEXT_CHARS} per request; split it into "
                               "several requests (e.g. by paragraph)")
        kw = dict(speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                  source_wav=source_wav)
        if mode == "vc":
            return mode, (self.frontend.build(mode, None, **kw),)
        if isinstance(text, str):
            sentences = prepare(text, lambda s: len(self.frontend.encode(s)), text_frontend=text_frontend)
            if not sentences:
                raise InvalidInput(f"text={_short(text)}: nothing to synthesise; expected text with words")
            tokens = [self.frontend.text_tokens(s) for s in sentences]
            if any(t.shape[1] == 0 for t in tokens):  # e.g. "" with text_frontend=False
                raise InvalidInput(f"text={_short(text)}: gives no text token; expected text with words")
            return mode, tuple(self.frontend.build(mode, t, **kw) for t in tokens)
        if isinstance(text, Iterable) and not isinstance(text, (bytes, dict)):
            if self.version == 1:
                raise InvalidInput("text given as an iterator: streaming text input needs a v2/v3 model, this is v1")
            if mode in ("sft", "vc"):
                raise InvalidInput(f"text given as an iterator: streaming text input is not available in {mode} mode")
            # The pieces are consumed lazily by the producer (upstream's inference_bistream).
            inp = self.frontend.build(mode, torch.zeros(1, 0, dtype=torch.int32), **kw)
            return mode, (TextStreamInput(inp, iter(text)),)
        raise InvalidInput(f"text={_short(text)}: expected a str (or, on v2/v3, an iterator of str pieces)")

    def _check_voice(self, speaker: Any, prompt_wav: Any, source_wav: Any) -> None:
        """Names the missing spk2info.pt instead of a generic mode error when no voice can be had."""
        if self.speakers or prompt_wav is not None or source_wav is not None:
            return
        where = (f"{str(self.model_dir)!r} has no spk2info.pt" if self.spk2info_file is None
                 else f"{str(self.spk2info_file)!r} lists no speaker")
        asked = f"speaker={speaker!r}: " if speaker is not None else "no voice given: "
        raise InvalidInput(f"{asked}{where}, so this model has no built-in speaker; pass prompt_wav= (cross-lingual, "
                           "plus prompt_text= for zero-shot, or instruct= on v2/v3)")

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        return torch.autocast(device_type=self.device.type, enabled=self.fp16)  # torch.amp's, not torch.cuda.amp's

    def _token_text_ratio(self) -> tuple[float, bool]:
        """Upstream's speech-per-text-token cap of this LLM (the ``max_token_text_ratio`` default of its
        class's ``inference``) and whether the callable now in place takes that argument (by name or
        through ``**kwargs``: wrappers such as the plugin's token counter pass it on)."""
        ratio = DEFAULT_TOKEN_TEXT_RATIO
        try:
            param = inspect.signature(type(self.llm).inference).parameters.get("max_token_text_ratio")
            if param is not None and isinstance(param.default, (int, float)) and param.default > 0:
                ratio = float(param.default)
        except (AttributeError, TypeError, ValueError):
            pass
        try:
            params = inspect.signature(self.llm.inference).parameters.values()
        except (TypeError, ValueError):
            return ratio, False
        takes = any(p.name == "max_token_text_ratio" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        return ratio, takes

    def _capped(self, rid: str, tokens: Iterable[int], text_tokens: Callable[[], int]) -> Iterator[int]:
        """Passes tokens on until the cap for the text tokens seen so far is exceeded, then raises."""
        ratio, _ = self._token_text_ratio()
        rate = float(getattr(self.flow, "input_frame_rate", 25))
        n = 0
        it = iter(tokens)
        try:
            for tok in it:
                cap = token_cap(text_tokens(), ratio, rate)
                if n >= cap:
                    raise TokenLimitExceeded(
                        f"request {rid}: the LLM generated more than {cap} speech tokens for {text_tokens()} text "
                        f"tokens without ending the utterance (cap: {ratio:g} per text token, at least {MIN_CAP_S:g} s "
                        f"and at most {MAX_SPEECH_S:g} s of speech); the chunks rendered before the cap were delivered")
                n += 1
                yield tok
        finally:
            close = getattr(it, "close", None)  # stop the LLM's generator now, not at garbage collection
            if close is not None:
                close()

    def _token_source(self, rid: str, inp: ModelInput | TextStreamInput) -> Callable[[], Iterable[int]]:
        dev = self.device
        if isinstance(inp, TextStreamInput):
            base = inp.inputs
            seen = [0]

            def counted() -> Iterator[torch.Tensor]:
                for t in self.frontend.text_token_stream(inp.pieces):
                    seen[0] += t.shape[1]
                    yield t.to(dev)

            def bistream() -> Iterable[int]:
                # Upstream's bistream loop has no length cap at all: ours applies to the text received so far.
                pt = base.prompt_text.to(dev)
                pst = base.llm_prompt_speech_token.to(dev)
                return self._capped(rid, self.llm.inference_bistream(
                    text=counted(), prompt_text=pt, prompt_text_len=_len(pt), prompt_speech_token=pst,
                    prompt_speech_token_len=_len(pst), embedding=base.llm_embedding.to(dev)), lambda: seen[0])
            return bistream
        if inp.mode == "vc":  # the source recording's tokens: bounded by its 30 s maximum
            tokens = inp.source_speech_token.flatten().tolist()
            return lambda: iter(tokens)

        text_ids = inp.text
        assert text_ids is not None, "every mode but vc has text"

        def llm() -> Iterable[int]:
            text, pt, pst = text_ids.to(dev), inp.prompt_text.to(dev), inp.llm_prompt_speech_token.to(dev)
            n = text.shape[1]
            extra: dict[str, float] = {}
            ratio, takes_ratio = self._token_text_ratio()
            if takes_ratio:
                # Upstream's own loop stops at ratio * text tokens without a word; let it run past our
                # cap, so that reaching the cap is always seen (and raised) here.
                rate = float(getattr(self.flow, "input_frame_rate", 25))
                extra["max_token_text_ratio"] = token_cap(n, ratio, rate) / max(n, 1) + 1
            return self._capped(rid, self.llm.inference(
                text=text, text_len=_len(text), prompt_text=pt, prompt_text_len=_len(pt), prompt_speech_token=pst,
                prompt_speech_token_len=_len(pst), embedding=inp.llm_embedding.to(dev), **extra), lambda: n)
        return llm

    def _producer_context(self) -> Callable[[], contextlib.AbstractContextManager[object]]:
        device = self.device

        @contextlib.contextmanager
        def ctx() -> Iterator[None]:
            with contextlib.ExitStack() as stack:
                if device.type == "cuda":
                    # The LLM runs on its own CUDA stream so it overlaps with the flow/HiFT of the consumer.
                    stack.enter_context(torch.cuda.stream(torch.cuda.Stream(device)))
                stack.enter_context(torch.inference_mode())
                stack.enter_context(self._autocast())
                yield
        return ctx

    def _run(self, plan: Plan, *, streaming: bool, speed: float, stats: StreamStats, stall_timeout_s: float,
             observer: StreamObserver | None) -> Iterator[Chunk]:
        t0 = time.perf_counter()
        index = 0
        progress = _Progress(observer)
        error: BaseException | None = None
        try:
            for inp in plan.inputs:
                stats.sentences += 1
                for speech, ntok in self._request(inp, streaming=streaming, speed=speed, stats=stats,
                                                  stall_timeout_s=stall_timeout_s, progress=progress):
                    audio = speech.squeeze(0).float().cpu().numpy().astype(np.float32, copy=False)
                    chunk = Chunk(audio=audio, sample_rate=self.sample_rate, index=index, tokens=ntok)
                    index += 1
                    now = time.perf_counter()
                    if stats.first_chunk_s is None:
                        stats.first_chunk_s = now - t0
                    stats.chunks += 1
                    stats.audio_seconds += chunk.seconds
                    stats.wall_s = now - t0
                    log.debug("chunk %d: %d tokens, %.3f s audio, at %.3f s", chunk.index, ntok, chunk.seconds,
                              now - t0)
                    if observer is not None:
                        observer.on_chunk(chunk)
                    yield chunk
        except GeneratorExit:
            raise  # the caller closed the stream: no error of the request
        except BaseException as e:
            error = e
            raise
        finally:
            stats.wall_s = time.perf_counter() - t0
            rtf = stats.rtf
            log.info("%s done: %d tokens, %d chunks, %.2f s audio, first chunk %s, RTF %s",
                     "stream" if streaming else "synthesis", stats.tokens, stats.chunks, stats.audio_seconds,
                     f"{stats.first_chunk_s * 1000:.0f} ms" if stats.first_chunk_s is not None else "-",
                     f"{rtf:.3f}" if rtf is not None else "-")
            if observer is not None:  # last: an observer that raises cannot hide the log line
                observer.on_end(stats, error)

    def _request(self, inp: ModelInput | TextStreamInput, *, streaming: bool, speed: float, stats: StreamStats,
                 stall_timeout_s: float, progress: _Progress) -> Iterator[tuple[torch.Tensor, int]]:
        rid = f"{next(_ids)}"
        progress.next_sentence()
        channel = TokenChannel(rid)
        base = inp.inputs if isinstance(inp, TextStreamInput) else inp
        s = self.settings
        renderer = make_renderer(self.version, self.flow, self.hift, base, self.device, self._autocast,
                                 Schedule(s.token_hop_len, s.token_max_hop_len, s.stream_scale_factor),
                                 context_tokens=s.flow_context_tokens)
        with self._lock:
            self._active[rid] = None
        thread: threading.Thread | None = None
        try:
            thread = start_producer(channel, self._token_source(rid, inp), self._producer_context())
            with self._lock:
                self._active[rid] = thread
            with torch.inference_mode():
                if streaming:
                    while True:
                        count, done = progress.wait(channel, renderer.tokens_needed(), stall_timeout_s)
                        if count < renderer.tokens_needed():
                            break  # producer ended; the rest goes to the closing chunk
                        speech, ntok = renderer.render_next(channel.tokens())
                        stats.tokens += ntok
                        yield speech, ntok
                else:
                    while not progress.wait(channel, 1 << 62, stall_timeout_s)[1]:
                        pass
                tokens = channel.tokens()
                if tokens or not streaming:
                    speech, ntok = renderer.render_last(tokens, speed=speed)
                    stats.tokens += ntok
                    yield speech, ntok
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


@dataclass
class TextStreamInput:
    """A text iterator's request: the voice inputs, and the pieces the LLM producer reads lazily."""

    inputs: ModelInput
    pieces: Iterator[str]


@dataclass(frozen=True)
class Plan:
    """A checked request (``Runtime.plan``): its mode and one input per LLM run, in order: a sentence
    of a ``str`` text each, the one ``TextStreamInput`` of a text iterator, the source recording for vc."""

    mode: str
    inputs: tuple[ModelInput | TextStreamInput, ...]


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


def _check_observer(observer: object) -> None:
    if observer is not None and not isinstance(observer, StreamObserver):
        raise InvalidInput(f"observer={_short(observer)}: expected a cosyvoice_runtime.StreamObserver (or None)")


def _len(t: torch.Tensor) -> torch.Tensor:
    return torch.tensor([t.shape[1]], dtype=torch.int32, device=t.device)


def load(model_dir: str | os.PathLike[str], *, device: str = "auto", fp16: bool = False,
         stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> Runtime:
    return Runtime(model_dir, device=device, fp16=fp16, stall_timeout_s=stall_timeout_s)
