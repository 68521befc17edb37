"""Handlers of the web UI: plain Python functions over the public APIs, no Gradio in here.

Every function takes and returns plain values (numbers, strings, NumPy arrays, paths the
handler itself wrote) so the UI is tested without a browser and holds no model logic:
drums go through :class:`mambakit.drums.DrumSynth`, kits and loops through
:mod:`mambakit.drums.kit` / :mod:`mambakit.drums.arrange`, timbre through
``mambakit.timbre.TimbreTransfer`` and continuation through ``mambakit.lm.MusicGenerator``.

Safety rules the UI relies on (issue 6):

* user errors raise :class:`UIError` with a message meant for the page (no server paths,
  no stack traces);
* uploads are checked by :func:`check_upload`: size and extension limits, then actually
  decoded, with a length limit;
* the only path typed by a user is the run-directory box, and :func:`validate_run_dir`
  accepts it only if it is a directory holding a checkpoint of the expected kind (and,
  with ``--runs-root``, inside that folder);
* outputs go to a :class:`SessionFiles` temporary folder, removed when the session ends;
* generation requests are bounded (:data:`MAX_VARIATIONS`, :data:`MAX_LM_SECONDS`, ...).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mambakit.drums.kit import (
    SHAPE_FIELDS,
    KitPad,
    PadShape,
    default_kit_path,
    load_kit_yaml,
    write_kit,
)
from mambakit.dsp import ADSR, AudioError, load_audio, render_adsr, resample, save_audio, to_mono
from mambakit.utils import note_name, parse_note

#: Uploads larger than this are refused before decoding.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Uploads longer than this (after decoding) are refused.
MAX_UPLOAD_SECONDS = 30.0
#: File extensions accepted as audio; the content is decoded and checked as well.
AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3")
#: Bounds of one request.
MAX_VARIATIONS = 8
MAX_STEPS = 64
MAX_GUIDANCE = 5.0
MAX_LM_SECONDS = 30.0
MAX_TOP_K = 4096
N_PADS = 8
N_STEPS = 16
BPM_RANGE = (40.0, 300.0)

#: The run the demo (``make demo``) writes; loaded when there is no packaged drum model.
DEMO_RUN = Path("out/demo/run")


class UIError(ValueError):
    """A problem with what the user asked for, worded for the page."""


# ---------------------------------------------------------------------------- sessions


class SessionFiles:
    """A private temporary folder for one browser session's outputs.

    Names are chosen here (never by the page); :meth:`cleanup` removes the folder and is
    called when the session ends (and at exit for whatever is left).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mambakit-ui-", dir=root))
        self._count = 0

    def path(self, stem: str, suffix: str) -> Path:
        """A fresh file path ``<dir>/<count>-<stem><suffix>`` (unique within the session)."""
        self._count += 1
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40] or "out"
        return self.dir / f"{self._count:04d}-{safe}{suffix}"

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------- runs


def validate_run_dir(
    text: str | Path | None,
    kind: str | tuple[str, ...] = "drums",
    runs_root: str | Path | None = None,
) -> Path:
    """Check a user-typed run directory before anything is loaded from it.

    A run is a directory with ``config.json`` and ``model.safetensors`` (what
    ``save_pretrained`` and the trainer write) whose ``model_type`` is ``kind``
    (a model type such as ``"drums"``, or a tuple admitting any of several). With
    ``runs_root`` (``mambakit ui --runs-root``) the directory must lie inside it (a relative
    path is read from it), so a page served beyond loopback cannot open other checkpoints on
    the server. Nothing else on
    the filesystem is touched.

    Raises:
        UIError: empty text, no such directory, outside ``runs_root``, or not a run of that kind.
    """
    raw = str(text or "").strip()
    if not raw:
        raise UIError("type the path of a run directory (the folder a training run wrote)")
    path = Path(raw).expanduser()
    if runs_root is not None:
        root = Path(runs_root).expanduser().resolve()
        path = (root / path).resolve()
        if not path.is_relative_to(root):
            raise UIError(f"{raw}: only runs inside the server's runs folder can be loaded")
    if not path.is_dir():
        raise UIError(f"{raw}: no such directory")
    missing = [n for n in ("config.json", "model.safetensors") if not (path / n).is_file()]
    if missing:
        raise UIError(f"{raw}: not a run directory (missing {', '.join(missing)})")
    try:
        meta = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UIError(f"{raw}: config.json is not valid JSON ({exc})") from None
    found = meta.get("model_type") if isinstance(meta, dict) else None
    kinds = (kind,) if isinstance(kind, str) else kind
    if found not in kinds:
        raise UIError(f"{raw}: this run holds a {found or 'unknown'} model, not a {kinds[0]} model")
    return path


