"""mambakit.dsp.envelope: ADSR model, its renderer, its fitter and the Hilbert envelope."""

import itertools
import math

import numpy as np
import pytest
import torch

from mambakit.dsp import ADSR, fit_adsr, hilbert_envelope, render_adsr
from mambakit.dsp.envelope import DECAY_LOG_RATIO

SR = 16000


def test_render_adsr_follows_its_definition():
    adsr = ADSR(attack_s=0.01, decay_s=0.1, sustain_level=0.5, release_s=0.2, hold_s=0.05)
    env = render_adsr(adsr, SR, SR).double().numpy()
    at = lambda s: env[int(round(s * SR))]  # noqa: E731
    assert env.shape == (SR,) and env[0] == 0.0
    assert at(0.005) == pytest.approx(0.5, abs=1e-3)  # linear attack, half way
    # decay: the excess over sustain falls 60 dB (x1000) in decay_s
    t = 0.03
    assert at(0.01 + t) == pytest.approx(0.5 + 0.5 * math.exp(-DECAY_LOG_RATIO * t / 0.1), 1e-3)
    # release starts at a + d + h from the level reached there, falls 60 dB in release_s
    start = 0.5 + 0.5 * math.exp(-DECAY_LOG_RATIO * 0.15 / 0.1)
    assert at(0.16 + 0.1) == pytest.approx(start * math.exp(-DECAY_LOG_RATIO * 0.5), rel=1e-2)
    assert (env[int(0.37 * SR) :] == 0).all()  # silent after the release
    assert np.diff(env[: int(0.01 * SR)]).min() > 0 and np.diff(env[int(0.011 * SR) :]).max() <= 0


def test_adsr_validation_and_vector_round_trip():
    adsr = ADSR(0.01, 0.2, 0.3, 0.4, 0.05)
    back = ADSR.from_vector(adsr.to_vector())
    assert back.to_vector().tolist() == pytest.approx(adsr.to_vector().tolist())
    assert ADSR.from_vector([0.01, 0.2, 0.3, 0.4]).hold_s == 0.0
    with pytest.raises(ValueError, match="attack_s"):
        ADSR(-0.1, 0.2, 0.3, 0.4)
    with pytest.raises(ValueError, match="sustain_level"):
        ADSR(0.01, 0.2, 1.3, 0.4)
    with pytest.raises(ValueError, match="4 or 5"):
        ADSR.from_vector([1.0, 2.0])


def _close(got: float, want: float, rel: float = 0.1, floor: float = 0.002) -> bool:
    """Within ``rel`` of the true time; ``floor`` seconds absolute for zero-length parts."""
    return abs(got - want) <= max(rel * want, floor)


# percussive grid: without sustain, hold and release leave no trace (nothing to fit)
PERCUSSIVE = [ADSR(a, d, 0.0, 0.1) for a, d in itertools.product((0.001, 0.01, 0.03), (0.05, 0.3))]
# sustained grid: every parameter shapes the curve and must be recovered; the release
# alternates between 0.1 and 0.3 s so that each meets both holds and both decays
SUSTAINED = [
    ADSR(a, d, s, (0.1, 0.3)[(i + i // 4) % 2], h)
    for i, (a, d, s, h) in enumerate(
        itertools.product((0.002, 0.02), (0.05, 0.2), (0.2, 0.6), (0.0, 0.1))
    )
]


@pytest.mark.parametrize("adsr", PERCUSSIVE, ids=str)
def test_fit_adsr_percussive(adsr):
    fit = fit_adsr(render_adsr(adsr, SR, SR), SR)
    assert _close(fit.attack_s, adsr.attack_s) and _close(fit.decay_s, adsr.decay_s), fit
    assert fit.sustain_level <= 0.05


def test_fit_adsr_sustained_grid():
    failures = []
    for adsr in SUSTAINED:
        fit = fit_adsr(render_adsr(adsr, SR, SR).numpy(), SR)
        ok = (
            _close(fit.attack_s, adsr.attack_s)
            and _close(fit.decay_s, adsr.decay_s)
            and _close(fit.hold_s, adsr.hold_s)
            and _close(fit.release_s, adsr.release_s)
            and abs(fit.sustain_level - adsr.sustain_level) <= 0.05
        )
        if not ok:
            failures.append((adsr, fit))
    assert not failures, "\n".join(f"{a} -> {f}" for a, f in failures)


def test_fit_adsr_is_scale_invariant_and_rejects_silence():
    adsr = ADSR(0.01, 0.1, 0.4, 0.2, 0.05)
    env = render_adsr(adsr, SR, SR)
    a, b = fit_adsr(env, SR), fit_adsr(0.3 * env, SR)
    assert a.to_vector().tolist() == pytest.approx(b.to_vector().tolist(), rel=1e-5, abs=1e-7)
    with pytest.raises(ValueError, match="non-silent"):
        fit_adsr(np.zeros(100), SR)


def test_hilbert_envelope_of_amplitude_modulated_tone():
    t = np.arange(SR // 2) / SR
    amp = 0.2 + 0.6 * np.exp(-t / 0.1)  # slow compared with the 1 kHz carrier
    x = amp * np.sin(2 * np.pi * 1000 * t)
    env = hilbert_envelope(torch.from_numpy(x).float()[None], SR, smooth_ms=1.0)
    mid = slice(SR // 50, -SR // 50)  # away from the FFT's edge effects
    assert env.shape == x.shape
    assert np.abs(env[mid] - amp[mid]).max() < 0.01


def test_hilbert_envelope_has_no_wrapped_tail():
    # an abrupt onset used to leak around the circular FFT onto the silent end of the clip
    t = np.arange(SR) / SR
    x = np.where(t < 0.3, np.sin(2 * np.pi * 440 * t) * np.exp(-t / 0.03), 0.0)
    env = hilbert_envelope(x, SR)
    assert env[-SR // 10 :].max() < 1e-4 * env.max()  # was ~1e-2 before the padding


@pytest.mark.parametrize("adsr", [ADSR(0.01, 0.1, 0.5, 0.2, 0.2), ADSR(0.02, 0.05, 0.6, 0.3)])
def test_fit_adsr_on_hilbert_envelope_of_a_tone(adsr):
    # the end-to-end use (dataset features): audio -> Hilbert envelope -> ADSR
    x = np.sin(2 * np.pi * 440 * np.arange(SR) / SR) * render_adsr(adsr, SR, SR).numpy()
    fit = fit_adsr(hilbert_envelope(x, SR), SR)
    for name in ("attack_s", "decay_s", "release_s", "hold_s"):
        assert _close(getattr(fit, name), getattr(adsr, name), rel=0.2, floor=0.005), name
    assert abs(fit.sustain_level - adsr.sustain_level) <= 0.05
