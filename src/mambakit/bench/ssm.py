"""``mambakit bench ssm``: our Mamba-2 / Mamba layers against baselines, side by side.

For each ``(d_model, L, pass)`` case (batch 1, fp32, ``pass`` = forward or forward+backward)
the bench times one layer of each implementation and measures its peak memory growth
(:mod:`mambakit.bench.common`):

- ``mamba2``: :class:`mambakit.ssm.Mamba2` as shipped (``backend="auto"``: on CPU the fused
  C scan, forward and, under autograd, its C backward);
- ``mamba2_torch``: the same layer on the chunked torch scan only (eager; the training path
  before the C backward);
- ``mamba2_compiled``: that layer with the compile switch on
  (:func:`mambakit.ssm.set_compile`); its first full-length call compiles, and
  ``compile_s`` (first call minus median) is reported with its share of a 10-minute run;
- ``hf_mamba2_mixer``: ``transformers``' ``Mamba2Mixer`` with a matching
  ``Mamba2Config`` and random weights; on CPU it runs its pure-PyTorch ``torch_forward``
  path. This is the external baseline every row's ``vs_hf`` speed-up is relative to.
  Needs the ``[bench]`` extra (``transformers``); skipped with a note without it;
- ``hf_mamba2_mixer_q256``: the same at transformers' default ``chunk_size=256``
  (``vs_hf_default``);
- ``mamba2_naive`` / ``mamba_naive``: the same layers with their scan swapped for the
  per-timestep reference loop (``ssd_scan_ref`` / ``selective_scan_ref``). A Python loop
  over 44,100 steps is too slow to time in full, so these run at ``naive_seqlen`` and
  time and memory are **extrapolated linearly** to ``L`` (both are linear in ``L`` for a
  recurrence); the ``note`` column says so;
- ``mamba`` / ``mamba_torch``: :class:`mambakit.ssm.Mamba` (Mamba-1) as shipped / on the
  chunked selective scan only;
- ``attention``: :class:`mambakit.ssm.CausalSelfAttention` of the same width with
  64-wide heads (SDPA, causal), the quadratic baseline.

Each row also carries the analytic FLOPs of its algorithm (:mod:`mambakit.bench.flops`),
the achieved GFLOP/s and its fraction of this machine's measured fp32 matmul rate
(:func:`mambakit.bench.common.measure_matmul_flops`), the roofline of a layer made of
matmuls. Then ``step()`` decoding (fp32 vs int8 decode weights on the PyTorch path vs the
fused C step in fp32, bf16 and int8, interleaved) and, unless
``end_to_end=False``, what the fast paths buy the pipelines: drums generation and timbre
transfer with the torch scans vs the C scans, and drums training steps per minute with the
torch scans vs the C scans (and, in the full run, compiled; :func:`measure_inference`,
:func:`measure_drums_training`).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mambakit.bench.common import (
    forward_fn,
    measure_matmul_flops,
    measure_peak_memory,
    result_metadata,
    time_interleaved,
    write_json,
)
from mambakit.bench.flops import attention_flops, mamba2_flops, mamba_flops, training_flops
from mambakit.results import markdown_table
from mambakit.utils import resolve_device, seed_everything

# Layer hyper-parameters shared by our layers, the transformers baseline and the FLOP count.
MAMBA2_KWARGS = dict(d_state=64, headdim=64, ngroups=1, expand=2, d_conv=4, chunk_size=64)
MAMBA_KWARGS = dict(d_state=16, d_conv=4, expand=2)
ATTENTION_HEAD_DIM = 64

IMPLEMENTATIONS = (
    "mamba2",
    "mamba2_torch",
    "mamba2_compiled",
    "hf_mamba2_mixer",
    "hf_mamba2_mixer_q256",
    "mamba2_naive",
    "mamba",
    "mamba_torch",
    "mamba_naive",
    "attention",
)
BASELINE = "hf_mamba2_mixer"
# transformers' Mamba2Config default chunk size: the Mixer as most users run it
HF_DEFAULT_BASELINE, HF_DEFAULT_CHUNK = "hf_mamba2_mixer_q256", 256
# implementations timed with the compile switch on (mambakit.ssm.ops.set_compile)
COMPILED = ("mamba2_compiled",)
# A training run the compile time is amortised over (compile_share_10min).
TRAINING_RUN_S = 600.0

FULL_SEQLENS = (16_000, 44_100)
FULL_D_MODELS = (64, 128)
QUICK_SEQLENS = (44_100,)
QUICK_D_MODELS = (64,)
# (impl, backward) pairs left out of --quick at lengths above QUICK_SKIP_ABOVE: exact
# causal attention over 44,100 steps costs tens of seconds forward+backward on 2 cores.
QUICK_SKIPS = {("attention", True)}
QUICK_SKIP_ABOVE = 16_000
# Pause before each timed call: torch's OpenMP workers keep spinning on every core for
# tens of ms after the previous row's parallel work, and a row whose kernels run on their
# own threads (the fused C layers) would pay for that spin (a probe: 49.6 ms alone, 67.8 ms
# right after the torch-stage layer, 53.6 ms after a 50 ms pause). Every row gets it.
SETTLE_SECONDS = 0.1
# The recurrent-step benchmark: one step() of a Backbone at batch 1 (autoregressive decoding).
STEP_KIND, STEP_LAYERS, STEP_D_MODEL = "mamba2", 12, 512


class SkipImplementation(Exception):
    """An implementation cannot run here (missing optional dependency); the reason is shown."""


@dataclass(frozen=True)
class BenchCase:
    """One measured cell: implementation, width, length (samples/tokens) and pass."""

    impl: str
    d_model: int
    seqlen: int
    backward: bool

    @property
    def mode(self) -> str:
        return "fwd+bwd" if self.backward else "fwd"


# ------------------------------------------------------------- layer factories


def _hf_mamba2_mixer(
    d_model: int, chunk_size: int = MAMBA2_KWARGS["chunk_size"]
) -> torch.nn.Module:
    try:
        from transformers import Mamba2Config
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise SkipImplementation(
            f"transformers is not installed ({e}); pip install 'mambakit[bench]'"
        ) from e
    # It warns on every call that mamba_ssm is missing: expected here, we time its torch path.
    hf_logging.set_verbosity_error()
    k = MAMBA2_KWARGS
    config = Mamba2Config(
        hidden_size=d_model,
        num_heads=k["expand"] * d_model // k["headdim"],
        head_dim=k["headdim"],
        state_size=k["d_state"],
        n_groups=k["ngroups"],
        expand=k["expand"],
        conv_kernel=k["d_conv"],
        chunk_size=chunk_size,
        num_hidden_layers=1,
        use_bias=False,
        use_conv_bias=True,
    )
    return Mamba2Mixer(config, layer_idx=0)


def _mamba2(d_model: int, backend: str = "auto") -> torch.nn.Module:
    from mambakit.ssm import Mamba2

    return Mamba2(d_model, **MAMBA2_KWARGS, backend=backend)


def _mamba(d_model: int, backend: str = "auto") -> torch.nn.Module:
    from mambakit.ssm import Mamba

    return Mamba(d_model, **MAMBA_KWARGS, backend=backend)


def _attention(d_model: int) -> torch.nn.Module:
    from mambakit.ssm import CausalSelfAttention

    return CausalSelfAttention(d_model, n_heads=max(1, d_model // ATTENTION_HEAD_DIM))


# "mamba2" / "mamba": the layers as shipped (backend "auto": the fused C scan for inference
# on CPU, the chunked torch scan under autograd); "*_torch": the chunked torch scan always
# (the eager path before the C kernels); "mamba2_compiled": the same layer, compile on.
_FACTORIES: dict[str, Callable[[int], torch.nn.Module]] = {
    "mamba2": _mamba2,
    "mamba2_torch": lambda d: _mamba2(d, backend="torch"),
    "mamba2_compiled": lambda d: _mamba2(d, backend="torch"),
    "mamba2_naive": _mamba2,
    "hf_mamba2_mixer": _hf_mamba2_mixer,
    "hf_mamba2_mixer_q256": lambda d: _hf_mamba2_mixer(d, chunk_size=HF_DEFAULT_CHUNK),
    "mamba": _mamba,
    "mamba_torch": lambda d: _mamba(d, backend="torch"),
    "mamba_naive": _mamba,
    "attention": _attention,
}

# naive implementation -> (fast scan name, reference scan name) in mambakit.ssm.ops
_REFERENCE_SCANS = {
    "mamba2_naive": ("ssd_scan", "ssd_scan_ref"),
    "mamba_naive": ("selective_scan", "selective_scan_ref"),
}


def build_layer(impl: str, d_model: int) -> torch.nn.Module:
    """A freshly initialised layer of implementation ``impl`` (one of ``IMPLEMENTATIONS``)."""
    if impl not in _FACTORIES:
        raise ValueError(f"unknown implementation {impl!r}; choose from {IMPLEMENTATIONS}")
    try:
        return _FACTORIES[impl](d_model)
    except ImportError as e:  # a layer of mambakit.ssm not built yet, or a broken install
        raise SkipImplementation(f"cannot import {impl}: {e}") from e


@contextlib.contextmanager
def reference_scan(layer: torch.nn.Module, impl: str) -> Iterator[list[int]]:
    """Route ``layer``'s scan through the per-timestep ``*_ref`` loop while inside.

    The layer module looks its scan up by name (``ssd_scan`` / ``selective_scan``) in its
    own module or in :mod:`mambakit.ssm.ops`; both names are swapped for an adapter that
    drops the fast path's extra arguments (``chunk_size``, ``backend``) and calls the
    reference. Yields a one-element call counter, so the caller can check that the swap
    took effect rather than silently timing the fast path.
    """
    from mambakit.ssm import ops

    fast_name, ref_name = _REFERENCE_SCANS[impl]
    ref_fn = getattr(ops, ref_name)
    calls = [0]

    def adapter(*args: Any, chunk_size: int | None = None, backend: str | None = None, **kw: Any):
        calls[0] += 1
        # the reference takes (inputs..., D, initial_state, return_final_state) positionally
        return ref_fn(*args[:8], **kw)

    modules = {ops, sys.modules[type(layer).__module__]}
    saved = [(m, getattr(m, fast_name)) for m in modules if hasattr(m, fast_name)]
    try:
        for module, _ in saved:
            setattr(module, fast_name, adapter)
        yield calls
    finally:
        for module, original in saved:
            setattr(module, fast_name, original)


def _runs_cpu_kernel(case: BenchCase) -> bool:
    """Whether the shipped layer runs the fused C scan (per-step recurrence) in ``case``:
    forward, and forward+backward through its C backward."""
    from mambakit.ssm import cpu_kernel

    return case.impl in ("mamba2", "mamba") and cpu_kernel.available()


def case_flops(case: BenchCase) -> float:
    """Analytic FLOPs of ``case`` (forward, or 3x forward for forward+backward)."""
    impl, L, d = case.impl, case.seqlen, case.d_model
    if impl in ("mamba2", "mamba2_torch", "mamba2_compiled", "hf_mamba2_mixer"):
        scan = "recurrent" if impl == "mamba2" and _runs_cpu_kernel(case) else "chunked"
        fwd = mamba2_flops(L, d, **MAMBA2_KWARGS, scan=scan)["total"]
    elif impl == "hf_mamba2_mixer_q256":
        kwargs = {**MAMBA2_KWARGS, "chunk_size": HF_DEFAULT_CHUNK}
        fwd = mamba2_flops(L, d, **kwargs)["total"]
    elif impl == "mamba2_naive":
        fwd = mamba2_flops(L, d, **MAMBA2_KWARGS, scan="recurrent")["total"]
    elif impl in ("mamba", "mamba_torch", "mamba_naive"):
        fwd = mamba_flops(L, d, **MAMBA_KWARGS)["total"]
    elif impl == "attention":
        fwd = attention_flops(L, d)["total"]
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    return training_flops(fwd, backward=case.backward)


# ------------------------------------------------------------------- measuring


def _measure(
    layers: dict[str, torch.nn.Module],
    seqlen: int,
    d_model: int,
    backward: bool,
    *,
    warmup: int,
    repeats: int,
    device: torch.device,
    compiled: Sequence[str] = (),
) -> dict[str, tuple[float, int | None, float | None]]:
    """For each of ``layers``: median seconds and max peak-memory bytes of ``repeats`` calls on
    ``[1, seqlen, d]``, and the seconds of its first full-length call (``None`` unless it is
    in ``compiled``). The layers take turns call by call, so that a busy machine slows all
    of them alike and their ratios stay fair.

    Warm-up runs on a short prefix (at most 1,024 steps): it pays for lazy initialisation
    and kernel selection without spending a full-length call. A layer in ``compiled`` runs
    every call with the compile switch on and warms up at the full length instead, once:
    that call compiles the graph the timed calls use, and its time is the compile cost
    reported. Each timed call is wrapped in :func:`measure_peak_memory`, so memory costs
    no extra call, and follows a pause of :data:`SETTLE_SECONDS`, so that no row runs
    while the previous one's thread pool still spins.
    """
    x = torch.randn(1, seqlen, d_model, device=device)

    def in_mode(name: str, run: Callable[[], None]) -> Callable[[], None]:
        def switched() -> None:
            with compile_mode(name in compiled):
                run()

        return switched

    first: dict[str, float] = {}
    runs = {}
    for name, layer in layers.items():
        if name in compiled:
            first[name] = _seconds(in_mode(name, forward_fn(layer, x, backward=backward)), device)
        else:
            for _ in range(warmup):
                forward_fn(layer, x[:, : min(seqlen, 1024)], backward=backward)()
        runs[name] = in_mode(name, forward_fn(layer, x, backward=backward))
    times: dict[str, list[float]] = {name: [] for name in layers}
    peaks: dict[str, list[int]] = {name: [] for name in layers}
    for _ in range(repeats):
        for name, run in runs.items():

            def timed(run: Callable[[], None] = run, name: str = name) -> None:
                times[name].append(_seconds(run, device))

            time.sleep(SETTLE_SECONDS)
            peak = measure_peak_memory(timed, device)
            if peak is not None:
                peaks[name].append(peak)
    return {
        name: (statistics.median(times[name]), max(peaks[name], default=None), first.get(name))
        for name in layers
    }


def _seconds(run: Callable[[], None], device: torch.device) -> float:
    """Wall seconds of ``run()``, CUDA-synchronised on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _empty_row(case: BenchCase) -> dict[str, Any]:
    return {
        "impl": case.impl,
        "d_model": case.d_model,
        "seqlen": case.seqlen,
        "mode": case.mode,
        "time_s": None,
        "peak_mem_mb": None,
        "gflop": case_flops(case) / 1e9,
        "params": None,
        "compile_s": None,
        "note": "",
    }


