"""``mambakit eval ablations``: the seed's ablation study (its Figure 4), at equal budget.

Four variants of the drum model are trained on the same data with the same budget
(minutes and/or steps), seed and batch size:

- ``full``: the model as shipped;
- ``no_sine``: no sine anchor (seed: a lower reconstruction loss, but the fundamental is lost);
- ``no_adsr``: no ADSR conditioning or envelope (seed: sustained instead of percussive sounds);
- ``full_res``: every LogCascade band at the full rate (seed: far more time and memory).

Each run is then scored by :func:`mambakit.eval.drums.evaluate_synth` (adherence, tag
accuracy, diversity, memorisation; the scaffold alone alongside) and profiled as in the
seed's Figure 4 (:mod:`mambakit.eval.profiles`: energy over time, average spectrum,
fundamental and harmonic preservation), next to the same profile of the real clips.
Training cost is the wall time per optimizer step and the peak memory growth of the
whole training call (:func:`mambakit.bench.common.measure_peak_memory`).

The verdicts on the seed's claims are rules in :mod:`mambakit.eval.claims`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mambakit.bench.common import measure_peak_memory, result_metadata, write_json
from mambakit.results import CellFormat, metrics_table

VARIANTS: dict[str, dict[str, bool]] = {
    "full": {},
    "no_sine": {"no_sine": True},
    "no_adsr": {"no_adsr": True},
    "full_res": {"full_res": True},
}
RESULT_KIND = "ablations"
TAIL_FRACTION = 0.2  # training losses are averaged over the last 20 % of the log lines


def training_tail(run_dir: str | os.PathLike[str], fraction: float = TAIL_FRACTION) -> dict:
    """Mean ``loss`` and mean of each logged term (``l1``, ``stft``, ``eps``) over the last
    ``fraction`` of the lines of ``run_dir/metrics.jsonl`` (at least one line): the
    training loss at the end of a run, less noisy than the last step alone."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = (
        [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
        if path.is_file()
        else []
    )
    lines = [r for r in lines if "loss" in r]
    if not lines:
        return {}
    tail = lines[-max(1, math.ceil(fraction * len(lines))) :]
    out = {"loss": sum(r["loss"] for r in tail) / len(tail)}
    for key in ("l1", "stft", "eps"):
        values = [r["logs"][key] for r in tail if key in r.get("logs", {})]
        if values:
            out[key] = sum(values) / len(values)
    return out


def as_dataset(data: Any, cache_dir: Any = None, progress: bool = True) -> Any:
    """``data`` loaded with :func:`~mambakit.drums.data.load_corpus` if it is a folder;
    a dataset (or ``None``) is returned as it is."""
    if data is None or not isinstance(data, (str, os.PathLike)):
        return data
    from mambakit.drums.data import load_corpus

    return load_corpus(data, cache_dir=cache_dir, workers=0, progress=progress)


def as_config(preset: Any) -> Any:
    """A ``DrumConfig`` from a preset name (``tiny``, ``small``, ``base``) or as given."""
    from mambakit.drums.config import DrumConfig

    return preset if isinstance(preset, DrumConfig) else DrumConfig.preset(preset)


@dataclass(frozen=True)
class StudySettings:
    """How every run of a drum study (ablations, early training) is trained and scored.

    Attributes:
        preset: a preset name or a ``DrumConfig`` the runs start from.
        heldout: a folder of one-shots or a ``DrumDataset`` the requests come from
            (``None``: the training data).
        batch_size, lr, seed: the training settings of each run.
        limit: requests per evaluation; ``gen_steps``: denoising steps (``None``: the
            config's).
        device: ``None`` = CPU; ``cache_dir``: where loaded corpora are cached.
    """

    preset: Any = "tiny"
    heldout: Any = None
    batch_size: int = 8
    lr: float = 2e-3
    limit: int | None = 24
    gen_steps: int | None = None
    seed: int = 0
    device: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    progress: bool = True


