"""Golden outputs: what a known-good session's quality tests produced, kept to compare later sessions with
(issue 18). One folder per runner and configuration, beside that key's baseline JSON::

    <directory>/<runner>/<config slug>.goldens/
        index.json          {"schema": 1, "key": {...RunKey...}, "updated_at": "...",
                             "tests": {"<nodeid>": {"file": "<16 hex>.npz", "sha256": "<of the npz>",
                                                    "bytes": 1234, "notes": [...],
                                                    "scores": {"dnsmos": [...], ...},
                                                    "calls": [{"label", "kind", "seed", "sample_rate",
                                                               "tokens", "text", "note",
                                                               "arrays": {"audio": {"sha256", "length"},
                                                                          "rendered": {...}}}]}}}
        <16 hex>.npz        one per test (sha256 of its node id): float32 arrays "c<i>_audio",
                            "c<i>_rendered", and "nodeid" (the test it belongs to)

The npz files are written with numpy's `savez_compressed` and read with `allow_pickle=False` (text only
as a unicode array, never an object). The index records each file's sha256 and each array's sha256 and
length, so a truncated, edited or swapped file is named on load instead of compared as if it were golden.

A save replaces the calls of the tests it is given (this session's outputs are the new goldens) and appends
their scores (one sample per saved clean session and metric, newest last, at most `MAX_SCORES` kept: the
MOS/WER/SIM limits are calibrated from them); other tests are kept. Before writing, a save reads the whole
store as a load would: a file it cannot read is reported, never replaced. Writes are atomic (temporary file
+ os.replace) under an exclusive lock on `<folder>.lock`; reading the index, its schema and key checks
and the errors' wording are the baseline store's (store.KeyedStore).

Sizes are bounded: audio longer than `MAX_CALL_SECONDS` is not stored (its tokens are; the call says so),
at most `MAX_CALLS_PER_TEST` calls a test (the first ones; the test says so), and `MAX_STORE_BYTES` per run
key (a save that would exceed it is refused, naming the size). No pytest import here.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cosyvoice_runtime.audio import audio_bytes
from cosyvoice_runtime.files import atomic_write

from ..judging.figures import figure_from_json, figure_to_json
from .golden_outputs import (
    MAX_CALL_SECONDS,
    MAX_CALLS_PER_TEST,
    MAX_SCORES,
    GoldenCall,
    GoldenError,
    Goldens,
    GoldenTest,
    bounded,
)
from .runkey import RunKey
from .store import KeyedStore, now, os_reason

SCHEMA = 1
INDEX = "index.json"
MAX_STORE_BYTES = 64 * 1024 * 1024
ARRAYS = ("audio", "rendered")

__all__ = ["MAX_CALLS_PER_TEST", "MAX_CALL_SECONDS", "MAX_SCORES", "MAX_STORE_BYTES", "GoldenCall", "GoldenError",
           "GoldenStore", "GoldenTest", "Goldens"]


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_name(nodeid: str) -> str:
    """The npz file of a test: node ids hold characters no file system takes, and can be long."""
    return hashlib.sha256(nodeid.encode("utf-8")).hexdigest()[:16] + ".npz"


class GoldenStore(KeyedStore):
    """Golden folders per runner and configuration under `directory` (the baselines' directory)."""

    error = GoldenError
    kind = "goldens"
    what = "goldens index"
    schema = SCHEMA
    resave = "move the goldens folder away (or delete it) and save again with --cosy-save-baseline"

    def __init__(self, directory: str | Path, *, max_bytes: int = MAX_STORE_BYTES) -> None:
        super().__init__(directory)
        self.max_bytes = max_bytes

    def path_for(self, key: RunKey) -> Path:
        return self.directory / key.runner / f"{key.config_slug()}.goldens"

    def load(self, key: RunKey) -> Goldens | None:
        """The goldens of `key`, or None when the key has none yet (no folder or no index.json);
        GoldenError naming the file when any of its files cannot be used."""
        folder = self.path_for(key)
        index = self.read(folder / INDEX)
        return None if index is None else self._parse(folder, index, key)

    def save(self, key: RunKey, tests: list[GoldenTest], stack: dict[str, str] | None = None) -> Path:
        """Store `tests` as the key's goldens: their calls replace the stored ones, their scores are appended
        (at most MAX_SCORES kept a metric); other stored tests are kept. Returns the folder."""
        folder = self.path_for(key)
        with self.update(folder, folder):     # the lock: `<folder>.lock`, beside it
            index = self.read(folder / INDEX)
            stored: dict[str, GoldenTest] = {}
            if index is not None:
                stored = self.reread(lambda: self._parse(folder, index, key)).tests
            merged = dict(stored)
            for t in tests:
                old = stored.get(t.nodeid)
                scores = {k: list(v) for k, v in (old.scores if old else {}).items()}
                for name, values in t.scores.items():
                    scores[name] = (scores.get(name, []) + [float(v) for v in values])[-MAX_SCORES:]
                merged[t.nodeid] = bounded(GoldenTest(t.nodeid, list(t.calls), scores, list(t.notes)))
            # Every file in memory first: the size bound is checked before anything is written.
            blobs = {n: _npz(t) for n, t in merged.items()}
            doc = {"schema": SCHEMA, "key": key.to_dict(), "updated_at": now(), "stack": dict(stack or {}),
                   "tests": {n: _index_entry(merged[n], blobs[n]) for n in sorted(merged)}}
            text = json.dumps(doc, indent=1) + "\n"
            total = sum(len(b) for b in blobs.values()) + len(text.encode("utf-8"))
            if total > self.max_bytes:
                raise GoldenError(f"{folder}: the goldens would take {_size(total)}, over the "
                                  f"{_size(self.max_bytes)} bound per run key: fewer or shorter quality "
                                  f"tests; nothing was written")
            for nodeid, blob in blobs.items():
                target = folder / file_name(nodeid)
                if nodeid in stored and not _changed(target, blob):
                    continue
                atomic_write(target, blob)
            # The index last: until it is replaced, the old index still describes old files it can
            # detect as changed (sha256), never new files it would take for its own.
            atomic_write(folder / INDEX, text)
        return folder

    # -- internals -----------------------------------------------------------------------

    def _parse(self, folder: Path, text: str, key: RunKey) -> Goldens:
        path = folder / INDEX
        doc = self.header(path, text, key)
        expected = self.expected
        raw = doc.get("tests")
        if not isinstance(raw, dict):
            raise GoldenError(f"{path}: \"tests\" must be an object; {expected}")
        tests: dict[str, GoldenTest] = {}
        for nodeid, entry in raw.items():
            try:
                meta = _parse_entry(nodeid, entry)
            except (ValueError, TypeError, KeyError) as exc:
                raise GoldenError(f"{path}: test {nodeid!r}: {exc}; {expected}") from None
            tests[nodeid] = self._read_test(folder, nodeid, meta)
        stack = doc.get("stack") or {}
        if not isinstance(stack, dict):
            raise GoldenError(f"{path}: \"stack\" must be an object; {expected}")
        return Goldens(key=key, tests=tests, path=folder, updated_at=str(doc.get("updated_at", "")),
                       stack={str(k): str(v) for k, v in stack.items()})

    @staticmethod
    def _read_test(folder: Path, nodeid: str, meta: dict[str, Any]) -> GoldenTest:
        path = folder / meta["file"]
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise GoldenError(f"{path}: missing - {INDEX} lists it for {nodeid!r}") from None
        except OSError as e:
            raise GoldenError(f"{path}: cannot read the golden outputs ({os_reason(e)})") from None
        arrays = _open_npz(path, blob)
        owner = arrays.get("nodeid")
        owner_id = str(owner.item()) if owner is not None and owner.dtype.kind == "U" and owner.ndim == 0 else None
        if owner_id != nodeid:
            raise GoldenError(f"{path}: holds the golden outputs of {owner_id!r}, not of {nodeid!r} "
                              f"(a file copied from another test or store?)")
        if _sha256(blob) != meta["sha256"] or len(blob) != meta["bytes"]:
            raise GoldenError(f"{path}: {len(blob)} bytes with sha256 {_sha256(blob)[:12]}..., {INDEX} recorded "
                              f"{meta['bytes']} bytes with {meta['sha256'][:12]}... (truncated or modified)")
        calls = []
        for i, c in enumerate(meta["calls"]):
            values: dict[str, np.ndarray | None] = {}
            for name in ARRAYS:
                want = c["arrays"].get(name)
                if want is None:
                    values[name] = None
                    continue
                member = f"c{i}_{name}"
                a = arrays.get(member)
                if a is None:
                    raise GoldenError(f"{path}: no array {member!r} ({INDEX} lists {name} for call {c['label']!r})")
                if a.dtype != np.float32 or a.ndim != 1 or a.size != want["length"] \
                        or _sha256(audio_bytes(a)) != want["sha256"]:
                    raise GoldenError(f"{path}: array {member!r} is {a.dtype} of shape {a.shape}, {INDEX} "
                                      f"recorded float32 of {want['length']} samples with sha256 "
                                      f"{want['sha256'][:12]}...")
                values[name] = a
            calls.append(GoldenCall(label=c["label"], kind=c["kind"], seed=c["seed"], sample_rate=c["sample_rate"],
                                    tokens=c["tokens"], audio=values["audio"], rendered=values["rendered"],
                                    text=c["text"], note=c["note"], reference_snr=c["reference_snr"]))
        return GoldenTest(nodeid, calls, meta["scores"], meta["notes"])


def _open_npz(path: Path, blob: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        # numpy names a non-zip file "cannot load file containing pickled data" (allow_pickle=False) or
        # an OSError; a cut zip is a BadZipFile or a zlib error (OSError / ValueError) or an EOFError.
        raise GoldenError(f"{path}: not a readable npz ({type(exc).__name__}: {exc}); truncated or not a "
                          f"pytest-cosyvoice golden file") from None


def _changed(path: Path, blob: bytes) -> bool:
    try:
        return path.read_bytes() != blob
    except OSError:
        return True


def _npz(t: GoldenTest) -> bytes:
    arrays: dict[str, np.ndarray] = {"nodeid": np.array(t.nodeid)}
    for i, c in enumerate(t.calls):
        for name in ARRAYS:
            a = getattr(c, name)
            if a is not None:
                arrays[f"c{i}_{name}"] = np.ascontiguousarray(a, dtype="<f4").reshape(-1)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _index_entry(t: GoldenTest, blob: bytes) -> dict[str, Any]:
    calls = []
    for c in t.calls:
        arrays = {}
        for name in ARRAYS:
            a = getattr(c, name)
            if a is not None:
                data = audio_bytes(a)
                arrays[name] = {"sha256": _sha256(data), "length": len(data) // 4}
        calls.append({"label": c.label, "kind": c.kind, "seed": c.seed, "sample_rate": c.sample_rate,
                      "tokens": c.tokens, "text": c.text, "note": c.note, "arrays": arrays,
                      "reference_snr": figure_to_json(c.reference_snr)})
    return {"file": file_name(t.nodeid), "sha256": _sha256(blob), "bytes": len(blob), "notes": t.notes,
            "scores": t.scores, "calls": calls}


def _parse_entry(nodeid: str, entry: Any) -> dict[str, Any]:
    """The index's record of one test, checked field by field (ValueError/TypeError/KeyError naming it)."""
    if not isinstance(entry, dict):
        raise ValueError("must be an object")
    if entry["file"] != file_name(nodeid):
        raise ValueError(f"file {entry['file']!r}, expected {file_name(nodeid)!r}")
    scores = {}
    for name, values in dict(entry.get("scores", {})).items():
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and math.isfinite(v) for v in values):
            raise ValueError(f"scores {name!r} must be a list of finite numbers")
        scores[str(name)] = [float(v) for v in values]
    calls = []
    for c in entry["calls"]:
        tokens = c["tokens"]
        if tokens is not None and not (isinstance(tokens, list) and all(isinstance(t, int) for t in tokens)):
            raise ValueError(f"call {c.get('label')!r}: tokens must be a list of whole numbers or null")
        arrays = {}
        for name, a in dict(c["arrays"]).items():
            if name not in ARRAYS:
                raise ValueError(f"call {c.get('label')!r}: unknown array {name!r}")
            arrays[name] = {"sha256": str(a["sha256"]), "length": int(a["length"])}
        seed = c["seed"]
        calls.append({"label": str(c["label"]), "kind": str(c["kind"]), "seed": None if seed is None else int(seed),
                      "sample_rate": int(c["sample_rate"]), "tokens": tokens,
                      "text": None if c["text"] is None else str(c["text"]), "note": str(c.get("note", "")),
                      "arrays": arrays, "reference_snr": figure_from_json(c.get("reference_snr"), "reference_snr")})
    return {"file": str(entry["file"]), "sha256": str(entry["sha256"]), "bytes": int(entry["bytes"]),
            "notes": [str(n) for n in entry.get("notes", [])], "scores": scores, "calls": calls}
