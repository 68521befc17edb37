"""Small helpers shared by every subpackage: devices, seeding, parsing of musical units."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"cpu"`` means CPU; ``"auto"`` picks CUDA when present; else as given."""
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


_NOTE_OFFSETS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def parse_note(text: str | int | float) -> int:
    """A MIDI note from a number (``36``) or a name with octave (``C1``, ``F#2``, ``Bb-1``).

    Names use scientific pitch notation with C4 = MIDI 60, so C1 = 24 and C-1 = 0.
    """
    if isinstance(text, (int, float)):
        note = int(round(text))
    else:
        s = str(text).strip()
        if re.fullmatch(r"-?\d+", s):
            note = int(s)
        else:
            m = _NOTE_RE.match(s)
            if not m:
                raise ValueError(f"not a MIDI note number or note name: {text!r} (e.g. 36 or C1)")
            letter, accidental, octave = m.groups()
            note = _NOTE_OFFSETS[letter.upper()] + 12 * (int(octave) + 1)
            note += {"#": 1, "b": -1, "": 0}[accidental]
    if not 0 <= note <= 127:
        raise ValueError(f"MIDI note {note} out of range 0..127 (from {text!r})")
    return note


def note_name(midi: int) -> str:
    """``36 -> 'C2'``; the inverse of :func:`parse_note` for sharps."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


_TIME_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(ms|s|sec|samples?)?\s*$")


def parse_seconds(text: str | float, sample_rate: int | None = None) -> float:
    """Seconds from ``"2ms"``, ``"0.3s"``, ``"0.3"`` (seconds) or ``"441 samples"``."""
    if isinstance(text, (int, float)):
        return float(text)
    m = _TIME_RE.match(str(text))
    if not m and _TIME_RE.match(str(text).strip().removeprefix("-")):
        raise ValueError(f"a duration cannot be negative: {text!r}")
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 2ms, 0.3s)")
    value, unit = float(m.group(1)), (m.group(2) or "s")
    if unit == "ms":
        return value / 1000.0
    if unit.startswith("sample"):
        if not sample_rate:
            raise ValueError(f"{text!r} is in samples but no sample rate is known")
        return value / sample_rate
    return value


def parse_int_list(text: str) -> tuple[int, ...]:
    """``"0,24,40"``, ``"48-72"`` (an inclusive range) or ``"48-72:2"`` (with a step), or a
    mix (``"35-38,42"``) -> a tuple of ints, in the order written.

    >>> parse_int_list("48-54:3,60")
    (48, 51, 54, 60)
    """
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part.strip("-"):
                span, _, step = part.partition(":")
                lo, hi = span.split("-")
                values.extend(range(int(lo), int(hi) + 1, int(step or 1)))
            else:
                values.append(int(part))
        except ValueError as e:
            raise ValueError(
                f"expected integers like 0,24,40 or a range like 48-72:2, got {text!r}"
            ) from e
    return tuple(values)


def read_document(
    path: Path,
    missing: str,
    parse: Callable[[str], Any] = json.loads,
    language: str = "JSON",
    error_types: tuple[type[Exception], type[Exception]] = (FileNotFoundError, ValueError),
) -> Any:
    """The parsed text of ``path`` (JSON by default; ``parse=yaml.safe_load`` for YAML), every
    failure naming the file: no file raises ``error_types[0](missing)``, text ``parse``
    rejects raises ``error_types[1]("PATH: not valid LANGUAGE (why)")``."""
    if not path.is_file():
        raise error_types[0](missing)
    text = path.read_text()
    try:
        return parse(text)
    except Exception as e:  # each parser has its own error types (json's, yaml's)
        raise error_types[1](f"{path}: not valid {language} ({e})") from e
