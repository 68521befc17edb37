"""mambakit.dsp.io: loading every format we promise, failing loudly on bad files,
round trips through save_audio, resampling, and level / onset utilities."""

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from mambakit.dsp import (
    AudioError,
    detect_onset,
    load_audio,
    loudness_normalize,
    peak_normalize,
    resample,
    save_audio,
    to_mono,
    trim_to_onset,
)


def _two_tone(n_channels: int, sr: int, seconds: float = 0.1) -> np.ndarray:
    """[T, C] float64: a different tone and level per channel, so swapped channels show."""
    t = np.arange(int(sr * seconds)) / sr
    chans = [0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)]
    return np.stack(chans[:n_channels], axis=1)


# (file name, soundfile subtype, sample rate, channels, max abs error after decoding)
FORMATS = [
    ("u8.wav", "PCM_U8", 22050, 2, 1.5 / 128),
    ("pcm24.wav", "PCM_24", 48000, 1, 2.0**-22),
    ("float.wav", "FLOAT", 32000, 2, 1e-7),
    ("stereo.flac", "PCM_16", 44100, 2, 2.0**-14),
    ("mono.aiff", "PCM_16", 22050, 1, 2.0**-14),
]


@pytest.mark.parametrize("name,subtype,sr,n_ch,tol", FORMATS)
def test_load_formats(tmp_path, name, subtype, sr, n_ch, tol):
    ref = _two_tone(n_ch, sr)
    path = tmp_path / name
    sf.write(path, ref, sr, subtype=subtype)
    audio, sr_read = load_audio(path)
    assert sr_read == sr
    assert audio.dtype == torch.float32 and audio.shape == (n_ch, ref.shape[0])
    assert np.abs(audio.numpy() - ref.T).max() <= tol


def test_load_ogg_vorbis(tmp_path):
    # lossy: same rate, length and channel layout, and the waveform close in energy terms
    sr = 48000
    ref = _two_tone(2, sr, seconds=0.3)
    path = tmp_path / "lossy.ogg"
    sf.write(path, ref, sr, subtype="VORBIS")
    audio, sr_read = load_audio(path)
    assert sr_read == sr and audio.shape == (2, ref.shape[0])
    err = np.sqrt(np.mean((audio.numpy() - ref.T) ** 2, axis=1))
    rms = np.sqrt(np.mean(ref.T**2, axis=1))
    assert (err < 0.1 * rms).all()


def test_load_float_keeps_values_beyond_unity(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, np.array([0.0, 1.5, -2.0, 0.25]), 8000, subtype="FLOAT")
    audio, _ = load_audio(path)
    assert audio[0].tolist() == [0.0, 1.5, -2.0, 0.25]


def test_missing_and_empty_files_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="nowhere.wav.*no such file"):
        load_audio(tmp_path / "nowhere.wav")
    empty = tmp_path / "empty.wav"
    empty.touch()
    with pytest.raises(AudioError, match="empty.wav.*empty"):
        load_audio(empty)


def test_zero_frame_file(tmp_path):
    path = tmp_path / "zero_frames.wav"
    sf.write(path, np.zeros((0, 1)), 44100)
    with pytest.raises(AudioError, match="zero_frames.wav.*zero audio frames"):
        load_audio(path)


