"""Which runner and configuration a set of timings belongs to, and the software stack it ran on.

Baselines are keyed like asv's machines and Bencher's testbeds: a **runner** (a named machine) plus
the **configuration** under test (model identity, dtype, engine, device kind). The **stack**
(torch, CUDA, driver, Python, numpy, this package and its commit, the upstream component package)
is an attribute of every saved sample set and every history line, not part of the key: a torch
upgrade is compared with the old stack's baseline, and the verdict names what changed.

No pytest import here; torch is imported inside the functions that need it.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# Weight files whose sizes identify a model directory (content hashing GBs of weights per
# session would cost seconds; a re-trained model of the same architecture keeps its sizes, but
# its yaml or its speed does not change either, which is what a timing baseline cares about).
WEIGHT_FILES = ("llm.pt", "flow.pt", "hift.pt")
WEIGHT_GLOBS = ("*.onnx", "*.plan", "*.engine")

VALID_DTYPES = ("fp32", "fp16")
VALID_DEVICE_KINDS = ("cpu", "cuda")
# A runner name becomes a folder name under baselines/: letters, digits and . _ + - only.
RUNNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$")
RUNNER_HELP = "1-80 characters: letters, digits and . _ + - (starting with a letter or digit)"
# Stack entries in the order the report lists them; "commit" is this project's git HEAD.
STACK_FIELDS = ("torch", "cuda", "driver", "python", "numpy", "transformers", "onnxruntime",
                "pytest-cosyvoice", "commit", "upstream")


def check_runner(name: str) -> str:
    """`name` if it is a usable runner name, else ValueError naming it and the rule."""
    if not isinstance(name, str) or not RUNNER_RE.match(name):
        raise ValueError(f"runner name {name!r} is not usable: expected {RUNNER_HELP}")
    return name


def slugify(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", text).strip("-._+").lower()[:limit].rstrip("-._+") or "unknown"


def machine_id() -> str:
    """A stable id of this host: systemd/dbus machine-id, else the host name."""
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(p).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if text:
            return text
    return socket.gethostname() or "unknown-host"


def default_runner(device: str) -> str:
    """The runner name when none is given: the GPU model on CUDA (every runner with that GPU shares
    baselines, as a runner label per GPU model intends); on CPU the CPU model, its logical core count
    and a short hash of this host's machine id, so a CPU baseline never applies to another host."""
    if str(device).startswith("cuda"):
        import torch

        index = torch.device(device).index
        return slugify(torch.cuda.get_device_name(index if index is not None else 0))
    host = hashlib.sha256(machine_id().encode()).hexdigest()[:6]
    return f"{slugify(cpu_model(), 50)}-{os.cpu_count() or 0}c-{host}"


@dataclass(frozen=True)
class RunKey:
    """What a baseline belongs to: the runner and the configuration under test. Two sessions with
    equal keys are compared; their stacks may differ (that is what the verdict then names)."""

    runner: str
    device_kind: str        # "cpu" / "cuda"
    dtype: str              # "fp32" / "fp16"
    engine: str             # "fixed", "upstream" or a "module:factory" of the user's
    model_name: str         # the model directory's name
    model_hash: str         # short hash of the yaml config contents and weight file sizes

    def __post_init__(self) -> None:
        check_runner(self.runner)
        if self.device_kind not in VALID_DEVICE_KINDS:
            raise ValueError(f"device kind must be one of {VALID_DEVICE_KINDS}, got {self.device_kind!r}")
        if self.dtype not in VALID_DTYPES:
            raise ValueError(f"dtype must be one of {VALID_DTYPES}, got {self.dtype!r}")

    @classmethod
    def detect(cls, model_dir: str | Path, *, device: str, dtype: str = "fp32", engine: str = "fixed",
               runner: str | None = None) -> RunKey:
        name, digest = model_identity(model_dir)
        kind = "cuda" if str(device).startswith("cuda") else "cpu"
        return cls(runner=runner or default_runner(device), device_kind=kind, dtype=dtype, engine=engine,
                   model_name=name, model_hash=digest)

    def config_slug(self) -> str:
        """The configuration's file name stem (the runner is the folder): readable + a hash."""
        readable = slugify("_".join([self.model_name, self.device_kind, self.dtype, self.engine]), 90)
        return f"{readable}-{self.digest()}"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunKey:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"key lacks {', '.join(missing)}")
        return cls(**{n: str(data[n]) for n in names})

    def describe(self) -> str:
        """One line for terminal headers and report titles."""
        return f"runner {self.runner}: {self.config_description()}"

    def config_description(self) -> str:
        return f"model {self.model_name} [{self.model_hash}], {self.device_kind}, {self.dtype}, engine {self.engine}"


# -- the stack: an attribute of every run --------------------------------------------------------

def detect_stack(device: str, repo_dir: str | Path | None = None) -> dict[str, str]:
    """Versions of everything that can change a timing without a change of this repository's code."""
    import numpy
    import torch

    on_gpu = str(device).startswith("cuda")
    stack = {
        "torch": str(torch.__version__),
        "cuda": str(torch.version.cuda or getattr(torch.version, "hip", None) or "none") if on_gpu else "none",
        "driver": nvidia_driver_version() if on_gpu else "none",
        "python": platform.python_version(),
        "numpy": str(numpy.__version__),
        "transformers": _dist_version("transformers"),
        "onnxruntime": _dist_version("onnxruntime"),
        "pytest-cosyvoice": _dist_version("pytest-cosyvoice"),
        "commit": current_commit(repo_dir) or "none",
        "upstream": upstream_components(),
    }
    return stack


def stack_changes(before: dict[str, Any], after: dict[str, Any], *, with_commit: bool = True) -> list[str]:
    """'torch 2.9.1 -> 2.10.0' for every entry that differs (known fields first, then the rest)."""
    names = [n for n in STACK_FIELDS if n in before or n in after]
    names += sorted(n for n in {*before, *after} if n not in STACK_FIELDS)
    out = []
    for n in names:
        if n == "commit" and not with_commit:
            continue
        a, b = before.get(n, "none"), after.get(n, "none")
        if a != b:
            if n == "commit":
                a, b = str(a)[:10], str(b)[:10]
            out.append(f"{n} {a} -> {b}")
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
    return f"checkout {location}" + (f" @ {commit[:10]}" if commit else "")


# -- identities of machine parts -----------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


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


def model_identity(model_dir: str | Path) -> tuple[str, str]:
    """(directory name, 10-hex hash of the yaml contents and the weight file names and sizes)."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model directory {root} does not exist")
    h = hashlib.sha256()
    for yaml in sorted(root.glob("*.yaml")):
        h.update(b"yaml:" + yaml.name.encode() + b"\0" + yaml.read_bytes() + b"\0")
    weights = {root / n for n in WEIGHT_FILES if (root / n).is_file()}
    for pattern in WEIGHT_GLOBS:
        weights.update(p for p in root.glob(pattern) if p.is_file())
    for w in sorted(weights):
        h.update(f"weight:{w.name}:{w.stat().st_size}\0".encode())
    return root.resolve().name, h.hexdigest()[:10]


def current_commit(cwd: str | Path | None = None) -> str | None:
    """`git rev-parse HEAD`, or None outside a repository or without git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None
