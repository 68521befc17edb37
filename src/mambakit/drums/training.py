"""Train the MambaKit drum model on a folder of one-shots (or any ``DrumDataset``).

Objective (seed section 3.4, "dual supervision"): for a clip x with its scaffolding
(sine anchor, ADSR envelope, tonal mask), draw t uniformly in [1, T] and noise z, build
x_t by equation 2 and the envelope channel by equation 3, and ask the model for both
the clean signal and the injected noise:

    L = w_x0 |x0_hat - x|_1 + w_stft MRSTFT(x0_hat, x) + w_eps mean(beta_t^2 (eps_hat - z)^2)

The noise term is weighted by beta_t^2 because at small t the noise hardly changes x_t
and cannot be recovered (its error costs beta_t * |eps_hat - z| in the sample). The tag
is replaced by the null token with probability ``cfg_dropout`` (classifier-free guidance).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mambakit.drums.config import DrumConfig
from mambakit.drums.data import DrumDataset, load_corpus
from mambakit.drums.model import DrumDiffusionModel
from mambakit.drums.pipeline import DEFAULTS_NAME
from mambakit.drums.tags import TAGS
from mambakit.dsp import ADSR, MultiResolutionSTFTLoss, render_adsr, sine_anchor
from mambakit.pretrained import resolve_pretrained_path
from mambakit.train import FitSummary, TrainConfig, Trainer


class ScaffoldedDrums(Dataset):
    """A :class:`DrumDataset` plus the deterministic scaffolding of each clip: the sine
    anchor of equation 1 and the rendered ADSR envelope, both ``[1, T]``."""

    def __init__(self, base: DrumDataset, n_samples: int, sr: int) -> None:
        self.base, self.n, self.sr = base, n_samples, sr
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i not in self._cache:  # the corpus is small; keep decoded items in memory
            item = dict(self.base[i])
            n = self.n
            item["audio"] = _fit(item["audio"], n)
            env = _fit(item["pitch_env"][None], n)[0]
            item["sine"] = sine_anchor(item["pitch_class"], item["octave"], env, self.sr)[None]
            item["envelope"] = render_adsr(ADSR.from_vector(item["adsr"]), n, self.sr)[None]
            self._cache[i] = item
        return self._cache[i]


def _fit(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.pad(x[..., :n], (0, max(0, n - x.shape[-1])))


def decay_matched_adsr(adsr: ADSR, decay_10_s: float, n_samples: int, sr: int) -> ADSR:
    """``adsr`` with its decay, hold and release times scaled by one factor so that the
    rendered curve stays under 10 % of its peak from ``decay_10_s`` seconds on.

    Why: the element-wise median of per-clip ADSR fits is not the typical sound's length
    (one exponential fitted to a click + body, or to a fast drop and a long tail, misses
    the 10 % point either way). The default envelope of a tag is the median fit reshaped
    to ring exactly as long as the library's median 10 %-decay time.
    """
    return _scaled(adsr, _matching_scale(adsr, decay_10_s, n_samples, sr))


def _matching_scale(adsr: ADSR, decay_10_s: float, n_samples: int, sr: int) -> float:
    """The factor on decay, hold and release times at which the rendered ``adsr`` first
    stays under 10 % of its peak from ``decay_10_s`` on (within 1e-2 .. 1e2; a
    ``decay_10_s`` of the clip length gives the factor at which the curve first stays
    above 10 % to the end of the clip)."""

    def t10(scale: float) -> float:
        curve = render_adsr(_scaled(adsr, scale), n_samples, sr).numpy()
        above = np.nonzero(curve >= 0.1 * curve.max())[0]
        return (above[-1] + 1) / sr

    lo, hi = math.log(1e-2), math.log(1e2)
    for _ in range(40):  # t10 grows with the scale: bisect it in log space
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t10(math.exp(mid)) < decay_10_s else (lo, mid)
    return math.exp(0.5 * (lo + hi))


def stretched_adsr(adsr: ADSR, stretch: float, n_samples: int, sr: int) -> ADSR:
    """``adsr`` made to ring longer (``stretch`` > 1) or shorter (< 1) by one factor, a
    control that keeps working past the end of the clip (``n_samples`` at ``sr`` Hz).

    Decay, hold and release times are multiplied by ``stretch`` up to the factor at which
    the rendered envelope stays above 10 % of its peak to the clip's end (at least 1).
    Past that point longer times change almost nothing inside the clip, and a model
    conditioned on them stops ringing longer (the shipped model's cymbal, issue 14), so
    the rest of the stretch raises the sustain level instead: its distance to full level
    shrinks by the same factor, ``1 - (1 - sustain) * open / stretch``. The result grows
    monotonically longer with ``stretch`` and is ``adsr`` itself at ``stretch = 1``.
    """
    if stretch <= 0:
        raise ValueError(f"stretch must be > 0, got {stretch}")
    clip_s = n_samples / sr
    open_scale = max(1.0, _matching_scale(adsr, clip_s, n_samples, sr))
    if stretch <= open_scale:
        return _scaled(adsr, stretch)
    lifted = 1.0 - (1.0 - adsr.sustain_level) * open_scale / stretch
    return replace(_scaled(adsr, open_scale), sustain_level=lifted)


def tag_defaults(dataset: DrumDataset) -> dict[str, dict[str, Any]]:
    """Typical controls per tag in the training set (used when a user gives none): the
    median note, pitch sweep and tonal flag, and the median ADSR fit reshaped to the
    library's median 10 %-decay time (:func:`decay_matched_adsr`, stored as ``decay_10_s``)."""
    from mambakit.eval.features import decay_time_s

    per_tag: dict[str, list[dict[str, torch.Tensor]]] = {}
    for i in range(len(dataset)):
        per_tag.setdefault(dataset.tags[i], []).append(dataset[i])
    out = {}
    for tag, items in per_tag.items():
        drops = [float(it["pitch_env"][:32].mean()) for it in items]
        sr = dataset.config.sr
        decays = []
        for it, drop in zip(items, drops):
            env = it["pitch_env"].numpy()
            below = np.nonzero(np.abs(env) < abs(drop) / math.e)[0] if abs(drop) > 0.5 else []
            decays.append(below[0] / sr if len(below) else 0.04)
        audio = [it["audio"][0].numpy() for it in items]
        decay_10 = float(np.median([decay_time_s(a, sr) for a in audio]))
        median_adsr = ADSR.from_vector(np.median(np.stack([it["adsr"].numpy() for it in items]), 0))
        adsr = decay_matched_adsr(median_adsr, decay_10, audio[0].shape[-1], sr)
        out[tag] = {
            "midi_note": int(np.median([float(it["midi_note"]) for it in items])),
            "adsr": [float(v) for v in adsr.to_vector()],
            "decay_10_s": decay_10,
            "pitch_drop": float(np.median(drops)),
            "pitch_decay_s": float(np.median(decays)),
            "tonal": bool(np.mean([float(it["tonal"]) for it in items]) >= 0.5),
        }
    return out


def make_loss(config: DrumConfig):
    """The dual-supervision loss as a ``loss_fn(model, batch, stage)`` for the Trainer."""
    schedule = config.make_schedule()
    stft_loss = MultiResolutionSTFTLoss(fft_sizes=(256, 1024, 2048))
    null_tag = len(config.tags)

    def loss_fn(model, batch, stage):
        x = batch["audio"]
        b = x.shape[0]
        t = torch.randint(1, config.train_timesteps + 1, (b,))
        noise = torch.randn_like(x)
        mask = batch["envelope"] * batch["tonal"].view(b, 1, 1)
        x_t = schedule.add_noise(x, noise, batch["sine"], mask, t)
        env_t = schedule.adsr_at(batch["envelope"], t)
        tag = torch.where(torch.rand(b) < config.cfg_dropout, null_tag, batch["tag"])
        x0_hat, eps_hat = model(
            x_t, batch["sine"], env_t, t.float(), batch["adsr"], batch["pitch_class"],
            batch["octave"], tag, gate=batch["envelope"], excitation=torch.randn_like(x),
        )  # fmt: skip
        beta = schedule.betas[t].view(b, 1, 1)
        l1 = (x0_hat - x).abs().mean()
        spec = stft_loss(x0_hat.squeeze(1), x.squeeze(1))
        eps = (beta**2 * (eps_hat - noise) ** 2).mean()
        loss = config.w_x0 * l1 + config.w_stft * spec + config.w_eps * eps
        return loss, {"l1": l1.item(), "stft": spec.item(), "eps": eps.item()}

    return loss_fn


def drums_train_config(
    steps: int | None = None, minutes: float | None = None, **fields: Any
) -> TrainConfig:
    """The drums' training settings for a budget of ``steps``, ``minutes`` or both
    (:meth:`TrainConfig.from_budget`): AdamW at lr 2e-3 without weight decay, batches of 8,
    and EMA weights (decay 0.99) for runs of 200 steps or more and for time-only runs.
    ``fields`` override any :class:`TrainConfig` field (``batch_size``, ``seed``, ...)."""
    long_run = steps is None or steps >= 200
    defaults: dict[str, Any] = {
        "lr": 2e-3, "weight_decay": 0.0, "batch_size": 8, "resume": False,
        "ema_decay": 0.99 if long_run else None,
    }  # fmt: skip
    return TrainConfig.from_budget(steps, minutes, **{**defaults, **fields})


def train_drums(
    data: str | os.PathLike[str] | DrumDataset,
    out_dir: str | os.PathLike[str],
    train: TrainConfig,
    preset: str | DrumConfig = "tiny",
    *,
    tags_csv: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    init_from: str | os.PathLike[str] | None = None,
) -> FitSummary:
    """Train on ``data`` (a folder of one-shots or a dataset) into ``out_dir`` with the
    budget and optimiser of ``train`` (e.g. :func:`drums_train_config`); its ``seed`` also
    draws the initial weights, and its batch size is capped at the number of clips.

    ``init_from``: fine-tune a trained model (a run folder or a packaged name such as
    ``"gm-drums"``) instead of starting from random weights; its config replaces ``preset``.
    Returns the trainer's summary; ``DrumSynth.from_pretrained(out_dir)`` loads the result.
    """
    out = Path(out_dir)
    dataset = (
        data
        if isinstance(data, DrumDataset)
        else load_corpus(
            data, tags_csv=tags_csv, cache_dir=cache_dir, workers=workers, progress=train.progress
        )
    )
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    torch.manual_seed(train.seed)
    if init_from is not None:
        model = DrumDiffusionModel.from_pretrained(resolve_pretrained_path(init_from))
        config = model.config
        if tuple(config.tags) != tuple(TAGS):
            raise ValueError(f"{init_from} was trained on other tags ({', '.join(config.tags)})")
    else:
        config = preset if isinstance(preset, DrumConfig) else DrumConfig.preset(preset)
        config = config.with_(tags=tuple(TAGS))
        model = DrumDiffusionModel(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEFAULTS_NAME).write_text(json.dumps(tag_defaults(dataset), indent=2))

    train_set = ScaffoldedDrums(dataset, config.n_samples, config.sample_rate)
    loss_fn = make_loss(config)
    train = replace(train, batch_size=min(train.batch_size, len(dataset)))
    return Trainer(model, loss_fn, train_set, train, out).fit()


def solve_stretch(
    decay_s: Callable[[float], float],
    target_s: float,
    iterations: int = 8,
    tolerance: float = 0.03,
    max_step: float = 4.0,
) -> tuple[float, float]:
    """The stretch at which ``decay_s(stretch)`` (a measured decay time, seconds) comes
    closest to ``target_s`` -> ``(stretch, decay_s at it)``, the best of at most
    ``iterations`` measurements.

    The root of ``log(decay_s / target_s)`` in ``log(stretch)``, from stretch 1: secant
    steps (the first one assumes the decay grows in proportion to the stretch), each at
    most a factor ``max_step``, until the target is bracketed, then regula falsi with the
    Illinois correction, which keeps shrinking the bracket even where the measured curve
    is flat on one side (a model that ignores the control over a range). Assumes the
    decay grows with the stretch (where the measured curve is flat or falls, the search
    steps that way by ``max_step``). Stops once the ratio is within ``1 +- tolerance``.
    """
    if not target_s > 0:
        raise ValueError(f"target_s must be > 0 s, got {target_s}")
    seen: list[tuple[float, float]] = []  # (log stretch, log(decay / target))
    max_u = math.log(max_step)

    def measure(u: float) -> float:
        seen.append((u, math.log(max(decay_s(math.exp(u)), 1e-6) / target_s)))
        return seen[-1][1]

    def done() -> bool:
        return len(seen) >= iterations or abs(seen[-1][1]) <= math.log1p(tolerance)

    a, fa = 0.0, measure(0.0)
    if not done():
        b = -float(np.clip(fa, -max_u, max_u))
        fb = measure(b)
        while fa * fb > 0 and not done():  # not bracketed yet: step outward
            slope = (fb - fa) / (b - a)
            step = -fb / slope if slope > 0 else -math.copysign(max_u, fb)  # flat: full step
            a, fa, b = b, fb, b + float(np.clip(step, -max_u, max_u))
            fb = measure(b)
        while fa * fb < 0 and not done():  # bracketed: Illinois regula falsi
            c = b - fb * (b - a) / (fb - fa)
            fc = measure(c)
            if fc * fb > 0:  # the same side as b: a stays, with half its weight
                fa /= 2
            else:
                a, fa = b, fb
            b, fb = c, fc
    u, f = min(seen, key=lambda p: abs(p[1]))
    return math.exp(u), target_s * math.exp(f)


@dataclass(frozen=True)
class DecayCalibration:
    """Result of :func:`calibrate_decay_defaults`: per tag, the JSON-ready default controls
    (the fields of :class:`~mambakit.drums.pipeline.TagDefaults`, as written to
    :data:`DEFAULTS_NAME`), and the generated / library 10 %-decay ratio they reach on the
    calibration seeds (1 = rings as long as the library)."""

    defaults: dict[str, dict[str, Any]]
    ratios: dict[str, float]


def calibrate_decay_defaults(
    synth: Any,
    iterations: int = 8,
    seeds: int = 8,
    steps: int | None = None,
    cfg: float | None = None,
) -> DecayCalibration:
    """Per-tag default envelopes under which the model rings as long as the library.

    The model shapes its output inside the ADSR gate (a kick's click decays faster than
    its body; the shipped model's cymbal stops growing once the gate stays open for the
    whole clip), so a default ADSR whose own 10 %-decay time equals the library's
    (``decay_10_s``, from :func:`tag_defaults`) still gives a shorter sound. So the model
    itself is measured: each tag's default is :func:`stretched_adsr` by the factor that
    :func:`solve_stretch` finds in at most ``iterations`` rounds, where each round is the
    median 10 %-decay time of ``seeds`` tag-only generations (fixed seeds, so the curve
    it solves on does not jitter between rounds). Guidance changes how long the model
    rings, so the envelopes are fitted under the guidance scale they will be used with:
    ``cfg`` (stored as every tag's default) or else each tag's current default.
    """
    n, sr = synth.config.n_samples, synth.sample_rate
    defaults, ratios = {}, {}
    for tag, default in sorted(synth.defaults.items()):
        if cfg is not None:
            default = replace(default, cfg=float(cfg))
        base = ADSR.from_vector(default.adsr)
        measure = partial(
            _generated_decay_s, synth, tag, base, seeds=seeds, steps=steps, cfg=default.cfg
        )
        stretch, made = solve_stretch(measure, default.decay_10_s, iterations)
        adsr = stretched_adsr(base, stretch, n, sr)
        calibrated = replace(default, adsr=tuple(float(v) for v in adsr.to_vector()))
        defaults[tag] = asdict(calibrated) | {"adsr": list(calibrated.adsr)}
        ratios[tag] = made / default.decay_10_s
    return DecayCalibration(defaults, ratios)


def _generated_decay_s(
    synth: Any, tag: str, base: ADSR, stretch: float, seeds: int, steps: int | None, cfg: float
) -> float:
    """Median 10 %-decay time (s) of ``seeds`` tag-only generations (seeds 30000, ...)
    under ``base`` stretched by ``stretch`` (:func:`stretched_adsr`), guidance ``cfg``."""
    from mambakit.eval.features import decay_time_s

    adsr = stretched_adsr(base, stretch, synth.config.n_samples, synth.sample_rate)
    audio, sr = synth.generate(tag=tag, adsr=adsr, steps=steps, cfg=cfg, seed=30_000, n=seeds)
    return float(np.median([decay_time_s(clip[0].numpy(), sr) for clip in audio]))


def _scaled(adsr: ADSR, scale: float) -> ADSR:
    """``adsr`` with decay, release and hold times multiplied by ``scale``."""
    return ADSR(adsr.attack_s, adsr.decay_s * scale, adsr.sustain_level,
                adsr.release_s * scale, adsr.hold_s * scale)  # fmt: skip
