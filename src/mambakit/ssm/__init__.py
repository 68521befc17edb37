"""mambakit.ssm: sequence mixers (Mamba, Mamba-2, causal attention), backbones and scans.

Every layer maps ``[B, L, d_model] -> [B, L, d_model]`` and shares one recurrent interface::

    cache = layer.allocate_cache(batch_size, max_seqlen=None, device=None, dtype=None)
    y = layer(x)                          # parallel / chunked
    y = layer(x, cache=cache)             # prefill: also leaves the state after x in cache
    y_t, cache = layer.step(x_t, cache)   # x_t, y_t: [B, d_model]

Pure PyTorch plus two small C scan kernels built on first use (inference on CPU,
:mod:`mambakit.ssm.cpu_kernel`); ``mamba_ssm`` kernels are used on CUDA when installed (never
imported here). ``set_compile(False | True | "auto")`` runs the layers through
``torch.compile``; ``decode_weights_(model, "int8" | "bf16")`` gives ``step()`` int8 or bf16
weights, and Mamba-2 backbones a fused C step (one call per token, :mod:`mambakit.ssm.cpu_decode`).
"""

from .attention import AttentionCache, CausalSelfAttention, apply_rotary
from .backbone import KINDS, MLP, Backbone, BackboneCache, Bidirectional, count_parameters
from .layout import DECODE_BACKENDS, DECODE_WEIGHTS, decode_layout_, decode_weights_
from .mamba import Mamba, MambaCache
from .mamba2 import GatedRMSNorm, Mamba2, Mamba2Cache
from .ops import (
    BACKENDS,
    COMPILE_MODES,
    causal_conv1d,
    causal_conv1d_ref,
    causal_conv1d_step,
    get_compile,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
    set_compile,
    ssd_scan,
    ssd_scan_ref,
)

__all__ = [
    "AttentionCache",
    "BACKENDS",
    "COMPILE_MODES",
    "DECODE_BACKENDS",
    "DECODE_WEIGHTS",
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
    "causal_conv1d",
    "causal_conv1d_ref",
    "causal_conv1d_step",
    "count_parameters",
    "decode_layout_",
    "decode_weights_",
    "get_compile",
    "resolve_backend",
    "selective_scan",
    "set_compile",
    "selective_scan_ref",
    "ssd_scan",
    "ssd_scan_ref",
]
