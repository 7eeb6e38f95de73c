"""Baselines: the samples a known-good session measured, one JSON file per `HardwareKey`.

File layout (`<directory>/<key.slug()>.json`)::

    {"schema": 1,
     "key": {...HardwareKey.to_dict()...},
     "updated_at": "2025-01-01T12:00:00+00:00",
     "tests": {"<nodeid>": {"rtf": [...], "first_chunk_ms": [...], "worst_gap_ms": [...],
                            "audio_s": 3.2, "cold": false,
                            "saved_at": "...", "commit": "<sha or null>"}}}

Writes go to a temporary file in the same directory followed by os.replace, so a crash or a
parallel reader never sees half a file; read-modify-write runs under an fcntl lock on
`<slug>.json.lock`, so two sessions saving the same key keep each other's tests.
No pytest import here.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .figures import TestFigures
from .hardware import HardwareKey

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; atomic replace still protects the file itself
    fcntl = None  # type: ignore[assignment]

SCHEMA = 1
METRICS = ("rtf", "first_chunk_ms", "worst_gap_ms")
DEFAULT_DIRECTORY = "baselines"


class BaselineError(Exception):
    """A baseline file exists but is not one this version can use; never overwritten silently."""


@dataclass
class TestBaseline:
    nodeid: str
    rtf: list[float] = field(default_factory=list)
    first_chunk_ms: list[float] = field(default_factory=list)
    worst_gap_ms: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    cold: bool = False
    saved_at: str = ""
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rtf": self.rtf, "first_chunk_ms": self.first_chunk_ms,
                "worst_gap_ms": self.worst_gap_ms, "audio_s": self.audio_s, "cold": self.cold,
                "saved_at": self.saved_at, "commit": self.commit}


@dataclass
class Baseline:
    key: HardwareKey
    tests: dict[str, TestBaseline]
    path: Path
    updated_at: str = ""

    def samples(self, metric: str = "rtf") -> dict[str, list[float]]:
        """nodeid -> samples of one metric: the shape `drift.compare` takes."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        return {nodeid: list(getattr(t, metric)) for nodeid, t in self.tests.items()}

    def __contains__(self, nodeid: object) -> bool:
        return nodeid in self.tests


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _floats(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where} must be a list of numbers")
    return [float(v) for v in value]


class BaselineStore:
    """One JSON file per hardware key under `directory` (created on first save)."""

    def __init__(self, directory: str | Path = DEFAULT_DIRECTORY) -> None:
        self.directory = Path(directory)

    def path_for(self, key: HardwareKey) -> Path:
        return self.directory / f"{key.slug()}.json"

    def load(self, key: HardwareKey) -> Baseline | None:
        """The baseline for `key`, or None when this key has none yet."""
        path = self.path_for(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return self._parse(path, text, key)

    def save(self, key: HardwareKey, figures: list[TestFigures], commit: str | None = None) -> Path:
        """Merge `figures` into the key's baseline: tests given are replaced, others are kept.

        Tests without RTF samples (errored before measuring) are skipped: an empty baseline
        would only turn the next session's verdict into "new". Which tests deserve to become the
        baseline (e.g. only passed ones) is the caller's choice.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key)
        stamp = _now()
        with self._locked(path):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                tests: dict[str, TestBaseline] = {}
            else:
                try:
                    tests = self._parse(path, text, key).tests
                except BaselineError as exc:
                    raise BaselineError(f"{exc}\nRefusing to overwrite it: move {path} away "
                                        f"(or delete it) and save the baseline again.") from None
            for fig in figures:
                if not fig.rtf:
                    continue
                tests[fig.nodeid] = TestBaseline(
                    nodeid=fig.nodeid, rtf=[float(v) for v in fig.rtf],
                    first_chunk_ms=[float(v) for v in fig.first_chunk_ms],
                    worst_gap_ms=[float(v) for v in fig.worst_gap_ms],
                    audio_s=float(fig.audio_s), cold=bool(fig.cold), saved_at=stamp, commit=commit)
            doc = {"schema": SCHEMA, "key": key.to_dict(), "updated_at": stamp,
                   "tests": {n: tests[n].to_json() for n in sorted(tests)}}
            self._write_atomic(path, doc)
        return path

    # -- internals -----------------------------------------------------------------------

    def _parse(self, path: Path, text: str, key: HardwareKey) -> Baseline:
        expected = f"expected a pytest-cosyvoice baseline (JSON object with \"schema\": {SCHEMA})"
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BaselineError(f"{path}: not valid JSON ({exc}); {expected}") from None
        if not isinstance(doc, dict) or "schema" not in doc:
            raise BaselineError(f"{path}: no \"schema\" field; {expected}")
        if doc["schema"] != SCHEMA:
            raise BaselineError(f"{path}: unknown schema {doc['schema']!r}; {expected} - "
                                "written by a different pytest-cosyvoice version?")
        try:
            stored_key = HardwareKey.from_dict(doc.get("key") or {})
        except (ValueError, TypeError) as exc:
            raise BaselineError(f"{path}: bad \"key\" ({exc}); {expected}") from None
        if stored_key != key:
            diff = ", ".join(f"{k}: file has {v!r}, expected {key.to_dict()[k]!r}"
                             for k, v in stored_key.to_dict().items() if key.to_dict()[k] != v)
            raise BaselineError(f"{path}: holds the baseline of another hardware key ({diff})")
        raw_tests = doc.get("tests")
        if not isinstance(raw_tests, dict):
            raise BaselineError(f"{path}: \"tests\" must be an object of nodeid -> samples")
        tests: dict[str, TestBaseline] = {}
        try:
            for nodeid, entry in raw_tests.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"test {nodeid!r} must be an object")
                values = {m: _floats(entry.get(m, []), f"{nodeid} {m}") for m in METRICS}
                if any(not math.isfinite(v) for v in values["rtf"]):
                    raise ValueError(f"{nodeid} rtf has non-finite values")
                tests[nodeid] = TestBaseline(
                    nodeid=nodeid, **values, audio_s=float(entry.get("audio_s", 0.0)),
                    cold=bool(entry.get("cold", False)), saved_at=str(entry.get("saved_at", "")),
                    commit=entry.get("commit"))
        except (ValueError, TypeError) as exc:
            raise BaselineError(f"{path}: {exc}; {expected}") from None
        return Baseline(key=stored_key, tests=tests, path=path,
                        updated_at=str(doc.get("updated_at", "")))

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        # A separate lock file: the data file is replaced on every save, and a lock on a
        # replaced inode would not exclude the next writer.
        if fcntl is None:
            yield
            return
        with open(path.with_name(path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _write_atomic(path: Path, doc: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; baselines are shared and committed
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
