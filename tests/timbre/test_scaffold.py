import math
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from mambakit.dsp import AudioError
from mambakit.timbre import scaffold
from mambakit.timbre.data import PairedNotes, make_procedural_instruments
from mambakit.timbre.pipeline import ScaffoldTransfer, TimbreTransfer
from mambakit.timbre.scaffold import (
    PALETTE_SEMITONES,
    ScaffoldConfig,
    ScaffoldTimbre,
    palette_weights,
    style_note_spans,
)
from mambakit.timbre.scaffold_training import ScaffoldData, ScaffoldLoss, train_scaffold
from mambakit.train import TrainConfig

SR = 16000


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ScaffoldTimbre(ScaffoldConfig.preset("tiny")).eval()


def _note(freq, seconds, harmonics=(1.0, 0.5, 0.3), decay=2.0):
    t = np.arange(int(seconds * SR)) / SR
    x = sum(a * np.sin(2 * np.pi * (k + 1) * freq * t) for k, a in enumerate(harmonics))
    return torch.tensor(0.4 * x * np.exp(-decay * t), dtype=torch.float32)


def test_output_has_the_content_length_at_the_model_rate(tiny):
    tt = ScaffoldTransfer(tiny)
    content = torch.stack([_note(220, 0.7)] * 2)  # stereo
    out, sr = tt.transfer(content, _note(330, 0.3), sr=22050, style_sr=SR)
    assert sr == SR and out.shape == (1, 1, round(content.shape[-1] * SR / 22050))
    assert any("mixed 2 channels" in c for c in tt.last_report.conversions)
    assert any("resampled 22050" in c for c in tt.last_report.conversions)


def test_chunked_transfer_equals_one_pass(tiny):
    content, style = _note(196, 2.3), _note(392, 0.5)
    one, _ = ScaffoldTransfer(tiny, chunk_seconds=10.0).transfer(content, style, sr=SR)
    tt = ScaffoldTransfer(tiny, chunk_seconds=0.3)
    chunked, _ = tt.transfer(content, style, sr=SR)
    assert tt.last_report.chunks == 8
    torch.testing.assert_close(chunked, one, atol=1e-5, rtol=0)


def test_a_longer_content_starts_with_the_shorter_ones_output(tiny):
    # causal decoder + carried state: appending audio changes nothing before it, up to the
    # output peak matching (compare shapes, not levels)
    tt = ScaffoldTransfer(tiny, chunk_seconds=0.25)
    content, style = _note(220, 1.6, decay=0.5), _note(330, 0.4)
    short, _ = tt.transfer(content[:8000], style, sr=SR)
    long, _ = tt.transfer(content, style, sr=SR)
    a, b = short[0, 0, :7000], long[0, 0, :7000]
    scale = float((a @ b) / (a @ a))
    torch.testing.assert_close(a * scale, b, atol=1e-4, rtol=0)


def test_silent_content_frames_give_silence(tiny):
    content = torch.cat([_note(220, 0.5), torch.zeros(8000)])
    out, _ = ScaffoldTransfer(tiny).transfer(content, _note(330, 0.3), sr=SR)
    # the loudness floor (-100 dB) bounds the amplitude: <= -100 + 40 dB gain
    assert float(out[0, 0, 8000 + 2048 :].abs().max()) < 2e-3 * float(out.abs().max()) + 1e-3


def test_noise_content_warns_and_a_note_does_not(tiny):
    tt = ScaffoldTransfer(tiny)
    noise = torch.rand(SR, generator=torch.Generator().manual_seed(0)) - 0.5
    with pytest.warns(UserWarning, match="monophonic"):
        tt.transfer(noise, _note(330, 0.3), sr=SR)
    assert tt.last_report.warnings and "monophonic" in tt.last_report.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tt.transfer(_note(220, 0.8, decay=0.3), _note(330, 0.3), sr=SR)
    assert tt.last_report.warnings == []


