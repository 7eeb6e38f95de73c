"""The session's quality drift gate (issue 18): what a `@pytest.mark.quality` test's calls produced,
judged against the golden outputs saved with --cosy-save-baseline (tracking/goldens.py) by the checks of
judging/golden_checks.py and judging/scores.py.

Per call of the test (measured, round 0, ended normally) it gathers the speech tokens and audio the
recording holds and asks the engine for what it offers: `render(text, tokens, ..., streamed=, seed=)`
(token -> wav of the golden tokens, offline and streamed) and `score_tokens(...)` (the current LLM's rank
of each golden token, asked only when the tokens diverge). The scores need no engine (judging.scores'
`CallScorers`): DNSMOS/PLCMOS (speechmos, the `quality` extra), WER with --cosy-asr, speaker similarity
with the model directory's campplus.onnx (prompt recording vs output) and --cosy-sim. What cannot be
computed becomes a "note" check that says why; only "fail" checks fail the test.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from cosyvoice_runtime import InvalidInput

from .engine import abilities
from .judging.audio_metrics import snr_db
from .judging.checks import Recording
from .judging.golden_checks import compare_call, compare_with_base
from .judging.quality_results import CallOutput, QualityCheck, TestQuality, Why
from .judging.scores import CallScorers, judge_test_scores
from .judging.specs import QualitySpec
from .settings import Settings
from .tracking.goldens import GoldenCall, GoldenError, Goldens, GoldenStore
from .tracking.runkey import RunKey
from .tracking.stack import detect_stack, stack_changes

if TYPE_CHECKING:
    from .recording.base_side import BaseSide

# The arguments that make a call's voice: what `render`/`score_tokens` take besides text and tokens.
VOICE_KEYS = ("speaker", "prompt_wav", "prompt_text", "instruct", "source_wav", "text_frontend")


class QualityGate:
    """One per session: the goldens of the session's run key (read once), the scorers (`scorers`: models
    built on first use), and each quality test's `TestQuality` (`results`). `base_dir`: the folder the
    session started in (the stack's commit is read there)."""

    def __init__(self, settings: Settings, base_dir: Path) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self.scorers = CallScorers(settings.asr, settings.sim)
        self.results: dict[str, TestQuality] = {}
        self._lock = threading.Lock()
        self._goldens: dict[RunKey, Goldens | None] = {}
        self._stack: dict[str, str] | None = None

    # -- goldens ------------------------------------------------------------------------------------
    def store(self) -> GoldenStore:
        """The goldens beside the baselines: the one folder the settings resolved (settings.resolve)."""
        return GoldenStore(self.settings.baseline_dir)

    def goldens(self, key: RunKey) -> Goldens | None:
        """The stored goldens of a run key (None: none saved yet), read once. A golden file that cannot
        be read is a usage error (exit 4), named; nothing is overwritten."""
        with self._lock:
            if key not in self._goldens:
                try:
                    self._goldens[key] = self.store().load(key)
                except GoldenError as e:
                    raise pytest.UsageError(f"quality goldens: {e}") from None
            return self._goldens[key]

    def check(self, items: Sequence[pytest.Item], run_key: Callable[[], tuple[RunKey, str]]) -> None:
        """Before any test: the goldens of a session with quality tests are read now, so a bad file
        stops the session with exit 4. `run_key` (the session's) is asked only then."""
        if any(i.get_closest_marker(QualitySpec.marker) is not None for i in items):
            self.goldens(run_key()[0])

    def stack_change(self, goldens: Goldens | None, device: str) -> str:
        """The versions that differ from the goldens' saving stack, worded ("torch 2.9.1 -> 2.10.0");
        "" when none differ or the goldens recorded none. The commit is not a stack change."""
        if goldens is None or not goldens.stack:
            return ""
        with self._lock:
            if self._stack is None:     # this session's stack (torch, CUDA, driver, ...), read once
                self._stack = detect_stack(device, self.base_dir)
        return "; ".join(stack_changes(goldens.stack, self._stack, with_commit=False))

    # -- one test -----------------------------------------------------------------------------------
    def judge(self, nodeid: str, spec: QualitySpec, recordings: Sequence[Recording], engine: Any, runtime: Any,
              key: RunKey, base: BaseSide | None = None, stall_timeout_s: float = 30.0) -> TestQuality:
        """The test's `TestQuality`: each call against its golden (of `key`, the session's run key, whose
        dtype sets the limits) and, in A/B mode (`base`), against the base side's run of the same call
        with the same seed."""
        t0 = time.perf_counter()
        goldens = self.goldens(key)
        golden_test = goldens.tests.get(nodeid) if goldens is not None else None
        by_label = {c.label: c for c in golden_test.calls} if golden_test is not None else {}
        stack_change = self.stack_change(goldens, key.device_kind)
        embed = getattr(runtime, "speaker_embedding", None) if abilities(runtime).speaker_embedding else None
        tq = TestQuality(nodeid)
        for rec in recordings:
            if not rec.measured or rec.round != 0 or rec.outcome != "ok":
                continue
            golden = by_label.get(rec.label)
            out = self._output(rec, golden, engine, spec, stack_change)
            self.scorers.score(out, rec.request.get("prompt_wav"), embed if callable(embed) else None)
            tq.calls.append(out)
            if rec.seed is None:
                tq.checks.append(QualityCheck.note(
                    "tokens", rec.label, Why.NOT_JUDGED,
                    "not reproducible: the engine takes no seed=, so its outputs are compared by distribution "
                    "(MOS, WER, similarity), not sample by sample"))
                continue
            tq.checks += compare_call(golden, out, spec, key.dtype, stack_change)
            if base is not None:    # the same call on the base side, same seed
                other = base.call(rec.kind, out.text or "", dict(rec.request), label=f"{rec.label} (base)",
                                  round=0, measured=False, seed=rec.seed, stall_timeout_s=stall_timeout_s)
                tq.checks += compare_with_base(out, other, spec, key.dtype)
        judge_test_scores(tq, dict(golden_test.scores) if golden_test is not None else {}, spec,
                          saving=self.settings.save_baseline)
        tq.seconds = time.perf_counter() - t0
        self.results[nodeid] = tq
        return tq

    def _output(self, rec: Recording, golden: GoldenCall | None, engine: Any, spec: QualitySpec,
                stack_change: str) -> CallOutput:
        """The call as recorded, with what the engine offers: this stack's renders and the golden tokens' ranks."""
        text = rec.text if isinstance(rec.text, str) else None
        voice = {k: v for k, v in rec.request.items() if k in VOICE_KEYS}
        out = CallOutput(label=rec.label, kind=rec.kind, seed=rec.seed, sample_rate=rec.sample_rate, text=text,
                         tokens=None if rec.speech_tokens is None else list(rec.speech_tokens), audio=rec.audio,
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
        return out

    # -- the end of the session ---------------------------------------------------------------------
    def golden_audio(self, key: RunKey) -> dict[str, dict[str, tuple[np.ndarray, int]]]:
        """The stored golden audio of each judged test's calls, for the report's side-by-side players."""
        if not self.results:
            return {}
        try:
            goldens = self.goldens(key)    # an xdist controller reads them here (its workers judged)
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
