"""A pytest plugin for one measuring session, not part of the product: `-p benchmarks.deterministic`
switches on `torch.use_deterministic_algorithms(True, warn_only=True)` at configure, so a session can
tell whether torch's deterministic kernels make seeded outputs repeat (benchmarks/gpu_check.sh, part c).

warn_only: an op that has no deterministic kernel warns instead of raising, so the session still runs
to its end; each such warning's first line is appended to the file named by COSY_NONDETERMINISM_LOG
(when set; created empty at configure, so its presence shows the switch was on): the ops that still run
nondeterministically. cuBLAS needs CUBLAS_WORKSPACE_CONFIG=:4096:8
(or :16:8) in the environment before CUDA starts for its matmuls to be deterministic; the script sets it.
"""
from __future__ import annotations

import os
from typing import Any

LOG_ENV = "COSY_NONDETERMINISM_LOG"


def pytest_configure(config: Any) -> None:
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    path = os.environ.get(LOG_ENV)
    if path:   # created empty: its presence says the switch was on in this session
        open(path, "a", encoding="utf-8").close()


def pytest_warning_recorded(warning_message: Any, when: str, nodeid: str, location: Any) -> None:
    text = str(warning_message.message)
    path = os.environ.get(LOG_ENV)
    if path and "deterministic" in text:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text.splitlines()[0] + "\n")
