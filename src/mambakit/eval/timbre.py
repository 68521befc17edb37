"""Evaluate timbre-transfer runs on held-out pairs: does the output keep the content's
notes and take the style's timbre?

For each held-out triple (content = note p of A, style = a note of B, target = note p of B):

- **content preservation**: agreement of the output's pitch curve (YIN f0 in semitones,
  voiced frames of both) and of its loudness curve (frame RMS in dB) with the content's:
  their Pearson correlation, or, where a curve is flat (a steady note: its pitch moves by
  estimator jitter only, which no correlation can follow), the share of frames that agree
  within 50 cents / 1 dB. ``pitch_accuracy`` is the raw pitch accuracy (share of the
  content's voiced frames where the output is voiced and within 50 cents);
- **style match**: distance of the output's MFCC statistics (per-coefficient mean and std
  over time of c1..c19: the shape of the spectral envelope; c0, the frame energy, is left
  out, since it measures loudness, which content preservation scores) to the target's,
  next to the content's own distance to the target (``style_gain = 1 - d(output, target)
  / d(content, target)``: > 0 means the output moved towards the target timbre, 1 is the
  target itself);
- **transfer fidelity** against the target: multi-resolution STFT distance and
  scale-invariant SDR (Le Roux et al., 2019),
  ``SI-SDR = 10 log10(|a s|^2 / |a s - y|^2)``, ``a = <y, s> / |s|^2``;
- **reconstruction quality**: the same two distances for ``G(content)`` (no style) against
  the content itself (``recon_stft_dist``, ``recon_si_sdr``).

:func:`evaluate_runs` returns one row of means per run, labelled with the run's training
objective, budget and whether the pairs were held out from its training set (shared
notes / instruments, from ``timbre_train.json``), and a reference row (``reference``,
the table's "target (perfect transfer)" column): the same metrics for the target notes
themselves, i.e. for a perfect transfer. It is the
ceiling of every transfer metric and shows what content agreement a perfect transfer
has (B's note p keeps A's pitch curve, but not A's loudness curve when the two
instruments' envelopes differ). :func:`evaluation_markdown` prints the runs side by side.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from mambakit.dsp import MultiResolutionSTFTLoss
from mambakit.dsp import mfcc_statistics as dsp_mfcc_statistics
from mambakit.dsp.pitch import yin_track
from mambakit.results import markdown_table
from mambakit.timbre.data import EXAMPLES_NAME, PairedNotes
from mambakit.timbre.pipeline import TimbreTransfer

__all__ = [
    "pitch_curve",
    "loudness_curve",
    "curve_agreement",
    "pitch_accuracy",
    "run_info",
    "mfcc_statistics",
    "si_sdr",
    "pair_metrics",
    "evaluate_runs",
    "evaluation_markdown",
    "gain_by_interval",
    "METRICS",
]

# metric -> (higher is better?)
METRICS = {
    "pitch_corr": True,
    "pitch_accuracy": True,
    "loudness_corr": True,
    "mfcc_dist": False,
    "mfcc_dist_content": False,
    "style_gain": True,
    "stft_dist": False,
    "si_sdr": True,
    "recon_stft_dist": False,
    "recon_si_sdr": True,
}
KIND = "timbre-eval"
# The column of the targets themselves (a perfect transfer) in the eval table.
REFERENCE_NAME = "target (perfect transfer)"
# Crop length of the held-out pairs: the U-Net's chunk, so older results stay comparable.
EVAL_SEGMENT_SECONDS = 2.1
# Style gain is also reported by how far the style note is from the content's pitch
# (|semitones|, inclusive ranges): a near style note shows the spectrum at nearly the
# target's pitch, one an octave away does not.
INTERVAL_BANDS = ((0, 4), (5, 12), (13, 127))
# Pitch curves (semitones): flatter than 10 cents std is a steady note; 50 cents agree.
PITCH_FLAT, PITCH_MATCH = 0.1, 0.5
# Loudness curves (dB): flatter than 0.5 dB std is steady; 1 dB agree.
LOUDNESS_FLAT, LOUDNESS_MATCH = 0.5, 1.0


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


def curve_agreement(output: np.ndarray, content: np.ndarray, flat: float, match: float) -> float:
    """How well the ``output`` curve follows the ``content`` curve (NaN = no value there).

    Pearson correlation over the frames where both have a value; where either curve is
    flat (std < ``flat``) correlation only measures estimator noise, so the share of the
    content's frames that the output matches within ``match`` is returned instead
    (1 = identical, 0 = no frame agrees). Fewer than 3 common frames give 0.
    """
    n = min(len(output), len(content))
    a, b = output[:n], content[:n]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return 0.0
    if np.std(a[ok]) < flat or np.std(b[ok]) < flat:
        return float(np.sum(np.abs(a[ok] - b[ok]) <= match) / np.isfinite(b).sum())
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def pitch_accuracy(output: np.ndarray, content: np.ndarray, match: float = PITCH_MATCH) -> float:
    """Raw pitch accuracy: share of the content's voiced frames where the output is voiced
    and within ``match`` semitones (default 50 cents). Curves from :func:`pitch_curve`."""
    n = min(len(output), len(content))
    voiced = np.isfinite(content[:n])
    if not voiced.any():
        return 0.0
    close = np.abs(output[:n] - content[:n]) <= match  # NaN compares False
    return float(np.sum(close & voiced) / voiced.sum())


def mfcc_statistics(audio: Tensor, sr: int, n_mfcc: int = 20) -> Tensor:
    """MFCC statistics ``[2 * (n_mfcc - 1)]`` of one clip (any shape, flattened): the mean
    and std over time of c1..c(n_mfcc - 1), :func:`mambakit.dsp.mfcc_statistics`."""
    return dsp_mfcc_statistics(audio.reshape(1, -1), sr, n_mfcc)[0]


def si_sdr(estimate: Tensor, reference: Tensor) -> float:
    """Scale-invariant SDR in dB of ``estimate`` against ``reference`` (1-D or any shape)."""
    s, y = reference.flatten().double(), estimate.flatten().double()
    a = torch.dot(y, s) / torch.dot(s, s).clamp_min(1e-12)
    return float(10 * torch.log10((a * s).pow(2).sum() / (a * s - y).pow(2).sum().clamp_min(1e-12)))


def pair_metrics(
    output: Tensor,
    content: Tensor,
    target: Tensor,
    sr: int,
    reconstruction: Tensor | None = None,
) -> dict[str, float]:
    """All metrics of one output ``[T]`` against its content and target ``[T]``; with
    ``reconstruction`` (``G(content)`` without style, ``[T]``) also the reconstruction
    distances to the content (else those two are NaN)."""
    out_np, con_np = output.numpy(), content.numpy()
    pitch_out, pitch_con = pitch_curve(out_np, sr), pitch_curve(con_np, sr)
    target_stats = mfcc_statistics(target, sr)
    d_out = float((mfcc_statistics(output, sr) - target_stats).norm())
    d_con = float((mfcc_statistics(content, sr) - target_stats).norm())
    stft = MultiResolutionSTFTLoss(fft_sizes=(512, 1024, 2048))
    recon = {"recon_stft_dist": math.nan, "recon_si_sdr": math.nan}
    if reconstruction is not None:
        recon = {
            "recon_stft_dist": float(stft(reconstruction[None], content[None])),
            "recon_si_sdr": si_sdr(reconstruction, content),
        }
    return {
        "pitch_corr": curve_agreement(pitch_out, pitch_con, PITCH_FLAT, PITCH_MATCH),
        "pitch_accuracy": pitch_accuracy(pitch_out, pitch_con),
        "loudness_corr": curve_agreement(
            loudness_curve(out_np), loudness_curve(con_np), LOUDNESS_FLAT, LOUDNESS_MATCH
        ),
        "mfcc_dist": d_out,
        "mfcc_dist_content": d_con,
        "style_gain": 1.0 - d_out / max(d_con, 1e-9),
        "stft_dist": float(stft(output[None], target[None])),
        "si_sdr": si_sdr(output, target),
        **recon,
    }


def _note_index(folder: str | os.PathLike[str]) -> dict[str, str] | None:
    """``{note_str: instrument_str}`` of an NSynth-layout folder, or None if unreadable."""
    try:
        entries = json.loads((Path(folder) / EXAMPLES_NAME).read_text())
        return {k: str(v.get("instrument_str")) for k, v in entries.items()}
    except (OSError, ValueError, AttributeError):
        return None


def run_info(run: str | os.PathLike[str], pairs_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What a run was trained on, from its ``timbre_train.json`` and ``metrics.jsonl``.

    Returns ``objective`` (``"transfer"``, ``"reconstruction"`` or None when the run has no
    training record), ``adversarial`` (trained with the discriminators; records written
    before ``--no-gan`` existed lack the key and were all GAN runs), ``mfcc_weight`` (of
    the MFCC-statistics loss term; 0 = off, as before it existed), ``preset``,
    ``budget`` (the requested steps / minutes / batch size), ``trained_steps`` and
    ``train_seconds`` (last logged step and its time), ``train_data``, and
    ``shared_notes`` / ``shared_instruments``: how many notes / instruments of
    ``pairs_dir`` the training set also holds (0 = held out; None = unknown).
    """
    from mambakit.pretrained import CheckpointError, resolve_pretrained_path
    from mambakit.timbre.training import TRAIN_INFO_NAME
    from mambakit.train import last_logged

    try:
        run = resolve_pretrained_path(run)  # a packaged model's short name, too
    except CheckpointError:
        run = Path(run)
    try:
        info = json.loads((run / TRAIN_INFO_NAME).read_text())
    except (OSError, ValueError):
        info = {}
    row: dict[str, Any] = {
        "objective": info.get("objective"),
        "adversarial": info.get("adversarial", True) if info else None,
        "mfcc_weight": info.get("mfcc_weight", 0.0),
        "preset": info.get("preset"),
        "budget": info.get("budget"),
        "train_data": info.get("data"),
        "trained_steps": None,
        "train_seconds": None,
        "shared_notes": None,
        "shared_instruments": None,
    }
    last = last_logged(run) or {}
    row["trained_steps"], row["train_seconds"] = last.get("step"), last.get("time")
    trained = _note_index(info["data"]) if info.get("data") else None
    pairs = _note_index(pairs_dir)
    if trained is not None and pairs is not None:
        row["shared_notes"] = len(trained.keys() & pairs.keys())
        row["shared_instruments"] = len(set(trained.values()) & set(pairs.values()))
    return row


