"""The shared CLI arguments: one declaration of how a train command is budgeted."""

import argparse

import pytest

from mambakit.cli.common import add_train_arguments, same_named, train_fields
from mambakit.train import TrainConfig


def _parse(argv: list[str], **kwargs) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser, "budget", **kwargs)
    return parser.parse_args(argv)


def test_train_arguments_round_trip_into_a_train_config():
    args = _parse(["--minutes", "2.5", "--batch-size", "4", "--seed", "7", "--resume"])
    assert (args.steps, args.minutes) == (None, 2.5)
    fields = train_fields(args)
    assert fields == {"batch_size": 4, "seed": 7, "device": None, "resume": True}
    config = TrainConfig.from_budget(args.steps, args.minutes, **fields)
    assert (config.max_minutes, config.batch_size, config.seed, config.resume) == (2.5, 4, 7, True)


def test_without_resume_the_train_config_keeps_its_own_default():
    args = _parse(["--device", "cpu"], steps=10_000, resume=False)
    assert args.steps == 10_000 and not hasattr(args, "resume")
    assert train_fields(args) == {"batch_size": 8, "seed": 0, "device": "cpu"}


def test_same_named_passes_options_through_and_names_a_missing_one():
    args = argparse.Namespace(seed=3, steps=None, out="run")
    assert same_named(args, "seed", "steps") == {"seed": 3, "steps": None}
    with pytest.raises(AttributeError, match="cfg"):
        same_named(args, "cfg")


def test_a_malformed_list_option_is_a_usage_error_naming_it(capsys):
    from mambakit.cli import build_parser, main

    args = ["drums", "dataset-from-sf2", "font.sf2", "--out", "o", "--kits", "0,8"]
    assert build_parser().parse_args(args).kits == (0, 8)
    with pytest.raises(SystemExit) as exc:
        main(["timbre", "dataset-from-sf2", "font.sf2", "--out", "o", "--pitches", "48-x"])
    assert exc.value.code == 2
    assert "argument --pitches: expected integers like 0,24,40" in capsys.readouterr().err
