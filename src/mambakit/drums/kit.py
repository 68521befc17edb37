"""Drum-kit specifications (YAML), kit generation and SFZ/WAV kit folders.

A kit folder is portable: ``kit.sfz`` uses ``default_path=samples/`` relative to itself,
``samples/<pad>.wav`` are 24-bit WAVs and ``kit.json`` is a manifest of the pads.
Each pad is mapped to its General MIDI drum key (:data:`GM_KEYS`) over the full
velocity range (``lovel=1 hivel=127``); the renderer applies velocity gain itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

from mambakit.drums.tags import TAGS
from mambakit.utils import parse_note, parse_seconds, read_document

#: General MIDI percussion keys (channel 10) used when a pad does not name one.
GM_KEYS: dict[str, int] = {
    "kick": 36,
    "rim": 37,
    "snare": 38,
    "clap": 39,
    "closed_hat": 42,
    "open_hat": 46,
    "tom": 45,  # low tom; mid 47, high 50
    "cymbal": 49,
    "perc": 56,  # cowbell
    "fx": 55,  # splash, the closest GM slot
}


@dataclass(frozen=True, kw_only=True)
class PadShape:
    """How a pad's sound is shaped over time, shared by :class:`KitPad` and the UI's
    editable pad: the ADSR (``attack``, ``decay``, ``release`` in seconds, ``sustain`` a
    level in 0..1) and the pitch drop (the pitch envelope starts ``pitch_drop`` semitones
    above the root and decays to it with time constant ``pitch_decay`` seconds).
    Keyword-only, so a subclass's own fields keep their positions."""

    attack: float = 0.002
    decay: float = 0.2
    sustain: float = 0.0
    release: float = 0.05
    pitch_drop: float = 0.0
    pitch_decay: float = 0.05

    def adsr(self) -> Any:
        """The requested envelope as a :class:`mambakit.dsp.ADSR`."""
        from mambakit.dsp import ADSR

        return ADSR(self.attack, self.decay, self.sustain, self.release)

    def pitch_env(self, n_samples: int, sr: int) -> np.ndarray:
        """Pitch envelope [T] in semitones above the root: ``drop * exp(-t / pitch_decay)``."""
        t = np.arange(n_samples) / sr
        return (self.pitch_drop * np.exp(-t / max(self.pitch_decay, 1e-6))).astype(np.float32)


@dataclass(frozen=True)
class KitPad(PadShape):
    """One pad of a kit: what to generate (its :class:`PadShape` fields, keyword-only) and
    where it sits on the MIDI keyboard: ``note`` a MIDI number (C4 = 60), ``key`` the MIDI
    key the sampler maps the pad to (default: the tag's General MIDI key)."""

    name: str
    tag: str
    note: int = 36
    seed: int = 0
    key: int | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if self.key is None:
            object.__setattr__(self, "key", GM_KEYS.get(self.tag, 56))


_TIME_FIELDS = ("attack", "decay", "release", "pitch_decay")
#: The fields of :class:`PadShape`.
SHAPE_FIELDS = ("attack", "decay", "sustain", "release", "pitch_drop", "pitch_decay")


# How each optional pad field is read from YAML (times with units, notes by name or number).
_FIELD_PARSERS: dict[str, Any] = {
    **{field: parse_seconds for field in _TIME_FIELDS},
    "note": parse_note, "key": parse_note, "sustain": float, "pitch_drop": float,
    "seed": int, "text": str,
}  # fmt: skip


