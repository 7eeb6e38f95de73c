"""An engine that speaks, for the project's own quality tests and benchmarks (issue 18, item 5).

The embedded tiny model has random weights and outputs noise: a quality check (MOS, ASR, golden
audio) shows nothing on it. This engine follows the plugin's `Engine` protocol over a loaded Runtime
but speaks with espeak-ng, so each check can be shown on real speech on any machine:

    python -m pytest suites --cosy-engine benchmarks.speaking_engine:build     (from the repository root)

What it keeps of the Runtime: the request checks (`runtime.plan`, so bad arguments raise the same
InvalidInput), the sample rate, the token rate (a chunk's `tokens` is its audio length in speech
tokens, so the plugin's complete check holds), the streaming hop schedule (`runtime.settings`: chunks
of 25, 50, 100, 100, ... tokens on v2/v3 defaults), the observer calls and the statistics
(`ChunkTally`, `Synthesis.from_chunks`). What it ignores: the voice (speaker, prompt, instruction),
except `speed`, which maps to espeak-ng's words per minute; voice conversion (vc) returns the source
recording itself, resampled (its words, no voice change, no speed change). It drives none of the model's components,
so what the suites force or inject at `runtime.llm`/`flow`/`hift` (forced tokens, faults) does not
reach it: the suites that rely on that fail on it by design.

Deterministic: the same text and speed give identical audio (each request is spoken by a fresh
`espeak_worker.py` process, see there why), in any order and from any thread. So `seed=` is accepted
on `stream` and `synthesize` (checked as the Runtime checks it) and otherwise ignored: the output is
already the same for every seed, and a plugin that seeds its calls may treat the engine as reproducible.

espeak-ng comes from the `espeakng-loader` wheel (libespeak-ng and its data, no system package):
the `quality` extra, pinned in requirements/quality.txt.
"""
from __future__ import annotations

import math
import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.signal import resample_poly

from cosyvoice_runtime import (
    InvalidInput,
    StreamError,
    StreamObserver,
    StreamStalled,
    check_timeout,
    token_rate,
)
from cosyvoice_runtime.audio import read_wav
from cosyvoice_runtime.limits import check_seed, checked_pieces
from cosyvoice_runtime.observer import check_observer, observed
from cosyvoice_runtime.requests import TextStreamInput, check_speed
from cosyvoice_runtime.types import Chunk, ChunkTally, StreamStats, Synthesis

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime

INSTALL = "pip install 'pytest-cosyvoice[quality]' (in this repository: bash scripts/bootstrap.sh)"
WORKER = Path(__file__).with_name("espeak_worker.py")
# espeak-ng's own default rate is speed 1; the Runtime's speeds 0.5..2 become 87..350 words per
# minute, inside espeak-ng's 80..450.
WORDS_PER_MINUTE = 175
ENGLISH, MANDARIN = "en-us", "cmn"


class EspeakMissing(RuntimeError):
    """espeak-ng cannot be found; the message says what to install."""


def find_espeak() -> tuple[str, str]:
    """(libespeak-ng path, espeak-ng-data directory) of the installed `espeakng-loader` wheel."""
    try:
        import espeakng_loader
    except ImportError:
        raise EspeakMissing(f"the speaking engine needs espeak-ng from the espeakng-loader package, which is not "
                            f"installed: {INSTALL}") from None
    library = str(espeakng_loader.get_library_path())
    try:
        data = str(espeakng_loader.get_data_path())
    except RuntimeError as e:  # the wheel's data directory is missing
        raise EspeakMissing(f"espeakng-loader is installed without its data ({e}): {INSTALL}") from None
    if not Path(library).is_file():
        raise EspeakMissing(f"espeakng-loader has no library at {library!r} on this platform: {INSTALL}")
    return library, data


def voice_for(text: str) -> str:
    """Mandarin for a text with any CJK ideograph (the suites' zh and mixed texts), else US English."""
    return MANDARIN if any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text) else ENGLISH


@dataclass(frozen=True)
class _Request:
    """A checked request: its text (or the text iterator the Runtime's plan accepted, read when the
    request runs, as the Runtime reads it) and its sentence count; for vc the source recording."""

    text: str | Iterator[str]
    sentences: int
    source_wav: Any = None

    def read_text(self) -> str:
        if isinstance(self.text, str):
            return self.text
        # The Runtime's checks of a text iterator's pieces (as frontend.text_token_stream reads them).
        text = "".join(checked_pieces(self.text))
        if not text.strip():
            raise InvalidInput("text iterator: no words received; expected text with words")
        return text