@pytest.mark.parametrize("chord", [(262, 330, 392), (220, 277, 330), (196, 247, 294, 349)])
def test_chords_warn(tiny, chord):
    # a major triad is periodic at its common root two octaves down, which YIN reports
    # with low aperiodicity: the empty first harmonics of that root give it away
    t = np.arange(2 * SR) / SR
    notes = sum(0.2 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(4 * np.pi * f * t))
                for f in chord)  # fmt: skip
    with pytest.warns(UserWarning, match="monophonic"):
        ScaffoldTransfer(tiny).transfer(torch.tensor(notes, dtype=torch.float32), None, sr=SR)


def test_blend_zero_is_the_reconstruction_and_per_level_alphas_are_refused(tiny):
    tt = ScaffoldTransfer(tiny)
    content, style = _note(220, 0.6), _note(440, 0.4, harmonics=(1.0, 0.0, 0.9))
    recon, _ = tt.transfer(content, None, sr=SR)
    blended, _ = tt.transfer(content, style, alpha=0.0, sr=SR)
    transferred, _ = tt.transfer(content, style, alpha=1.0, sr=SR)
    torch.testing.assert_close(blended, recon)
    assert not torch.allclose(transferred, recon)
    with pytest.raises(ValueError, match="one style strength"):
        tt.transfer(content, style, alpha=(1, 1, 1, 1, 0.2), sr=SR)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tt.transfer(content, style, alpha=1.5, sr=SR)


def test_from_pretrained_picks_the_engine(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "run")
    tt = TimbreTransfer.from_pretrained(tmp_path / "run")
    assert isinstance(tt, ScaffoldTransfer) and tt.engine == "scaffold"
    content, style = _note(220, 0.5), _note(330, 0.3)
    torch.testing.assert_close(
        tt.transfer(content, style, sr=SR)[0],
        ScaffoldTransfer(tiny).transfer(content, style, sr=SR)[0],
    )


