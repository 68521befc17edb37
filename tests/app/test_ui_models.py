"""The UI's shared models: packaged defaults, status lines, and the bind guard."""

from __future__ import annotations

import shutil

import pytest

from mambakit import pretrained
from mambakit.app import handlers as h
from mambakit.app import ui


def test_a_tab_starts_with_the_packaged_model(tmp_path, drum_run, monkeypatch):
    shutil.copytree(drum_run, tmp_path / "gm-test")
    monkeypatch.setattr(pretrained, "PACKAGED_DIR", tmp_path)
    monkeypatch.setattr(ui, "DEFAULT_PACKAGED", {"drums": "gm-test"})
    models = ui.AppModels()
    assert models.models["drums"] is not None
    assert models.status["drums"].startswith("Drum model loaded from gm-test")
    assert models.of("drums", {}) is models.models["drums"]
    assert models.of("drums", {"drums": "session's own"}) == "session's own"
    assert models.models["lm"] is None and "No lm model loaded" in models.status["lm"]
    with pytest.raises(h.UIError, match="No lm model loaded"):
        models.of("lm", {})


def test_a_model_named_on_the_command_line_that_fails_is_a_status_line(tmp_path):
    models = ui.AppModels(drums=str(tmp_path / "missing"))
    assert models.models["drums"] is None
    assert models.status["drums"].startswith(f"Could not load {tmp_path / 'missing'}")


def test_serving_beyond_loopback_needs_a_runs_root():
    with pytest.raises(ValueError, match="--runs-root"):
        ui.launch(host="0.0.0.0", block=False)
