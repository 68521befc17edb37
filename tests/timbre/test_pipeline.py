import numpy as np
import pytest
import soundfile as sf
import torch

from mambakit.dsp import AudioError
from mambakit.timbre.model import TimbreConfig, TimbreUNet
from mambakit.timbre.pipeline import TimbreTransfer


@pytest.fixture(scope="module")
def transfer():
    torch.manual_seed(0)
    model = TimbreUNet(TimbreConfig.tiny())  # 0.128 s chunks = 2048 samples
    return TimbreTransfer(model, overlap_seconds=0.032, progress=False)


def _tone(seconds, sr=16000, f=220.0):
    t = torch.arange(int(seconds * sr)) / sr
    return 0.5 * torch.sin(2 * torch.pi * f * t) * torch.exp(-t)


def test_chunk_plan_covers_everything_with_exact_overlaps(transfer):
    for n in (100, 2048, 2049, 5000, 9999):
        plan = transfer.chunk_plan(n)
        assert plan[0][0] == 0 and plan[-1][1] == n
        for (_, b0), (a1, b1) in zip(plan, plan[1:]):
            assert b0 - a1 == transfer.overlap  # neighbours overlap by exactly `overlap`
            assert b1 - a1 > transfer.overlap


def test_identity_model_comes_back_unchanged_at_any_length(transfer, monkeypatch):
    """Crossfade weights sum to one: no seams, no gain change."""
    monkeypatch.setattr(transfer.model, "forward", lambda content, *a, **k: content)
    for n in (1000, 2048, 5003, 12345):
        x = _tone(n / 16000)
        out, sr = transfer.transfer(x, None, sr=16000)
        assert out.shape == (1, 1, n) and sr == 16000
        torch.testing.assert_close(out[0, 0], x, atol=1e-6, rtol=1e-5)
        plan = transfer.chunk_plan(n)  # the styled path blends with the same overlap_add
        pieces = {k: x[None, None, a:b] for k, (a, b) in enumerate(plan)}
        torch.testing.assert_close(transfer.overlap_add(pieces, plan)[0, 0], x)


def test_chunk_shares_tile_the_clip_once(transfer):
    for n in (2048, 2049, 5000, 9999):
        plan = transfer.chunk_plan(n)
        covered = [a + lo + i for (a, _), (lo, hi) in zip(plan, transfer.shares(plan))
                   for i in range(hi - lo)]  # fmt: skip
        assert covered == list(range(n))


