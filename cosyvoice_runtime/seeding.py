"""Per-request random draws: ``SeededDraws(seed, name)`` gives the torch random draws it sees a
generator of their own, seeded from (seed, name); ``seeded(seed, name)`` makes such draws the calling
thread's *active draws*, which the loaded components' few draw sites enter around their draws only.

Why a torch function mode: upstream's LLM sampling (``ras_sampling``/``nucleus_sampling``/
``random_sampling``: ``Tensor.multinomial``), its HiFT source module (``SineGen``/``SineGen2``:
``torch.rand``, ``torch.randn_like``, ``Uniform.sample``) and the v1 flow (``ConditionalCFM``:
``torch.randn_like``) draw from torch's *global* generator, from two threads when streaming, so a
global seed cannot make a request reproducible. A ``TorchFunctionMode`` is thread-local: entered in
one thread it sees that thread's torch calls only, and hands each random draw a generator the request
owns. Nothing process-wide is touched (the global generators' states are left as they were) and no
method of another object is replaced.

Only around the draws: a request sets its thread's *active draws* (``seeded``/``drawing``: a
thread-local, nothing else), and the few places of the loaded components that draw enter them for
the duration of the draw (``draw_sites.py`` says which, and why not for the whole request).

Limits (said in docs/runtime.md too):

- Only draws made at a draw site, through torch's Python functions and tensor methods, in the thread
  that set the active draws are seeded: those in ``RANDOM_FUNCTIONS`` (plus ``rand_like``/
  ``randn_like``/``randint_like``, drawn as torch draws them: ``empty_like`` of the input, in its
  layout, filled in place from the request's generator). A draw elsewhere in a component (none in
  upstream's released classes), a draw inside a C++ or CUDA kernel, a draw through a function not
  in the list, NumPy's or Python's ``random``, a sampler put on the LLM after loading that does not
  call the loaded one, and any draw in a thread without active draws stay on the global generators.
- A call that passes its own ``generator=`` keeps it.

``draw_dtype`` (e.g. ``torch.float32``): every floating-point draw the mode seeds is made in that
dtype, from the same generator, and cast to the dtype asked for, so a float64 copy of a computation
gets exactly the float32 computation's draws, cast (torch draws different numbers for a float64
tensor than for a float32 one). That covers the factories (``rand``/``randn``/``normal`` and the
``*_like`` forms), the draws whose output follows a floating input (``normal`` of tensors,
``bernoulli``, ``poisson``: the input is cast to ``draw_dtype`` first) and the in-place fills
(``uniform_``, ``normal_``, ``bernoulli_``, ...: drawn into a ``draw_dtype`` tensor, then copied in).
Integer draws (``randint``, ``randperm``, ``multinomial``, ``random_`` on an integer tensor) are
unchanged.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .errors import InvalidInput
from .limits import check_seed

# Torch functions and tensor methods that draw and take `generator=` as a keyword.
RANDOM_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({
    torch.rand, torch.randn, torch.randint, torch.randperm, torch.multinomial, torch.normal, torch.bernoulli,
    torch.poisson, torch.Tensor.multinomial, torch.Tensor.bernoulli, torch.Tensor.bernoulli_,
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.exponential_, torch.Tensor.geometric_,
    torch.Tensor.log_normal_, torch.Tensor.cauchy_, torch.Tensor.random_,
})
# Draws whose result is a fresh floating tensor of `dtype=` (default: torch's default dtype).
_FLOAT_FACTORIES: frozenset[Callable[..., Any]] = frozenset({torch.rand, torch.randn})
# Draws whose floating result follows their floating tensor inputs' dtype.
_FOLLOW_INPUT: frozenset[Callable[..., Any]] = frozenset({
    torch.normal, torch.bernoulli, torch.poisson, torch.Tensor.bernoulli})
# In-place fills of the tensor they are called on.
_IN_PLACE: frozenset[Callable[..., Any]] = frozenset({
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.exponential_, torch.Tensor.geometric_,
    torch.Tensor.log_normal_, torch.Tensor.cauchy_, torch.Tensor.random_, torch.Tensor.bernoulli_})
# The *_like draws take no generator: drawn as torch draws them (empty_like, filled in place) from ours.
_LIKE: frozenset[Callable[..., Any]] = frozenset({torch.rand_like, torch.randn_like, torch.randint_like})

_SEEDABLE: frozenset[Callable[..., Any]] = RANDOM_FUNCTIONS | _LIKE


def stream_seed(seed: int, name: str) -> int:
    """The generator seed of one named stream of draws of a request: stable across processes and
    platforms (not Python's salted ``hash``), and unrelated for different names."""
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SeededDraws(TorchFunctionMode):
    """While entered in a thread, that thread's torch random draws (see the module's limits) come from
    generators seeded from ``(seed, stream_name)``, one per device, created at the first draw there."""

    def __init__(self, seed: int, stream_name: str, *, draw_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if draw_dtype is not None and (not isinstance(draw_dtype, torch.dtype) or not draw_dtype.is_floating_point):
            raise InvalidInput(f"draw_dtype={draw_dtype!r}: expected None or a floating torch dtype "
                               "(e.g. torch.float32)")
        self.draw_dtype = draw_dtype
        checked = check_seed(seed)
        if checked is None:
            raise InvalidInput("seed=None: SeededDraws needs a seed (use contextlib.nullcontext() for none)")
        self.seed = checked
        self.stream_name = stream_name
        self.draws = 0          # draws seeded so far (for tests and logs)
        self.calls = 0          # torch calls seen while entered (what the mode costs; for tests)
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(stream_seed(self.seed, f"{self.stream_name}@{device}"))
            self._generators[device] = gen
        return gen

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        self.calls += 1
        if func not in _SEEDABLE:   # most calls at a draw site: straight through
            return func(*args, **(kwargs or {}))
        kwargs = dict(kwargs or {})
        if func in _LIKE and args and isinstance(args[0], torch.Tensor):
            return self._draw_like(func, args[0], args[1:], kwargs)
        if func in RANDOM_FUNCTIONS and kwargs.get("generator") is None \
                and not any(isinstance(a, torch.Generator) for a in args):
            kwargs["generator"] = self.generator(_draw_device(args, kwargs))
            self.draws += 1
            if self.draw_dtype is not None:
                return self._draw_in_draw_dtype(func, args, kwargs)
        return func(*args, **kwargs)

    def _draw_like(self, func: Callable[..., Any], x: torch.Tensor, rest: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> torch.Tensor:
        """A ``*_like`` draw as torch makes it (``empty_like(x, ...)`` filled in place, in ``x``'s layout
        unless ``memory_format=`` says otherwise), filled from the request's generator. The same layout
        is the same work: a fresh contiguous tensor for a transposed ``x`` (HiFT's sine waves) took a
        faster path than the unseeded call and made a seeded vocoder piece 10 ms cheaper on the tiny v2
        model (docs/performance.md)."""
        dtype = kwargs.pop("dtype", None) or x.dtype
        wanted = self.draw_dtype if self.draw_dtype is not None and dtype.is_floating_point else dtype
        requires_grad = kwargs.pop("requires_grad", False)
        out = torch.empty_like(x, dtype=wanted, layout=kwargs.pop("layout", None) or x.layout,
                               device=kwargs.pop("device", None) or x.device,
                               memory_format=kwargs.pop("memory_format", None) or torch.preserve_format)
        generator = self.generator(out.device)
        self.draws += 1
        if func is torch.randn_like:
            out.normal_(generator=generator)
        elif func is torch.rand_like:
            out.uniform_(generator=generator)
        else:   # randint_like(x, high) or (x, low, high)
            if len(rest) == 1:
                low, high = kwargs.pop("low", 0), rest[0]
            elif rest:
                low, high = rest
            else:
                low, high = kwargs.pop("low", 0), kwargs.pop("high")
            out.random_(low, high, generator=generator)
        out = out if wanted == dtype else out.to(dtype)
        return out.requires_grad_() if requires_grad else out

    def _draw_in_draw_dtype(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``func(*args, **kwargs)`` (a seeded draw) made in ``draw_dtype`` and cast to the dtype asked for."""
        want = self.draw_dtype
        assert want is not None
        if func in _FLOAT_FACTORIES or (func is torch.normal and kwargs.get("size") is not None) \
                or (func is torch.normal and len(args) >= 3 and not isinstance(args[0], torch.Tensor)):
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            if kwargs.get("out") is not None or not dtype.is_floating_point or dtype == want:
                return func(*args, **kwargs)
            return func(*args, **{**kwargs, "dtype": want}).to(dtype)
        if func in _FOLLOW_INPUT:
            if kwargs.get("out") is not None:
                return func(*args, **kwargs)
            floating = [a for a in (*args, *kwargs.values())
                        if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype != want]
            if not floating:
                return func(*args, **kwargs)
            cast = [a.to(want) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
            kw = {k: v.to(want) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                  for k, v in kwargs.items()}
            out = func(*cast, **kw)
            dtype = functools.reduce(torch.promote_types, (a.dtype for a in floating))
            return out.to(dtype) if out.is_floating_point() else out
        if func in _IN_PLACE and args and isinstance(args[0], torch.Tensor):
            target = args[0]
            if not target.is_floating_point() or target.dtype == want:
                return func(*args, **kwargs)
            drawn = torch.empty(target.shape, dtype=want, device=target.device)
            func(drawn, *args[1:], **kwargs)
            with torch.no_grad():
                target.copy_(drawn)
            return target
        return func(*args, **kwargs)


def _draw_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device:
    """Where a draw lands: its ``device=``, else its first tensor argument's device, else torch's
    default device (a factory call such as ``torch.rand(3)``)."""
    if kwargs.get("device") is not None:
        return torch.device(kwargs["device"])
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.get_default_device()


# The calling thread's active draws and whether it runs a request (`seeded`/`drawing`).
_thread = threading.local()


def active_draws() -> SeededDraws | None:
    """The calling thread's active draws, None when it has none."""
    return getattr(_thread, "draws", None)


def in_request() -> bool:
    """Whether the calling thread runs one of the runtime's requests (inside ``drawing``/``seeded``)."""
    return bool(getattr(_thread, "request", False))


@contextlib.contextmanager
def drawing(draws: SeededDraws | None) -> Iterator[SeededDraws | None]:
    """Makes ``draws`` the calling thread's active draws (None: none, the global generator draws) and
    marks the thread as running one of the runtime's requests while the block runs, then puts back what
    was there before. Sets thread-locals and nothing else: the draw sites read them."""
    if draws is not None and not isinstance(draws, SeededDraws):
        raise InvalidInput(f"draws={draws!r}: expected a seeding.SeededDraws or None")
    before = getattr(_thread, "draws", None), getattr(_thread, "request", False)
    _thread.draws, _thread.request = draws, True
    try:
        yield draws
    finally:
        _thread.draws, _thread.request = before


def seeded(seed: int | None, stream_name: str, *,
           draw_dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager[object]:
    """``drawing(SeededDraws(seed, stream_name, draw_dtype=...))``: the thread's draw sites draw from
    the request's own generators; when ``seed`` is None, ``drawing`` of the draws the thread already has
    (None in a request's thread: the global generator draws, through the same code, so a seeded request
    runs what an unseeded one does)."""
    # Without a seed the thread keeps the draws it has (e.g. the model reference's own, around a render
    # whose renderer has no seed of its own): None in a request's thread, so the global generator draws.
    return drawing(active_draws() if seed is None else SeededDraws(seed, stream_name, draw_dtype=draw_dtype))
