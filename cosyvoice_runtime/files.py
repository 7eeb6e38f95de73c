"""Files shared between processes: an exclusive lock that works on POSIX and Windows, and a write
that a crash or a concurrent reader never sees half done.

Used by the embedded model's cache (one build at a time across xdist workers and parallel
sessions) and by the plugin's baseline store (read-modify-write of a JSON file). Standard library
only, so that anything (the plugin included) can use it without loading the runtime.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; msvcrt's byte-range locks take its place
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write", "locked"]


@contextlib.contextmanager
def locked(path: str | Path, poll_s: float = 0.2) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if absent) for the ``with`` block, waiting as long as it takes.

    Lock a file of its own, not the data file: a data file replaced by `atomic_write` is a new inode,
    and a lock on the old one would not exclude the next writer. The OS drops the lock when its
    holder dies, so a crashed process never leaves a stale lock behind.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            import msvcrt

            # Byte 0 of a fresh fd (position 0). LK_LOCK gives up after 10 s, a build takes minutes:
            # poll the non-blocking form instead.
            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                    break
                except OSError as e:
                    if e.errno not in (errno.EACCES, errno.EDEADLOCK):
                        raise  # not "held by another process": waiting would never end
                    time.sleep(poll_s)
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: str | bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` all at once: a temporary file in the same folder,
    flushed to disk, then `os.replace`d over ``path``. On any failure the temporary file is removed
    and ``path`` keeps its old content (or stays absent)."""
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; the files written here are shared (baselines are committed)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
