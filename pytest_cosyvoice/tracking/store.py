"""The skeleton the baseline and golden stores share: one JSON document per run key, read as UTF-8,
checked for its schema and its key, and rewritten under an exclusive lock on a file of its own.

A subclass says what its document is (`what`, `schema`, its error class and the words that tell how
to re-save) and parses the document's body; the errors are worded here, the same way for both stores:
the file named, what is wrong with it, and what was expected. A file that cannot be used is never
overwritten: `update` reads and checks it under the lock before the caller writes anything.
No pytest import here.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cosyvoice_runtime.files import locked

from .runkey import RunKey

__all__ = ["KeyedStore", "StoreError", "now", "os_reason"]

T = TypeVar("T")


class StoreError(Exception):
    """A stored file exists but cannot be used (missing, corrupt, truncated, foreign, another schema or
    key): the message names the file. Never overwritten silently."""


def now() -> str:
    # Microseconds: the session id of a save, unique even for saves within one second.
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def os_reason(e: OSError) -> str:
    return f"{type(e).__name__}: {e.strerror or e}"


class KeyedStore:
    """One document per run key under `directory`. Subclasses set the class attributes below."""

    error: ClassVar[type[StoreError]] = StoreError
    kind: ClassVar[str] = "file"        # "baseline", "goldens": what is saved
    what: ClassVar[str] = "file"        # "baseline", "goldens index": the document read
    schema: ClassVar[int] = 1
    resave: ClassVar[str] = ""          # what to do about a file that cannot be used

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def expected(self) -> str:
        return f"expected a pytest-cosyvoice {self.what} (JSON object with \"schema\": {self.schema})"

    def read(self, path: Path) -> str | None:
        """The document's text; None when there is none yet."""
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as e:
            raise self.error(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected a "
                             f"pytest-cosyvoice {self.what} (JSON); move it away") from None
        except OSError as e:
            raise self.error(f"{path}: cannot read the {self.what} ({os_reason(e)})") from None

    def header(self, path: Path, text: str, key: RunKey) -> dict[str, Any]:
        """The document as a dict, once its JSON, schema and key are checked."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.error(f"{path}: not valid JSON ({exc}); {self.expected}") from None
        if not isinstance(doc, dict) or "schema" not in doc:
            raise self.error(f"{path}: no \"schema\" field; {self.expected}")
        self.check_schema(path, doc["schema"])
        try:
            stored = RunKey.from_dict(doc.get("key") or {})
        except (ValueError, TypeError) as exc:
            raise self.error(f"{path}: bad \"key\" ({exc}); {self.expected}") from None
        if stored != key:
            want = key.to_dict()
            diff = ", ".join(f"{k}: file has {v!r}, expected {want[k]!r}"
                             for k, v in stored.to_dict().items() if want[k] != v)
            raise self.error(f"{path}: holds the {self.kind} of another key ({diff})")
        return doc

    def check_schema(self, path: Path, schema: Any) -> None:
        if schema != self.schema:
            raise self.error(f"{path}: unknown schema {schema!r}; {self.expected} - written by a different "
                             "pytest-cosyvoice version?")

    @contextlib.contextmanager
    def update(self, path: Path, folder: Path) -> Iterator[None]:
        """The read-modify-write of `path`: `folder` made, an exclusive lock on `<path>.lock` held (a lock
        file of its own: the data is replaced on every save, and a lock on a replaced inode would not
        exclude the next writer), and an OSError named."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self.error(f"{folder}: cannot create the {self.kind} folder ({os_reason(e)})") from None
        try:
            with locked(path.with_name(path.name + ".lock")):
                yield
        except OSError as e:
            raise self.error(f"{path}: cannot write the {self.kind} ({os_reason(e)})") from None

    def reread(self, load: Callable[[], T]) -> T:
        """`load()` of the stored document inside `update`: a file that cannot be used is refused with
        `resave` added, and the caller writes nothing."""
        try:
            return load()
        except self.error as exc:
            raise self.error(f"{exc}\nRefusing to overwrite it: {self.resave}.") from None
