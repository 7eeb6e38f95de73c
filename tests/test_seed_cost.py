"""benchmarks/seed_cost.py works end to end (two pairs on the tiny v2 model; no timing is judged) and
its interval is the Wilcoxon signed-rank one (exact critical values of the published tables)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def seed_cost() -> ModuleType:
    return load_benchmark("seed_cost")


@pytest.mark.parametrize("n,c", [(5, 0), (6, 1), (10, 9), (20, 53), (30, 138)])
def test_the_interval_cuts_the_signed_rank_tables_critical_count(seed_cost: ModuleType, n: int, c: int) -> None:
    # Two-sided 5 % lower critical values of the signed-rank statistic: n=6: 0, 10: 8, 20: 52, 30: 137;
    # the interval starts at the Walsh average one past it. n=5 has none (1/32 > 2.5 %).
    values = [math.sin(1.3 * k) + 0.01 * k for k in range(n)]
    walsh = sorted((values[i] + values[j]) / 2 for i in range(n) for j in range(i, n))
    _, lo, hi = seed_cost.walsh_interval(values)
    if c == 0:
        assert lo is None and hi is None
    else:
        assert (lo, hi) == (pytest.approx(walsh[c - 1]), pytest.approx(walsh[-c]))


def test_the_hodges_lehmann_ratio_is_the_median_walsh_average_of_the_logs(seed_cost: ModuleType) -> None:
    est, lo, hi = seed_cost.hodges_lehmann([1.0, 1.1, 1.2])
    # Walsh averages of the logs: the logs themselves and the three pairwise means; their median.
    logs = sorted([0.0, math.log(1.1), math.log(1.2), math.log(1.1) / 2, math.log(1.2) / 2,
                   (math.log(1.1) + math.log(1.2)) / 2])
    assert est == pytest.approx(math.exp((logs[2] + logs[3]) / 2))
    assert lo is None and hi is None      # three pairs: no 95 % interval
    ratios = [1.0 + 0.01 * k for k in range(-5, 15)]
    est, lo, hi = seed_cost.hodges_lehmann(ratios)
    assert lo is not None and hi is not None and lo < est < hi and min(ratios) < lo and hi < max(ratios)


def test_the_benchmark_runs_and_writes_its_raw_pairs(seed_cost: ModuleType, tiny_v2_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert seed_cost.main(["--pairs", "2", "--model", str(tiny_v2_dir), "--out", str(tmp_path),
                           "--name", "try"]) == 0
    data = json.loads((tmp_path / "try.json").read_text(encoding="utf-8"))
    assert len(data["pairs"]) == 2 and data["device"] == "cpu"
    for pair in data["pairs"]:
        for side in ("seeded", "unseeded"):
            m = pair[side]
            assert 0 < m["first_chunk_s"] <= m["wall_s"] and m["audio_s"] > 0
            assert m["rtf"] == pytest.approx(m["wall_s"] / m["audio_s"])
    assert data["summary"]["rtf"]["n"] == 2 and data["summary"]["first_chunk_s"]["ci95"] == [None, None]
    out = capsys.readouterr().out
    assert "| first chunk | 2 |" in out and "| RTF | 2 |" in out


def test_the_draw_site_benchmark_runs_and_writes_its_raw_pairs(tiny_v2_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    sites = load_benchmark("seed_sites")
    assert sites.main(["--reps", "6", "--streams", "1", "--model", str(tiny_v2_dir), "--out", str(tmp_path),
                       "--name", "try"]) == 0
    data = json.loads((tmp_path / "try.json").read_text(encoding="utf-8"))
    # What one stream's draw sites were given: a sampler call per generated token (at least), one
    # source-module call per vocoder piece, and fewer sampler calls before the first chunk than in all.
    assert data["pieces"] >= 1 and data["sampler_calls"] >= 1
    assert 0 < data["sampler_calls_before_first_chunk"] <= data["sampler_calls"]
    for part in ("request", "first_chunk"):
        assert len(data["pairs"][part]) == 6 and data["summary"][part]["n"] == 6
        assert all(p["seeded"] > 0 and p["unseeded"] > 0 for p in data["pairs"][part])
        lo, hi = data["summary"][part]["ci95_ms"]
        assert lo is not None and hi is not None and lo <= data["summary"][part]["extra_ms"] <= hi
    assert "| whole request | 6 |" in capsys.readouterr().out


def test_walsh_interval_on_differences(seed_cost: ModuleType) -> None:
    est, lo, hi = seed_cost.walsh_interval([float(k) for k in range(-3, 7)])
    assert est == pytest.approx(1.5) and lo is not None and hi is not None and lo < 1.5 < hi
