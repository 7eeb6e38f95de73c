"""benchmarks/gpu_check.sh, the first run on a GPU, rehearsed on the CPU: `--device cpu --quick` runs every
part with the tiny model and the fewest rounds and writes summary.md plus one JSON per part with the keys
the GPU run will fill; the parts (or rows) that need CUDA say "skipped: no CUDA".

On this project's shared 2-core CPU a part may outlast its share of the budget: a part that timed out
is recorded as "failed: timeout ..." and accepted here (the machine was slow); any other failure (an
exception, a wrong command line, a missing file) fails the test."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import COMMON_KEYS, NO_CUDA, PART_KEYS, PARTS

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def acceptable(status: str) -> bool:
    return status.startswith(("ok", "skipped: ")) or (status.startswith("failed: ") and "timeout" in status)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    return out, proc


def part(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text(encoding="utf-8"))


def test_the_dry_run_writes_a_summary_and_every_part(dry_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, proc = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "total" in summary and "budget" in summary
    for name in PARTS:
        data = part(out, name)
        for key in (*COMMON_KEYS, *PART_KEYS[name]):
            assert key in data, f"{name}.json lacks {key!r}: {sorted(data)}"
        assert data["part"] == name and data["device"] == "cpu"
        assert acceptable(data["status"]), f"{name}: {data['status']}\n{data.get('log_tail')}"
        assert f"| {name} | {data['status']} |" in summary


def test_cuda_only_figures_say_skipped_on_cpu(dry_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = dry_run
    runs = part(out, "a_speed")["runs"]
    fp16 = [r for r in runs if r["dtype"] == "fp16"]
    assert sorted(r["engine"] for r in fp16) == ["runtime", "upstream"]
    assert all(r["status"] == NO_CUDA for r in fp16)
    assert part(out, "d_soak")["cuda"] == NO_CUDA
    assert f"CUDA memory: {NO_CUDA}." in (out / "summary.md").read_text(encoding="utf-8")


def test_measured_figures_are_there_unless_the_part_timed_out(
        dry_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = dry_run
    speed = part(out, "a_speed")
    for r in (r for r in speed["runs"] if r["dtype"] == "fp32" and r["status"].startswith("ok")):
        assert r["cold"]["first_chunk_s"] > 0 and r["cold"]["tokens"] > 0
        assert all(w["rtf"] > 0 for w in r["warm"])
    gate = part(out, "b_gate")
    if gate["status"] == "ok":
        assert gate["tests"] == gate["passed"] == 1 and gate["figures"]
    quality = part(out, "c_quality")
    assert quality["sessions"]["plain"]["status"].startswith("skipped: ")   # --quick runs one pair
    det = quality["sessions"]["deterministic"]
    if det["status"] == "ok":
        # A rerun of the saved session on the same CPU, seeded: the tokens are the golden's.
        assert det["tests"] == 1 and det["token_calls"] >= 1
        assert det["token_calls_identical"] == det["token_calls"]
        assert det["deterministic_switched_on"] and isinstance(det["nondeterministic_ops"], list)
    soak = part(out, "d_soak")
    if soak["status"] == "ok":
        assert soak["streams"] == 5 and soak["rss_mb"]["after"] > 0 and soak["active_requests_after"] == 0
    seed = part(out, "e_seed_cost")
    if not (ROOT / "benchmarks" / "seed_cost.py").is_file():
        assert seed["status"] == "skipped: benchmarks/seed_cost.py is not in this checkout"
    elif seed["status"] == "ok":   # whole streams and the draw sites' work, both written
        assert {"cpu.json", "sites-cpu.json"} <= set(seed["results"])


# -- the summarising side, without running anything ------------------------------------------------------
def test_a_rerun_is_bit_identical_only_when_every_token_and_snr_check_is(tmp_path: Path) -> None:
    from benchmarks.gpu_check import judge_rerun

    def check(name: str, status: str, figure: object) -> dict:
        return {"name": name, "call": "c0", "status": status, "figure": figure, "limit": 40.0, "text": ""}

    same = [check("tokens", "pass", None), check("token2wav", "pass", "inf"), check("audio", "pass", "inf"),
            check("streamed_vs_offline", "pass", 0.5)]
    q = tmp_path / "quality.json"
    q.write_text(json.dumps({"schema": 1, "tests": {"t1": {"checks": same}}}))
    r = judge_rerun(q)
    assert r["bit_identical"] and r["snr_checks"] == r["snr_checks_identical"] == 2 and r["min_snr_db"] is None
    close = [*same[:2], check("audio", "pass", 71.5)]
    q.write_text(json.dumps({"schema": 1, "tests": {"t1": {"checks": same}, "t2": {"checks": close}}}))
    r = judge_rerun(q)
    assert not r["bit_identical"] and r["snr_checks_identical"] == 3 and r["min_snr_db"] == 71.5
    drifted = [check("tokens", "pass", 12.0), check("token2wav", "pass", "inf"), check("audio", "note", None)]
    q.write_text(json.dumps({"schema": 1, "tests": {"t1": {"checks": drifted}}}))
    r = judge_rerun(q)
    assert not r["bit_identical"] and (r["token_calls"], r["token_calls_identical"]) == (1, 0)


def test_the_summary_records_a_part_that_died_or_never_ran(tmp_path: Path) -> None:
    from benchmarks.gpu_check import main

    log = tmp_path / "logs" / "a_speed.log"
    log.parent.mkdir()
    log.write_text("Traceback ...\nRuntimeError: CUDA error: out of memory\n")
    (tmp_path / "parts.tsv").write_text(f"a_speed\t124\t190.2\t189\t{log}\nb_gate\t1\t3.0\t50\t{log}\n")
    assert main(["summary", "--out", str(tmp_path), "--device", "cuda", "--parts", str(tmp_path / "parts.tsv"),
                 "--total-s", "200", "--budget-s", "460"]) == 0
    a, b = part(tmp_path, "a_speed"), part(tmp_path, "b_gate")
    assert a["status"] == "failed: timeout" and a["log_tail"][-1].endswith("out of memory") and a["runs"] == []
    assert b["status"] == "failed: exit 1" and b["tests"] == 0 and b["limit_s"] == 50
    for name in ("c_quality", "d_soak", "e_seed_cost"):
        assert part(tmp_path, name)["status"] == "skipped: not run (out of budget)"
        assert all(k in part(tmp_path, name) for k in PART_KEYS[name])
    summary = (tmp_path / "summary.md").read_text()
    assert "| a_speed | failed: timeout | 190 | 189 |" in summary and "out of memory" in summary
