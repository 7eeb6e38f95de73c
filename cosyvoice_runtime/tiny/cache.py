"""The embedded default model: built on first use into a per-user cache, then reused, one build at a
time across processes (xdist workers, parallel sessions)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..loader import YAML_NAMES
from .builder import build
from .spec import sizes

try:
    import fcntl
except ImportError:  # Windows: no flock; msvcrt's byte-range locks take its place
    fcntl = None  # type: ignore[assignment]


def cache_root() -> Path:
    return Path(os.environ.get("COSY_CACHE_DIR") or Path.home() / ".cache" / "pytest-cosyvoice")


def _source_digest() -> str:
    # Every module of this package, so that any change to the builder builds afresh.
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:10]


@contextlib.contextmanager
def file_lock(path: Path, poll_s: float = 0.2) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if absent) for the ``with`` block, waiting as long as it takes.

    The OS drops the lock when its holder dies, so a crashed build never leaves a stale lock behind.
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


def default_model_dir(version: int = 2, *, size: str = "tiny", seed: int = 0) -> Path:
    """The embedded default model: built on first use into the cache, then reused.

    The folder name carries version, size, seed and a hash of the builder's source, so a changed
    builder rebuilds. Safe when several processes (xdist workers) ask at once: one builds under a file
    lock, the others wait for it and reuse the result; the build itself ends in an atomic rename.
    """
    sizes(version, size)
    root = cache_root()
    target = root / f"cosyvoice-v{version}-{size}-seed{seed}-{_source_digest()}"
    marker = target / YAML_NAMES[version]
    if marker.is_file():  # only ever appears complete (atomic rename)
        return target
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{target.name}.lock"):
        if not marker.is_file():
            build(target, version=version, size=size, seed=seed)
    return target