def _open_drums(path: Path) -> tuple[Any, str]:
    from mambakit.drums import DrumSynth

    synth = DrumSynth.from_pretrained(path)
    return synth, f"{synth.sample_rate} Hz, tags: {', '.join(synth.tags)}"


def _open_timbre(path: Path) -> tuple[Any, str]:
    from mambakit.timbre import TimbreTransfer

    model = TimbreTransfer.from_pretrained(path, progress=False)
    return model, f"{model.engine} engine, {model.sample_rate} Hz"


def _open_lm(path: Path) -> tuple[Any, str]:
    from mambakit.lm import MusicGenerator

    model = MusicGenerator.from_pretrained(str(path))
    return model, f"{model.sample_rate} Hz"


#: Model kind -> the checkpoint ``model_type`` s a run box of that kind accepts.
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "drums": ("drums",),
    "timbre": ("timbre", "timbre-scaffold"),  # the U-Net and the scaffold engine
    "lm": ("lm",),
}
#: Model kind -> (its name on the page, ``open(path) -> (model, details)``).
MODEL_KINDS: dict[str, tuple[str, Any]] = {
    "drums": ("drum", _open_drums),
    "timbre": ("timbre", _open_timbre),
    "lm": ("music", _open_lm),
}


def open_model(kind: str, path: str | Path, source: str | None = None) -> tuple[Any, str]:
    """Load a checkpoint of ``kind`` that is already trusted (a validated run, a packaged
    model or a run named on the command line) -> ``(model, status message)``."""
    noun, opener = MODEL_KINDS[kind]
    try:
        model, details = opener(path)
    except Exception as exc:  # incompatible checkpoint etc.: say so, keep the app alive
        raise UIError(f"{source or path}: cannot load the {noun} model ({exc})") from None
    return model, f"{noun.capitalize()} model loaded from {source or path} ({details})"


def load_run(
    kind: str, text: str | Path | None, runs_root: str | Path | None = None
) -> tuple[Any, str]:
    """Validate a typed run directory (:func:`validate_run_dir`) and load it ->
    ``(model, status message)``; ``kind`` is one of :data:`MODEL_KINDS`."""
    return open_model(kind, validate_run_dir(text, MODEL_TYPES[kind], runs_root))


# ---------------------------------------------------------------------------- uploads


def check_upload(
    path: str | Path | None,
    label: str = "upload",
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_seconds: float = MAX_UPLOAD_SECONDS,
) -> tuple[torch.Tensor, int]:
    """Check an uploaded file and decode it -> ``(audio [1, T] mono float32, sr)``.

    ``path`` is the temporary file the web server stored the upload in (never a path
    typed in the page). Messages name the file by its base name only.

    Raises:
        UIError: missing, too large, not an audio extension, undecodable, too long,
            or silent/non-finite.
    """
    if path is None:
        raise UIError(f"{label}: no file given")
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise UIError(f"{label}: the uploaded file {name} is gone; upload it again")
    size = path.stat().st_size
    if size > max_bytes:
        raise UIError(
            f"{label}: {name} is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB"
        )
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise UIError(
            f"{label}: {name} is not an audio file (accepted: {', '.join(AUDIO_EXTENSIONS)})"
        )
    try:
        audio, sr = load_audio(path)
    except AudioError as exc:
        # The decoder's message quotes the server-side path; the page sees the name only.
        detail = str(exc).split(": ", 1)[-1].replace(str(path), name)
        raise UIError(f"{label}: {name} could not be decoded as audio ({detail})") from None
    seconds = audio.shape[-1] / sr
    if seconds > max_seconds:
        raise UIError(f"{label}: {name} is {seconds:.1f} s long; the limit is {max_seconds:.0f} s")
    if not torch.isfinite(audio).all():
        raise UIError(f"{label}: {name} contains invalid (NaN or infinite) samples")
    return to_mono(audio), sr