@dataclass(frozen=True)
class DrumStudy:
    """What every run of a drum study (ablations, early training) shares: the training
    clips, the held-out requests, the base config, the training settings and the evaluation
    set-up. Built once with :meth:`prepare`; each run is :meth:`run`."""

    train_set: Any
    requests: Any
    base: Any  # DrumConfig the runs start from
    tonal: Any  # tags with a pitch (:func:`~mambakit.eval.profiles.tonal_tags`)
    data_profile: Any  # the real clips' Figure-4 profile
    batch_size: int
    lr: float
    seed: int
    device: str | None
    limit: int | None  # requests per evaluation
    gen_steps: int | None  # denoising steps (None: the config's)
    progress: bool

    @classmethod
    def prepare(cls, data: Any, settings: StudySettings) -> DrumStudy:
        """Load ``data`` and ``settings.heldout`` (folders or datasets; the requests come
        from ``heldout`` when given, else from ``data``) and profile the real clips."""
        from mambakit.eval.profiles import profile_dataset, tonal_tags

        s = settings
        train_set = as_dataset(data, s.cache_dir, s.progress)
        base = as_config(s.preset)
        tonal = tonal_tags(train_set)
        return cls(
            train_set=train_set,
            requests=as_dataset(s.heldout, s.cache_dir, s.progress),
            base=base,
            tonal=tonal,
            data_profile=profile_dataset(train_set, base.n_samples, base.sample_rate, tonal),
            batch_size=s.batch_size, lr=s.lr, seed=s.seed, device=s.device, limit=s.limit,
            gen_steps=s.gen_steps, progress=s.progress,
        )  # fmt: skip

    @classmethod
    def start(
        cls, kind: str, data: Any, settings: StudySettings, out_dir: Any, command: str | None
    ) -> tuple[DrumStudy, dict[str, Any], Path]:
        """What every study does first: create ``out_dir``, :meth:`prepare` the study and
        its :meth:`new_result`; returns ``(study, result, out_dir as a Path)``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        study = cls.prepare(data, settings)
        return (
            study,
            study.new_result(kind, command, (settings.preset, data, settings.heldout)),
            out,
        )

    def new_result(
        self, kind: str, command: str | None, sources: tuple[Any, Any, Any]
    ) -> dict[str, Any]:
        """A study's result before its runs: ``kind``, ``meta``, the settings under
        ``config`` (a study adds its own items there), the real clips' profile.
        ``sources``: the ``(preset, data, heldout)`` the study was prepared from."""
        preset, data, heldout = sources

        def name(source: Any) -> str | None:
            return str(source) if isinstance(source, (str, os.PathLike)) else None

        settings = {
            "preset": preset if isinstance(preset, str) else "custom",
            "model": asdict(self.base),
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "eval_limit": self.limit,
            "gen_steps": self.gen_steps,
            "data": name(data) or "dataset",
            "heldout": name(heldout),
            "n_train_clips": len(self.train_set),
        }
        return {
            "kind": kind,
            "meta": result_metadata(command, self.device),
            "config": settings,
            "data": {"profile": asdict(self.data_profile)},
        }

    def train_config(self, minutes: float | None, steps: int | None) -> Any:
        """The :class:`~mambakit.train.TrainConfig` of one run of the study."""
        from mambakit.drums.training import drums_train_config

        return drums_train_config(
            steps, minutes, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
            device=self.device, progress=self.progress,
        )  # fmt: skip

    def train(
        self, run_dir: Path, config: Any, minutes: float | None, steps: int | None
    ) -> dict[str, Any]:
        """Train one run from scratch into ``run_dir``: steps, seconds, seconds per step,
        final loss, the loss tail (:func:`training_tail`) and peak memory growth in MiB."""
        from mambakit.drums import train_drums

        (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run, not appended to
        summary = []

        def train() -> None:
            summary.append(
                train_drums(self.train_set, run_dir, self.train_config(minutes, steps), config)
            )

        peak = measure_peak_memory(train, self.device)
        fit = summary[0]
        return {
            "steps": fit.steps,
            "seconds": fit.seconds,
            "seconds_per_step": fit.seconds / fit.steps if fit.steps else math.nan,
            "stopped_by": fit.stopped_by,
            "final_loss": fit.final_loss,
            "train_tail": training_tail(run_dir),
            "peak_memory_mb": None if peak is None else peak / 2**20,
        }

    def run(
        self,
        row: dict[str, Any],
        result: dict[str, Any],
        run_dir: Path,
        config: Any,
        *,
        minutes: float | None = None,
        steps: int | None = None,
    ) -> dict[str, Any]:
        """Train one run (:meth:`train`), score and profile it on the requests, and return
        ``row`` with the training numbers, ``scores`` and ``profile`` added. The scaffold
        alone is scored on the same requests once per study, into ``result["scaffold"]``."""
        from mambakit.drums import DrumSynth
        from mambakit.eval.profiles import compare_to_data, evaluate_with_profiles

        row.update(self.train(run_dir, config, minutes, steps))
        synth = DrumSynth.from_pretrained(run_dir, device=self.device)
        scores, profiles = evaluate_with_profiles(
            synth, self.train_set, self.requests, limit=self.limit, steps=self.gen_steps,
            tonal=self.tonal, progress=self.progress,
        )  # fmt: skip
        row["scores"] = asdict(scores[0])
        row["profile"] = asdict(compare_to_data(profiles["model"], self.data_profile))
        if "scaffold" not in result:  # the same requests every time: the scaffold once
            result["scaffold"] = {
                "scores": asdict(scores[1]),
                "profile": asdict(compare_to_data(profiles["scaffold"], self.data_profile)),
            }
        return row


def run_ablations(
    data: Any,
    out_dir: str | os.PathLike[str] = "out/ablations",
    settings: StudySettings = StudySettings(),  # noqa: B008  (frozen: safe as a default)
    *,
    minutes: float | None = None,
    steps: int | None = None,
    variants: Sequence[str] = tuple(VARIANTS),
    command: str | None = None,
) -> dict[str, Any]:
    """Train every variant at the same budget, evaluate and profile it; save and return
    the result (``OUT/ablations.json``, ``ablations.md``, ``figure4.png``, runs in ``OUT/runs``).

    ``data``: a folder of one-shots or a ``DrumDataset``; ``settings``: the preset (that the
    switches of :data:`VARIANTS` are applied to), held-out requests, training and scoring
    (:class:`StudySettings`); ``minutes`` / ``steps``: the budget of each variant
    (whichever ends first).

    Returns ``{"kind": "ablations", "meta", "config", "variants": [...], "scaffold", "data"}``;
    each variant has ``name, switches, steps, seconds, seconds_per_step, final_loss,
    train_tail, peak_memory_mb, scores`` (:class:`~mambakit.eval.drums.DrumScores` as a dict)
    and ``profile`` (:class:`~mambakit.eval.profiles.ProfileSummary` as a dict).
    """
    if minutes is None and steps is None:
        raise ValueError("give a budget: minutes=... or steps=... (or both)")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    study, result, out = DrumStudy.start(RESULT_KIND, data, settings, out_dir, command)
    result["config"].update(
        budget_minutes=minutes, budget_steps=steps, clip_seconds=study.base.seconds
    )
    result["variants"] = []
    # One untimed step first, so one-time costs (lazy imports, allocator arenas, thread
    # pools) are not charged to the time and memory of the first variant.
    warmup_dir = out / "runs" / "warmup"
    replace(study, progress=False).train(warmup_dir, study.base, minutes=None, steps=1)
    shutil.rmtree(warmup_dir, ignore_errors=True)
    for name in variants:
        if settings.progress:
            print(f"ablations: training {name} ...", flush=True)
        row = {"name": name, "switches": VARIANTS[name]}
        config = study.base.with_(**VARIANTS[name])
        result["variants"].append(
            study.run(row, result, out / "runs" / name, config, minutes=minutes, steps=steps)
        )
        write_json(out / "ablations.json", result)  # keep what is done if interrupted
    write_json(out / "ablations.json", result)
    (out / "ablations.md").write_text(ablations_markdown(result) + "\n")
    draw_ablations(result, out / "figure4.png")
    return result


# ------------------------------------------------------------------- reporting


def _milliseconds(seconds: float) -> str:
    return f"{1000 * seconds:.0f}"


#: Every number a drum study reports, in table order: (label, path into a run's record, format).
STUDY_METRICS: list[tuple[str, str, CellFormat]] = [
    ("training steps", "steps", "{:.0f}"),
    ("seconds per step", "seconds_per_step", "{:.3f}"),
    ("peak training memory (MiB)", "peak_memory_mb", "{:.0f}"),
    ("training loss (last 20 %)", "train_tail.loss", "{:.3f}"),
    ("  L1 term", "train_tail.l1", "{:.4f}"),
    ("  STFT term", "train_tail.stft", "{:.3f}"),
    ("tag accuracy", "scores.tag_accuracy", "{:.1%}"),
    ("median pitch error (cents, tonal)", "scores.median_pitch_error_cents", "{:.1f}"),
    ("envelope correlation", "scores.envelope_correlation", "{:.3f}"),
    ("diversity vs real (same tag)", "scores.diversity_ratio", "{:.2f}"),
    ("nearest-train distance vs train NN", "scores.memorisation_ratio", "{:.2f}"),
    ("median peak (dBFS)", "profile.median_peak_db", "{:.1f}"),
    ("median energy centroid (ms)", "profile.median_energy_centroid_s", _milliseconds),
    ("percussive share", "profile.percussive_rate", "{:.0%}"),
    ("fundamental fraction (tonal)", "profile.fundamental_fraction", "{:.3f}"),
    ("harmonic fraction (tonal)", "profile.harmonic_fraction", "{:.3f}"),
    ("spectrum distance to data (dB)", "profile.spectrum_distance_db", "{:.1f}"),
]


def ablations_markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table: the variants, the scaffold alone and the real data."""
    cfg = result["config"]
    budget = " and ".join(
        s
        for s in (
            f"{cfg['budget_minutes']:g} min" if cfg.get("budget_minutes") else "",
            f"{cfg['budget_steps']} steps" if cfg.get("budget_steps") else "",
        )
        if s
    )
    columns = [(v["name"], v) for v in result["variants"]]
    if "scaffold" in result:
        columns.append(("scaffold", result["scaffold"]))
    columns.append(("data", result["data"]))
    return (
        f"Each variant trained for {budget} (batch {cfg['batch_size']}, preset "
        f"{cfg['preset']}, {cfg['n_train_clips']} clips); `data` is the real clips.\n\n"
        + metrics_table(columns, STUDY_METRICS, align="l" + "r" * len(columns))
    )