@pytest.fixture(scope="module")
def four_instruments(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaffold") / "procedural"
    return make_procedural_instruments(root, n_instruments=4, pitches=(55, 60, 64, 67), seconds=0.6)


def _fixed_batch(data, n=6):
    g = torch.Generator().manual_seed(1)
    return default_collate([data.sample(i % len(data), g) for i in range(n)])


def test_a_few_training_steps_lower_the_loss(four_instruments, tmp_path):
    config = ScaffoldConfig.preset("tiny")
    data = PairedNotes(four_instruments, segment_seconds=0.5, max_start_seconds=0.05)
    batch = _fixed_batch(data)
    loss = ScaffoldLoss(SR)
    torch.manual_seed(0)
    with torch.no_grad():
        before = float(loss(ScaffoldTimbre(config)(batch["content"], batch["style"]),
                            batch["target"])[0])  # fmt: skip
    train = TrainConfig(lr=3e-3, max_steps=25, warmup_steps=2, batch_size=6, log_every=5,
                        ckpt_every=25, progress=False, resume=False)  # fmt: skip
    summary = train_scaffold(data, tmp_path / "run", config, train)
    assert summary.steps == 25
    trained = ScaffoldTimbre.from_pretrained(tmp_path / "run")
    with torch.no_grad():
        after = float(loss(trained(batch["content"], batch["style"]), batch["target"])[0])
    assert after < 0.95 * before


def _separation(model, data):
    """Mean embedding distance between notes of different instruments / of one instrument."""
    by = data.by_instrument
    with torch.no_grad():
        emb = {(n, p): model.embed(data.audio(by[n][p][0])[None])[0] for n in by for p in by[n]}
    same, other = [], []
    for (n, p), e in emb.items():
        for (m, q), f in emb.items():
            if (n, p) < (m, q):
                (same if n == m else other).append(float((e - f).norm()))
    return np.mean(other) / np.mean(same)


def test_embedding_separates_instruments_after_short_training(four_instruments, tmp_path):
    config = ScaffoldConfig.preset("tiny")
    data = PairedNotes(four_instruments, segment_seconds=0.5, max_start_seconds=0.05)
    # with the note inputs the tiny model separates by 1.25 after 40 steps, 1.40 after 60
    train = TrainConfig(lr=3e-3, max_steps=60, warmup_steps=2, batch_size=8, log_every=10,
                        ckpt_every=60, progress=False, resume=False)  # fmt: skip
    torch.manual_seed(train.seed)  # the initial weights train_scaffold starts from
    before = _separation(ScaffoldTimbre(config).eval(), data)
    train_scaffold(data, tmp_path / "run", config, train, ScaffoldData(reconstruction_ratio=0.2))
    after = _separation(ScaffoldTimbre.from_pretrained(tmp_path / "run"), data)
    # two notes of one instrument are nearer than notes of two, and more so than at init
    assert after > 1.25 and after > before + 0.25


def test_a_pluck_style_makes_a_sustained_content_decay(tiny):
    content = _note(220, 2.0, decay=0.0)  # a held note
    pluck = _note(330, 1.0, decay=4.0)  # -35 dB a second
    x, y = content[None, None], pluck[None, None]
    contours, style = tiny.contours(x), tiny.style(y)
    shaped = tiny.level_db(contours, style)[0]
    rate = tiny.config.sample_rate / tiny.config.hop
    early, late = shaped[int(0.2 * rate)], shaped[int(1.2 * rate)]
    assert float(early - late) == pytest.approx(35.0, abs=4.0)
    held = tiny.config.with_(note_envelope=False)
    kept = ScaffoldTimbre(held).level_db(contours, style)[0]
    torch.testing.assert_close(kept, contours.loudness_db[0])
    # and the rendered audio decays with it (the untrained decoder's gain is near 0 dB)
    with torch.no_grad():
        out = tiny(x, y)[0, 0]
    first, second = out[3200:8000].pow(2).mean(), out[19200:24000].pow(2).mean()
    assert float(10 * torch.log10(first / second)) > 25.0


def test_spectrum_term_sees_the_long_term_spectrum_only():
    from mambakit.dsp import MelLoss, MultiResolutionSTFTLoss

    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 1, 8000, generator=g) * 0.1
    pred = torch.randn(2, 1, 8000, generator=g) * 0.1
    plain, terms = ScaffoldLoss(SR)(pred, target)
    stft = MultiResolutionSTFTLoss(fft_sizes=(2048, 1024, 512, 256, 128))(pred, target)
    mel = MelLoss(SR, n_fft=1024, hop_length=256, n_mels=80)(pred, target)
    torch.testing.assert_close(plain, stft + mel)  # weight 0: the loss as before
    assert "spectrum" not in terms
    weighted = ScaffoldLoss(SR, spectrum_weight=2.0)
    # white noise of one level has one long-term spectrum, whatever the samples
    total, terms = weighted(pred, target)
    assert terms["spectrum"] < 0.3 * terms["mel"]
    torch.testing.assert_close(total, plain + 2.0 * terms["spectrum"])
    # a 6 dB quieter copy moves it by ln 2 in every band
    _, quieter = weighted(0.5 * target, target)
    assert quieter["spectrum"] == pytest.approx(np.log(2.0), rel=0.02)


def test_low_harmonic_share_reuses_the_contours_to_the_same_answer(tiny):
    from mambakit.timbre.scaffold import low_harmonic_share

    note = _note(196, 1.5, harmonics=(0.2, 0.2, 0.2, 1.0, 1.0, 1.0))
    contours = tiny.contours(note[None, None])
    alone = low_harmonic_share(note, tiny.config)
    reused = low_harmonic_share(note, tiny.config, contours)
    assert alone == pytest.approx(3 * 0.2**2 / (3 * 0.2**2 + 3), abs=0.02)  # energy share
    assert reused == pytest.approx(alone, abs=0.01)


def test_mfcc_term_is_eval_timbres_distance_and_ignores_the_level():
    from mambakit.eval.timbre import mfcc_statistics as clip_statistics

    bright = _note(220, 1.0, harmonics=(1.0, 0.8, 0.7, 0.6, 0.5), decay=0.5)
    dark = _note(220, 1.0, harmonics=(1.0, 0.1), decay=0.5)
    pred, target = torch.stack([bright, dark])[:, None], torch.stack([dark, dark])[:, None]
    plain, _ = ScaffoldLoss(SR)(pred, target)
    total, terms = ScaffoldLoss(SR, mfcc_weight=0.5)(pred, target)
    expected = float((clip_statistics(bright, SR) - clip_statistics(dark, SR)).norm()) / 2
    assert terms["mfcc"] == pytest.approx(expected, rel=1e-4)  # the second clip adds 0
    torch.testing.assert_close(total, plain + 0.5 * terms["mfcc"])
    # a gain moves c0, which the statistics leave out, and the near-empty bands' log floor
    _, quieter = ScaffoldLoss(SR, mfcc_weight=1.0)(0.5 * target, target)
    assert quieter["mfcc"] < 0.25 * terms["mfcc"]


