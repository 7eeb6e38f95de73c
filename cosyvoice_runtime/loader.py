"""Reads a released CosyVoice model directory: the yaml through hyperpyyaml, the three state dicts,
the ONNX frontends and spk2info.pt. Every failure names the file and what was expected."""
from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

log = logging.getLogger("cosyvoice_runtime")

# Newest first: a directory carries exactly one of these in the released layouts.
YAML_VERSIONS: tuple[tuple[str, int], ...] = (
    ("cosyvoice3.yaml", 3),
    ("cosyvoice2.yaml", 2),
    ("cosyvoice.yaml", 1),
)
YAML_NAMES: dict[int, str] = {version: name for name, version in YAML_VERSIONS}  # version -> file name
BLANK_EN = "CosyVoice-BlankEN"  # v2/v3: the Qwen2 weights and tokenizer the yaml points at
INSTALL_HINT = (
    "install the upstream CosyVoice component classes, e.g. "
    "`pip install --no-deps cosyvoice-minicpmo==0.1.0` plus `pip install pytest-cosyvoice[components]`, "
    "or put an upstream CosyVoice checkout (and its third_party/Matcha-TTS) on PYTHONPATH"
)
REQUIRED_YAML_KEYS = ("llm", "flow", "hift", "get_tokenizer", "feat_extractor", "sample_rate")


@dataclass
class ModelFiles:
    """Paths of one model directory, checked to exist."""

    root: Path
    version: int
    yaml: Path
    llm: Path
    flow: Path
    hift: Path
    campplus: Path
    speech_tokenizer: Path
    spk2info: Path | None
    blank_en: Path | None


@dataclass
class LoadedModel:
    files: ModelFiles
    configs: dict[str, Any]
    llm: Any
    flow: Any
    hift: Any
    spk2info: dict[str, Any] = field(default_factory=dict)


