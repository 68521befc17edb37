"""Read a user's folder tree of drum one-shots into a training-ready, cached dataset.

Pipeline per file (all of it in :func:`preprocess_file`)::

    load_audio -> to_mono -> resample to cfg.sr -> cut at cfg.max_seconds
      -> reject near-silent (RMS < cfg.min_rms_db dBFS) -> trim_to_onset
      -> reject too short (< cfg.min_seconds after trim) -> fit_length(cfg.seconds, fade-out)
      -> peak_normalize

then the scaffolding of the seed (no learning) is extracted by :func:`analyze_clip`:
ADSR = ``fit_adsr(hilbert_envelope(x), sr)`` and root note / octave / pitch class /
pitch envelope / tonal flag from ``analyze_pitch``.

Features are cached by content: ``sha1(file bytes + preprocessing config)`` names one
``.npz`` in the cache dir (argument > ``$MAMBAKIT_CACHE`` > ``~/.cache/mambakit/features``),
never next to the user's files. Editing a file or the config changes the key.

Unusable files are skipped, never fatal: the report lists ``(file, reason)`` and is
written as ``scan_report.json`` to the cache dir. Files with no tag are skipped with
reason ``"no tag"`` unless ``default_tag`` is given (we do not guess a class silently).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from mambakit.drums.tags import TAGS, read_tags_csv, tag_from_path, tag_index

AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3")
_CACHE_VERSION = 1


@dataclass(frozen=True)
class DrumCorpusConfig:
    """Preprocessing settings; part of the cache key.

    sr: target rate [Hz]; seconds: fixed clip length [s]; normalise: "peak" or "none";
    min_rms_db: files quieter than this RMS [dBFS] are "near-silent"; max_seconds: very
    long files are cut to this before analysis; min_seconds: minimum length after the
    onset trim; fade_seconds: fade-out applied at the fixed-length cut.
    """

    sr: int = 44100
    seconds: float = 1.0
    normalise: str = "peak"
    min_rms_db: float = -60.0
    max_seconds: float = 10.0
    min_seconds: float = 0.02
    fade_seconds: float = 0.01

    def __post_init__(self) -> None:
        if self.normalise not in ("peak", "none"):
            raise ValueError(f"normalise must be 'peak' or 'none', got {self.normalise!r}")

    @property
    def n_samples(self) -> int:
        return int(round(self.sr * self.seconds))


class UnusableFile(Exception):
    """A file that cannot enter the corpus; the message is the reported reason."""


def default_cache_dir() -> Path:
    """``$MAMBAKIT_CACHE`` or ``~/.cache/mambakit/features``."""
    env = os.environ.get("MAMBAKIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mambakit" / "features"


def content_key(path: Path, cfg: DrumCorpusConfig) -> str:
    """sha1 over the file bytes and the preprocessing config (and cache version)."""
    h = hashlib.sha1(path.read_bytes())
    h.update(json.dumps({**asdict(cfg), "v": _CACHE_VERSION}, sort_keys=True).encode())
    return h.hexdigest()


def preprocess_file(path: str | Path, cfg: DrumCorpusConfig) -> np.ndarray:
    """Load and condition one file to float32 [cfg.n_samples]; raises :class:`UnusableFile`."""
    from mambakit import dsp

    path = Path(path)
    if path.stat().st_size == 0:
        raise UnusableFile("empty file")
    try:
        audio, sr = dsp.load_audio(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "not audio"
        raise UnusableFile(f"unreadable: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    audio = torch.as_tensor(audio, dtype=torch.float32)
    if audio.numel() == 0:
        raise UnusableFile("no samples")
    audio = dsp.to_mono(audio)
    if sr != cfg.sr:
        audio = dsp.resample(audio, sr, cfg.sr)
    audio = audio[..., : int(cfg.max_seconds * cfg.sr)]
    rms = float(audio.pow(2).mean().sqrt())
    if rms <= 0 or 20 * np.log10(rms) < cfg.min_rms_db:
        raise UnusableFile(f"silent or near-silent (RMS below {cfg.min_rms_db:g} dBFS)")
    audio = dsp.trim_to_onset(audio, cfg.sr)
    if audio.shape[-1] < cfg.min_seconds * cfg.sr:
        raise UnusableFile(f"shorter than {cfg.min_seconds:g} s after trimming to the onset")
    cut = audio.shape[-1] > cfg.n_samples
    audio = dsp.fit_length(audio, cfg.n_samples)
    fade = min(int(cfg.fade_seconds * cfg.sr), cfg.n_samples)
    if cut and fade > 0:  # fade out only where we cut, so the clip ends without a click
        audio = audio.clone()
        audio[..., -fade:] *= torch.linspace(1.0, 0.0, fade)
    if cfg.normalise == "peak":
        audio = dsp.peak_normalize(audio)
    x = torch.as_tensor(audio).reshape(-1).numpy().astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise UnusableFile("non-finite samples")
    return x


def analyze_clip(audio: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Seed scaffolding of one conditioned clip [T]: ADSR vector, pitch features, per-sample
    pitch envelope in semitones relative to the root (interpolated from the analysis rate).
    """
    from mambakit import dsp

    env = dsp.hilbert_envelope(audio, sr)
    adsr = dsp.fit_adsr(env, sr)
    pitch = dsp.analyze_pitch(audio, sr)
    penv = np.asarray(pitch.pitch_env, dtype=np.float32).reshape(-1)
    rate = float(getattr(pitch, "pitch_env_rate", 0) or 0)
    T = audio.shape[-1]
    if penv.size == T:
        per_sample = penv
    elif penv.size > 1 and rate > 0:
        per_sample = np.interp(np.arange(T) / sr, np.arange(penv.size) / rate, penv)
    else:
        per_sample = np.full(T, penv[0] if penv.size else 0.0)
    return {
        "adsr": np.asarray(adsr.to_vector(), dtype=np.float32).reshape(-1),
        "midi_note": np.float32(pitch.midi_note),
        "octave": np.int64(pitch.octave),
        "pitch_class": np.int64(pitch.pitch_class),
        "pitch_env": per_sample.astype(np.float32),
        "tonal": np.float32(bool(pitch.tonal)),
    }


