"""MambaKit: one-shot drum synthesis from interpretable controls (seed
``mambakit-drum-synthesis``). Public API: :class:`DrumSynth` (generate), :func:`train_drums`.
Heavy modules load on first use."""

from __future__ import annotations

from typing import Any

from mambakit.drums.config import DrumConfig
from mambakit.drums.schedule import StructuredDiffusionSchedule

__all__ = ["DrumConfig", "DrumDiffusionModel", "DrumSynth", "StructuredDiffusionSchedule",
           "train_drums"]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name == "DrumSynth":
        from mambakit.drums.pipeline import DrumSynth

        return DrumSynth
    if name == "DrumDiffusionModel":
        from mambakit.drums.model import DrumDiffusionModel

        return DrumDiffusionModel
    if name == "train_drums":
        from mambakit.drums.training import train_drums

        return train_drums
    raise AttributeError(name)
