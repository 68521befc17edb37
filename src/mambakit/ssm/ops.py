"""Scan kernels of the SSM core, each with a naive reference twin.

Two linear recurrences are implemented here:

* ``ssd_scan``: the state-space dual (SSD) scan of Mamba-2 (Dao & Gu, 2024), with a
  *scalar* decay per head::

      h_t = exp(dt_t * A_h) * h_{t-1} + dt_t * x_t B_t^T      h_t: [headdim, d_state]
      y_t = h_t C_t + D_h * x_t

* ``selective_scan``: the selective scan of Mamba-1 (Gu & Dao, 2023), with a diagonal
  decay per channel and state (equation 2a/2b of the paper after ZOH/Euler discretisation)::

      h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t        h_t: [d_inner, d_state]
      y_t = h_t C_t + D * u_t

``*_ref`` are per-timestep Python loops (ground truth in tests). On CPU,
``backend="auto"`` runs fused C recurrences with an exact C backward
(:mod:`mambakit.ssm.cpu_kernel`), for inference and training; the ``"torch"`` paths are
pure PyTorch and chunked (what ``torch.compile`` traces, and the fallback without a C
compiler); on CUDA, ``"auto"`` uses ``mamba_ssm``'s Triton/CUDA kernels when that package
is importable. ``mamba_ssm`` is imported lazily, never at module import.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

__all__ = [
    "BACKENDS",
    "COMPILE_MODES",
    "get_compile",
    "set_compile",
    "causal_conv1d",
    "causal_conv1d_ref",
    "causal_conv1d_step",
    "resolve_backend",
    "ssd_scan",
    "ssd_scan_ref",
    "selective_scan",
    "selective_scan_ref",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "mamba_ssm", "cpu_kernel")
_warned_fallback: set[str] = set()

# Largest total log-decay allowed inside one chunk of the Mamba-1 scan, see
# ``_selective_scan_chunked``: exp(40) ~ 2e17 is far inside the float32 range (3e38).
_MAX_CHUNK_LOG_DECAY = 40.0
# State values ([time, d_inner, d_state]) computed at once by the Mamba-1 scan: 2^20 floats =
# 4 MiB per temporary, which stays in the L3 cache; of 2^17 ... 2^20 the largest was the
# fastest at L = 44,100, d_inner = 128 on a 2-core CPU (fewer, bigger ops suffer less from a
# loaded machine's thread scheduling).
_SELECTIVE_BLOCK_ELEMENTS = 2**20


def _mamba_ssm_available() -> bool:
    return importlib.util.find_spec("mamba_ssm") is not None


def resolve_backend(backend: str, tensor: Tensor, op: str = "scan") -> str:
    """Choose the implementation of ``op`` for ``tensor``: ``"torch"`` or ``"mamba_ssm"``.

    ``"auto"`` picks ``mamba_ssm`` when it is importable and ``tensor`` is on CUDA, otherwise
    falls back to the PyTorch path and says so once per op (logging, INFO). Asking for
    ``"mamba_ssm"`` explicitly when it is missing (or on a CPU tensor) is an error.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "torch" or (backend == "auto" and torch.compiler.is_compiling()):
        return "torch"  # (mamba_ssm's kernels are not traced by torch.compile here)
    available = _mamba_ssm_available()
    if backend == "mamba_ssm":
        if not available:
            raise ImportError(
                "backend='mamba_ssm' needs the optional CUDA kernels: "
                "pip install 'mambakit[cuda]' (mamba-ssm, causal-conv1d), or use backend='auto'."
            )
        if not tensor.is_cuda:
            raise ValueError(
                f"backend='mamba_ssm' runs on CUDA tensors only, got a tensor on {tensor.device}; "
                "use backend='auto' or 'torch' on CPU."
            )
        return "mamba_ssm"
    # auto
    if available and tensor.is_cuda:
        return "mamba_ssm"
    if op not in _warned_fallback:
        _warned_fallback.add(op)
        reason = "mamba_ssm is not installed" if not available else "the input is not on CUDA"
        logger.info("%s: using the pure-PyTorch path (%s).", op, reason)
    return "torch"


# ----------------------------------------------------------------------------------------
# Compiling (one global, explicit switch)
# ----------------------------------------------------------------------------------------

COMPILE_MODES = (False, True, "auto")
# "auto" compiles a call once it holds at least this many steps (batch x length): below it,
# a layer's eager time is too small for the one-off compile (tens of seconds) to pay back.
_AUTO_COMPILE_MIN_STEPS = 2**15
_compile_mode: bool | str = False
_compiled: dict[Any, Any] = {}


def _parse_compile_mode(mode: bool | str) -> bool | str:
    if isinstance(mode, str) and mode.lower() in ("1", "true", "on"):
        return True
    if isinstance(mode, str) and mode.lower() in ("0", "false", "off", ""):
        return False
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    return mode


def set_compile(mode: bool | str) -> bool | str:
    """Choose whether the SSM layers run their forward through ``torch.compile``; returns the
    previous mode.

    ``False`` (the default): eager, no compile cost. ``True``: every :class:`Mamba2` /
    :class:`Mamba` forward without a cache runs a compiled graph (inductor; compiled once per
    layer configuration, with a dynamic length, so new clip lengths do not recompile).
    ``"auto"``: compile only calls of at least ``2**15`` steps (batch x length), where the
    fused kernels pay back their compile time. The environment variable
    ``MAMBAKIT_COMPILE`` (``0 | 1 | auto``) sets the mode at import. Values and gradients
    equal the eager path's up to float rounding (tests/ssm).
    """
    global _compile_mode
    previous, _compile_mode = _compile_mode, _parse_compile_mode(mode)
    return previous


