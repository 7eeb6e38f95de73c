"""Which machine, software stack and model a set of timings belongs to.

Timings are only comparable when all of these match, so baselines are stored per `HardwareKey`.
No pytest import here; torch is imported inside `detect` so the report tools work without it.
"""
from __future__ import annotations

import hashlib
import json
import platform
import re
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
VALID_ENGINES = ("fixed", "upstream")


@dataclass(frozen=True)
class HardwareKey:
    """Identity of a timing context; two sessions with equal keys are comparable."""

    device_name: str        # GPU name, or the CPU model for device "cpu"
    cuda: str               # torch.version.cuda, "none" on CPU or a CPU-only torch
    driver: str             # NVIDIA driver version, "none" when not obtainable
    torch_version: str
    dtype: str              # "fp32" / "fp16"
    engine: str             # "fixed" / "upstream"
    model_name: str         # the model directory's name
    model_hash: str         # short hash of the yaml config contents and weight file sizes

    @classmethod
    def detect(cls, model_dir: str | Path, device: str = "cuda", dtype: str = "fp32",
               engine: str = "fixed") -> "HardwareKey":
        if dtype not in VALID_DTYPES:
            raise ValueError(f"dtype must be one of {VALID_DTYPES}, got {dtype!r}")
        if engine not in VALID_ENGINES:
            raise ValueError(f"engine must be one of {VALID_ENGINES}, got {engine!r}")
        import torch

        on_gpu = str(device).startswith("cuda")
        if on_gpu:
            index = torch.device(device).index
            device_name = torch.cuda.get_device_name(index if index is not None else 0)
            cuda = torch.version.cuda or getattr(torch.version, "hip", None) or "none"
            driver = nvidia_driver_version()
        else:
            device_name, cuda, driver = cpu_model(), "none", "none"
        name, digest = model_identity(model_dir)
        return cls(device_name=device_name, cuda=str(cuda), driver=driver,
                   torch_version=str(torch.__version__),
                   dtype=dtype, engine=engine, model_name=name, model_hash=digest)

    def slug(self) -> str:
        """A readable, filesystem-safe id; the trailing hash keeps it unique after sanitising."""
        readable = "_".join([self.device_name, f"cuda{self.cuda}" if self.cuda != "none" else "cpu",
                             f"torch{self.torch_version}", self.dtype, self.engine, self.model_name])
        readable = re.sub(r"[^A-Za-z0-9.+_-]+", "-", readable).strip("-._").lower()[:100]
        return f"{readable}-{self.digest()}"

    def digest(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HardwareKey":
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"hardware key lacks {', '.join(missing)}")
        return cls(**{n: str(data[n]) for n in names})

    def describe(self) -> str:
        """One line for terminal headers and report titles."""
        stack = "CPU" if self.cuda == "none" else f"CUDA {self.cuda}, driver {self.driver}"
        return (f"{self.device_name} ({stack}), torch {self.torch_version}, {self.dtype}, "
                f"engine {self.engine}, model {self.model_name} [{self.model_hash}]")


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