def evaluate_runs(
    runs: Sequence[str | os.PathLike[str]],
    pairs_dir: str | os.PathLike[str],
    n_pairs: int = 32,
    alpha: float | tuple[float, ...] | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    segment_seconds: float = EVAL_SEGMENT_SECONDS,
    speed_seconds: float = 10.0,
    speed_repeats: int = 3,
    style_notes: int = 1,
    style_clips: bool = False,
) -> dict[str, Any]:
    """Mean metrics per run on the same ``n_pairs`` held-out transfer triples.

    The triples (``segment_seconds`` crops, default the U-Net's 2.1 s chunk) are drawn
    from ``pairs_dir`` (NSynth layout) with a generator seeded by ``seed``, so every run,
    of either engine, sees the same pairs (a run given twice is scored once). With
    ``style_notes`` = k > 1 each style clip is a palette of k notes of the target
    instrument (:class:`~mambakit.timbre.data.PairedNotes`; the same content, target and
    first style note as with one; the interval breakdown uses the nearest), one clip end to
    end, or with ``style_clips`` one clip per note (a list, as from several files). ``alpha``
    goes to runs of the U-Net engine; scaffold runs take their default style strength (1)
    unless it is one number. A run
    whose training set shares notes with ``pairs_dir`` gets a warning (the pairs are not
    held out for it).

    Speed, side by side: each run also transfers one ``speed_seconds`` content clip (held-
    out notes end to end, the same clip for every run; 0 skips it) through its chunked
    any-length path, ``speed_repeats`` times after a warm-up; ``x_realtime`` is audio
    seconds per wall second of the median call (:class:`TransferReport`'s figure).

    Returns ``{"kind": "timbre-eval", "pairs_dir", "n_pairs", "alpha", "seed", "runs":
    [row, ...], "reference": row}``; a run's row holds ``run``, ``name``, the
    :func:`run_info` labels (``objective``, ...), ``pairs`` (how many were scored) and the
    mean of every metric in :data:`METRICS`, and ``style_gain_per_pair`` (in pair order,
    the same pairs for every run: for paired comparisons). ``reference`` scores the
    targets themselves as outputs (a perfect transfer) on the first run's pairs (its
    reconstruction metrics are NaN: there is no model).
    """
    rows: list[dict[str, Any]] = []
    reference: list[dict[str, float]] = []
    for run in dict.fromkeys(str(r) for r in runs):
        info = run_info(run, pairs_dir)
        if info["shared_notes"]:
            warnings.warn(
                f"{run}: {info['shared_notes']} notes of {pairs_dir} are in its training set "
                f"({info['train_data']}); those pairs are not held out",
                stacklevel=2,
            )
        tt = TimbreTransfer.from_pretrained(run, device=device, progress=False)
        sr = tt.sample_rate
        run_alpha = alpha if tt.engine == "unet" or isinstance(alpha, float) else None
        data = PairedNotes(
            pairs_dir, sample_rate=sr, segment_seconds=segment_seconds, reconstruction_ratio=0,
            style_notes=style_notes,
        )
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(data), generator=g).tolist()
        scored, intervals = [], []
        for index in tqdm(order[:n_pairs], desc=f"eval {Path(run).name}", disable=not progress):
            item = data.sample(index, g)
            if not item["transfer"]:
                continue  # no other instrument plays this pitch
            content_index, style_index, _ = item["indices"].tolist()
            intervals.append(data.records[content_index].pitch - data.records[style_index].pitch)
            content, target = item["content"][0], item["target"][0]
            with warnings.catch_warnings():  # a decaying note's quiet tail: not our concern
                warnings.simplefilter("ignore")
                style = item["style"]
                if style_clips:  # the palette's crops, each its own clip
                    style = list(style.split(data.segment, dim=-1))
                out, _ = tt.transfer(item["content"], style, alpha=run_alpha, sr=sr)
                recon, _ = tt.transfer(item["content"], None, sr=sr)
            scored.append(pair_metrics(out[0, 0], content, target, sr, recon[0, 0]))
            if not rows:
                reference.append(pair_metrics(target, content, target, sr))
        if not scored:
            raise ValueError(
                f"{pairs_dir}: no transfer pairs (need >= 2 instruments sharing a pitch)"
            )
        means = {k: float(np.mean([r[k] for r in scored])) for k in METRICS}
        speed = _speed(tt, data, speed_seconds, speed_repeats) if speed_seconds > 0 else {}
        rows.append({"run": run, "name": Path(run).name or run, "engine": tt.engine, **info,
                     **speed,
                     "pairs": len(scored), **means,
                     "style_gain_per_pair": [r["style_gain"] for r in scored],
                     "interval_per_pair": intervals,
                     "style_gain_by_interval": gain_by_interval(
                         [r["style_gain"] for r in scored], intervals)})  # fmt: skip
    means = {k: float(np.mean([r[k] for r in reference])) for k in METRICS}
    return {
        "kind": KIND,
        "pairs_dir": str(pairs_dir),
        "n_pairs": n_pairs,
        "segment_seconds": segment_seconds,
        "style_notes": style_notes,
        "style_clips": style_clips,
        "alpha": alpha,
        "seed": seed,
        "runs": rows,
        "reference": {"name": REFERENCE_NAME, "pairs": len(reference), **means},
    }


