"""Band-limited harmonic-plus-filtered-noise synthesis (DDSP, Engel et al., 2020), from
frame-rate controls, differentiable in the amplitudes and the noise magnitudes.

Controls live on frames: frame ``i`` sits at sample ``i * hop``. A call with ``F`` frames
renders the ``(F - 1) * hop`` samples from frame 0 up to (not including) frame ``F - 1``,
interpolating linearly between neighbouring frames, and returns the state the next call
continues from (the oscillator phase and the absolute sample index). So a long clip can be
rendered in pieces of frames ``[a, b]``, ``[b, c]``, ... (neighbours share one frame) and
the pieces concatenate to exactly the one-pass rendering: no seams.

Harmonic part (sines at integer multiples of f0, none at or above Nyquist)::

    phi(n) = phi_0 + sum_{m < n} f0(m) / sr                     (cycles)
    x_h(n) = sum_k a_k(n) sin(2 pi k phi(n)),  a_k = 0 in a frame segment where k f0 >= sr / 2

Noise part: a fixed, cyclic table of uniform noise ``u`` indexed by the absolute sample
(so any piece sees the same noise as the one-pass rendering), filtered per frame by a
linear-phase FIR built from ``M`` magnitudes on a linear frequency grid ``0 .. sr / 2``
(zero-phase inverse real FFT, centred, Hann-windowed; DDSP's ``frequency_impulse_response``)::

    x_n(n) = sum_l h_j[l] u(n - l),  j = the frame segment holding n,
    h_j = FIR of (H_j + H_{j+1}) / 2
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# The sine recurrence restarts from exact sin() values every this many harmonics.
RECURRENCE_RESTART = 16

__all__ = [
    "SynthState",
    "HarmonicNoiseSynth",
    "harmonic_synth",
    "filtered_noise",
    "noise_fir",
    "nyquist_mask",
    "upsample_frames",
]


def upsample_frames(controls: Tensor, hop: int) -> Tensor:
    """Linear interpolation of frame controls ``[B, F, C]`` to the ``(F - 1) * hop``
    samples between frame 0 and frame ``F - 1`` -> ``[B, (F - 1) * hop, C]``."""
    b, f, c = controls.shape
    if f < 2:
        return controls.new_zeros(b, 0, c)
    w = torch.arange(hop, device=controls.device, dtype=controls.dtype) / hop  # [hop]
    left, right = controls[:, :-1, None], controls[:, 1:, None]  # [B, F-1, 1, C]
    out = left + (right - left) * w[None, None, :, None]  # [B, F-1, hop, C]
    return out.reshape(b, (f - 1) * hop, c)


def nyquist_mask(f0_hz: Tensor, n_harmonics: int, sample_rate: int) -> Tensor:
    """``[..., K]`` float mask: 1 where harmonic ``k`` (1-based) of ``f0_hz`` ``[...]`` lies
    strictly below ``sample_rate / 2`` and f0 > 0, else 0."""
    k = torch.arange(1, n_harmonics + 1, device=f0_hz.device, dtype=f0_hz.dtype)
    freqs = f0_hz[..., None] * k
    return ((freqs < sample_rate / 2) & (f0_hz[..., None] > 0)).to(f0_hz.dtype)


def _phase_cycles(
    f0_hz: Tensor, sample_rate: int, hop: int, phase: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Oscillator phase per sample ``theta [B, F-1, hop]`` (radians in [0, 2 pi), float32)
    and the phase at frame ``F - 1`` ``[B]`` (cycles, float64) of frame f0s ``[B, F]``."""
    b, f = f0_hz.shape
    if phase is None:
        phase = f0_hz.new_zeros(b, dtype=torch.float64)
    f0 = f0_hz.detach().double()
    f0_n = upsample_frames(f0[..., None], hop)[..., 0]  # [B, N]
    # phase in float64: a float32 running sum over minutes of audio would drift audibly
    steps = f0_n / sample_rate
    cycles = phase[:, None].double() + torch.cumsum(steps, dim=1) - steps  # phi(n), [B, N]
    end_phase = torch.remainder(phase.double() + steps.sum(dim=1), 1.0)
    theta = (2 * math.pi * torch.remainder(cycles, 1.0)).float()  # [B, N] in [0, 2 pi)
    return theta.reshape(b, f - 1, hop), end_phase


