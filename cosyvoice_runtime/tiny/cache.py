"""The embedded default model: built on first use into a per-user cache, then reused, one build at a
time across processes (xdist workers, parallel sessions)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..files import locked
from ..loader import YAML_NAMES
from .builder import build
from .spec import sizes


def cache_root() -> Path:
    return Path(os.environ.get("COSY_CACHE_DIR") or Path.home() / ".cache" / "pytest-cosyvoice")


def _source_digest() -> str:
    # Every module of this package, so that any change to the builder builds afresh.
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:10]


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
    with locked(root / f".{target.name}.lock"):
        if not marker.is_file():
            build(target, version=version, size=size, seed=seed)
    return target
