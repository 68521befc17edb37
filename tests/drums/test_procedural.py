import numpy as np
import pytest
import soundfile as sf

from mambakit.drums.procedural import synthesize, write_corpus
from mambakit.drums.tags import TAGS

SR = 22050


def centroid(x, sr=SR):
    mag = np.abs(np.fft.rfft(x)) ** 2  # power-weighted centroid
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float((f * mag).sum() / mag.sum())


def dominant_freq(x, sr=SR):
    w = x * np.hanning(x.size)
    spec = np.abs(np.fft.rfft(w, 8 * x.size))
    return float(np.fft.rfftfreq(8 * x.size, 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("tag", TAGS)
def test_shape_range_and_determinism(tag):
    a = synthesize(tag, np.random.default_rng(3), SR, 0.5)
    b = synthesize(tag, np.random.default_rng(3), SR, 0.5)
    c = synthesize(tag, np.random.default_rng(4), SR, 0.5)
    assert a.shape == (SR // 2,) and a.dtype == np.float32
    assert np.isclose(np.abs(a).max(), 0.9, atol=1e-3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_kick_is_low_and_falls_in_pitch_hat_is_high():
    rng = np.random.default_rng(0)
    kick = synthesize("kick", rng, SR, 0.5)
    hat = synthesize("closed_hat", rng, SR, 0.5)
    assert centroid(kick) < 500 < 5000 < centroid(hat)
    early, late = (
        dominant_freq(kick[: int(0.02 * SR)]),
        dominant_freq(kick[int(0.1 * SR) : int(0.2 * SR)]),
    )
    assert early > 1.5 * late


def test_open_hat_rings_longer_than_closed():
    def tail_energy(x):
        return float(np.sum(x[int(0.15 * SR) :] ** 2) / np.sum(x**2))

    rng = np.random.default_rng(1)
    assert tail_energy(synthesize("open_hat", rng, SR)) > 10 * tail_energy(
        synthesize("closed_hat", rng, SR)
    )


def test_unknown_tag():
    with pytest.raises(ValueError, match="unknown drum tag 'cowbel'"):
        synthesize("cowbel", np.random.default_rng(0))


def test_write_corpus_deterministic_and_layout(tmp_path):
    a = write_corpus(tmp_path / "a", n_per_tag=2, seed=5, sr=SR, tags=("kick", "rim"), seconds=0.2)
    b = write_corpus(tmp_path / "b", n_per_tag=2, seed=5, sr=SR, tags=("kick", "rim"), seconds=0.2)
    assert [p.relative_to(tmp_path / "a").as_posix() for p in a] == [
        "kick/kick_000.wav",
        "kick/kick_001.wav",
        "rim/rim_000.wav",
        "rim/rim_001.wav",
    ]
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    x, sr = sf.read(a[0])
    assert sr == SR and x.shape == (int(0.2 * SR),)
