"""The ``scaffold`` timbre-transfer engine: the content enters only as its f0 and loudness
curves (deterministic, :mod:`mambakit.dsp.contours`), so it cannot leak its timbre; the
style clip becomes one embedding; a Mamba decoder turns (f0, loudness, embedding) into
the controls of a harmonic-plus-noise synthesiser (:mod:`mambakit.dsp.harmonic`), DDSP's
recipe (Engel et al., 2020) with Mamba-2 sequence models over frames.

Per frame ``i`` (at sample ``i * hop``)::

    e     = mean_{loud frames t} W_e Mamba2_enc(log-mel(style))_t         timbre, [E]
    e     = alpha e_style + (1 - alpha) e_content                          the blend
    L'_i  = min(P_j + S(i - o_j), L_i + 20)                                note envelope
    h_i   = Mamba2_dec(W_in [pitch_i, voiced_i, L'_i, d_i, t_i, e])       causal, [D]
    A_i   = 10^((L'_i + 40 tanh(g_i / 20)) / 20)                           overall amplitude
    c_i   = softmax(w_i) over harmonics below Nyquist                      distribution, [K]
    H_i   = 10^((L'_i - 25 + 40 tanh(n_i / 20)) / 20)                      noise bands, [M]

with ``L_i`` the content's A-weighted loudness in dB, ``o_j`` and ``P_j`` the onset and
peak loudness of the content note holding frame ``i`` and ``S`` the style note's measured
loudness against the time since its onset (:mod:`mambakit.dsp.note_envelope`): the
content decides when notes start, end and how loud they peak, the style how they decay,
by formula; ``d_i`` is the note's interval to the style note (semitones / 12) and ``t_i``
its time since onset (``config.note_inputs``). The network learns the gain relative to
``L'``, the spectral shape and the noise. The decoder is causal: a long content clip runs
in pieces of frames with its Mamba state carried (:meth:`ScaffoldTimbre.render`),
identical to one pass.

A style clip of several notes (a scale, a phrase) is a palette: each of its notes gets its
own measured envelope, note curve and embedding (:func:`style_note_spans` splits it at its
pitch changes), and frame ``i`` reads them weighted by how near each note's pitch is to
its own, ``softmax_n(-(p_i - q_n)^2 / 2 sigma^2)`` (:data:`PALETTE_SEMITONES`): several
notes measure an instrument better than one, and its spectrum changes with pitch and
across its sample zones. One note gives the weight 1: the single-note code.

Shapes: audio ``[B, 1, T]`` float32 at ``config.sample_rate``; frames ``F = ceil(T / hop) + 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mambakit.dsp.contours import (
    PitchContour,
    SpectralEnvelope,
    f0_contour,
    frame_count,
    frame_spectra,
    spectral_envelope,
)
from mambakit.dsp.harmonic import HarmonicNoiseSynth, SynthState, nyquist_mask
from mambakit.dsp.note_envelope import (
    apply_note_curve,
    note_frames,
    note_onsets,
    style_note_curve,
)
from mambakit.pretrained import PretrainedMixin
from mambakit.ssm import Backbone, BackboneCache

__all__ = [
    "ScaffoldConfig",
    "ScaffoldTimbre",
    "Contours",
    "StyleCode",
    "NOT_MONOPHONIC",
    "palette_weights",
    "style_note_spans",
    "low_harmonic_share",
    "voiced_share_warning",
]

# Share of the loud frames that must be voiced for the content to count as one pitch line.
MIN_VOICED_SHARE = 0.5
# A chord is periodic too, at the common fundamental of its notes, which YIN then reports
# (C E G Bb ~ 4:5:6:7 of C two octaves down); that "f0" has next to no energy in its own
# first three harmonics, where one instrument's note has much of it (the lowest of 103
# FluidR3 notes: 14 %, a clarinet; the chords tried: < 0.1 %): below this share of
# harmonics 1..12's energy it is not one note.
MIN_LOW_HARMONIC_SHARE = 0.05
# low_harmonic_share reads every this many control frames.
LOW_HARMONIC_HOPS = 4
# A style clip splits into notes where its pitch moves by more than STYLE_NOTE_SEMITONES and
# stays there; a part shorter than this joins the note before it. Only frames within
# STYLE_NOTE_TRACK_DB of the loudest are tracked (YIN slips by octaves in quiet tails).
STYLE_NOTE_MIN_SECONDS = 0.25
STYLE_NOTE_SEMITONES = 1.0
STYLE_NOTE_TRACK_DB = 25.0
# sigma of the palette's pitch weights, semitones: wide. On the training programs the style
# gain rose with sigma up to about this (docs/RESULTS.md): averaging several notes'
# measurements counts for as much as the nearer pitch; nearer notes still weigh more.
PALETTE_SEMITONES = 10.0
NOT_MONOPHONIC = (
    "content does not look monophonic and pitched: {why}; the scaffold engine follows a "
    "single pitch line, so chords, drums or noise come out as one wandering tone"
)


@dataclass(frozen=True)
class ScaffoldConfig:
    """Configuration of :class:`ScaffoldTimbre`.

    Attributes:
        sample_rate: audio rate in Hz.
        hop: samples between control frames (128 at 16 kHz: 125 frames a second).
        n_fft: analysis window for the loudness and the encoder's log-mel frames.
        n_mels: log-mel bands the encoder reads.
        n_harmonics: ``K`` harmonic amplitudes per frame.
        n_noise_bands: ``M`` noise-filter magnitudes per frame (FIR of ``2 (M - 1)`` taps).
        embed_dim: ``E``, size of the timbre embedding.
        enc_d_model, enc_layers: width and depth of the style encoder (Mamba-2 blocks).
        dec_d_model, dec_layers: width and depth of the decoder (causal Mamba-2 blocks).
        d_state, headdim, mlp_ratio: passed to the Mamba-2 :class:`~mambakit.ssm.Backbone`.
        f_min, f_max: f0 search range in Hz.
        envelope_points: grid of the style's spectral envelope (0 .. sr / 2).
        note_curve_seconds: length of the style's note curve (loudness vs time since
            onset, :func:`mambakit.dsp.note_envelope.style_note_curve`).
        note_envelope: shape each content note's loudness by the style's note curve
            (:func:`mambakit.dsp.note_envelope.apply_note_curve`); ``False`` keeps the
            content's loudness curve.
        note_inputs: the decoder also reads the content note's pitch relative to the style
            note's (how far the style's measured spectrum must be carried) and the time
            since the note's onset (how far into its decay it is).
        segment_seconds: training crop length (inference takes any length).
    """

    sample_rate: int = 16000
    hop: int = 128
    n_fft: int = 1024
    n_mels: int = 64
    n_harmonics: int = 64
    n_noise_bands: int = 33
    embed_dim: int = 64
    enc_d_model: int = 64
    enc_layers: int = 2
    dec_d_model: int = 128
    dec_layers: int = 3
    d_state: int = 32
    headdim: int = 32
    mlp_ratio: float = 2.0
    f_min: float = 50.0
    f_max: float = 2000.0
    envelope_points: int = 128
    note_curve_seconds: float = 4.0
    note_envelope: bool = True
    note_inputs: bool = True
    segment_seconds: float = 1.5

    # What a run saved before the note envelope existed was trained without it (and its
    # decoder reads 3 features, not 5): such a config.json loads with these values.
    SAVED_BEFORE: ClassVar[dict[str, Any]] = {"note_envelope": False, "note_inputs": False}

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ScaffoldConfig:
        """``"tiny"`` (tests: seconds per step) or ``"small"`` (the shipped size)."""
        presets = {
            "tiny": dict(n_harmonics=16, n_noise_bands=9, embed_dim=16, enc_d_model=16,
                         enc_layers=1, dec_d_model=32, dec_layers=1, d_state=8, headdim=16,
                         n_mels=32, mlp_ratio=0.0, segment_seconds=0.5),
            "small": {},
        }  # fmt: skip
        if name not in presets:
            raise ValueError(f"unknown scaffold preset {name!r}; choose from {sorted(presets)}")
        return cls(**{**presets[name], **overrides})

    def with_(self, **changes: Any) -> ScaffoldConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class Contours:
    """What the decoder is given of the content, per frame (``[B, F]`` each).

    Attributes:
        f0_hz: fundamental (unvoiced frames hold the nearest voiced value).
        voiced: 1.0 where periodic, else 0.0.
        loudness_db: A-weighted loudness.
        since_onset: frames since the onset of the note holding the frame (int64).
        note_peak_db: that note's peak loudness.
        voiced_share: ``[B]`` share of the loud frames (within 40 dB of the loudest) that
            are voiced; below :data:`MIN_VOICED_SHARE` the content is not one pitch line.
    """

    f0_hz: Tensor
    voiced: Tensor
    loudness_db: Tensor
    since_onset: Tensor
    note_peak_db: Tensor
    voiced_share: Tensor

    def frames(self, start: int, stop: int) -> Contours:
        """Frames ``start .. stop`` of every curve."""
        curves = (self.f0_hz, self.voiced, self.loudness_db, self.since_onset, self.note_peak_db)
        return Contours(*(x[:, start:stop] for x in curves), self.voiced_share)


@dataclass(frozen=True)
class StyleCode:
    """What the decoder is given of the style clip, per note of it (``S`` notes: 1 for a
    single note; a clip with fewer notes than the batch's most repeats its last one).

    Attributes:
        embedding: ``[B, S, E]`` learned timbre embedding (:meth:`ScaffoldTimbre.embed`).
        harmonic: ``[B, S, G]`` log harmonic envelope over frequency (measured, max 0).
        smooth: ``[B, S, G]`` log smoothed average spectrum (measured, max 0).
        partials: ``[B, S, K]`` log amplitude per harmonic number (measured, max 0).
        note_curve: ``[B, S, N]`` loudness (dB, max 0) against frames since the note's
            onset (measured, :func:`mambakit.dsp.note_envelope.style_note_curve`).
        pitch_hz: ``[B, S]`` each note's median f0 (0 if unpitched).
    """

    embedding: Tensor
    harmonic: Tensor
    smooth: Tensor
    partials: Tensor
    note_curve: Tensor
    pitch_hz: Tensor

    def blend(self, other: StyleCode, alpha: float) -> StyleCode:
        """``alpha self + (1 - alpha) other``, every field (log curves in the log domain);
        ``other`` enters note by note when it has as many notes as ``self`` or one, else
        as the mean of its notes."""
        if other.embedding.shape[1] not in (1, self.embedding.shape[1]):
            other = StyleCode(*(getattr(other, f.name).mean(dim=1, keepdim=True)
                                for f in fields(StyleCode)))  # fmt: skip
        mix = lambda a, b: alpha * a + (1.0 - alpha) * b  # noqa: E731
        return StyleCode(
            mix(self.embedding, other.embedding),
            mix(self.harmonic, other.harmonic),
            mix(self.smooth, other.smooth),
            mix(self.partials, other.partials),
            mix(self.note_curve, other.note_curve),
            mix(self.pitch_hz, other.pitch_hz),
        )


def _exp_gain(x: Tensor, offset_db: float) -> Tensor:
    """``10^((offset + 40 tanh(x / 20)) / 20)``: a gain in +-40 dB around ``offset``."""
    return torch.pow(10.0, (offset_db + 40.0 * torch.tanh(x / 20.0)) / 20.0)


class ScaffoldTimbre(nn.Module, PretrainedMixin):
    """Style encoder + causal decoder + synthesiser (see the module docstring).

    ``forward(content [B, 1, T], style [B, 1, T_s])`` -> audio ``[B, 1, T]``; with
    ``style=None`` the content is its own style (reconstruction).
    """

    config_class = ScaffoldConfig
    model_type = "timbre-scaffold"

    def __init__(self, config: ScaffoldConfig) -> None:
        super().__init__()
        self.config = c = config
        backbone = dict(kind="mamba2", d_state=c.d_state, mlp_ratio=c.mlp_ratio)
        self.enc_in = nn.Linear(c.n_mels, c.enc_d_model)
        self.encoder = Backbone(
            n_layers=c.enc_layers, d_model=c.enc_d_model,
            headdim=min(c.headdim, 2 * c.enc_d_model), **backbone,
        )  # fmt: skip
        self.enc_out = nn.Linear(c.enc_d_model, c.embed_dim)
        n_feats = 5 if c.note_inputs else 3
        self.dec_in = nn.Linear(
            n_feats + c.embed_dim + 2 * c.n_harmonics + c.n_noise_bands, c.dec_d_model
        )
        self.decoder = Backbone(
            n_layers=c.dec_layers, d_model=c.dec_d_model,
            headdim=min(c.headdim, 2 * c.dec_d_model), **backbone,
        )  # fmt: skip
        self.dec_out = nn.Linear(c.dec_d_model, 1 + c.n_harmonics + c.n_noise_bands)
        # small corrections at first: an untrained model renders the measured envelope
        nn.init.normal_(self.dec_out.weight, std=0.01)
        nn.init.zeros_(self.dec_out.bias)
        self.synth = HarmonicNoiseSynth(c.sample_rate, c.hop, c.n_noise_bands)
        bands = torch.linspace(0, c.sample_rate / 2, c.n_noise_bands)
        self.register_buffer("noise_band_hz", bands, persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def checkpoint_metadata(self) -> dict[str, Any]:
        return {"sample_rate": self.config.sample_rate, "engine": "scaffold"}

    # ------------------------------------------------------------------ analysis
    def contours(self, audio: Tensor) -> Contours:
        """f0, voicing, loudness and note positions of ``audio`` ``[B, 1, T]`` (no
        gradient; NumPy YIN, :func:`mambakit.dsp.note_envelope.note_onsets`)."""
        c = self.config
        curves: list[tuple[Tensor, ...]] = []
        shares = []
        for clip in audio.detach().float().cpu()[:, 0]:
            pitch = f0_contour(clip, c.sample_rate, c.hop, c.f_min, c.f_max)
            level, _ = frame_spectra(clip, c.hop, c.n_fft, 1, c.sample_rate)
            is_loud = level >= level.max() - 40.0
            shares.append(float(pitch.voiced[is_loud].float().mean()) if is_loud.any() else 0.0)
            onsets = note_onsets(level, pitch.f0_hz, pitch.voiced, c.sample_rate / c.hop)
            since, peak = note_frames(level, onsets)
            curves.append((pitch.f0_hz, pitch.voiced.float(), level, since, peak))
        device = audio.device
        stacked = (torch.stack(x).to(device) for x in zip(*curves))
        return Contours(*stacked, torch.tensor(shares, device=device))

    def _frames(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Loudness ``[B, F]`` (dB) and log-mel ``[B, F, n_mels]`` of clips ``[B, 1, T]``
        on the control frames (``hop``)."""
        c = self.config
        pairs = [
            frame_spectra(clip, c.hop, c.n_fft, c.n_mels, c.sample_rate)
            for clip in audio.detach().float().cpu()[:, 0]
        ]
        level, mel = (torch.stack(x).to(audio.device) for x in zip(*pairs))
        return level, mel

    def embed(self, audio: Tensor, frames: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Timbre embedding ``[B, E]`` of clips ``[B, 1, T]`` of any length: the encoder
        over every second control frame's log-mel, averaged over the loud frames (within
        40 dB of the clip's loudest). ``frames``: :meth:`_frames` of ``audio``, if known."""
        level, mel = frames if frames is not None else self._frames(audio)
        level, mel = level[:, ::2], mel[:, ::2]  # [B, F_s], [B, F_s, n_mels]
        mask = (level >= level.amax(dim=1, keepdim=True) - 40.0).float()[..., None]
        h = self.enc_out(self.encoder(self.enc_in((mel + 5.0) / 5.0)))  # [B, F_s, E]
        return (h * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def style(self, audio: Tensor) -> StyleCode:
        """The :class:`StyleCode` of clips ``[B, 1, T]`` of any length: per note of the
        clip (:func:`style_note_spans`), the learned embedding, the measured spectral
        envelope (:func:`mambakit.dsp.spectral_envelope`) and the measured note curve."""
        c = self.config
        clips = audio.detach().float().cpu()[:, 0]
        pitches = [f0_contour(clip, c.sample_rate, c.hop) for clip in clips]
        frames = self._frames(audio)
        spans = [
            style_note_spans(pitch, level, c.sample_rate / c.hop)
            for pitch, level in zip(pitches, frames[0].cpu(), strict=True)
        ]
        if all(len(x) == 1 for x in spans):  # single notes: one batched pass
            return self._note_codes(audio, frames, pitches)
        most = max(len(x) for x in spans)
        clip_codes = []  # per clip, each field [1, most, ...]: its notes, the last repeated
        for clip, clip_spans in zip(clips, spans, strict=True):
            notes = [self._note_codes(clip[a * c.hop : z * c.hop][None, None].to(audio.device))
                     for a, z in clip_spans]  # fmt: skip
            notes += notes[-1:] * (most - len(notes))
            clip_codes.append(
                [torch.cat([getattr(x, f.name) for x in notes], dim=1) for f in fields(StyleCode)]
            )
        return StyleCode(*(torch.cat(field) for field in zip(*clip_codes)))

    def style_of_clips(self, clips: list[Tensor]) -> StyleCode:
        """One :class:`StyleCode` (``B = 1``) from several style clips ``[1, 1, T_i]`` of one
        instrument, e.g. one file per note: the notes of every clip (:meth:`style`, each
        clip split on its own, so no note straddles two files) in the clips' order; one
        clip gives :meth:`style` of it."""
        if not clips:
            raise ValueError("style_of_clips needs at least one clip")
        codes = [self.style(clip) for clip in clips]
        return StyleCode(*(torch.cat([getattr(x, f.name) for x in codes], dim=1)
                           for f in fields(StyleCode)))  # fmt: skip

    def _note_codes(
        self,
        audio: Tensor,
        frames: tuple[Tensor, Tensor] | None = None,
        pitches: list[PitchContour] | None = None,
    ) -> StyleCode:
        """The one-note :class:`StyleCode` (``S = 1``) of each clip ``[B, 1, T]``, taken as a
        whole. ``frames`` (:meth:`_frames`) and ``pitches`` (:func:`f0_contour` per clip at
        the defaults), when the caller has them."""
        c = self.config
        frames = self._frames(audio) if frames is None else frames
        clips = audio.detach().float().cpu()[:, 0]
        pitches = [None] * len(clips) if pitches is None else pitches
        levels = frames[0].cpu() if c.n_fft == 1024 else [None] * audio.shape[0]
        curves = [
            spectral_envelope(
                clip, c.sample_rate, c.hop, c.envelope_points, max_harmonics=c.n_harmonics,
                pitch=pitch, level=level,
            )
            for clip, pitch, level in zip(clips, pitches, levels, strict=True)
        ]  # fmt: skip
        n_curve = max(1, int(round(c.note_curve_seconds * c.sample_rate / c.hop)))
        # the last frames' windows reach past the clip's end: they would fake a fast decay
        inside = max(1, frames[0].shape[1] - c.n_fft // (2 * c.hop))
        note_curve = torch.stack([style_note_curve(x[:inside].cpu(), n_curve) for x in frames[0]])
        device = audio.device
        return StyleCode(
            self.embed(audio, frames)[:, None],
            torch.stack([e.harmonic for e in curves]).to(device)[:, None],
            torch.stack([e.smooth for e in curves]).to(device)[:, None],
            torch.stack([e.partials for e in curves]).to(device)[:, None],
            note_curve.to(device)[:, None],
            torch.tensor([[e.f0_hz] for e in curves], device=device),
        )

    def level_db(self, contours: Contours, style: StyleCode) -> Tensor:
        """The output's loudness before the decoder's correction, ``[B, F]`` dB: the
        content's notes shaped by the style's note curve (``config.note_envelope``), else
        the content's own loudness."""
        if not self.config.note_envelope:
            return contours.loudness_db
        curve = style.note_curve.mean(dim=1)  # a palette's notes alike: every piece the same
        return apply_note_curve(contours.loudness_db, contours.since_onset, contours.note_peak_db,
                                curve)  # fmt: skip

    # ------------------------------------------------------------------ decoding
    def controls(
        self, contours: Contours, style: StyleCode, cache: BackboneCache | None = None
    ) -> tuple[Tensor, Tensor]:
        """Synthesiser controls of the frames of ``contours`` ``[B, F]``: harmonic
        amplitudes ``[B, F, K]`` and noise magnitudes ``[B, F, M]``. With ``cache`` the
        decoder continues from (and updates) its state.

        Scaffold: the style's measured envelope read at this frame's harmonics ``k f0``
        (``E_k``, fixed-frequency view), its amplitude of harmonic number ``k`` (``R_k``,
        pitch-relative view) and its smoothed spectrum at the noise bands (``Q_m``) give
        the log distribution ``P_k = (E_k + R_k) / 2`` and the noise shape an untrained
        decoder renders (each view alone is right for some instruments and wrong for
        others); the decoder sees all three and adds corrections::

            c_k = softmax_k(P_k + w_k),   H_m = exp(Q_m) 10^((L' - 25 + 40 tanh(n_m / 20)) / 20)

        with ``L'`` the note-shaped loudness (:meth:`level_db`).
        """
        c = self.config
        f0 = contours.f0_hz
        b, f = f0.shape
        k = torch.arange(1, c.n_harmonics + 1, device=f0.device, dtype=f0.dtype)
        pitch = torch.where(f0 > 0, 12 * torch.log2(f0.clamp_min(1.0) / 440.0) + 69, 0.0)
        weights, style_pitch = palette_weights(pitch, style.pitch_hz)  # [B, F, S], [B, F]
        at_frames = lambda x: weights @ x  # noqa: E731  [B, S, X] -> [B, F, X]
        by_freq = SpectralEnvelope.sample(
            at_frames(style.harmonic), f0[..., None] * k, c.sample_rate
        )  # [B, F, K]
        by_number = at_frames(style.partials)
        prior_h = 0.5 * (by_freq + by_number)
        prior_n = SpectralEnvelope.sample(
            at_frames(style.smooth), self.noise_band_hz.expand(b, f, -1), c.sample_rate
        )  # [B, F, M]
        loudness = self.level_db(contours, style)  # [B, F]
        feats = [(pitch - 60.0) / 24.0, contours.voiced, (loudness + 40.0) / 40.0]
        if c.note_inputs:
            interval = torch.where((f0 > 0) & (style_pitch > 0), pitch - style_pitch, 0.0)
            seconds = contours.since_onset.to(f0.dtype) * (c.hop / c.sample_rate)
            feats += [interval / 12.0, torch.log1p(seconds / 0.1) / 3.0]
        feats = torch.stack(feats, dim=-1)  # [B, F, 3 or 5]
        e = at_frames(style.embedding)
        priors = [(p + 8.0) / 8.0 for p in (by_freq, by_number, prior_n)]
        x = torch.cat([feats, e, *priors], dim=-1)
        out = self.dec_out(self.decoder(self.dec_in(x), cache))  # [B, F, 1 + K + M]
        gain, dist, noise = torch.split(out, [1, c.n_harmonics, c.n_noise_bands], dim=-1)
        level = torch.pow(10.0, loudness[..., None] / 20.0)
        mask = nyquist_mask(f0, c.n_harmonics, c.sample_rate)
        dist = torch.softmax((prior_h + dist).masked_fill(mask == 0, -1e4), dim=-1) * mask
        amplitudes = _exp_gain(gain, 0.0) * level * dist
        noise = torch.exp(prior_n) * _exp_gain(noise, -25.0) * level
        return amplitudes, noise

    def blend(self, content: StyleCode | None, style: StyleCode, alpha: float) -> StyleCode:
        """``alpha style + (1 - alpha) content``; ``alpha = 1`` needs no content."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (the style strength) must lie in [0, 1], got {alpha}")
        if alpha == 1.0 or content is None:
            return style
        return style.blend(content, alpha)

    def forward(self, content: Tensor, style: Tensor | None = None, alpha: float = 1.0) -> Tensor:
        """Transfer, one pass: ``[B, 1, T]`` (+ style ``[B, 1, T_s]``) -> ``[B, 1, T]``."""
        contours = self.contours(content)
        s_style = self.style(style if style is not None else content)
        s_content = self.style(content) if alpha < 1.0 and style is not None else None
        return self.render(contours, self.blend(s_content, s_style, alpha), content.shape[-1])

    def render(
        self,
        contours: Contours,
        style: StyleCode,
        n_samples: int,
        chunk_frames: int | None = None,
    ) -> Tensor:
        """Audio ``[B, 1, n_samples]`` from the content's contours ``[B, F]`` and a
        :class:`StyleCode`, in pieces of ``chunk_frames`` frames (``None``: one piece).

        The decoder's Mamba state, the oscillator phase and the noise position carry over
        from piece to piece, so the result is the same for any ``chunk_frames`` (up to
        float rounding) and long clips cost memory for one piece only.
        """
        total = contours.f0_hz.shape[1]
        if total != frame_count(n_samples, self.config.hop):
            raise ValueError(
                f"contours have {total} frames; {n_samples} samples need "
                f"{frame_count(n_samples, self.config.hop)}"
            )
        step = total if chunk_frames is None else max(1, int(chunk_frames))
        chunked = step < total
        b = style.embedding.shape[0]
        cache = self.decoder.allocate_cache(b) if chunked else None
        state: SynthState | None = None
        prev: tuple[Tensor, Tensor, Tensor] | None = None  # the last frame of the last piece
        pieces = []
        for a in range(0, total, step):
            piece = contours.frames(a, min(total, a + step))
            amps, noise = self.controls(piece, style, cache)
            f0 = piece.f0_hz
            if prev is not None:
                amps = torch.cat([prev[0], amps], dim=1)
                noise = torch.cat([prev[1], noise], dim=1)
                f0 = torch.cat([prev[2], f0], dim=1)
            audio, state = self.synth(amps, f0, noise, state)
            pieces.append(audio)
            prev = (amps[:, -1:], noise[:, -1:], f0[:, -1:])
        return torch.cat(pieces, dim=1)[:, None, :n_samples]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def style_note_spans(
    pitch: PitchContour, level_db: Tensor, frame_rate: float
) -> list[tuple[int, int]]:
    """The notes of a style clip as frame spans ``[(start, stop), ...]`` covering all its
    frames: runs of one pitch. A run ends where a loud voiced frame (within
    :data:`STYLE_NOTE_TRACK_DB` of the loudest) lies more than :data:`STYLE_NOTE_SEMITONES`
    from the run's pitch and the next two such frames agree with it; a run shorter than
    :data:`STYLE_NOTE_MIN_SECONDS` (a slip of the pitch tracker, a glide) joins the run
    before it (the first such run the one after it), and so does a run back at that run's
    pitch. Re-attacks of one pitch are one note: what matters here is the spectrum at each
    pitch the clip shows."""
    n = len(level_db)
    semis = 12.0 * torch.log2(pitch.f0_hz.double().clamp_min(1.0) / 440.0) + 69.0
    loud = level_db >= level_db.max() - STYLE_NOTE_TRACK_DB
    tracked = torch.nonzero(pitch.voiced & loud).flatten().tolist()
    starts, notes, current = [0], [None], None  # runs: first frame, pitch
    for j, t in enumerate(tracked):
        ahead = [float(semis[u]) for u in tracked[j : j + 3]]
        if current is None:
            current = notes[0] = ahead[0]
        elif len(ahead) == 3 and all(
            abs(v - current) > STYLE_NOTE_SEMITONES and abs(v - ahead[0]) <= STYLE_NOTE_SEMITONES
            for v in ahead
        ):
            starts.append(t)
            notes.append(ahead[0])
            current = ahead[0]
    min_frames = STYLE_NOTE_MIN_SECONDS * frame_rate
    spans: list[tuple[int, int, float | None]] = []
    for start, stop, note in zip(starts, starts[1:] + [n], notes, strict=True):
        if spans:
            first, _, before = spans[-1]
            same = before is not None and abs(note - before) <= STYLE_NOTE_SEMITONES
            if stop - start < min_frames or same:  # a slip, or the note before resumed
                spans[-1] = (first, stop, before)
                continue
            if spans[-1][1] - first < min_frames:  # the run before was too short to count
                spans[-1] = (first, stop, note)
                continue
        spans.append((start, stop, note))
    return [(a, z) for a, z, _ in spans]


def palette_weights(pitch: Tensor, note_hz: Tensor) -> tuple[Tensor, Tensor]:
    """Each frame's weights over the style's notes, ``[B, F, S]``, and the weighted style
    pitch ``[B, F]`` (MIDI; 0 where no note is pitched), from the frames' pitch ``[B, F]``
    (MIDI, 0 unpitched) and the notes' f0 ``[B, S]`` (Hz, 0 unpitched):
    ``softmax_n(-(p - q_n)^2 / 2 sigma^2)``, sigma :data:`PALETTE_SEMITONES` (read at call
    time). An unpitched note weighs as if far off; with one note the weight is exactly 1."""
    pitched = note_hz > 0
    q = torch.where(pitched, 12 * torch.log2(note_hz.clamp_min(1.0) / 440.0) + 69, 0.0)
    d = torch.where(pitched[:, None], pitch[..., None] - q[:, None], 1e3)  # [B, F, S]
    weights = torch.softmax(-0.5 * (d / PALETTE_SEMITONES) ** 2, dim=-1)
    return weights, (weights * q[:, None]).sum(-1)


def voiced_share_warning(share: float, low_harmonic_share: float = 1.0) -> str | None:
    """The warning text when the content is not one pitch line, else None: too few voiced
    loud frames (``share``, :attr:`Contours.voiced_share`, below :data:`MIN_VOICED_SHARE`)
    or a pitch whose first three harmonics hold almost none of the harmonic energy
    (``low_harmonic_share`` below :data:`MIN_LOW_HARMONIC_SHARE`: a chord's common root)."""
    if math.isnan(share) or share < MIN_VOICED_SHARE:
        share = 0.0 if math.isnan(share) else share
        why = f"only {share:.0%} of its loud frames have one clear pitch"
        why += f" (need {MIN_VOICED_SHARE:.0%})"
        return NOT_MONOPHONIC.format(why=why)
    if low_harmonic_share < MIN_LOW_HARMONIC_SHARE:
        why = (
            f"its pitch tracker found a common root whose first three harmonics hold only "
            f"{low_harmonic_share:.0%} of the harmonic energy (a chord?)"
        )
        return NOT_MONOPHONIC.format(why=why)
    return None


def low_harmonic_share(
    audio: Tensor, config: ScaffoldConfig, contours: Contours | None = None
) -> float:
    """Share of the energy of harmonics 1..12 in harmonics 1..3, for mono ``audio`` ``[T]``
    (from :func:`mambakit.dsp.spectral_envelope`'s per-harmonic amplitudes); 1 when the
    clip has no pitch (that case is :data:`MIN_VOICED_SHARE`'s). ``contours``: the clip's
    :meth:`ScaffoldTimbre.contours` (batch of one), whose f0 and loudness it then reuses."""
    # every LOW_HARMONIC_HOPS-th control frame: a share over the whole clip needs no more
    hop = LOW_HARMONIC_HOPS * config.hop
    pitch = level = None
    if contours is not None:
        every = slice(None, None, LOW_HARMONIC_HOPS)
        f0, voiced = contours.f0_hz[0, every].cpu(), contours.voiced[0, every].cpu() > 0
        pitch = PitchContour(f0, voiced, torch.zeros_like(f0))  # aperiodicity: unused
        level = contours.loudness_db[0, every].cpu()
    env = spectral_envelope(  # the tracker's own f0: is it a note?
        audio, config.sample_rate, hop, max_harmonics=12, pitch=pitch, level=level,
        octave_check=False,
    )  # fmt: skip
    if env.f0_hz <= 0:
        return 1.0
    below = torch.arange(1, 13) * env.f0_hz < config.sample_rate / 2
    energy = torch.exp(2 * env.partials[below])
    return float(energy[:3].sum() / energy.sum())
