"""The golden store: bit-exact round trip, scores appended and capped, calls replaced, every bad file named
and left as it was, size bounds."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pytest_cosyvoice.judging.quality_results import CallOutput, TestQuality
from pytest_cosyvoice.tracking import goldens as g
from pytest_cosyvoice.tracking.goldens import (
    MAX_CALL_SECONDS,
    MAX_CALLS_PER_TEST,
    MAX_SCORES,
    GoldenCall,
    GoldenError,
    GoldenStore,
    GoldenTest,
)
from pytest_cosyvoice.tracking.runkey import RunKey

KEY = RunKey("cpu-runner", "cpu", "fp32", "fixed", "tiny", "0123456789")
RATE = 24000


def noise(n: int, seed: int) -> np.ndarray:
    # Full float32 mantissas: a lossy or float64 round trip would show.
    out: np.ndarray = np.random.default_rng(seed).standard_normal(n).astype(np.float32) * np.float32(0.1)
    return out


def call(label: str = "synthesize#0", seed: int = 7, n: int = 4800) -> GoldenCall:
    return GoldenCall(label=label, kind="synthesize", seed=seed, sample_rate=RATE, tokens=[5, 9, 2, seed],
                      audio=noise(n, seed), rendered=noise(n, seed + 1), text="Hello there.")


def golden(nodeid: str, *calls: GoldenCall, **scores: float) -> GoldenTest:
    return GoldenTest(nodeid, list(calls), {k: [v] for k, v in scores.items()})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def saved(tmp_path: Path) -> tuple[GoldenStore, Path]:
    store = GoldenStore(tmp_path / "baselines")
    folder = store.save(KEY, [golden("suites/q.py::a", call(), call("stream#1", 8), dnsmos=3.0),
                              golden("suites/q.py::b", call(seed=9))])
    return store, folder


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path / "baselines")
    assert store.load(KEY) is None
    a, b = call(), call("stream#1", 8)
    b.rendered = None
    folder = store.save(KEY, [golden("suites/q.py::a[x/y]", a, b, dnsmos=3.0, wer=0.1)])
    assert folder == tmp_path / "baselines" / KEY.runner / f"{KEY.config_slug()}.goldens"
    doc = json.loads((folder / "index.json").read_text())
    assert doc["schema"] == 1 and doc["key"] == KEY.to_dict()
    loaded = store.load(KEY)
    assert loaded is not None and loaded.key == KEY and list(loaded.tests) == ["suites/q.py::a[x/y]"]
    t = loaded.tests["suites/q.py::a[x/y]"]
    assert t.scores == {"dnsmos": [3.0], "wer": [0.1]}
    assert [c.label for c in t.calls] == ["synthesize#0", "stream#1"]
    got = t.calls[0]
    assert (got.kind, got.seed, got.sample_rate, got.tokens, got.text) == ("synthesize", 7, RATE, [5, 9, 2, 7],
                                                                           "Hello there.")
    assert got.audio is not None and a.audio is not None and got.audio.dtype == np.float32
    assert got.audio.tobytes() == a.audio.tobytes()
    assert got.rendered is not None and a.rendered is not None and got.rendered.tobytes() == a.rendered.tobytes()
    assert t.calls[1].rendered is None and t.call("stream#1") is t.calls[1] and t.call("nope") is None


def test_scores_are_appended_and_capped_calls_replaced(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path / "baselines")
    for i in range(MAX_SCORES + 3):
        store.save(KEY, [golden("suites/q.py::a", call(seed=i), dnsmos=float(i))])
    store.save(KEY, [golden("suites/q.py::other", call(seed=99))])    # other tests are kept
    loaded = store.load(KEY)
    assert loaded is not None
    t = loaded.tests["suites/q.py::a"]
    assert t.scores["dnsmos"] == [float(i) for i in range(3, MAX_SCORES + 3)]   # newest last, 20 kept
    assert len(t.calls) == 1 and t.calls[0].seed == MAX_SCORES + 2                # the last save's calls
    assert t.calls[0].audio is not None and t.calls[0].audio.tobytes() == noise(4800, MAX_SCORES + 2).tobytes()
    assert set(loaded.tests) == {"suites/q.py::a", "suites/q.py::other"}


def test_from_quality_keeps_only_a_render_of_its_own_tokens(tmp_path: Path) -> None:
    own = CallOutput("synthesize#0", "synthesize", 1, RATE, "Hi.", [1, 2, 3], noise(100, 1), rendered=noise(100, 2))
    other = CallOutput("synthesize#1", "synthesize", 2, RATE, "Hi.", [1, 2, 3], noise(100, 3),
                       rendered=noise(100, 4), rendered_tokens=[1, 2, 4], mos={"dnsmos": 3.0}, wer=0.2)
    gt = GoldenTest.from_quality(TestQuality("suites/q.py::a", [own, other]))
    assert gt.calls[0].rendered is not None and gt.calls[1].rendered is None
    assert gt.scores == {"dnsmos": [3.0], "wer": [0.2]}
    store = GoldenStore(tmp_path / "baselines")
    store.save(KEY, [gt])
    loaded = store.load(KEY)
    assert loaded is not None
    back = loaded.tests["suites/q.py::a"]
    assert back.calls[0].audio.tobytes() == own.audio.tobytes()  # type: ignore[union-attr]
    assert back.calls[0].tokens == [1, 2, 3] and back.scores == gt.scores and back.calls[1].rendered is None


def _break_missing(folder: Path) -> Path:
    p = folder / g.file_name("suites/q.py::a")
    p.unlink()
    return p


def _break_truncated(folder: Path) -> Path:
    p = folder / g.file_name("suites/q.py::a")
    p.write_bytes(p.read_bytes()[:-40])
    return p


def _break_swapped(folder: Path) -> Path:
    p = folder / g.file_name("suites/q.py::a")
    p.write_bytes((folder / g.file_name("suites/q.py::b")).read_bytes())
    return p


def _break_not_npz(folder: Path) -> Path:
    p = folder / g.file_name("suites/q.py::a")
    p.write_text("not a zip\n")
    return p


def _break_index_json(folder: Path) -> Path:
    p = folder / "index.json"
    p.write_text("{ not json")
    return p


def _break_schema(folder: Path) -> Path:
    p = folder / "index.json"
    doc = json.loads(p.read_text())
    doc["schema"] = 99
    p.write_text(json.dumps(doc))
    return p


def _break_key(folder: Path) -> Path:
    p = folder / "index.json"
    doc = json.loads(p.read_text())
    doc["key"]["model_hash"] = "ffffffffff"
    p.write_text(json.dumps(doc))
    return p


def _break_array(folder: Path) -> Path:
    # A well-formed npz of the right test, its file checksum updated in the index, whose array differs
    # from what the index recorded of it.
    p = folder / g.file_name("suites/q.py::a")
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["c0_audio"] = arrays["c0_audio"][:-1]
    np.savez_compressed(p, **arrays)
    index = folder / "index.json"
    doc = json.loads(index.read_text())
    blob = p.read_bytes()
    doc["tests"]["suites/q.py::a"].update(sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob))
    index.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize(("breaker", "words"), [
    (_break_missing, "missing"),
    (_break_truncated, "not a readable npz"),
    (_break_swapped, "of 'suites/q.py::b', not of 'suites/q.py::a'"),
    (_break_not_npz, "not a readable npz"),
    (_break_index_json, "not valid JSON"),
    (_break_schema, "unknown schema 99"),
    (_break_key, "another key (model_hash: file has 'ffffffffff'"),
    (_break_array, "array 'c0_audio'"),
])
def test_bad_files_are_named_and_never_overwritten(tmp_path: Path, breaker: Callable[[Path], Path],
                                                   words: str) -> None:
    store, folder = saved(tmp_path)
    bad = breaker(folder)
    before = snapshot(folder)
    with pytest.raises(GoldenError) as load_error:
        store.load(KEY)
    assert str(bad) in str(load_error.value) and words in str(load_error.value)
    with pytest.raises(GoldenError) as save_error:
        store.save(KEY, [golden("suites/q.py::a", call(seed=3)), golden("suites/q.py::c", call(seed=4))])
    assert str(bad) in str(save_error.value) and "Refusing to overwrite" in str(save_error.value)
    assert snapshot(folder) == before


def test_a_truncated_file_that_still_opens_is_caught_by_its_checksum(tmp_path: Path) -> None:
    # Bytes appended (a zip reader ignores trailing data) or an edit: only the recorded sha256 sees it.
    store, folder = saved(tmp_path)
    p = folder / g.file_name("suites/q.py::a")
    p.write_bytes(p.read_bytes() + b"\0" * 10)
    with pytest.raises(GoldenError, match="truncated or modified") as e:
        store.load(KEY)
    assert str(p) in str(e.value)


def test_size_bounds(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path / "baselines")
    long = call("synthesize#0", n=(MAX_CALL_SECONDS + 1) * RATE)
    many = [call(f"synthesize#{i}", seed=i, n=100) for i in range(MAX_CALLS_PER_TEST + 2)]
    store.save(KEY, [golden("suites/q.py::long", long), golden("suites/q.py::many", *many)])
    loaded = store.load(KEY)
    assert loaded is not None
    kept = loaded.tests["suites/q.py::long"].calls[0]
    assert kept.audio is None and kept.rendered is None and kept.tokens == long.tokens
    assert "over the 30 s bound" in kept.note
    m = loaded.tests["suites/q.py::many"]
    assert len(m.calls) == MAX_CALLS_PER_TEST and "only the first 8 stored" in m.notes[0]

    # The store bound: a save that would exceed it is refused before anything is written.
    assert g.MAX_STORE_BYTES == 64 * 2**20
    small = GoldenStore(tmp_path / "baselines", max_bytes=20_000)
    folder = store.path_for(KEY)
    before = snapshot(folder)
    with pytest.raises(GoldenError, match=r"would take [0-9.]+ KiB, over the 19.5 KiB bound") as e:
        small.save(KEY, [golden("suites/q.py::big", call(n=RATE))])
    assert str(folder) in str(e.value) and "nothing was written" in str(e.value)
    assert snapshot(folder) == before


def test_reference_error_and_saving_stack_round_trip(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path / "baselines")
    a, b = call(), call("stream#1", 8)
    a.reference_snr, b.reference_snr = 97.25, float("inf")
    store.save(KEY, [golden("suites/q.py::a", a, b)], stack={"torch": "2.9.1", "cuda": "none"})
    loaded = store.load(KEY)
    assert loaded is not None and loaded.stack == {"torch": "2.9.1", "cuda": "none"}
    got = loaded.tests["suites/q.py::a"].calls
    assert got[0].reference_snr == 97.25 and got[1].reference_snr == float("inf")


def test_an_snr_of_minus_infinity_stays_minus_infinity(tmp_path: Path) -> None:
    """Issue 23: the golden store wrote -inf (a silent render against a non-silent reference) as "inf",
    read back as a perfect render. Both infinities keep their sign on disk."""
    store = GoldenStore(tmp_path / "baselines")
    a, b = call(), call("stream#1", 8)
    a.reference_snr, b.reference_snr = float("-inf"), float("inf")
    store.save(KEY, [golden("suites/q.py::a", a, b)])
    loaded = store.load(KEY)
    assert loaded is not None
    got = loaded.tests["suites/q.py::a"].calls
    assert [c.reference_snr for c in got] == [float("-inf"), float("inf")]
