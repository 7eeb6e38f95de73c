"""The engine under test: what `cosy_tts` calls, selected by `--cosy-engine`.

    fixed                  this project's Runtime (the loaded model itself)
    upstream               the installed `cosyvoice.cli.model` class driving the Runtime's components
    package.module:factory `factory(runtime)` builds any object that follows `Engine`

The faults and the token count are injected at the loaded components (`runtime.llm`, `runtime.flow`,
`runtime.hift`), so an engine should drive those objects, not copies of them.
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime

FIXED = "fixed"          # this project's Runtime, the default
UPSTREAM = "upstream"    # the installed upstream orchestration class
BUILTIN = (FIXED, UPSTREAM)
FACTORY_FORM = "package.module:factory"   # how a team names its own engine
FACTORY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# What every engine must offer; `active_requests` (requests whose state is still held) is optional:
# where an engine has it, the suites require it back at 0 after every call.
MEMBERS = ("stream", "synthesize", "sample_rate", "version")
CALLABLE = ("stream", "synthesize")


@runtime_checkable
class Engine(Protocol):
    """`stream` yields chunks and `synthesize` returns one result, both called with the Runtime's
    keyword arguments (`speaker=`, `prompt_wav=`, `prompt_text=`, `instruct=`, `source_wav=`, `speed=`).

    A chunk has `.audio` (1-D float32 samples at `sample_rate`) and `.tokens` (speech tokens it newly
    covers: the complete check compares their sum with the tokens counted at the LLM); a result has
    `.audio`, `.chunks` and `.stats.tokens`. Errors may be of any type; a stream must end (or raise)
    when its producer dies, or the watchdog fails the test.

    Optional: where `stream`/`synthesize` name an `observer=` parameter, `cosy_tts` passes a
    `cosyvoice_runtime.StreamObserver` per call and counts that call's tokens from its `on_tokens`;
    otherwise it counts them at `runtime.llm.inference`. Where they name `stall_timeout_s=`, the test's
    stall timeout (`--cosy-stall-timeout`, `@pytest.mark.stall_timeout`) is passed per call; otherwise
    the engine keeps its own and only the watchdog applies the test's. `**kwargs` alone counts as
    neither (see `recording.calls.accepts`). The Runtime names both.
    """

    sample_rate: int      # Hz of the audio it returns
    version: int          # CosyVoice model generation (1, 2, 3)

    # Read-only callables rather than methods: an engine's own signature (keyword-only arguments, as
    # the Runtime's) satisfies them; `stream(text, **kwargs) -> Iterator[chunk]`, `synthesize(...) -> result`.
    @property
    def stream(self) -> Callable[..., Iterator[Any]]: ...

    @property
    def synthesize(self) -> Callable[..., Any]: ...


class EngineError(Exception):
    """A `--cosy-engine` value that does not give an engine; the message says what is wrong (the
    caller names the value and where it came from)."""


class EngineUnavailable(Exception):
    """The built-in upstream engine cannot drive this model here (tests using it are skipped)."""


def is_factory(value: str) -> bool:
    return bool(FACTORY_RE.match(value))


def load_factory(value: str) -> Callable[[Runtime], Any]:
    """The callable named by 'package.module:factory' (attributes may be dotted: 'mod:Class.build')."""
    module_name, _, attr = value.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's to see
        raise EngineError(f"module {module_name!r} does not import: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise EngineError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise EngineError(f"{attr!r} is a {type(obj).__name__}, expected a callable factory(runtime)")
    factory: Callable[[Runtime], Any] = obj
    return factory


def missing_members(obj: Any) -> list[str]:
    """The protocol members `obj` lacks (or has but cannot call), in protocol order."""
    out = []
    for name in MEMBERS:
        try:
            member = getattr(obj, name)
        except Exception:  # noqa: BLE001 - a property that raises counts as missing
            out.append(name)
            continue
        if name in CALLABLE and not callable(member):
            out.append(f"{name} (not callable)")
    return out


def build(value: str, runtime: Runtime) -> Engine:
    """The engine `value` names, built over the loaded `runtime`.

    EngineError: a factory that does not import, raises, or returns an object missing protocol members.
    EngineUnavailable: the installed upstream class cannot drive this model.
    """
    if value == FIXED:
        return runtime
    if value == UPSTREAM:
        from cosyvoice_runtime.upstream import UpstreamEngine, UpstreamUnavailable

        try:
            return UpstreamEngine(runtime)
        except UpstreamUnavailable as e:
            raise EngineUnavailable(f"--cosy-engine upstream: the installed upstream class is unusable: {e}") from e
    factory = load_factory(value)
    try:
        engine = factory(runtime)
    except Exception as e:
        raise EngineError(f"the factory raised {type(e).__name__}: {e}") from e
    missing = missing_members(engine)
    if missing:
        raise EngineError(f"the factory returned a {type(engine).__name__} that lacks "
                          f"{', '.join(missing)} (an engine needs {', '.join(MEMBERS)})")
    checked: Engine = engine  # it has the protocol members (checked above)
    return checked
