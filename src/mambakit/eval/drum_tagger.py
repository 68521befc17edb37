"""An independent tag classifier for drum one-shots: how ``eval drums`` hears a tag.

The tag accuracy of a drum model is only as meaningful as the classifier that judges
it: it is the share of generated clips this classifier files under their requested tag,
and it cannot exceed the classifier's accuracy on real clips of the same kits. The
classifier therefore knows nothing of the drum model (hand-made descriptors, no shared
weights) and is fitted on the real training library only, deterministically.

Descriptor (:func:`tag_descriptor`), per clip, all from a 1024-point / hop-256 log-mel
spectrogram in dB below the clip's loudest bin (floored at -80 dB) and the short-time
energy:

- the log-mel spectrum in four windows after the onset (0-12, 12-46, 46-139 and
  139-418 ms): how the spectrum of the click, the body and the tail differ;
- the energy-weighted mean and the std over time of the log-mel spectrum;
- the envelope: log time until the energy first falls 6, 12, 20, 30 and 40 dB below
  its peak, and the log time of the peak;
- spectral centroid, flatness and the share of energy below 200 Hz in the same four
  windows (bright/dark, noisy/tonal, and the low body of kicks and toms).

Classifier (:class:`DrumTagClassifier`): descriptors standardised with the library's
mean and std, then multinomial logistic regression with an L2 penalty and class weights
inversely proportional to the class counts (a tag with few clips is not drowned out),
fitted by full-batch L-BFGS in float64 from zero weights, so the same library gives the
same classifier. Its regularisation strength was chosen by leave-one-kit-out accuracy
on the training kits (:func:`group_cross_validated_accuracy`), never on generated clips
nor on the held-out kits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mambakit.eval.features import as_mono_numpy, log_mel_frames, short_time_energy_db

HOP = 256
#: Frame boundaries of the descriptor's time windows (hop 256 at 44.1 kHz: 0, 12, 46,
#: 139, 418 ms), scaled to other sample rates by :func:`_window_frames`.
WINDOW_EDGES_S = (0.0, 0.0116, 0.0464, 0.1393, 0.4180)
ENERGY_DROPS_DB = (6.0, 12.0, 20.0, 30.0, 40.0)
LOW_BODY_HZ = 200.0


def _window_frames(sr: int, frames: int) -> list[tuple[int, int]]:
    """``[start, stop)`` frame ranges of the descriptor windows, each at least one frame."""
    edges = [int(round(s * sr / HOP)) for s in WINDOW_EDGES_S]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        lo = min(lo, frames - 1)
        out.append((lo, max(lo + 1, min(hi, frames))))
    return out


def _power_frames(x: np.ndarray, n_fft: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectra ``[bins, frames]`` (hop :data:`HOP`) and bin freqs
    as a fraction of the sample rate."""
    pad = np.pad(x, (n_fft // 2, n_fft // 2))
    frames = 1 + (len(pad) - n_fft) // HOP
    idx = np.arange(n_fft)[None] + HOP * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(pad[idx] * np.hanning(n_fft), axis=1)) ** 2
    return spec.T, np.fft.rfftfreq(n_fft)


def _energy_drop_times(x: np.ndarray, sr: int) -> list[float]:
    """Log seconds from the start until the 5 ms energy first falls each of
    :data:`ENERGY_DROPS_DB` below its peak (the clip length if it never does), and the
    log time of the peak."""
    db, hop = short_time_energy_db(x, sr)
    peak = int(np.argmax(db))
    out = []
    for drop in ENERGY_DROPS_DB:
        below = np.nonzero(db[peak:] < db[peak] - drop)[0]
        frames = peak + (below[0] if len(below) else len(db) - peak)
        out.append(np.log(frames * hop / sr + 1e-3))
    return out + [np.log(peak * hop / sr + 1e-3)]


def tag_descriptor(audio: np.ndarray | torch.Tensor, sr: int) -> np.ndarray:
    """The classifier's fixed-length descriptor of one one-shot ``[T]`` (see the module
    docstring); float64 ``[D]``, the same ``D`` for every clip at one ``sr``."""
    x = as_mono_numpy(audio)
    mel = log_mel_frames(x, sr)  # [mels, frames], dB below the loudest bin
    power, freq = _power_frames(x)
    frames = min(mel.shape[1], power.shape[1])
    mel, power = mel[:, :frames], power[:, :frames]
    windows = _window_frames(sr, frames)
    weight = 10.0 ** (mel.max(axis=0) / 10.0)  # frame loudness, 1 at the loudest frame
    parts = [mel[:, a:b].mean(axis=1) for a, b in windows]
    parts += [(mel * weight).sum(axis=1) / weight.sum(), mel.std(axis=1)]
    low = freq * sr < LOW_BODY_HZ
    for a, b in windows:
        p = power[:, a:b].sum(axis=1) + 1e-20
        centroid_hz = float((p * freq).sum() / p.sum()) * sr
        flatness = float(np.exp(np.log(p).mean()) / p.mean())
        parts.append(
            [np.log(centroid_hz + 1.0), np.log(flatness + 1e-12), np.log(p[low].sum() / p.sum())]
        )
    parts.append(_energy_drop_times(x, sr))
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])


