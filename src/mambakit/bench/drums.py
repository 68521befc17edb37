"""``mambakit bench drums``: the cost of the LogCascade, measured, next to its alternatives.

The seed claims "up to 256x memory efficiency" for capturing a 20 Hz oscillation by
matching each band's rate and state size to its frequency instead of running one large
state at the full rate. Three denoisers are run side by side on the same clip length:

- ``logcascade``: the MambaKit model as shipped (tiny preset);
- ``full_res``: the same model with every band at the full rate (the seed's ablation);
- ``mamba2_20hz``: one Mamba2 at the full sample rate whose state is sized by the seed's
  own rule for 20 Hz, ``s = 4 * fs / 20`` (8820 at 44.1 kHz), over the full-rate channels.

For each: forward and forward+backward time and peak memory growth, and ratios to the
LogCascade. Generation speed (one pad, 16 pads, default steps) is reported too.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from mambakit.bench.common import (
    measure_peak_memory,
    result_metadata,
    time_callable,
)
from mambakit.results import markdown_table

COLUMNS = [
    ("model", "model"),
    ("pass", "pass"),
    ("seconds", "clip s"),
    ("time_s", "time s"),
    ("peak_mb", "peak MB"),
    ("time_ratio", "time / logcascade"),
    ("mem_ratio", "memory / logcascade"),
]


def _inputs(config, batch: int) -> tuple:
    n = config.n_samples
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(batch, 1, n, generator=g),
        torch.randn(batch, 1, n, generator=g),
        torch.rand(batch, 1, n, generator=g),
        torch.full((batch,), 500.0),
        torch.rand(batch, 5, generator=g),
        torch.zeros(batch, dtype=torch.long),
        torch.full((batch,), 3),
        torch.zeros(batch, dtype=torch.long),
    )


class _SingleStateMamba2(torch.nn.Module):
    """One Mamba2 over every sample, state sized to hold 4 periods of 20 Hz."""

    def __init__(self, channels: int, d_state: int) -> None:
        super().__init__()
        from mambakit.ssm import Mamba2

        self.inp = torch.nn.Conv1d(3, channels, 1)
        self.mixer = Mamba2(channels, d_state=d_state, headdim=channels * 2, chunk_size=64)
        self.out = torch.nn.Conv1d(channels, 2, 1)

    def forward(self, x_noisy, sine, envelope, *_):
        h = self.inp(torch.cat([x_noisy, sine, envelope], dim=1))
        h = self.mixer(h.transpose(1, 2)).transpose(1, 2)
        return self.out(h).chunk(2, dim=1)


def _case(name: str, model: torch.nn.Module, args: tuple, backward: bool, repeats: int) -> dict:
    def run() -> None:
        if backward:
            x0, eps = model(*args)
            (x0.square().mean() + eps.square().mean()).backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(*args)

    model.train(backward)
    timing = time_callable(run, warmup=1, repeats=repeats)
    peak = measure_peak_memory(run)
    return {
        "model": name,
        "pass": "fwd+bwd" if backward else "fwd",
        "time_s": timing.median_s,
        "peak_mb": None if peak is None else peak / 2**20,
    }


def run_drums_bench(
    seconds: float = 1.0,
    repeats: int = 2,
    progress: bool = True,
    generation: bool = True,
    large_state_backward: bool = False,
) -> dict:
    """Measure the three denoisers at ``seconds`` of audio; returns rows + generation speed.

    The forward+backward pass of ``mamba2_20hz`` (state 8820 at the full rate) takes many
    minutes on a 2-core CPU; it runs only with ``large_state_backward`` (its forward
    already shows the memory the claim is about)."""
    from mambakit.drums.config import DrumConfig, band_state_size
    from mambakit.drums.model import DrumDiffusionModel
    from mambakit.drums.pipeline import DrumSynth

    torch.manual_seed(0)
    config = DrumConfig.tiny().with_(seconds=seconds)
    models = {
        "logcascade": DrumDiffusionModel(config),
        "full_res": DrumDiffusionModel(config.with_(full_res=True)),
        "mamba2_20hz": _SingleStateMamba2(
            config.full_rate_channels, band_state_size(20.0, config.sample_rate, s_max=10**6)
        ),
    }
    args = _inputs(config, 1)
    rows: list[dict[str, Any]] = []
    for backward in (False, True):
        for name, model in models.items():
            if backward and name == "mamba2_20hz" and not large_state_backward:
                continue
            if progress:
                print(f"bench drums: {name} {'fwd+bwd' if backward else 'fwd'} ...", flush=True)
            rows.append({**_case(name, model, args, backward, repeats), "seconds": seconds})
    for row in rows:
        ref = next(r for r in rows if r["model"] == "logcascade" and r["pass"] == row["pass"])
        row["time_ratio"] = row["time_s"] / ref["time_s"]
        if row["peak_mb"] and ref["peak_mb"]:
            row["mem_ratio"] = row["peak_mb"] / ref["peak_mb"]

    speed: dict[str, float] = {}
    if generation:  # untrained weights: every SkipGate is open, the slowest case
        synth = DrumSynth(DrumDiffusionModel(DrumConfig.tiny()))
        synth.generate(tag="kick", seed=0)  # warm-up
        for n in (1, 16):  # median of a few: one-off stalls are common here
            timing = time_callable(
                functools.partial(synth.generate, tag="snare", seed=0, n=n),
                warmup=0, repeats=repeats + 1,
            )  # fmt: skip
            speed[f"pads_{n}_s"] = timing.median_s
        speed["steps"] = DrumConfig.tiny().diffusion_steps
    return {"rows": rows, "generation": speed, "meta": result_metadata()}


def drums_bench_markdown(result: dict) -> str:
    g = result["generation"]
    table = markdown_table(result["rows"], COLUMNS)
    if not g:
        return table
    return (
        table + f"\n\ngeneration (tiny preset, {g['steps']:.0f} steps, 1 s at 44.1 kHz): "
        f"1 pad {g['pads_1_s']:.2f} s, 16 pads {g['pads_16_s']:.2f} s"
    )