def _speed(tt: TimbreTransfer, data: PairedNotes, seconds: float, repeats: int) -> dict:
    """``{"x_realtime", "speed_seconds", "speed_chunks"}`` of ``tt`` on ``seconds`` of the
    set's notes end to end (in record order, so every run gets the same clip), styled by
    the last record's note."""
    import time

    n = int(round(seconds * data.sample_rate))
    parts, total, index = [], 0, 0
    while total < n:
        note = data.audio(index % len(data))
        parts.append(note)
        total += note.shape[-1]
        index += 1
    content = torch.cat(parts, dim=-1)[:, :n]
    style = data.audio(len(data) - 1)
    walls = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats + 1):  # the first call warms up
            started = time.perf_counter()
            tt.transfer(content, style, sr=data.sample_rate)
            walls.append(time.perf_counter() - started)
    wall = float(np.median(walls[1:])) if repeats > 0 else walls[0]
    return {
        "x_realtime": seconds / wall,
        "speed_seconds": seconds,
        "speed_chunks": tt.last_report.chunks,
    }


def gain_by_interval(gains: Sequence[float], intervals: Sequence[int]) -> list[dict[str, Any]]:
    """Mean style gain of the pairs whose style note lies ``lo .. hi`` semitones (either
    way) from the content, per band of :data:`INTERVAL_BANDS`:
    ``[{"lo", "hi", "pairs", "style_gain"}]`` (``style_gain`` None for an empty band)."""
    bands = []
    for lo, hi in INTERVAL_BANDS:
        inside = [g for g, i in zip(gains, intervals) if lo <= abs(i) <= hi]
        mean = float(np.mean(inside)) if inside else None
        bands.append({"lo": lo, "hi": hi, "pairs": len(inside), "style_gain": mean})
    return bands


