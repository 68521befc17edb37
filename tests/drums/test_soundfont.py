"""GM drum kits of a SoundFont -> a tagged one-shot folder the drums reader accepts."""

import shutil

import pytest

from mambakit.drums.soundfont import GM_PERCUSSION, render_gm_drums
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
    with pytest.warns(UserWarning, match="skipped"):  # kit 8 is absent: FluidSynth plays kit 0
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
