"""Run keys (runner + configuration) and the stack as an attribute: derivation, validation, what changed."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_cosyvoice.tracking import runkey
from pytest_cosyvoice.tracking import stack as stack_module
from pytest_cosyvoice.tracking.runkey import RunKey, check_runner, default_runner
from pytest_cosyvoice.tracking.stack import detect_stack, short_commit, stack_changes

from .test_baseline import _model_dir


def test_cpu_runner_names_the_cpu_cores_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runkey, "cpu_model", lambda: "AMD EPYC 7B13 64-Core Processor")
    monkeypatch.setattr(runkey.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runkey, "machine_id", lambda: "host-a")
    a = default_runner("cpu")
    monkeypatch.setattr(runkey, "machine_id", lambda: "host-b")
    b = default_runner("cpu")
    assert a.startswith("amd-epyc-7b13-64-core-processor-2c-") and b.startswith("amd-epyc-7b13-64-core-processor-2c-")
    assert a != b, "two hosts with the same CPU name must not share a CPU baseline"
    assert check_runner(a) == a


def test_key_detection_on_cpu(tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    key = RunKey.detect(d, device="cpu", dtype="fp32", engine="upstream")
    assert key.runner == default_runner("cpu") and key.device_kind == "cpu"
    assert key.dtype == "fp32" and key.engine == "upstream"
    assert key.model_name == "CosyVoice2-0.5B" and len(key.model_hash) == 10
    assert RunKey.from_dict(key.to_dict()) == key
    named = RunKey.detect(d, device="cpu", runner="ci-gpu-1", engine="mypkg.engines:build")
    assert named.runner == "ci-gpu-1" and named.engine == "mypkg.engines:build"
    slug = named.config_slug()
    assert "/" not in slug and " " not in slug and ":" not in slug and slug == slug.lower()
    assert "cosyvoice2-0.5b" in slug and "fp32" in slug


def test_the_stack_is_not_part_of_the_key(tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    import torch

    stack = detect_stack("cpu", tmp_path)
    assert stack["torch"] == torch.__version__ and stack["cuda"] == "none" and stack["driver"] == "none"
    assert stack["upstream"].startswith(("cosyvoice-minicpmo", "checkout ")), stack["upstream"]
    assert set(stack_module.STACK_FIELDS) <= set(stack)
    assert "torch" not in RunKey.detect(d, device="cpu").to_dict()


def test_stack_changes_name_what_changed() -> None:
    old = {"torch": "2.9.1", "cuda": "12.8", "commit": "a" * 40, "numpy": "2.4.6", "runner": "h100"}
    new = {"torch": "2.10.0", "cuda": "12.8", "commit": "b" * 40, "numpy": "2.5.0", "extra": "1",
           "runner": "h200", "upstream": "cosyvoice-minicpmo 0.1.0"}
    # Known fields in STACK_FIELDS order, then other entries alphabetically, the commit last (cut
    # like git's short hash); an entry only one side records ("extra", "upstream") is not a change.
    assert stack_changes(old, new) == ["torch 2.9.1 -> 2.10.0", "numpy 2.4.6 -> 2.5.0", "runner h100 -> h200",
                                       "commit aaaaaaa -> bbbbbbb"]
    assert stack_changes(old, new, with_commit=False) == ["torch 2.9.1 -> 2.10.0", "numpy 2.4.6 -> 2.5.0",
                                                          "runner h100 -> h200"]
    assert stack_changes(old, dict(old)) == []
    # The commit is named even when one side has none recorded.
    assert stack_changes({"commit": "none"}, {"commit": "c" * 40}) == ["commit unknown -> ccccccc"]


def test_short_commit() -> None:
    assert short_commit("0123456789abcdef") == "0123456"
    assert short_commit(None) == short_commit("") == short_commit("none") == "unknown"


@pytest.mark.parametrize("name", ["", "gpu runner", "../etc", "a/b", "-x", "ä", "x" * 81])
def test_bad_runner_names_are_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match="runner name .* letters, digits"):
        check_runner(name)
    with pytest.raises(ValueError):
        RunKey(runner=name, device_kind="cpu", dtype="fp32", engine="fixed", model_name="m", model_hash="h")


def test_key_rejects_bad_arguments(tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        RunKey.detect(d, device="cpu", dtype="bf16")
    with pytest.raises(FileNotFoundError):
        RunKey.detect(tmp_path / "missing", device="cpu")


def test_config_slug_is_unique_after_sanitising() -> None:
    base = dict(runner="r", device_kind="cpu", dtype="fp32", engine="fixed", model_name="m", model_hash="h")
    a = RunKey(**{**base, "model_name": "model/A"})
    b = RunKey(**{**base, "model_name": "model A"})
    assert a.config_slug() != b.config_slug()
    assert len(RunKey(**{**base, "model_name": "m" * 300}).config_slug()) < 120
