import pytest

from mambakit.timbre.data import make_procedural_instruments


@pytest.fixture(scope="session")
def procedural_dir(tmp_path_factory):
    """Three procedural instruments x three pitches, 0.4 s notes at 16 kHz."""
    root = tmp_path_factory.mktemp("timbre") / "procedural"
    return make_procedural_instruments(root, n_instruments=3, pitches=(55, 60, 64), seconds=0.4)