def get_compile() -> bool | str:
    """The current :func:`set_compile` mode."""
    return _compile_mode


def should_compile(steps: int) -> bool:
    """Whether a layer call of ``steps`` (batch x length) steps runs compiled right now."""
    if _compile_mode is False or torch.compiler.is_compiling():
        return False
    return _compile_mode is True or steps >= _AUTO_COMPILE_MIN_STEPS


def compiled(fn: Any) -> Any:
    """``torch.compile(fn, dynamic=True)``, built once per function and cached."""
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=True)
    return _compiled[fn]


# ----------------------------------------------------------------------------------------
# Depthwise causal convolution (the short conv before both scans)
# ----------------------------------------------------------------------------------------


def causal_conv1d_ref(
    x: Tensor, weight: Tensor, bias: Tensor | None, conv_state: Tensor | None = None
) -> Tensor:
    """``F.conv1d`` twin of :func:`causal_conv1d` (ground truth in tests): same arguments.

    Channels-first: ``[conv_state, x]`` (zeros when there is no state) transposed to
    ``[B, C, K-1+L]``, one grouped ``F.conv1d`` and a transpose back to ``[B, L, C]``.
    """
    k1 = weight.shape[-1] - 1
    xc = x.transpose(1, 2)
    if conv_state is not None:
        xc = torch.cat([conv_state.to(x.dtype), xc], dim=-1)
    else:
        xc = F.pad(xc, (k1, 0))
    return F.conv1d(xc, weight, bias, groups=weight.shape[0]).transpose(1, 2)


class _DepthwiseCausalConv(torch.autograd.Function):
    """``y_t = bias + sum_k taps[k] * x_{t + prefix - (K-1) + k}`` on time-major ``[B, L, C]``.

    ``x`` holds ``prefix`` rows of history (0 or ``K-1``) before the ``L - prefix`` steps
    whose outputs are returned; inputs before the start of ``x`` are zeros. Forward and
    backward are ``K`` shifted multiply-adds each (the backward is the same taps run
    anti-causally over the output gradient, plus one dot product per tap for the weights),
    computed in place, so autograd sees a single node instead of ``K`` slice/add nodes
    whose backward allocates a full-size zero tensor per tap.
    """

    @staticmethod
    def _slices(k: int, k1: int, prefix: int, n_out: int) -> tuple[slice, slice] | None:
        shift = k1 - k  # tap k looks `shift` steps back
        t0 = max(0, shift - prefix)  # earlier outputs would read before the start of x
        if t0 >= n_out:
            return None
        return slice(t0, n_out), slice(t0 + prefix - shift, n_out + prefix - shift)

    @staticmethod
    def forward(ctx: Any, x: Tensor, taps: Tensor, bias: Tensor | None, prefix: int) -> Tensor:
        k1 = taps.shape[0] - 1
        n_out = x.shape[1] - prefix
        if bias is None:
            out = x[:, prefix:] * taps[k1]
        else:
            out = torch.addcmul(bias.to(x.dtype), x[:, prefix:], taps[k1])
        for k in range(k1):
            sl = _DepthwiseCausalConv._slices(k, k1, prefix, n_out)
            if sl is not None:
                out[:, sl[0]].addcmul_(x[:, sl[1]], taps[k])
        ctx.save_for_backward(x, taps)
        ctx.prefix, ctx.has_bias = prefix, bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor | None, None]:
        x, taps = ctx.saved_tensors
        prefix = ctx.prefix
        k1 = taps.shape[0] - 1
        n_out = grad.shape[1]
        grad_x = torch.zeros_like(x)
        grad_taps = torch.empty_like(taps)
        grad_x[:, prefix:].addcmul_(grad, taps[k1])
        grad_taps[k1] = (grad * x[:, prefix:]).sum(dim=(0, 1))
        for k in range(k1):
            sl = _DepthwiseCausalConv._slices(k, k1, prefix, n_out)
            if sl is None:
                grad_taps[k] = 0
                continue
            grad_x[:, sl[1]].addcmul_(grad[:, sl[0]], taps[k])
            grad_taps[k] = (grad[:, sl[0]] * x[:, sl[1]]).sum(dim=(0, 1))
        grad_bias = grad.sum(dim=(0, 1)) if ctx.has_bias else None
        return grad_x, grad_taps, grad_bias, None


