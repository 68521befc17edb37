"""Configuration for the structured drum diffusion model (seed sections 3.2-3.4)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mambakit.drums.tags import TAGS


def band_state_size(f_target_hz: float, sample_rate: int, s_min: int = 4, s_max: int = 160) -> int:
    """SSM state size for a log band centred on `f_target_hz`.

    The seed sizes states so one state "remembers" a full period of the band's slowest
    component: ``s_required = 4 * fs / f_target`` samples at the full rate, capped to
    ``[s_min, s_max]`` (4 ... 160). Low bands therefore get big states, high bands small.
    """
    if f_target_hz <= 0:
        raise ValueError(f"f_target_hz must be positive, got {f_target_hz}")
    s_required = 4.0 * sample_rate / f_target_hz
    return int(max(s_min, min(s_max, round(s_required))))


@dataclass(frozen=True)
class DrumConfig:
    """Hyper-parameters of :class:`~mambakit.drums.model.DrumDiffusionModel` and its schedule.

    Units: samples, Hz, seconds. The LogCascade splits the signal into the octave bands of
    :class:`mambakit.dsp.LogBands` (22050 Hz down to ``f_min_hz``, plus the residual below);
    each band runs at its own decimated rate and is then cut into tokens of ``patch`` samples
    so that no band's token rate exceeds ``token_rate_hz``. ``cfg_dropout`` is the probability
    of replacing the tag by the null token in training (classifier-free guidance).
    ``no_sine``, ``no_adsr`` and ``full_res`` are the seed's ablations.

    The clean-signal head always adds ``gain(cond) * sine_anchor`` (a learned gain per
    condition) to its learned residual, so pitch follows the anchor from the first steps.
    ``envelope_gate``: the clean-signal head is multiplied by the requested ADSR curve, so
    the network learns the carrier and texture while the amplitude envelope stays the
    deterministic scaffold (DESIGN principle 1). Without it, a CPU-sized model trained for
    minutes hums at a constant level (measured: envelope correlation 0.58 after 318 steps).
    ``w_x0`` weighs the waveform L1 term, ``w_stft`` the multi-resolution STFT term of the
    clean-signal loss; the phase-blind STFT term is what lets noisy drums (hats, snares)
    keep their texture instead of regressing to their zero-mean waveform.
    ``filtered_noise``: the head also adds a white-noise excitation (drawn from the seed)
    shaped by a learned spectral envelope of ``noise_bins`` log-spaced points: the scaffold's
    "plus noise" made learnable, so hats and cymbals get their spectrum from the tag in a
    few hundred steps, and different seeds give different takes.
    """

    sample_rate: int = 44100
    seconds: float = 1.0
    tags: tuple[str, ...] = field(default_factory=lambda: tuple(TAGS))
    full_rate_channels: int = 8
    band_channels: int = 16
    f_min_hz: float = 43.0
    token_rate_hz: float = 700.0
    n_blocks_per_band: int = 1
    parser_d_state: int = 32
    parser_decimation: int = 64
    cond_dim: int = 64
    # Denoising steps at generation (training is unaffected). The scaffold carries pitch
    # and envelope, so few steps suffice: a 10-minute tiny run scored the same at 3 and 6
    # steps (tag 83 %, pitch 0.1 cents, envelope 0.996) at half the time.
    diffusion_steps: int = 3
    train_timesteps: int = 1000
    cosine_s: float = 0.008
    alpha_max: float = 1.0
    no_sine: bool = False
    no_adsr: bool = False
    full_res: bool = False
    envelope_gate: bool = True
    filtered_noise: bool = True
    noise_bins: int = 64
    cfg_dropout: float = 0.1
    w_eps: float = 1.0
    w_x0: float = 0.3
    w_stft: float = 1.0

    @property
    def n_samples(self) -> int:
        """Clip length in samples."""
        return int(round(self.sample_rate * self.seconds))

    def log_bands(self):  # -> mambakit.dsp.LogBands (imported lazily: config stays light)
        from mambakit.dsp import LogBands

        return LogBands(sr=self.sample_rate, f_min=self.f_min_hz)

    def make_schedule(self):  # -> StructuredDiffusionSchedule
        from mambakit.drums.schedule import StructuredDiffusionSchedule

        return StructuredDiffusionSchedule(self.train_timesteps, self.alpha_max, self.cosine_s)

    @property
    def n_bands(self) -> int:
        return len(self.log_bands())

    def band_state_sizes(self) -> list[int]:
        """State size per band (highest band first), from each band's lowest frequency."""
        return [
            band_state_size(b.f_lo if b.f_lo > 0 else b.f_hi / 2, self.sample_rate)
            for b in self.log_bands().bands
        ]

    def with_(self, **changes: object) -> DrumConfig:
        """Copy with some fields changed (e.g. ``tiny().with_(seconds=0.1)``)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def tiny(cls) -> DrumConfig:
        """Smallest preset: the CLI default, meets the CPU speed target."""
        return cls(full_rate_channels=8, band_channels=16, cond_dim=32)

    @classmethod
    def small(cls) -> DrumConfig:
        return cls(full_rate_channels=16, band_channels=32, cond_dim=64)

    @classmethod
    def base(cls) -> DrumConfig:
        return cls(
            full_rate_channels=32,
            band_channels=64,
            n_blocks_per_band=2,
            cond_dim=128,
            diffusion_steps=8,
        )

    @classmethod
    def preset(cls, name: str) -> DrumConfig:
        if name not in ("tiny", "small", "base"):
            raise ValueError(f"unknown drums preset {name!r}; choose tiny, small or base")
        return getattr(cls, name)()
