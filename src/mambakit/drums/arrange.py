"""Render General MIDI drum patterns with a kit folder (SFZ + WAVs), and build patterns.

Rendering model (a one-shot sampler):

* every note-on with velocity ``v > 0`` on the drum channel places the pad's sample at
  ``round(t_seconds * sr)``, scaled by the velocity gain ``g(v) = (v / 127) ** 1.5``
  (a power law close to how sampler velocity curves feel: v=64 is about -9 dB);
* overlapping hits are summed (unlimited polyphony);
* optional hi-hat choke: a closed/pedal hat (GM 42/44) cuts a ringing open hat (46)
  with a 5 ms fade, as on a real hi-hat stand;
* the mix is peak-limited: if its peak exceeds ``ceiling`` the whole beat is scaled down
  (a transparent gain, not a compressor, so relative dynamics are preserved).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import soxr

from mambakit.drums.kit import GM_KEYS, parse_sfz

DRUM_CHANNEL = 9  # MIDI channel 10, zero-based
_OPEN_HAT_KEYS = {46}
_CHOKING_KEYS = {42, 44}


def velocity_gain(velocity: int | float) -> float:
    """Velocity -> linear gain: ``(v / 127) ** 1.5``."""
    return float(np.clip(velocity, 0, 127) / 127.0) ** 1.5


def load_kit(kit_dir: str | Path, sr: int = 44100) -> dict[int, np.ndarray]:
    """Load ``kit_dir/*.sfz`` into ``{midi key: mono float32 sample at sr}``."""
    kit_dir = Path(kit_dir)
    sfzs = sorted(kit_dir.glob("*.sfz")) if kit_dir.is_dir() else []
    if not sfzs:
        raise FileNotFoundError(f"kit folder {kit_dir} has no .sfz file")
    samples: dict[int, np.ndarray] = {}
    for region in parse_sfz(sfzs[0]):
        if not region["path"].is_file():
            raise FileNotFoundError(f"{sfzs[0]}: sample {region['path']} does not exist")
        x, file_sr = sf.read(region["path"], dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if file_sr != sr:
            x = soxr.resample(x, file_sr, sr).astype(np.float32)
        for key in range(region.get("lokey", 0), region.get("hikey", 127) + 1):
            samples[key] = x
    return samples


def midi_hits(
    midi: mido.MidiFile, channel: int | None = DRUM_CHANNEL
) -> list[tuple[float, int, int]]:
    """``(time_seconds, key, velocity)`` of every note-on (``channel=None``: any channel)."""
    hits, now = [], 0.0
    for msg in midi:  # iterating a MidiFile yields messages with delta time in seconds
        now += msg.time
        is_hit = msg.type == "note_on" and msg.velocity > 0
        if is_hit and (channel is None or msg.channel == channel):
            hits.append((now, msg.note, msg.velocity))
    return hits


def render_hits(
    samples: Mapping[int, np.ndarray],
    hits: Sequence[tuple[float, int, int]],
    sr: int = 44100,
    choke_hats: bool = True,
    ceiling: float = 0.98,
    tail_seconds: float = 1.0,
) -> np.ndarray:
    """Sum velocity-scaled samples at the hit times; returns float32 [1, T]."""
    if not hits:
        raise ValueError("pattern has no note-on events on the selected channel")
    end = max(t for t, _, _ in hits) + tail_seconds
    out = np.zeros(int(np.ceil(end * sr)) + 1, dtype=np.float32)
    open_hat_voices: list[tuple[int, int, float, int]] = []  # (start, length, gain, key)
    fade = int(0.005 * sr)
    for t, key, vel in sorted(hits):
        if key not in samples:
            continue  # unmapped key: silent, like a hardware sampler
        start = int(round(t * sr))
        if choke_hats and key in _CHOKING_KEYS:
            for o_start, o_len, o_gain, o_key in open_hat_voices:
                if o_start < start < o_start + o_len:
                    # Subtract the open hat's remainder after the choke point, weighted
                    # by (1 - a 5 ms fade-out ramp) so it dies smoothly instead of clicking.
                    seg = samples[o_key][start - o_start : o_len] * o_gain
                    keep = np.zeros(seg.size, dtype=np.float32)
                    m = min(fade, seg.size)
                    keep[:m] = np.linspace(1.0, 0.0, m)
                    out[start : start + seg.size] -= seg * (1.0 - keep)
            open_hat_voices.clear()
        x = samples[key]
        n = min(x.size, out.size - start)
        g = velocity_gain(vel)
        out[start : start + n] += g * x[:n]
        if key in _OPEN_HAT_KEYS:
            open_hat_voices.append((start, n, g, key))
    peak = float(np.max(np.abs(out)))
    if peak > ceiling:
        out *= ceiling / peak
    return out[None, :]


def render_pattern(
    kit_dir: str | Path,
    midi_path: str | Path,
    sr: int = 44100,
    channel: int | None = DRUM_CHANNEL,
    choke_hats: bool = True,
) -> tuple[np.ndarray, int]:
    """Render a GM drum MIDI file with a kit folder; returns ``(audio [1, T], sr)``.

    ``channel=None`` accepts notes on every channel (files not written for channel 10).
    """
    midi_path = Path(midi_path)
    try:
        midi = mido.MidiFile(midi_path)
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{midi_path}: cannot read MIDI file: {exc}") from None
    hits = midi_hits(midi, channel)
    if not hits:
        which = "any channel" if channel is None else f"channel {channel + 1}"
        raise ValueError(f"{midi_path}: no note-on events on {which} (try channel=None)")
    return render_hits(load_kit(kit_dir, sr), hits, sr, choke_hats), sr


def _step_times(n_steps: int, bpm: float, swing: float, steps_per_beat: int = 4) -> np.ndarray:
    """Start time [s] of each 16th step; ``swing`` in [0, 1) delays odd steps by swing/2 step."""
    step = 60.0 / bpm / steps_per_beat
    t = np.arange(n_steps) * step
    t[1::2] += 0.5 * swing * step
    return t


def make_pattern(
    grid: Mapping[str, Sequence[int]],
    bpm: float = 120.0,
    swing: float = 0.0,
    ticks_per_beat: int = 480,
    channel: int = DRUM_CHANNEL,
) -> mido.MidiFile:
    """Build a one-track MIDI file from a 16th-note grid.

    ``grid`` maps a tag (``"kick"``) or a MIDI key as a string (``"42"``) to per-step
    velocities (0 = rest; any number of steps, e.g. 32 for two bars).
    """
    ticks_per_step = ticks_per_beat // 4
    events: list[tuple[int, int, int, int]] = []  # (tick, order, key, vel); offs before ons
    for name, steps in grid.items():
        key = int(name) if str(name).isdigit() else GM_KEYS.get(name)
        if key is None:
            raise ValueError(f"make_pattern: unknown pad {name!r}; use a tag or a MIDI key")
        for i, vel in enumerate(steps):
            if vel <= 0:
                continue
            tick = i * ticks_per_step + (round(0.5 * swing * ticks_per_step) if i % 2 else 0)
            events.append((tick, 1, key, int(min(vel, 127))))
            events.append((tick + ticks_per_step // 2, 0, key, 0))
    events.sort()
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    last = 0
    for tick, order, key, vel in events:
        kind = "note_on" if order == 1 else "note_off"
        track.append(mido.Message(kind, channel=channel, note=key, velocity=vel, time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi.tracks.append(track)
    return midi


def render_grid(
    pads_audio: Mapping[str, np.ndarray],
    grid: Mapping[str, Sequence[int]],
    bpm: float = 120.0,
    swing: float = 0.0,
    sr: int = 44100,
) -> np.ndarray:
    """Render a step grid directly with in-memory pads (the sequencer UI); float32 [1, T].

    ``pads_audio`` and ``grid`` share keys (pad names); velocities 0..127 per 16th step.
    """
    hits = []
    keys = {name: i for i, name in enumerate(pads_audio)}
    for name, steps in grid.items():
        if name not in keys:
            raise ValueError(f"render_grid: no audio for pad {name!r} (have {list(keys)})")
        times = _step_times(len(steps), bpm, swing)
        hits += [(float(times[i]), keys[name], int(v)) for i, v in enumerate(steps) if v > 0]
    samples = {keys[n]: np.asarray(a, dtype=np.float32).reshape(-1) for n, a in pads_audio.items()}
    return render_hits(samples, hits, sr, choke_hats=False)


def bundled_pattern_path() -> Path:
    """Path of the bundled 2-bar GM drum pattern."""
    return Path(__file__).parent / "assets" / "pattern.mid"
