"""Analytic FLOP counts of one sequence-mixer layer (batch 1, forward pass).

Conventions (used by every function here):

- A multiply-add is 2 FLOPs; a matrix product ``[m, k] @ [k, n]`` costs ``2 m k n``.
- Elementwise work that is not a multiply-add of the algorithm (SiLU, softplus, ``exp``,
  the gated RMSNorm, rotary embeddings, softmax) is left out: it is small next to the
  terms counted and its cost depends on the kernel, not the algorithm.
- The tail chunk of a length that is not a multiple of the chunk size is counted at its
  true length (padding is an implementation detail).
- A backward pass costs twice the forward (the usual rule for matmul-dominated layers:
  one product for the input gradient, one for the weight gradient), so
  ``forward+backward = 3 x forward`` (:func:`training_flops`).

Each function returns a dict of named terms plus ``"total"``, so a table can show where
the work goes. A hyperparameter not given is the layer's own default (read from
:class:`~mambakit.ssm.Mamba2` / :class:`~mambakit.ssm.Mamba`), so a count is of the layer
as it is built.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from mambakit.ssm import Mamba, Mamba2


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _hyperparameters(layer: type, counted: tuple[str, ...], given: dict[str, Any]) -> list[Any]:
    """The values of ``counted`` for ``layer``: ``given`` over the layer constructor's
    defaults; a name the count does not use is an error (not silently ignored)."""
    unknown = set(given) - set(counted)
    if unknown:
        raise TypeError(f"{layer.__name__} FLOPs: unknown hyperparameter(s) {sorted(unknown)}")
    defaults = inspect.signature(layer.__init__).parameters
    return [given.get(name, defaults[name].default) for name in counted]


def _with_total(terms: dict[str, float]) -> dict[str, float]:
    return {**terms, "total": sum(terms.values())}


def mamba2_flops(
    seqlen: int, d_model: int, *, scan: str = "chunked", **hyperparameters: int
) -> dict[str, float]:
    """FLOPs of one Mamba-2 (SSD) layer on ``[1, seqlen, d_model]``; ``hyperparameters``:
    ``d_state``, ``headdim``, ``ngroups``, ``expand``, ``d_conv``, ``chunk_size`` (default:
    :class:`~mambakit.ssm.Mamba2`'s).

    With ``D = expand * d_model`` inner channels, ``H = D / headdim`` heads of width
    ``P = headdim``, state size ``N``, ``G`` groups and chunk length ``Q``:

    - ``in_proj``: ``2 L d_model (2D + 2GN + H)`` (z, x, B, C, dt);
    - ``conv``: depthwise causal conv over ``D + 2GN`` channels: ``2 L (D + 2GN) d_conv``;
    - ``scan`` (``"chunked"``, the SSD algorithm of Mamba-2, Dao & Gu 2024, section 6):
      per chunk, the diagonal block ``(L ∘ C Bᵀ) X`` costs ``2 Q² N`` per group for
      ``C Bᵀ``, ``Q²`` per head for the decay mask and ``2 Q² P`` per head to apply it;
      the chunk states ``Bᵀ X`` and the off-diagonal output ``C h`` cost ``2 Q N P`` per
      head each; passing states between chunks costs ``2 N P`` per head per chunk.
      Summed over ``L / Q`` chunks:
      ``L (2 Q N G + Q H + 2 Q P H + 4 N P H) + 2 (L / Q) H N P``.
      ``"recurrent"`` (the per-timestep recurrence ``h_t = a_t h_{t-1} + Δ_t x_t B_tᵀ``,
      ``y_t = h_t C_t``): decay, outer product and add ``3 H P N`` plus read-out
      ``2 H P N`` per step: ``5 L H P N``;
    - ``skip``: the ``D x_t`` term, ``2 L D``;
    - ``out_proj``: ``2 L D d_model``.
    """
    counted = ("d_state", "headdim", "ngroups", "expand", "d_conv", "chunk_size")
    d_state, headdim, ngroups, expand, d_conv, chunk_size = _hyperparameters(
        Mamba2, counted, hyperparameters
    )
    _check_positive(
        seqlen=seqlen, d_model=d_model, d_state=d_state, headdim=headdim, chunk_size=chunk_size
    )
    d_inner = expand * d_model
    if d_inner % headdim:
        raise ValueError(f"expand * d_model = {d_inner} is not a multiple of headdim {headdim}")
    n_heads = d_inner // headdim
    L, N, P, G, H, Q = seqlen, d_state, headdim, ngroups, n_heads, chunk_size
    if scan == "chunked":
        scan_flops = L * (2 * Q * N * G + Q * H + 2 * Q * P * H + 4 * N * P * H)
        scan_flops += 2 * (L / Q) * H * N * P
    elif scan == "recurrent":
        scan_flops = 5 * L * H * P * N
    else:
        raise ValueError(f"scan must be 'chunked' or 'recurrent', got {scan!r}")
    return _with_total({
        "in_proj": 2.0 * L * d_model * (2 * d_inner + 2 * G * N + H),
        "conv": 2.0 * L * (d_inner + 2 * G * N) * d_conv,
        "scan": float(scan_flops),
        "skip": 2.0 * L * d_inner,
        "out_proj": 2.0 * L * d_inner * d_model,
    })  # fmt: skip


def mamba_flops(seqlen: int, d_model: int, **hyperparameters: int | str) -> dict[str, float]:
    """FLOPs of one Mamba-1 (selective scan) layer on ``[1, seqlen, d_model]``;
    ``hyperparameters``: ``d_state``, ``d_conv``, ``expand``, ``dt_rank`` (default:
    :class:`~mambakit.ssm.Mamba`'s).

    With ``D = expand * d_model`` channels, state size ``N`` and ``R = dt_rank``
    (``"auto"``: ``ceil(d_model / 16)``, as in Gu & Dao 2023):

    - ``in_proj``: ``2 L d_model 2D`` (x and gate z); ``conv``: ``2 L D d_conv``;
    - ``x_proj``: ``2 L D (R + 2N)`` (Δ, B, C); ``dt_proj``: ``2 L R D``;
    - ``scan``: per step, channel and state: ``Δ A`` (1), ``Δ B x`` (2),
      ``h = exp(ΔA) h + ΔBx`` (2), ``y = C h`` (2): ``7 L D N`` (equation 2a-2b of the
      Mamba paper after discretisation; the ``exp`` is not counted);
    - ``skip``: ``2 L D``; ``out_proj``: ``2 L D d_model``.

    The same count is used for the parallel and the sequential implementation: they do the
    same algorithmic work.
    """
    counted = ("d_state", "d_conv", "expand", "dt_rank")
    d_state, d_conv, expand, dt_rank = _hyperparameters(Mamba, counted, hyperparameters)
    _check_positive(seqlen=seqlen, d_model=d_model, d_state=d_state)
    d_inner = expand * d_model
    rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
    L, D, N, R = seqlen, d_inner, d_state, rank
    return _with_total({
        "in_proj": 2.0 * L * d_model * 2 * D,
        "conv": 2.0 * L * D * d_conv,
        "x_proj": 2.0 * L * D * (R + 2 * N),
        "dt_proj": 2.0 * L * R * D,
        "scan": 7.0 * L * D * N,
        "skip": 2.0 * L * D,
        "out_proj": 2.0 * L * D * d_model,
    })  # fmt: skip


def attention_flops(seqlen: int, d_model: int) -> dict[str, float]:
    """FLOPs of one causal self-attention layer on ``[1, seqlen, d_model]``.

    ``qkv``: ``2 L d (3d)``; causal scores ``Q Kᵀ`` and ``P V`` each cost ``2 d`` per
    (query, key) pair with key <= query, ``L (L + 1) / 2`` pairs: ``2 L (L + 1) d`` for
    both (independent of the head count); ``out``: ``2 L d²``.
    """
    _check_positive(seqlen=seqlen, d_model=d_model)
    L, d = seqlen, d_model
    pairs = L * (L + 1) / 2
    return _with_total({
        "qkv": 2.0 * L * d * 3 * d,
        "scores": 2.0 * pairs * d,
        "values": 2.0 * pairs * d,
        "out_proj": 2.0 * L * d * d,
    })  # fmt: skip


def training_flops(forward_flops: float, *, backward: bool) -> float:
    """Forward FLOPs, or ``3 x`` forward for forward+backward (backward = 2 x forward)."""
    return 3.0 * forward_flops if backward else float(forward_flops)
