"""On the built-in engine `cosy_tts` touches nothing of the process: a user's own
`threading.excepthook` and `threading.Thread` subclass behave inside a call exactly as outside it
(the hook in place is the user's and hears their thread's death; `Thread.start` is the standard
library's), also in the thread that iterates the engine."""
from __future__ import annotations

from pathlib import Path

import pytest

INNER = '''
import threading

import pytest
from cosyvoice_runtime import StreamObserver

START = threading.Thread.start


class Mine(threading.Thread):
    """A user's thread class: its own start and run (which fails)."""

    starts = []

    def start(self):
        Mine.starts.append(self.name)
        super().start()

    def run(self):
        raise ValueError(f"boom in {self.name}")


def observe(tag, heard):
    """What a user sees of their hook and their thread, from wherever this runs."""
    t = Mine(name=f"mine-{tag}")
    t.start()
    t.join(10)
    return {"hook is mine": threading.excepthook == heard.hook, "start untouched": threading.Thread.start is START,
            "heard": heard.pop(), "started": Mine.starts[-1]}


class Heard(list):
    def hook(self, args):
        self.append((args.thread.name, args.exc_type.__name__, str(args.exc_value)))


class InEngine(StreamObserver):
    """Runs the same observation in the thread that iterates the engine, while the call is in flight."""

    def __init__(self, heard):
        self.heard, self.seen = heard, None

    def on_chunk(self, chunk):
        if self.seen is None:
            self.seen = observe("engine", self.heard)


def expected(tag):
    return {"hook is mine": True, "start untouched": True, "started": f"mine-{tag}",
            "heard": (f"mine-{tag}", "ValueError", f"boom in mine-{tag}")}


@pytest.mark.streaming(prebuffer_ms=600000, max_gap_ms=600000)
@pytest.mark.parametrize("call", ["stream", "synthesize"])
def test_user_thread_machinery_is_untouched_by_a_call(cosy_tts, monkeypatch, call):
    heard = Heard()
    monkeypatch.setattr(threading, "excepthook", heard.hook)
    assert observe("before", heard) == expected("before")
    engine = InEngine(heard)
    if call == "stream":
        inside = None
        for chunk in cosy_tts.stream("Hello there.", speaker=cosy_tts.speakers[0], observer=engine):
            if inside is None:
                inside = observe("test", heard)   # between two chunks: the call is in flight
        assert inside == expected("test")
    else:
        cosy_tts.synthesize("Hello there.", speaker=cosy_tts.speakers[0], observer=engine)
    assert engine.seen == expected("engine")
    assert observe("after", heard) == expected("after")
    assert not heard
    assert cosy_tts.recordings[-1].thread_errors == []   # the user's threads are not the engine's
'''


def test_a_users_excepthook_and_thread_class_behave_the_same_inside_a_call(pytester: pytest.Pytester,
                                                                            warm_tiny: Path) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "-o", "cosy_allowed_warnings=autocast\n__array_wrap__")
    result.assert_outcomes(passed=2)