def causal_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None, conv_state: Tensor | None = None
) -> Tensor:
    """Depthwise causal conv of ``x`` ``[B, L, C]`` (time-major) -> ``[B, L, C]``.

    ``y_t = bias + sum_{k<K} weight[:, 0, k] * x_{t-K+1+k}``, with ``weight`` ``[C, 1, K]``
    (the ``nn.Conv1d(groups=C)`` layout) and the ``K-1`` inputs before ``x`` taken from
    ``conv_state`` ``[B, C, K-1]`` (zeros when ``None``), so that segments convolve exactly
    as one long sequence.

    Why not ``F.conv1d``: the projections produce time-major ``[B, L, C]`` tensors, and a
    channels-first conv needs a transposed copy in, another out, and a slow depthwise
    kernel: together ~30% of a Mamba-2 forward at L = 44,100, against ~5% for the ``K``
    shifted multiply-adds of :class:`_DepthwiseCausalConv` on the time-major tensor.
    :func:`causal_conv1d_ref` is its ``F.conv1d`` twin.
    """
    k1 = weight.shape[-1] - 1
    prefix = 0
    if conv_state is not None and k1 > 0:
        x = torch.cat([conv_state.transpose(1, 2).to(x.dtype), x], dim=1)  # [B, K-1+L, C]
        prefix = k1
    taps = weight[:, 0].t()  # [K, C]
    if torch.compiler.is_compiling():
        # plain ops: inductor fuses the K multiply-adds (and what follows) into one loop and
        # derives their backward, where the autograd Function below would break the graph
        n_out = x.shape[1] - prefix
        x = F.pad(x, (0, 0, k1 - prefix, 0))  # [B, K-1+L, C]
        out = x[:, k1:] * taps[k1]
        for k in range(k1):
            out = out + x[:, k : k + n_out] * taps[k]
        return out if bias is None else out + bias
    return _DepthwiseCausalConv.apply(x, taps, bias, prefix)


def causal_conv1d_step(
    x_t: Tensor, weight: Tensor, bias: Tensor | None, conv_state: Tensor
) -> Tensor:
    """One step of :func:`causal_conv1d`: ``x_t`` ``[B, C]`` -> ``[B, C]``; updates the state.

    ``conv_state`` ``[B, C, K-1]`` is shifted left in place and ``x_t`` written at its end.
    """
    k1 = conv_state.shape[-1]
    taps = weight[:, 0]  # [C, K]
    if k1 == 0:
        return x_t * taps[:, 0] if bias is None else torch.addcmul(bias, x_t, taps[:, 0])
    window = torch.cat([conv_state, x_t[..., None].to(conv_state.dtype)], dim=-1)  # [B, C, K]
    out = (window * taps).sum(dim=-1)
    if bias is not None:
        out = out + bias
    conv_state.copy_(window[..., 1:])
    return out


def _update_conv_state(conv_state: Tensor, x: Tensor) -> None:
    """Keep the last ``K-1`` inputs of ``cat(conv_state, x)`` (``x``: ``[B, L, C]``)."""
    k1 = conv_state.shape[-1]
    if k1 == 0:
        return
    x = x[:, -k1:].transpose(1, 2).to(conv_state.dtype)  # [B, C, <= K-1]
    conv_state.copy_(torch.cat([conv_state, x], dim=-1)[..., -k1:])


def _cpu_kernel_for(backend: str, op: str, *tensors: Tensor) -> Any:
    """The :mod:`~mambakit.ssm.cpu_kernel` module when ``op`` should run the fused C kernel.

    ``"cpu_kernel"`` asks for it (an error on CUDA tensors or when it cannot be built);
    ``"auto"`` uses it for CPU tensors, for inference and training alike (the kernels have
    an exact C backward), unless ``torch.compile`` is tracing, and falls back, saying so
    once, when it cannot be built. Returns ``None`` for the other paths.
    """
    if backend != "cpu_kernel":
        if backend != "auto" or torch.compiler.is_compiling():
            return None
        if tensors[0].device.type != "cpu":
            return None
    from . import cpu_kernel

    if backend == "cpu_kernel" and tensors[0].device.type != "cpu":
        raise ValueError(f"backend='cpu_kernel' runs on CPU tensors, got {tensors[0].device}")
    if cpu_kernel.available():
        return cpu_kernel
    if backend == "cpu_kernel":
        raise RuntimeError(
            f"backend='cpu_kernel': {cpu_kernel.unavailable_reason()}; use 'auto' or 'torch'"
        )
    if "cpu_kernel" not in _warned_fallback:
        _warned_fallback.add("cpu_kernel")
        logger.info("%s: %s; using the PyTorch path", op, cpu_kernel.unavailable_reason())
    return None


# ----------------------------------------------------------------------------------------
# SSD (Mamba-2)
# ----------------------------------------------------------------------------------------