def _process(job: tuple[str, str, DrumCorpusConfig, str]) -> tuple[str, str, str | None]:
    """Worker: returns ``(path, tag, cache file)`` or ``(path, reason, None)``."""
    path_s, tag, cfg, cache_s = job
    path = Path(path_s)
    try:
        key = content_key(path, cfg)
        cache_file = Path(cache_s) / key[:2] / f"{key}.npz"
        if not cache_file.is_file():
            audio = preprocess_file(path, cfg)
            feats = analyze_clip(audio, cfg.sr)
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.stem + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, audio=audio, **feats)
            os.replace(tmp, cache_file)  # atomic: parallel scans never see half a file
        return path_s, tag, str(cache_file)
    except UnusableFile as exc:
        return path_s, str(exc), None
    except OSError as exc:
        return path_s, f"cannot read: {exc.strerror or exc}", None


def _process_all(jobs: list[tuple], n_workers: int, bar: dict[str, Any]) -> list[tuple]:
    """:func:`_process` every job, in ``n_workers`` processes (0: in this one)."""
    if n_workers > 0 and len(jobs) > 1:
        # "spawn", not fork: a forked child of a process that already ran torch's thread
        # pools can deadlock (seen in the test suite), and fork is unavailable on macOS.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
            return list(tqdm(pool.map(_process, jobs, chunksize=4), **bar))
    return [_process(j) for j in tqdm(jobs, **bar)]


