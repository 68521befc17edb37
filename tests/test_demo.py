"""``make demo`` end to end at a tiny budget: every promised output exists and is sane.

A tiny untrained model saved in ``tmp_path`` stands in for the shipped ``gm-drums``."""

import soundfile as sf
import torch

from mambakit.demo import run_demo
from mambakit.drums.config import DrumConfig
from mambakit.drums.kit import parse_sfz
from mambakit.drums.model import DrumDiffusionModel


def test_demo_writes_kit_beat_sheet_finetune_and_summary(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "shipped"
    DrumDiffusionModel(DrumConfig.tiny().with_(seconds=0.1)).save_pretrained(model)
    summary = run_demo(tmp_path / "demo", minutes=0.05, n_per_tag=1, eval_limit=3, model=model)
    text = summary.read_text()
    assert "| metric | model | scaffold |" in text and "tag accuracy" in text
    for kit in ("kit", "kit_finetuned"):
        assert len(parse_sfz(tmp_path / "demo" / kit / "kit.sfz")) == 8
    info = sf.info(tmp_path / "demo" / "beat.wav")
    assert info.samplerate == 44100 and info.duration > 2.0
    assert (tmp_path / "demo" / "sheet.png").stat().st_size > 10_000
    assert (tmp_path / "demo" / "run" / "model.safetensors").is_file()