def _check_ssd_shapes(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be [batch, length, heads, headdim], got {tuple(x.shape)}")
    b, length, h, _ = x.shape
    if dt.shape != (b, length, h):
        raise ValueError(f"dt must be {(b, length, h)}, got {tuple(dt.shape)}")
    if A.shape != (h,):
        raise ValueError(f"A must be [{h}] (one decay per head), got {tuple(A.shape)}")
    if B.ndim != 4 or B.shape[:2] != (b, length) or B.shape != C.shape:
        raise ValueError(
            f"B and C must be [batch, length, ngroups, d_state], got {tuple(B.shape)} "
            f"and {tuple(C.shape)}"
        )
    if h % B.shape[2] != 0:
        raise ValueError(f"heads ({h}) must be divisible by ngroups ({B.shape[2]})")


def ssd_scan_ref(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Naive sequential SSD recurrence (ground truth for :func:`ssd_scan`).

    Args:
        x: ``[B, L, H, P]`` inputs per head (P = headdim).
        dt: ``[B, L, H]`` positive step sizes (already softplus-ed).
        A: ``[H]`` negative scalar decay rate per head.
        B, C: ``[B, L, G, N]`` input / output projections, shared by the ``H / G`` heads of
            each group.
        D: optional ``[H]`` skip connection.
        initial_state: optional ``[B, H, P, N]`` state before the first step.
        return_final_state: also return the ``[B, H, P, N]`` state after the last step.

    Returns:
        ``y`` of shape ``[B, L, H, P]`` (dtype of ``x``), and the final state if asked.
    """
    _check_ssd_shapes(x, dt, A, B, C)
    b, length, h, p = x.shape
    g, n = B.shape[2:]
    rep = h // g
    Bh = B.float().repeat_interleave(rep, dim=2)  # [b, L, h, n]
    Ch = C.float().repeat_interleave(rep, dim=2)
    state = (
        initial_state.float()
        if initial_state is not None
        else x.new_zeros(b, h, p, n, dtype=torch.float32)
    )
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t].float() * A.float())  # [b, h]
        dBx = (dt[:, t].float()[..., None] * x[:, t].float())[..., None] * Bh[:, t, :, None, :]
        state = decay[..., None, None] * state + dBx  # [b, h, p, n]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, h, p, dtype=torch.float32)
    if D is not None:
        y = y + x.float() * D.float()[:, None]
    y = y.to(x.dtype)
    return (y, state) if return_final_state else y


# Chunks per block of the inter-chunk recurrence (:func:`_chunk_recurrence`): a block's
# states come from one [S, S] decay-matrix product, and the block boundaries recurse.
_RECURRENCE_BLOCK = 16


def _segsum_exp(log_decay: Tensor) -> Tensor:
    """``[..., T]`` log-decays -> ``[..., T, T]`` with ``M[i, j] = exp(sum_{j<k<=i} l_k)``.

    Zero above the diagonal (``j > i``); ``-inf`` is written before ``exp`` rather than
    zeros after it, so that no ``inf * 0`` turns into a NaN gradient.
    """
    t = log_decay.shape[-1]
    cum = log_decay.cumsum(dim=-1)
    upper = torch.ones(t, t, dtype=torch.bool, device=log_decay.device).triu(1)
    return torch.exp((cum[..., :, None] - cum[..., None, :]).masked_fill(upper, -math.inf))


def _chunk_recurrence(log_decay: Tensor, inputs: Tensor, initial: Tensor) -> Tensor:
    """All states of ``s_{c+1} = exp(l_c) s_c + u_c``, without a loop over ``c``.

    Shapes: ``log_decay`` ``[..., T]`` (``l_c <= 0``), ``inputs`` ``[..., T, F]`` (``u_c``,
    a flattened state), ``initial`` ``[..., F]`` (``s_0``) -> ``[..., T, F]``, the states
    ``s_1 ... s_T`` after each step.

    The segment-sum form of the Mamba-2 paper (section 6, "chunk state passing" as a
    matrix): ``s_{i+1} = sum_{j<=i} exp(sum_{j<k<=i} l_k) u_j + exp(sum_{k<=i} l_k) s_0``.
    Built as one dense [T, T] product it would cost O(T^2), so the steps are cut into
    blocks of ``S = _RECURRENCE_BLOCK``: inside each block one [S, S] @ [S, F] product from
    a zero start, then the recurrence between block ends (``T / S`` steps) recursively,
    then each block's start state decayed into it. Cost O(T S F) plus O(T F) per level,
    every operation batched; autograd and ``torch.compile`` see plain tensor ops (the
    recursion depth, ``log_S T``, is fixed by the shape).
    """
    t, f = inputs.shape[-2:]
    lead = inputs.shape[:-2]
    s = _RECURRENCE_BLOCK
    if t <= s:
        local = _segsum_exp(log_decay) @ inputs
        from_start = torch.exp(log_decay.cumsum(dim=-1))[..., None]
        return torch.addcmul(local, from_start, initial[..., None, :])
    nb = -(-t // s)
    pad = nb * s - t
    if pad:  # l = 0, u = 0 on the padding: the state passes through unchanged
        log_decay, inputs = F.pad(log_decay, (0, pad)), F.pad(inputs, (0, 0, 0, pad))
    ld = log_decay.reshape(*lead, nb, s)
    local = _segsum_exp(ld) @ inputs.reshape(*lead, nb, s, f)  # from a zero block start
    cum = ld.cumsum(dim=-1)  # [..., nb, S]
    block_ends = _chunk_recurrence(cum[..., -1], local[..., -1, :], initial)  # [..., nb, F]
    block_starts = torch.cat([initial[..., None, :], block_ends[..., :-1, :]], dim=-2)
    states = torch.addcmul(local, torch.exp(cum)[..., None], block_starts[..., None, :])
    return states.reshape(*lead, nb * s, f)[..., :t, :]


class _ChunkStatePassing(torch.autograd.Function):
    """Inter-chunk recurrence ``s_{c+1} = a_c * s_c + u_c`` with a hand-written backward.

    Forward: ``decay`` ``[B, nc, ...]`` (``a_c``, broadcastable to a state),
    ``chunk_states`` ``[B, nc, *S]`` (``u_c``) and ``initial`` ``[B, *S]`` (``s_0``) ->
    all states ``[B, nc + 1, *S]`` (``s_0 ... s_nc``: the state entering each chunk, then
    the final state).

    Backward: with ``G_c`` the incoming gradient of ``s_c``, the total gradient obeys the
    reversed recurrence ``Ĝ_nc = G_nc``, ``Ĝ_c = G_c + a_c Ĝ_{c+1}``, and then
    ``dL/du_c = Ĝ_{c+1}``, ``dL/da_c = <Ĝ_{c+1}, s_c>``, ``dL/ds_0 = Ĝ_0``. Both loops run
    over chunk boundaries only and write into preallocated buffers with ``out=``, so
    autograd records one node instead of ``3 nc`` small ones (with the plain Python loop the
    backward pass was several times slower than the forward).

    This is the eager path: a loop of ``nc`` small multiply-adds moves the least memory (the
    segment-sum form, :func:`_chunk_recurrence`, was slower uncompiled at L = 44,100), but
    ``torch.compile`` would unroll it once per chunk.
    """

    @staticmethod
    def forward(ctx: Any, decay: Tensor, chunk_states: Tensor, initial: Tensor) -> Tensor:
        b, nc = chunk_states.shape[:2]
        states = chunk_states.new_empty(b, nc + 1, *chunk_states.shape[2:])
        states[:, 0] = initial
        outs = states.unbind(1)
        for c, (a_c, u_c) in enumerate(zip(decay.unbind(1), chunk_states.unbind(1), strict=True)):
            torch.addcmul(u_c, a_c, outs[c], out=outs[c + 1])
        ctx.save_for_backward(decay, states)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_states: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        decay, states = ctx.saved_tensors
        nc = decay.shape[1]
        total = grad_states.clone()  # becomes Ĝ, accumulated from the end
        totals = total.unbind(1)
        decays = decay.unbind(1)
        for c in range(nc - 1, -1, -1):
            torch.addcmul(totals[c], decays[c], totals[c + 1], out=totals[c])
        grad_chunk_states = total[:, 1:]
        grad_decay = (grad_chunk_states * states[:, :nc]).sum_to_size(decay.shape)
        return grad_decay, grad_chunk_states, total[:, 0]


def _ssd_scan_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    initial_state: Tensor | None,
    segsum: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Chunked SSD (Mamba-2 paper, section 6 / Listing 1) in float32; returns (y, final_state).

    The sequence is cut into ``nc`` chunks of Q steps. With ``cum_i``
    the cumulative log-decay ``sum_{k<=i} dt_k A`` of a head inside a chunk:

    1. intra-chunk (diagonal blocks), the quadratic "attention-like" form
       ``y_i = sum_{j<=i} (C_i . B_j) exp(cum_i - cum_j) dt_j x_j``: batched [Q, Q] @ [Q, P]
       matmuls (the full [L, L] matrix is never built);
    2. the state each chunk adds, measured at its end,
       ``u_c = sum_j exp(cum_Q - cum_j) B_j (dt_j x_j)^T``: [N, Q] @ [Q, (heads, P)] matmuls;
    3. the states entering the chunks, ``s_{c+1} = exp(cum_Q) s_c + u_c``: a loop over
       chunk boundaries (:class:`_ChunkStatePassing`) in eager mode, or with
       ``segsum=True`` (the default while ``torch.compile`` traces) the segment-sum matrix
       form, blocked (:func:`_chunk_recurrence`), with no loop to unroll;
    4. their contribution ``exp(cum_i) C_i s_c``: [Q, N] @ [N, (heads, P)] matmuls.

    Layout (why it is fast on CPU): tensors stay in the input's natural layout
    ``[B, nc, Q, G, heads per group, P]``, and the states are kept transposed,
    ``[N, heads per group, P]``, so that in steps 2 and 4 the heads of a group sharing
    ``B``/``C`` fold into one matmul dimension and no [B, L, H, P] tensor is permuted or
    broadcast-copied (with ``ngroups = 1``, the default; more groups cost one copy).
    Step 1 runs one batched matmul per head of a group on strided views, again copy-free.
    With ``segsum``, every step is a fixed set of tensor ops whatever the length, so the
    function compiles (``torch.compile``, dynamic length) into a graph that does not grow
    with ``L``; a tail shorter than Q is then zero-padded (``dt = 0``: the padding neither
    decays nor feeds the state), while eager mode runs it as a second, shorter chunk
    (one copy of ``y`` instead of copies of ``x``, ``B`` and ``C``).
    """
    if segsum is None:
        segsum = torch.compiler.is_compiling()
    b, length, h, p = x.shape
    g, n = B.shape[2:]
    hg = h // g
    if length == 0:
        state = initial_state if initial_state is not None else x.new_zeros(b, h, p, n)
        return x.new_zeros(b, 0, h, p, dtype=torch.float32), state.float()
    q = min(chunk_size, length)
    full = length - length % q
    if full < length and not segsum:
        y_head, state = _ssd_scan_chunked(
            x[:, :full], dt[:, :full], A, B[:, :full], C[:, :full], q, initial_state, False
        )
        y_tail, state = _ssd_scan_chunked(
            x[:, full:], dt[:, full:], A, B[:, full:], C[:, full:], length - full, state, False
        )
        return torch.cat([y_head, y_tail], dim=1), state
    nc = -(-length // q)
    pad = nc * q - length
    dt = dt.float()
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))

    # cumulative log-decay inside each chunk: [b, nc, g, hg, Q] (small: one value per head)
    cum = (dt * A.float()).view(b, nc, q, g, hg).permute(0, 1, 3, 4, 2).cumsum(dim=-1)
    exp_cum = torch.exp(cum)
    # [b, nc, g, Q, hg, P] views of the natural layout (free when g = 1)
    xdt = (x.float() * dt[..., None]).view(b, nc, q, g, hg, p).transpose(2, 3)
    Bc = B.float().view(b, nc, q, g, n).transpose(2, 3)  # [b, nc, g, Q, N]
    Cc = C.float().view(b, nc, q, g, n).transpose(2, 3)

    # 1) intra-chunk. decay[i, j] = exp(cum_i - cum_j) for i >= j, else 0: -inf is written
    # before exp (not zeros after it) so that no inf * 0 turns into a NaN gradient.
    upper = torch.ones(q, q, dtype=torch.bool, device=x.device).triu(1)
    decay = torch.exp((cum[..., :, None] - cum[..., None, :]).masked_fill(upper, -math.inf))
    scores = Cc @ Bc.transpose(-1, -2)  # [b, nc, g, Q, Q], shared by the group's heads
    mixing = decay * scores[:, :, :, None]  # [b, nc, g, hg, Q, Q]
    y_intra = torch.stack([mixing[:, :, :, j] @ xdt[:, :, :, :, j] for j in range(hg)], dim=-2)

    # 2) state added by each chunk, transposed: [b, nc, g, N, hg * P]
    decay_to_end = torch.exp(cum[..., -1:] - cum).transpose(-1, -2)  # [b, nc, g, Q, hg]
    xdt_to_end = (xdt * decay_to_end[..., None]).reshape(b, nc, g, q, hg * p)
    chunk_states = Bc.transpose(-1, -2) @ xdt_to_end

    # 3) states entering each chunk, start_states [b, nc, g, N, hg * P], and the final one
    if initial_state is None:
        initial = x.new_zeros(b, g, n, hg, p, dtype=torch.float32)
    else:  # [b, h, P, N] -> [b, g, N, hg, P]
        initial = initial_state.float().view(b, g, hg, p, n).permute(0, 1, 4, 2, 3)
    if segsum:
        # The recurrence runs head-major, [b, g, hg, nc, N * P] (one copy in, one out), so
        # that each block's [S, S] decay matrix multiplies a contiguous [S, N * P] slab.
        head_major = chunk_states.view(b, nc, g, n, hg, p).permute(0, 2, 4, 1, 3, 5)
        states = _chunk_recurrence(
            cum[..., -1].permute(0, 2, 3, 1),  # [b, g, hg, nc]
            head_major.reshape(b, g, hg, nc, n * p),
            initial.permute(0, 1, 3, 2, 4).reshape(b, g, hg, n * p),
        ).view(b, g, hg, nc, n, p)
        before = states[:, :, :, :-1].permute(0, 3, 1, 4, 2, 5)  # [b, nc - 1, g, N, hg, P]
        start_states = torch.cat([initial[:, None], before], 1).reshape(b, nc, g, n, hg * p)
        final_state = states[:, :, :, -1].permute(0, 1, 2, 4, 3).reshape(b, h, p, n)
    else:
        chunk_decay = exp_cum[..., -1].view(b, nc, g, 1, hg, 1)
        states = _ChunkStatePassing.apply(
            chunk_decay, chunk_states.view(b, nc, g, n, hg, p), initial.contiguous()
        )  # [b, nc + 1, g, N, hg, P]
        start_states = states[:, :nc].reshape(b, nc, g, n, hg * p)
        final_state = states[:, nc].permute(0, 1, 3, 4, 2).reshape(b, h, p, n)

    # 4) contribution of the state entering each chunk: exp(cum_i) C_i s_c
    y_off = (Cc @ start_states).view(b, nc, g, q, hg, p)
    y = torch.addcmul(y_intra, y_off, exp_cum.transpose(-1, -2)[..., None])  # [b,nc,g,Q,hg,P]

    y = y.transpose(2, 3).reshape(b, nc * q, h, p)[:, :length]
    return y, final_state


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    chunk_size: int = 64,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked SSD scan of Mamba-2; same arguments and results as :func:`ssd_scan_ref`.

    Cost is O(L * Q) per head for chunk size Q, memory O(L * Q) for the [Q, Q] blocks. dt,
    A and the cumulative log-decays are kept in float32 whatever the input dtype. The
    ``mamba_ssm`` backend calls ``mamba_chunk_scan_combined``; ``"cpu_kernel"`` (and
    ``"auto"`` on CPU unless ``torch.compile`` is tracing) the fused C recurrence of
    :mod:`mambakit.ssm.cpu_kernel`, differentiable through its C backward.
    """
    _check_ssd_shapes(x, dt, A, B, C)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    fused = _cpu_kernel_for(backend, "ssd_scan", x, dt, A, B, C)
    if fused is not None:
        y, final_state = fused.fused_scan("ssd_scan", x, dt, A, B, C, D, initial_state)
        y = y.to(x.dtype)
        return (y, final_state) if return_final_state else y
    if resolve_backend(backend, x, "ssd_scan") == "mamba_ssm":
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

        out = mamba_chunk_scan_combined(
            x,
            dt,
            A,
            B,
            C,
            chunk_size=chunk_size,
            D=D,
            initial_states=initial_state,
            return_final_states=return_final_state,
        )
        return out if not return_final_state else (out[0], out[1])
    y, final_state = _ssd_scan_chunked(x, dt, A, B, C, chunk_size, initial_state)
    if D is not None:
        y = torch.addcmul(y, x.float(), D.float()[:, None])
    y = y.to(x.dtype)
    return (y, final_state) if return_final_state else y


# ----------------------------------------------------------------------------------------
# Selective scan (Mamba-1)
# ----------------------------------------------------------------------------------------


def _check_selective_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if u.ndim != 3 or delta.shape != u.shape:
        raise ValueError(
            f"u and delta must both be [batch, length, d_inner], got {tuple(u.shape)} and "
            f"{tuple(delta.shape)}"
        )
    b, length, d = u.shape
    if A.ndim != 2 or A.shape[0] != d:
        raise ValueError(f"A must be [{d}, d_state], got {tuple(A.shape)}")
    n = A.shape[1]
    if B.shape != (b, length, n) or C.shape != (b, length, n):
        raise ValueError(
            f"B and C must be {(b, length, n)}, got {tuple(B.shape)} and {tuple(C.shape)}"
        )


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Per-timestep loop of the Mamba-1 selective scan (ground truth for :func:`selective_scan`).

    Args:
        u: ``[B, L, D]`` input (D = d_inner channels).
        delta: ``[B, L, D]`` positive step sizes (already softplus-ed).
        A: ``[D, N]`` negative diagonal state matrix.
        B, C: ``[B, L, N]`` input-dependent projections.
        D: optional ``[D]`` skip connection.
        initial_state: optional ``[B, D, N]``.
        return_final_state: also return the ``[B, D, N]`` state after the last step.

    Returns:
        ``y`` ``[B, L, D]`` (dtype of ``u``), and the final state if asked.
    """
    _check_selective_shapes(u, delta, A, B, C)
    b, length, d = u.shape
    n = A.shape[1]
    state = (
        initial_state.float()
        if initial_state is not None
        else u.new_zeros(b, d, n, dtype=torch.float32)
    )
    ys = []
    for t in range(length):
        dt_t = delta[:, t].float()[..., None]  # [b, d, 1]
        state = (
            torch.exp(dt_t * A.float()) * state
            + dt_t * B[:, t, None, :].float() * u[:, t, :, None].float()
        )
        ys.append(torch.einsum("bdn,bn->bd", state, C[:, t].float()))
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(b, 0, d, dtype=torch.float32)
    if D is not None:
        y = y + u.float() * D.float()
    y = y.to(u.dtype)
    return (y, state) if return_final_state else y


def _selective_scan_block(
    delta: Tensor, u: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor, q: int, clamp: bool
) -> tuple[Tensor, Tensor]:
    """One block of :func:`_selective_scan_chunked`: ``k`` chunks of ``q`` steps at once.

    Shapes: ``delta, u`` ``[b, l, d]``, ``B, C`` ``[b, l, n]``, ``state`` ``[b, d, n]`` (the
    state before the block); returns ``y`` ``[b, l, d]`` and the state after the block.
    """
    b, lb, d = u.shape
    n = A.shape[1]
    k = -(-lb // q)
    pad = k * q - lb
    if pad:  # dt = 0 on the padding: decay 1 and no input, the state passes unchanged
        delta, u, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (delta, u, B, C))
    dt = delta.float()
    # Prefix sums inside a chunk are products with a lower-triangular matrix of ones: a
    # [Q, Q] @ [Q, D*N] matmul is several times faster on CPU than cumsum over a middle dim.
    prefix_sum = torch.ones(q, q, dtype=torch.float32, device=u.device).tril()
    if clamp:  # extreme steps: clamp each log-decay on its own, then sum
        log_decay = (dt[..., None] * A).clamp_min(-_MAX_CHUNK_LOG_DECAY)
        cum = (prefix_sum @ log_decay.view(b, k, q, d * n)).view(b, k, q, d, n)
    else:  # cum_i = A * sum_{k<=i} dt_k: the sum is over [Q, D] only, N times less work
        cum = (prefix_sum @ dt.view(b, k, q, d))[..., None] * A
    decay = torch.exp(cum)  # [b, k, q, d, n]
    dBu = ((dt * u.float())[..., None] * B.float()[:, :, None, :]).view(b, k, q, d, n)
    # h_i = exp(cum_i) (h_start + sum_{j<=i} exp(-cum_j) dt_j B_j u_j), per chunk
    local = (prefix_sum @ (dBu / decay).view(b, k, q, d * n)).view(b, k, q, d, n)
    # states entering each chunk: a loop over the k chunk boundaries of the block only
    starts = []
    ends = zip(decay[:, :, -1].unbind(1), local[:, :, -1].unbind(1), strict=True)
    for decay_end, local_end in ends:
        starts.append(state)
        state = decay_end * (state + local_end)
    h = decay * (local + torch.stack(starts, dim=1)[:, :, None])  # [b, k, q, d, n]
    y = (h @ C.float().view(b, k, q, n, 1)).view(b, k * q, d)  # y_i = h_i C_i
    return y[:, :lb], state


def _selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    initial_state: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Chunked selective scan in float32; returns (y, final_state).

    Within a chunk of Q steps, with cumulative log-decay ``cum_i = sum_{k<=i} dt_k A``::

        h_i = exp(cum_i) * (h_start + sum_{j<=i} exp(-cum_j) dt_j B_j u_j)

    so a chunk costs two prefix sums and a handful of elementwise ops on [B, Q, D, N]
    tensors instead of Q sequential steps. ``exp(-cum_j)`` grows with the decay inside
    the chunk, so Q is shrunk (down to 1, the plain recurrence) whenever the largest
    possible per-step decay times Q would exceed ``_MAX_CHUNK_LOG_DECAY`` = 40 nats:
    results stay exact in float32 for any input, only slower for extreme decays. A single
    step decaying by more than 40 nats is clamped to 40 (it forgets the state to below
    float32 resolution either way).

    Speed: chunks are not visited one by one (Python and dispatch overhead per chunk made
    this slower than the per-step loop at L = 44,100); a *block* of ``k`` chunks
    (about ``_SELECTIVE_BLOCK_ELEMENTS`` state values, a few MB that stay in cache) is
    computed with one set of vectorised ops, and only the ``k`` chunk-boundary states are
    chained by a short loop. Under autograd each block is checkpointed (recomputed in the
    backward pass), so training memory is O(L D) plus one block instead of O(L D N).
    """
    b, length, d = u.shape
    n = A.shape[1]
    A = A.float()
    max_step_decay = float((delta.detach().float().amax() * (-A.detach()).amax()).clamp_min(0))
    q = chunk_size
    if max_step_decay > 0:
        q = max(1, min(chunk_size, int(_MAX_CHUNK_LOG_DECAY / max_step_decay)))
    clamp = max_step_decay > _MAX_CHUNK_LOG_DECAY
    state = (
        initial_state.float()
        if initial_state is not None
        else u.new_zeros(b, d, n, dtype=torch.float32)
    )
    block = q * max(1, _SELECTIVE_BLOCK_ELEMENTS // (b * q * d * n))
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, initial_state)
    )
    # With the compile switch on, each block runs one compiled graph (its elementwise chain
    # fused); the loop over blocks and the data-dependent chunk length stay in Python.
    block_fn = compiled(_selective_scan_block) if should_compile(b * length) else None
    block_fn = block_fn or _selective_scan_block
    ys = []
    # torch.split (not slicing in the loop): its backward concatenates the gradients once
    # instead of allocating a full-length zero gradient per block.
    pieces = [t.split(block, dim=1) for t in (delta, u, B, C)]
    for delta_c, u_c, B_c, C_c in zip(*pieces, strict=True):
        args = (delta_c, u_c, A, B_c, C_c, state, q, clamp)
        if needs_grad:
            y_c, state = checkpoint(block_fn, *args, use_reentrant=False)
        else:
            y_c, state = block_fn(*args)
        ys.append(y_c)
    y = torch.cat(ys, dim=1) if ys else u.new_zeros(b, 0, d, dtype=torch.float32)
    return y, state


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
    chunk_size: int = 32,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Fast Mamba-1 selective scan; same arguments and results as :func:`selective_scan_ref`.

    Backends: ``"cpu_kernel"`` is a fused C loop (:mod:`mambakit.ssm.cpu_kernel`, built on
    first use, with an exact C backward); ``"auto"`` uses it on CPU (inference and
    training, unless ``torch.compile`` is tracing), ``mamba_ssm`` on CUDA when installed,
    and otherwise the torch path below.

    The torch path is chunked and vectorised over blocks of chunks (see
    ``_selective_scan_chunked``; several times faster than the per-step loop, forward and
    backward, ``mambakit bench ssm``). Under autograd the blocks are checkpointed.
    The ``mamba_ssm`` backend calls ``selective_scan_fn``; it has no initial state, so a
    call with ``initial_state`` uses the torch path.
    """
    _check_selective_shapes(u, delta, A, B, C)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    fused = _cpu_kernel_for(backend, "selective_scan", u, delta, A, B, C)
    if fused is not None:
        y, final_state = fused.fused_scan("selective_scan", u, delta, A, B, C, D, initial_state)
        y = y.to(u.dtype)
        return (y, final_state) if return_final_state else y
    if initial_state is None and resolve_backend(backend, u, "selective_scan") == "mamba_ssm":
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        out = selective_scan_fn(
            u.transpose(1, 2).contiguous(),
            delta.transpose(1, 2).contiguous(),
            A,
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            D=D.float() if D is not None else None,
            return_last_state=return_final_state,
        )
        if return_final_state:
            return out[0].transpose(1, 2), out[1]
        return out.transpose(1, 2)
    elif initial_state is not None and backend == "mamba_ssm":
        resolve_backend(backend, u, "selective_scan")  # still raise if it is missing
    y, final_state = _selective_scan_chunked(u, delta, A, B, C, chunk_size, initial_state)
    if D is not None:
        y = y + u.float() * D.float()
    y = y.to(u.dtype)
    return (y, final_state) if return_final_state else y


set_compile(os.environ.get("MAMBAKIT_COMPILE", "0"))
