"""cosyvoice_runtime.files: the lock that serialises processes (fcntl, or msvcrt where fcntl is
missing) and the write that never leaves half a file."""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cosyvoice_runtime import files
from cosyvoice_runtime.files import atomic_write, locked

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_process_holding_the_lock_makes_us_wait(tmp_path: Path) -> None:
    """The real lock of this platform. The other process takes the lock, then (while holding it)
    writes `done`; we ask for the lock once it holds it: we get it only after `done` exists."""
    lock, done = tmp_path / "x.lock", tmp_path / "done"
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from cosyvoice_runtime.files import locked
        with locked(Path({str(lock)!r})):
            print("held", flush=True)
            time.sleep(0.5)          # long enough that we are already waiting
            Path({str(done)!r}).write_text("released next")
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        with locked(lock):
            assert done.read_text() == "released next"   # it let go only after writing it
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_the_lock_is_released_on_an_exception(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with pytest.raises(RuntimeError, match="boom"), locked(lock):
        raise RuntimeError("boom")
    # Another process gets it at once: nobody holds it any more.
    code = f"from cosyvoice_runtime.files import locked\nwith locked({str(lock)!r}): print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr


class FakeMsvcrt:
    """msvcrt.locking's contract: LK_NBLCK raises OSError while another holder has the byte."""

    LK_NBLCK, LK_UNLCK = 2, 0

    def __init__(self, busy_for: int) -> None:
        self.busy_for = busy_for  # attempts refused before the other holder lets go
        self.calls: list[tuple[int, int]] = []
        self.held = False

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        self.calls.append((mode, os.lseek(fd, 0, os.SEEK_CUR)))
        if mode == self.LK_NBLCK:
            if self.busy_for > 0:
                self.busy_for -= 1
                raise OSError(errno.EDEADLOCK, "Resource deadlock avoided")  # what the CRT sets
            assert not self.held
            self.held = True
        elif mode == self.LK_UNLCK:
            assert self.held
            self.held = False


def test_lock_without_fcntl_waits_and_releases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where fcntl is missing (Windows), the lock polls msvcrt's non-blocking lock and always unlocks."""
    fake = FakeMsvcrt(busy_for=3)
    monkeypatch.setattr(files, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    with locked(tmp_path / "x.lock", poll_s=0.001):
        assert fake.held
    assert not fake.held
    # Three refusals, the lock, the unlock: all on byte 0.
    assert fake.calls == [(fake.LK_NBLCK, 0)] * 4 + [(fake.LK_UNLCK, 0)]
    with pytest.raises(RuntimeError, match="boom"), locked(tmp_path / "x.lock"):
        raise RuntimeError("boom")
    assert not fake.held  # released on an exception too


def test_lock_without_fcntl_gives_up_on_another_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error other than "held by another process" is raised, not waited on forever."""

    class Broken(FakeMsvcrt):
        def locking(self, fd: int, mode: int, nbytes: int) -> None:
            raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(files, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", Broken(0))
    with pytest.raises(OSError, match="Bad file descriptor"), locked(tmp_path / "x.lock", poll_s=0.001):
        pytest.fail("the block ran without the lock")


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_atomic_write_writes_text_and_bytes_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    atomic_write(target, '{"ä": 1}\n')
    assert target.read_bytes() == '{"ä": 1}\n'.encode()
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    if os.name == "posix":
        assert stat.S_IMODE(target.stat().st_mode) == 0o644   # not mkstemp's 0600
    assert _leftovers(tmp_path, {"doc.json"}) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        atomic_write(target, ["not", "bytes"])  # type: ignore[arg-type]  # fails after the temp file exists
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path, {"doc.json"}) == []


def test_a_failed_replace_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(OSError):
        atomic_write(target, "data")  # a non-empty folder cannot be replaced by a file
    assert (target / "inside").read_text() == "x"
    assert _leftovers(tmp_path, {"taken"}) == []
