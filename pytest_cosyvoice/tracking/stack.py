"""The software stack a session ran on, and the one wording of what changed between two stacks.

The stack (torch, CUDA, driver, Python, numpy, transformers, onnxruntime, this package and its
commit, the upstream component package) is recorded with every saved baseline sample set and every
history line; it is not part of the run key (pytest_cosyvoice.tracking.runkey). `stack_changes`
names the differences, for the terminal and report ("stack changed since the baseline") and for
the change points over the history (`changepoints.what_changed`), in the same words.

No pytest import here; torch and numpy are imported inside `detect_stack`.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Stack entries in the order the report lists them; "commit" is this project's git HEAD.
STACK_FIELDS = ("torch", "cuda", "driver", "python", "numpy", "transformers", "onnxruntime",
                "pytest-cosyvoice", "commit", "upstream")
# How much of a commit hash is shown: git's own default abbreviation.
COMMIT_CHARS = 7


def interpreter_versions() -> dict[str, str]:
    """This interpreter's python, torch, torchaudio, numpy and pytest-cosyvoice ("none" for what is not
    installed): what any side of a session (the head, a base side in this interpreter or a base worker in
    another) records of itself."""
    out = {"python": platform.python_version()}
    for name in ("torch", "torchaudio", "numpy"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            out[name] = "none"
        else:
            out[name] = str(getattr(module, "__version__", "unknown"))
    return out | {"pytest-cosyvoice": _dist_version("pytest-cosyvoice")}


def detect_stack(device: str, repo_dir: str | Path | None = None) -> dict[str, str]:
    """Versions of everything that can change a timing without a change of this repository's code."""
    import torch

    on_gpu = str(device).startswith("cuda")
    own = interpreter_versions()
    stack = {
        "torch": own["torch"],
        "cuda": str(torch.version.cuda or getattr(torch.version, "hip", None) or "none") if on_gpu else "none",
        "driver": nvidia_driver_version() if on_gpu else "none",
        "python": own["python"],
        "numpy": own["numpy"],
        "transformers": _dist_version("transformers"),
        "onnxruntime": _dist_version("onnxruntime"),
        "pytest-cosyvoice": own["pytest-cosyvoice"],
        "commit": current_commit(repo_dir) or "none",
        "upstream": upstream_components(),
    }
    return stack


def short_commit(commit: object) -> str:
    """A commit as shown everywhere: its first COMMIT_CHARS characters, "unknown" when none is
    recorded (None, empty, or the "none" detect_stack writes outside a git checkout)."""
    text = "" if commit is None else str(commit)
    return text[:COMMIT_CHARS] if text and text != "none" else "unknown"


def _order(name: str) -> tuple[int, str]:
    # Known fields in STACK_FIELDS order, then any other recorded entry (e.g. a history line's
    # runner) alphabetically; the commit is listed apart, last.
    return (STACK_FIELDS.index(name) if name in STACK_FIELDS else len(STACK_FIELDS), name)


def stack_changes(before: Mapping[str, Any], after: Mapping[str, Any], *, with_commit: bool = True) -> list[str]:
    """'torch 2.9.1 -> 2.10.0' for every entry both stacks record that differs, then (with_commit)
    'commit abc1234 -> def5678' when the commits differ.

    An entry only one side records is not a change: a stack saved before a field was added would
    otherwise list that field as changed. The commit is compared even when one side lacks it (it
    shows as "unknown"): which code ran is always worth naming. Entries recorded as None count as
    not recorded."""
    a = {str(k): str(v) for k, v in before.items() if v is not None and k != "commit"}
    b = {str(k): str(v) for k, v in after.items() if v is not None and k != "commit"}
    out = [f"{n} {a[n]} -> {b[n]}" for n in sorted(a.keys() & b.keys(), key=_order) if a[n] != b[n]]
    if with_commit:
        ca, cb = short_commit(before.get("commit")), short_commit(after.get("commit"))
        if ca != cb:
            out.append(f"commit {ca} -> {cb}")
    return out


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def upstream_components() -> str:
    """Where the upstream `cosyvoice` component classes come from: the distribution that installed
    them and its version, or the checkout on the path (and its commit) when a team uses its own."""
    spec = importlib.util.find_spec("cosyvoice")
    if spec is None or not spec.submodule_search_locations:
        return "none"
    location = Path(list(spec.submodule_search_locations)[0])
    for dist in importlib.metadata.packages_distributions().get("cosyvoice", []):
        try:
            files = importlib.metadata.files(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        if any(Path(str(f.locate())).resolve().is_relative_to(location.resolve()) for f in files[:50]):
            return f"{dist} {_dist_version(dist)}"
    commit = current_commit(location)
    # Ten characters, not short_commit's: this text is stored in every baseline's stack, and a
    # shorter one would show as an "upstream" change against every baseline saved before.
    return f"checkout {location}" + (f" @ {commit[:10]}" if commit else "")



def nvidia_driver_version() -> str:
    """The kernel driver's version: /proc first (no subprocess), then nvidia-smi."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text(errors="replace")
        match = re.search(r"Kernel Module\s+([0-9][0-9.]*)", text)
        if match:
            return match.group(1)
    except OSError:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        first = out.strip().splitlines()[0].strip() if out.strip() else ""
        if first:
            return first
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return "none"



def current_commit(cwd: str | Path | None = None) -> str | None:
    """`git rev-parse HEAD`, or None outside a repository or without git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None
