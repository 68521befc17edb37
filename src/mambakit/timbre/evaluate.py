"""Evaluate timbre-transfer runs on held-out pairs: does the output keep the content's
notes and take the style's timbre?

For each held-out triple (content = note p of A, style = a note of B, target = note p of B):

- **content preservation**: Pearson correlation of the output's pitch curve (YIN f0 in
  semitones, voiced frames of both) and of its loudness curve (frame RMS in dB) with the
  content's;
- **style match**: distance of the output's MFCC statistics (per-coefficient mean and std
  over time, 20 coefficients) to the target's, next to the content's own distance to the
  target (``style_gain = 1 - d(output, target) / d(content, target)``: > 0 means the output
  moved towards the target timbre);
- **reconstruction quality** against the target: multi-resolution STFT distance and
  scale-invariant SDR (Le Roux et al., 2019),
  ``SI-SDR = 10 log10(|a s|^2 / |a s - y|^2)``, ``a = <y, s> / |s|^2``.

:func:`evaluate_runs` returns one row of means per run; :func:`markdown_table` prints them
side by side.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from mambakit.dsp import MultiResolutionSTFTLoss, mel_spectrogram
from mambakit.dsp.pitch import yin_track
from mambakit.timbre.data import PairedNotes
from mambakit.timbre.pipeline import TimbreTransfer

__all__ = [
    "pitch_curve",
    "loudness_curve",
    "mfcc_statistics",
    "si_sdr",
    "pair_metrics",
    "evaluate_runs",
    "markdown_table",
    "METRICS",
]

# metric -> (higher is better?)
METRICS = {
    "pitch_corr": True,
    "loudness_corr": True,
    "mfcc_dist": False,
    "mfcc_dist_content": False,
    "style_gain": True,
    "stft_dist": False,
    "si_sdr": True,
}


def pitch_curve(audio: np.ndarray, sr: int, hop: int = 160) -> np.ndarray:
    """YIN f0 per frame in semitones (MIDI), NaN where unvoiced (aperiodicity > 0.3)."""
    f0, aperiodicity, _ = yin_track(audio.astype(np.float64), sr, 50.0, 2000.0, hop)
    midi = 69 + 12 * np.log2(np.maximum(f0, 1e-9) / 440.0)
    return np.where((aperiodicity < 0.3) & (f0 > 0), midi, np.nan)


def loudness_curve(audio: np.ndarray, hop: int = 160, frame: int = 640) -> np.ndarray:
    """Frame RMS in dB (floor -100 dB)."""
    n = max(1, 1 + (len(audio) - frame) // hop)
    frames = np.stack([audio[i * hop : i * hop + frame] for i in range(n)])
    return 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-5)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        # constant curves (a steady note): equal means perfect, else no information
        return 1.0 if ok.sum() >= 3 and np.allclose(a[ok].mean(), b[ok].mean(), atol=0.5) else 0.0
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def mfcc_statistics(audio: Tensor, sr: int, n_mfcc: int = 20) -> Tensor:
    """MFCCs (DCT-II of the log-mel spectrogram, orthonormal) -> ``cat(mean, std)`` over
    time, ``[2 * n_mfcc]``."""
    mel = mel_spectrogram(audio.reshape(1, -1), sr, n_fft=1024, hop_length=256, n_mels=64)[0]
    n = mel.shape[0]
    k = torch.arange(n_mfcc, dtype=mel.dtype)[:, None]
    m = torch.arange(n, dtype=mel.dtype)[None]
    dct = torch.cos(math.pi / n * (m + 0.5) * k) * math.sqrt(2 / n)
    dct[0] /= math.sqrt(2)
    mfcc = dct @ mel  # (n_mfcc, frames)
    return torch.cat([mfcc.mean(dim=1), mfcc.std(dim=1)])


def si_sdr(estimate: Tensor, reference: Tensor) -> float:
    """Scale-invariant SDR in dB of ``estimate`` against ``reference`` (1-D or any shape)."""
    s, y = reference.flatten().double(), estimate.flatten().double()
    a = torch.dot(y, s) / torch.dot(s, s).clamp_min(1e-12)
    return float(10 * torch.log10((a * s).pow(2).sum() / (a * s - y).pow(2).sum().clamp_min(1e-12)))


def pair_metrics(output: Tensor, content: Tensor, target: Tensor, sr: int) -> dict[str, float]:
    """All metrics of one output ``[T]`` against its content and target ``[T]``."""
    out_np, con_np = output.numpy(), content.numpy()
    target_stats = mfcc_statistics(target, sr)
    d_out = float((mfcc_statistics(output, sr) - target_stats).norm())
    d_con = float((mfcc_statistics(content, sr) - target_stats).norm())
    stft = MultiResolutionSTFTLoss(fft_sizes=(512, 1024, 2048))
    return {
        "pitch_corr": _corr(pitch_curve(out_np, sr), pitch_curve(con_np, sr)),
        "loudness_corr": _corr(loudness_curve(out_np), loudness_curve(con_np)),
        "mfcc_dist": d_out,
        "mfcc_dist_content": d_con,
        "style_gain": 1.0 - d_out / max(d_con, 1e-9),
        "stft_dist": float(stft(output[None], target[None])),
        "si_sdr": si_sdr(output, target),
    }


def evaluate_runs(
    runs: Sequence[str | os.PathLike[str]],
    pairs_dir: str | os.PathLike[str],
    n_pairs: int = 32,
    alpha: float | tuple[float, ...] | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Mean metrics per run on the same ``n_pairs`` held-out transfer triples.

    The triples are drawn from ``pairs_dir`` (NSynth layout) with a generator seeded by
    ``seed``, so every run sees the same pairs. Returns ``{run: {metric: mean}}`` plus
    ``"pairs"`` (how many were scored).
    """
    results: dict[str, dict[str, float]] = {}
    for run in runs:
        tt = TimbreTransfer.from_pretrained(run, device=device, progress=False)
        sr = tt.sample_rate
        seconds = tt.model.config.segment_seconds
        data = PairedNotes(
            pairs_dir, sample_rate=sr, segment_seconds=seconds, reconstruction_ratio=0
        )
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(data), generator=g).tolist()
        rows = []
        for index in tqdm(order[:n_pairs], desc=f"eval {Path(run).name}", disable=not progress):
            item = data.sample(index, g)
            if not item["transfer"]:
                continue  # no other instrument plays this pitch
            out, _ = tt.transfer(item["content"], item["style"], alpha=alpha, sr=sr)
            rows.append(pair_metrics(out[0, 0], item["content"][0], item["target"][0], sr))
        if not rows:
            raise ValueError(
                f"{pairs_dir}: no transfer pairs (need >= 2 instruments sharing a pitch)"
            )
        summary = {k: float(np.mean([r[k] for r in rows])) for k in METRICS}
        summary["pairs"] = float(len(rows))
        results[str(run)] = summary
    return results


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """Runs as columns, metrics as rows (arrows say which direction is better)."""
    runs = list(results)
    lines = ["| metric | " + " | ".join(Path(r).name or r for r in runs) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    for metric, higher in [*METRICS.items(), ("pairs", True)]:
        arrow = "" if metric == "pairs" else (" ↑" if higher else " ↓")
        cells = [f"{results[r][metric]:.3f}" if metric != "pairs" else f"{results[r][metric]:.0f}"
                 for r in runs]  # fmt: skip
        lines.append(f"| {metric}{arrow} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
