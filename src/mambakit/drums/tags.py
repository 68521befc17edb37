"""Drum-class tags inferred from folder and file names.

Users keep one-shots in trees such as ``Kicks/BD_808_long.wav`` or
``hats/closedHat03.flac``. :func:`tag_from_path` splits every path component into
word-ish tokens (on non-letters and camelCase boundaries, lower-cased) and looks the
tokens up in :data:`KEYWORDS`. Short, ambiguous keywords (``ch``, ``oh``, ``sd``,
``bd``, ``rs``, ``tm``) therefore only match as whole tokens: ``"chair.wav"`` is not a
closed hat. Two-word keywords (``"closed hat"``) match consecutive tokens.

The *file name* is consulted before the folders (the innermost folder first), so
``kicks/snare_layer.wav`` is a snare. Files that match nothing return ``None``; the
corpus reader skips them and reports ``"no tag"`` unless a CSV override or an explicit
``default_tag`` says otherwise (we never silently guess a class).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

#: Drum classes; the order is fixed and defines the class index used by the model.
TAGS: tuple[str, ...] = (
    "kick",
    "snare",
    "clap",
    "closed_hat",
    "open_hat",
    "tom",
    "cymbal",
    "rim",
    "perc",
    "fx",
)

#: Keyword -> tag. Multi-word keywords are matched on consecutive tokens.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "kick": ("kick", "kicks", "bd", "bassdrum", "bass drum", "kck", "kik"),
    "snare": ("snare", "snares", "sd", "snr"),
    "clap": ("clap", "claps", "clp", "handclap", "hand clap"),
    "closed_hat": (
        "closed hat",
        "closed hihat",
        "closedhat",
        "chh",
        "hh closed",
        "hihat closed",
        "ch",
        "closed",
    ),
    "open_hat": ("open hat", "open hihat", "openhat", "ohh", "oh", "hh open", "hihat open", "open"),
    "tom": ("tom", "toms", "tm", "floor tom", "floortom"),
    "cymbal": ("crash", "ride", "cymbal", "cymbals", "cym", "splash", "china"),
    "rim": ("rim", "rimshot", "rs", "sidestick", "side stick"),
    "perc": (
        "perc",
        "percussion",
        "shaker",
        "conga",
        "bongo",
        "cowbell",
        "clave",
        "claves",
        "tamb",
        "tambourine",
        "block",
        "triangle",
        "guiro",
    ),
    "fx": ("fx", "sfx", "noise", "riser", "sweep", "impact", "glitch"),
}

# Generic hat words: a bare "hat"/"hh"/"hihat" without open/closed is a closed hat,
# the most common meaning in sample packs.
_HAT_WORDS = ("hat", "hats", "hh", "hihat", "hihats")

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NON_LETTER = re.compile(r"[^A-Za-z]+")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lower-case letter tokens (non-letters and camelCase split)."""
    return [t.lower() for t in _NON_LETTER.split(_CAMEL.sub(" ", text)) if t]


def _match(tokens: list[str]) -> str | None:
    """Return the tag of the longest keyword found in ``tokens`` (earliest tag on ties)."""
    best: tuple[int, int, str] | None = None  # (-length, tag order, tag)
    joined = " " + " ".join(tokens) + " "
    for order, (tag, words) in enumerate(KEYWORDS.items()):
        for word in words:
            if f" {word} " in joined:
                key = (-len(word.split()), order, tag)
                best = key if best is None or key < best else best
    if best is not None:
        return best[2]
    if any(t in _HAT_WORDS for t in tokens):
        return "closed_hat"
    return None


def tag_from_name(text: str) -> str | None:
    """The tag a word or name stands for through :data:`KEYWORDS`, the same table that
    files a sample folder (``"hihat"`` and ``"hh"`` -> closed_hat, ``"bd"`` -> kick,
    ``"crash"`` -> cymbal, ``"open hat"`` -> open_hat); ``None`` when nothing matches."""
    return _match(tokenize(text))


def tag_from_path(path: str | Path) -> str | None:
    """Infer the drum tag of ``path`` from its file name, then its folders (innermost first).

    Returns one of :data:`TAGS` or ``None`` when no keyword matches.
    """
    p = Path(path)
    for part in [p.stem, *reversed(p.parent.parts)]:
        tag = _match(tokenize(part))
        if tag is not None:
            return tag
    return None


def read_tags_csv(csv_path: str | Path, root: str | Path | None = None) -> dict[Path, str]:
    """Read ``path,tag`` rows (paths relative to ``root``, default the CSV's folder).

    A header row ``path,tag`` is allowed. Returns ``{resolved path: tag}``.
    Raises ``ValueError`` naming the file and line for an unknown tag or a malformed row.
    """
    csv_path = Path(csv_path)
    base = Path(root) if root is not None else csv_path.parent
    out: dict[Path, str] = {}
    with open(csv_path, newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if not row or row[0].strip().startswith("#"):
                continue
            if line_no == 1 and [c.strip().lower() for c in row[:2]] == ["path", "tag"]:
                continue
            if len(row) < 2:
                raise ValueError(f"{csv_path}:{line_no}: expected 'path,tag', got {row!r}")
            rel, tag = row[0].strip(), row[1].strip().lower()
            if tag not in TAGS:
                raise ValueError(
                    f"{csv_path}:{line_no}: unknown tag {tag!r} (choose from {', '.join(TAGS)})"
                )
            out[(base / rel).resolve()] = tag
    return out


def tag_index(tag: str) -> int:
    """Class index of ``tag`` in :data:`TAGS` (``ValueError`` listing the valid tags)."""
    try:
        return TAGS.index(tag)
    except ValueError:
        raise ValueError(f"unknown drum tag {tag!r}; choose from {', '.join(TAGS)}") from None