def draw_ablations(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The seed's Figure 4 with numbers: energy over time, average spectrum, fundamental
    and harmonic fractions, and training cost relative to ``full``; saved as PNG."""
    from matplotlib.figure import Figure

    named = [(v["name"], v["profile"]) for v in result["variants"]]
    named.append(("data", result["data"]["profile"]))
    fig = Figure(figsize=(11, 7.5), dpi=90, layout="constrained")
    (ax_energy, ax_spec), (ax_pitch, ax_cost) = fig.subplots(2, 2)
    seconds = result["config"].get("clip_seconds") or 1.0
    for name, prof in named:
        style = {"color": "black", "ls": "--", "lw": 1.5} if name == "data" else {"lw": 1.2}
        curve = prof.get("energy_curve") or []
        if curve:
            t = (0.5 + np.arange(len(curve))) * seconds / len(curve)
            ax_energy.plot(t, curve, label=name, **style)
        if prof.get("spectrum_hz"):
            ax_spec.semilogx(prof["spectrum_hz"], prof["spectrum_db"], label=name, **style)
    ax_energy.set(title="energy over time", xlabel="time [s]", ylabel="share of energy")
    ax_energy.legend(fontsize=8)
    ax_spec.set(title="average spectrum", xlabel="frequency [Hz]", ylabel="dB re loudest band")
    ax_spec.set_ylim(-80, 3)

    width = 0.38
    offsets = (-width / 2, width / 2)
    x = np.arange(len(named))
    pitch_bars = (("fundamental_fraction", "fundamental"), ("harmonic_fraction", "harmonics 1-16"))
    for offset, (key, label) in zip(offsets, pitch_bars):
        values = [number_or_nan(p.get(key)) for _, p in named]
        ax_pitch.bar(x + offset, np.nan_to_num(values), width, label=label)
        for xi, value in zip(x, values):
            if math.isnan(value):  # a missing bar would read as zero
                ax_pitch.text(xi + offset, 0.02, "n/a", ha="center", fontsize=7, rotation=90)
    ax_pitch.set_xticks(x, [n for n, _ in named])
    ax_pitch.set(title="share of power at the requested note (tonal tags)", ylim=(0, 1.05))
    ax_pitch.legend(fontsize=8)

    variants = result["variants"]
    ref = next((v for v in variants if v["name"] == "full"), variants[0] if variants else None)
    x = np.arange(len(variants))
    cost_bars = (("seconds_per_step", "time per step"), ("peak_memory_mb", "peak memory"))
    for offset, (key, label) in zip(offsets, cost_bars):
        values = [_ratio(v.get(key), ref.get(key) if ref else None) for v in variants]
        ax_cost.bar(x + offset, np.nan_to_num(values), width, label=label)
    ax_cost.axhline(1.0, color="gray", lw=0.8)
    ax_cost.set_xticks(x, [v["name"] for v in variants])
    ax_cost.set(title=f"training cost relative to {ref['name'] if ref else '-'}", ylabel="x")
    ax_cost.legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write a study's matplotlib figure to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def number_or_nan(value: Any) -> float:
    """``value`` as a float, NaN where it is missing (``None``), for plotting."""
    return math.nan if value is None else float(value)


def _ratio(value: Any, reference: Any) -> float:
    """``value / reference``, NaN where either is missing or the reference is zero."""
    return math.nan if value is None or not reference else float(value) / float(reference)
