"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

One app (with a tiny drum run trained in the test session) and one page are shared by the
tests of this module, which run in order like a user session: generate a pad, render a
loop, export the kit, then try a bad upload and the other tabs. Screenshots are saved
under ``out/ui-screenshots/``. Skipped, with the reason, when Chromium, Playwright or
Gradio is missing (``scripts/install-system-deps.sh`` installs them).
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mambakit.pretrained import packaged_models

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "out" / "ui-screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOTE = "#pad-note textarea, #pad-note input"  # the note box (a textarea in Gradio 6)
TIMEOUT_MS = 90_000  # generous: 2 shared CPU cores

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not installed (run scripts/install-system-deps.sh)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (run scripts/install-system-deps.sh)"
)
pytest.importorskip("gradio", reason="gradio not installed (run scripts/install-system-deps.sh)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(drum_run):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from mambakit.app.ui import launch

    port = _free_port()
    app = launch(drums=str(drum_run), host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def page(app_url):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        page.wait_for_selector("#generate-pad")
        yield page
        browser.close()


def _fetch(page, href: str) -> bytes:
    response = page.request.get(href)
    assert response.ok, f"GET {href} -> {response.status}"
    return response.body()


def _set_slider(page, elem_id: str, value: float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def _wait_audio_href(page, elem_id: str, previous: str | None = None) -> str:
    """The URL of the WAV an Audio component received (its download link)."""
    link = page.locator(f"#{elem_id} a[download]")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        if link.count() and (href := link.first.get_attribute("href")) and href != previous:
            page.wait_for_selector(f"#{elem_id} audio", state="attached")
            return href
        page.wait_for_timeout(50)
    raise AssertionError(f"no audio arrived in #{elem_id}")


def _select_pad(page, name: str, note: str) -> None:
    """Click a pad and wait until its controls (here: its note) are in the editor."""
    page.locator("#pad-select label", has_text=name).first.click()
    page.wait_for_function(f"n => document.querySelector('{NOTE}').value === n", arg=note)


def test_generate_pad_delivers_a_wav_of_the_model_length(page, synth):
    _select_pad(page, "kick", "C1")
    page.fill(NOTE, "D1")
    page.locator(NOTE).press("Tab")
    _set_slider(page, "pad-decay", 0.2)
    _set_slider(page, "pad-pitch_drop", 12)
    started = time.perf_counter()
    page.click("#generate-pad")
    href = _wait_audio_href(page, "pad-audio")
    click_to_audio = time.perf_counter() - started
    audio, sr = sf.read(io.BytesIO(_fetch(page, href)))
    assert sr == synth.sample_rate
    assert len(audio) == synth.config.n_samples  # 1.0 s for the tiny preset
    page.wait_for_selector("#analysis-plot img, #analysis-plot svg, #analysis-plot canvas")
    page.screenshot(path=str(SHOTS / "drums-pad.png"), full_page=True)
    (SHOTS / "timing.json").write_text(json.dumps({"click_to_audio_s": click_to_audio}))
    print(f"click to audio: {click_to_audio:.2f} s")


def test_variations_fill_as_many_players_as_asked(page, synth):
    _set_slider(page, "n-variations", 2)
    page.click("#generate-variations")
    hrefs = [_wait_audio_href(page, "variation-2"), _wait_audio_href(page, "variation-1")]
    second, first = (sf.read(io.BytesIO(_fetch(page, href)))[0] for href in hrefs)
    assert len(first) == len(second) == synth.config.n_samples
    # different seeds, different takes (only slightly: a 3-step model is mostly scaffold)
    assert hrefs[0] != hrefs[1] and not (first == second).all()
    assert not page.locator("#variation-3").is_visible()


def test_sequencer_renders_a_loop_of_one_bar(page, synth):
    _select_pad(page, "snare", "G2")
    link = page.locator("#pad-audio a[download]")  # empty: snare has no sound yet
    previous = link.first.get_attribute("href") if link.count() else None
    page.click("#generate-pad")
    _wait_audio_href(page, "pad-audio", previous)
    for row, steps in (("kick", (1, 9)), ("snare", (5, 13))):
        for step in steps:
            page.locator(f"#seq-{row} label").nth(step - 1).click()
    _set_slider(page, "bpm", 100)
    page.click("#render-loop")
    href = _wait_audio_href(page, "loop-audio")
    loop, sr = sf.read(io.BytesIO(_fetch(page, href)))
    assert sr == synth.sample_rate
    assert len(loop) == round(4 * 60 / 100 * sr)  # one bar of 4/4 at 100 BPM = 2.4 s
    page.screenshot(path=str(SHOTS / "drums-sequencer.png"), full_page=True)


def test_export_kit_zip_contains_wavs_sfz_and_the_page_settings(page, synth):
    page.click("#export-kit")
    link = page.locator("#kit-file a[download], #kit-file a[href]").first
    link.wait_for()
    with zipfile.ZipFile(io.BytesIO(_fetch(page, link.get_attribute("href")))) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("kit.json"))
        sfz = zf.read("kit.sfz").decode()
        kick, sr = sf.read(io.BytesIO(zf.read("samples/kick.wav")))
    assert {"kit.sfz", "kit.json", "samples/kick.wav", "samples/snare.wav"} <= names
    assert "sample=kick.wav key=36" in sfz and "sample=snare.wav key=38" in sfz
    assert sr == synth.sample_rate and len(kick) == synth.config.n_samples
    kick_pad = next(p for p in manifest["pads"] if p["name"] == "kick")
    # what the first test typed into the page reached the exported kit
    assert kick_pad["note"] == 26 and kick_pad["decay"] == pytest.approx(0.2)
    assert kick_pad["pitch_drop"] == pytest.approx(12)


def _dismiss_messages(page) -> None:
    """Close error messages (they stay until dismissed) as a user would."""
    # a DOM click, not a pointer one: toasts animate (and are briefly inert) while they stack
    page.evaluate("document.querySelectorAll('[data-testid=toast-close]').forEach(b => b.click())")
    page.wait_for_function("!document.querySelector('[data-testid=toast-close]')")


def test_non_audio_upload_shows_a_clear_error(page, tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a drum sample")
    page.set_input_files("#pad-init input[type=file]", str(bogus))
    # the upload is listed once it reached the server (Gradio may split the name into
    # stem and extension elements, so compare the text without whitespace)
    page.wait_for_function(
        "() => (document.querySelector('#pad-init')?.textContent || '')"
        ".replace(/\\s+/g, '').includes('notes.txt')"
    )
    page.click("#generate-pad")
    message = page.get_by_text("notes.txt is not an audio file")
    message.first.wait_for()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(SHOTS / "drums-bad-upload.png"), full_page=True)
    _dismiss_messages(page)


@pytest.mark.skipif("gm-timbre" not in packaged_models(), reason="no shipped gm-timbre")
def test_timbre_tab_transfers_with_a_style_of_several_files(page, tmp_path):
    t = np.arange(16000) / 16000
    for name, f in (("content", 220.0), ("style", 330.0), ("more1", 262.0), ("more2", 392.0)):
        note = 0.4 * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)) * np.exp(-t)
        sf.write(tmp_path / f"{name}.wav", note.astype(np.float32), 16000)
    page.get_by_role("tab", name="Timbre transfer").click()
    page.get_by_text("Timbre model loaded from gm-timbre").first.wait_for()
    page.set_input_files("#timbre-content input[type=file]", str(tmp_path / "content.wav"))
    page.set_input_files("#timbre-style input[type=file]", str(tmp_path / "style.wav"))
    page.set_input_files(
        "#timbre-more input[type=file]", [str(tmp_path / "more1.wav"), str(tmp_path / "more2.wav")]
    )
    page.wait_for_function(
        "() => (document.querySelector('#timbre-more')?.textContent || '')"
        ".replace(/\\s+/g, '').includes('more2.wav')"
    )
    page.wait_for_selector("#timbre-style audio, #timbre-style canvas, #timbre-style wave",
                           state="attached")  # fmt: skip
    page.click("#transfer")
    audio, sr = sf.read(io.BytesIO(_fetch(page, _wait_audio_href(page, "timbre-audio"))))
    assert sr == 16000 and len(audio) == 16000 and np.abs(audio).max() > 0.1
    page.get_by_text("style: 3 notes, one palette").first.wait_for()  # all three files read
    assert "Traceback" not in page.content()
    page.screenshot(path=str(SHOTS / "timbre-palette.png"), full_page=True)
    _dismiss_messages(page)
    # noise as content: rendered, and the page says it is not one pitch line
    noise = np.random.default_rng(0).uniform(-0.4, 0.4, 16000).astype(np.float32)
    sf.write(tmp_path / "noise.wav", noise, 16000)
    page.locator("#timbre-content button[aria-label='Clear']").first.click()  # the upload again
    page.set_input_files("#timbre-content input[type=file]", str(tmp_path / "noise.wav"))
    page.wait_for_selector("#timbre-content audio, #timbre-content wave", state="attached")
    page.click("#transfer")
    page.get_by_text("does not look monophonic").first.wait_for()
    _dismiss_messages(page)


