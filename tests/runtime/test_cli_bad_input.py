"""The CLI refuses bad arguments before it loads a model or synthesises anything: one `error:` line on
stderr, a non-zero exit code, no traceback, and nothing overwritten without --force."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
NO_MODEL = "/no/such/model"  # an --out/argument error must win over the model that was never loaded


def cli(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "cosyvoice_runtime", "synth", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)


def refused(r: subprocess.CompletedProcess[str], message: str, code: int = 2) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert message in r.stderr, r.stderr


def test_out_in_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.wav"
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", out)
    refused(r, f"error: --out '{out}': the folder '{out.parent}' does not exist; create it first")
    assert not out.parent.exists()


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_out_is_a_folder(tmp_path: Path, force: list[str]) -> None:
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", tmp_path, *force)
    refused(r, f"error: --out '{tmp_path}' is a directory; expected a file path such as '{tmp_path / 'out.wav'}'")
    assert tmp_path.is_dir()


def test_out_under_a_file(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("keep")
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", f / "x.wav")
    refused(r, f"error: --out '{f / 'x.wav'}': '{f}' is not a folder")
    assert f.read_text() == "keep"


def test_out_in_unwritable_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("permissions do not bind this user (root): an unwritable folder cannot be made here")
        r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", ro / "x.wav")
        refused(r, f"error: --out '{ro / 'x.wav'}': the folder '{ro}' is not writable")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("name", ["x.mp4", "x"])
def test_out_format_soundfile_cannot_write(tmp_path: Path, name: str) -> None:
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", tmp_path / name)
    refused(r, "cannot write")
    assert "expected .wav, .flac or .ogg" in r.stderr


def test_existing_out_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    out.write_bytes(b"precious")
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", out)
    refused(r, f"error: --out '{out}' exists; pass --force to overwrite it")
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e9"])
def test_bad_stall_timeout(tmp_path: Path, value: str) -> None:
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", tmp_path / "x.wav", "--stall-timeout", value)
    refused(r, f"error: argument --stall-timeout: {value!r}: expected a positive number of seconds, finite and at "
               "most 86400")


@pytest.mark.parametrize("value", ["fast", "nan", "3"])
def test_bad_speed(tmp_path: Path, value: str) -> None:
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", tmp_path / "x.wav", "--speed", value)
    refused(r, f"error: argument --speed: {value!r}: expected a number from 0.5 to 2.0")


@pytest.mark.parametrize("value", ["-1", "1.5", "seven", str(2**63)])
def test_bad_seed(tmp_path: Path, value: str) -> None:
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", tmp_path / "x.wav", "--seed", value)
    refused(r, f"error: argument --seed: {value!r}: expected a whole number from 0 to 2**63-1")


def test_speed_with_stream(tmp_path: Path) -> None:
    r = cli("--model", NO_MODEL, "--text", "Hello.", "--out", tmp_path / "x.wav", "--speed", "1.5", "--stream")
    refused(r, "error: --speed 1.5 with --stream: speed change is only supported without --stream")


def test_text_over_the_maximum(tmp_path: Path) -> None:
    r = cli("--model", NO_MODEL, "--text", "word " * 4000, "--out", tmp_path / "x.wav")
    refused(r, "error: --text has 20000 characters; at most 5000 per request")


def test_model_without_spk2info_names_the_file_and_flags(tiny_v2_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "nospk"
    d.mkdir()
    for entry in tiny_v2_dir.iterdir():
        if entry.name != "spk2info.pt":
            (d / entry.name).symlink_to(entry)
    r = cli("--model", d, "--text", "Hello.", "--out", tmp_path / "x.wav")
    refused(r, f"error: the model '{d}' has no spk2info.pt, so there is no default speaker: pass --prompt-wav FILE")
    assert not (tmp_path / "x.wav").exists()


def test_nan_prompt_is_named(tiny_v2_dir: Path, tmp_path: Path) -> None:
    p = tmp_path / "nan.wav"
    x = np.full(16000, 0.1, np.float32)
    x[10] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")
    r = cli("--model", tiny_v2_dir, "--text", "Hello.", "--prompt-wav", p, "--prompt-text", "Hi.",
            "--out", tmp_path / "x.wav")
    refused(r, f"error: prompt_wav='{p}': 1 samples are NaN or infinite")


def test_force_replaces_existing_out(tiny_v2_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    out.write_bytes(b"old")
    r = cli("--model", tiny_v2_dir, "--text", "Hello there.", "--out", out, "--force")
    assert r.returncode == 0, r.stderr
    audio, rate = sf.read(out)
    assert rate == 24000 and audio.size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temporary file left behind


def test_a_seeded_stream_writes_the_same_audio_twice(tiny_v2_dir: Path, tmp_path: Path) -> None:
    outs = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for out in outs:
        r = cli("--model", tiny_v2_dir, "--text", "Hello there.", "--stream", "--seed", "7", "--out", out)
        assert r.returncode == 0, r.stderr
    a, b = (sf.read(out, dtype="float32")[0] for out in outs)
    assert a.size > 0 and np.array_equal(a, b)
