"""Regenerate ``pattern.mid``: a 2-bar GM drum groove at 110 bpm.

Run ``python make_pattern_mid.py``; the output is deterministic.
"""

from pathlib import Path

from mambakit.drums.arrange import make_pattern

GRID = {
    "kick": [110, 0, 0, 0, 0, 0, 0, 0, 110, 0, 90, 0, 0, 0, 0, 0] * 2,
    "snare": [0, 0, 0, 0, 110, 0, 0, 0, 0, 0, 0, 0, 110, 0, 0, 0] * 2,
    "closed_hat": [80, 0, 60, 0] * 7 + [80, 0, 0, 0],
    "open_hat": [0] * 30 + [90, 0],
}

if __name__ == "__main__":
    make_pattern(GRID, bpm=110).save(Path(__file__).with_name("pattern.mid"))
