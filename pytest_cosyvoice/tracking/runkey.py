"""Which runner and configuration a set of timings belongs to.

Baselines are keyed like asv's machines and Bencher's testbeds: a **runner** (a named machine) plus
the **configuration** under test (model identity, dtype, engine, device kind). The **stack**
(torch, CUDA, driver, Python, numpy, this package and its commit, the upstream component package)
is an attribute of every saved sample set and every history line, not part of the key: a torch
upgrade is compared with the old stack's baseline, and the verdict names what changed
(pytest_cosyvoice.tracking.stack).

No pytest import here; torch is imported inside the functions that need it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
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


# -- identities of machine parts -----------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


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