def _run_naive(case: BenchCase, layer: torch.nn.Module, row: dict[str, Any], **measure: Any):
    """Time ``layer`` on its per-timestep reference scan at ``naive_seqlen`` steps and
    extrapolate time and memory linearly to ``case.seqlen``, into ``row``."""
    run_len = min(case.seqlen, measure.pop("naive_seqlen"))
    with reference_scan(layer, case.impl) as calls:
        ((seconds, peak, _),) = _measure(
            {case.impl: layer}, run_len, case.d_model, case.backward, **measure
        ).values()
    if calls[0] == 0:
        row["note"] = "skipped: the layer does not call its scan through mambakit.ssm.ops"
        return
    scale = case.seqlen / run_len
    row["time_s"] = seconds * scale
    row["peak_mem_mb"] = peak * scale / 2**20 if peak is not None else None
    if scale != 1:
        row["note"] = f"extrapolated x{scale:.1f} from L={run_len}"


def run_cases(
    cases: Sequence[BenchCase],
    *,
    warmup: int = 1,
    repeats: int = 3,
    naive_seqlen: int = 2048,
    device: str | torch.device | None = None,
    skip_reason: str | None = None,
) -> list[dict[str, Any]]:
    """Measure ``cases`` of one ``(d_model, seqlen, pass)``; returns their result rows in
    order (see :func:`run_ssm_bench` for the keys).

    The full-length implementations take turns call by call (:func:`_measure`); the naive
    loops run alone on a prefix (:func:`_run_naive`). With ``skip_reason`` nothing is run:
    the rows keep ``None`` values and say why.
    """
    dev = resolve_device(device)
    if len({(c.d_model, c.seqlen, c.backward) for c in cases}) > 1:
        raise ValueError("run_cases measures cases of one (d_model, seqlen, pass) together")
    rows = {case.impl: _empty_row(case) for case in cases}
    measure = dict(warmup=warmup, repeats=repeats, device=dev)
    layers = {}
    for case in cases:
        row = rows[case.impl]
        if skip_reason is not None:
            row["note"] = f"skipped: {skip_reason}"
            continue
        try:
            layer = build_layer(case.impl, case.d_model).to(dev)
        except SkipImplementation as e:
            row["note"] = f"skipped: {e}"
            continue
        row["params"] = sum(p.numel() for p in layer.parameters())
        layer.train(case.backward)
        if case.impl in _REFERENCE_SCANS:
            _run_naive(case, layer, row, naive_seqlen=naive_seqlen, **measure)
        else:
            layers[case.impl] = layer
    if layers:
        case = cases[0]
        compiled = [impl for impl in layers if impl in COMPILED]
        measured = _measure(
            layers, case.seqlen, case.d_model, case.backward, compiled=compiled, **measure
        )
        for impl, (seconds, peak, first) in measured.items():
            row = rows[impl]
            row["time_s"] = seconds
            row["peak_mem_mb"] = peak / 2**20 if peak is not None else None
            if first is not None:  # the first call compiled the graph, then ran it once
                row["compile_s"] = max(0.0, first - seconds)
            if _runs_cpu_kernel(BenchCase(impl, case.d_model, case.seqlen, case.backward)):
                row["note"] = "fused C scan" + (" + C backward" if case.backward else "")
                row["note"] += " (per-step recurrence FLOPs)"
    return list(rows.values())


