"""Warning capture for one test's call (the stream capture is `recording.calls.CosyTTS`).

`warnings.catch_warnings` state is process-wide, not per thread: while a `WarningCapture` is active,
warnings raised in any thread reach it, the engine's LLM producer and the test's own worker threads
included, which is what the clean check must see. It is entered around the call phase of one test
only; on exit the previous filters and `showwarning` are back, so warnings raised before or after
(setup, teardown, another test, a thread still running afterwards) are not captured.
"""
from __future__ import annotations

import threading
import warnings
from types import TracebackType
from typing import TextIO

from ..judging.checks import CLEAN_CATEGORIES, WarningRecord


class WarningCapture:
    def __init__(self) -> None:
        self.records: list[WarningRecord] = []
        self._catcher: warnings.catch_warnings[None] | None = None

    def __enter__(self) -> WarningCapture:
        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        for cat in CLEAN_CATEGORIES:
            # "always" beats "once"/"default" and makes __warningregistry__ entries irrelevant, so a
            # warning already shown by an earlier test is seen again.
            warnings.filterwarnings("always", category=cat)
        warnings.showwarning = self._show
        return self

    def _show(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: TextIO | None = None, line: str | None = None) -> None:
        # Runs in the thread that warned: its name goes into the message ("(thread worker)").
        self.records.append(WarningRecord(category, str(message), filename, lineno, threading.current_thread().name))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._catcher is not None
        self._catcher.__exit__(exc_type, exc, tb)
        self._catcher = None
        for w in list(self.records):
            # Hand them on to pytest's own capture, so its warnings summary still lists them.
            try:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            except Warning:  # a -W error filter: the clean check reports them already
                pass
