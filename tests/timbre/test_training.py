import json

import pytest
import torch
from torch.utils.data import default_collate

from mambakit.timbre.data import PairedNotes
from mambakit.timbre.model import TimbreConfig, TimbreUNet
from mambakit.timbre.pipeline import TimbreTransfer
from mambakit.timbre.training import (
    UNetTraining,
    reconstruction_loss,
    timbre_train_config,
    train_timbre,
)


@pytest.fixture(scope="module")
def pairs(procedural_dir):
    return PairedNotes(procedural_dir, segment_seconds=TimbreConfig.tiny().segment_seconds,
                       max_start_seconds=0.1, reconstruction_ratio=0.0)  # fmt: skip


def test_a_few_steps_on_procedural_pairs_lower_the_transfer_loss(pairs, tmp_path):
    g = torch.Generator().manual_seed(123)
    batch = default_collate([pairs.sample(i, g) for i in range(len(pairs))])
    assert batch["transfer"].all()
    config = TimbreConfig.tiny()
    torch.manual_seed(0)  # train_timbre initialises the generator from seed 0 like this
    before = reconstruction_loss(TimbreUNet(config), batch)
    train = timbre_train_config(8, lr=3e-3, batch_size=3, progress=False)
    summary = train_timbre(pairs, tmp_path / "run", train, preset=config)
    assert summary.steps == 8
    after = reconstruction_loss(TimbreUNet.from_pretrained(tmp_path / "run"), batch)
    assert after < 0.85 * before, (before, after)

    run = tmp_path / "run"
    assert (run / "discriminator.safetensors").is_file()
    info = json.loads((run / "timbre_train.json").read_text())
    assert info["objective"] == "transfer" and info["instruments"] == 3
    logs = [json.loads(line)["logs"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"d_loss", "g_mel", "g_stft", "g_adv", "g_fm"} <= set(logs[-1])
    out, sr = TimbreTransfer.from_pretrained(run, progress=False).transfer(
        batch["content"][0], batch["style"][0], sr=16000
    )
    assert out.shape == (1, 1, batch["content"].shape[-1])


def test_training_crops_can_be_shorter_than_the_inference_segment(
    procedural_dir, tmp_path, monkeypatch
):
    import mambakit.timbre.training as training

    crops = []

    class RecordingPairs(PairedNotes):
        def sample(self, index, generator=None):
            item = super().sample(index, generator)
            crops.append(item["target"].shape[-1])
            return item

    monkeypatch.setattr(training, "PairedNotes", RecordingPairs)
    train_timbre(procedural_dir, tmp_path / "run", timbre_train_config(1, batch_size=2,
                 progress=False), "tiny", UNetTraining(segment_seconds=0.064))  # fmt: skip
    assert crops and set(crops) == {1024}  # 0.064 s at 16 kHz, not the preset's 0.128 s
    info = json.loads((tmp_path / "run" / training.TRAIN_INFO_NAME).read_text())
    assert info["budget"]["segment_seconds"] == 0.064
    assert TimbreUNet.from_pretrained(tmp_path / "run").config.segment_seconds == 0.128


def test_without_gan_only_the_generator_trains_on_mel_and_stft(pairs, tmp_path):
    from safetensors.torch import load_file

    from mambakit.timbre.training import DISC_NAME

    torch.manual_seed(0)
    train_timbre(pairs, tmp_path / "run", timbre_train_config(2, batch_size=2, progress=False),
                 "tiny", UNetTraining(adversarial=False))  # fmt: skip
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    keys = set().union(*(json.loads(line)["logs"] for line in lines))
    assert "g_mel" in keys and not any(k.startswith("d_") or "adv" in k for k in keys)
    from mambakit.timbre.discriminators import TimbreDiscriminator
    from mambakit.timbre.training import DISC_WIDTH

    torch.manual_seed(0)
    TimbreUNet(TimbreConfig.tiny())  # the same draws as the run, then its discriminator
    untouched = TimbreDiscriminator(width=DISC_WIDTH["tiny"]).state_dict()
    saved = load_file(str(tmp_path / "run" / DISC_NAME))
    assert all(torch.equal(saved[k], v) for k, v in untouched.items())


def test_objective_is_validated(pairs, tmp_path):
    with pytest.raises(ValueError, match="objective"):
        train_timbre(
            pairs, tmp_path, timbre_train_config(1), "tiny", UNetTraining(objective="style")
        )
    with pytest.raises(ValueError, match="steps, minutes or both"):
        timbre_train_config()


def test_gradient_checkpointing_from_the_cli_trains_the_same_weights(
    procedural_dir, tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    from mambakit.cli import main

    switched = []
    original = TimbreUNet.gradient_checkpointing_

    def spy(self, enabled=True):
        switched.append(enabled)
        return original(self, enabled)

    monkeypatch.setattr(TimbreUNet, "gradient_checkpointing_", spy)

    args = ["--preset", "tiny", "--steps", "2", "--batch-size", "2", "--no-gan"]
    assert main(["timbre", "train", str(procedural_dir), "--out", str(tmp_path / "plain"),
                 *args]) == 0  # fmt: skip
    assert main(["timbre", "train", str(procedural_dir), "--out", str(tmp_path / "ckpt"),
                 *args, "--gradient-checkpointing"]) == 0  # fmt: skip
    assert switched == [False, True]
    plain = load_file(str(tmp_path / "plain" / "model.safetensors"))
    ckpt = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert plain.keys() == ckpt.keys()
    for key, value in plain.items():
        torch.testing.assert_close(ckpt[key], value, rtol=1e-5, atol=1e-6)