# ---------------------------------------------------------------------------- drum pads


@dataclass(frozen=True)
class PadParams(PadShape):
    """The controls of one pad as the page shows them: its :class:`PadShape` (times in
    seconds, drop in semitones) and ``note`` a name like ``"C1"`` or a MIDI number as
    text."""

    name: str = "pad"
    tag: str = "kick"
    text: str = ""
    note: str = "C1"
    steps: int = 0  # 0 = the model's default
    cfg: float = 0.0  # 0 = the model's default
    seed: int = 0
    strength: float = 0.6

    def adsr(self) -> ADSR:
        for field in ("attack", "decay", "release", "pitch_decay"):
            if not 0.0 <= getattr(self, field) <= 5.0:
                raise UIError(f"pad {self.name}: {field} must be between 0 and 5 s")
        if not 0.0 <= self.sustain <= 1.0:
            raise UIError(f"pad {self.name}: sustain must be between 0 and 1")
        return super().adsr()

    def midi(self) -> int:
        try:
            midi = parse_note(str(self.note).strip())
        except (TypeError, ValueError) as exc:
            raise UIError(f"pad {self.name}: note {self.note!r} is not a note ({exc})") from None
        if not 0 <= midi <= 127:
            raise UIError(f"pad {self.name}: note {self.note!r} is outside MIDI 0..127")
        return midi

    def to_kit_pad(self) -> KitPad:
        shape = {field: getattr(self, field) for field in SHAPE_FIELDS}
        return KitPad(
            self.name, self.tag, self.midi(), **shape, seed=int(self.seed), text=self.text or None
        )


def default_pads() -> list[PadParams]:
    """The bundled 8-pad kit (``drums/assets/default_kit.yaml``) as editable pads."""
    pads = load_kit_yaml(default_kit_path())[:N_PADS]
    return [
        PadParams(
            p.name,
            p.tag,
            note=note_name(p.note),
            seed=p.seed,
            **{field: getattr(p, field) for field in SHAPE_FIELDS},
        )  # fmt: skip
        for p in pads
    ]