def detect_version(model_dir: str | os.PathLike[str]) -> tuple[Path, int]:
    """The yaml of a model directory and its CosyVoice version; ModelLoadError when it is not one."""
    if not isinstance(model_dir, (str, os.PathLike)):
        raise ModelLoadError(f"model_dir={model_dir!r}: expected the path of a model directory (str or os.PathLike)")
    root = Path(model_dir)
    if not root.exists():
        raise ModelLoadError(f"model directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise ModelLoadError(f"model path {str(root)!r} is not a directory")
    for name, version in YAML_VERSIONS:
        if (root / name).is_file():
            return root / name, version
    found = sorted(p.name for p in root.glob("*.yaml"))
    raise ModelLoadError(
        f"{str(root)!r} is not a CosyVoice model directory: expected one of "
        f"{', '.join(n for n, _ in YAML_VERSIONS)}, found {found or 'no yaml file'}"
    )


def locate(model_dir: str | os.PathLike[str]) -> ModelFiles:
    yaml_path, version = detect_version(model_dir)
    root = yaml_path.parent

    def need(name: str, what: str) -> Path:
        p = root / name
        if not p.is_file():
            raise ModelLoadError(f"{str(root)!r}: missing {name} ({what})")
        return p

    blank = root / BLANK_EN
    if version >= 2 and not blank.is_dir():
        raise ModelLoadError(
            f"{str(root)!r}: missing {BLANK_EN}/ (the Qwen2 weights and tokenizer a v{version} yaml needs)"
        )
    spk = root / "spk2info.pt"
    return ModelFiles(
        root=root,
        version=version,
        yaml=yaml_path,
        llm=need("llm.pt", "LLM state dict"),
        flow=need("flow.pt", "flow state dict"),
        hift=need("hift.pt", "HiFT vocoder state dict"),
        campplus=need("campplus.onnx", "speaker-embedding ONNX model"),
        speech_tokenizer=need(f"speech_tokenizer_v{version}.onnx", "speech tokenizer ONNX model"),
        spk2info=spk if spk.is_file() else None,
        blank_en=blank if version >= 2 else None,
    )


def require_upstream() -> None:
    for mod in ("cosyvoice", "hyperpyyaml"):
        if importlib.util.find_spec(mod) is None:
            raise ModelLoadError(f"the Python package {mod!r} is not installed: {INSTALL_HINT}")


def build_yaml(text: str, overrides: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """The objects a CosyVoice yaml describes. Upstream's classes warn while they are built (diffusers'
    LoRACompatibleLinear in matcha, ...): facts about the installed components, not about a request,
    so they are logged once here instead of surfacing inside the user's first test."""
    from hyperpyyaml import load_hyperpyyaml

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        configs: dict[str, Any] = load_hyperpyyaml(text, overrides=overrides)
    for w in {(w.category.__name__, str(w.message)): w for w in seen}.values():
        log.info("while building %s: %s: %s (%s:%d)", name, w.category.__name__, w.message, w.filename, w.lineno)
    return configs


def read_configs(files: ModelFiles) -> dict[str, Any]:
    require_upstream()
    try:
        text = files.yaml.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{files.yaml}: cannot be read as UTF-8 text ({type(e).__name__}: {e})") from e
    overrides = {}
    if files.blank_en is not None and "qwen_pretrain_path" in text:
        overrides["qwen_pretrain_path"] = str(files.blank_en)
    try:
        configs = build_yaml(text, overrides or None, files.yaml.name)
    except ModuleNotFoundError as e:
        raise ModelLoadError(f"{files.yaml}: the yaml needs module {e.name!r}: {INSTALL_HINT}") from e
    except Exception as e:  # hyperpyyaml raises many kinds; all mean "this yaml cannot be built"
        raise ModelLoadError(f"{files.yaml}: could not build the model from the yaml: {type(e).__name__}: {e}") from e
    missing = [k for k in REQUIRED_YAML_KEYS if k not in configs]
    if missing:
        raise ModelLoadError(f"{files.yaml}: missing keys {missing}; "
                             f"a CosyVoice yaml defines {list(REQUIRED_YAML_KEYS)}")
    return configs


def load_state(module: Any, path: Path, *, strip_prefix: str = "") -> None:
    """Loads a state dict with weights_only=True and strict keys into ``module`` (dtype cast on copy)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with objects, not a torch file at all
        raise ModelLoadError(f"{path}: not a readable weights-only torch state dict ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: expected a state dict (mapping of names to tensors), got {type(state).__name__}")
    if strip_prefix:
        state = {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelLoadError(
            f"{path}: state dict keys do not match the module the yaml builds "
            f"({type(module).__name__}): {len(missing)} missing {missing[:5]}, "
            f"{len(unexpected)} unexpected {unexpected[:5]}"
        )
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise ModelLoadError(
            f"{path}: {len(bad)} tensors have the wrong shape, e.g. {k}: file {tuple(state[k].shape)}, "
            f"module {tuple(own[k].shape)}"
        )
    module.load_state_dict(state, strict=True)


def load_spk2info(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    import torch

    try:
        info = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"{path}: not a readable weights-only torch file ({type(e).__name__}: {e})") from e
    if not isinstance(info, dict):
        raise ModelLoadError(f"{path}: expected a mapping of speaker id to info, got {type(info).__name__}")
    return info


def load_model(model_dir: str | os.PathLike[str]) -> LoadedModel:
    files = locate(model_dir)
    configs = read_configs(files)
    llm, flow, hift = configs["llm"], configs["flow"], configs["hift"]
    load_state(llm, files.llm)
    load_state(flow, files.flow)
    # Released hift.pt files of some versions carry a "generator." prefix (HiFiGan training wrapper).
    load_state(hift, files.hift, strip_prefix="generator.")
    # The few places that draw random numbers enter a seeded request's draws (draw_sites.py): marked once
    # here, on the components this loader built, so a request pays for its seed only at its draws.
    from .draw_sites import attach_draw_sites

    attach_draw_sites(files.version, llm, flow, hift)
    return LoadedModel(files=files, configs=configs, llm=llm, flow=flow, hift=hift,
                       spk2info=load_spk2info(files.spk2info))
