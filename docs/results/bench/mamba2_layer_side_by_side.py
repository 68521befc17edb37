"""The bench's Mamba-2 layer (d_model 64, d_state 64, headdim 64, L = 44,100, batch 1, fp32)
from another source tree vs this checkout, interleaved call by call in one process, with
the same weights and input.

Both trees' ``mambakit`` packages are copied to temporary folders under other names
(``mk_old``, ``mk_new``), so that one process imports both. Before timing, the two outputs
(forward) and input gradients (forward+backward) are compared. Wall time is the measure;
CPU time (``process_time``, all threads) is printed beside it, since on a shared machine
it is less disturbed by other jobs.

Usage: ``OMP_NUM_THREADS=T python mamba2_layer_side_by_side.py OLD_SRC NEW_SRC T REPEATS``
(``*_SRC``: a folder holding ``mambakit/``, e.g. ``/path/to/main/src`` and ``src``).
"""

import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch


def load(src_root: str, alias: str):
    """``src_root/mambakit`` imported as the package ``alias`` (a renamed copy)."""
    folder = tempfile.mkdtemp(prefix=f"{alias}_")
    shutil.copytree(os.path.join(src_root, "mambakit"), os.path.join(folder, alias))
    for root, _, files in os.walk(os.path.join(folder, alias)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path) as f:
                    text = f.read()
                text = text.replace("from mambakit", f"from {alias}")
                text = text.replace("import mambakit", f"import {alias}")
                with open(path, "w") as f:
                    f.write(text)
    sys.path.insert(0, folder)
    return importlib.import_module(f"{alias}.ssm")


def main() -> None:
    old_src, new_src = sys.argv[1], sys.argv[2]
    threads, repeats = int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    old, new = load(old_src, "mk_old"), load(new_src, "mk_new")
    config = dict(d_state=64, headdim=64, ngroups=1, expand=2, d_conv=4, chunk_size=64)
    torch.manual_seed(0)
    layers = {"old": old.Mamba2(64, **config), "new": new.Mamba2(64, **config)}
    layers["new"].load_state_dict(layers["old"].state_dict())
    x = torch.randn(1, 44_100, 64)

    def forward(layer):
        with torch.no_grad():
            return layer(x)

    def forward_backward(layer):
        x_grad = x.detach().requires_grad_(True)
        layer(x_grad).sum().backward()
        layer.zero_grad(set_to_none=True)
        return x_grad.grad

    for mode, run in (("fwd", forward), ("fwd+bwd", forward_backward)):
        a, b = run(layers["old"]), run(layers["new"])
        diff = ((a - b).abs().max() / a.abs().max()).item()
        wall = {k: [] for k in layers}
        cpu = {k: [] for k in layers}
        for _ in range(repeats):
            for name, layer in layers.items():
                c, t = time.process_time(), time.perf_counter()
                run(layer)
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        w = {k: statistics.median(v) for k, v in wall.items()}
        c = {k: statistics.median(v) for k, v in cpu.items()}
        print(
            f"{mode:8s} threads={threads} wall median: old {w['old'] * 1e3:.1f} ms, new "
            f"{w['new'] * 1e3:.1f} ms, {w['old'] / w['new']:.2f}x | CPU: old "
            f"{c['old'] * 1e3:.1f} ms, new {c['new'] * 1e3:.1f} ms, {c['old'] / c['new']:.2f}x"
            f" | max relative difference {diff:.1e}"
        )


if __name__ == "__main__":
    main()