def test_a_run_can_start_from_another_runs_weights(four_instruments, tmp_path):
    config = ScaffoldConfig.preset("tiny")
    data = PairedNotes(four_instruments, segment_seconds=0.5, max_start_seconds=0.05)
    train = TrainConfig(lr=3e-3, max_steps=3, warmup_steps=1, batch_size=4, log_every=1,
                        ckpt_every=3, progress=False, resume=False)  # fmt: skip
    train_scaffold(data, tmp_path / "first", config, train)
    first = ScaffoldTimbre.from_pretrained(tmp_path / "first")
    idle = TrainConfig(**{**train.__dict__, "lr": 0.0, "weight_decay": 0.0})
    train_scaffold(data, tmp_path / "second", "small", idle, init_from=tmp_path / "first")
    second = ScaffoldTimbre.from_pretrained(tmp_path / "second")
    assert second.config == first.config  # the run's config, not the preset asked for
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        torch.testing.assert_close(a, b)  # lr 0: the weights it started from
    wider = ScaffoldConfig.preset("tiny", n_noise_bands=config.n_noise_bands + 8)
    with pytest.raises(ValueError, match="its weights do not fit this config"):
        train_scaffold(data, tmp_path / "third", wider, idle, init_from=tmp_path / "first")


def _pitch_and_level(clip):
    from mambakit.dsp.contours import f0_contour, frame_spectra

    level, _ = frame_spectra(clip, 128, 1024, 1, SR)
    return f0_contour(clip, SR, 128), level


def test_a_scale_splits_into_its_notes_and_one_note_stays_whole():
    scale = torch.cat([_note(f, 0.5, decay=0.5) for f in (220.0, 262.0, 330.0)])
    spans = style_note_spans(*_pitch_and_level(scale), SR / 128)
    frames = len(_pitch_and_level(scale)[1])
    assert len(spans) == 3 and spans[0][0] == 0 and spans[-1][1] == frames
    for (_, z), (b, _) in zip(spans[:-1], spans[1:], strict=True):
        assert z == b  # they tile the clip
    for start, seconds in zip((s for s, _ in spans[1:]), (0.5, 1.0), strict=True):
        assert abs(start * 128 / SR - seconds) < 0.05
    # one note with a short octave slip (a 50 ms burst an octave up): still one note
    note = _note(220.0, 1.0, decay=0.5)
    t = torch.arange(800) / SR
    note[8000:8800] = 0.3 * torch.sin(2 * torch.pi * 440.0 * t)
    assert len(style_note_spans(*_pitch_and_level(note), SR / 128)) == 1


def test_palette_weights_favour_the_nearest_note_and_one_note_weighs_exactly_one():
    pitch = torch.tensor([[57.0, 59.0, 61.0, 0.0]])  # MIDI per frame (0: unpitched)
    one, at = palette_weights(pitch, torch.tensor([[220.0]]))
    assert torch.equal(one, torch.ones(1, 4, 1)) and torch.allclose(at, torch.full((1, 4), 57.0))
    a3, e4 = 220.0, 440.0 * 2 ** ((61 - 69) / 12)  # MIDI 57 and 61
    w, at = palette_weights(pitch, torch.tensor([[a3, e4, 0.0]]))  # + an unpitched note
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 4))
    own = 1.0 / (1.0 + math.exp(-0.5 * (4 / PALETTE_SEMITONES) ** 2))  # 4 semitones apart
    torch.testing.assert_close(w[0, [0, 2], [0, 1]], torch.tensor([own, own]))
    torch.testing.assert_close(w[0, 1, :2], torch.tensor([0.5, 0.5]))  # midway: half each
    assert float(w[0, :3, 2].max()) < 1e-6  # the unpitched note weighs nothing beside them
    assert abs(float(at[0, 1]) - 59.0) < 1e-4


