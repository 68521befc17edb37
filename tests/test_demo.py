"""``make demo`` end to end at a tiny budget: every promised output exists and is sane."""

import soundfile as sf

from mambakit.demo import run_demo
from mambakit.drums.kit import parse_sfz


def test_demo_writes_kit_beat_sheet_and_summary(tmp_path):
    summary = run_demo(tmp_path, minutes=0.05, n_per_tag=2, eval_limit=3)
    text = summary.read_text()
    assert "| metric | model | scaffold |" in text and "tag accuracy" in text
    regions = parse_sfz(tmp_path / "kit" / "kit.sfz")
    assert len(regions) == 8
    info = sf.info(tmp_path / "beat.wav")
    assert info.samplerate == 44100 and info.duration > 2.0
    assert (tmp_path / "sheet.png").stat().st_size > 10_000