def test_pooled_content_statistics_match_the_whole_clip(transfer):
    torch.manual_seed(2)
    x = _tone(0.6) + 0.05 * torch.randn(9600)
    prepared, _ = transfer.prepare(x, 16000, "content", transfer.last_report)
    with torch.no_grad():
        whole = transfer.model.style_statistics(prepared)
        pooled = transfer.content_statistics(prepared)
        one = transfer.content_statistics(prepared[..., :2000])  # a single chunk: exact
        direct = transfer.model.style_statistics(prepared[..., :2000])
    assert len(transfer.chunk_plan(9600)) > 3
    for (m_w, s_w), (m_p, s_p), (m_1, s_1), (m_d, s_d) in zip(whole, pooled, one, direct):
        # chunks start their Mamba state from zero: close to the whole clip, not equal
        torch.testing.assert_close(m_p, m_w, atol=0.05 * float(s_w.mean()), rtol=0)
        torch.testing.assert_close(s_p, s_w, rtol=0.05, atol=1e-4)
        torch.testing.assert_close(m_1, m_d, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(s_1, s_d, rtol=1e-4, atol=1e-5)


def test_chunked_equals_unchunked_outside_the_overlaps(transfer):
    torch.manual_seed(1)
    x = _tone(0.5) + 0.05 * torch.randn(8000)
    prepared, _ = transfer.prepare(x, 16000, "content", transfer.last_report)
    styled, _ = transfer.prepare(_tone(0.3, f=330.0), 16000, "style", transfer.last_report)
    plan = transfer.chunk_plan(8000)
    with torch.no_grad():
        stats = transfer.model.style_statistics(styled)
        chunked, n_chunks = transfer.render(prepared, stats, None)
        # without the feature cache (every chunk encoded twice): the same result
        recomputed, _ = transfer.render(prepared, stats, None, cache_mb=0)
        own = transfer.content_statistics(prepared)  # content statistics of the whole clip
        whole = transfer.model(prepared, stats, content_stats=own)  # the whole clip at once
        pieces = [transfer.model(prepared[..., a:b], stats, content_stats=own) for a, b in plan]
    assert n_chunks == len(plan) > 3
    torch.testing.assert_close(recomputed, chunked)
    ov = transfer.overlap
    for k, (a, b) in enumerate(plan):
        lo = a + (ov if k > 0 else 0)
        hi = b - (ov if k < len(plan) - 1 else 0)
        torch.testing.assert_close(chunked[..., lo:hi], pieces[k][..., lo - a : hi - a])
    # The first chunk also equals the unchunked rendering away from its end: the Mamba
    # blocks are causal and the convolutions' look-ahead is a few hundred samples.
    first_end = plan[0][1] - ov - 512
    torch.testing.assert_close(chunked[..., :first_end], whole[..., :first_end])


def test_short_content_is_one_chunk_equal_to_the_model(transfer):
    x = _tone(0.1)
    out, _ = transfer.transfer(x, None, sr=16000)
    assert transfer.last_report.chunks == 1
    prepared, peak = transfer.prepare(x, 16000, "content", transfer.last_report)
    with torch.no_grad():
        direct = transfer.model(prepared)
    torch.testing.assert_close(out, direct * peak / direct.abs().max())


def test_any_rate_and_channels_are_converted_and_reported(transfer, tmp_path):
    stereo = np.stack([_tone(0.3, 44100).numpy(), _tone(0.3, 44100, 330).numpy()], axis=1)
    sf.write(tmp_path / "content.wav", stereo, 44100)
    sf.write(tmp_path / "style.wav", _tone(0.7, 22050, 110).numpy(), 22050)
    out, sr = transfer.transfer(tmp_path / "content.wav", tmp_path / "style.wav")
    assert sr == 16000 and out.shape == (1, 1, 4800)
    notes = " | ".join(transfer.last_report.conversions)
    assert "mixed 2 channels to mono" in notes
    assert "44100 Hz -> 16000 Hz" in notes and "22050 Hz -> 16000 Hz" in notes
    report = transfer.last_report
    assert report.times_real_time == report.seconds / report.processing_seconds > 0


def test_bad_inputs_are_clear_errors_naming_the_file(transfer, tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(tmp_path / "short.wav", _tone(0.01).numpy(), 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav file")
    good = _tone(0.3)
    with pytest.raises(AudioError, match=r"silent\.wav.*silent"):
        transfer.transfer(tmp_path / "silent.wav", good, sr=16000)
    with pytest.raises(AudioError, match=r"short\.wav.*too short"):
        transfer.transfer(good, tmp_path / "short.wav", sr=16000)
    with pytest.raises(AudioError, match=r"broken\.wav.*cannot decode"):
        transfer.transfer(tmp_path / "broken.wav", good, sr=16000)
    with pytest.raises(ValueError, match="5 values"):
        transfer.transfer(good, good, alpha=(1, 1), sr=16000)


def test_several_style_clips_are_read_end_to_end(transfer, tmp_path):
    a, b = _tone(0.3, f=220.0), _tone(0.4, f=330.0)
    sf.write(tmp_path / "a.wav", a.numpy(), 16000, subtype="FLOAT")
    # each clip is normalised on its own
    sf.write(tmp_path / "b.wav", (0.5 * b).numpy(), 16000, subtype="FLOAT")
    content = _tone(0.5, f=262.0)
    listed, _ = transfer.transfer(content, [tmp_path / "a.wav", tmp_path / "b.wav"], sr=16000)
    joined, _ = transfer.transfer(content, torch.cat([a / a.abs().max(), b / b.abs().max()]),
                                  sr=16000)  # fmt: skip
    torch.testing.assert_close(listed, joined)
    only_a, _ = transfer.transfer(content, a, sr=16000)
    assert not torch.allclose(listed, only_a)
    with pytest.raises(AudioError, match=r"short\.wav.*too short"):
        sf.write(tmp_path / "short.wav", _tone(0.01).numpy(), 16000)
        transfer.transfer(content, [tmp_path / "a.wav", tmp_path / "short.wav"])
