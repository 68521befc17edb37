"""Shared fixtures of the UI tests: one tiny drum run trained in seconds per session."""

from __future__ import annotations

import pytest


def pytest_configure(config):
    # Gradio's queue calls pandas APIs that pandas 3 deprecates; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::Warning:gradio.queueing")


@pytest.fixture(scope="session")
def drum_run(tmp_path_factory):
    """A drum run trained for 3 steps on the procedural corpus (the sound is noise-like;
    the tests check plumbing, shapes and rates, not quality)."""
    from mambakit.drums import train_drums
    from mambakit.drums.procedural import write_corpus
    from mambakit.drums.training import drums_train_config

    root = tmp_path_factory.mktemp("ui-drums")
    write_corpus(root / "corpus", n_per_tag=2)
    train_drums(root / "corpus", root / "run", drums_train_config(3, batch_size=2, progress=False))
    return root / "run"


@pytest.fixture(scope="session")
def synth(drum_run):
    from mambakit.drums import DrumSynth

    return DrumSynth.from_pretrained(drum_run)
