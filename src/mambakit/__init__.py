"""mambakit: state-space (Mamba) models for audio generation.

Subpackages (imported on demand, so ``import mambakit`` stays light):

- :mod:`mambakit.ssm`    sequence mixers (Mamba, Mamba2, attention) and backbones
- :mod:`mambakit.dsp`    deterministic audio processing: I/O, envelopes, pitch, losses
- :mod:`mambakit.train`  one trainer for every generator
- :mod:`mambakit.drums`  MambaKit one-shot drum synthesis
- :mod:`mambakit.lm`     codec-token music language models
- :mod:`mambakit.timbre` MambaMuse timbre transfer
"""

__version__ = "0.1.0"