def test_a_palette_style_reads_each_notes_own_code(tiny, monkeypatch):
    low, high = _note(196.0, 0.6, decay=0.5), _note(392.0 * 2 ** (2 / 12), 0.6, harmonics=(1.0,))
    palette = tiny.style(torch.cat([low, high])[None, None])
    assert palette.embedding.shape[1] == 2
    spans = style_note_spans(*_pitch_and_level(torch.cat([low, high])), SR / 128)
    (a0, z0), _ = spans
    clip = torch.cat([low, high])
    for s, (a, z) in enumerate(spans):
        alone = tiny._note_codes(clip[a * 128 : z * 128][None, None])
        for name in ("embedding", "harmonic", "smooth", "partials", "pitch_hz"):
            torch.testing.assert_close(getattr(palette, name)[:, s], getattr(alone, name)[:, 0])
    # with narrow weights, a content note at one palette note's pitch is rendered (nearly)
    # from that note alone
    monkeypatch.setattr(scaffold, "PALETTE_SEMITONES", 1.5)
    tiny_flat = ScaffoldTimbre(tiny.config.with_(note_envelope=False))
    tiny_flat.load_state_dict(tiny.state_dict())
    content = _note(196.0, 0.5, decay=0.5)[None, None]
    contours = tiny_flat.contours(content)
    from_palette = tiny_flat.controls(contours, tiny_flat.style(clip[None, None]))
    low_code = tiny_flat._note_codes(clip[a0 * 128 : z0 * 128][None, None])
    from_low = tiny_flat.controls(contours, low_code)
    for x, y in zip(from_palette, from_low, strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-3)
    # a two-note content blended with a three-note style: the content's notes as one
    three = torch.cat([low, high, _note(262.0, 0.6, decay=0.5)])[None, None]
    tt = ScaffoldTransfer(tiny)
    out, _ = tt.transfer(clip, three[0], alpha=0.5, sr=SR)
    assert out.shape[-1] == clip.shape[-1] and tt.last_report.style_notes == 3
    # clips of one and of two notes in one batch: the single note repeated
    both = tiny.style(torch.stack([torch.cat([low, low]), clip])[:, None])
    assert both.embedding.shape[:2] == (2, 2)
    torch.testing.assert_close(both.embedding[0, 0], both.embedding[0, 1])


def test_several_style_clips_make_one_palette_of_all_their_notes(tiny):
    low, high = _note(196.0, 0.6, decay=0.5), _note(392.0 * 2 ** (2 / 12), 0.6, harmonics=(1.0,))
    scale = torch.cat([_note(262.0, 0.6, decay=0.5), _note(330.0, 0.6, decay=0.5)])
    code = tiny.style_of_clips([low[None, None], scale[None, None], high[None, None]])
    parts = [tiny.style(x[None, None]) for x in (low, scale, high)]
    assert [p.embedding.shape[1] for p in parts] == [1, 2, 1]  # the scale file holds 2 notes
    assert code.embedding.shape[:2] == (1, 4)
    for name in ("embedding", "harmonic", "partials", "note_curve", "pitch_hz"):
        torch.testing.assert_close(
            getattr(code, name), torch.cat([getattr(p, name) for p in parts], dim=1)
        )
    # the pipeline: a list of one clip is that clip; a list of files is one palette
    tt = ScaffoldTransfer(tiny)
    content = _note(220.0, 0.8)
    alone, _ = tt.transfer(content, low, sr=SR)
    listed, _ = tt.transfer(content, [low], sr=SR)
    assert torch.equal(alone, listed)
    out, _ = tt.transfer(content, [low, scale, high], sr=SR)
    assert tt.last_report.style_notes == 4 and out.shape == alone.shape
    assert not torch.allclose(out, alone)
    with pytest.raises(AudioError, match="list of style clips is empty"):
        tt.transfer(content, [], sr=SR)
    with pytest.raises(AudioError, match="style 2: is silent"):
        tt.transfer(content, [low, torch.zeros(SR)], sr=SR)
