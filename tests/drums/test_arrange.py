from pathlib import Path

import mido
import numpy as np
import pytest

from mambakit.cli.common import UserError
from mambakit.drums.arrange import (
    bundled_pattern_path,
    make_pattern,
    midi_hits,
    render_grid,
    render_pattern,
    velocity_gain,
)
from mambakit.drums.kit import KitPad, write_kit

SR = 16000


def click(n=800):
    x = np.zeros(n, np.float32)
    x[:40] = np.linspace(0.5, 0.0, 40)
    return x


def onsets(x, sr=SR, thresh=0.05):
    """Sample indices where |x| rises above thresh after >= 20 ms of quiet."""
    loud = np.abs(x) > thresh
    out, last = [], -(10**9)
    for i in np.flatnonzero(loud):
        if i - last > 0.02 * sr:
            out.append(i)
        last = i
    return np.array(out)


@pytest.fixture
def kit(tmp_path):
    pads = [KitPad("kick", "kick"), KitPad("hat", "closed_hat")]
    write_kit(tmp_path / "kit", pads, [click(), click()], SR)
    return tmp_path / "kit"


def test_rendered_onsets_match_note_times(kit, tmp_path):
    grid = {"kick": [100, 0, 0, 0] * 4, "closed_hat": [0, 0, 127, 0] * 4}
    mid = make_pattern(grid, bpm=120)
    mid.save(tmp_path / "p.mid")
    audio, sr = render_pattern(kit, tmp_path / "p.mid", sr=SR, choke_hats=False)
    assert audio.shape[0] == 1 and sr == SR
    expected = np.array([t for t, _, _ in midi_hits(mid)]) * SR
    found = onsets(audio[0])
    assert len(found) == len(expected) == 8
    assert np.max(np.abs(found - expected)) < 0.003 * SR
    # Step 0 is a kick at 0 s, step 2 a hat at 0.25 s (16ths at 120 bpm = 0.125 s).
    np.testing.assert_allclose(expected[:2] / SR, [0.0, 0.25], atol=1e-6)


def test_velocity_scaling(kit, tmp_path):
    make_pattern({"kick": [127, 0, 0, 0, 64, 0, 0, 0]}).save(tmp_path / "v.mid")
    audio, _ = render_pattern(kit, tmp_path / "v.mid", sr=SR)
    a = audio[0]
    first, second = a[:40].max(), a[int(0.5 * SR) : int(0.5 * SR) + 40].max()
    assert second / first == pytest.approx(velocity_gain(64) / velocity_gain(127), rel=1e-3)
    assert velocity_gain(64) == pytest.approx((64 / 127) ** 1.5)


def test_channel_filter_and_error(kit, tmp_path):
    make_pattern({"kick": [100, 0, 0, 0]}, channel=0).save(tmp_path / "c.mid")
    with pytest.raises(ValueError, match="no note-on events on channel 10"):
        render_pattern(kit, tmp_path / "c.mid", sr=SR)
    audio, _ = render_pattern(kit, tmp_path / "c.mid", sr=SR, channel=None)
    assert np.abs(audio).max() > 0.1


def test_hat_choke_cuts_open_hat(tmp_path):
    ring = np.ones(SR, np.float32) * 0.3
    write_kit(
        tmp_path / "k", [KitPad("oh", "open_hat"), KitPad("ch", "closed_hat")], [ring, click()], SR
    )
    make_pattern({"open_hat": [100, 0, 0, 0], "closed_hat": [0, 0, 100, 0]}).save(
        tmp_path / "h.mid"
    )
    choked, _ = render_pattern(tmp_path / "k", tmp_path / "h.mid", sr=SR, choke_hats=True)
    free, _ = render_pattern(tmp_path / "k", tmp_path / "h.mid", sr=SR, choke_hats=False)
    late = slice(int(0.4 * SR), int(0.9 * SR))
    assert np.abs(choked[0, late]).max() < 1e-6 < np.abs(free[0, late]).max()


def test_render_grid_and_limit():
    loud = np.ones(400, np.float32)
    out = render_grid({"a": loud, "b": loud}, {"a": [127, 0], "b": [127, 0]}, bpm=120, sr=SR)
    assert np.abs(out).max() == pytest.approx(0.98)
    swung = render_grid({"a": click()}, {"a": [127, 127]}, bpm=120, swing=0.5, sr=SR)
    np.testing.assert_array_equal(onsets(swung[0]), [0, round((0.125 + 0.03125) * SR)])


def test_bundled_pattern_is_small_two_bar_gm():
    mid = mido.MidiFile(bundled_pattern_path())
    hits = midi_hits(mid)
    assert bundled_pattern_path().stat().st_size < 1000
    assert {k for _, k, _ in hits} >= {36, 38, 42} and max(t for t, _, _ in hits) < 2 * 4 * 60 / 100


def test_cli_render_and_kit(kit, tmp_path):
    import argparse

    import soundfile as sf

    from mambakit.cli.drums_tools import add_kit, add_render
    from mambakit.drums.kit import default_kit_path

    class Synth:
        sample_rate = SR

        def generate(self, tag, note, adsr, pitch_env, seed, n=1):
            return click()[None, None, :], SR

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    runs_asked = []
    add_kit(sub, lambda run: runs_asked.append(run) or Synth())
    add_render(sub, lambda run: runs_asked.append(run) or Synth())
    args = parser.parse_args(["kit", "RUN", str(default_kit_path()), "-o", str(tmp_path / "k8")])
    assert args.func(args) == 0 and len(list((tmp_path / "k8" / "samples").glob("*.wav"))) == 8
    # no run: the loader is asked for None (the shipped model)
    args = parser.parse_args(["kit", str(default_kit_path()), "-o", str(tmp_path / "k8b")])
    assert args.func(args) == 0 and runs_asked == [Path("RUN"), None]
    # no kit folder and no pattern: the bundled kit is generated, the bundled beat played
    args = parser.parse_args(["render", "-o", str(tmp_path / "auto.wav"), "--sr", str(SR)])
    assert args.func(args) == 0 and runs_asked[-1] is None
    assert len(list((tmp_path / "auto_kit" / "samples").glob("*.wav"))) == 8
    assert len(onsets(sf.read(tmp_path / "auto.wav")[0])) > 10
    out = tmp_path / "beat.wav"
    args = parser.parse_args(
        [
            "render",
            str(tmp_path / "k8"),
            str(bundled_pattern_path()),
            "-o",
            str(out),
            "--sr",
            str(SR),
        ]
    )
    assert args.func(args) == 0
    x, sr = sf.read(out)
    assert sr == SR and len(onsets(x)) > 10
    args = parser.parse_args(
        ["render", str(tmp_path / "nokit"), str(bundled_pattern_path()), "-o", str(out)]
    )
    with pytest.raises(UserError):  # cli.main prints it as one line and exits 2
        args.func(args)
