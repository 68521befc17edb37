"""x real time of 10 s of content (held-out notes end to end), the code at 1bf4c2d vs this
checkout, interleaved call by call in one process (issue 15's speed row, side by side).

The old code is imported as ``mambakit_old`` from a copy made with::

    mkdir -p /tmp/h15_old && git archive 1bf4c2d src/mambakit | tar -x -C /tmp/h15_old
    mv /tmp/h15_old/src/mambakit /tmp/h15_old/mambakit_old
    grep -rl mambakit /tmp/h15_old/mambakit_old --include=*.py | xargs sed -i -E \\
        's/\\bmambakit\\./mambakit_old./g; s/from mambakit import/from mambakit_old import/g'

Usage: ``OMP_NUM_THREADS=T python speed_side_by_side.py T RUN OUT.json [ROUNDS]``
(``RUN``: the new code's model, e.g. ``gm-timbre``; the old code runs its own shipped one).
"""

import os
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, "/tmp/h15_old")
warnings.simplefilter("ignore")


def main() -> None:
    from mambakit_old.timbre.pipeline import TimbreTransfer as Old

    from mambakit.bench.common import result_metadata, write_json
    from mambakit.timbre.data import PairedNotes
    from mambakit.timbre.pipeline import TimbreTransfer as New

    threads, new_run, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 7
    torch.set_num_threads(threads)
    data = PairedNotes("/work/data/gm-heldout", segment_seconds=2.1, reconstruction_ratio=0)
    parts, total, index = [], 0, 0
    while total < 160000:  # 10 s at 16 kHz
        parts.append(data.audio(index))
        total += parts[-1].shape[-1]
        index += 1
    content = torch.cat(parts, -1)[:, :160000]
    style = data.audio(len(data) - 1)
    models = {
        "old code, shipped gm-timbre": Old.from_pretrained("gm-timbre"),
        f"new code, {new_run}": New.from_pretrained(new_run),
    }
    walls: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.transfer(content, style, sr=16000)  # warm-up
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.transfer(content, style, sr=16000)
            walls[name].append(time.perf_counter() - started)
    rows = [
        {
            "model": name,
            "threads": threads,
            "x_realtime_median": 10.0 / statistics.median(w),
            "x_realtime_best": 10.0 / min(w),
            "calls": len(w),
        }
        for name, w in walls.items()
    ]
    old, new = (statistics.median(w) for w in walls.values())
    for row in rows:
        print(row)
    print("speed-up (median)", old / new)
    write_json(
        out,
        {
            "kind": "timbre-speed",
            "load_average_1min": os.getloadavg()[0],
            "content_seconds": 10.0,
            "threads": threads,
            "rows": rows,
            "speedup_median": old / new,
            "meta": result_metadata(),
        },
    )


if __name__ == "__main__":
    main()
