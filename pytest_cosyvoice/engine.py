"""The engine under test: what `cosy_tts` calls, selected by `--cosy-engine`.

    fixed                  this project's Runtime (the loaded model itself)
    upstream               the installed `cosyvoice.cli.model` class driving the Runtime's components
    package.module:factory `factory(runtime)` builds any object that follows `Engine`

The faults and the token count are injected at the loaded components (`runtime.llm`, `runtime.flow`,
`runtime.hift`), so an engine should drive those objects, not copies of them.
"""
from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
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
# Where an engine declares its optional abilities (see `EngineAbilities`).
DECLARATION = "cosy_abilities"


@runtime_checkable
class Engine(Protocol):
    """`stream` yields chunks and `synthesize` returns one result, both called with the Runtime's
    keyword arguments (`speaker=`, `prompt_wav=`, `prompt_text=`, `instruct=`, `source_wav=`, `speed=`).

    A chunk has `.audio` (1-D float32 samples at `sample_rate`) and `.tokens` (speech tokens it newly
    covers: the complete check compares their sum with the tokens counted at the LLM); a result has
    `.audio`, `.chunks` and `.stats.tokens`. Errors may be of any type; a stream must end (or raise)
    when its producer dies, or the watchdog fails the test.

    Optional abilities are DECLARED (`EngineAbilities`): an attribute `cosy_abilities`, a mapping of
    ability names to True/False (or an `EngineAbilities`); names left out are False. A wrapper whose
    `__getattr__` hands attributes on to the engine it wraps inherits that engine's declaration (the
    Runtime declares everything: a pass-through wrapper is then driven exactly as the Runtime is); a
    wrapper that takes less declares its own (`cosy_abilities = {}` for none). The call abilities:

    * `observer`: `cosy_tts` passes a `cosyvoice_runtime.StreamObserver` per call (`observer=`) and
      counts that call's tokens from its `on_tokens`; otherwise it counts them at `runtime.llm.inference`
      (`recording.foreign`, process-wide patches for the session);
    * `stall_timeout`: the test's stall timeout (`--cosy-stall-timeout`, `@pytest.mark.stall_timeout`)
      is passed per call as `stall_timeout_s=`; otherwise the engine keeps its own and only the
      watchdog applies the test's;
    * `seed`: a call's seed is passed per request as `seed=` (the quality gate's, an A/B pair's);
      otherwise an A/B pair seeds torch's global generator instead, and the quality gate none.

    Each is passed only where the method's signature can take it (it names the keyword, or has
    `**kwargs`). The members: `render`, `score_tokens` (the quality gate's token2wav and token-rank
    checks, with the Runtime's signatures) and `speaker_embedding` (its speaker similarity).

    An engine that declares nothing is read from its signatures instead: a keyword is passed to the
    method that names it (`**kwargs` alone counts as none: an engine that swallows unknown keywords
    must not be handed `observer=`), a member counts where it is callable. The Runtime declares all
    six; the upstream engine `observer` only.
    """

    sample_rate: int      # Hz of the audio it returns
    version: int          # CosyVoice model generation (1, 2, 3)

    # Read-only callables rather than methods: an engine's own signature (keyword-only arguments, as
    # the Runtime's) satisfies them; `stream(text, **kwargs) -> Iterator[chunk]`, `synthesize(...) -> result`.
    @property
    def stream(self) -> Callable[..., Iterator[Any]]: ...

    @property
    def synthesize(self) -> Callable[..., Any]: ...


ABILITIES = ("seed", "observer", "stall_timeout", "render", "score_tokens", "speaker_embedding")
# The call abilities and the keyword each is passed as.
KEYWORDS = {"seed": "seed", "observer": "observer", "stall_timeout": "stall_timeout_s"}


