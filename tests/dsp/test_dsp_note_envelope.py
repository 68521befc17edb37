import pytest
import torch

from mambakit.dsp.note_envelope import (
    CURVE_FLOOR_DB,
    RELEASE_HEADROOM_DB,
    apply_note_curve,
    note_frames,
    note_onsets,
    style_note_curve,
)

RATE = 125.0  # frames a second


def _steady(n, f0=220.0):
    return torch.full((n,), f0), torch.ones(n, dtype=torch.bool)


def test_onsets_after_silence_and_at_a_re_articulation():
    level = torch.full((100,), -100.0)
    level[10:40] = -20.0
    level[60:80] = -20.0
    level[70:80] = -8.0  # struck again, 12 dB louder
    f0, voiced = _steady(100)
    onsets = note_onsets(level, f0, voiced, RATE)
    assert torch.nonzero(onsets).flatten().tolist() == [10, 60, 70]


def test_legato_pitch_step_is_an_onset_and_vibrato_is_not():
    n = 120
    level = torch.full((n,), -20.0)
    f0 = torch.full((n,), 220.0)
    f0[60:] = 220.0 * 2 ** (2 / 12)  # a whole tone up, no break in loudness
    f0[:60] *= 2 ** (0.3 / 12 * torch.sin(torch.arange(60) / 3.0))  # +-30 cents vibrato
    onsets = note_onsets(level, f0, torch.ones(n, dtype=torch.bool), RATE)
    assert torch.nonzero(onsets).flatten().tolist() == [0, 60]


def test_onsets_closer_than_the_minimum_note_are_dropped():
    level = torch.full((40,), -100.0)
    level[5:8] = -20.0
    level[9:30] = -20.0  # 4 frames (32 ms) later: one note
    f0, voiced = _steady(40)
    assert torch.nonzero(note_onsets(level, f0, voiced, RATE)).flatten().tolist() == [5]


def test_note_frames_count_from_each_onset_and_hold_its_peak_so_far():
    level = torch.tensor([-30.0, -10.0, -12.0, -40.0, -5.0, -9.0, -2.0, -20.0])
    onsets = torch.tensor([False, True, False, False, True, False, False, True])
    since, peak = note_frames(level, onsets)
    assert since.tolist() == [0, 0, 1, 2, 0, 1, 2, 0]
    # a quieter note after a loud one starts from its own level (the running max resets)
    assert peak.tolist() == [-30.0, -10.0, -10.0, -10.0, -5.0, -5.0, -2.0, -20.0]


def test_style_curve_starts_at_the_onset_peaks_at_zero_and_extends_its_decay():
    level = torch.full((50,), -100.0)
    level[10:] = -6.0 - 0.5 * torch.arange(40.0)  # onset at 10, decays 0.5 dB a frame
    curve = style_note_curve(level, 100)
    assert curve.shape == (100,)
    assert float(curve[0]) == 0.0 and float(curve.max()) == 0.0
    # past the clip's end the same slope continues
    assert float(curve[60] - curve[59]) == pytest.approx(-0.5, abs=1e-4)
    assert float(curve[-1]) >= CURVE_FLOOR_DB


def test_style_curve_never_rises_past_the_clip_and_is_cut_to_length():
    level = torch.linspace(-40.0, -10.0, 30)  # still swelling at its end
    extended = style_note_curve(level, 60)
    assert torch.all(extended[30:] == extended[29])
    assert style_note_curve(level, 10).shape == (10,)


def test_a_pluck_curve_makes_a_sustained_note_decay_and_a_release_ends_it():
    frames = 100
    content = torch.full((1, frames), -10.0)
    content[0, 80:] = -90.0  # the content note is released at frame 80
    since, peak = note_frames(content[0], torch.zeros(frames, dtype=torch.bool))
    pluck = -0.3 * torch.arange(200.0)[None]  # 0.3 dB a frame
    out = apply_note_curve(content, since[None], peak[None], pluck)
    torch.testing.assert_close(out[0, :80], -10.0 - 0.3 * torch.arange(80.0))
    assert float(out[0, 85]) == pytest.approx(-90.0 + RELEASE_HEADROOM_DB)
    # a flat style curve gives the note's peak while the content sounds
    flat = apply_note_curve(content, since[None], peak[None], torch.zeros(1, 200))
    torch.testing.assert_close(flat[0, :80], content[0, :80])
