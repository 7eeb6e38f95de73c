"""Drives the installed upstream orchestration class (``cosyvoice.cli.model.CosyVoiceModel`` /
``CosyVoice2Model`` / ``CosyVoice3Model``) with a Runtime's components and frontend, behind the
Runtime's own ``stream``/``synthesize`` signature: the before/after reference. Nothing of upstream is
copied; its class is imported and called as installed, with all its behaviour (polling, shared hop
length, silent producer death).

Like the Runtime, ``stream``/``synthesize`` take ``observer=`` (a ``StreamObserver``), called in the
thread that iterates. Upstream's ``tts()`` keeps that thread until it yields a chunk, so a request's
tokens are reported just before each chunk (all generated since the previous one), not per token; a
request whose LLM thread died never reaches ``on_end`` (upstream's loop waits for it forever). So the
producer-side callbacks tell what the consumer cannot see: ``on_generated`` per token and
``on_producer_died`` when upstream's ``llm_job`` thread dies (the exception still kills that thread, as
upstream does). Upstream does not say which request a new LLM thread serves until its first chunk, so
both go to every observed request in flight on this engine: one at a time, that is the request's own."""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .errors import CosyVoiceError, InvalidInput
from .frontend import ModelInput
from .limits import resolve_auto
from .observer import StreamObserver, check_observer, observed
from .types import Chunk, ChunkTally, StreamStats, Synthesis

if TYPE_CHECKING:
    from .requests import Plan
    from .runtime import Runtime

CLASS_NAMES = {1: "CosyVoiceModel", 2: "CosyVoice2Model", 3: "CosyVoice3Model"}


class UpstreamUnavailable(CosyVoiceError):
    """The installed upstream orchestration class cannot drive this model."""