@pytest.mark.parametrize("suffix", ["wav", "aiff", "flac", "ogg"])
@pytest.mark.parametrize("keep", ["header", "half"])
def test_truncated_file(tmp_path, suffix, keep):
    whole = tmp_path / f"whole.{suffix}"
    sf.write(whole, _two_tone(2, 44100), 44100, subtype="VORBIS" if suffix == "ogg" else None)
    data = whole.read_bytes()
    cut = tmp_path / f"cut_short.{suffix}"
    cut.write_bytes(data[:20] if keep == "header" else data[: len(data) // 2])
    with pytest.raises(AudioError, match=f"cut_short.{suffix}"):
        load_audio(cut)


def test_not_audio(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("hello, this is not a RIFF file")
    with pytest.raises(AudioError, match="notes.wav.*cannot decode"):
        load_audio(bad)


@pytest.mark.parametrize("subtype,tol", [("PCM_16", 2.0**-15), ("PCM_24", 2.0**-23)])
def test_save_round_trip_pcm(tmp_path, subtype, tol):
    x = torch.rand(2, 1000) * 1.8 - 0.9
    path = tmp_path / f"{subtype}.wav"
    save_audio(path, x, 16000, subtype=subtype)
    assert sf.info(path).subtype == subtype
    y, sr = load_audio(path)
    assert sr == 16000 and y.shape == x.shape
    assert (y - x).abs().max() <= tol


def test_save_round_trip_float_is_exact_and_unclipped(tmp_path):
    x = torch.randn(1, 500) * 3  # well beyond [-1, 1]: float files keep it, no warning
    path = tmp_path / "f.wav"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        save_audio(path, x, 22050, subtype="FLOAT")
    y, _ = load_audio(path)
    assert torch.equal(y, x)


def test_save_pcm_clips_with_warning(tmp_path):
    x = torch.tensor([[0.5, 1.7, -3.0, -0.25]])
    path = tmp_path / "clipped.wav"
    with pytest.warns(UserWarning, match="clipped.wav.*clipping"):
        save_audio(path, x, 8000)
    y, _ = load_audio(path)
    expected = torch.tensor([[0.5, 1.0, -1.0, -0.25]])
    assert (y - expected).abs().max() <= 2.0**-15


def test_save_accepts_1d_and_rejects_bad_shape(tmp_path):
    save_audio(tmp_path / "mono.wav", np.zeros(64), 8000)
    assert load_audio(tmp_path / "mono.wav")[0].shape == (1, 64)
    with pytest.raises(AudioError, match="cube.wav.*shape"):
        save_audio(tmp_path / "cube.wav", torch.zeros(1, 1, 64), 8000)


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (22050, 48000), (48000, 44100)])
def test_resample_keeps_tone_frequency(sr_in, sr_out):
    n = int(0.25 * sr_in)
    tone = torch.sin(2 * np.pi * 1000 * torch.arange(n, dtype=torch.float64) / sr_in).float()
    out = resample(tone[None], sr_in, sr_out)[0].double().numpy()
    spec = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak_hz = np.argmax(spec) * sr_out / len(out)
    assert abs(peak_hz - 1000) <= sr_out / len(out)  # within one FFT bin
    # amplitude preserved away from the edges (HQ filter passband is flat at 1 kHz)
    mid = out[len(out) // 4 : 3 * len(out) // 4]
    assert abs(np.abs(mid).max() - 1) < 0.01


@pytest.mark.parametrize("n", [1000, 4411, 12345])
@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (16000, 44100), (48000, 22050)])
def test_resample_length_and_shapes(n, sr_in, sr_out):
    x = torch.randn(2, 3, n)
    y = resample(x, sr_in, sr_out)
    assert y.shape == (2, 3, round(n * sr_out / sr_in)) and y.dtype == x.dtype
    assert resample(x[0, 0], sr_in, sr_out).shape == (round(n * sr_out / sr_in),)
    assert resample(x, sr_in, sr_in) is x


def test_to_mono():
    x = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, -1.0]])
    assert torch.equal(to_mono(x), torch.tensor([[2.0, 1.0, 1.0]]))
    assert to_mono(x[0]).shape == (1, 3)
    assert torch.equal(to_mono(x[:1]), x[:1])


def test_peak_normalize_definition():
    x = torch.randn(2, 1000) * 0.1
    for peak in (0.99, 0.5):
        y = peak_normalize(x, peak)
        assert abs(float(y.abs().max()) - peak) < 1e-6
        ratio = y / x  # a pure gain: the same positive factor on every sample
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio)) and ratio[0, 0] > 0
    silent = torch.zeros(1, 10)
    assert torch.equal(peak_normalize(silent), silent)


def test_loudness_normalize_definition():
    x = torch.randn(1, 4000) * 0.3
    for target in (-20.0, -12.0):
        y = loudness_normalize(x, 16000, target_db=target)
        rms_db = 20 * torch.log10(y.pow(2).mean().sqrt())
        assert abs(float(rms_db) - target) < 1e-3
        assert torch.allclose(y / x, (y / x)[0, 0].expand_as(x))
    silent = torch.zeros(1, 10)
    assert torch.equal(loudness_normalize(silent, 16000), silent)


def _click_after_silence(sr: int, click_at: int, floor_db: float, seed: int = 0) -> np.ndarray:
    """Noise floor at ``floor_db`` dBFS RMS, then a decaying click starting at ``click_at``."""
    rng = np.random.default_rng(seed)
    n = click_at + sr // 5
    x = rng.standard_normal(n) * 10 ** (floor_db / 20)
    t = np.arange(n - click_at) / sr
    x[click_at:] += 0.8 * np.exp(-t / 0.02) * np.sin(2 * np.pi * 180 * t + 0.3)
    return x


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
@pytest.mark.parametrize("floor_db", [-90.0, -50.0])
def test_detect_onset_within_1ms(sr, floor_db):
    click_at = int(0.123 * sr)
    x = _click_after_silence(sr, click_at, floor_db)
    onset = detect_onset(torch.from_numpy(x).float()[None], sr)
    assert abs(onset - click_at) <= 0.001 * sr


def test_trim_to_onset():
    sr = 44100
    click_at = int(0.2 * sr)
    x = torch.from_numpy(_click_after_silence(sr, click_at, -50.0)).float()[None]
    pre_roll = 0.002
    y = trim_to_onset(x, sr, pre_roll_s=pre_roll)
    start = x.shape[-1] - y.shape[-1]  # samples dropped
    assert abs(start - (click_at - pre_roll * sr)) <= 0.001 * sr
    assert torch.equal(y, x[:, start:])


def test_detect_onset_of_a_sound_without_leading_silence():
    # no noise floor to stand out of: the sound starts at 0 (it used to pick the loudest frame)
    sr = 16000
    t = np.arange(sr // 2) / sr
    tone = np.sin(2 * np.pi * 220 * t) * (1 + 0.01 * np.sin(2 * np.pi * 3 * t))
    assert detect_onset(tone, sr) == 0
