"""GM drum kits of a SoundFont -> a tagged one-shot folder the drums reader accepts."""

import shutil

import pytest
import torch

from mambakit.drums import soundfont
from mambakit.drums.soundfont import (
    GM_PERCUSSION,
    NearCopyBank,
    _window_spectrum,
    near_copy_score,
    render_gm_drums,
)
from mambakit.drums.tags import TAGS, tag_from_path
from mambakit.dsp import load_audio

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None, reason="the fluidsynth program is absent"
)


def test_the_percussion_map_covers_gm_and_its_file_names_keep_their_tag():
    assert sorted(GM_PERCUSSION) == list(range(35, 82))
    for name, tag in GM_PERCUSSION.values():
        assert tag in TAGS
        # the written path is kit/tag/kit_name_vNNN.wav: the reader must find the same tag
        assert tag_from_path(f"standard/{tag}/standard_{name}_v100.wav") == tag, name


def test_errors_name_the_problem(tiny_drum_soundfont, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such SoundFont"):
        render_gm_drums(tmp_path / "missing.sf2", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not installed"):
        render_gm_drums(tiny_drum_soundfont, tmp_path / "out", fluidsynth="no-such-program")
    with pytest.raises(ValueError, match="GM percussion map"):
        render_gm_drums(tiny_drum_soundfont, tmp_path / "out", notes=(30,))


@needs_fluidsynth
def test_renders_the_layout_skips_duplicate_kits_and_resumes(tiny_drum_soundfont, tmp_path):
    out = tmp_path / "kit"
    with pytest.warns(UserWarning, match="near copies"):  # kit 8 is absent: FluidSynth plays kit 0
        render_gm_drums(tiny_drum_soundfont, out, kits=(0, 8), notes=(36, 42),
                        velocities=(100,), progress=False)  # fmt: skip
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert files == [
        "standard/closed_hat/standard_closed_hi_hat_v100.wav",
        "standard/kick/standard_bass_drum_1_v100.wav",
    ]
    audio, sr = load_audio(out / files[1])
    assert sr == 44100 and audio.abs().max() > 0.01
    mtime = (out / files[1]).stat().st_mtime_ns
    render_gm_drums(tiny_drum_soundfont, out, kits=(0,), notes=(36,), velocities=(100,),
                    progress=False)  # fmt: skip
    assert (out / files[1]).stat().st_mtime_ns == mtime  # kept, not rendered again


def _burst(seed: int, n: int = 44100) -> torch.Tensor:
    """A decaying noise burst, [1, n]: a stand-in for one drum sample."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 44100
    return (0.25 * torch.randn(n, generator=g) * torch.exp(-t / 0.08))[None]


def _near_copy(audio: torch.Tensor) -> torch.Tensor:
    """The same sample as another kit plays it: quieter, later, gently low-passed, stereo."""
    delayed = torch.nn.functional.pad(audio, (300, 0))[..., : audio.shape[-1]]
    smoothed = 0.9 * delayed + 0.1 * torch.roll(delayed, 1, dims=-1)
    return 0.4 * smoothed.repeat(2, 1)


def test_the_near_copy_bank_catches_copies_of_other_kits_only():
    bank = NearCopyBank(0.9, 44100)
    bank.add(_burst(0), "kick", "standard", "bass_drum_1 v100")
    assert bank.copy_of(_near_copy(_burst(0)), "kick", "room").startswith("standard bass_drum_1")
    assert bank.copy_of(_burst(1), "kick", "room") is None  # another sample
    assert bank.copy_of(_near_copy(_burst(0)), "snare", "room") is None  # only the same tag
    assert bank.copy_of(_near_copy(_burst(0)), "kick", "standard") is None  # own kit: velocities
    n = bank.n_window
    spectra = torch.stack([_window_spectrum(a, n) for a in (_burst(0), -_burst(0), _burst(2))])
    scores = near_copy_score(_window_spectrum(_near_copy(_burst(0)), n), spectra, n)
    assert scores[0] > 0.95 and scores[1] > 0.95 and scores[2] < 0.2


def test_render_skips_and_counts_near_copies_and_resumes_the_same(monkeypatch, tmp_path):
    # kit 8 reuses kit 0's kick (a near copy) but has its own hat; kit 0 plays no note 44
    sounds = {(0, 36): _burst(0), (0, 42): _burst(1), (8, 36): _near_copy(_burst(0)),
              (8, 42): _burst(2), (0, 44): torch.zeros(1, 44100), (8, 44): _burst(3)}  # fmt: skip
    monkeypatch.setattr(soundfont, "find_fluidsynth", lambda font, exe: "fluidsynth")
    monkeypatch.setattr(
        soundfont, "render_note",
        lambda exe, font, kit, note, velocity, *a, **k: (sounds[kit, note] * velocity / 127, 44100),
    )  # fmt: skip
    out = tmp_path / "kits"
    for _ in range(2):  # the second run resumes from the files and skips the same notes
        with pytest.warns(UserWarning, match=r"4 drum notes skipped: 2 silent .*; 2 near copies"):
            render_gm_drums(tmp_path / "font.sf2", out, kits=(0, 8), notes=(36, 42, 44),
                            velocities=(70, 127), progress=False)  # fmt: skip
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
        assert [f for f in files if "kick" in f] == [
            "standard/kick/standard_bass_drum_1_v070.wav",
            "standard/kick/standard_bass_drum_1_v127.wav",
        ]
        assert len(files) == 8  # 2 kicks + 2 hats of kit 0, 2 hats + 2 pedal hats of kit 8
    render_gm_drums(tmp_path / "font.sf2", tmp_path / "all", kits=(0, 8), notes=(36,),
                    velocities=(100,), progress=False, near_copy=None)  # fmt: skip
    assert len(list((tmp_path / "all").rglob("*.wav"))) == 2
