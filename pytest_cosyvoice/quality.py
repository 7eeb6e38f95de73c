"""The session's quality drift gate (issue 18): what a `@pytest.mark.quality` test's calls produced,
judged against the golden outputs saved with --cosy-save-baseline (tracking/goldens.py) by the checks of
judging/quality.py.

Per call of the test (measured, round 0, ended normally) it gathers the speech tokens and audio the
recording holds and asks the engine for what it offers: `render(text, tokens, ..., streamed=, seed=)`
(token -> wav of the golden tokens, offline and streamed) and `score_tokens(...)` (the current LLM's rank
of each golden token, asked only when the tokens diverge). The scores need no engine: DNSMOS/PLCMOS
(speechmos, the `quality` extra), WER with --cosy-asr, speaker similarity with the model directory's
campplus.onnx (prompt recording vs output) and --cosy-sim. What cannot be computed becomes a "note"
check that says why; only "fail" checks fail the test.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from cosyvoice_runtime import InvalidInput

from .engine import abilities
from .judging.checks import Recording
from .judging.quality import (
    CallOutput,
    QualityCheck,
    TestQuality,
    Why,
    compare_call,
    judge_scores,
    saves_to_gate,
)
from .judging.similarity import cosine
from .judging.sound import QualityExtraMissing, score_mos, snr_db
from .judging.specs import QualitySpec
from .settings import POCKETSPHINX, Settings
from .tracking.goldens import GoldenCall, GoldenError, Goldens, GoldenStore
from .tracking.runkey import RunKey
from .tracking.stack import detect_stack, stack_changes

if TYPE_CHECKING:
    from .judging.intelligibility import Recogniser
    from .judging.similarity import SpeakerModel
    from .recording.base_side import BaseSide

# The arguments that make a call's voice: what `render`/`score_tokens` take besides text and tokens.
VOICE_KEYS = ("speaker", "prompt_wav", "prompt_text", "instruct", "source_wav", "text_frontend")
_UNSET: Any = object()


def _language(text: str) -> str:
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"


class QualityGate:
    """One per session: the goldens of the session's run key (read once), the scorers (built on first
    use), and each quality test's `TestQuality` (`results`)."""

    def __init__(self, settings: Settings, run_key: Callable[[], RunKey], base_dir: Callable[[], Any],
                 device: Callable[[], str] = lambda: "cpu") -> None:
        self.settings = settings
        self._run_key = run_key
        self._base_dir = base_dir
        self._device = device
        self._stack: dict[str, str] | None = None
        self._goldens: Goldens | None = _UNSET
        self._lock = threading.Lock()
        self._recognisers: dict[str, Recogniser] = {}
        self._speaker: SpeakerModel | None = None
        self._prompt_embeddings: dict[tuple[str, str], np.ndarray | None] = {}
        self.missing_extra: str | None = None    # the install line, once the MOS scorer was found missing
        self.results: dict[str, TestQuality] = {}

    # -- goldens ------------------------------------------------------------------------------------
    def store(self) -> GoldenStore:
        """The goldens beside the baselines: the one folder the settings resolved (settings.resolve)."""
        return GoldenStore(self.settings.baseline_dir)

    def goldens(self) -> Goldens | None:
        """The stored goldens of this session's run key (None: none saved yet). A golden file that
        cannot be read is a usage error (exit 4), named; nothing is overwritten."""
        with self._lock:
            if self._goldens is _UNSET:
                try:
                    self._goldens = self.store().load(self._run_key())
                except GoldenError as e:
                    raise pytest.UsageError(f"quality goldens: {e}") from None
            return self._goldens

    def check(self, items: Sequence[pytest.Item]) -> None:
        """Before any test: the goldens of a session with quality tests are read now, so a bad file
        stops the session with exit 4."""
        if any(i.get_closest_marker(QualitySpec.marker) is not None for i in items):
            self.goldens()

    def stack(self) -> dict[str, str]:
        """This session's stack (torch, CUDA, driver, ...), read once."""
        with self._lock:
            if self._stack is None:
                self._stack = detect_stack(self._device(), self._base_dir())
            return self._stack

    def stack_change(self, goldens: Goldens | None) -> str:
        """The versions that differ from the goldens' saving stack, worded ("torch 2.9.1 -> 2.10.0");
        "" when none differ or the goldens recorded none. The commit is not a stack change."""
        if goldens is None or not goldens.stack:
            return ""
        return "; ".join(stack_changes(goldens.stack, self.stack(), with_commit=False))

    # -- one test -----------------------------------------------------------------------------------
    def judge(self, nodeid: str, spec: QualitySpec, recordings: Sequence[Recording], engine: Any, runtime: Any,
              dtype: str, base: BaseSide | None = None, stall_timeout_s: float = 30.0) -> TestQuality:
        """The test's `TestQuality`: each call against its golden and, in A/B mode (`base`), against the
        base side's run of the same call with the same seed."""
        t0 = time.perf_counter()
        goldens = self.goldens()
        golden_test = goldens.tests.get(nodeid) if goldens is not None else None
        by_label = {c.label: c for c in golden_test.calls} if golden_test is not None else {}
        stack_change = self.stack_change(goldens)
        tq = TestQuality(nodeid)
        for rec in recordings:
            if not rec.measured or rec.round != 0 or rec.outcome != "ok":
                continue
            golden = by_label.get(rec.label)
            out = self._output(rec, golden, engine, runtime, spec, stack_change)
            tq.calls.append(out)
            if rec.seed is None:
                tq.checks.append(QualityCheck.note(
                    "tokens", rec.label, Why.NOT_JUDGED,
                    "not reproducible: the engine takes no seed=, so its outputs are compared by distribution "
                    "(MOS, WER, similarity), not sample by sample"))
                continue
            tq.checks += compare_call(golden, out, spec, dtype, stack_change)
            if base is not None:
                tq.checks += self._against_base(base, rec, out, spec, dtype, stall_timeout_s)
        stored = dict(golden_test.scores) if golden_test is not None else {}
        tq.checks += judge_scores(stored, tq.scores(), spec)
        # A saving session stores one more clean run of each score.
        saving = 1 if self.settings.save_baseline else 0
        tq.saves_to_gate = max(0, saves_to_gate(stored, tq.scores(), spec) - saving)
        if self.settings.save_baseline:
            # A saving session sets the goldens: what differs from the old ones is reported, not failed.
            tq.checks = [QualityCheck.note(c.name, c.call, Why.SAVING, f"{c.text} (saving new goldens)", c.figure,
                                           c.limit)
                         if c.status == "fail" else c for c in tq.checks]
        tq.seconds = time.perf_counter() - t0
        self.results[nodeid] = tq
        return tq

    @staticmethod
    def _against_base(base: BaseSide, rec: Recording, out: CallOutput, spec: QualitySpec, dtype: str,
                      stall_timeout_s: float) -> list[QualityCheck]:
        """A/B mode: the same call on the base side, same seed; its tokens and audio stand in for a golden
        (the base renders nothing else, so token2wav is the goldens' alone)."""
        text = rec.text if isinstance(rec.text, str) else ""
        other = base.call(rec.kind, text, dict(rec.request), label=f"{rec.label} (base)", round=0, measured=False,
                          seed=rec.seed, stall_timeout_s=stall_timeout_s)
        label = f"{rec.label} vs base"
        if other.outcome != "ok":
            return [QualityCheck("tokens", label, "fail", None, None,
                                 f"the base side's call ended with {other.outcome}: {other.error}")]
        stand_in = GoldenCall(label=rec.label, kind=rec.kind, seed=rec.seed, sample_rate=other.sample_rate,
                              tokens=other.speech_tokens, audio=other.audio, rendered=None, text=out.text)
        head = replace(out, rendered=None, token_ranks=None)
        return [replace(c, call=label, text=c.text.replace("golden", "base"))
                for c in compare_call(stand_in, head, spec, dtype) if c.name in ("tokens", "audio")]

    def _output(self, rec: Recording, golden: GoldenCall | None, engine: Any, runtime: Any,
                spec: QualitySpec, stack_change: str = "") -> CallOutput:
        audio = rec.audio
        text = rec.text if isinstance(rec.text, str) else None
        voice = {k: v for k, v in rec.request.items() if k in VOICE_KEYS}
        out = CallOutput(label=rec.label, kind=rec.kind, seed=rec.seed, sample_rate=rec.sample_rate, text=text,
                         tokens=None if rec.speech_tokens is None else list(rec.speech_tokens), audio=audio,
                         chunks=len(rec.chunks))
        # The golden's tokens are rendered (token2wav judges the renderer on them), except in a saving
        # session: its own tokens' render becomes the new golden.
        saving = self.settings.save_baseline
        reference = golden.tokens if golden is not None and golden.tokens and not saving else out.tokens
        can = abilities(engine)     # declared, else found (see pytest_cosyvoice.engine.EngineAbilities)
        render = getattr(engine, "render", None) if can.render else None
        if callable(render) and reference and text is not None and rec.seed is not None:
            try:
                out.rendered = np.asarray(render(text, reference, **voice, streamed=False, seed=rec.seed).audio,
                                          dtype=np.float32)
                out.rendered_streamed = np.asarray(
                    render(text, reference, **voice, streamed=True, seed=rec.seed).audio, dtype=np.float32)
                # A render of the golden's tokens is not the call's own: a save must not store it as such.
                out.rendered_tokens = None if reference == out.tokens else list(reference)
                # The float64 CPU reference: stored with a golden, and needed after a stack change.
                wanted = saving or (bool(stack_change) and golden is not None and golden.reference_snr is not None)
                if wanted and getattr(engine, "reference_available", False):
                    exact = render(text, reference, **voice, streamed=False, seed=rec.seed, reference=True)
                    out.reference_snr = snr_db(np.asarray(exact.audio, dtype=np.float64), out.rendered)
            except InvalidInput:
                out.rendered = out.rendered_streamed = None   # e.g. golden tokens of another vocabulary: noted
        score = getattr(engine, "score_tokens", None) if can.score_tokens else None
        if (callable(score) and spec.tokens != "off" and golden is not None and golden.tokens and text is not None
                and out.tokens != golden.tokens):
            try:
                scores = score(text, golden.tokens, **voice)
                out.token_ranks, out.top_k = tuple(scores.ranks), scores.top_k
            except InvalidInput:
                pass
        self._scores(out, audio, text, voice, runtime)
        return out

    def _scores(self, out: CallOutput, audio: np.ndarray, text: str | None, voice: dict[str, Any],
                runtime: Any) -> None:
        if audio.size == 0:
            return
        if self.missing_extra is None:
            try:
                mos = score_mos(audio, out.sample_rate)
                out.mos = {"dnsmos": mos.dnsmos_ovrl, "plcmos": mos.plcmos}
            except QualityExtraMissing as e:
                self.missing_extra = str(e)
        if self.settings.asr is not None and text:
            from .judging.intelligibility import utterance_error

            lang = _language(text)
            out.transcript = self._recogniser(lang).transcribe(audio, out.sample_rate)
            out.wer = utterance_error(text, out.transcript, lang)
        prompt = voice.get("prompt_wav")
        if prompt is None:
            return
        embed = getattr(runtime, "speaker_embedding", None) if abilities(runtime).speaker_embedding else None
        if callable(embed):
            out.sim = self._similarity("campplus", prompt, embed, audio, out.sample_rate)
        if self.settings.sim is not None:
            sim = self._similarity("sim_model", prompt, self._speaker_model().embed, audio, out.sample_rate)
            if sim is not None:
                out.mos["sim_model"] = sim

    def _similarity(self, scorer: str, prompt: Any, embed: Callable[[np.ndarray, int], np.ndarray],
                    audio: np.ndarray, sample_rate: int) -> float | None:
        """Cosine of the prompt recording's and the output's embeddings. The prompt's embedding is read
        and computed once per scorer and prompt (the suites give every call the same prompt)."""
        key = (scorer, str(prompt))
        with self._lock:
            known = key in self._prompt_embeddings
            reference = self._prompt_embeddings.get(key)
        if not known:
            recording = _prompt_audio(prompt)
            reference = None if recording is None else embed(*recording)
            with self._lock:
                self._prompt_embeddings[key] = reference
        if reference is None:
            return None
        try:
            return cosine(reference, embed(audio, sample_rate))
        except ValueError:          # a silent output: no direction to compare
            return None

    def _recogniser(self, lang: str) -> Recogniser:
        with self._lock:
            if lang not in self._recognisers:
                from .judging.intelligibility import PocketSphinx, local_asr

                asr = self.settings.asr
                assert asr is not None
                self._recognisers[lang] = PocketSphinx() if asr == POCKETSPHINX else local_asr(asr, lang=lang)
            return self._recognisers[lang]

    def _speaker_model(self) -> SpeakerModel:
        with self._lock:
            if self._speaker is None:
                from .judging.similarity import local_speaker_model

                assert self.settings.sim is not None
                self._speaker = local_speaker_model(self.settings.sim)
            return self._speaker

    # -- the end of the session ---------------------------------------------------------------------
    def golden_audio(self) -> dict[str, dict[str, tuple[np.ndarray, int]]]:
        """The stored golden audio of each judged test's calls, for the report's side-by-side players."""
        if not self.results:
            return {}
        try:
            goldens = self.goldens()    # an xdist controller reads them here (its workers judged)
        except pytest.UsageError:
            return {}                   # already reported where the tests ran
        if goldens is None:
            return {}
        out: dict[str, dict[str, tuple[np.ndarray, int]]] = {}
        for nodeid in self.results:
            test = goldens.tests.get(nodeid)
            if test is not None:
                out[nodeid] = {c.label: (c.audio, c.sample_rate) for c in test.calls if c.audio is not None}
        return out


def _prompt_audio(prompt: Any) -> tuple[np.ndarray, int] | None:
    """The prompt recording a call named (a path, as the engines take it) as (samples, rate); None when
    it cannot be read (the engine has already said why, in the call)."""
    from cosyvoice_runtime.audio import read_wav

    try:
        samples, rate = read_wav(prompt)
    except InvalidInput:
        return None
    return np.asarray(samples, dtype=np.float32), int(rate)
