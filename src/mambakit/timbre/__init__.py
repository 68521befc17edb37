"""MambaMuse: one-shot timbre transfer on raw waveform (seed ``mambamuse-timbre-transfer``).

Public API: :class:`TimbreTransfer` (inference on clips of any length),
:func:`train_timbre`, :class:`TimbreUNet` / :class:`TimbreConfig` (the model), :func:`adain`,
:class:`PairedNotes` and the dataset builders, :func:`evaluate_runs`. Modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported eagerly: the submodule shares the function's name and would shadow it otherwise.
from mambakit.timbre.adain import adain

__all__ = [
    "PairedNotes",
    "TimbreConfig",
    "TimbreTransfer",
    "TimbreUNet",
    "adain",
    "evaluate_runs",
    "make_procedural_instruments",
    "read_nsynth",
    "render_sf2_dataset",
    "train_timbre",
]

_WHERE = {
    "TimbreConfig": "model",
    "TimbreUNet": "model",
    "TimbreTransfer": "pipeline",
    "PairedNotes": "data",
    "read_nsynth": "data",
    "make_procedural_instruments": "data",
    "render_sf2_dataset": "data",
    "train_timbre": "training",
    "evaluate_runs": "evaluate",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'mambakit.timbre' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mambakit.timbre.{_WHERE[name]}"), name)
