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
from mambakit.eval.drums import DrumScores, scores_markdown
from mambakit.eval.features import NearestCentroidClassifier, clip_embedding

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


def test_nearest_centroid_classifier_separates_low_tones_from_noise():
    rng = np.random.default_rng(2)
    low = [tone(36 + k) * np.exp(-np.arange(SR // 2) / 4000) for k in range(4)]
    hiss = [
        rng.standard_normal(SR // 2) * 0.2 * np.exp(-np.arange(SR // 2) / 800) for _ in range(4)
    ]
    emb = np.stack([clip_embedding(x, SR) for x in low + hiss])
    clf = NearestCentroidClassifier().fit(emb, ["kick"] * 4 + ["hat"] * 4)
    test = [tone(38) * np.exp(-np.arange(SR // 2) / 4000), rng.standard_normal(SR // 2) * 0.1]
    assert clf.predict(np.stack([clip_embedding(x, SR) for x in test])) == ["kick", "hat"]


def test_scores_markdown_has_one_column_per_generator_and_marks_missing_values():
    md = scores_markdown([DrumScores(name="model", tag_accuracy=0.5), DrumScores(name="scaffold")])
    assert "| metric | model | scaffold |" in md
    assert "50.0%" in md and "n/a" in md
