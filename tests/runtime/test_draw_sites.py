"""A seed costs only its draws (issue #23): a seeded request's torch function mode sees the draw sites'
torch calls (the LLM's sampler, HiFT's source module, v1's flow noise), not every operation of the
LLM, flow and vocoder; without active draws the draw sites are inert (no mode entered, the global
generator decides); the sampler stays the yaml's partial with its keywords."""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cosyvoice_runtime
from cosyvoice_runtime import Runtime, StreamObserver, StreamStats, draw_sites, seeding
from cosyvoice_runtime.seeding import SeededDraws, active_draws, drawing

PROMPT_TEXT = "A short prompt sentence."


class Counted(SeededDraws):
    """SeededDraws that keeps a list of every instance made (the request's draws are made inside)."""

    made: list[Counted] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        Counted.made.append(self)


class Stats(StreamObserver):
    def __init__(self) -> None:
        self.stats: StreamStats | None = None

    def on_end(self, stats: StreamStats, error: BaseException | None) -> None:
        self.stats = stats


@pytest.fixture(scope="module")
def v2(tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


def source_calls(rt: Runtime, frames: int) -> int:
    """Torch calls the mode sees in one vocoder call (only its source module is a draw site)."""
    d = SeededDraws(1, "probe")
    mel = torch.zeros(1, 80, frames)
    with torch.inference_mode(), drawing(d):
        rt.hift.inference(speech_feat=mel, cache_source=torch.zeros(1, 1, 0))
    assert d.draws >= 2       # its phases and its noise
    return d.calls


def test_a_seeded_stream_pays_the_mode_only_at_its_draw_sites(v2: Runtime, voice: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    Counted.made = []
    monkeypatch.setattr(seeding, "SeededDraws", Counted)
    obs = Stats()
    chunks = list(v2.stream("Hello there, this is a seeded request.", prompt_wav=voice, prompt_text=PROMPT_TEXT,
                            observer=obs, seed=3))
    monkeypatch.undo()
    assert obs.stats is not None and obs.stats.speech_tokens is not None
    tokens, pieces = len(obs.stats.speech_tokens), len(chunks)
    assert tokens > 0 and pieces > 0
    llm = [d for d in Counted.made if d.stream_name.endswith("/llm")]
    hift = [d for d in Counted.made if "/hift-" in d.stream_name]
    assert len(llm) == 1 and len(hift) == pieces
    # Every token was sampled: each sampler call draws once (twice in its repetition branch), and a
    # token may take several calls (upstream samples again when the end of speech is not allowed yet).
    assert llm[0].draws >= tokens
    # The LLM thread's mode saw nothing: upstream's sampler runs as sampling.own_sampler's form, which
    # draws with the request's generator (no mode around its per-token Python loop, nor around the
    # LLM's steps, as when the request entered the mode for its whole run).
    assert llm[0].calls == 0
    # Each vocoder call: its source module's calls only (its f0 predictor and decoder run outside).
    per_piece = source_calls(v2, 200)
    assert all(1 <= d.calls <= per_piece for d in hift), [d.calls for d in hift]


def test_the_draw_sites_are_inert_without_active_draws(v2: Runtime) -> None:
    """No active draws: the vocoder's and the sampler's draws come from torch's global generator, as
    upstream's do (the same global seed, the same output; the global state moves)."""
    assert active_draws() is None

    def vocode() -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = v2.hift.inference(speech_feat=torch.ones(1, 80, 20),
                                                  cache_source=torch.zeros(1, 1, 0))[0]
        return out

    torch.manual_seed(7)
    start = torch.get_rng_state()
    a = vocode()
    assert not torch.equal(torch.get_rng_state(), start), "the vocoder's noise did not come from the global generator"
    torch.manual_seed(7)
    assert torch.equal(vocode(), a)
    torch.manual_seed(8)
    assert not torch.equal(vocode(), a)
    torch.manual_seed(7)
    x = [int(v2.llm.sampling(torch.zeros(50), [], 25)) for _ in range(20)]
    torch.manual_seed(7)
    assert x == [int(v2.llm.sampling(torch.zeros(50), [], 25)) for _ in range(20)]
    torch.manual_seed(8)
    assert x != [int(v2.llm.sampling(torch.zeros(50), [], 25)) for _ in range(20)]


def test_active_draws_make_the_draw_sites_draw_from_the_requests_generator(v2: Runtime) -> None:
    def vocode(seed: int | None) -> torch.Tensor:
        draws = None if seed is None else SeededDraws(seed, "hift")
        with torch.inference_mode(), drawing(draws):
            out: torch.Tensor = v2.hift.inference(speech_feat=torch.ones(1, 80, 20),
                                                  cache_source=torch.zeros(1, 1, 0))[0]
        return out

    before = torch.get_rng_state()
    a, b, c = vocode(5), vocode(5), vocode(6)
    assert torch.equal(torch.get_rng_state(), before), "seeded draws moved the global generator"
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert active_draws() is None


def test_the_sampler_stays_the_yamls_partial(v2: Runtime) -> None:
    s = v2.llm.sampling
    assert isinstance(s, functools.partial) and s.keywords["top_k"] == v2.sampling_top_k
    assert getattr(s.func, "__cosy_draw_site__", False)
    assert "top_p" in inspect.signature(s.func).parameters   # upstream's own signature shows through
    # Made a draw site once: attaching again (another loader call on the same objects) changes nothing.
    draw_sites.attach_draw_sites(v2.version, v2.llm, v2.flow, v2.hift)
    assert v2.llm.sampling.func is s.func
    assert len(v2.hift.m_source._forward_pre_hooks) == 1


def test_a_v1_seeded_synthesis_enters_the_flow_only_for_its_noise(tiny_v1_dir: Path, voice: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rt = cosyvoice_runtime.load(tiny_v1_dir, device="cpu")
    Counted.made = []
    monkeypatch.setattr(seeding, "SeededDraws", Counted)
    syn = rt.synthesize("Hello there.", prompt_wav=voice, prompt_text=PROMPT_TEXT, seed=4)
    monkeypatch.undo()
    assert syn.audio.size > 0 and np.isfinite(syn.audio).all()
    flow = [d for d in Counted.made if "/flow-" in d.stream_name]
    assert flow and all(d.draws == 1 for d in flow)          # ConditionalCFM's randn_like
    # The window closes when the estimator (the solver's network, run ten times) first runs: the mode
    # sees the CFM's set-up (noise, caches, time steps, the solver's buffers: about 60 calls), while
    # the ten estimator passes under it would be thousands.
    assert all(d.calls <= 100 for d in flow), [d.calls for d in flow]