class DrumTagClassifier:
    """Standardised descriptors -> multinomial logistic regression (L2, class-balanced).

    ``l2`` is the penalty on the weights relative to the mean data loss; larger values
    give smoother, more kit-independent decisions. :meth:`fit` is deterministic.
    """

    def __init__(self, l2: float = 0.1, max_iter: int = 500) -> None:
        self.l2, self.max_iter = l2, max_iter
        self.classes: list[str] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.weights: np.ndarray | None = None  # [D + 1, classes], the last row the bias

    def fit(self, descriptors: np.ndarray, labels: Sequence[str]) -> DrumTagClassifier:
        if len(descriptors) != len(labels) or len(labels) == 0:
            raise ValueError("fit needs as many labels as descriptors, and at least one")
        self.classes = sorted(set(labels))
        self.mean, self.std = descriptors.mean(axis=0), descriptors.std(axis=0) + 1e-6
        z = torch.as_tensor(self._design(descriptors))
        y = torch.tensor([self.classes.index(t) for t in labels])
        counts = torch.bincount(y, minlength=len(self.classes)).double()
        sample_weight = (len(y) / (len(self.classes) * counts))[y]
        w = torch.zeros(z.shape[1], len(self.classes), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w], lr=1.0, max_iter=self.max_iter, tolerance_grad=1e-9,
            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe",
        )  # fmt: skip

        def objective() -> torch.Tensor:
            opt.zero_grad()
            nll = torch.nn.functional.cross_entropy(z @ w, y, reduction="none")
            loss = (sample_weight * nll).mean() + self.l2 * w[:-1].pow(2).sum()
            loss.backward()
            return loss

        opt.step(objective)
        self.weights = w.detach().numpy()
        return self

    def _design(self, descriptors: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(descriptors) - self.mean) / self.std
        return np.concatenate([z, np.ones((len(z), 1))], axis=1)

    def predict(self, descriptors: np.ndarray) -> list[str]:
        """The most probable tag of each descriptor ``[N, D]``."""
        if self.weights is None:
            raise RuntimeError("classifier is not fitted")
        logits = self._design(descriptors) @ self.weights
        return [self.classes[i] for i in logits.argmax(axis=1)]


def fit_tag_classifier(
    audios: Sequence[np.ndarray], labels: Sequence[str], sr: int, l2: float = 0.1
) -> DrumTagClassifier:
    """:class:`DrumTagClassifier` fitted on the descriptors of real clips ``[T]`` each."""
    return DrumTagClassifier(l2).fit(np.stack([tag_descriptor(a, sr) for a in audios]), labels)


def group_cross_validated_accuracy(
    descriptors: np.ndarray, labels: Sequence[str], groups: Sequence[str], l2: float = 0.1
) -> float:
    """Leave-one-group-out accuracy (e.g. one kit out at a time): fit on the other
    groups, predict the left-out one; the share of all clips predicted right. How the
    classifier is expected to do on a kit it never saw."""
    if not len(descriptors) == len(labels) == len(groups):
        raise ValueError("need one label and one group per descriptor")
    lab, grp = np.asarray(labels), np.asarray(groups)
    hits = 0
    for g in sorted(set(groups)):
        out = grp == g
        clf = DrumTagClassifier(l2).fit(descriptors[~out], list(lab[~out]))
        hits += int(np.sum(np.asarray(clf.predict(descriptors[out])) == lab[out]))
    return hits / len(lab)


def kit_cross_validation(library: Any, root: str | Path, l2: float = 0.1) -> dict[str, Any]:
    """Leave-one-kit-out accuracy of the classifier on a ``DrumDataset`` read from
    ``root``, where a clip's kit is its first folder below ``root`` in a ``kit/tag/x.wav``
    tree (one kit for a flat ``tag/x.wav`` folder)
    -> ``{"l2", "clips", "kits", "leave_one_kit_out_accuracy"}`` (None with fewer than two
    kits). The honest estimate for kits unlike any in the library; held-out kits that
    share recordings with a training kit score higher."""
    root = Path(root)
    kits = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 2 else ""
            for p in library.paths]  # fmt: skip
    audios = [library[i]["audio"][0] for i in range(len(library))]
    descriptors = np.stack([tag_descriptor(a, library.config.sr) for a in audios])
    accuracy = (
        group_cross_validated_accuracy(descriptors, library.tags, kits, l2)
        if len(set(kits)) > 1
        else None
    )
    return {"l2": l2, "clips": len(kits), "kits": len(set(kits)),
            "leave_one_kit_out_accuracy": accuracy}  # fmt: skip
