"""Per-request random draws: ``SeededDraws(seed, name)`` gives the torch random draws of one thread,
while it is entered, a generator of their own, seeded from (seed, name).

Why a torch function mode: upstream's LLM sampling (``ras_sampling``/``nucleus_sampling``/
``random_sampling``: ``Tensor.multinomial``), its HiFT source module (``SineGen``/``SineGen2``:
``torch.rand``, ``torch.randn_like``, ``Uniform.sample``) and the v1 flow (``ConditionalCFM``:
``torch.randn_like``) draw from torch's *global* generator, from two threads when streaming, so a
global seed cannot make a request reproducible. A ``TorchFunctionMode`` is thread-local: entered in
one thread it sees that thread's torch calls only, and hands each random draw a generator the request
owns. Nothing process-wide is touched (the global generators' states are left as they were) and no
method of another object is replaced.

Limits (said in docs/runtime.md too):

- Only draws made through torch's Python functions and tensor methods in the thread that entered the
  mode are seeded: those in ``RANDOM_FUNCTIONS`` (plus ``rand_like``/``randn_like``/``randint_like``,
  drawn as ``rand``/``randn``/``randint`` of the same shape, dtype and device). A draw inside a C++
  or CUDA kernel (e.g. ``torch.dropout`` in training mode called from another torch function), a draw
  through a function not in the list, NumPy's or Python's ``random``, and any draw in a thread the
  runtime did not enter the mode in stay on the global generators.
- A call that passes its own ``generator=`` keeps it.
- Every torch call of the thread goes through the mode's Python hook while it is entered: a small cost
  per operation, paid only by seeded requests.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
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
# The *_like draws take no generator: drawn as the named function of the input's shape.
_LIKE: dict[Callable[..., Any], Callable[..., Any]] = {
    torch.rand_like: torch.rand, torch.randn_like: torch.randn, torch.randint_like: torch.randint,
}


def stream_seed(seed: int, name: str) -> int:
    """The generator seed of one named stream of draws of a request: stable across processes and
    platforms (not Python's salted ``hash``), and unrelated for different names."""
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SeededDraws(TorchFunctionMode):
    """While entered in a thread, that thread's torch random draws (see the module's limits) come from
    generators seeded from ``(seed, stream_name)``, one per device, created at the first draw there."""

    def __init__(self, seed: int, stream_name: str) -> None:
        super().__init__()
        checked = check_seed(seed)
        if checked is None:
            raise InvalidInput("seed=None: SeededDraws needs a seed (use contextlib.nullcontext() for none)")
        self.seed = checked
        self.stream_name = stream_name
        self.draws = 0          # draws seeded so far (for tests and logs)
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
        kwargs = dict(kwargs or {})
        like = _LIKE.get(func)
        if like is not None and args and isinstance(args[0], torch.Tensor):
            x, rest = args[0], args[1:]
            device = torch.device(kwargs.pop("device", None) or x.device)
            kwargs.setdefault("dtype", x.dtype)
            kwargs.pop("memory_format", None)   # a fresh tensor of the same shape is contiguous anyway
            kwargs.setdefault("layout", x.layout)
            self.draws += 1
            if like is torch.randint:   # randint_like(input, high) or (input, low, high): randint(low, high, size)
                if len(rest) == 1:
                    low, high = kwargs.pop("low", 0), rest[0]
                elif rest:
                    low, high = rest
                else:
                    low, high = kwargs.pop("low", 0), kwargs.pop("high")
                return like(low, high, tuple(x.shape), generator=self.generator(device), device=device, **kwargs)
            return like(tuple(x.shape), *rest, generator=self.generator(device), device=device, **kwargs)
        if func in RANDOM_FUNCTIONS and kwargs.get("generator") is None \
                and not any(isinstance(a, torch.Generator) for a in args):
            kwargs["generator"] = self.generator(_draw_device(args, kwargs))
            self.draws += 1
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


def seeded(seed: int | None, stream_name: str) -> contextlib.AbstractContextManager[object]:
    """``SeededDraws(seed, stream_name)``, or a context that does nothing when ``seed`` is None."""
    return contextlib.nullcontext() if seed is None else SeededDraws(seed, stream_name)
