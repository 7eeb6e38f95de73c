"""The streaming orchestration of a Runtime: a planned request's LLM runs in a producer thread
(``channel.start_producer``), and its tokens are rendered into chunks as soon as a hop (plus the
renderer's look-ahead) is there, with upstream's fixes (per-request renderer state, stall timeout,
the producer joined and the request's state dropped at the end)."""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator

import numpy as np
import torch

from .channel import TokenChannel, start_producer
from .frontend import ModelInput
from .observer import StreamObserver
from .requests import Plan, TextStreamInput
from .runtime_settings import RuntimeView
from .token2wav import make_renderer
from .token_source import LLMTokenSource
from .types import Chunk, ChunkTally, StreamStats

log = logging.getLogger("cosyvoice_runtime")
_ids = itertools.count(1)


class Streamer:
    """Runs a Runtime's planned requests (``run``), from any number of threads, and knows which are
    still in flight (``active_requests``). The components and settings are read from ``runtime`` at
    each request; the LLM's tokens come from ``tokens``."""

    def __init__(self, runtime: RuntimeView, tokens: LLMTokenSource) -> None:
        self.runtime = runtime
        self.tokens = tokens
        self._lock = threading.Lock()
        self._active: dict[str, threading.Thread | None] = {}

    @property
    def active_requests(self) -> int:
        """Requests whose state is still held (0 once every stream finished or was closed)."""
        with self._lock:
            return len(self._active)

    def run(self, plan: Plan, *, streaming: bool, speed: float, stats: StreamStats, stall_timeout_s: float,
            observer: StreamObserver | None, seed: int | None = None) -> Iterator[Chunk]:
        """The chunks of ``plan``, sentence after sentence, counted into ``stats``; the observer hears
        of each chunk and of the end (with the error, if any)."""
        tally = ChunkTally(self.runtime.sample_rate, stats)
        progress = _Progress(observer)
        error: BaseException | None = None
        try:
            for inp in plan.inputs:
                stats.sentences += 1
                for speech, ntok in self._request(inp, streaming=streaming, speed=speed, stats=stats,
                                                  stall_timeout_s=stall_timeout_s, progress=progress, seed=seed):
                    chunk = tally.chunk(*samples(speech, ntok))
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
        rt = self.runtime
        s = rt.settings
        renderer = make_renderer(rt.version, rt.flow, rt.hift, base, rt.device, rt.autocast, s.schedule(),
                                 context_tokens=s.flow_context_tokens, seed=seed,
                                 draws_name=f"sentence-{stats.sentences}")
        with self._lock:
            self._active[rid] = None
        thread: threading.Thread | None = None
        try:
            thread = start_producer(channel, self.tokens.tokens(rid, inp),
                                    self.tokens.context(seed, f"sentence-{stats.sentences}/llm"))
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
            s.empty_cache(rt.device)


def samples(speech: torch.Tensor, tokens: int) -> tuple[np.ndarray, int]:
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
