"""The base side's worker: `main()` in the --cosy-base-python interpreter (base_side.py's `WorkerBase` starts
it with `-c`, leaving the session's working directory off its path; `-m` works by hand).

Runs in the base interpreter (another venv, another torch, another checkout) and serves the session's
`WorkerBase` (base_side.py) over framed pickles on its stdin/stdout (worker_frames.py):

    session -> worker   {"op": "hello", "model", "engine", "device", "fp16", "stall_timeout_s"}
    worker -> session   {"op": "ready", "versions", "join_timeout_s", "takes"}
                        | {"op": "failed", "stage": "model" | "engine", "error"}
    session -> worker   {"op": "call", "kind", "text", "kwargs", "label", "round", "measured", "seed",
                         "stall_timeout_s", "seed_per_request"}
    worker -> session   {"op": "recording", "fields"} | {"op": "watchdog", "error"}
                        | {"op": "raised", "type", "error", "exception"}
    worker -> session   {"op": "beat"} every BEAT_S once ready: a live process keeps beating; a stopped
                        or wedged one (no thread gets to run) falls silent and the session kills it
    session -> worker   {"op": "exit"}, or the end of its stdin

Each call runs through an `InProcessBase` of the worker's own, so it is timed inside the worker by
the same `CosyTTS` code as the head's calls (the pipe is not counted) and behind the same watchdog:
an engine that stops producing comes back as {"op": "watchdog"}, and the worker serves on.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import threading
from typing import Any, BinaryIO

from ..tracking.stack import interpreter_versions
from .recorder import join_timeout_s
from .worker_frames import from_wire, read_frame, recording_to_wire, write_frame

# Seconds between two beats (the session's bound on silence is many times this).
BEAT_S = 1.0


class _Link:
    """The frames going out: the reply and the beats come from two threads."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            write_frame(self._out, message)


def _own_pipes() -> tuple[BinaryIO, BinaryIO]:
    """Takes the real stdin/stdout for the frames; fd 1 then points at stderr and fd 0 at /dev/null,
    so whatever the engine or a library prints (or reads) cannot corrupt or swallow a frame."""
    frames_in = os.fdopen(os.dup(0), "rb")
    frames_out = os.fdopen(os.dup(1), "wb")
    sys.stdout.flush()
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    return frames_in, frames_out


def _beat(link: _Link, stop: threading.Event) -> None:
    while not stop.wait(BEAT_S):
        try:
            link.send({"op": "beat"})
        except (OSError, ValueError):  # the session is gone: the main loop sees its stdin end
            return


def _pickled(exc: BaseException) -> bytes | None:
    """The exception itself where it pickles (the session re-raises it, as an in-process base would)."""
    try:
        return pickle.dumps(exc, protocol=4)
    except Exception:  # noqa: BLE001 - an exception with unpicklable state travels as its text only
        return None


def serve(frames_in: BinaryIO, link: _Link) -> int:
    hello = read_frame(frames_in)
    if hello is None or hello.get("op") != "hello":
        print(f"base worker: expected a hello frame, got {hello!r}", file=sys.stderr)
        return 2
    import cosyvoice_runtime

    from ..engine import build
    from .attribution import KINDS
    from .base_side import InProcessBase
    from .calls import WatchdogExpired

    try:
        runtime = cosyvoice_runtime.load(hello["model"], device=hello["device"], fp16=hello["fp16"],
                                         stall_timeout_s=hello["stall_timeout_s"])
    except Exception as e:  # noqa: BLE001 - any load failure is the answer to the hello
        link.send({"op": "failed", "stage": "model", "error": f"{type(e).__name__}: {e}"})
        return 1
    try:
        engine = build(hello["engine"], runtime)
    except Exception as e:  # noqa: BLE001 - EngineError/EngineUnavailable carry the reason; others are named
        link.send({"op": "failed", "stage": "engine", "error": f"{type(e).__name__}: {e}"})
        return 1
    stack = interpreter_versions()
    base = InProcessBase(engine, runtime, f"engine {hello['engine']}, model {hello['model']}", stack)
    takes = {kind: dataclasses.asdict(t) for kind in KINDS if (t := base.takes(kind)) is not None}
    link.send({"op": "ready", "versions": stack, "join_timeout_s": join_timeout_s(runtime), "takes": takes})
    stop = threading.Event()
    threading.Thread(target=_beat, args=(link, stop), name="cosy-base-beat", daemon=True).start()
    try:
        while True:
            msg = read_frame(frames_in)
            if msg is None or msg.get("op") == "exit":
                return 0
            if msg.get("op") != "call":
                print(f"base worker: unknown frame {msg.get('op')!r}", file=sys.stderr)
                continue
            try:
                rec = base.call(msg["kind"], msg["text"], from_wire(msg["kwargs"]), label=msg["label"],
                                round=msg["round"], measured=msg["measured"], seed=msg["seed"],
                                stall_timeout_s=msg["stall_timeout_s"],
                                seed_per_request=bool(msg.get("seed_per_request", True)))
            except WatchdogExpired as e:
                link.send({"op": "watchdog", "error": str(e)})
            except Exception as e:  # noqa: BLE001 - raised again in the session
                link.send({"op": "raised", "type": type(e).__name__, "error": str(e), "exception": _pickled(e)})
            else:
                link.send({"op": "recording", "fields": recording_to_wire(rec)})
    finally:
        stop.set()
        base.close()


def main() -> int:
    frames_in, frames_out = _own_pipes()
    link = _Link(frames_out)
    try:
        return serve(frames_in, link)
    except BrokenPipeError:  # the session went away mid-reply
        return 0


if __name__ == "__main__":
    sys.exit(main())

