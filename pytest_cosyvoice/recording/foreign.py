"""What `cosy_tts` needs to record a FOREIGN engine: one whose `stream`/`synthesize` take no
`observer=` (most custom engines; this project's Runtime and its upstream engine both take one and
never meet this module). Such an engine tells nobody about its tokens or its threads, so they are
watched from outside, by one adapter installed once per engine for the session (`install` when
`cosy_tts` is first used with it, `uninstall` at the end of the session):

- tokens: `runtime.llm.inference` / `inference_bistream` are counted in the thread that generates them.
  The LLM object's class is swapped for a subclass whose two methods are data descriptors: reading one
  gives a counter around whatever is in place, and assigning one (a test's monkeypatch, an injected
  fault) replaces what runs behind the counter, so it is installed once and not per call.
- lineage: `threading.Thread.start` is wrapped so that every new thread notes the thread that started
  it; a token, a thread death or a thread left behind belongs to the call whose reader thread is its
  ancestor (the engine starts its LLM thread while serving the call, directly or further down).
- thread deaths: `threading.excepthook` is ours (chaining to the hook in place at install), because a
  foreign engine's producer may die silently (upstream's class does): only the hook hears of it.

Limits: `Thread.start` and `excepthook` are process-wide for as long as the adapter is installed, for
every thread of the process, not only the engine's (that is why the built-in engines take an observer
instead). A hook the test sets itself displaces ours while it is in place: thread deaths in that time
are not recorded. Threads started outside `threading` (C extensions), and threads that existed before
the call (a pool), have no lineage: their tokens go to the only call in flight, and with several in
flight they cannot be attributed (those calls' token counts are then not judged); their deaths go to
every call in flight. An engine that does not generate through the runtime's loaded `llm` (a copy, an
other method) is not counted at all.
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

COUNTED = ("inference", "inference_bistream")
_PARENT = "_cosy_tts_parent"     # the attribute a started thread keeps its starter in
_COUNTER = "_cosy_tts_counter"   # marks our counting wrappers (a user's functools.wraps has __wrapped__ too)


class Call(Protocol):
    """One call in flight, as the adapter reports to it (see `attribution.CallTrack`)."""

    reader: threading.Thread | None

    def llm_token(self, now: float) -> None: ...           # a token of this call
    def unattributed_token(self, now: float) -> None: ...  # a token no call could be named for
    def thread_died(self, text: str) -> None: ...


class _Slot:
    """A counted method of the swapped LLM class: a data descriptor, so that reading it on the instance
    gives the counter and assigning it replaces what runs behind the counter (see the module docstring).
    Read on the class it is the class's own method, as before the swap: the model reference times
    `type(llm).inference(llm, ...)` (uncounted, and not a test's stand-in on the instance)."""

    def __init__(self, name: str, cls: type, get: Callable[[Any], Any], set_: Callable[[Any, Any], None],
                 del_: Callable[[Any], None]) -> None:
        self._name, self._cls, self._get, self._set, self._del = name, cls, get, set_, del_

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return getattr(self._cls, self._name)    # AttributeError where the class has none, as before
        return self._get(obj)

    def __set__(self, obj: Any, value: Any) -> None:
        self._set(obj, value)

    def __delete__(self, obj: Any) -> None:
        self._del(obj)


class ForeignAdapter:
    """Token counting at the LLM, thread lineage and thread deaths for one foreign engine's calls."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._depth = threading.local()   # nesting of counters in this thread (see _counter)
        self._cls: type | None = None
        self._start: Callable[[threading.Thread], None] | None = None
        self._our_start: Callable[[threading.Thread], None] | None = None
        self._prev_hook: Callable[[threading.ExceptHookArgs], Any] | None = None

    # -- install once, uninstall at the end of the session -------------------------------------------
    def install(self) -> None:
        start = threading.Thread.start

        def start_noting_parent(thread: threading.Thread) -> None:
            setattr(thread, _PARENT, threading.current_thread())
            start(thread)
        self._start, self._our_start = start, start_noting_parent
        threading.Thread.start = start_noting_parent  # type: ignore[method-assign,assignment]  # see the docstring
        self._prev_hook = threading.excepthook
        threading.excepthook = self._thread_died
        self._install_counter()

    def uninstall(self) -> None:
        # Each is restored only where it is still ours: what someone set on top since stays theirs.
        if threading.Thread.start is self._our_start:
            threading.Thread.start = self._start  # type: ignore[method-assign,assignment]
        if threading.excepthook == self._thread_died:
            threading.excepthook = self._prev_hook  # type: ignore[assignment]
        if self._cls is not None and type(self._llm) is not self._cls:
            self._llm.__class__ = self._cls   # assignments made meanwhile stay in the instance dict
        self._cls = None

    def _install_counter(self) -> None:
        cls = type(self._llm)
        adapter = self

        def slot(name: str) -> _Slot:
            def get(obj: Any) -> Any:
                fn = obj.__dict__.get(name)
                if fn is None:
                    fn = getattr(super(counted_cls, obj), name)
                return adapter._counter(fn)

            def set_(obj: Any, fn: Any) -> None:
                # monkeypatch's undo assigns back what it read: our counter, not the method behind it.
                fn = getattr(fn, _COUNTER, fn)
                if fn == getattr(super(counted_cls, obj), name, None):
                    obj.__dict__.pop(name, None)
                else:
                    obj.__dict__[name] = fn

            def del_(obj: Any) -> None:
                if obj.__dict__.pop(name, None) is None:
                    raise AttributeError(name)
            return _Slot(name, cls, get, set_, del_)

        counted_cls = type(cls.__name__, (cls,), {
            name: slot(name) for name in COUNTED if hasattr(self._llm, name)})
        counted_cls.__qualname__ = cls.__qualname__
        self._cls = cls
        self._llm.__class__ = counted_cls

    def _counter(self, fn: Callable[..., Iterable[int]]) -> Callable[..., Iterator[int]]:
        depth = self._depth

        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Iterator[int]:
            it = iter(fn(*args, **kwargs))
            try:
                while True:
                    # A test's stand-in that calls the counted method inside (`real = llm.inference`)
                    # nests two counters in this thread: only the outermost counts a token.
                    level = getattr(depth, "n", 0)
                    depth.n = level + 1
                    try:
                        tok = next(it)
                    except StopIteration:
                        return
                    finally:
                        depth.n = level
                    if level == 0:
                        self._token()
                    yield tok
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # stop the LLM's generator now, as the runtime would without us
        setattr(counted, _COUNTER, fn)
        return counted

    # -- calls ----------------------------------------------------------------------------------------
    def begin(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def end(self, call: Call) -> None:
        with self._lock:
            if call in self._calls:
                self._calls.remove(call)

    @staticmethod
    def ancestor(thread: threading.Thread | None, among: Iterable[threading.Thread | None]) -> threading.Thread | None:
        """The nearest of `among` in the thread's lineage (the thread itself included)."""
        wanted = {id(t) for t in among if t is not None}
        while thread is not None:
            if id(thread) in wanted:
                return thread
            thread = getattr(thread, _PARENT, None)
        return None

    def _owner(self, thread: threading.Thread | None) -> tuple[list[Call], bool]:
        """(the calls a thread's event belongs to, whether it is attributed to one of them)."""
        with self._lock:
            calls = list(self._calls)
        reader = self.ancestor(thread, (c.reader for c in calls))
        if reader is not None:
            return [c for c in calls if c.reader is reader], True
        if len(calls) == 1:
            return calls, True
        return calls, False

    def _token(self) -> None:
        now = time.perf_counter()
        calls, attributed = self._owner(threading.current_thread())
        for call in calls:
            if attributed:
                call.llm_token(now)
            else:
                call.unattributed_token(now)

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        calls, _ = self._owner(args.thread)
        for call in calls:
            call.thread_died(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        # A hook that chains to ours after we were uninstalled still reaches Python's default report.
        (self._prev_hook or threading.__excepthook__)(args)
