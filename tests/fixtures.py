"""Fixtures shared by the runtime and plugin tests (registered by the top-level conftest.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def tiny_v2_dir() -> Path:
    """The embedded tiny v2 model (built once, cached across sessions; never committed)."""
    from cosyvoice_runtime.tiny import default_model_dir

    return default_model_dir(2)


@pytest.fixture(scope="session")
def tiny_v1_dir() -> Path:
    from cosyvoice_runtime.tiny import default_model_dir

    return default_model_dir(1)


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    """A directory that passes the configure-time model check (a yaml) and loads nothing."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "cosyvoice2.yaml").write_text("# only the yaml: configure-time checks do not load it\n")
    return d


@pytest.fixture(scope="session")
def voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2.5 s voiced prompt at 16 kHz (62 prompt tokens, not a multiple of 25: the first hop is padded)."""
    from .runtime.helpers import write_voice

    return write_voice(tmp_path_factory.mktemp("audio") / "prompt.wav")


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.5 s source recording at 22.05 kHz for voice conversion."""
    from .runtime.helpers import write_voice

    return write_voice(tmp_path_factory.mktemp("audio") / "source.wav", seconds=1.5, rate=22050, seed=1)


@pytest.fixture(scope="session")
def warm_tiny(tiny_v2_dir: Path) -> Path:
    """The tiny v2 model directory, with everything its inner sessions import already imported.

    Inline pytester runs restore `sys.modules` to their snapshot afterwards: torch imported for the
    first time inside one would be dropped, and imported a second time by the next ("function
    '_has_torch_function' already has a docstring"). Being session-scoped, this runs before the
    function-scoped `pytester` takes its snapshot.
    """
    import cosyvoice_runtime
    from pytest_cosyvoice.host import default_prompt

    rt = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
    p = default_prompt()
    rt.synthesize("Hi.", prompt_wav=str(p.wav), prompt_text=p.text)
    try:
        from cosyvoice_runtime.upstream import UpstreamEngine

        UpstreamEngine(rt)
    except Exception:  # noqa: BLE001 - the upstream tests skip with the reason themselves
        pass
    return tiny_v2_dir


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner pytester sessions would append their Markdown to a CI job's real step summary
    (`--cosy-markdown` defaults to $GITHUB_STEP_SUMMARY): tests that want it set it themselves."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def build_xvector_dir(d: Path) -> Path:
    """A tiny random-weight WavLMForXVector directory (a local speaker-verification model for --cosy-sim;
    no download): the same weights each time, torch's global RNG left as it was."""
    import torch
    import transformers

    config = transformers.WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, conv_dim=(32, 32), conv_stride=(5, 4),
                                      conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=2, tdnn_dim=(32, 32), tdnn_kernel=(3, 1),
                                      tdnn_dilation=(1, 1), xvector_output_dim=16, classifier_proj_size=16)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformers.WavLMForXVector(config).save_pretrained(d)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(d)
    return d


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package the tests import)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "benchmarks"
                                                  / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
