"""A headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
JSON messages ended by NUL on fds 3 and 4), so the browser test needs no package beyond the
standard library and the distribution's `chromium`."""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
# Flags that work as root on a CI machine with no display, GPU or network.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--mute-audio", "--remote-debugging-pipe")


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


_TRAMPOLINE = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
               "os.execv(sys.argv[3], sys.argv[3:])")


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium process and one page in it; `evaluate` runs JavaScript in the page."""

    def __init__(self, binary: str, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self._tmp = Path(tempfile.mkdtemp(prefix="cosy-chromium-"))
        self._log = open(self._tmp / "stderr.log", "wb")  # a pipe nobody reads would block chromium
        to_browser_r, self._to_browser = _high_pipe()
        self._from_browser, from_browser_w = _high_pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4; a small Python trampoline puts
        # the pipes there before exec (no preexec_fn: unsafe in a process with threads, as torch's).
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(to_browser_r), str(from_browser_w),
             binary, *FLAGS, f"--user-data-dir={self._tmp / 'profile'}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            pass_fds=(to_browser_r, from_browser_w), start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self._session: str | None = None

    def __enter__(self) -> Chromium:
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._send({"id": -1, "method": "Browser.close"})
                self._proc.wait(timeout=10)
            except (OSError, BrowserError, subprocess.TimeoutExpired):
                # Its own process group (start_new_session): the renderers and zygote go with it.
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def log_tail(self) -> str:
        return (self._tmp / "stderr.log").read_text(errors="replace")[-2000:]

    def _send(self, message: dict[str, Any]) -> None:
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            self._proc.wait(timeout=10)
            raise BrowserError(f"chromium exited ({self._proc.returncode}): {self.log_tail()}") from None

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError(f"no reply from chromium within {self.timeout_s:.0f} s: {self.log_tail()}")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                self._proc.wait(timeout=10)
                raise BrowserError(f"chromium exited ({self._proc.returncode}): {self.log_tail()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command (to the page once attached) and wait for its reply; events are dropped."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        self._send(message)
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited), as JSON."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        """Navigate and wait for the page's load event (every <img> loaded or failed)."""
        nav = self.call("Page.navigate", url=url)
        if nav.get("errorText"):
            raise BrowserError(f"{url}: {nav['errorText']}")
        deadline = time.monotonic() + self.timeout_s
        loaded = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
        while True:
            try:
                if self.evaluate(loaded) is True:
                    return
            except BrowserError:   # the old document's context went away mid-call: ask the new one
                if self._proc.poll() is not None:
                    raise
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading within {self.timeout_s:.0f} s")
            time.sleep(0.1)


def _high_pipe() -> tuple[int, int]:
    """A pipe whose fds are above 4, so moving one to 3 or 4 cannot overwrite the other."""
    fds = os.pipe()
    high = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return high[0], high[1]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """The folder on a localhost port, as a user serving an unzipped report artifact would: the
    base URL (http://127.0.0.1:PORT/)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