def _band_gain(row: dict[str, Any], b: int) -> float | None:
    """Band ``b``'s style gain in a run's row (None where the row has no such band: a
    result saved before the breakdown existed)."""
    bands = row.get("style_gain_by_interval") or []
    return bands[b]["style_gain"] if b < len(bands) else None


def _band_name(band: dict[str, Any]) -> str:
    return f"> {band['lo'] - 1}" if band["hi"] >= 127 else f"{band['lo']}-{band['hi']}"


def _cell(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _heldout_cell(row: dict[str, Any]) -> str:
    notes, instruments = row.get("shared_notes"), row.get("shared_instruments")
    if notes is None:
        return "unknown"
    if notes:
        return f"no ({notes} notes in training)"
    return "yes" if not instruments else f"yes ({instruments} instruments seen in training)"


def losses_label(adversarial: bool | None, mfcc_weight: float = 0.0) -> str:
    """What a run trained on, from its ``adversarial`` flag and ``mfcc_weight``
    (:func:`run_info`)."""
    if adversarial is None:
        return "unknown"
    label = "GAN + mel + STFT" if adversarial else "mel + STFT"
    return f"{label} + {mfcc_weight:g} x MFCC stats" if mfcc_weight else label


def evaluation_markdown(result: dict[str, Any]) -> str:
    """Runs as columns, labels then metrics as rows (arrows say which direction is better);
    the last column is the reference (the targets as outputs) when there is one."""
    runs = result["runs"]
    reference = [result["reference"]] if result.get("reference") else []
    columns = runs + reference
    keys = [f"run{i}" for i in range(len(columns))]

    def row(name: str, cells: list[str]) -> dict[str, str]:
        return {"metric": name, **dict(zip(keys, cells))}

    labels = {
        "engine": lambda r: r.get("engine") or "unet",
        "objective": lambda r: r.get("objective") or "unknown",
        "losses": lambda r: losses_label(r.get("adversarial"), r.get("mfcc_weight") or 0.0),
        "held out": _heldout_cell,
        "trained steps": lambda r: str(r.get("trained_steps") or "?"),
    }  # fmt: skip
    # no model behind the reference: no labels
    rows = [row(label, [cell(r) for r in runs] + ["-"] * len(reference))
            for label, cell in labels.items()]  # fmt: skip
    rows.append(row("pairs", [str(r["pairs"]) for r in columns]))
    notes = result.get("style_notes", 1)
    style_clip = "one note" if notes == 1 else f"{notes} notes (a scale)"
    if notes > 1 and result.get("style_clips"):
        style_clip = f"{notes} notes, one clip each"
    rows.append(row("style clip", [style_clip] * len(columns)))
    for metric, higher in METRICS.items():
        rows.append(
            row(f"{metric}{' ↑' if higher else ' ↓'}", [_cell(r.get(metric)) for r in columns])
        )
    for b, band in enumerate(runs[0].get("style_gain_by_interval") or []):
        cells = [_cell(_band_gain(r, b)) for r in runs]
        name = f"style_gain, style {_band_name(band)} semitones away ({band['pairs']} pairs) ↑"
        rows.append(row(name, cells + ["-"] * len(reference)))
    if any("x_realtime" in r for r in runs):
        seconds = next(r["speed_seconds"] for r in runs if "x_realtime" in r)
        cells = [_cell(r.get("x_realtime")) for r in runs] + ["-"] * len(reference)
        rows.append(row(f"x real time, {seconds:g} s content ↑", cells))
    return markdown_table(rows, [("metric", "metric"), *zip(keys, (r["name"] for r in columns))])