def scan_folder(
    directory: str | Path,
    tags_csv: str | Path | None = None,
    config: DrumCorpusConfig | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    default_tag: str | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Scan a folder tree; returns ``(items, report)``.

    items: ``{"path", "tag", "cache"}`` per usable file (sorted by path); report:
    ``{"path", "reason"}`` per skipped file. ``workers=None`` uses ``min(4, cpus)``
    processes, ``0`` runs in-process. Raises ``ValueError`` naming the folder and the
    most common reasons when nothing is usable.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"drum folder {root} does not exist or is not a folder")
    cfg = config or DrumCorpusConfig()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    overrides = read_tags_csv(tags_csv, root) if tags_csv is not None else {}
    if default_tag is not None:
        tag_index(default_tag)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    report: list[dict[str, str]] = []
    jobs = []
    for p in files:
        if p.suffix.lower() not in AUDIO_EXTENSIONS:
            if tags_csv is None or p.resolve() != Path(tags_csv).resolve():
                report.append({"path": str(p), "reason": f"not an audio file ({p.suffix})"})
            continue
        tag = overrides.get(p.resolve()) or tag_from_path(p.relative_to(root)) or default_tag
        if tag is None:
            report.append({"path": str(p), "reason": "no tag"})
            continue
        jobs.append((str(p), tag, cfg, str(cache)))
    n_workers = min(4, os.cpu_count() or 1) if workers is None else workers
    bar = dict(total=len(jobs), desc=f"scanning {root.name}", disable=not progress, unit="file")
    results = _process_all(jobs, n_workers, bar)
    items = []
    for path_s, tag_or_reason, cache_file in results:
        if cache_file is None:
            report.append({"path": path_s, "reason": tag_or_reason})
        else:
            items.append({"path": path_s, "tag": tag_or_reason, "cache": cache_file})
    report.sort(key=lambda r: r["path"])
    (cache / "scan_report.json").write_text(
        json.dumps({"folder": str(root), "kept": len(items), "skipped": report}, indent=2)
    )
    if not items:
        top = Counter(r["reason"] for r in report).most_common(3)
        reasons = "; ".join(f"{n} x {r}" for r, n in top) or "no files found"
        raise ValueError(f"no usable drum one-shots in {root}: {reasons}")
    return items, report


class DrumDataset(Dataset):
    """Conditioned one-shots with their scaffolding; see module docstring.

    Each item: "audio" float32 [1, T], "adsr" float32 [5], "midi_note" float32 [],
    "octave" long [], "pitch_class" long [], "pitch_env" float32 [T] (semitones relative
    to the root), "tonal" float32 [] (0/1), "tag" long [] (index into TAGS).
    """

    def __init__(self, items: Sequence[dict[str, Any]], config: DrumCorpusConfig | None = None):
        self.config = config or DrumCorpusConfig()
        self.items = list(items)
        self.paths = [Path(it["path"]) for it in self.items]
        self.tags = [it["tag"] for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        with np.load(self.items[i]["cache"]) as z:
            return {
                "audio": torch.from_numpy(z["audio"].astype(np.float32))[None, :],
                "adsr": torch.from_numpy(z["adsr"].astype(np.float32)),
                "midi_note": torch.tensor(float(z["midi_note"]), dtype=torch.float32),
                "octave": torch.tensor(int(z["octave"]), dtype=torch.long),
                "pitch_class": torch.tensor(int(z["pitch_class"]), dtype=torch.long),
                "pitch_env": torch.from_numpy(z["pitch_env"].astype(np.float32)),
                "tonal": torch.tensor(float(z["tonal"]), dtype=torch.float32),
                "tag": torch.tensor(tag_index(self.tags[i]), dtype=torch.long),
            }

    def stats(self) -> dict[str, int]:
        """Number of clips per tag (every tag in TAGS order, zeros included)."""
        counts = Counter(self.tags)
        return {t: counts.get(t, 0) for t in TAGS}


def load_corpus(
    directory: str | Path, config: DrumCorpusConfig | None = None, **scan_options: Any
) -> DrumDataset:
    """:func:`scan_folder` then :class:`DrumDataset` (the report is in ``dataset.report``);
    ``scan_options``: the scan's ``tags_csv``, ``cache_dir``, ``workers``, ``default_tag``,
    ``progress``."""
    cfg = config or DrumCorpusConfig()
    items, report = scan_folder(directory, config=cfg, **scan_options)
    ds = DrumDataset(items, cfg)
    ds.report = report  # type: ignore[attr-defined]
    return ds