def run_case(case: BenchCase, **kwargs: Any) -> dict[str, Any]:
    """One case alone: :func:`run_cases` of ``[case]``."""
    return run_cases([case], **kwargs)[0]


def _add_derived_columns(rows: list[dict[str, Any]], roofline_gflops: float) -> None:
    """Achieved GFLOP/s, fraction of the matmul roofline, speed-ups vs the two transformers
    baselines (same config; its default chunk size), compile time amortised."""
    baselines = {
        name: {
            (r["d_model"], r["seqlen"], r["mode"]): r["time_s"]
            for r in rows
            if r["impl"] == name and r["time_s"]
        }
        for name in (BASELINE, HF_DEFAULT_BASELINE)
    }
    for r in rows:
        t = r["time_s"]
        key = (r["d_model"], r["seqlen"], r["mode"])
        r["gflops"] = r["gflop"] / t if t else None
        r["roofline_frac"] = r["gflops"] / roofline_gflops if r["gflops"] else None
        base = baselines[BASELINE].get(key)
        r["vs_hf"] = base / t if base and t else None
        base = baselines[HF_DEFAULT_BASELINE].get(key)
        r["vs_hf_default"] = base / t if base and t else None
        compile_s = r.get("compile_s")
        # the one-off compile as a share of a 10-minute run, and per call over 1,000 calls
        r["compile_share_10min"] = compile_s / TRAINING_RUN_S if compile_s is not None else None
        r["compile_overhead_1000_calls"] = compile_s / (1000 * t) if compile_s and t else None


