"""The base side of an A/B session in another interpreter (`--cosy-base-python`): `probe_python`
checks the interpreter at configure, `WorkerBase` starts the worker there (base_worker.py) and sends
it each call over frames (worker_frames.py). What a base side is: base_side.py.
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, NoReturn

from ..judging.checks import Recording
from .attribution import Takes
from .base_side import BaseSideError
from .recorder import WatchdogExpired, watchdog_bound
from .worker_frames import FrameError, encode_frame, read_frame, recording_from_wire, to_wire

WORKER_MODULE = "pytest_cosyvoice.recording.base_worker"
# The configure-time check of --cosy-base-python: start it, import this package and torch there.
PROBE_TIMEOUT_S = 120.0
# The worker's start: the interpreter, torch, the model's load and the engine's build.
LOAD_TIMEOUT_S = 600.0
# On top of a call's watchdog: pickling a recording both ways and a busy machine's scheduling. The
# worker's own watchdog ends a call whose engine stops producing; this bound only catches a worker
# that stopped as a whole (its beats stop too).
TRANSFER_SLACK_S = 10.0
# close(): how long the worker gets to exit after the exit frame, and again after SIGTERM.
CLOSE_TIMEOUT_S = 5.0
# The worker's stderr kept for an error message (lines, and characters per line).
STDERR_LINES = 20
STDERR_LINE_CHARS = 500

# `-c` (like `-m`) puts the working directory first on sys.path. The session's directory is often the
# head's checkout, whose pytest_cosyvoice would then shadow the base interpreter's own and turn A/B into
# A/A: the worker and the probe drop it, so the base runs what its interpreter has installed (or has on
# PYTHONPATH).
_OWN_PATH = "import sys\nif sys.path and sys.path[0] == '':\n    del sys.path[0]\n"
_WORKER = _OWN_PATH + f"from {WORKER_MODULE} import main\nsys.exit(main())\n"
_PROBE = _OWN_PATH + r"""
import importlib, json
def say(**answer):
    print("\ncosy-base-probe " + json.dumps(answer), flush=True)
for name in ("pytest_cosyvoice", "cosyvoice_runtime", "pytest_cosyvoice.recording.base_worker"):
    try:
        importlib.import_module(name)
    except BaseException as e:
        say(missing=name, error=f"{type(e).__name__}: {e}")
        sys.exit(0)
try:
    from pytest_cosyvoice.tracking.stack import interpreter_versions as versions
except ImportError:   # a pytest-cosyvoice from before the one stack reader (recording/wire.py had one)
    from pytest_cosyvoice.recording.wire import versions