def _segment_amplitudes(
    amplitudes: Tensor, f0_hz: Tensor, sample_rate: int
) -> tuple[Tensor, Tensor]:
    """Amplitudes at the left and right frame of each segment, ``[B, F-1, K']`` each, zero
    for harmonics at or above Nyquist anywhere in the segment; ``K'`` is the highest
    harmonic some segment keeps (high notes need few of the ``K``)."""
    k = amplitudes.shape[-1]
    f0 = f0_hz.detach().float()
    mask = nyquist_mask(torch.maximum(f0[:, :-1], f0[:, 1:]), k, sample_rate)
    live = int(mask.flatten(0, 1).any(dim=0).nonzero().max()) + 1 if mask.any() else 1
    mask = mask[..., :live]
    return amplitudes[:, :-1, :live] * mask, amplitudes[:, 1:, :live] * mask


def harmonic_synth(
    amplitudes: Tensor,
    f0_hz: Tensor,
    sample_rate: int,
    hop: int,
    phase: Tensor | None = None,
    method: str = "recurrence",
) -> tuple[Tensor, Tensor]:
    """Sum of harmonic sines from frame controls.

    Args:
        amplitudes: ``[B, F, K]`` linear amplitude of harmonic ``k = 1..K`` at each frame.
        f0_hz: ``[B, F]`` fundamental in Hz (0 = silent); no gradient flows into it.
        sample_rate: Hz.
        hop: samples between frames.
        phase: ``[B]`` phase in cycles at frame 0 (default 0).
        method: ``"recurrence"`` (:func:`_sines_by_recurrence`) or ``"sin"`` (one ``sin``
            per harmonic and sample, :func:`_sines_ref`: the reference the first is tested
            against; the same result up to float32 rounding).

    Returns:
        ``(audio [B, (F - 1) * hop], phase [B])``: the phase (cycles, in [0, 1)) at frame
        ``F - 1``, to continue from.

    Band limit: in the segment between frames ``j`` and ``j + 1`` f0 moves linearly from
    ``f0_j`` to ``f0_{j+1}``, so harmonic ``k`` is kept there only if
    ``k max(f0_j, f0_{j+1}) < sr / 2``: no partial ever reaches Nyquist. Amplitudes are
    interpolated linearly as ``(1 - w) a_j + w a_{j+1}``, so the sum is
    ``(1 - w) sum_k a_jk sin(k theta) + w sum_k a_(j+1)k sin(k theta)``.
    """
    sums = {"recurrence": _sines_by_recurrence, "sin": _sines_ref}
    if method not in sums:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(sums)}")
    b, f, _ = amplitudes.shape
    if f < 2:
        phase = f0_hz.new_zeros(b, dtype=torch.float64) if phase is None else phase
        return amplitudes.new_zeros(b, 0), phase
    theta, end_phase = _phase_cycles(f0_hz, sample_rate, hop, phase)  # [B, F-1, hop]
    left, right = _segment_amplitudes(amplitudes, f0_hz, sample_rate)  # [B, F-1, K']
    x_left, x_right = sums[method](theta, left, right)  # [B, F-1, hop] each
    w = torch.arange(hop, device=amplitudes.device, dtype=torch.float32) / hop  # [hop]
    audio = x_left + (x_right - x_left) * w
    return audio.reshape(b, (f - 1) * hop), end_phase