@dataclass(frozen=True)
class EngineAbilities:
    """What an engine takes of the harness beyond the protocol (see `Engine`): the keywords `seed=`,
    `observer=`, `stall_timeout_s=` and the members `render`, `score_tokens`, `speaker_embedding`."""

    seed: bool = False
    observer: bool = False
    stall_timeout: bool = False
    render: bool = False
    score_tokens: bool = False
    speaker_embedding: bool = False

    @classmethod
    def from_declaration(cls, declared: Any) -> EngineAbilities:
        """An `EngineAbilities` as is, or one from a mapping of ability names to True/False (names left
        out are False). EngineError naming the value and what was expected otherwise."""
        if isinstance(declared, EngineAbilities):
            return declared
        shown = f"{DECLARATION}={_shown(declared)}"
        if not isinstance(declared, Mapping):
            raise EngineError(f"{shown} is a {type(declared).__name__}, expected a mapping of ability names to "
                              "True/False or an EngineAbilities")
        for name, value in declared.items():
            if name not in ABILITIES:
                raise EngineError(f"{shown}: unknown ability {name!r}; expected some of {', '.join(ABILITIES)}")
            if not isinstance(value, bool):
                raise EngineError(f"{shown}: {name!r} is a {type(value).__name__}, expected True or False")
        return cls(**dict(declared))

    def as_dict(self) -> dict[str, bool]:
        return {f.name: bool(getattr(self, f.name)) for f in fields(self)}


def _shown(value: Any) -> str:
    return repr(dict(value)) if isinstance(value, Mapping) else repr(value)


def declared_abilities(engine: Any) -> EngineAbilities | None:
    """The abilities `engine` declares (its `cosy_abilities`, found as any attribute is: a wrapper's
    `__getattr__` hands on the wrapped engine's); None where it declares nothing."""
    try:
        declared = getattr(engine, DECLARATION)
    except AttributeError:
        return None
    return None if declared is None else EngineAbilities.from_declaration(declared)


def accepts(method: Any, name: str) -> bool:
    """Whether `method` names the keyword parameter `name`. `**kwargs` alone does not count: an
    engine that swallows unknown keywords (or hands them to a callee that refuses them) must not be
    given `observer=`/`stall_timeout_s=` unless it declares it takes them."""
    try:
        param = inspect.signature(method).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                 inspect.Parameter.POSITIONAL_OR_KEYWORD)


def can_take(method: Any, name: str) -> bool:
    """Whether a call of `method` with the keyword `name` gets past its signature: it names the
    keyword or has `**kwargs` (a method whose signature cannot be read is taken at its word)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return accepts(method, name) or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def inferred_abilities(engine: Any) -> EngineAbilities:
    """The fallback for an engine that declares nothing: a keyword where every call method names it,
    a member where it is callable."""
    methods = [getattr(engine, kind, None) for kind in CALLABLE]
    found = {ability: all(accepts(m, keyword) for m in methods) for ability, keyword in KEYWORDS.items()}
    members = {name: callable(getattr(engine, name, None)) for name in ABILITIES if name not in KEYWORDS}
    return EngineAbilities(**found, **members)


def abilities(engine: Any) -> EngineAbilities:
    """What `engine` takes of the harness: what it declares, else what its signatures and members say.
    EngineError: a declaration that is not one (its message names the value)."""
    declared = declared_abilities(engine)
    return declared if declared is not None else inferred_abilities(engine)


def takes_keyword(engine: Any, kind: str, ability: str) -> bool:
    """Whether `engine.<kind>` (stream or synthesize) is to be passed the call ability's keyword: where
    declared, as declared and as far as its signature can take it; else where its signature names it."""
    method = getattr(engine, kind)
    keyword = KEYWORDS[ability]
    declared = declared_abilities(engine)
    if declared is None:
        return accepts(method, keyword)
    return bool(getattr(declared, ability)) and can_take(method, keyword)


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
    abilities(engine)   # a declaration that is not one stops here (EngineError names it)
    checked: Engine = engine  # it has the protocol members (checked above)
    return checked
