"""Drums training steps per minute (tiny preset, batch 8), the model code at 1bf4c2d (issue
16's baseline: before the C scan backward and the matmul Gaussian resampling) vs this
checkout, interleaved step by step in one process with the same weights and inputs.

Wall time is the measure; CPU time (``process_time``, all threads) is reported beside it,
since on a shared machine it is less disturbed by other jobs.

One step is what the trainer runs per batch minus the data and the STFT loss: the
denoiser's forward with the envelope gate and the filtered-noise excitation, the x0 / eps
losses, backward and an AdamW update. Before timing, both copies' outputs on the same
inputs are compared (the speed-up must not change what the model computes).

The old code is imported as ``mambakit_old`` from a copy made with::

    mkdir -p OLD && git archive 1bf4c2d src/mambakit | tar -x -C OLD
    mv OLD/src/mambakit OLD/mambakit_old
    grep -rl mambakit OLD/mambakit_old --include=*.py | xargs sed -i -E \\
        's/\\bmambakit\\./mambakit_old./g; s/from mambakit import/from mambakit_old import/g'

Usage: ``OMP_NUM_THREADS=T python drums_training_side_by_side.py OLD T OUT.json [ROUNDS]``
"""

import os
import statistics
import sys
import time
import warnings

import torch

warnings.simplefilter("ignore")


def inputs(config, batch: int) -> tuple[tuple, dict]:
    n = config.n_samples
    g = torch.Generator().manual_seed(0)
    args = (
        torch.randn(batch, 1, n, generator=g),  # x_noisy
        torch.randn(batch, 1, n, generator=g),  # sine
        torch.rand(batch, 1, n, generator=g),  # envelope
        torch.randint(1, config.train_timesteps + 1, (batch,), generator=g).float(),
        torch.rand(batch, 5, generator=g),  # adsr
        torch.randint(0, 12, (batch,), generator=g),
        torch.randint(0, 11, (batch,), generator=g),
        torch.randint(0, len(config.tags) + 1, (batch,), generator=g),
    )
    extra = {
        "gate": torch.rand(batch, 1, n, generator=g),
        "excitation": torch.randn(batch, 1, n, generator=g),
    }
    return args, extra


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    from mambakit_old.drums.model import DrumDiffusionModel as Old

    from mambakit.bench.common import result_metadata, write_json
    from mambakit.drums.config import DrumConfig
    from mambakit.drums.model import DrumDiffusionModel as New

    threads, out = int(sys.argv[2]), sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 15
    torch.set_num_threads(threads)
    config = DrumConfig.tiny()
    torch.manual_seed(0)
    new = New(config).train()
    old = Old(Old.config_class(**config.__dict__)).train()
    old.load_state_dict(new.state_dict())  # same keys, same weights
    # Trained-looking weights: the zero-initialised FiLM / noise / anchor heads would hide
    # differences in their paths.
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in new.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    old.load_state_dict(new.state_dict())
    args, extra = inputs(config, 8)
    with torch.no_grad():
        a, b = old(*args, **extra), new(*args, **extra)
    max_diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
    scale = max(float(x.abs().max()) for x in a)
    print(f"max |old - new| = {max_diff:.3g} (output scale {scale:.3g})")

    models = {"old code (1bf4c2d)": old, "this checkout": new}
    steps = {}
    for name, model in models.items():
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer) -> None:
            x0, eps = model(*args, **extra)
            (x0.square().mean() + eps.square().mean()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        steps[name] = step
    walls: dict[str, list[float]] = {name: [] for name in steps}
    cpus: dict[str, list[float]] = {name: [] for name in steps}
    first = {}
    for name, step in steps.items():  # warm-up (kernel builds, allocator)
        started = time.perf_counter()
        step()
        step()
        first[name] = time.perf_counter() - started
    for _ in range(rounds):
        for name, step in steps.items():
            started, cpu = time.perf_counter(), time.process_time()
            step()
            walls[name].append(time.perf_counter() - started)
            cpus[name].append(time.process_time() - cpu)
    rows = [
        {
            "code": name,
            "threads": threads,
            "steps_per_min_median": 60.0 / statistics.median(w),
            "steps_per_min_best": 60.0 / min(w),
            "step_s_median": statistics.median(w),
            "step_cpu_s_median": statistics.median(cpus[name]),
            "first_two_steps_s": first[name],
            "steps": len(w),
        }
        for name, w in walls.items()
    ]
    t_old, t_new = (statistics.median(w) for w in walls.values())
    c_old, c_new = (statistics.median(c) for c in cpus.values())
    for row in rows:
        print(row)
    print(f"speed-up (median wall) {t_old / t_new:.3f}, (median CPU time) {c_old / c_new:.3f}")
    write_json(
        out,
        {
            "kind": "drums-training-speed",
            "preset": "tiny",
            "batch": 8,
            "threads": threads,
            "load_average_1min": os.getloadavg()[0],
            "max_abs_output_diff": max_diff,
            "output_scale": scale,
            "rows": rows,
            "speedup_median": t_old / t_new,
            "speedup_cpu_time_median": c_old / c_new,
            "meta": result_metadata(),
        },
    )


if __name__ == "__main__":
    main()
