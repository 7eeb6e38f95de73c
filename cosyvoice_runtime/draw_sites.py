"""The draw sites of the loaded components: the few places that draw random numbers, which enter
the calling thread's active draws (``seeding.seeded``/``seeding.drawing``) around their draws only.

Why only around the draws: while a mode is entered, *every* torch call of the thread goes through its
Python hook, so a request that entered it for its whole run paid that on every operation of the LLM,
flow and vocoder (measured on the tiny v2 model: first chunk +24 %, RTF +15 %; docs/performance.md).
So a request only sets its thread's active draws (``seeded``: a thread-local, nothing else), and
``attach_draw_sites`` (called by the loader on the components it builds) marks the few places that
draw, which enter the thread's active draws for the duration of the draw and do nothing (one
thread-local lookup) when none are active:

- the LLM's ``sampling`` (the sampler the yaml gives the LLM's constructor, a functools.partial): it
  becomes a partial of the same arguments around ``draw_site(func)``, so ``top_k`` and the other
  keywords read from it stay where they were. In a request's thread (seeded or not) one of upstream's
  samplers runs as ``sampling.own_sampler``'s form of it, which draws with ``generator=`` and needs no
  mode: upstream's nucleus step is a Python loop of about 170 torch calls a token, and under the mode
  it kept a seeded first chunk about 18 % slower. Unseeded requests run the same form on the global
  generator, so seeded and unseeded requests run the same code;
- HiFT's source module ``hift.m_source``: an ``nn.Module`` forward pre-hook enters, a forward hook
  registered with ``always_call=True`` exits (on an exception too);
- v1's flow decoder (``ConditionalCFM``) the same way; the window closes when the decoder first calls
  its ``estimator`` (the ODE solver's network, after the noise is drawn), so the solver runs unseen.
  v2/v3's ``CausalConditionalCFM`` takes its noise from a fixed tensor: no draw site.

The hooks are on the loaded instances' submodules, so a stand-in ``inference`` set on a component
(pytest_cosyvoice.faults) that calls through still draws seeded, and another orchestration sharing the
components (``upstream.UpstreamEngine``) sees no change: its threads have no active draws.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch

from .sampling import own_sampler
from .seeding import active_draws, in_request

# The draw-site windows the calling thread has open: [module, the draws its pre-hook entered].
_windows = threading.local()


def draw_site(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a draw site. In a thread running one of the runtime's requests (``drawing``), one of
    upstream's samplers runs as ``sampling.own_sampler``'s form of it, drawing with the request's
    generator (the global one when unseeded): no mode, and the same code seeded or not. Any other ``fn``
    is called inside the thread's active draws when there are some. Outside a request ``fn`` runs as it
    is. ``functools.wraps``: its name, docstring and signature (``inspect.signature``) are ``fn``'s."""
    if getattr(fn, "__cosy_draw_site__", False):
        return fn
    own = own_sampler(fn)

    @functools.wraps(fn)
    def site(*args: Any, **kwargs: Any) -> Any:
        draws = active_draws()
        # The LLM calls its sampler as sampling(scores, decoded_tokens, sampling) with the yaml's keywords.
        if own is not None and in_request() and len(args) == 3 \
                and isinstance(args[0], torch.Tensor) and set(kwargs) <= own[1]:
            generator = None if draws is None else draws.generator(args[0].device)
            ids, made = own[0](args[0], args[1], args[2], kwargs, generator)
            if draws is not None:
                draws.draws += made
            return ids
        if draws is None:
            return fn(*args, **kwargs)
        with draws:
            return fn(*args, **kwargs)

    site.__cosy_draw_site__ = True  # type: ignore[attr-defined]
    return site


def _open(module: torch.nn.Module, args: Any) -> None:
    """Forward pre-hook of a draw-site module: enters the thread's active draws, if any."""
    draws: contextlib.AbstractContextManager[Any] | None = active_draws()   # a mode: entered, exited
    if draws is None:
        return
    windows: list[list[Any]] | None = getattr(_windows, "open", None)
    if windows is None:
        windows = _windows.open = []
    draws.__enter__()
    windows.append([module, draws])


def _close(module: torch.nn.Module, args: Any, output: Any) -> None:
    """Forward hook (``always_call``) of a draw-site module: exits what its pre-hook entered."""
    windows = getattr(_windows, "open", None)
    if windows and windows[-1][0] is module:
        _, draws = windows.pop()
        if draws is not None:
            draws.__exit__(None, None, None)


def _close_early(module: torch.nn.Module, args: Any) -> None:
    """Forward pre-hook of a module a draw site calls after its draws (v1's CFM estimator): exits the
    innermost open window now, so the rest of the draw site runs outside the mode."""
    windows = getattr(_windows, "open", None)
    if windows and windows[-1][1] is not None:
        draws = windows[-1][1]
        windows[-1][1] = None
        draws.__exit__(None, None, None)


# Modules made draw sites already (attaching twice would enter the draws twice).
_sites: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def _hook(module: torch.nn.Module, *, closed_by: str | None = None) -> None:
    if module in _sites:
        return
    module.register_forward_pre_hook(_open)
    module.register_forward_hook(_close, always_call=True)
    inner = getattr(module, closed_by, None) if closed_by else None
    if isinstance(inner, torch.nn.Module):
        inner.register_forward_pre_hook(_close_early)
    _sites.add(module)


def attach_draw_sites(version: int, llm: Any, flow: Any, hift: Any) -> None:
    """Marks the draw sites of a CosyVoice ``version`` model's loaded components (see the module
    docstring): the LLM's ``sampling``, HiFT's ``m_source`` and, for v1, the flow's ``decoder``. A
    component without such a part (a stand-in) is left as it is."""
    sampling = vars(llm).get("sampling") if hasattr(llm, "__dict__") else None
    if isinstance(sampling, functools.partial):
        llm.sampling = functools.partial(draw_site(sampling.func), *sampling.args, **sampling.keywords)
    elif callable(sampling):
        llm.sampling = draw_site(sampling)
    source = getattr(hift, "m_source", None)
    if isinstance(source, torch.nn.Module):
        _hook(source)
    decoder = getattr(flow, "decoder", None)
    if version == 1 and isinstance(decoder, torch.nn.Module):
        _hook(decoder, closed_by="estimator")
