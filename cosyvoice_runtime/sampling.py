"""The LLM's token sampling rule of upstream (``ras_sampling``, ``nucleus_sampling``,
``random_sampling`` in ``cosyvoice.utils.common``), run with a generator the caller hands in.

Why our own: upstream's nucleus step is a Python loop of about 170 torch calls per token (index, add,
compare, append), and its only draw is one ``multinomial`` at the end. Entering a request's seeded
torch function mode around that loop (``seeding.SeededDraws``) made every one of those calls pay the
mode's Python hook: on the tiny v2 model a seeded first chunk stayed about 18 % slower than an
unseeded one (docs/performance.md). Here the same rule picks the same candidates with a handful of
tensor operations and draws with ``generator=``: no mode at all.

Faithful to upstream's rule, draw for draw: the candidates are the softmax's values sorted descending
(stable), taken while the running sum of those already taken (accumulated one value at a time in the
scores' dtype, as upstream's loop does) is below ``top_p`` and fewer than ``top_k`` are taken; the
draw is ``multinomial(1, replacement=True)`` of exactly those values, so a generator in the same state
draws the same token (tests/runtime/test_sampling.py compares them on random scores, seeded and on
the global generator). The repetition-aware step (RAS) samples again from the whole softmax when the
drawn token already stands at least ``win_size * tau_r`` times among the last ``win_size`` tokens.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

UPSTREAM_MODULE = "cosyvoice.utils.common"
# numpy scalar types that add and compare as torch does in these dtypes (IEEE, round to nearest).
_NUMPY = {torch.float32: np.float32, torch.float16: np.float16, torch.float64: np.float64}


def nucleus_size(sorted_probs: torch.Tensor, top_p: float, top_k: int) -> int:
    """How many of the descending ``sorted_probs`` upstream's nucleus loop takes: one more while the sum
    of those taken is below ``top_p`` (in the probabilities' dtype) and fewer than ``top_k`` are taken."""
    head = sorted_probs[:max(int(top_k), 0)]
    scalar = _NUMPY.get(head.dtype)
    if scalar is None:      # bfloat16 and others: numpy has no such scalar, so the sum is torch's own
        values: Sequence[Any] = list(head.detach().cpu())
        start: Any = torch.zeros((), dtype=head.dtype)
        limit: Any = torch.tensor(top_p, dtype=head.dtype)
    else:
        values = [scalar(v) for v in head.tolist()]
        start, limit = scalar(0), scalar(top_p)
    taken, total = 0, start
    for v in values:
        if not bool(total < limit):
            break
        total = total + v
        taken += 1
    return taken


def nucleus(weighted_scores: torch.Tensor, top_p: float = 0.8, top_k: int = 25, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id (a 1-element long tensor on the scores' device) drawn by upstream's nucleus rule."""
    values, order = weighted_scores.softmax(dim=0).sort(descending=True, stable=True)
    taken = nucleus_size(values, top_p, top_k)
    pick = values[:taken].multinomial(1, replacement=True, generator=generator)
    return order[:taken][pick]


def whole(weighted_scores: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id drawn from the whole softmax (upstream's ``random_sampling``)."""
    return weighted_scores.softmax(dim=0).multinomial(1, replacement=True, generator=generator)


def repetition_aware(weighted_scores: torch.Tensor, decoded_tokens: Sequence[Any], top_p: float = 0.8,
                     top_k: int = 25, win_size: int = 10, tau_r: float = 0.1, *,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """Upstream's ``ras_sampling``: the nucleus draw, drawn again from the whole softmax when it repeats
    too often in the last ``win_size`` tokens. Returns the token id and the number of draws made."""
    top_ids = nucleus(weighted_scores, top_p, top_k, generator=generator)
    drawn = int(top_ids.item())
    recent = decoded_tokens[-win_size:] if win_size > 0 else []
    if sum(int(t) == drawn for t in recent) >= win_size * tau_r:
        return whole(weighted_scores, generator=generator), 2
    return top_ids, 1


# A sampler with a generator: (weighted_scores, decoded_tokens, sampling, keywords, generator) -> (ids, draws).
OwnSampler = Callable[[torch.Tensor, Sequence[Any], Any, dict[str, Any], "torch.Generator | None"],
                      tuple[torch.Tensor, int]]


def _ras(scores: torch.Tensor, decoded: Sequence[Any], sampling: Any, kw: dict[str, Any],
         generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
    return repetition_aware(scores, decoded, generator=generator, **kw)


def _nucleus(scores: torch.Tensor, decoded: Sequence[Any], sampling: Any, kw: dict[str, Any],
             generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
    return nucleus(scores, generator=generator, **kw), 1


def _whole(scores: torch.Tensor, decoded: Sequence[Any], sampling: Any, kw: dict[str, Any],
           generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
    return whole(scores, generator=generator), 1


_OWN: dict[str, OwnSampler] = {"ras_sampling": _ras, "nucleus_sampling": _nucleus, "random_sampling": _whole}
# The keywords each upstream sampler takes (beyond the scores, the history and `sampling`).
_KEYWORDS = {"ras_sampling": {"top_p", "top_k", "win_size", "tau_r"}, "nucleus_sampling": {"top_p", "top_k"},
             "random_sampling": set()}


def own_sampler(fn: Callable[..., Any]) -> tuple[OwnSampler, frozenset[str]] | None:
    """Our generator-taking form of ``fn`` and the keywords it takes, where ``fn`` is one of upstream's
    samplers; None for any other sampler (a team's own: the seeded mode is entered around it instead)."""
    name = getattr(fn, "__name__", "")
    if getattr(fn, "__module__", None) != UPSTREAM_MODULE or name not in _OWN:
        return None
    return _OWN[name], frozenset(_KEYWORDS[name])
