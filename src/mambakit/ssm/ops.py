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

``*_ref`` are per-timestep Python loops (ground truth in tests). The fast paths are
pure PyTorch and chunked; on CUDA, ``backend="auto"`` uses ``mamba_ssm``'s Triton/CUDA
kernels when that package is importable. ``mamba_ssm`` is imported lazily, never at
module import.
"""

from __future__ import annotations

import importlib.util
import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BACKENDS",
    "resolve_backend",
    "ssd_scan",
    "ssd_scan_ref",
    "selective_scan",
    "selective_scan_ref",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "mamba_ssm")
_warned_fallback: set[str] = set()

# Largest total log-decay allowed inside one chunk of the Mamba-1 scan, see
# ``_selective_scan_chunked``: exp(40) ~ 2e17 is far inside the float32 range (3e38).
_MAX_CHUNK_LOG_DECAY = 40.0


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
    if backend == "torch":
        return "torch"
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


def _ssd_scan_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    initial_state: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Chunked SSD (Mamba-2 paper, section 6 / Listing 1) in float32; returns (y, final_state).

    The sequence is cut into chunks of Q steps. Within a chunk the output is the
    quadratic "attention-like" form ``y_i = sum_{j<=i} (C_i . B_j) exp(cum_i - cum_j) dt_j x_j``
    (batched matmuls over [Q, Q] blocks; the full [L, L] matrix is never built); the state
    at each chunk boundary is propagated by a short sequential loop over chunks (only
    [B, H, P, N] tensors), and its contribution ``exp(cum_i) C_i h_{chunk start}`` is added.
    """
    b, length, h, p = x.shape
    g, n = B.shape[2:]
    hg = h // g
    q = chunk_size
    pad = (-length) % q
    if pad:
        # dt = 0 on the padding means decay 1 and no input: the final state is unchanged.
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    nc = (length + pad) // q

    dt = dt.float()
    # [b, nc, Q, g, hg] -> [b, nc, g, hg, Q]
    log_decay = (dt * A.float()).view(b, nc, q, g, hg).permute(0, 1, 3, 4, 2)
    cum = log_decay.cumsum(dim=-1)  # [b, nc, g, hg, Q]
    # x * dt: [b, nc, Q, g, hg, P] -> [b, nc, g, hg, Q, P]
    xdt = (x.float() * dt[..., None]).view(b, nc, q, g, hg, p).permute(0, 1, 3, 4, 2, 5)
    Bc = B.float().view(b, nc, q, g, n).transpose(2, 3)  # [b, nc, g, Q, N]
    Cc = C.float().view(b, nc, q, g, n).transpose(2, 3)  # [b, nc, g, Q, N]

    # 1) intra-chunk (diagonal blocks): L[i, j] = exp(cum_i - cum_j) for i >= j.
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    seg = cum[..., :, None] - cum[..., None, :]  # [b, nc, g, hg, Q, Q]
    decay = torch.exp(seg.masked_fill(~causal, -math.inf))
    scores = Cc @ Bc.transpose(-1, -2)  # [b, nc, g, Q, Q]
    y = (scores[:, :, :, None] * decay) @ xdt  # [b, nc, g, hg, Q, P]

    # 2) state contributed by each chunk, measured at its end: [b, nc, g, hg, P, N].
    decay_to_end = torch.exp(cum[..., -1:] - cum)  # [b, nc, g, hg, Q]
    chunk_states = (xdt * decay_to_end[..., None]).transpose(-1, -2) @ Bc[:, :, :, None]

    # 3) inter-chunk recurrence over chunk boundaries (sequential, tiny tensors).
    chunk_decay = torch.exp(cum[..., -1])[..., None, None]  # [b, nc, g, hg, 1, 1]
    if initial_state is None:
        state = x.new_zeros(b, g, hg, p, n, dtype=torch.float32)
    else:
        state = initial_state.float().reshape(b, g, hg, p, n)
    starts = []
    # unbind (not chunk_states[:, c]): indexing in a loop would make autograd allocate a
    # full-size zero gradient per chunk, O(nc^2) in the backward pass.
    for decay_c, states_c in zip(chunk_decay.unbind(1), chunk_states.unbind(1), strict=True):
        starts.append(state)
        state = decay_c * state + states_c
    start_states = torch.stack(starts, dim=1)  # [b, nc, g, hg, P, N]

    # 4) contribution of the state at each chunk start: exp(cum_i) C_i h_start.
    y_off = Cc[:, :, :, None] @ start_states.transpose(-1, -2)  # [b, nc, g, hg, Q, P]
    y = y + y_off * torch.exp(cum)[..., None]

    y = y.permute(0, 1, 4, 2, 3, 5).reshape(b, nc * q, h, p)[:, :length]
    return y, state.reshape(b, h, p, n)


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
    ``mamba_ssm`` backend calls ``mamba_chunk_scan_combined``.
    """
    _check_ssd_shapes(x, dt, A, B, C)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
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
        y = y + x.float() * D.float()[:, None]
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

    so a chunk costs one ``cumsum`` and a handful of elementwise ops on [B, Q, D, N]
    tensors instead of Q sequential steps. ``exp(-cum_j)`` grows with the decay inside
    the chunk, so Q is shrunk (down to 1, the plain recurrence) whenever the largest
    possible per-step decay times Q would exceed ``_MAX_CHUNK_LOG_DECAY`` = 40 nats:
    results stay exact in float32 for any input, only slower for extreme decays. A single
    step decaying by more than 40 nats is clamped to 40 (it forgets the state to below
    float32 resolution either way).
    Only one chunk's [B, Q, D, N] tensors are alive at a time (memory O(Q D N)).
    """
    b, length, d = u.shape
    A = A.float()
    max_step_decay = float((delta.detach().float().amax() * (-A.detach()).amax()).clamp_min(0))
    q = chunk_size
    if max_step_decay > 0:
        q = max(1, min(chunk_size, int(_MAX_CHUNK_LOG_DECAY / max_step_decay)))
    state = (
        initial_state.float()
        if initial_state is not None
        else u.new_zeros(b, d, A.shape[1], dtype=torch.float32)
    )
    ys = []
    # torch.split (not slicing in the loop): its backward concatenates the gradients once
    # instead of allocating a full-length zero gradient per chunk.
    pieces = [t.split(q, dim=1) for t in (delta, u, B, C)]
    for delta_c, u_c, B_c, C_c in zip(*pieces, strict=True):
        dt = delta_c.float()  # [b, q, d]
        # A step decaying by more than 40 nats (factor < 4e-18) is clamped there: the old state
        # is then below float32 resolution either way, and exp(-cum) cannot overflow.
        log_decay = (dt[..., None] * A).clamp_min(-_MAX_CHUNK_LOG_DECAY)
        cum = log_decay.cumsum(dim=1)  # [b, q, d, n]
        dBu = (dt * u_c.float())[..., None] * B_c[:, :, None, :].float()
        states = torch.exp(cum) * (state[:, None] + (torch.exp(-cum) * dBu).cumsum(dim=1))
        ys.append(torch.einsum("bqdn,bqn->bqd", states, C_c.float()))
        state = states[:, -1]
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

    The torch path is chunked (see ``_selective_scan_chunked``). Measured on the 2-core
    CPU of this project (fp32, batch 1, L = 44,100, d_inner = 128, d_state = 16, forward):
    see ``SELECTIVE_SCAN_SPEEDUP`` in the module docstring of :mod:`mambakit.ssm.mamba`.
    The ``mamba_ssm`` backend calls ``selective_scan_fn``; it has no initial state, so a
    call with ``initial_state`` uses the torch path.
    """
    _check_selective_shapes(u, delta, A, B, C)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
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