class SpeakingEngine:
    """The `Engine` protocol over a loaded Runtime, speaking with espeak-ng (see the module docstring)."""

    def __init__(self, runtime: Runtime, *, variant: str | None = None) -> None:
        """`variant`: an espeak-ng voice variant (a file of espeak-ng-data/voices/!v, e.g. "f3") spoken
        instead of the language's default voice: another speaker, same words."""
        self.library, self.data_dir = find_espeak()
        if variant is not None and not (Path(self.data_dir) / "voices" / "!v" / variant).is_file():
            raise InvalidInput(f"variant={variant!r}: expected an espeak-ng voice variant, a file of "
                               f"{Path(self.data_dir) / 'voices' / '!v'}")
        self.variant = variant
        self.runtime = runtime
        self.version = runtime.version
        self.sample_rate = runtime.sample_rate
        self.samples_per_token = self.sample_rate / token_rate(runtime.version, runtime.flow)

    # -- the protocol ------------------------------------------------------------------------------
    def stream(self, text: str | Iterable[str], *, speaker: str | None = None, prompt_wav: Any = None,
               prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
               speed: float = 1.0, text_frontend: bool = True, observer: StreamObserver | None = None,
               stall_timeout_s: float | None = None, seed: int | None = None) -> Iterator[Chunk]:
        """Chunks of the runtime's hop schedule. Arguments are checked now, in the Runtime's order and
        with its messages; the text is spoken at the first `next`. `seed` is checked and ignored (the
        output is deterministic)."""
        if check_speed(speed) != 1.0:
            raise InvalidInput(f"speed={speed!r}: speed change is only supported by synthesize() (non-streamed)")
        stall = self._stall_timeout(stall_timeout_s)
        check_seed(seed)
        check_observer(observer)
        request = self._check(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text,
                              instruct=instruct, source_wav=source_wav, text_frontend=text_frontend)
        return self._run(request, streaming=True, speed=1.0, stats=StreamStats(), stall_timeout_s=stall,
                         observer=observer)

    def synthesize(self, text: str | Iterable[str], *, speaker: str | None = None, prompt_wav: Any = None,
                   prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
                   speed: float = 1.0, text_frontend: bool = True, observer: StreamObserver | None = None,
                   stall_timeout_s: float | None = None, seed: int | None = None) -> Synthesis:
        """The whole text as one chunk; `speed` changes espeak-ng's rate. `seed` is checked and ignored
        (the output is deterministic)."""
        speed = check_speed(speed)
        stall = self._stall_timeout(stall_timeout_s)
        check_seed(seed)
        check_observer(observer)
        request = self._check(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text,
                              instruct=instruct, source_wav=source_wav, text_frontend=text_frontend)
        stats = StreamStats()
        chunks = list(self._run(request, streaming=False, speed=speed, stats=stats, stall_timeout_s=stall,
                                observer=observer))
        return Synthesis.from_chunks(chunks, self.sample_rate, stats)

    # -- speech ------------------------------------------------------------------------------------
    def speak(self, text: str, *, speed: float = 1.0, timeout_s: float | None = None) -> np.ndarray:
        """`text` spoken by espeak-ng at `speed`: 1-D float32 at `sample_rate`.

        StreamStalled when the worker gives nothing within `timeout_s` (it is killed), StreamError when
        it fails."""
        timeout = self.runtime.settings.stall_timeout_s if timeout_s is None else timeout_s
        wpm = round(WORDS_PER_MINUTE * check_speed(speed))
        # -I: the worker needs only the standard library, and nothing of the caller's path or cwd.
        voice = voice_for(text) + (f"+{self.variant}" if self.variant else "")
        cmd = [sys.executable, "-I", str(WORKER), self.library, self.data_dir, voice, str(wpm)]
        try:
            done = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise StreamStalled(f"espeak-ng gave no audio within stall_timeout_s={timeout:g}; its worker "
                                "was killed") from None
        if done.returncode != 0 or len(done.stdout) < 4:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise StreamError(f"the espeak-ng worker failed (exit code {done.returncode})"
                              + (f": {said[-1]}" if said else ""))
        (rate,) = struct.unpack("<i", done.stdout[:4])
        pcm = np.frombuffer(done.stdout[4:], dtype="<i2")
        if pcm.size == 0:
            raise StreamError(f"espeak-ng spoke no audio for text={text[:60]!r} (voice {voice})")
        return self._at_rate(pcm / 32768.0, rate)

    def convert(self, source_wav: Any) -> np.ndarray:
        """vc: the source recording itself at `sample_rate` (its words; the voice is ignored)."""
        audio, rate = read_wav(source_wav, what="source_wav")
        return self._at_rate(audio.astype(np.float64), rate)

    def _at_rate(self, x: np.ndarray, rate: int) -> np.ndarray:
        """`x` (nominally within +-1) at `sample_rate`, as float32 within +-1."""
        # espeak-ng writes digital silence in pauses and stop closures (exact-zero runs up to 300 ms in
        # an English sentence; 16-bit files of it keep them), which no recording has and the plugin's
        # sound check reads as dropouts inside the speech. 1 LSB of 16-bit TPDF dither (the standard
        # treatment) gives them a -96 dBFS floor. Its generator is the request's own, seeded: same
        # input, same samples.
        rng = np.random.default_rng(0)
        x = x + (rng.uniform(-0.5, 0.5, x.size) + rng.uniform(-0.5, 0.5, x.size)) / 32768.0
        if rate != self.sample_rate:
            g = math.gcd(self.sample_rate, rate)
            x = np.asarray(resample_poly(x, self.sample_rate // g, rate // g))  # scipy is untyped here
        out: np.ndarray = np.clip(x, -1.0, 1.0).astype(np.float32)
        return out

    def split(self, audio: np.ndarray, *, speed: float = 1.0, streaming: bool = True) -> list[tuple[np.ndarray, int]]:
        """(audio, speech tokens it covers) per chunk. The tokens are the audio's length at the model's
        token rate (at speed 1, as the Runtime's LLM counts them before speed shortens the audio), so
        their sum times samples per token / speed is the length within half a token. Streamed, the
        chunks follow the runtime's hop schedule; not streamed, the whole audio is one chunk."""
        n = len(audio)
        total = max(1, round(n * speed / self.samples_per_token))
        if not streaming:
            return [(audio, total)]
        s = self.runtime.settings
        counts, hop, left = [], s.token_hop_len, total
        while left > 0:
            counts.append(min(hop, left))
            left -= counts[-1]
            hop = min(s.token_max_hop_len, int(hop * s.stream_scale_factor))
        out, start, covered = [], 0, 0
        for i, count in enumerate(counts):
            covered += count
            end = n if i == len(counts) - 1 else min(n, round(covered * self.samples_per_token / speed))
            out.append((audio[start:end], count))
            start = end
        return out

    # -- internals ---------------------------------------------------------------------------------
    def _stall_timeout(self, value: float | None) -> float:
        return self.runtime.settings.stall_timeout_s if value is None else check_timeout("stall_timeout_s", value)

    def _check(self, text: str | Iterable[str], **voice: Any) -> _Request:
        """The Runtime's checks of a request (its plan; the model inputs it prepares are not used)."""
        plan = self.runtime.plan(text, **voice)
        if plan.mode == "vc":  # the text is ignored, as by the Runtime
            return _Request("", 1, source_wav=voice["source_wav"])
        if isinstance(text, str):
            return _Request(text, len(plan.inputs))
        inp = plan.inputs[0]
        assert isinstance(inp, TextStreamInput)  # the plan's one input for a text iterator
        # The iterator the plan holds, read when the request runs, as the Runtime's producer reads it.
        return _Request(inp.pieces, 1)

    def _run(self, request: _Request, *, streaming: bool, speed: float, stats: StreamStats, stall_timeout_s: float,
             observer: StreamObserver | None) -> Iterator[Chunk]:
        # The observer hears, in this (the iterating) thread, each chunk's tokens, the chunk, and the end,
        # as `cosyvoice_runtime.observer.observed` tells them.
        chunks = self._chunks(request, streaming=streaming, speed=speed, stats=stats, stall_timeout_s=stall_timeout_s)
        return chunks if observer is None else observed(chunks, observer, stats)

    def _chunks(self, request: _Request, *, streaming: bool, speed: float, stats: StreamStats,
                stall_timeout_s: float) -> Iterator[Chunk]:
        tally = ChunkTally(self.sample_rate, stats)
        try:
            stats.sentences = request.sentences
            if request.source_wav is not None:
                # The recording as it is: no speed change, so its tokens are those of its length.
                audio, speed = self.convert(request.source_wav), 1.0
            else:
                audio = self.speak(request.read_text(), speed=speed, timeout_s=stall_timeout_s)
            for piece, tokens in self.split(audio, speed=speed, streaming=streaming):
                yield tally.chunk(piece, tokens)
        finally:
            stats.wall_s = tally.elapsed()


def build(runtime: Runtime) -> SpeakingEngine:
    """The `--cosy-engine benchmarks.speaking_engine:build` factory."""
    return SpeakingEngine(runtime)
