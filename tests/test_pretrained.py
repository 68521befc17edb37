"""mambakit.pretrained: configs through JSON, checkpoint errors, packaged models."""

import json
import re
from dataclasses import dataclass

import pytest
import torch

from mambakit import pretrained
from mambakit.pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    PretrainedMixin,
    config_from_dict,
    config_to_dict,
)


def test_config_from_dict_turns_json_lists_into_tuples_also_inside_unions():
    @dataclass(frozen=True)
    class Config:
        counts: int | tuple[int, ...] = 2
        widths: tuple[int, int] = (1, 2)
        names: list[str] | None = None

    data = json.loads(json.dumps(config_to_dict(Config(counts=(0, 1), names=["a"]))))
    loaded = config_from_dict(Config, data)
    assert loaded.counts == (0, 1) and loaded.widths == (1, 2)
    assert loaded.names == ["a"]  # a list field stays a list
    assert config_from_dict(Config, {"counts": 3}).counts == 3


# -- every CheckpointError path, with a tiny model family -------------------------------------


@dataclass(frozen=True)
class TinyConfig:
    width: int = 3


class TinyModel(torch.nn.Module, PretrainedMixin):
    config_class = TinyConfig
    model_type = "tiny-test"

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.proj = torch.nn.Linear(config.width, 2)


class OtherModel(TinyModel):
    model_type = "other-test"


def test_save_then_load_round_trips_the_weights(tmp_path):
    model = TinyModel(TinyConfig(width=4))
    model.save_pretrained(tmp_path / "run")
    loaded = TinyModel.from_pretrained(tmp_path / "run")
    assert loaded.config == TinyConfig(width=4)
    assert torch.equal(loaded.proj.weight, model.proj.weight)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no-dir", "no checkpoint directory"),
        ("no-config", "no config.json"),
        ("bad-json", "not valid JSON"),
        ("wrong-type", "checkpoint is a 'other-test' model, expected 'tiny-test'"),
        ("unknown-key", "unknown config keys ['colour']"),
        ("no-weights", "no model.safetensors"),
        ("truncated", "unreadable weights"),
        ("mismatch", "weights do not match the config"),
    ],
)
def test_every_damaged_checkpoint_is_a_checkpoint_error_naming_the_problem(
    tmp_path, damage, message
):
    run = tmp_path / "run"
    (OtherModel if damage == "wrong-type" else TinyModel)(TinyConfig()).save_pretrained(run)
    cfg, weights = run / CONFIG_NAME, run / WEIGHTS_NAME
    meta = json.loads(cfg.read_text())
    if damage == "no-dir":
        run = tmp_path / "missing"
    elif damage == "no-config":
        cfg.unlink()
    elif damage == "bad-json":
        cfg.write_text("{not json")
    elif damage == "unknown-key":
        meta["config"]["colour"] = "red"
        cfg.write_text(json.dumps(meta))
    elif damage == "no-weights":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:40])
    elif damage == "mismatch":
        meta["config"]["width"] = 5
        cfg.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        TinyModel.from_pretrained(run)


def test_a_packaged_model_resolves_by_its_short_name(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "PACKAGED_DIR", tmp_path)
    TinyModel(TinyConfig()).save_pretrained(tmp_path / "tiny-shipped")
    assert pretrained.packaged_models() == ["tiny-shipped"]
    assert TinyModel.from_pretrained("tiny-shipped").config == TinyConfig()
    with pytest.raises(CheckpointError, match="packaged models: tiny-shipped"):
        TinyModel.from_pretrained("tiny-missing")


def test_a_scaffold_config_saved_before_the_note_envelope_loads_without_it():
    from mambakit.pretrained import config_from_dict
    from mambakit.timbre.scaffold import ScaffoldConfig

    old = config_from_dict(ScaffoldConfig, {"hop": 128})  # an older config.json: no note keys
    assert (old.note_envelope, old.note_inputs) == (False, False)
    new = config_from_dict(ScaffoldConfig, {"note_envelope": True, "note_inputs": True})
    assert (new.note_envelope, new.note_inputs) == (True, True)
    assert ScaffoldConfig().note_envelope  # a new model has it
