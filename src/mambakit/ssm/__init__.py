"""mambakit.ssm: sequence mixers (Mamba, Mamba-2, causal attention), backbones and scans.

Every layer maps ``[B, L, d_model] -> [B, L, d_model]`` and shares one recurrent interface::

    cache = layer.allocate_cache(batch_size, max_seqlen=None, device=None, dtype=None)
    y = layer(x)                          # parallel / chunked
    y = layer(x, cache=cache)             # prefill: also leaves the state after x in cache
    y_t, cache = layer.step(x_t, cache)   # x_t, y_t: [B, d_model]

Pure PyTorch; ``mamba_ssm`` kernels are used on CUDA when installed (never imported here).
"""

from .attention import AttentionCache, CausalSelfAttention, apply_rotary
from .backbone import KINDS, MLP, Backbone, BackboneCache, Bidirectional, count_parameters
from .layout import decode_layout_
from .mamba import Mamba, MambaCache
from .mamba2 import GatedRMSNorm, Mamba2, Mamba2Cache
from .ops import (
    BACKENDS,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
    ssd_scan,
    ssd_scan_ref,
)

__all__ = [
    "AttentionCache",
    "BACKENDS",
    "Backbone",
    "BackboneCache",
    "Bidirectional",
    "CausalSelfAttention",
    "GatedRMSNorm",
    "KINDS",
    "MLP",
    "Mamba",
    "Mamba2",
    "Mamba2Cache",
    "MambaCache",
    "apply_rotary",
    "count_parameters",
    "decode_layout_",
    "resolve_backend",
    "selective_scan",
    "selective_scan_ref",
    "ssd_scan",
    "ssd_scan_ref",
]
