"""Our form of upstream's samplers (cosyvoice_runtime.sampling) draws what upstream's does: the same
candidates and, from a generator in the same state, the same token. Upstream's functions are the
installed package's, run under a SeededDraws mode (which hands their multinomial the generator) or on
the global generator."""
from __future__ import annotations

import functools

import pytest
import torch

from cosyvoice_runtime import sampling
from cosyvoice_runtime.draw_sites import draw_site
from cosyvoice_runtime.seeding import SeededDraws, drawing

common = pytest.importorskip("cosyvoice.utils.common")


def scores(seed: int, n: int = 200, spread: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * spread).log_softmax(dim=0)


@pytest.mark.parametrize("spread", [0.1, 1.0, 3.0, 8.0])
def test_the_nucleus_takes_upstreams_candidates(spread: float) -> None:
    for seed in range(40):
        s = scores(seed, spread=spread)
        values, _ = s.softmax(dim=0).sort(descending=True, stable=True)
        for top_p, top_k in ((0.8, 25), (0.5, 10), (0.95, 50), (1.0, 5)):
            # upstream's loop, spelled out: its candidate count is the length of the tensor it draws from
            taken, total = 0, 0.0
            for v in values:
                if total < top_p and taken < top_k:
                    total += v
                    taken += 1
                else:
                    break
            assert sampling.nucleus_size(values, top_p, top_k) == taken, (seed, top_p, top_k)


def test_seeded_draws_equal_upstreams_under_the_mode() -> None:
    history: list[int] = []
    for seed in range(60):
        s = scores(seed, spread=1.5)
        kw = {"top_p": 0.8, "top_k": 25, "win_size": 10, "tau_r": 0.1}
        d = SeededDraws(seed, "upstream")
        with d:
            want = common.ras_sampling(s, history, 25, **kw)
        mine, made = sampling.repetition_aware(s, history, generator=SeededDraws(seed, "upstream").generator(
            s.device), **kw)
        assert torch.equal(mine, want) and mine.dtype == want.dtype and mine.shape == want.shape
        assert made == d.draws
        history.append(int(want))          # a history that repeats, so the RAS branch runs too


def test_unseeded_draws_come_from_the_global_generator_as_upstreams_do() -> None:
    s = scores(3, spread=0.5)
    torch.manual_seed(11)
    want = [int(common.ras_sampling(s, [], 25, top_p=0.8, top_k=25, win_size=10, tau_r=0.1)) for _ in range(30)]
    torch.manual_seed(11)
    assert [int(sampling.repetition_aware(s, [])[0]) for _ in range(30)] == want


def test_in_a_request_the_draw_site_runs_our_form_without_a_mode() -> None:
    site = functools.partial(draw_site(common.ras_sampling), top_p=0.8, top_k=25, win_size=10, tau_r=0.1)
    s = scores(5)
    d = SeededDraws(9, "llm")
    with drawing(d):
        got = [int(site(s, [], 25)) for _ in range(20)]
    assert d.calls == 0 and d.draws == 20      # drawn with the generator: the mode saw nothing
    d2 = SeededDraws(9, "llm")
    with d2:
        want = [int(common.ras_sampling(s, [], 25, top_p=0.8, top_k=25, win_size=10, tau_r=0.1)) for _ in range(20)]
    assert got == want


def test_a_sampler_that_is_not_upstreams_is_run_under_the_mode() -> None:
    def mine(weighted_scores: torch.Tensor, decoded: list[int], k: int) -> torch.Tensor:
        return weighted_scores.softmax(dim=0).multinomial(1)

    assert sampling.own_sampler(mine) is None
    site = draw_site(mine)
    d = SeededDraws(2, "llm")
    with drawing(d):
        a = int(site(scores(1), [], 25))
    with drawing(SeededDraws(2, "llm")):
        assert int(site(scores(1), [], 25)) == a
    assert d.calls >= 2 and d.draws == 1
