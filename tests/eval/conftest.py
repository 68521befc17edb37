"""Shared fixtures of the evaluation tests: a handful of procedural clips, and one tiny
ablation study and one early-training study run once per session on them."""

from __future__ import annotations

import contextlib

import pytest
import torch

TAGS = ("kick", "snare", "closed_hat")
CLIP_SECONDS = 0.25  # the corpus
MODEL_SECONDS = 0.1  # what the models generate


@contextlib.contextmanager
def one_torch_thread():
    """One torch thread while the studies train: on a busy 2-core machine two threads
    wait on each other (20x slower measured); restored after, so other tests keep theirs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Two procedural clips per tag for three tags, loaded as a ``DrumDataset``."""
    from mambakit.drums.data import DrumCorpusConfig, load_corpus
    from mambakit.drums.procedural import write_corpus

    root = tmp_path_factory.mktemp("eval-corpus")
    write_corpus(root / "clips", n_per_tag=2, tags=TAGS, seconds=CLIP_SECONDS)
    return load_corpus(
        root / "clips",
        config=DrumCorpusConfig(seconds=CLIP_SECONDS),
        cache_dir=root / "cache",
        workers=0,
        progress=False,
    )


@pytest.fixture(scope="session")
def tiny_config():
    from mambakit.drums.config import DrumConfig

    return DrumConfig.tiny().with_(seconds=MODEL_SECONDS)


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory):
    """Where the session's studies write, laid out like ``out/``."""
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def ablation_result(tiny_corpus, tiny_config, results_dir):
    from mambakit.eval.ablations import StudySettings, run_ablations

    with one_torch_thread():
        settings = StudySettings(tiny_config, batch_size=2, limit=3, gen_steps=2, progress=False)
        return run_ablations(tiny_corpus, results_dir / "ablations", settings, steps=2)


@pytest.fixture(scope="session")
def early_result(tiny_corpus, tiny_config, results_dir):
    from mambakit.eval.ablations import StudySettings
    from mambakit.eval.early import run_early_training

    with one_torch_thread():
        settings = StudySettings(tiny_config, batch_size=2, limit=3, gen_steps=2, progress=False)
        return run_early_training(tiny_corpus, results_dir / "early", settings, batches=(2, 1))
