"""The gate suites themselves run green on the embedded tiny model and write the report and a baseline.

The suites' timing thresholds are set wide open through COSY_GATE_* (users choose them; CI must not
fail on a slow machine): this test is about the suites working end to end, not about speed.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIDE_OPEN = {
    "COSY_GATE_MAX_RTF": "1000",
    "COSY_GATE_MAX_GAP_MS": "600000",
    "COSY_GATE_PREBUFFER_MS": "600000",
    "COSY_GATE_CONCURRENT_PREBUFFER_MS": "600000",
    "COSY_GATE_MAX_FIRST_CHUNK_MS": "600000",
    "COSY_GATE_RTF_REPEAT": "1",
}


def test_gate_suites_pass_and_write_the_report(tmp_path: Path, tiny_v2_dir: Path) -> None:
    reports, baselines = tmp_path / "reports", tmp_path / "baselines"
    env = {**os.environ, **WIDE_OPEN}
    env.pop("COSY_MODEL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-p", "no:cacheprovider", "-q", "-rs",
         f"--cosy-model={tiny_v2_dir}", "--cosy-device=cpu", f"--cosy-report={reports}",
         f"--cosy-baseline-dir={baselines}", "--cosy-save-baseline", f"--junitxml={tmp_path / 'junit.xml'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert " passed" in out and "failed" not in out.splitlines()[-1], out[-2000:]

    # Every test that measured something has rows in rtf.csv; the cold test is flagged cold.
    rows = list(csv.DictReader((reports / "rtf.csv").open()))
    nodeids = {r["nodeid"] for r in rows}
    assert any("test_stream[zero_shot-zh]" in n for n in nodeids)
    assert any("test_four_concurrent_streams" in n for n in nodeids)
    cold = {r["nodeid"] for r in rows if r["cold"] == "True"}
    assert cold == {"suites/test_cold_start.py::test_cold_then_warm_first_chunk"}, cold
    for name in ("index.html", "rtf_drift.png", "rtf_trend.png"):
        assert (reports / name).stat().st_size > 5_000, name
    assert len((reports / "history.jsonl").read_text().splitlines()) == 1
    saved = list(baselines.glob("*/*.json"))   # baselines/<runner>/<configuration>.json
    assert len(saved) == 1 and len(json.loads(saved[0].read_text())["tests"]) == len(nodeids - {""})
    junit = (tmp_path / "junit.xml").read_text()
    assert 'name="cold_first_chunk_ms"' in junit and 'name="tensors_left"' in junit
