"""Each drum metric against a case with a known answer."""

import math

import numpy as np
import pytest

from mambakit.dsp import ADSR, render_adsr
from mambakit.eval.adherence import (
    envelope_correlation,
    is_percussive,
    nearest_neighbour_distances,
    pairwise_diversity,
    pitch_error_cents,
)
from mambakit.eval.drums import (
    DrumRequest,
    DrumScores,
    requested_note,
    scores_markdown,
    worst_ratio,
)
from mambakit.eval.features import clip_embedding, comb_level_db, decay_time_s

SR = 22050


def tone(midi: float, seconds: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return 0.5 * np.sin(2 * np.pi * 440.0 * 2 ** ((midi - 69) / 12) * t)


@pytest.mark.parametrize("midi", [36, 48, 60, 72])
def test_pitch_error_of_a_pure_tone_at_the_requested_note_is_under_5_cents(midi):
    assert abs(pitch_error_cents(tone(midi), SR, midi)) < 5.0


def test_pitch_error_sign_and_size_for_a_detuned_tone():
    err = pitch_error_cents(tone(60.5), SR, 60)  # half a semitone sharp
    assert 45.0 < err < 55.0


def test_pitch_error_is_nan_for_noise():
    noise = np.random.default_rng(0).standard_normal(SR // 2) * 0.3
    assert math.isnan(pitch_error_cents(noise, SR, 60))


def test_envelope_correlation_is_one_for_the_requested_envelope_and_low_for_its_reverse():
    adsr = ADSR(attack_s=0.005, decay_s=0.2, sustain_level=0.0, release_s=0.05)
    n = SR // 2
    env = np.asarray(render_adsr(adsr, n, SR), dtype=np.float64)
    noise = np.random.default_rng(1).standard_normal(n)
    shaped = env * noise
    assert envelope_correlation(shaped, SR, adsr) > 0.9
    assert envelope_correlation(shaped[::-1].copy(), SR, adsr) < 0.3


def test_a_constant_signal_is_not_percussive_and_a_decaying_one_is():
    n = SR // 2
    assert not is_percussive(np.full(n, 0.5), SR)
    decaying = np.exp(-np.arange(n) / (0.03 * SR)) * tone(60)[:n]
    assert is_percussive(decaying, SR)


def test_sustained_noise_is_not_percussive_even_when_faded_out_at_the_end():
    n = SR // 2
    noise = np.random.default_rng(3).standard_normal(n) * 0.3  # loudest frame anywhere
    noise[-int(0.01 * SR) :] *= np.linspace(1.0, 0.0, int(0.01 * SR))
    assert not is_percussive(noise, SR)


def test_diversity_and_nearest_neighbours():
    a = np.zeros((3, 2))
    assert pairwise_diversity(a) == 0.0
    b = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert pairwise_diversity(b) == pytest.approx(5.0)
    nn = nearest_neighbour_distances(np.array([[0.0, 1.0]]), b)
    assert nn[0] == pytest.approx(1.0)


def test_clip_embedding_puts_two_low_tones_nearer_each_other_than_a_tone_and_noise():
    rng = np.random.default_rng(2)
    decay = np.exp(-np.arange(SR // 2) / 4000)
    kick_a, kick_b = (clip_embedding(tone(m) * decay, SR) for m in (36, 38))
    noise = rng.standard_normal(SR // 2) * 0.2 * np.exp(-np.arange(SR // 2) / 800)
    hiss = clip_embedding(noise, SR)
    assert np.isfinite(kick_a).all() and kick_a.shape == hiss.shape
    assert np.linalg.norm(kick_a - kick_b) < 0.5 * np.linalg.norm(kick_a - hiss)


def test_scores_markdown_has_one_column_per_generator_and_marks_missing_values():
    md = scores_markdown([DrumScores(name="model", tag_accuracy=0.5), DrumScores(name="scaffold")])
    assert "| metric | model | scaffold |" in md
    assert "50.0%" in md and "n/a" in md


def _noise(seconds: float, sr: int, decay_s: float, seed: int = 0) -> np.ndarray:
    n = int(seconds * sr)
    return np.random.default_rng(seed).standard_normal(n) * np.exp(-np.arange(n) / sr / decay_s)


def test_comb_is_zero_for_noise_and_a_tone_and_large_for_lines_at_the_token_rate():
    sr = 44100
    noise = _noise(1.0, sr, 0.2)
    t = np.arange(len(noise)) / sr
    lines = 0.05 * sum(np.sin(2 * np.pi * k * sr / 64 * t) for k in range(1, 12))
    assert abs(comb_level_db(noise, sr)) < 1.5
    assert abs(comb_level_db(np.sin(2 * np.pi * 100 * t), sr)) < 1.0
    assert comb_level_db(noise + lines, sr) > 10.0
    # lines elsewhere (at the half-way points) count against the comb
    halfway = 0.05 * sum(np.sin(2 * np.pi * (k + 0.5) * sr / 64 * t) for k in range(1, 12))
    assert comb_level_db(noise + halfway, sr) < -10.0
    assert math.isnan(comb_level_db(np.zeros(sr), sr))


@pytest.mark.parametrize("tau", [0.03, 0.1, 0.3])
def test_decay_time_of_an_exponential_is_tau_ln10(tau):
    sr = 44100
    t = np.arange(sr) / sr
    x = np.exp(-t / tau) * np.sin(2 * np.pi * 200 * t)
    assert decay_time_s(x, sr) == pytest.approx(tau * math.log(10), abs=0.006)


def test_decay_time_edge_cases():
    sr = 8000
    assert decay_time_s(np.zeros(sr), sr) == 0.0
    assert decay_time_s(np.ones(sr), sr) == pytest.approx(1.0)


def test_worst_ratio_is_the_furthest_from_one_on_a_log_scale():
    assert worst_ratio({"kick": 0.9, "snare": 1.6, "hat": 0.55}) == 0.55
    assert worst_ratio({"kick": 0.9, "snare": 2.1, "hat": 0.55}) == 2.1
    assert math.isnan(worst_ratio({}))


def test_an_unpitched_clip_requests_the_tags_typical_note_not_its_tracker_reading():
    adsr = ADSR(attack_s=0.002, decay_s=0.3, sustain_level=0.0, release_s=0.1)
    pitched = DrumRequest("tom", 45.4, adsr, None, tonal=True)
    unpitched = DrumRequest("kick", 96.0, adsr, None, tonal=False)  # a click read as ~2 kHz
    assert requested_note(pitched) == 45
    assert requested_note(unpitched) is None