say(versions=versions())
"""
_PROBE_MARK = "cosy-base-probe "


class BaseStartError(BaseSideError):
    """The base worker did not get ready; `stage` says whose fault: "python" (the interpreter, its
    packages, a crash or hang at start), "model" (the model does not load there), "engine" (the
    engine cannot be built there)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def probe_python(python: str, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, str]:
    """Runs `python` once to see that it can host the base worker: it runs, imports pytest_cosyvoice,
    cosyvoice_runtime and the worker module. Returns its versions (python, torch, torchaudio, numpy,
    pytest-cosyvoice); `BaseSideError` saying what is wrong otherwise (the caller names the option)."""
    if os.sep in python and Path(python).is_dir():
        raise BaseSideError(f"a directory, not an interpreter (e.g. {Path(python) / 'bin' / 'python'})")
    try:
        done = subprocess.run([python, "-c", _PROBE], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise BaseSideError("no such file" if os.sep in python else "no such interpreter on PATH") from None
    except PermissionError:
        raise BaseSideError("not executable") from None
    except OSError as e:
        raise BaseSideError(f"does not run: {e.strerror or e}") from None
    except subprocess.TimeoutExpired:
        raise BaseSideError(f"timed out: no answer within {timeout_s:g} s (importing torch and "
                            "pytest_cosyvoice there)") from None
    answers = [line[len(_PROBE_MARK):] for line in done.stdout.splitlines() if line.startswith(_PROBE_MARK)]
    if done.returncode != 0 or not answers:
        return_text = f"exit status {done.returncode}" if done.returncode >= 0 else _signal_text(done.returncode)
        raise BaseSideError(f"does not run ({return_text}): {_tail(done.stderr or done.stdout, 5)}")
    answer = json.loads(answers[-1])
    if "missing" in answer:
        if answer["missing"] == WORKER_MODULE:
            raise BaseSideError(f"its pytest_cosyvoice has no base worker ({answer['error']}): install this "
                                "version of pytest-cosyvoice into that environment")
        raise BaseSideError(f"lacks {answer['missing']} ({answer['error']}): install pytest-cosyvoice into "
                            "that environment")
    return {str(k): str(v) for k, v in answer["versions"].items()}


def _tail(text: str, n: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "(it wrote nothing)"


def _signal_text(returncode: int) -> str:
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return f"killed by signal {name}"


class WorkerBase:
    """The base side in another interpreter (--cosy-base-python): a worker process (base_worker.py's
    `main`, started without the working directory on its path: see _OWN_PATH) that loads the base
    model and builds the base engine there, then runs each call the session sends it (see
    base_worker.py for the frames).

    Every wait is bounded: the start by `load_timeout_s`, a call by its watchdog (stall timeout, the
    worker runtime's join timeout and the margin: `recorder.watchdog_bound`) plus `TRANSFER_SLACK_S`,
    counted from the worker's last frame (it beats while alive). A worker that dies or falls silent
    is a `BaseSideError` naming its exit status and its last stderr lines; every later call raises
    the same error at once. Use `start`, not the constructor."""

    def __init__(self, python: str, proc: subprocess.Popen[bytes]) -> None:
        self.python = python
        self.description = f"python {python}"
        self.versions: dict[str, str] = {}
        self.join_timeout_s = 0.0            # the worker runtime's, part of a call's watchdog
        self._takes: dict[str, Takes] = {}   # what the worker's engine takes, per kind (its ready frame)
        self.slack_s = TRANSFER_SLACK_S
        self._proc = proc
        self._frames: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()
        self._heard = time.monotonic()     # when the worker's last frame (a beat included) came
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._error: BaseSideError | None = None
        self._lock = threading.Lock()
        assert proc.stdout is not None and proc.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(proc.stdout,), name="cosy-base-frames", daemon=True)
        self._drain = threading.Thread(target=self._drain_stderr, args=(proc.stderr,), name="cosy-base-stderr",
                                       daemon=True)
        self._reader.start()
        self._drain.start()

    @classmethod
    def start(cls, python: str, *, model: str | Path, engine: str, device: str, fp16: bool, stall_timeout_s: float,
              load_timeout_s: float = LOAD_TIMEOUT_S, slack_s: float = TRANSFER_SLACK_S) -> WorkerBase:
        """Starts the worker and waits (up to `load_timeout_s`) until it has loaded `model` on `device`
        and built `engine`; `BaseStartError` (with the stage at fault) when it does not get there.
        `slack_s`: added to each call's watchdog for the transfer (see TRANSFER_SLACK_S)."""
        try:
            proc = subprocess.Popen([python, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as e:
            raise BaseStartError("python", f"the interpreter does not start: {e}") from None
        base = cls(python, proc)
        base.slack_s = slack_s
        hello = {"op": "hello", "model": str(model), "engine": engine, "device": device, "fp16": fp16,
                 "stall_timeout_s": stall_timeout_s}
        try:
            base._send(hello, load_timeout_s, "its start")
            answer = base._receive(load_timeout_s, "its start (loading the model, building the engine)", idle=False)
        except BaseSideError as e:
            base.close()
            raise BaseStartError("python", str(e)) from None
        if answer.get("op") == "failed":
            base.close()
            raise BaseStartError(str(answer["stage"]), str(answer["error"]))
        if answer.get("op") != "ready":
            base.close()
            raise BaseStartError("python", f"the worker answered its start with {answer.get('op')!r}, not 'ready'")
        base.versions = {str(k): str(v) for k, v in answer["versions"].items()}
        base.join_timeout_s = float(answer["join_timeout_s"])
        base._takes = {str(kind): Takes(**{k: bool(v) for k, v in takes.items()})
                       for kind, takes in (answer.get("takes") or {}).items()}
        return base

    def takes(self, kind: str) -> Takes | None:
        return self._takes.get(kind)

    def call(self, kind: str, text: str, kwargs: dict[str, Any], *, label: str, round: int, measured: bool,
             seed: int | None, stall_timeout_s: float, seed_per_request: bool = True) -> Recording:
        message = {"op": "call", "kind": kind, "text": text, "kwargs": to_wire(kwargs), "label": label,
                   "round": round, "measured": measured, "seed": seed, "stall_timeout_s": stall_timeout_s,
                   "seed_per_request": seed_per_request}
        bound = watchdog_bound(stall_timeout_s, self.join_timeout_s) + self.slack_s
        # One call at a time: the pipe carries one conversation. (The pairing code never runs a base call
        # beside the head's own, so on CUDA the two sides share the test's device without overlapping.)
        with self._lock:
            if self._error is not None:
                raise self._error
            self._send(message, bound, label)
            answer = self._receive(bound, label, idle=True)
        op = answer.get("op")
        if op == "recording":
            return recording_from_wire(answer["fields"])
        if op == "watchdog":  # the engine stopped producing; the worker abandoned the call and serves on
            raise WatchdogExpired(f"base side ({self.description}): {answer['error']}")
        if op == "raised":
            exc = _unpickle(answer.get("exception"))
            if isinstance(exc, Exception):
                raise exc
            raise BaseSideError(f"base side ({self.description}): {label} raised {answer['type']}: {answer['error']}")
        raise BaseSideError(f"base side ({self.description}): the worker answered {label} with {op!r}")

    def close(self) -> None:
        """Asks the worker to exit; terminates, then kills it, when it does not within CLOSE_TIMEOUT_S."""
        if self._error is None:
            self._error = BaseSideError(f"base side ({self.description}): closed")
        proc = self._proc
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                # Small enough for the pipe's buffer: this write does not wait on the worker.
                proc.stdin.write(_EXIT_FRAME)
                proc.stdin.close()
            except (OSError, ValueError):  # already gone, or its stdin already closed
                pass
        _stop(proc)
        self._reader.join(CLOSE_TIMEOUT_S)
        self._drain.join(CLOSE_TIMEOUT_S)

    # -- the pipes ---------------------------------------------------------------------------------
    def _read(self, out: IO[bytes]) -> None:
        """Frames from the worker into the queue (beats only mark it alive); None at its end."""
        try:
            while True:
                message = read_frame(out)
                self._heard = time.monotonic()
                if message is None:
                    break
                if message.get("op") != "beat":
                    self._frames.put(message)
        except (FrameError, OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
            self._frames.put(e)
            return
        self._frames.put(None)

    def _drain_stderr(self, err: IO[bytes]) -> None:
        for raw in err:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self._stderr.append(line[:STDERR_LINE_CHARS])

    def _send(self, message: dict[str, Any], bound_s: float, during: str) -> None:
        """Writes one frame, waiting at most `bound_s` for the worker to take it."""
        try:
            data = encode_frame(message)
        except Exception as e:  # noqa: BLE001 - an argument that does not pickle; the worker is fine
            raise BaseSideError(f"base side ({self.description}): {during}: its arguments cannot be sent to the "
                                f"base worker: {type(e).__name__}: {e}") from None
        failed: list[BaseException] = []

        def write() -> None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
            except (OSError, ValueError) as e:
                failed.append(e)

        writer = threading.Thread(target=write, name="cosy-base-send", daemon=True)
        writer.start()
        writer.join(bound_s)
        if writer.is_alive():
            self._fail(f"took nothing from its input for {bound_s:.0f} s during {during}", hung=True)
        if failed:
            self._fail(f"stopped reading its input during {during} ({type(failed[0]).__name__})", hung=False)

    def _receive(self, bound_s: float, during: str, *, idle: bool) -> dict[str, Any]:
        """The worker's next answer. `idle`: the bound counts from its last frame (beats included);
        else from now. Past the bound the worker is killed."""
        start = time.monotonic()
        while True:
            since = max(start, self._heard) if idle else start
            left = since + bound_s - time.monotonic()
            if left <= 0:
                waited = time.monotonic() - start
                self._fail(f"sent nothing for {bound_s:.0f} s during {during} (waited {waited:.0f} s in all)",
                           hung=True)
            try:
                item = self._frames.get(timeout=min(left, 0.25))
            except queue.Empty:
                continue
            if isinstance(item, dict):
                return item
            if item is None:
                self._fail(f"died during {during}", hung=False)
            self._fail(f"wrote something that is not a frame during {during} ({item})", hung=True)

    def _fail(self, what: str, *, hung: bool) -> NoReturn:
        """Records the worker as lost (every later call raises the same) and raises the error."""
        proc = self._proc
        if hung and proc.poll() is None:
            proc.kill()
        _stop(proc)
        self._drain.join(1.0)   # its last stderr lines
        rc = proc.returncode
        status = f"exit status {rc}" if rc is not None and rc >= 0 else _signal_text(rc or 0)
        lines = list(self._stderr)
        tail = ("; its last stderr lines:\n" + "\n".join(f"    {line}" for line in lines)) if lines else \
            "; it wrote nothing to stderr"
        killed = "killed it, " if hung else ""
        self._error = BaseSideError(f"base side ({self.description}): the worker {what}: {killed}{status}{tail}")
        raise self._error


_EXIT_FRAME = encode_frame({"op": "exit"})


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Waits for the process to end: CLOSE_TIMEOUT_S, then SIGTERM and as long again, then SIGKILL."""
    for step in (None, proc.terminate, proc.kill):
        if step is not None and proc.poll() is None:
            step()
        try:
            proc.wait(CLOSE_TIMEOUT_S if step is not proc.kill else None)
            return
        except subprocess.TimeoutExpired:
            continue


def _unpickle(data: bytes | None) -> BaseException | None:
    """The exception the worker's call raised, where it loads in this interpreter."""
    if data is None:
        return None
    try:
        exc = pickle.loads(data)
    except Exception:  # noqa: BLE001 - a class this side lacks: the error travels as text
        return None
    return exc if isinstance(exc, BaseException) else None
