"""Token store: a folder of music tokenized once into sharded code arrays plus a manifest.

Layout of a store directory::

    manifest.json      codec (id, sample_rate, frame_rate, n_codebooks, codebook_size),
                       files [{path, sha1, split, shard, offset, frames}], skipped [{path, error}]
    shard_00000.npy    int16 [K, frames of several files, concatenated]
    ...

``tokenize_folder`` is resumable: a file whose content hash is already in the manifest is
skipped, and the manifest is rewritten (atomically) each time a shard is flushed, so an
interrupted run loses at most the files of the unflushed shard. The train/val split is a
hash of the relative path, so it is stable across runs and machines and independent of the
order in which files are found.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mambakit.dsp import AudioError, load_audio, resample
from mambakit.pretrained import atomic_write_bytes

from .codecs import Codec

__all__ = ["AUDIO_EXTENSIONS", "TokenDataset", "TokenStore", "split_of", "tokenize_folder"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
MANIFEST = "manifest.json"


def _sha1_file(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_of(relative_path: str, val_fraction: float) -> str:
    """``"val"`` for a stable ``val_fraction`` of paths (by SHA-1 of the path), else ``"train"``."""
    bucket = int(hashlib.sha1(relative_path.encode()).hexdigest()[:8], 16) / 16**8
    return "val" if bucket < val_fraction else "train"


def _codec_info(codec: Codec) -> dict[str, Any]:
    return {
        "id": codec.id,
        "sample_rate": int(codec.sample_rate),
        "frame_rate": float(codec.frame_rate),
        "n_codebooks": int(codec.n_codebooks),
        "codebook_size": int(codec.codebook_size),
    }


def _open_manifest(out: Path, codec_info: dict[str, Any], val_fraction: float) -> dict[str, Any]:
    """The store's manifest (a new one if there is none); a store of another codec is an error."""
    if not (out / MANIFEST).is_file():
        return {"codec": codec_info, "val_fraction": val_fraction, "files": [], "skipped": []}
    manifest = json.loads((out / MANIFEST).read_text())
    if manifest["codec"] != codec_info:
        raise ValueError(
            f"{out}: store was made with codec {manifest['codec']}, not {codec_info}; "
            "use another --out directory"
        )
    return manifest


def _encode_file(path: Path, codec: Codec) -> np.ndarray:
    """One file's codes ``[K, frames]`` int16, at the codec's rate."""
    audio, sr = load_audio(path)  # [C, T]
    if audio.shape[-1] == 0:
        raise AudioError(f"{path}: empty audio")
    if sr != codec.sample_rate:
        audio = resample(audio, sr, codec.sample_rate)
    return codec.encode(audio[None])[0].cpu().numpy().astype(np.int16)


def tokenize_folder(
    folder: str | Path,
    codec: Codec,
    out: str | Path,
    val_fraction: float = 0.1,
    shard_frames: int = 1_000_000,
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode every audio file under ``folder`` with ``codec`` into the store ``out``.

    Files of any length, rate and channel count are read with :func:`mambakit.dsp.load_audio`,
    resampled to the codec rate and encoded (the codec chunks long files). Unreadable files are
    skipped and listed in ``manifest["skipped"]`` with the reason. Re-running skips files whose
    content (SHA-1) is already stored; a store made with another codec is an error.

    Returns the manifest (also written to ``out/manifest.json``).
    """
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory of audio files")
    if codec.codebook_size > np.iinfo(np.int16).max + 1:
        raise ValueError(f"codebook_size {codec.codebook_size} does not fit the int16 store")
    out.mkdir(parents=True, exist_ok=True)
    manifest = _open_manifest(out, _codec_info(codec), val_fraction)
    done = {entry["sha1"] for entry in manifest["files"]}
    manifest["skipped"] = []  # retried each run
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    n_shards = len({entry["shard"] for entry in manifest["files"]})
    pending: list[tuple[dict[str, Any], np.ndarray]] = []
    pending_frames = 0

    def flush() -> None:
        nonlocal pending, pending_frames, n_shards
        if not pending:
            return
        name = f"shard_{n_shards:05d}.npy"
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate([codes for _, codes in pending], axis=1))
        atomic_write_bytes(out / name, buffer.getvalue())
        offset = 0
        for entry, codes in pending:
            manifest["files"].append({**entry, "shard": name, "offset": offset})
            offset += codes.shape[1]
        n_shards += 1
        pending, pending_frames = [], 0
        _write_manifest(out, manifest)

    for path in tqdm(paths, desc="tokenize", disable=not progress):
        relative = path.relative_to(folder).as_posix()
        try:
            sha1 = _sha1_file(path)
            if sha1 in done:
                continue
            codes = _encode_file(path, codec)
        except (AudioError, RuntimeError, ValueError, OSError) as e:
            manifest["skipped"].append({"path": relative, "error": str(e)})
            continue
        entry = {
            "path": relative,
            "sha1": sha1,
            "split": split_of(relative, val_fraction),
            "frames": int(codes.shape[1]),
        }
        done.add(sha1)
        pending.append((entry, codes))
        pending_frames += codes.shape[1]
        if pending_frames >= shard_frames:
            flush()
    flush()
    _write_manifest(out, manifest)
    return manifest


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())


class TokenStore:
    """Read access to a store written by :func:`tokenize_folder` (shards memory-mapped)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{self.directory}: no {MANIFEST} (not a token store)")
        self.manifest = json.loads(path.read_text())
        self._shards: dict[str, np.ndarray] = {}

    @property
    def codec(self) -> dict[str, Any]:
        return self.manifest["codec"]

    def files(self, split: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.manifest["files"] if split is None or f["split"] == split]

    def codes(self, entry: dict[str, Any], start: int = 0, stop: int | None = None) -> Tensor:
        """Codes of one file (or frames ``[start, stop)`` of it): ``[K, frames]`` long."""
        shard = self._shards.get(entry["shard"])
        if shard is None:
            shard = np.load(self.directory / entry["shard"], mmap_mode="r")
            self._shards[entry["shard"]] = shard
        stop = entry["frames"] if stop is None else stop
        lo = entry["offset"]
        return torch.from_numpy(np.asarray(shard[:, lo + start : lo + stop], dtype=np.int64))


class TokenDataset(Dataset):
    """Random crops of ``seq_len`` frames, ``codes [K, seq_len]`` (long), from one split.

    Item ``i`` is a crop of file ``i`` (each file equally likely, whatever its length) at an
    offset drawn from torch's global RNG, which the trainer seeds per step, so batches are
    reproducible and resume exactly. Files shorter than ``seq_len`` are left out.
    """

    def __init__(self, store: TokenStore | str | Path, split: str = "train", seq_len: int = 512):
        self.store = store if isinstance(store, TokenStore) else TokenStore(store)
        self.seq_len = seq_len
        all_files = self.store.files(split)
        self.entries = [f for f in all_files if f["frames"] >= seq_len]
        if not self.entries:
            raise ValueError(
                f"{self.store.directory}: no {split!r} file has >= {seq_len} frames "
                f"({len(all_files)} files in the split); use a shorter --seq-len"
            )

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Tensor:
        entry = self.entries[index]
        start = int(torch.randint(0, entry["frames"] - self.seq_len + 1, ()))
        return self.store.codes(entry, start, start + self.seq_len)
