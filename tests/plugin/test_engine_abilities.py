"""What an engine takes of the harness (issue #23): abilities it DECLARES (`cosy_abilities`, read as
`pytest_cosyvoice.engine.EngineAbilities`), its signatures only where it declares nothing."""
from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest

from pytest_cosyvoice.engine import ABILITIES, EngineAbilities, EngineError, abilities, declared_abilities
from pytest_cosyvoice.recording.attribution import EngineAttribution, Takes

ALL = dict.fromkeys(ABILITIES, True)


class Declares:
    """An engine that says what it takes, with signatures that would say otherwise (**kwargs only)."""

    cosy_abilities = MappingProxyType({"seed": True, "observer": True, "stall_timeout": False, "render": True})
    sample_rate, version = 24000, 2

    def stream(self, text: str, **kwargs: Any) -> Iterator[Any]:
        yield from ()

    def synthesize(self, text: str, **kwargs: Any) -> Any:
        return None


class Named:
    """Declares nothing; names observer= and seed= on stream only, and has a render."""

    sample_rate, version = 24000, 2

    def stream(self, text: str, *, observer: Any = None, seed: int | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from ()

    def synthesize(self, text: str, **kwargs: Any) -> Any:
        return None

    def render(self, text: str, tokens: list[int], **kwargs: Any) -> Any:
        return None


class PassThrough:
    """A serving wrapper: `stream(*a, **k)`/`synthesize(*a, **k)` hand everything to what it wraps,
    every other attribute is the wrapped object's (the declaration included)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def stream(self, *a: Any, **k: Any) -> Iterator[Any]:
        return self.inner.stream(*a, **k)   # type: ignore[no-any-return]

    def synthesize(self, *a: Any, **k: Any) -> Any:
        return self.inner.synthesize(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _LLM:
    def inference(self, n: int) -> Iterator[int]:
        yield from range(n)

    def inference_bistream(self, n: int) -> Iterator[int]:
        yield from range(n)


def test_an_engine_declares_its_abilities() -> None:
    got = abilities(Declares())
    assert got == EngineAbilities(seed=True, observer=True, render=True)
    assert declared_abilities(Declares()) == got
    # An EngineAbilities object is a declaration as well as a mapping is.
    engine = Declares()
    engine.cosy_abilities = EngineAbilities(observer=True)  # type: ignore[assignment]
    assert abilities(engine) == EngineAbilities(observer=True)


def test_a_wrapper_that_delegates_its_attributes_inherits_the_declaration() -> None:
    assert abilities(PassThrough(Declares())) == abilities(Declares())
    assert abilities(PassThrough(PassThrough(Declares()))) == abilities(Declares())


def test_an_engine_that_declares_nothing_is_read_from_its_signatures() -> None:
    # The fallback: a keyword counts only where every call method names it (**kwargs alone does not);
    # render / score_tokens / speaker_embedding where the member is callable.
    assert declared_abilities(Named()) is None
    assert abilities(Named()) == EngineAbilities(render=True)
    assert abilities(PassThrough(Named())) == EngineAbilities(render=True)   # *a, **k: nothing named


@pytest.mark.parametrize("declared, message", [
    ({"seeds": True}, "cosy_abilities={'seeds': True}: unknown ability 'seeds'; expected some of "
                      + ", ".join(ABILITIES)),
    ({"seed": "yes"}, "cosy_abilities={'seed': 'yes'}: 'seed' is a str, expected True or False"),
    (["seed"], "cosy_abilities=['seed'] is a list, expected a mapping of ability names to True/False or an "
               "EngineAbilities"),
], ids=["unknown", "not-bool", "not-a-mapping"])
def test_a_bad_declaration_is_named(declared: Any, message: str) -> None:
    engine = Named()
    engine.cosy_abilities = declared  # type: ignore[attr-defined]
    with pytest.raises(EngineError) as e:
        abilities(engine)
    assert str(e.value) == message


def test_the_runtime_declares_its_abilities_as_plain_data() -> None:
    # The runtime never imports the plugin (tests/test_import_graph.py): a read-only mapping the
    # plugin reads. The upstream engine takes observer= only (no seed=, no stall_timeout_s=, no render).
    from cosyvoice_runtime.runtime import Runtime
    from cosyvoice_runtime.upstream import UpstreamEngine

    assert dict(Runtime.cosy_abilities) == ALL
    assert abilities(SimpleNamespace(cosy_abilities=Runtime.cosy_abilities)) == EngineAbilities(**ALL)
    assert dict(UpstreamEngine.cosy_abilities) == {**dict.fromkeys(ABILITIES, False), "observer": True}


def test_the_attribution_passes_what_is_declared_and_the_signature_can_take() -> None:
    runtime: Any = SimpleNamespace(llm=_LLM())
    attribution = EngineAttribution(PassThrough(Declares()), runtime)   # type: ignore[arg-type]
    assert attribution.takes == {k: Takes(observer=True, stall_timeout_s=False, seed=True)
                                 for k in ("stream", "synthesize")}
    assert attribution.adapter is None          # observed: nothing of the process patched
    attribution.close()

    class Narrow(Declares):
        """Declares observer= but its stream cannot take it (no such parameter, no **kwargs)."""

        def stream(self, text: str, *, seed: int | None = None) -> Iterator[Any]:  # type: ignore[override]
            yield from ()
    narrow = EngineAttribution(Narrow(), runtime)   # type: ignore[arg-type]
    try:
        assert narrow.takes["stream"] == Takes(observer=False, stall_timeout_s=False, seed=True)
        assert narrow.takes["synthesize"] == Takes(observer=True, stall_timeout_s=False, seed=True)
        assert narrow.adapter is not None       # stream's tokens are counted at the LLM
    finally:
        narrow.close()


def bad_declaration(runtime: Any) -> Any:
    engine = Named()
    engine.cosy_abilities = {"observer": 1}  # type: ignore[attr-defined]
    return engine


def test_a_factory_whose_engine_declares_badly_is_refused_when_built() -> None:
    # Before any test runs (the host turns it into a usage error naming --cosy-engine).
    from pytest_cosyvoice.engine import build

    with pytest.raises(EngineError, match=r"^cosy_abilities=\{'observer': 1\}: 'observer' is a int, expected True "
                                          r"or False$"):
        build(f"{__name__}:bad_declaration", SimpleNamespace())  # type: ignore[arg-type]
