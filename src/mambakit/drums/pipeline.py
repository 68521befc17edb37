"""``DrumSynth``: one-shot drums from interpretable controls (the public drums API).

    synth = DrumSynth.from_pretrained("runs/kit")
    audio, sr = synth.generate(tag="kick", note="C1", adsr=ADSR(0.002, 0.3, 0.0, 0.05),
                               pitch_env=(12, 0.04), seed=7, n=4)     # audio: [4, 1, T]

Sampling (seed section 3.4): the clean estimate starts as silence (or as ``init_audio``
for variations, img2img-style); the first sample is equation 2 at the first timestep,
``0 + noise * beta_T + sine * alpha_T * mask``; each step predicts (x0, eps) and re-noises
the predicted x0 to the next timestep (:class:`StructuredDiffusionSchedule.step`). The
same seed gives the same audio.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mambakit.drums.conditioning import resolve_tag
from mambakit.drums.config import DrumConfig
from mambakit.drums.model import DrumDiffusionModel
from mambakit.dsp import ADSR, pitch_env_curve, render_adsr, resample_curve, sine_anchor
from mambakit.pretrained import resolve_pretrained_path
from mambakit.utils import parse_note, resolve_device

DEFAULTS_NAME = "drum_defaults.json"

#: The packaged model loaded when no run is given (``mambakit/weights/gm-drums/``).
DEFAULT_MODEL = "gm-drums"

PitchEnv = np.ndarray | torch.Tensor | tuple[float, float] | None


@dataclass(frozen=True)
class TagDefaults:
    """Typical controls of one tag in the training set, used when not given: medians, and
    an ADSR that rings as long as the library's median ``decay_10_s`` (seconds until the
    envelope stays under 10 % of its peak; see ``drums.training.tag_defaults``), and the
    guidance scale ``cfg`` that :meth:`DrumSynth.generate` uses when given none (1 = off;
    ``drums calibrate --cfg`` sets it and fits the envelope under it)."""

    midi_note: int = 48
    adsr: tuple[float, ...] = (0.002, 0.2, 0.0, 0.05, 0.0)
    decay_10_s: float = 0.2
    pitch_drop: float = 0.0
    pitch_decay_s: float = 0.04
    tonal: bool = True
    cfg: float = 1.0


def load_defaults(run_dir: str | os.PathLike[str]) -> dict[str, TagDefaults]:
    path = Path(run_dir) / DEFAULTS_NAME
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    return {
        tag: TagDefaults(**{k: tuple(x) if k == "adsr" else x for k, x in v.items()})
        for tag, v in raw.items()
    }


class DrumSynth:
    """A trained drum model plus its schedule and per-tag defaults."""

    def __init__(
        self,
        model: DrumDiffusionModel,
        defaults: dict[str, TagDefaults] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config: DrumConfig = model.config
        self.defaults = defaults or {}
        self.schedule = self.config.make_schedule()

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def tags(self) -> tuple[str, ...]:
        return self.config.tags

    @classmethod
    def from_pretrained(
        cls,
        run_dir: str | os.PathLike[str] = DEFAULT_MODEL,
        device: str | torch.device | None = None,
    ) -> DrumSynth:
        """Load ``model.safetensors`` + ``config.json`` (+ ``drum_defaults.json``) of a run
        folder, or of a packaged model by short name; by default the shipped ``gm-drums``
        model (trained on the General MIDI kits of FluidR3_GM, see its MODEL_CARD.md)."""
        path = resolve_pretrained_path(run_dir)
        model = DrumDiffusionModel.from_pretrained(path)
        return cls(model, load_defaults(path), device)

    # -- controls -> tensors ------------------------------------------------------------

    def controls(
        self,
        tag: str,
        note: int | str | None,
        adsr: ADSR | None,
        pitch_env: PitchEnv,
        tonal: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """One set of conditions as batch-1 tensors: sine anchor, envelope and mask
        (``[1, 1, T]``), ADSR vector, pitch class, octave, tag index."""
        d = self.defaults.get(tag, TagDefaults())
        n, sr = self.config.n_samples, self.sample_rate
        midi = parse_note(note) if note is not None else d.midi_note
        adsr = adsr if adsr is not None else ADSR.from_vector(d.adsr)
        if pitch_env is None:
            env_curve = pitch_env_curve(d.pitch_drop, d.pitch_decay_s, n, sr)
        elif isinstance(pitch_env, tuple):
            env_curve = pitch_env_curve(float(pitch_env[0]), float(pitch_env[1]), n, sr)
        else:
            env_curve = torch.as_tensor(np.asarray(pitch_env, dtype=np.float32)).reshape(-1)
            if env_curve.numel() != n:  # e.g. a kit's 1 s curve for a shorter model
                env_curve = resample_curve(env_curve, sr, n, sr)
        tonal = d.tonal if tonal is None else tonal
        envelope = render_adsr(adsr, n, sr)
        sine = sine_anchor(midi % 12, midi // 12, env_curve, sr)
        return {
            "sine": sine.view(1, 1, n),
            "envelope": envelope.view(1, 1, n),
            "mask": (envelope * float(tonal)).view(1, 1, n),
            "adsr": adsr.to_vector()[None],
            "pitch_class": torch.tensor([midi % 12]),
            "octave": torch.tensor([midi // 12]),
            "tag": torch.tensor([self.tags.index(tag)]),
        }

    # -- sampling ------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        cond: dict[str, torch.Tensor],
        init_audio: torch.Tensor | None = None,
        strength: float = 0.6,
        steps: int | None = None,
        cfg: float = 1.0,
        seeds: Sequence[int] = (0,),
        variation: float = 0.0,
    ) -> torch.Tensor:
        """Denoise a batch: ``cond`` tensors have batch 1 or ``len(seeds)``; returns
        ``[len(seeds), 1, T]``. ``init_audio`` ``[1 or B, 1, T]`` starts from that sound
        at ``strength`` (0 = return it unchanged, 1 = ignore it). ``variation`` in [0, 1]
        is the share of fresh noise (drawn from each seed's generator) in every re-noising
        step, DDIM's eta: 0 is the deterministic sampler; more makes seeds differ more."""
        if not 0.0 <= variation <= 1.0:
            raise ValueError(f"variation must lie in [0, 1], got {variation}")
        b, n, dev = len(seeds), self.config.n_samples, self.device
        c = {k: v.to(dev).expand(b, *v.shape[1:]) for k, v in cond.items()}
        self.schedule.set_timesteps(steps or self.config.diffusion_steps)
        timesteps = self.schedule.timesteps
        x0 = torch.zeros(b, 1, n, device=dev)
        if init_audio is not None:
            x0 = init_audio.to(dev).expand(b, 1, n).clone()
            timesteps = self.schedule.timesteps_from_strength(strength)
            if len(timesteps) == 0:
                return x0
        # Per seed: the initial noise, then the excitation of the filtered-noise head.
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        noise = torch.stack([torch.randn(1, n, generator=g) for g in gens]).to(dev)
        excitation = torch.stack([torch.randn(1, n, generator=g) for g in gens]).to(dev)
        sample = self.schedule.add_noise(x0, noise, c["sine"], c["mask"], int(timesteps[0]))
        null_tag = torch.full_like(c["tag"], len(self.tags))
        x0_hat = sample
        for t in timesteps.tolist():
            tt = torch.full((b,), float(t), device=dev)
            env_t = self.schedule.adsr_at(c["envelope"], t)
            args = (c["sine"], env_t, tt, c["adsr"], c["pitch_class"], c["octave"])
            if cfg != 1.0:  # classifier-free guidance: conditional and unconditional in one batch
                both = [torch.cat([a, a]) for a in (sample, *args)]
                gate = torch.cat([c["envelope"], c["envelope"]])
                x0_all, eps_all = self.model(
                    *both, torch.cat([c["tag"], null_tag]), gate=gate,
                    excitation=torch.cat([excitation, excitation]),
                )  # fmt: skip
                (x0_c, x0_u), (e_c, e_u) = x0_all.chunk(2), eps_all.chunk(2)
                x0_hat, eps_hat = x0_u + cfg * (x0_c - x0_u), e_u + cfg * (e_c - e_u)
            else:
                x0_hat, eps_hat = self.model(
                    sample, *args, c["tag"], gate=c["envelope"], excitation=excitation
                )
            if variation > 0:  # per seed, so a seed's take does not depend on the batch
                fresh = torch.stack([torch.randn(1, n, generator=g) for g in gens]).to(dev)
                eps_hat = (1 - variation**2) ** 0.5 * eps_hat + variation * fresh
            sample = self.schedule.step((x0_hat, eps_hat), t, sample, c["sine"], c["mask"])
        return x0_hat.clamp(-1.0, 1.0)

    def generate(
        self,
        tag: str | None = None,
        note: int | str | None = None,
        adsr: ADSR | None = None,
        pitch_env: PitchEnv = None,
        text: str | None = None,
        init_audio: torch.Tensor | np.ndarray | None = None,
        strength: float = 0.6,
        steps: int | None = None,
        cfg: float | None = None,
        seed: int | None = None,
        n: int = 1,
        variation: float = 0.0,
    ) -> tuple[torch.Tensor, int]:
        """Generate ``n`` one-shots -> ``(audio [n, 1, T] float32 on CPU, sample_rate)``.

        Args:
            tag: one of ``self.tags``; or ``text``, a free-text prompt resolved to a tag.
            note: MIDI number or name (``36``, ``"C1"``); default: the tag's typical note.
            adsr: requested amplitude envelope; default: the tag's typical envelope.
            pitch_env: per-sample semitone curve ``[T]`` above the root, or
                ``(drop_semitones, decay_s)``; default: the tag's typical sweep.
            init_audio: ``[T]`` / ``[1, T]`` / ``[1, 1, T]`` at the model's rate for
                variations of a sound, with ``strength`` in [0, 1].
            steps: denoising steps (default ``config.diffusion_steps``); ``cfg``: guidance
                scale (1 = off; default: the tag's, :class:`TagDefaults`); ``seed``: the
                i-th output uses ``seed + i``;
                ``variation``: fresh noise per denoising step (see :meth:`sample`).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        name = resolve_tag(tag, text, self.tags)
        cond = self.controls(name, note, adsr, pitch_env)
        if cfg is None:
            cfg = self.defaults.get(name, TagDefaults()).cfg
        init = None
        if init_audio is not None:
            init = torch.as_tensor(np.asarray(init_audio, dtype=np.float32)).reshape(1, 1, -1)
            t = self.config.n_samples
            init = torch.nn.functional.pad(init[..., :t], (0, max(0, t - init.shape[-1])))
        base = 0 if seed is None else int(seed)
        seeds = [base + i for i in range(n)]
        audio = self.sample(cond, init, strength, steps, cfg, seeds, variation)
        return audio.float().cpu(), self.sample_rate

    def scaffold(
        self,
        tag: str | None = None,
        note: int | str | None = None,
        adsr: ADSR | None = None,
        pitch_env: PitchEnv = None,
        text: str | None = None,
        seed: int | None = None,
        n: int = 1,
        noise_level: float = 0.3,
    ) -> tuple[torch.Tensor, int]:
        """The deterministic scaffold alone: sine anchor x ADSR (tonal tags) plus white noise
        shaped by the same ADSR; the baseline a trained model has to beat."""
        name = resolve_tag(tag, text, self.tags)
        c = self.controls(name, note, adsr, pitch_env)
        base = 0 if seed is None else int(seed)
        noise = torch.stack(
            [
                torch.randn(1, self.config.n_samples, generator=torch.Generator().manual_seed(s))
                for s in range(base, base + n)
            ]
        )
        tonal = float(self.defaults.get(name, TagDefaults()).tonal)
        level = noise_level if tonal else 1.0
        audio = c["envelope"] * (tonal * c["sine"] + level * noise)
        return (0.9 * audio / audio.abs().amax(dim=-1, keepdim=True).clamp_min(1e-6)), (
            self.sample_rate
        )