def _pad_from_dict(raw: Any, index: int, path: Path) -> KitPad:
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: pad #{index} must be a mapping, got {type(raw).__name__}")
    name = str(raw.get("name", f"pad{index}"))
    where = f"{path}: pad {name!r}"
    known = set(KitPad.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed {sorted(known)}")
    tag = str(raw.get("tag", "")).lower()
    if tag not in TAGS:
        raise ValueError(f"{where}: unknown tag {tag!r}; choose from {', '.join(TAGS)}")
    kw: dict[str, Any] = {"name": name, "tag": tag}
    try:
        kw.update((f, _FIELD_PARSERS[f](v)) for f, v in raw.items() if f in _FIELD_PARSERS)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not 0.0 <= kw.get("sustain", 0.0) <= 1.0:
        raise ValueError(f"{where}: sustain must be in [0, 1], got {kw['sustain']}")
    return KitPad(**kw)


def load_kit_yaml(path: str | Path) -> list[KitPad]:
    """Read a kit spec: a YAML list of pads, or a mapping with a ``pads:`` list.

    Times accept ``"2ms"``/``"0.3s"``/numbers (seconds); notes accept ``"C1"`` or MIDI numbers.
    """
    path = Path(path)
    data = read_document(path, f"kit spec {path} does not exist", yaml.safe_load, "YAML")
    pads = data.get("pads") if isinstance(data, dict) else data
    if not isinstance(pads, list) or not pads:
        raise ValueError(f"{path}: expected a non-empty list of pads (or a 'pads:' list)")
    out = [_pad_from_dict(raw, i, path) for i, raw in enumerate(pads)]
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: duplicate pad names {dupes}")
    return out


def default_kit_path() -> Path:
    """Path of the bundled 8-pad kit spec."""
    return Path(__file__).parent / "assets" / "default_kit.yaml"


def generate_kit(synth: Any, pads: Sequence[KitPad]) -> list[np.ndarray]:
    """Render every pad with a ``DrumSynth``-like object; returns float32 arrays [T].

    ``synth.generate(tag=, note=, adsr=, pitch_env=, seed=, n=1)`` must return
    ``(audio [1, 1, T], sr)``; the ADSR is the pad's (:meth:`PadShape.adsr`).
    """
    out: list[np.ndarray] = []
    for pad in pads:
        adsr = pad.adsr()
        # One second of pitch envelope; the synth resamples/crops it to its own length.
        sr = int(getattr(synth, "sample_rate", 44100))
        env = pad.pitch_env(sr, sr)
        audio, _sr = synth.generate(
            tag=pad.tag, note=pad.note, adsr=adsr, pitch_env=env, seed=pad.seed, n=1
        )
        if hasattr(audio, "detach"):  # torch tensor, possibly on an accelerator
            audio = audio.detach().float().cpu().numpy()
        out.append(np.asarray(audio, dtype=np.float32).reshape(-1))
    return out


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "pad"


def write_kit(
    directory: str | Path, pads: Sequence[KitPad], audios: Sequence[np.ndarray], sr: int
) -> Path:
    """Write ``samples/*.wav`` (24-bit), ``kit.sfz`` and ``kit.json``; returns the SFZ path."""
    if len(pads) != len(audios):
        raise ValueError(f"write_kit: {len(pads)} pads but {len(audios)} audio clips")
    root = Path(directory)
    (root / "samples").mkdir(parents=True, exist_ok=True)
    lines = ["// mambakit drum kit", "<control>", "default_path=samples/", ""]
    manifest = {"sample_rate": sr, "pads": []}
    for pad, audio in zip(pads, audios, strict=True):
        fname = f"{_safe_name(pad.name)}.wav"
        x = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
        sf.write(root / "samples" / fname, x, sr, subtype="PCM_24")
        lines.append(f"<region> sample={fname} key={pad.key} lovel=1 hivel=127")
        manifest["pads"].append({**asdict(pad), "sample": f"samples/{fname}"})
    sfz = root / "kit.sfz"
    sfz.write_text("\n".join(lines) + "\n")
    (root / "kit.json").write_text(json.dumps(manifest, indent=2))
    return sfz


def _resolve_region(region: dict[str, str], sfz: Path, default_path: str) -> dict[str, Any]:
    """One ``<region>``'s opcodes with key and velocity ranges as ints and the sample's
    resolved ``path``."""
    if "sample" not in region:
        raise ValueError(f"{sfz}: a <region> has no sample= opcode")
    r: dict[str, Any] = dict(region)
    for k in ("key", "lokey", "hikey", "lovel", "hivel"):
        if k in r:
            r[k] = int(r[k])
    if "key" in r:
        r.setdefault("lokey", r["key"])
        r.setdefault("hikey", r["key"])
    r["path"] = (sfz.parent / default_path / r["sample"].replace("\\", "/")).resolve()
    return r


def parse_sfz(path: str | Path) -> list[dict[str, Any]]:
    """Minimal SFZ reader: one dict per ``<region>`` with opcodes and a resolved ``path``.

    Supports ``<control> default_path=``, ``<group>`` opcodes inherited by regions, ``//``
    comments and ``key``/``lokey``/``hikey``/``lovel``/``hivel`` as ints. Sample names
    may not contain spaces (true for files written by :func:`write_kit`).
    """
    path = Path(path)
    text = re.sub(r"//[^\n]*", "", path.read_text())
    default_path = ""
    group: dict[str, str] = {}
    regions: list[dict[str, Any]] = []
    current: dict[str, str] | None = None
    header = None
    for token in re.findall(r"<\w+>|[^\s=]+=[^\s<]+", text):
        if token.startswith("<"):
            header = token[1:-1]
            if header == "region":
                current = dict(group)
                regions.append(current)  # type: ignore[arg-type]
            elif header == "group":
                group, current = {}, None
            continue
        k, v = token.split("=", 1)
        if header == "control" and k == "default_path":
            default_path = v
        elif header == "group":
            group[k] = v
        elif current is not None:
            current[k] = v
    return [_resolve_region(region, path, default_path) for region in regions]
