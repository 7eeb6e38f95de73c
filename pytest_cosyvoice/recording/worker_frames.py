"""What the session and a base worker (base_worker.py, in another interpreter) say to each other.

Frames: an 8-byte big-endian length, then a pickle (protocol 4) of a dict of plain values. Only
builtins, `pathlib` paths and bytes cross: arrays travel as (dtype, shape, bytes) and a `Recording`
as its fields, so two interpreters with different Python, numpy or pytest-cosyvoice versions read
each other's frames (a numpy 2 pickle of an array does not load under numpy 1, and a recording
pickled by class breaks as soon as one side's `Recording` gains a field).

No pytest import here: the worker imports this module without pytest's plugin machinery.
"""
from __future__ import annotations

import pickle
import struct
from dataclasses import fields
from typing import IO, Any

import numpy as np

from ..judging.checks import Recording

HEADER = struct.Struct(">Q")
PROTOCOL = 4
# A length beyond this is not a frame of ours (bytes written past the frames): refused, not allocated.
MAX_FRAME = 1 << 34
_ARRAY = "__cosy_ndarray__"


class FrameError(Exception):
    """A stream that does not hold frames of ours (truncated mid-frame, or an absurd length)."""


def encode_frame(message: dict[str, Any]) -> bytes:
    """The frame's bytes (pickling errors raise here, before anything is written)."""
    data = pickle.dumps(message, protocol=PROTOCOL)
    return HEADER.pack(len(data)) + data


def write_frame(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(encode_frame(message))
    out.flush()


def read_frame(inp: IO[bytes]) -> dict[str, Any] | None:
    """The next frame; None at a clean end of the stream (between frames)."""
    head = _read_exactly(inp, HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise FrameError(f"the stream ended inside a frame header ({len(head)} of {HEADER.size} bytes)")
    (n,) = HEADER.unpack(head)
    if n > MAX_FRAME:
        raise FrameError(f"a frame length of {n} bytes: not a frame of the base worker's protocol")
    data = _read_exactly(inp, n)
    if len(data) < n:
        raise FrameError(f"the stream ended inside a frame ({len(data)} of {n} bytes)")
    message = pickle.loads(data)
    if not isinstance(message, dict):
        raise FrameError(f"a frame holds a {type(message).__name__}, not a message")
    return message


def _read_exactly(inp: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = inp.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def to_wire(value: Any) -> Any:
    """`value` with every numpy array and scalar (nested in dicts, lists, tuples) made plain."""
    if isinstance(value, np.ndarray):
        return {_ARRAY: (value.dtype.str, tuple(value.shape), np.ascontiguousarray(value).tobytes())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_wire(v) for v in value)
    return value


def from_wire(value: Any) -> Any:
    """The inverse of `to_wire` (arrays come back writable, as the engine handed them over)."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            dtype, shape, data = value[_ARRAY]
            return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
        return {k: from_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_wire(v) for v in value)
    return value


def recording_to_wire(rec: Recording) -> dict[str, Any]:
    return {f.name: to_wire(getattr(rec, f.name)) for f in fields(rec)}


def recording_from_wire(data: dict[str, Any]) -> Recording:
    """The recording the worker made. Fields this side's `Recording` lacks are dropped and fields the
    worker's lacks keep their defaults: the two sides may run different pytest-cosyvoice versions."""
    known = {f.name for f in fields(Recording)}
    return Recording(**{k: from_wire(v) for k, v in data.items() if k in known})