def measure_step(
    n_layers: int = STEP_LAYERS,
    d_model: int = STEP_D_MODEL,
    *,
    kind: str = STEP_KIND,
    mlp_ratio: float = 4.0,
    steps: int = 50,
    warmup: int = 5,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Time one ``Backbone.step`` (batch 1, no grad) of a ``kind`` backbone, in ms.

    Copies of the same backbone take turns, step by step, each with its own cache fed the
    same inputs: fp32 weights on the PyTorch path (``step_ms``); int8 decode weights on
    the PyTorch path (``step_int8_ms``, ``decode_weights_(..., "int8", backend="torch")``,
    where the CPU has torch's kernel); and, where the fused C step builds
    (:mod:`mambakit.ssm.cpu_decode`, CPU, Mamba-2 backbones), that step with fp32, bf16 and
    int8 packed weights (``step_c_<fmt>_ms``; ``c_unavailable`` says why it is absent).
    ``int8_rel_err`` and ``c_<fmt>_rel_err`` are the largest output difference to the fp32
    PyTorch step over the run relative to its largest output (the state carried along).
    Also times the fp32 backbone's ``nn.Linear`` layers alone as matrix-vector products
    (``linear_ms``): at batch 1 a step streams every weight once, so this is the PyTorch
    fp32 floor; ``step_ms - linear_ms`` is what the recurrences, norms and per-op overhead
    add. Medians of ``steps`` calls.
    """
    from mambakit.ssm import Backbone, cpu_decode

    dev = resolve_device(device)
    model = Backbone(kind, n_layers, d_model, mlp_ratio=mlp_ratio).to(dev).eval()
    fns, c_unavailable = _step_variants(model, dev)
    times: dict[str, list[float]] = {name: [] for name in fns}
    worst = dict.fromkeys(fns, 0.0)
    scale = 0.0
    with torch.no_grad():
        for i in range(warmup + steps):
            x_t = torch.randn(1, d_model, device=dev)
            outputs = {}
            for name, fn in fns.items():
                start = time.perf_counter()
                outputs[name] = fn(x_t)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
            scale = max(scale, float(outputs["fp32"].abs().max()))
            for name, out in outputs.items():
                if out is not None:
                    worst[name] = max(worst[name], float((out - outputs["fp32"]).abs().max()))

    def median_ms(name: str) -> float | None:
        return 1e3 * statistics.median(times[name]) if name in fns else None

    def rel_err(name: str) -> float | None:
        return worst[name] / scale if name in fns and scale else None

    result = {
        "kind": kind,
        "n_layers": n_layers,
        "d_model": d_model,
        "mlp_ratio": mlp_ratio,
        "batch": 1,
        "params": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "step_ms": median_ms("fp32"),
        "step_min_ms": 1e3 * min(times["fp32"]),
        "step_int8_ms": median_ms("int8"),
        "int8_rel_err": rel_err("int8"),
        "linear_ms": median_ms("linear"),
        "c_unavailable": c_unavailable,
    }
    for fmt in cpu_decode.FORMATS:
        result[f"step_c_{fmt}_ms"] = median_ms(f"c_{fmt}")
        result[f"c_{fmt}_rel_err"] = rel_err(f"c_{fmt}")
    return result


def _step_variants(
    model: torch.nn.Module, dev: torch.device
) -> tuple[dict[str, Callable[[torch.Tensor], torch.Tensor | None]], str | None]:
    """The step functions :func:`measure_step` times (each copy of ``model`` with its own
    cache) and why the fused C step is absent (``None`` when it is there)."""
    import copy

    from mambakit.ssm import cpu_decode, decode_weights_
    from mambakit.ssm.layout import _int8_supported

    variants = {"fp32": model}
    if dev.type == "cpu" and _int8_supported():
        variants["int8"] = decode_weights_(copy.deepcopy(model), "int8", backend="torch")
    c_unavailable = "not on CPU" if dev.type != "cpu" else None
    c_unavailable = c_unavailable or cpu_decode.unsupported_reason(model) or cpu_decode.available()
    if c_unavailable is None:
        for fmt in cpu_decode.FORMATS:
            variants[f"c_{fmt}"] = decode_weights_(copy.deepcopy(model), fmt, backend="c")

    def stepper(m: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        cache = m.allocate_cache(1, device=dev)
        return lambda x_t: m.step(x_t, cache)[0]

    fns: dict[str, Callable[[torch.Tensor], torch.Tensor | None]] = {
        name: stepper(m) for name, m in variants.items()
    }
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(1, m.in_features, device=dev) for m in linears]

    def linear_floor(x_t: torch.Tensor) -> None:
        for m, inp in zip(linears, inputs, strict=True):
            m(inp)

    fns["linear"] = linear_floor
    return fns, c_unavailable


TABLE_COLUMNS = (
    ("impl", "impl"),
    ("d_model", "d"),
    ("seqlen", "L"),
    ("mode", "pass"),
    ("time_s", "time (s)"),
    ("peak_mem_mb", "peak mem (MiB)"),
    ("gflop", "GFLOP"),
    ("gflops", "GFLOP/s"),
    ("roofline_frac", "of roofline"),
    ("vs_hf", "speed-up vs HF"),
    ("vs_hf_default", "vs HF chunk 256"),
    ("compile_s", "compile (s)"),
    ("compile_share_10min", "compile / 10 min"),
    ("note", "note"),
)


def format_ssm_table(result: dict[str, Any]) -> str:
    """The Markdown table of a :func:`run_ssm_bench` result, with the roofline above it."""
    head = (
        f"matmul roofline: {result['roofline_gflops']:.1f} GFLOP/s (fp32, measured); "
        "speed-up vs HF = time of transformers' Mamba2Mixer / time of the row"
    )
    if result.get("note"):  # e.g. the machine's load during the run
        head += f"\n\nnote: {result['note']}"
    table = head + "\n\n" + markdown_table(result["rows"], TABLE_COLUMNS)
    inference = result.get("end_to_end", {}).get("inference")
    if inference:
        rt = inference["timbre_x_realtime"]
        table += (
            f"\n\ninference, chunked torch scans vs fused C scans: drums one pad "
            f"{inference['drums_generate_1_pad_s']['torch']:.2f} -> "
            f"{inference['drums_generate_1_pad_s']['auto']:.2f} s "
            f"({inference['drums_speedup']:.2f}x); timbre transfer {rt['torch']:.1f} -> "
            f"{rt['auto']:.1f} x real time ({inference['timbre_speedup']:.2f}x)"
        )
    drums = result.get("end_to_end", {}).get("drums_training")
    if drums:
        table += "\n\n" + _drums_training_line(drums)
    for step in result.get("step", []):
        table += (
            f"\n\nstep(): {step['kind']} Backbone, {step['n_layers']} layers, "
            f"d_model {step['d_model']}, mlp_ratio {step['mlp_ratio']:g}, batch 1: "
            f"{step['step_ms']:.2f} ms median ({step['step_min_ms']:.2f} min); "
            f"its Linear layers alone (weight streaming floor): {step['linear_ms']:.2f} ms"
        )
        if step.get("step_int8_ms") is not None:
            table += (
                f"; int8 decode weights: {step['step_int8_ms']:.2f} ms "
                f"(max output error {step['int8_rel_err']:.1e} of the output scale)"
            )
        fused = [
            f"{fmt} {step[f'step_c_{fmt}_ms']:.2f} ms (error {step[f'c_{fmt}_rel_err']:.1e})"
            for fmt in ("fp32", "bf16", "int8")
            if step.get(f"step_c_{fmt}_ms") is not None
        ]
        if fused:
            table += "; fused C step: " + ", ".join(fused)
        elif step.get("c_unavailable"):
            table += f"; no fused C step ({step['c_unavailable']})"
    return table


def _drums_training_line(drums: dict[str, Any]) -> str:
    """The line of :func:`measure_drums_training`'s result under the table."""
    head = (
        f"drums training (tiny preset, batch {drums['batch']}, {drums['clip_seconds']:g} s clips)"
    )
    rate = drums["steps_per_min"]
    line = (
        f"{head}: {rate['torch']:.1f} steps/min on the chunked torch scans, "
        f"{rate['auto']:.1f} on the C scans with their C backward ({drums['speedup']:.2f}x)"
    )
    if "compiled" in rate:
        line += (
            f", {rate['compiled']:.1f} compiled ({drums['compiled_speedup']:.2f}x; compile "
            f"{drums['compile_s']:.0f} s = {100 * drums['compile_share_10min']:.0f}% of a "
            "10-minute run)"
        )
    return line


# What --quick and the full run measure unless told otherwise.
_QUICK = {"seqlens": QUICK_SEQLENS, "d_models": QUICK_D_MODELS, "repeats": 1,
          "naive_seqlen": 1024, "roofline_size": 1024}  # fmt: skip
_FULL = {"seqlens": FULL_SEQLENS, "d_models": FULL_D_MODELS, "repeats": 3,
         "naive_seqlen": 2048, "roofline_size": 2048}  # fmt: skip


def run_ssm_bench(
    quick: bool = False,
    json_path: str | Path | None = None,
    *,
    seqlens: Sequence[int] | None = None,
    d_models: Sequence[int] | None = None,
    impls: Sequence[str] = IMPLEMENTATIONS,
    backward_modes: Sequence[bool] = (False, True),
    warmup: int | None = None,
    repeats: int | None = None,
    naive_seqlen: int | None = None,
    roofline_size: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    step_layers: int = STEP_LAYERS,
    step_d_model: int = STEP_D_MODEL,
    end_to_end: bool = True,
) -> dict[str, Any]:
    """Run the SSM layer bench and return (and, with ``json_path``, save) its result.

    ``quick`` measures ``L = 44,100`` at ``d_model = 64`` with one timed repeat, naive loops
    timed on a 1,024-step prefix, and attention forward+backward skipped (about two
    minutes on 2 CPU cores); the full run measures ``L`` in {16,000, 44,100},
    ``d_model`` in {64, 128}, three repeats. ``seqlens``, ``d_models``, ``impls``,
    ``repeats`` ... override the preset (the tests use ``L = 256``). Both also time one
    recurrent ``step()`` of a ``step_layers``-layer, ``step_d_model``-wide Mamba-2
    ``Backbone`` (with and, in the full run, without MLPs; :func:`measure_step`).

    Returns ``{"bench": "ssm", "meta": ..., "roofline_gflops": float, "config": ...,
    "complete": bool, "rows": [...], "step": [...]}``; the JSON is rewritten after every case, with
    ``complete = false`` until the last, so an interrupted run keeps what it measured.
    Each row has ``impl, d_model, seqlen, mode, time_s`` (median seconds),
    ``peak_mem_mb`` (MiB above the memory held before the call), ``gflop`` (analytic),
    ``gflops`` (achieved), ``roofline_frac``, ``vs_hf`` (speed-up vs ``Mamba2Mixer``),
    ``params`` and ``note``. Implementations that cannot run (e.g. no ``transformers``)
    stay in the table with ``None`` values and ``note = "skipped: ..."``.
    """
    unknown = set(impls) - set(IMPLEMENTATIONS)
    if unknown:
        raise ValueError(f"unknown implementation(s) {sorted(unknown)}; choose {IMPLEMENTATIONS}")
    dev = resolve_device(device)
    preset = _QUICK if quick else _FULL
    seqlens = tuple(seqlens or preset["seqlens"])
    d_models = tuple(d_models or preset["d_models"])
    warmup = 1 if warmup is None else warmup
    repeats = preset["repeats"] if repeats is None else repeats
    naive_seqlen = naive_seqlen or preset["naive_seqlen"]
    roofline_size = roofline_size or preset["roofline_size"]

    seed_everything(seed)
    roofline = measure_matmul_flops(roofline_size, device=dev)
    cases = [
        BenchCase(impl, d, L, bwd)
        for d in d_models
        for L in seqlens
        for bwd in backward_modes
        for impl in impls
    ]
    result: dict[str, Any] = {
        "bench": "ssm",
        "meta": result_metadata(device=dev),
        "roofline_gflops": roofline,
        "config": {
            "quick": quick,
            "seqlens": list(seqlens),
            "d_models": list(d_models),
            "batch": 1,
            "dtype": "float32",
            "warmup": warmup,
            "repeats": repeats,
            "naive_seqlen": naive_seqlen,
            "step_backbone": {"kind": STEP_KIND, "n_layers": step_layers, "d_model": step_d_model},
            "roofline_matmul_size": roofline_size,
            "mamba2": MAMBA2_KWARGS,
            "mamba": MAMBA_KWARGS,
            "attention_head_dim": ATTENTION_HEAD_DIM,
        },
        "complete": False,
        "rows": [],
        "step": [],
    }

    def save() -> None:
        if json_path is not None:
            write_json(json_path, result)

    groups: dict[tuple[int, int, bool], list[BenchCase]] = {}
    for case in cases:
        groups.setdefault((case.d_model, case.seqlen, case.backward), []).append(case)
    bar = tqdm(groups.values(), desc="bench ssm", unit="group", disable=not progress)
    for group in bar:
        bar.set_postfix_str(f"d={group[0].d_model} L={group[0].seqlen} {group[0].mode}")
        seed_everything(seed)
        skipped = [
            c
            for c in group
            if quick and (c.impl, c.backward) in QUICK_SKIPS and c.seqlen > QUICK_SKIP_ABOVE
        ]
        run = [c for c in group if c not in skipped]
        rows = run_cases(run, warmup=warmup, repeats=repeats, naive_seqlen=naive_seqlen, device=dev)
        rows += run_cases(skipped, device=dev, skip_reason="--quick (too slow here; full run)")
        order = [c.impl for c in group]
        result["rows"] += sorted(rows, key=lambda r: order.index(r["impl"]))
        _add_derived_columns(result["rows"], roofline)
        save()  # save as we go: an interrupted run keeps its rows
    for mlp_ratio in (0.0,) if quick else (0.0, 4.0):
        seed_everything(seed)
        result["step"].append(
            measure_step(step_layers, step_d_model, mlp_ratio=mlp_ratio, device=dev)
        )
        save()
    if end_to_end:
        seed_everything(seed)
        result["end_to_end"] = {"inference": measure_inference()}
        save()
        seed_everything(seed)
        # compiling every band path's graph cold took over 30 min here: full run only
        result["end_to_end"]["drums_training"] = measure_drums_training(batch=8, compiled=not quick)
    result["complete"] = True
    if json_path is not None:
        result["json_path"] = str(write_json(json_path, result))
    return result


# ------------------------------------------------------------------ end to end


@contextlib.contextmanager
def compile_mode(mode: bool | str) -> Iterator[None]:
    """Run the block with :func:`mambakit.ssm.ops.set_compile` at ``mode``, then restore."""
    from mambakit.ssm import ops

    previous = ops.set_compile(mode)
    try:
        yield
    finally:
        ops.set_compile(previous)


def measure_drums_training(
    batch: int = 8, repeats: int = 3, seconds: float | None = None, compiled: bool = False
) -> dict[str, Any]:
    """Training steps per minute of the drums denoiser (tiny preset), old path vs new.

    One step is forward + the x0/eps losses + backward + an AdamW update, on random
    inputs of ``batch`` clips (the model's own clip length unless ``seconds`` is given).
    Copies of the same model (same seed) run alternately: ``torch``, every SSM layer on
    the chunked torch scans (the training path before the C backward), ``auto``, the
    layers as shipped (the fused C scans and their C backward), and with ``compiled``
    ``compiled``, the torch scans with the compile switch on; ``compile_s`` is that copy's
    first step minus its median step (the one-off cost), ``compile_share_10min`` that
    cost as a fraction of a 10-minute training run.
    """
    from mambakit.bench.drums import _inputs
    from mambakit.drums.config import DrumConfig
    from mambakit.drums.model import DrumDiffusionModel

    config = DrumConfig.tiny()
    if seconds is not None:
        config = config.with_(seconds=seconds)
    args = _inputs(config, batch)
    paths = {"torch": ("torch", False), "auto": ("auto", False)}
    if compiled:
        paths["compiled"] = ("torch", True)
    fns = {}
    for name, (backend, mode) in paths.items():
        torch.manual_seed(0)
        model = DrumDiffusionModel(config).train()
        _set_scan_backend(model, backend)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer, mode=mode) -> None:
            with compile_mode(mode):
                x0, eps = model(*args)
                (x0.square().mean() + eps.square().mean()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        fns[name] = step
    first, median = time_interleaved(fns, repeats)
    result: dict[str, Any] = {
        "preset": "tiny",
        "batch": batch,
        "clip_seconds": config.seconds,
        "step_s": median,
        "steps_per_min": {name: 60.0 / t for name, t in median.items()},
        "speedup": median["torch"] / median["auto"],
    }
    if compiled:
        compile_s = max(0.0, first["compiled"] - median["compiled"])
        result["compiled_speedup"] = median["torch"] / median["compiled"]
        result["compile_s"] = compile_s
        result["compile_share_10min"] = compile_s / TRAINING_RUN_S
    return result


def _set_scan_backend(model: torch.nn.Module, backend: str) -> None:
    """Point every Mamba / Mamba2 layer of ``model`` at scan ``backend``."""
    from mambakit.ssm import Mamba, Mamba2

    for layer in model.modules():
        if isinstance(layer, (Mamba, Mamba2)):
            layer.backend = backend


def measure_inference(repeats: int = 3, transfer_seconds: float = 4.0) -> dict[str, Any]:
    """What the fused CPU scans buy the shipped pipelines at inference, side by side.

    The same model runs with its SSM layers on ``backend="torch"`` (the chunked PyTorch
    scans, the inference path before the C kernels) and on ``"auto"`` (the C kernels),
    in turns: drums generation (one pad, tiny preset, untrained weights, default steps)
    and timbre transfer (the CLI's default "small" preset, ``transfer_seconds`` of audio;
    times real time).
    """
    from mambakit.drums.config import DrumConfig
    from mambakit.drums.model import DrumDiffusionModel
    from mambakit.drums.pipeline import DrumSynth
    from mambakit.timbre.model import TimbreConfig, TimbreUNet
    from mambakit.timbre.pipeline import TimbreTransfer

    torch.manual_seed(0)
    synth = DrumSynth(DrumDiffusionModel(DrumConfig.tiny()))
    timbre = TimbreTransfer(TimbreUNet(TimbreConfig.preset("small")), device="cpu", progress=False)
    sr = timbre.sample_rate
    g = torch.Generator().manual_seed(0)
    content = (0.1 * torch.randn(1, int(transfer_seconds * sr), generator=g)).clamp(-0.3, 0.3)
    style = (0.1 * torch.randn(1, int(2.0 * sr), generator=g)).clamp(-0.3, 0.3)

    def with_backend(model: torch.nn.Module, backend: str, fn: Callable[[], Any]) -> Callable:
        def run() -> None:
            _set_scan_backend(model, backend)
            fn()

        return run

    fns = {}
    for backend in ("torch", "auto"):
        fns[f"drums_{backend}"] = with_backend(
            synth.model, backend, lambda: synth.generate(tag="snare", seed=0, n=1)
        )
        fns[f"timbre_{backend}"] = with_backend(
            timbre.model, backend, lambda: timbre.transfer(content, style, sr=sr)
        )
    _, median = time_interleaved(fns, repeats)
    _set_scan_backend(synth.model, "auto")
    _set_scan_backend(timbre.model, "auto")
    return {
        "drums_generate_1_pad_s": {"torch": median["drums_torch"], "auto": median["drums_auto"]},
        "drums_speedup": median["drums_torch"] / median["drums_auto"],
        "timbre_preset": "small",
        "timbre_transfer_seconds": transfer_seconds,
        "timbre_x_realtime": {
            "torch": transfer_seconds / median["timbre_torch"],
            "auto": transfer_seconds / median["timbre_auto"],
        },
        "timbre_speedup": median["timbre_torch"] / median["timbre_auto"],
    }
