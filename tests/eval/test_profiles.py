"""The Figure-4 measurements against signals with a known answer."""

import math

import numpy as np
import pytest

from mambakit.eval.adherence import midi_to_hz
from mambakit.eval.profiles import (
    average_spectrum_db,
    band_edges_hz,
    band_power,
    energy_centroid_s,
    energy_over_time,
    fundamental_energy_fraction,
    harmonic_energy_fraction,
    peak_db,
    profile_clips,
    spectrum_distance_db,
)

SR = 22050
T = np.arange(SR // 2) / SR  # 0.5 s


def tone(midi: float, t: np.ndarray = T) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * midi_to_hz(midi) * t)


def test_energy_of_a_decaying_exponential_sits_at_the_start():
    tau = 0.02  # energy e^{-2t/tau}: share before 50 ms is 1 - e^{-5}
    share = energy_over_time(np.exp(-T / tau), n_bins=10)
    assert share.sum() == pytest.approx(1.0)
    assert share[0] == pytest.approx(1 - math.exp(-5), abs=2e-3)
    assert np.all(np.diff(share) <= 0)


def test_energy_of_a_constant_signal_is_spread_evenly():
    assert energy_over_time(np.full(1000, 0.3), n_bins=4) == pytest.approx([0.25] * 4)
    assert energy_over_time(np.zeros(100), n_bins=4) == pytest.approx([0.0] * 4)


def test_energy_centroid_of_exponential_is_half_its_time_constant_and_constant_is_mid_clip():
    assert energy_centroid_s(np.exp(-T / 0.02), SR) == pytest.approx(0.01, rel=0.02)
    assert energy_centroid_s(np.ones_like(T), SR) == pytest.approx(0.25, rel=1e-3)
    assert math.isnan(energy_centroid_s(np.zeros(10), SR))


@pytest.mark.parametrize("midi", [40, 60, 84])
def test_a_pure_tone_at_the_requested_note_keeps_all_its_power_at_the_fundamental(midi):
    assert fundamental_energy_fraction(tone(midi), SR, midi) > 0.97
    assert harmonic_energy_fraction(tone(midi), SR, midi) > 0.97
    assert fundamental_energy_fraction(tone(midi), SR, midi + 7) < 0.02  # a fifth off


def test_harmonic_fraction_tells_a_sine_from_white_noise():
    noise = np.random.default_rng(0).standard_normal(len(T))
    # 16 windows of +-50 cents around k * 262 Hz cover ~19 % of 0..11 kHz
    assert harmonic_energy_fraction(noise, SR, 60) < 0.25
    assert fundamental_energy_fraction(noise, SR, 60) < 0.02


def test_four_equal_harmonics_put_a_quarter_of_the_power_at_the_fundamental():
    f0 = midi_to_hz(48)
    x = sum(np.sin(2 * np.pi * k * f0 * T) for k in range(1, 5))
    assert fundamental_energy_fraction(x, SR, 48) == pytest.approx(0.25, abs=0.02)
    assert harmonic_energy_fraction(x, SR, 48) > 0.97


def test_silence_preserves_nothing_and_a_too_short_clip_is_not_judged():
    assert fundamental_energy_fraction(np.zeros(len(T)), SR, 60) == 0.0
    assert math.isnan(harmonic_energy_fraction(tone(36, T[:400]), SR, 36))  # 18 ms, 65 Hz
    assert peak_db(np.zeros(10)) == -120.0
    assert peak_db(np.full(10, 0.5)) == pytest.approx(-6.02, abs=0.01)


def test_average_spectrum_peaks_at_the_tone_and_band_power_integrates_to_one():
    hz, db = average_spectrum_db([tone(69), 0.1 * tone(69)], SR)  # 440 Hz, levels differ
    edges = band_edges_hz(SR)
    peak = int(np.argmax(db))
    assert edges[peak] <= 440.0 < edges[peak + 1]
    assert db[peak] == 0.0 and hz[peak] == pytest.approx(math.sqrt(edges[peak] * edges[peak + 1]))
    density = band_power(tone(69), SR, edges)
    assert (density * np.diff(edges)).sum() == pytest.approx(1.0, abs=1e-3)


def test_spectrum_distance_is_zero_for_itself_and_the_offset_for_a_shift():
    _, db = average_spectrum_db([np.random.default_rng(1).standard_normal(len(T))], SR)
    assert spectrum_distance_db(db, db) == 0.0
    assert spectrum_distance_db(db, db - 3.0) == pytest.approx(3.0)


def test_profile_of_clips_counts_percussive_ones_and_only_tonal_clips_for_pitch():
    decaying = tone(60) * np.exp(-T / 0.03)
    constant = np.random.default_rng(2).standard_normal(len(T)) * 0.1
    summary = profile_clips([decaying, constant], SR, [60, 60], [True, False])
    assert summary.n == 2
    assert summary.percussive_rate == 0.5
    assert summary.fundamental_fraction > 0.9  # the noise clip is not tonal: not counted
    assert len(summary.energy_curve) == 40 and sum(summary.energy_curve) == pytest.approx(1.0)
