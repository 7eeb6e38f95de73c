"""Baselines: the samples a known-good session measured, one JSON file per runner and configuration.

File layout (`<directory>/<runner>/<config slug>.json`, see `runkey.RunKey`)::

    {"schema": 2,
     "key": {...RunKey.to_dict()...},
     "updated_at": "2026-11-25T12:00:00+00:00",
     "sessions": {"<saved_at>": {"commit": "<sha or null>", "stack": {...}, "health": {...}}},
     "tests": {"<nodeid>": {"rtf": [...], "first_chunk_ms": [...], "worst_gap_ms": [...],
                            "audio_s": 3.2, "cold": false, "session": "<saved_at>"}}}

Each save records its session (stack: torch, CUDA, driver...; health: the calibration workload's
timings and the contention seen), and its tests point to it; tests replaced by later saves drop
sessions nobody points to. Schema 1 files (keyed by device name and torch version, at
`<directory>/<slug>.json`) are not migrated: their key cannot say which host measured them. They
are reported with how to re-save, and never overwritten.

Reading, the schema and key checks, the errors' wording and the locked read-modify-write are the
stores' shared skeleton (store.KeyedStore): writes go to a temporary file in the same directory
followed by os.replace, so a crash or a parallel reader never sees half a file, under an exclusive
lock on `<file>.lock`, so two sessions saving the same key keep each other's tests.
No pytest import here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosyvoice_runtime.files import atomic_write

from ..judging.measurements import TestFigures
from .health import Health
from .runkey import RunKey
from .store import KeyedStore, StoreError, now

SCHEMA = 2
METRICS = ("rtf", "first_chunk_ms", "worst_gap_ms")
DEFAULT_DIRECTORY = "baselines"
RESAVE = ("re-save it with --cosy-save-baseline on a known-good commit on this runner "
          "(the old file is left as it is; delete it afterwards)")


class BaselineError(StoreError):
    """A baseline file exists but is not one this version can use; never overwritten silently."""


@dataclass
class TestBaseline:
    """One test's stored samples and the saving session they came from."""

    __test__ = False  # data, not a test class: a user's suite that imports it gets no collection warning
    nodeid: str
    rtf: list[float] = field(default_factory=list)
    first_chunk_ms: list[float] = field(default_factory=list)
    worst_gap_ms: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    cold: bool = False
    session: str = ""               # the saving session's id (its saved_at time)

    def to_json(self) -> dict[str, Any]:
        return {"rtf": self.rtf, "first_chunk_ms": self.first_chunk_ms,
                "worst_gap_ms": self.worst_gap_ms, "audio_s": self.audio_s, "cold": self.cold,
                "session": self.session}


@dataclass
class SavedSession:
    """What a save recorded about the session that measured the samples."""

    saved_at: str
    commit: str | None = None
    stack: dict[str, str] = field(default_factory=dict)
    health: Health = field(default_factory=Health)

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "stack": self.stack, "health": self.health.to_json()}


