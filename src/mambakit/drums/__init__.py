"""mambakit.drums: structured diffusion drum synthesis."""

from mambakit.drums.config import DrumConfig, band_state_size
from mambakit.drums.model import DrumDiffusionModel
from mambakit.drums.schedule import StructuredDiffusionSchedule

__all__ = ["DrumConfig", "DrumDiffusionModel", "StructuredDiffusionSchedule", "band_state_size"]
