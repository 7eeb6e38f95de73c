"""index.html of a real gate run, opened in headless Chromium over a localhost server (as a user
serving an unzipped report artifact would): every image decodes, every audio player has a
playable WAV of the file's duration, and the summary table has one row per test of the run; and
the quality gate's golden and current players of a written report load the same way."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_cosyvoice.report.writer import write_report

from .browser import BrowserError, Chromium, find_chromium, serve

INNER_TESTS = '''
import dataclasses

import numpy as np
import pytest

# A fixed token sequence for the LLM (the real flow and HiFT render it): three chunks in speaker mode.
TOKENS = [int(x) for x in np.random.default_rng(7).integers(0, 6561, 140)]


@pytest.mark.streaming(prebuffer_ms=1000)
@pytest.mark.rtf(max=100, repeat=3)
def test_timed(cosy_tts):
    list(cosy_tts.stream("Hello there, this is a test.", speaker=cosy_tts.speakers[0]))


@pytest.mark.streaming(prebuffer_ms=1000)
def test_click(cosy_tts, cosy_model, monkeypatch):
    """A decaying step at the second chunk's join: fails the sound check, so a failing stream."""
    real = cosy_model.stream

    def clicky(*args, **kwargs):
        for c in real(*args, **kwargs):
            if c.index == 1:
                n = min(480, c.audio.size)
                audio = c.audio.copy()
                audio[:n] += 0.5 * np.exp(-np.arange(n) / 48.0).astype(np.float32)
                c = dataclasses.replace(c, audio=audio)
            yield c

    monkeypatch.setattr(cosy_model.llm, "inference", lambda *a, **k: iter(TOKENS))
    monkeypatch.setattr(cosy_model, "stream", clicky)
    list(cosy_tts.stream("x", speaker=cosy_tts.speakers[0]))


@pytest.mark.first_chunk(max_ms=1)
def test_no_call():
    """Figures (a failed first_chunk check) and a table row, but no stream."""
'''
NODEIDS = {f"test_inner.py::{name}" for name in ("test_timed", "test_click", "test_no_call")}

# Runs in the page after its load event (so every <img> has loaded or failed). The players say
# preload="none" (a report of many streams loads none until asked); asking is what a click on
# play does, so each is set to load its metadata, and awaited until it has or fails.
INSPECT = """(async () => {
  const images = [...document.images].map(i => ({
    src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth}));
  const audios = await Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(resolve => {
    const done = (why) => resolve({src: a.getAttribute('src'), why, readyState: a.readyState,
      duration: a.duration, error: a.error && `${a.error.code}: ${a.error.message}`});
    a.addEventListener('loadedmetadata', () => done('loadedmetadata'), {once: true});
    a.addEventListener('error', () => done('error'), {once: true});
    setTimeout(() => done('timeout'), 30000);
    a.preload = 'metadata';
    a.load();
  })));
  const heading = [...document.querySelectorAll('h2')].find(h => h.textContent === 'Summary');
  const table = heading && heading.nextElementSibling;
  const rows = table && table.tagName === 'TABLE'
    ? [...table.querySelectorAll('tr')].filter(r => r.querySelector('td'))
        .map(r => r.querySelector('td.id').getAttribute('title'))
    : null;
  return {images, audios, rows};
})()"""


def inspect(browser: Chromium, url: str) -> dict[str, Any]:
    browser.open(url)
    return browser.evaluate(INSPECT)


def test_report_renders_in_chromium(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium: install the Debian package chromium "
                    "(.ci/run does when it can)")
    import soundfile as sf

    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-baseline-dir=bl", "--cosy-runner=ci-box", "--cosy-report=rep")
    result.assert_outcomes(passed=1, failed=2)
    rep = pytester.path / "rep"
    assert "sound: stream 0: click at the join into chunk 1" in result.stdout.str()
    wavs = sorted((rep / "streams").glob("*.wav"))
    assert len(wavs) == 2, wavs     # the sampled passing stream of test_timed, the failing one of test_click
    # A copy with a broken image and a broken player: the inspection must see them as broken.
    page = (rep / "index.html").read_text(encoding="utf-8")
    (rep / "broken.html").write_text(page.replace(
        "</body>", '<img src="streams/missing.png"><audio controls preload="none" src="streams/missing.wav">'
                   "</audio></body>"), encoding="utf-8")

    try:
        with serve(rep) as base, Chromium(binary) as browser:
            found = inspect(browser, base + "index.html")
            broken = inspect(browser, base + "broken.html")
    except BrowserError as e:
        pytest.fail(f"chromium at {binary} could not render the report: {e}")

    images = found["images"]
    assert {i["src"] for i in images} >= {"rtf_drift.png", "rtf_trend.png"}
    assert len(images) == 2 + len(wavs), images      # both graphs and one picture per stream
    not_loaded = [i for i in images if not (i["complete"] and i["width"] > 0)]
    assert not not_loaded, not_loaded

    audios = found["audios"]
    assert sorted(a["src"] for a in audios) == [w.relative_to(rep).as_posix() for w in wavs]
    for a in audios:
        assert a["why"] == "loadedmetadata" and a["error"] is None and a["readyState"] >= 1, a
        expected = sf.info(str(rep / a["src"])).duration
        assert a["duration"] == pytest.approx(expected, abs=0.010), (a, expected)
        assert expected > 0.1, a

    assert found["rows"] is not None, "no table follows the Summary heading"
    assert sorted(found["rows"]) == sorted(NODEIDS)

    # The same inspection tells a broken image and a broken player apart from working ones.
    bad_images = [i["src"] for i in broken["images"] if not (i["complete"] and i["width"] > 0)]
    assert bad_images == ["streams/missing.png"]
    bad_audio = [a for a in broken["audios"] if a["why"] != "loadedmetadata"]
    assert [(a["src"], a["why"]) for a in bad_audio] == [("streams/missing.wav", "error")], bad_audio
    assert bad_audio[0]["error"] and bad_audio[0]["readyState"] == 0


def test_quality_players_load_in_chromium(tmp_path: Path) -> None:
    """The Quality section's golden and current players, side by side, each load a playable WAV of the
    file's duration (a report written from quality results holding real speech)."""
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium: install the Debian package chromium "
                    "(.ci/run does when it can)")
    pytest.importorskip("matplotlib")
    pytest.importorskip("pandas")
    import soundfile as sf

    from .test_quality_report import qualities, report_input

    quality, golden = qualities()
    files = write_report(tmp_path / "rep", report_input(quality, golden, tmp_path / "history.jsonl"))
    both = [a for a in files.quality_audio if a.golden is not None and a.current is not None]
    assert len(both) == 2, files.quality_audio
    try:
        with serve(files.out_dir) as base, Chromium(binary) as browser:
            found = inspect(browser, base + "index.html")
    except BrowserError as e:
        pytest.fail(f"chromium at {binary} could not render the report: {e}")

    audios = {a["src"]: a for a in found["audios"]}
    expected = [p.relative_to(files.out_dir).as_posix() for a in files.quality_audio
                for p in (a.golden, a.current) if p is not None]
    assert sorted(audios) == sorted(expected)
    for pair in both:
        for path in (pair.golden, pair.current):
            assert path is not None
            a = audios[path.relative_to(files.out_dir).as_posix()]
            assert a["why"] == "loadedmetadata" and a["error"] is None and a["readyState"] >= 1, a
            duration = sf.info(str(path)).duration
            assert duration > 0.1 and a["duration"] == pytest.approx(duration, abs=0.010), (a, duration)
    for a in audios.values():       # the players of calls with only one side load too
        assert a["why"] == "loadedmetadata" and a["duration"] > 0, a