class _CountingLLM:
    """Stands in for the LLM on the upstream object and counts the tokens it hands over, per request:
    upstream runs each request's LLM in its own `llm_job(..., uuid)` thread, which `_JobIds` names."""

    def __init__(self, llm: Any, jobs: _JobIds, in_flight: _InFlight) -> None:
        self._llm = llm
        self._jobs = jobs
        self._in_flight = in_flight
        self.tokens: dict[str, int] = {}   # upstream request uuid -> tokens so far
        self.ids: dict[str, list[int]] = {}   # upstream request uuid -> the token ids so far
        self._lock = threading.Lock()

    def _count(self, it: Iterable[int]) -> Iterator[int]:
        uid = self._jobs.current()
        for tok in it:
            with self._lock:
                self.tokens[uid] = self.tokens.get(uid, 0) + 1
                self.ids.setdefault(uid, []).append(int(tok))
            self._in_flight.generated()
            yield tok

    def inference(self, *args: Any, **kwargs: Any) -> Iterator[int]:
        return self._count(self._llm.inference(*args, **kwargs))

    def inference_bistream(self, *args: Any, **kwargs: Any) -> Iterator[int]:
        return self._count(self._llm.inference_bistream(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)


class _InFlight:
    """The observers of the requests this engine is serving now, for the producer-side callbacks."""

    def __init__(self) -> None:
        self._observers: list[StreamObserver] = []
        self._lock = threading.Lock()

    def add(self, observer: StreamObserver) -> None:
        with self._lock:
            self._observers.append(observer)

    def remove(self, observer: StreamObserver) -> None:
        with self._lock:
            self._observers.remove(observer)

    def _each(self) -> list[StreamObserver]:
        with self._lock:
            return list(self._observers)

    def generated(self) -> None:
        for obs in self._each():
            obs.on_generated()

    def died(self, thread: str, error: BaseException) -> None:
        for obs in self._each():
            obs.on_producer_died(thread, error)


class _JobIds:
    """Which upstream request a thread works for. Upstream creates a uuid per `tts()` call and passes
    it to `llm_job` (in the LLM thread) and to `token2wav` (in the thread iterating `tts()`); both are
    wrapped on the instance to note it in a thread-local: the adapter reads the renderer's right after
    each chunk `tts()` yields in the adapter's own thread."""

    def __init__(self, model: Any, in_flight: _InFlight) -> None:
        self._local = threading.local()
        job, token2wav = model.llm_job, model.token2wav

        def llm_job(*args: Any, **kwargs: Any) -> Any:
            self._local.uid = kwargs["uuid"] if "uuid" in kwargs else args[-1]
            try:
                return job(*args, **kwargs)
            except BaseException as e:
                # Told, then raised on: the thread dies as upstream's does (its excepthook prints it).
                in_flight.died(threading.current_thread().name, e)
                raise

        def token2wav_noting(*args: Any, **kwargs: Any) -> Any:
            if "uuid" in kwargs:
                self._local.rendered = kwargs["uuid"]
            return token2wav(*args, **kwargs)
        model.llm_job, model.token2wav = llm_job, token2wav_noting

    def current(self) -> str:
        """The request of the LLM thread calling."""
        return getattr(self._local, "uid", "?")

    def rendered(self) -> str | None:
        """The request this thread's latest token2wav call rendered."""
        return getattr(self._local, "rendered", None)


class UpstreamEngine:
    # As ``Runtime.cosy_abilities``: ``observer=`` only (upstream's class takes no seed and keeps its
    # own stall handling; there is no render, score_tokens or speaker_embedding here).
    cosy_abilities: ClassVar[Mapping[str, bool]] = MappingProxyType({
        "seed": False, "observer": True, "stall_timeout": False, "render": False, "score_tokens": False,
        "speaker_embedding": False})

    def __init__(self, runtime: Runtime) -> None:
        try:
            from cosyvoice.cli import model as upstream_model
        except Exception as e:  # the packaged module imports optional things (tensorrt helpers, vllm export)
            raise UpstreamUnavailable(f"cannot import cosyvoice.cli.model: {type(e).__name__}: {e}") from e
        name = CLASS_NAMES[runtime.version]
        cls = getattr(upstream_model, name, None)
        if cls is None:
            raise UpstreamUnavailable(
                f"the installed cosyvoice.cli.model has no {name} (v{runtime.version} model); "
                f"installed from {getattr(upstream_model, '__file__', '?')}")
        import torch

        # Upstream's class takes no device: it picks CUDA where torch sees one, which is what "auto" means.
        upstream_device = torch.device(resolve_auto("auto"))
        if upstream_device != runtime.device and not (upstream_device.type == runtime.device.type == "cuda"):
            raise UpstreamUnavailable(
                f"upstream {name} always runs on {upstream_device} but the runtime is on {runtime.device}")
        self.runtime = runtime
        self.version = runtime.version
        self.sample_rate = runtime.sample_rate
        self.model = cls(runtime.llm, runtime.flow, runtime.hift, runtime.fp16)
        # The packaged copy's __init__ leaves out `self.llm = llm`; set it like its load() should.
        self.in_flight = _InFlight()
        self.jobs = _JobIds(self.model, self.in_flight)
        self.counter = _CountingLLM(runtime.llm, self.jobs, self.in_flight)
        self.model.llm = self.counter

    def stream(self, text: str | Iterable[str], *, observer: StreamObserver | None = None,
               **kwargs: Any) -> Iterator[Chunk]:
        return self._run(text, stream=True, stats=StreamStats(), observer=observer, **kwargs)

    def synthesize(self, text: str | Iterable[str], *, observer: StreamObserver | None = None,
                   **kwargs: Any) -> Synthesis:
        stats = StreamStats()
        chunks = list(self._run(text, stream=False, stats=stats, observer=observer, **kwargs))
        return Synthesis.from_chunks(chunks, self.sample_rate, stats)

    def _run(self, text: Any, *, stream: bool, stats: StreamStats, observer: StreamObserver | None,
             speed: float = 1.0, text_frontend: bool = True, **kwargs: Any) -> Iterator[Chunk]:
        if not isinstance(text, str) and kwargs.get("source_wav") is None:
            raise InvalidInput("the upstream engine here takes text as a str")
        if "seed" in kwargs:
            # Not silently ignored: upstream's orchestration draws from torch's global generator in its own
            # threads, so no per-request seed can make it repeat (docs/runtime.md, Reproducible output).
            raise InvalidInput(f"seed={kwargs['seed']!r}: the upstream engine cannot promise reproducible output "
                               "(its orchestration draws from torch's global generator in its own threads); "
                               "Runtime.stream/synthesize take seed=")
        check_observer(observer)
        plan = self.runtime.plan(text, speaker=kwargs.get("speaker"), prompt_wav=kwargs.get("prompt_wav"),
                                 prompt_text=kwargs.get("prompt_text"), instruct=kwargs.get("instruct"),
                                 source_wav=kwargs.get("source_wav"), text_frontend=text_frontend)
        chunks = self._chunks(plan, stream=stream, stats=stats, speed=speed)
        return chunks if observer is None else _observed(chunks, observer, stats, self.in_flight)

    def _chunks(self, plan: Plan, *, stream: bool, stats: StreamStats, speed: float) -> Iterator[Chunk]:
        tally = ChunkTally(self.sample_rate, stats)
        for inp in plan.inputs:
            assert isinstance(inp, ModelInput)  # a text iterator was refused above
            args = dict(flow_embedding=inp.flow_embedding, llm_embedding=inp.llm_embedding,
                        prompt_text=inp.prompt_text, llm_prompt_speech_token=inp.llm_prompt_speech_token,
                        flow_prompt_speech_token=inp.flow_prompt_speech_token,
                        prompt_speech_feat=inp.prompt_speech_feat, source_speech_token=inp.source_speech_token,
                        stream=stream, speed=speed)
            if inp.text is not None:
                args["text"] = inp.text
            attributed = 0
            uid: str | None = None
            try:
                for out in self.model.tts(**args):
                    # Upstream does not say which tokens a chunk covers: each chunk takes the tokens its
                    # request generated since the previous chunk, so the sum is exact (the last chunk
                    # comes after the LLM ended). The request is the one token2wav just rendered in this
                    # thread, whatever other requests run meanwhile.
                    uid = self.jobs.rendered()
                    if uid is None and len(self.counter.tokens) == 1:
                        # A class whose token2wav takes no uuid=: the only request.
                        uid = next(iter(self.counter.tokens))
                    if inp.source_speech_token.shape[1] == 0:
                        done = self.counter.tokens.get(uid, 0) if uid is not None else 0
                    else:
                        done = inp.source_speech_token.shape[1]
                    audio = out["tts_speech"].squeeze(0).float().numpy().astype(np.float32, copy=False)
                    yield tally.chunk(audio, done - attributed)
                    attributed = done
            finally:
                if uid is not None:
                    self.counter.tokens.pop(uid, None)
                    ids = self.counter.ids.pop(uid, None)
                    if ids is not None and inp.source_speech_token.shape[1] == 0:
                        stats.add_speech_tokens(ids)   # voice conversion's tokens are the source's, not the LLM's


def _observed(chunks: Iterator[Chunk], observer: StreamObserver, stats: StreamStats,
              in_flight: _InFlight) -> Iterator[Chunk]:
    """``observer.observed``, with the observer in flight (for the producer-side callbacks) from the
    first step until the end."""
    in_flight.add(observer)
    try:
        yield from observed(chunks, observer, stats)
    finally:
        in_flight.remove(observer)