@dataclass
class Baseline:
    key: RunKey
    tests: dict[str, TestBaseline]
    path: Path
    updated_at: str = ""
    sessions: dict[str, SavedSession] = field(default_factory=dict)

    def session_of(self, nodeid: str) -> SavedSession | None:
        t = self.tests.get(nodeid)
        return self.sessions.get(t.session) if t else None

    def latest(self) -> SavedSession | None:
        return self.sessions[max(self.sessions)] if self.sessions else None

    def samples(self, metric: str = "rtf") -> dict[str, list[float]]:
        """nodeid -> samples of one metric: the shape `drift.compare` takes."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        return {nodeid: list(getattr(t, metric)) for nodeid, t in self.tests.items()}


def _floats(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where} must be a list of numbers")
    return [float(v) for v in value]


class BaselineStore(KeyedStore):
    """One JSON file per runner and configuration under `directory` (created on first save)."""

    error = BaselineError
    kind = what = "baseline"
    schema = SCHEMA
    resave = "move the file away (or delete it) and save the baseline again"

    def __init__(self, directory: str | Path = DEFAULT_DIRECTORY) -> None:
        super().__init__(directory)

    def path_for(self, key: RunKey) -> Path:
        return self.directory / key.runner / f"{key.config_slug()}.json"

    def load(self, key: RunKey) -> Baseline | None:
        """The baseline for `key`, or None when this key has none yet; BaselineError naming the file
        when it cannot be read or is not a baseline of this key and schema."""
        path = self.path_for(key)
        text = self.read(path)
        return None if text is None else self._parse(path, text, key)

    def runners(self) -> list[str]:
        """Runner names that have baselines here (for the 'no baseline for runner X' message)."""
        try:
            return sorted(p.name for p in self.directory.iterdir() if p.is_dir() and any(p.glob("*.json")))
        except OSError:
            return []

    def legacy_files(self) -> list[Path]:
        """Schema-1 files (`<directory>/<slug>.json`): not usable, reported so nobody wonders."""
        try:
            candidates = sorted(self.directory.glob("*.json"))
        except OSError:
            return []
        out = []
        for p in candidates:
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                out.append(p)   # unreadable at the top level: not one of ours either way
                continue
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
                out.append(p)
        return out

    def save(self, key: RunKey, figures: list[TestFigures], *, commit: str | None = None,
             stack: dict[str, str] | None = None, health: Health | None = None) -> Path:
        """Merge `figures` into the key's baseline: tests given are replaced, others are kept.

        Tests without RTF samples (errored before measuring) are skipped: an empty baseline
        would only turn the next session's verdict into "new". Which tests deserve to become the
        baseline (e.g. only passed ones) is the caller's choice.
        """
        path = self.path_for(key)
        stamp = now()
        with self.update(path, path.parent):
            text = self.read(path)
            if text is None:
                tests: dict[str, TestBaseline] = {}
                sessions: dict[str, SavedSession] = {}
            else:
                old = self.reread(lambda: self._parse(path, text, key))
                tests, sessions = old.tests, old.sessions
            for fig in figures:
                if not fig.rtf:
                    continue
                tests[fig.nodeid] = TestBaseline(
                    nodeid=fig.nodeid, rtf=[float(v) for v in fig.rtf],
                    first_chunk_ms=[float(v) for v in fig.first_chunk_ms],
                    worst_gap_ms=[float(v) for v in fig.worst_gap_ms],
                    audio_s=float(fig.audio_s), cold=bool(fig.cold), session=stamp)
            sessions[stamp] = SavedSession(stamp, commit, dict(stack or {}), health or Health())
            used = {t.session for t in tests.values()}
            doc = {"schema": SCHEMA, "key": key.to_dict(), "updated_at": stamp,
                   "sessions": {k: sessions[k].to_json() for k in sorted(sessions) if k in used},
                   "tests": {n: tests[n].to_json() for n in sorted(tests)}}
            atomic_write(path, json.dumps(doc, indent=1) + "\n")
        return path

    # -- internals -----------------------------------------------------------------------

    def check_schema(self, path: Path, schema: Any) -> None:
        if schema == 1:
            raise BaselineError(f"{path}: a schema-1 baseline, keyed by device name, which cannot tell two "
                                f"hosts apart; {RESAVE}")
        super().check_schema(path, schema)

    def _parse(self, path: Path, text: str, key: RunKey) -> Baseline:
        doc = self.header(path, text, key)
        stored_key = RunKey.from_dict(doc["key"])
        expected = self.expected
        raw_tests, raw_sessions = doc.get("tests"), doc.get("sessions", {})
        if not isinstance(raw_tests, dict) or not isinstance(raw_sessions, dict):
            raise BaselineError(f"{path}: \"tests\" and \"sessions\" must be objects; {expected}")
        tests: dict[str, TestBaseline] = {}
        sessions: dict[str, SavedSession] = {}
        try:
            for sid, entry in raw_sessions.items():
                if not isinstance(entry, dict) or not isinstance(entry.get("stack", {}), dict):
                    raise ValueError(f"session {sid!r} must be an object with a \"stack\" object")
                sessions[sid] = SavedSession(sid, entry.get("commit"),
                                             {str(k): str(v) for k, v in entry.get("stack", {}).items()},
                                             Health.from_json(entry.get("health", {})))
            for nodeid, entry in raw_tests.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"test {nodeid!r} must be an object")
                values = {m: _floats(entry.get(m, []), f"{nodeid} {m}") for m in METRICS}
                if any(not math.isfinite(v) for v in values["rtf"]):
                    raise ValueError(f"{nodeid} rtf has non-finite values")
                tests[nodeid] = TestBaseline(
                    nodeid=nodeid, **values, audio_s=float(entry.get("audio_s", 0.0)),
                    cold=bool(entry.get("cold", False)), session=str(entry.get("session", "")))
        except (ValueError, TypeError, KeyError) as exc:
            raise BaselineError(f"{path}: {exc}; {expected}") from None
        return Baseline(key=stored_key, tests=tests, path=path, updated_at=str(doc.get("updated_at", "")),
                        sessions=sessions)