def requested_curves(
    pad: PadParams, sr: int = 44100, seconds: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a pad asks for -> ``(t [T] s, ADSR envelope [T], pitch curve [T] in semitones
    above the root)``; the pitch curve is ``drop * exp(-t / decay)`` as in :class:`KitPad`."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    env = render_adsr(pad.adsr(), n, sr).numpy()
    return t, env, pad.to_kit_pad().pitch_env(n, sr)


def generate_pad(
    synth: Any,
    pad: PadParams,
    n: int = 1,
    init_audio: tuple[torch.Tensor, int] | None = None,
) -> tuple[np.ndarray, int]:
    """Generate ``n`` takes of one pad -> ``(audio [n, T] float32, sample_rate)``.

    ``init_audio`` (``([1, T], sr)`` from :func:`check_upload`) makes variations of that
    sound at ``pad.strength``; it is resampled to the model's rate first.
    """
    if synth is None:
        raise UIError("no drum model loaded: point the run box at a drum run and press Load")
    if not 1 <= n <= MAX_VARIATIONS:
        raise UIError(f"number of variations must be 1..{MAX_VARIATIONS}, got {n}")
    if not 0 <= pad.steps <= MAX_STEPS:
        raise UIError(f"steps must be 0 (model default) .. {MAX_STEPS}, got {pad.steps}")
    if not 0 <= pad.cfg <= MAX_GUIDANCE:
        raise UIError(f"guidance must be 0 (model default) .. {MAX_GUIDANCE:g}, got {pad.cfg}")
    if pad.tag not in synth.tags and not pad.text.strip():
        raise UIError(f"pad {pad.name}: tag {pad.tag!r} is not one of {', '.join(synth.tags)}")
    init = None
    if init_audio is not None:
        audio, sr = init_audio
        init = resample(audio, sr, synth.sample_rate) if sr != synth.sample_rate else audio
    sr = int(synth.sample_rate)
    env = pad.to_kit_pad().pitch_env(sr, sr)  # one second; the synth fits it to its length
    try:
        audio, sr = synth.generate(
            tag=None if pad.text.strip() else pad.tag,
            text=pad.text.strip() or None,
            note=pad.midi(),
            adsr=pad.adsr(),
            pitch_env=env,
            init_audio=init,
            strength=float(pad.strength),
            steps=int(pad.steps) or None,
            cfg=float(pad.cfg) or None,
            seed=int(pad.seed),
            n=int(n),
        )
    except ValueError as exc:  # e.g. an unknown tag in free text
        raise UIError(f"pad {pad.name}: {exc}") from None
    return audio.reshape(n, -1).numpy().astype(np.float32), int(sr)


def write_wav(files: SessionFiles, stem: str, audio: np.ndarray | torch.Tensor, sr: int) -> Path:
    """Save mono audio ``[T]`` / ``[1, T]`` as a 16-bit WAV in the session folder."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(1, -1)
    path = files.path(stem, ".wav")
    save_audio(path, x.clamp(-1.0, 1.0), sr)
    return path


# ---------------------------------------------------------------------------- sequencer and kit


def _velocity_row(
    name: str, steps: Sequence[int], bars: int, pads_audio: Mapping[str, np.ndarray]
) -> list[int]:
    """One pad's row of the grid: velocity 100 on its 1-based ``steps`` in every bar."""
    if name not in pads_audio:
        raise UIError(f"pad {name} has steps on but no sound yet: generate it first")
    row = [0] * (N_STEPS * bars)
    for s in steps:
        if not 1 <= int(s) <= N_STEPS:
            raise UIError(f"step {s} of pad {name} is outside 1..{N_STEPS}")
        for b in range(bars):
            row[b * N_STEPS + int(s) - 1] = 100
    return row


def render_loop(
    pads_audio: Mapping[str, np.ndarray],
    grid: Mapping[str, Sequence[int]],
    bpm: float,
    swing: float,
    sr: int,
    bars: int = 1,
) -> np.ndarray:
    """Render the 16-step grid with the kit as a loop -> float32 ``[T]``.

    ``grid`` maps pad names to the 1-based steps that are on (velocity 100). The loop is
    exactly ``bars`` bars of 4/4 long (``bars * 4 * 60 / bpm`` seconds): tails that ring
    past the bar line wrap around to the start, as a looping sampler plays them.
    """
    from mambakit.drums.arrange import render_grid

    if not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
        raise UIError(f"BPM must be between {BPM_RANGE[0]:.0f} and {BPM_RANGE[1]:.0f}")
    if not 0.0 <= swing < 1.0:
        raise UIError("swing must be in [0, 1)")
    velocities = {
        name: _velocity_row(name, steps, bars, pads_audio) for name, steps in grid.items() if steps
    }
    if not velocities:
        raise UIError("the sequencer is empty: switch on some steps first")
    length = int(round(bars * 4 * 60.0 / bpm * sr))
    used = {name: pads_audio[name] for name in velocities}
    mix = render_grid(used, velocities, bpm=bpm, swing=swing, sr=sr).reshape(-1)
    loop = np.zeros(length, dtype=np.float32)
    for start in range(0, mix.shape[0], length):  # wrap ringing tails around the loop
        piece = mix[start : start + length]
        loop[: piece.shape[0]] += piece
    peak = float(np.abs(loop).max())
    return loop * (0.99 / peak) if peak > 0.99 else loop


def export_kit(
    files: SessionFiles, pads: Sequence[PadParams], pads_audio: Mapping[str, np.ndarray], sr: int
) -> Path:
    """Zip the generated pads as a sampler kit: ``kit.sfz``, ``kit.json``, ``samples/*.wav``
    (written by :func:`mambakit.drums.kit.write_kit`). Pads not generated yet are left out."""
    ready = [p for p in pads if p.name in pads_audio]
    if not ready:
        raise UIError("no pad has a sound yet: generate at least one pad before exporting")
    folder = files.path("kit", "")
    write_kit(folder, [p.to_kit_pad() for p in ready], [pads_audio[p.name] for p in ready], sr)
    archive = files.path("mambakit-kit", ".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in sorted(folder.rglob("*")):
            if item.is_file():
                zf.write(item, item.relative_to(folder).as_posix())
    shutil.rmtree(folder, ignore_errors=True)
    return archive


def pad_from_values(base: PadParams, **values: Any) -> PadParams:
    """A copy of ``base`` with the page's values, typed and checked."""
    try:
        typed = {k: type(getattr(base, k))(v) for k, v in values.items() if v is not None}
    except (TypeError, ValueError) as exc:
        raise UIError(f"pad {base.name}: {exc}") from None
    return replace(base, **typed)


# ---------------------------------------------------------------------------- timbre and lm


def transfer_timbre(
    model: Any,
    content: tuple[torch.Tensor, int],
    style: tuple[torch.Tensor, int] | list[tuple[torch.Tensor, int]] | None,
    alphas: Sequence[float],
    strength: float = 1.0,
) -> tuple[np.ndarray, int]:
    """Play ``content`` with the timbre of ``style`` (one ``(audio, sr)``, or a list of them:
    several clips of one instrument, one palette) -> ``(audio [T], sr)``; ``alphas`` are
    the U-Net's per-level AdaIN strengths (skip 1..4, bottleneck) in [0, 1], ``strength``
    the scaffold engine's one style strength (the engine of ``model`` picks which)."""
    if model is None:
        raise UIError("no timbre model loaded: point the run box at a timbre run and press Load")
    if any(not 0.0 <= a <= 1.0 for a in (*alphas, strength)):
        raise UIError("every alpha must be in [0, 1]")
    c_audio, c_sr = content
    if isinstance(style, list):
        s_audio, s_sr = [a for a, _ in style], [r for _, r in style]
    else:
        s_audio, s_sr = style if style is not None else (None, None)
    alpha = float(strength) if getattr(model, "engine", "unet") == "scaffold" else tuple(alphas)
    try:
        with warnings.catch_warnings():  # the report carries them (transfer_messages)
            warnings.simplefilter("ignore")
            out, sr = model.transfer(c_audio, s_audio, alpha, sr=c_sr, style_sr=s_sr)
    except (ValueError, AudioError) as exc:
        raise UIError(f"timbre transfer: {exc}") from None
    return out.reshape(-1).numpy(), int(sr)


def transfer_messages(model: Any) -> tuple[list[str], list[str]]:
    """What the page tells after a transfer, from ``model.last_report``: ``(warnings,
    notes)``, the report's warnings (content that is not one pitch line) and, for the
    scaffold engine, how many style notes it read (with a hint when that is one)."""
    report = getattr(model, "last_report", None)
    if report is None:
        return [], []
    notes = []
    if getattr(model, "engine", "unet") == "scaffold" and report.style_notes:
        notes.append(
            f"style: {report.style_notes} notes, one palette" if report.style_notes > 1 else
            "style: one note; several notes of the instrument (a scale, or more files) move "
            "the timbre further"
        )  # fmt: skip
    return list(report.warnings), notes


def continue_music(
    model: Any,
    prompt: tuple[torch.Tensor, int] | None,
    seconds: float,
    temperature: float,
    top_k: int,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Continue ``prompt`` (or start from scratch) for ``seconds`` -> ``(audio [T], sr)``."""
    if model is None:
        raise UIError("no music model loaded: point the run box at an lm run and press Load")
    if not 0.0 < seconds <= MAX_LM_SECONDS:
        raise UIError(f"seconds must be in (0, {MAX_LM_SECONDS:.0f}]")
    if not 0.0 < temperature <= 5.0:
        raise UIError("temperature must be in (0, 5]")
    if not 0 <= top_k <= MAX_TOP_K:
        raise UIError(f"top-k must be 0 (off) .. {MAX_TOP_K}")
    from mambakit.lm.generate import Sampling

    audio, sr = prompt if prompt is not None else (None, None)
    sampling = Sampling(float(temperature), int(top_k) or None, seed=int(seed))
    out = model.generate(
        prompt=audio, prompt_sample_rate=sr, seconds=float(seconds), sampling=sampling
    )
    return out[0, 0].float().cpu().numpy(), int(model.sample_rate)