def test_other_tabs_explain_missing_runs_and_validate_the_run_box(page):
    page.get_by_role("tab", name="Timbre transfer").click()
    shipped = "gm-timbre" in packaged_models()  # the tab starts with the packaged model
    page.get_by_text(
        "Timbre model loaded from gm-timbre" if shipped else "No timbre model loaded"
    ).first.wait_for()
    page.fill("#timbre-run input, #timbre-run textarea", "/etc")
    page.click("#timbre-load")
    page.get_by_text("/etc: not a run directory").first.wait_for()
    page.screenshot(path=str(SHOTS / "timbre.png"), full_page=True)
    _dismiss_messages(page)
    page.get_by_role("tab", name="Continue music").click()
    page.get_by_text("No lm model loaded").first.wait_for()
    page.click("#continue")
    page.get_by_text("No lm model loaded").nth(1).wait_for()  # the error toast repeats it
    page.screenshot(path=str(SHOTS / "continue.png"), full_page=True)
    _dismiss_messages(page)


def test_run_box_loads_a_valid_drum_run_for_the_session(page, drum_run):
    page.get_by_role("tab", name="Drum machine").click()
    page.fill("#drums-run input, #drums-run textarea", str(drum_run))
    page.click("#drums-load")
    page.locator("#drums-status", has_text=f"Drum model loaded from {drum_run}").wait_for()
