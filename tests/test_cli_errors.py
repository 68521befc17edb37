"""The CLI's one error convention: a user's mistake prints ``mambakit: error: ...`` on
stderr and exits 2 (argparse's usage status), never a traceback."""

from __future__ import annotations

import pytest

from mambakit.cli import main
from mambakit.cli.common import USAGE_ERROR, join_negative_values
from mambakit.lm.model import MusicLM, preset
from mambakit.pretrained import WEIGHTS_NAME


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == USAGE_ERROR == 2
    assert "COMMAND" in capsys.readouterr().out


def test_a_missing_input_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["lm", "train", str(tmp_path / "no-tokens"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mambakit: error: ") and "no-tokens" in err
    assert "Traceback" not in err


@pytest.fixture
def truncated_run(tmp_path):
    run = tmp_path / "run"
    MusicLM(preset("mamba2", "tiny", n_codebooks=1, codebook_size=16)).save_pretrained(run)
    weights = run / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:100])  # a copy cut short
    return run


def test_a_truncated_checkpoint_names_the_file(truncated_run, capsys):
    code = main(["lm", "generate", str(truncated_run), "-o", str(truncated_run / "x.wav")])
    err = capsys.readouterr().err
    assert code == 2
    assert "mambakit: error: " in err and str(truncated_run / WEIGHTS_NAME) in err


def test_argparse_usage_errors_exit_2_too(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["lm", "train"])  # the token store is required
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "argv, joined",
    [
        (["--attack", "-5ms"], ["--attack=-5ms"]),
        (["--pitch-drop", "-12", "--seed", "3"], ["--pitch-drop=-12", "--seed", "3"]),
        (["--gain", "-.5"], ["--gain=-.5"]),
        (["--attack=-5ms"], ["--attack=-5ms"]),  # already joined
        (["-n", "4", "--x", "-o"], ["-n", "4", "--x", "-o"]),  # -o is an option, not a value
        (["--", "-5"], ["--", "-5"]),  # after --, everything is positional
    ],
)
def test_negative_option_values_are_joined_to_their_option(argv, joined):
    assert join_negative_values(argv) == joined