def _sines_by_recurrence(theta: Tensor, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
    """``sum_k a_k sin(k theta)`` for the left and right amplitudes ``[B, F-1, K']`` of
    each segment, ``theta`` ``[B, F-1, hop]``: the sines by the Chebyshev recurrence
    ``s_k = 2 cos(theta) s_(k-1) - s_(k-2)``, two multiply-adds per harmonic instead of a
    ``sin``, restarted from exact values every :data:`RECURRENCE_RESTART` harmonics, which
    bounds its float32 rounding error."""
    two_cos = 2 * torch.cos(theta)
    acc_left = acc_right = theta.new_zeros(())
    s_prev = s_k = theta  # placeholders, set at k = 1
    for k in range(1, left.shape[-1] + 1):
        if (k - 1) % RECURRENCE_RESTART == 0:
            s_prev, s_k = torch.sin((k - 1) * theta), torch.sin(k * theta)
        else:
            s_prev, s_k = s_k, two_cos * s_k - s_prev
        acc_left = torch.addcmul(acc_left, left[..., k - 1, None], s_k)
        acc_right = torch.addcmul(acc_right, right[..., k - 1, None], s_k)
    return acc_left, acc_right


def _sines_ref(theta: Tensor, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`_sines_by_recurrence` with one ``sin`` per harmonic and sample."""
    harmonics = torch.arange(1, left.shape[-1] + 1, device=theta.device, dtype=theta.dtype)
    sines = torch.sin(theta[..., None] * harmonics)  # [B, F-1, hop, K']
    return (
        torch.einsum("bjik,bjk->bji", sines, left),
        torch.einsum("bjik,bjk->bji", sines, right),
    )


def noise_fir(magnitudes: Tensor) -> Tensor:
    """Linear-phase FIR ``[..., 2 (M - 1)]`` whose response approximates the zero-phase
    magnitudes ``[..., M]`` (linear grid, DC .. Nyquist): inverse real FFT, rotated to be
    centred, Hann window."""
    n = 2 * (magnitudes.shape[-1] - 1)
    impulse = torch.fft.irfft(magnitudes.to(torch.complex64), n=n)  # zero phase, [..., n]
    impulse = torch.roll(impulse, n // 2, dims=-1)
    return impulse * torch.hann_window(n, periodic=False, device=magnitudes.device)


def filtered_noise(magnitudes: Tensor, noise: Tensor, hop: int) -> Tensor:
    """Noise filtered by a per-frame FIR.

    Args:
        magnitudes: ``[B, F, M]`` filter magnitudes per frame.
        noise: ``[B, (F - 1) * hop + L - 1]`` excitation, ``L = 2 (M - 1)`` taps: the
            ``L - 1`` samples before the first output sample, then one per output sample.
        hop: samples between frames.

    Returns:
        ``[B, (F - 1) * hop]``: segment ``j`` (samples ``j hop .. (j + 1) hop``) filtered
        by the FIR of the mean of frames ``j`` and ``j + 1``.
    """
    b, f, _ = magnitudes.shape
    if f < 2:
        return magnitudes.new_zeros(b, 0)
    fir = noise_fir(0.5 * (magnitudes[:, :-1] + magnitudes[:, 1:]))  # [B, F-1, L]
    taps = fir.shape[-1]
    # windows[b, j, i, l] = noise[b, j * hop + i + l]: the taps reaching output j*hop + i
    windows = noise.unfold(-1, taps, 1)[:, : (f - 1) * hop].reshape(b, f - 1, hop, taps)
    return torch.einsum("bjil,bjl->bji", windows, fir.flip(-1)).reshape(b, (f - 1) * hop)


@dataclass(frozen=True)
class SynthState:
    """Where a rendering stopped: oscillator ``phase`` ``[B]`` (cycles) and the absolute
    ``sample`` index of the next frame (it indexes the noise table)."""

    phase: Tensor
    sample: int


class HarmonicNoiseSynth(nn.Module):
    """Harmonic-plus-filtered-noise synthesiser: frame controls -> audio (no parameters).

    Args:
        sample_rate: Hz.
        hop: samples between frames.
        n_noise_bands: ``M`` filter magnitudes per frame (an FIR of ``2 (M - 1)`` taps).
        noise_seconds: length of the cyclic noise table (seed 0, uniform in [-1, 1]).

    ``forward(amplitudes [B, F, K], f0_hz [B, F], noise_magnitudes [B, F, M], state)``
    -> ``(audio [B, (F - 1) * hop], state)``, see the module docstring.
    """

    def __init__(
        self, sample_rate: int, hop: int, n_noise_bands: int, noise_seconds: float = 4.0
    ) -> None:
        super().__init__()
        self.sample_rate, self.hop, self.n_noise_bands = sample_rate, hop, n_noise_bands
        generator = torch.Generator().manual_seed(0)
        table = torch.rand(int(noise_seconds * sample_rate), generator=generator) * 2 - 1
        self.register_buffer("noise_table", table, persistent=False)

    @property
    def taps(self) -> int:
        return 2 * (self.n_noise_bands - 1)

    def noise(self, batch: int, start: int, length: int) -> Tensor:
        """Table noise for absolute samples ``start - taps + 1 .. start + length``, ``[B, .]``."""
        idx = torch.arange(start - self.taps + 1, start + length, device=self.noise_table.device)
        return self.noise_table[torch.remainder(idx, len(self.noise_table))].expand(batch, -1)

    def forward(
        self,
        amplitudes: Tensor,
        f0_hz: Tensor,
        noise_magnitudes: Tensor,
        state: SynthState | None = None,
    ) -> tuple[Tensor, SynthState]:
        b, f, _ = amplitudes.shape
        phase = state.phase if state is not None else None
        start = state.sample if state is not None else 0
        harmonic, end_phase = harmonic_synth(amplitudes, f0_hz, self.sample_rate, self.hop, phase)
        n = (f - 1) * self.hop
        noise = filtered_noise(noise_magnitudes, self.noise(b, start, n), self.hop)
        return harmonic + noise, SynthState(end_phase, start + n)
