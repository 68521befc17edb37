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
    """Hyper-parameters of `DrumDiffusionModel` and its schedule.

    Attributes are in samples / Hz / seconds where relevant. `cfg_dropout` is the
    probability of replacing the condition by the null token during training
    (classifier-free guidance). `no_sine`, `no_adsr`, `full_res` are the seed's ablations.
    """

    sample_rate: int = 44100
    seconds: float = 1.0
    tags: tuple[str, ...] = field(default_factory=lambda: tuple(TAGS))
    full_rate_channels: int = 8
    band_channels: int = 16
    n_bands: int = 6
    f_max_hz: float = 22050.0
    f_min_hz: float = 43.0
    n_blocks_per_band: int = 1
    parser_d_state: int = 32
    parser_decimation: int = 64
    cond_dim: int = 64
    text_dim: int = 384
    diffusion_steps: int = 6
    train_timesteps: int = 1000
    cosine_s: float = 0.008
    alpha_max: float = 1.0
    no_sine: bool = False
    no_adsr: bool = False
    full_res: bool = False
    cfg_dropout: float = 0.1
    w_eps: float = 1.0
    w_x0: float = 1.0
    w_stft: float = 1.0

    @property
    def n_samples(self) -> int:
        """Clip length in samples."""
        return int(round(self.sample_rate * self.seconds))

    def band_edges_hz(self) -> list[float]:
        """Log-spaced band edges from `f_max_hz` down to `f_min_hz` (n_bands + 1 values)."""
        ratio = (self.f_min_hz / self.f_max_hz) ** (1.0 / self.n_bands)
        return [self.f_max_hz * ratio**i for i in range(self.n_bands + 1)]

    def band_state_sizes(self) -> list[int]:
        """State size per band (highest band first), from each band's lower edge."""
        edges = self.band_edges_hz()
        return [band_state_size(edges[i + 1], self.sample_rate) for i in range(self.n_bands)]

    def with_(self, **changes: object) -> DrumConfig:
        """Copy with some fields changed (e.g. ``tiny().with_(seconds=0.1)``)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def tiny(cls) -> DrumConfig:
        """Smallest preset: CLI default, meets the CPU speed target."""
        return cls(full_rate_channels=4, band_channels=8, n_bands=4, cond_dim=32)

    @classmethod
    def small(cls) -> DrumConfig:
        return cls()

    @classmethod
    def base(cls) -> DrumConfig:
        return cls(
            full_rate_channels=16,
            band_channels=32,
            n_bands=9,
            n_blocks_per_band=2,
            cond_dim=128,
            diffusion_steps=8,
        )
