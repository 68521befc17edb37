"""One-shot timbre transfer, two engines: the MambaMuse U-Net on raw waveform (seed
``mambamuse-timbre-transfer``) and the scaffold engine (f0 + loudness -> Mamba decoder ->
harmonic-plus-noise synthesiser; the shipped ``gm-timbre``).

Public API: :class:`TimbreTransfer` (inference on clips of any length, either engine;
:class:`ScaffoldTransfer` for the scaffold one), :func:`train_timbre` / :func:`train_scaffold`,
:class:`TimbreUNet` / :class:`TimbreConfig` and :class:`ScaffoldTimbre` / :class:`ScaffoldConfig`
(the models), :func:`adain`,
:class:`PairedNotes` and the dataset builders, :func:`evaluate_runs`. Modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported eagerly: the submodule shares the function's name and would shadow it otherwise.
from mambakit.timbre.adain import adain

__all__ = [
    "PairedNotes",
    "ScaffoldConfig",
    "ScaffoldTimbre",
    "ScaffoldTransfer",
    "TimbreConfig",
    "TimbreTransfer",
    "TimbreUNet",
    "adain",
    "evaluate_runs",
    "make_procedural_instruments",
    "read_nsynth",
    "render_sf2_dataset",
    "train_scaffold",
    "train_timbre",
]

_WHERE = {
    "TimbreConfig": "model",
    "TimbreUNet": "model",
    "TimbreTransfer": "pipeline",
    "ScaffoldTransfer": "pipeline",
    "ScaffoldConfig": "scaffold",
    "ScaffoldTimbre": "scaffold",
    "train_scaffold": "scaffold_training",
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
