"""The seed's claims and the explicit rules that judge them from measured numbers.

Each rule takes the JSON result of one command (or ``None`` when it was not run) and
returns a :class:`Verdict`: ``holds``, ``does not hold`` or ``not measured here``, with the
numbers it compared. The thresholds are the constants below; changing a rule means
changing this file, never editing a report by hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HOLDS, FAILS, UNMEASURED = "holds", "does not hold", "not measured here"

FAR_MORE = 2.0  # "far more" time or memory: at least twice the LogCascade's
LOGCASCADE_MEMORY_CLAIM = 256.0  # "up to 256x memory efficiency"
# "usable" after one batch: audible, shaped like the requested envelope, percussive,
# and near the requested note where the tag is tonal
USABLE_MIN_PEAK_DB = -40.0
USABLE_MIN_ENVELOPE_CORRELATION = 0.5
USABLE_MIN_PERCUSSIVE_RATE = 0.5
USABLE_MAX_PITCH_ERROR_CENTS = 100.0
# "coherent" within 50 batches: recognised as its tag at least as often as the scaffold
# alone, close to the requested envelope, within a quarter tone of the requested note
COHERENT_MIN_ENVELOPE_CORRELATION = 0.8
COHERENT_MAX_PITCH_ERROR_CENTS = 50.0
FIRST_BATCH, COHERENT_BY = 1, 50
# The seed's timbre figures (mambamuse-timbre-transfer, section IV-C) and the rules on them:
# "forward and backward pass together require 275.25 MB" (2.1 s): "about" = our measured
# peak of the seed-size (base, unidirectional) generator within 1.5x of it; "real-time"
# = more audio seconds than wall seconds; transfer training must keep the content's pitch
# and loudness curves at a correlation of at least 0.9
SEED_TIMBRE_TRAIN_MB = 275.25
TIMBRE_MEMORY_SLACK = 1.5
REAL_TIME_FACTOR = 1.0
TIMBRE_MIN_CONTENT_CORRELATION = 0.9
# The transfer run's style gain must beat the baseline's by this many paired standard errors.
TIMBRE_GAIN_SE_MULTIPLE = 2.0
# Issue 15's targets for the shipped timbre engine, on held-out instruments: the MFCC
# statistics moved at least half way to the target's, the content's pitch kept on 97 % of
# its voiced frames, and 10 s of content transferred at 50x real time or faster.
SCAFFOLD_MIN_STYLE_GAIN = 0.5
SCAFFOLD_MIN_PITCH_ACCURACY = 0.97
SCAFFOLD_MIN_X_REALTIME = 50.0
# seed 003's memory comparison: a Mamba LM decodes with a cache that does not grow with the
# context while the transformer's KV cache does; "constant" = its step time at the longest
# context within this factor of the shortest's (bench lm takes medians of several steps)
CONSTANT_STEP_GROWTH = 1.2
# "the hybrid beats the transformer": lower mean validation loss by more than the seed spread,
# the larger of the two backbones' ranges (max - min) over at least this many seeds each
MIN_SEEDS = 2


@dataclass(frozen=True)
class Verdict:
    """One seed claim, its verdict, why (the numbers compared) and the command measuring it."""

    claim: str
    verdict: str
    why: str
    command: str


ABLATIONS_COMMAND = "mambakit eval ablations DATA --budget-minutes M"
EARLY_COMMAND = "mambakit eval early-training DATA"
BENCH_DRUMS_COMMAND = "mambakit bench drums (make bench)"
BENCH_TIMBRE_COMMAND = "mambakit bench timbre (make bench)"
EVAL_TIMBRE_COMMAND = (
    "mambakit eval timbre TRANSFER_RUN RECONSTRUCTION_RUN --pairs HELDOUT "
    "--json out/timbre/eval.json"
)
LM_COMPARE_COMMAND = "mambakit eval lm-compare TOKENS --budget-minutes M"
BENCH_LM_COMMAND = "mambakit bench lm --json out/bench/lm.json (make bench)"


def _num(value: Any) -> float | None:
    """A finite float, or None for a missing / NaN / non-numeric value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def _get(row: dict[str, Any] | None, path: str) -> float | None:
    value: Any = row
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return _num(value)


def _show(value: float | None, spec: str = ".2f") -> str:
    return "missing" if value is None else format(value, spec)


def _variant(result: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for row in (result or {}).get("variants", []):
        if row.get("name") == name:
            return row
    return None


def _missing(claim: str, command: str, what: str) -> Verdict:
    return Verdict(claim, UNMEASURED, what, command)


def _paired(
    result: dict[str, Any] | None, ablated: str, keys: tuple[str, ...]
) -> tuple[list[tuple[float, float]], str | None]:
    """``(full's, ablated's)`` value of each key, and what is lacking (``None``: nothing):
    the result, a run, or some numbers."""
    if result is None:
        return [], "no ablations result"
    rows = {name: _variant(result, name) for name in ("full", ablated)}
    runs = [name for name, row in rows.items() if row is None]
    if runs:
        return [], "no " + " or ".join(runs) + " run in the ablations result"
    pairs = [(_get(rows["full"], k), _get(rows[ablated], k)) for k in keys]
    gaps = [
        f"{name}: {key.split('.')[-1]}"
        for key, pair in zip(keys, pairs)
        for name, value in zip(rows, pair)
        if value is None
    ]
    return pairs, ("missing or n/a: " + ", ".join(gaps)) if gaps else None


def no_sine_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff ``no_sine`` ends training at a lower loss than ``full`` yet keeps less power
    at the requested fundamental and has no smaller pitch error."""
    claim = "Removing the sine anchors hurts the fundamental despite a lower training loss"
    keys = ("train_tail.loss", "profile.fundamental_fraction", "scores.median_pitch_error_cents")
    values, lacking = _paired(result, "no_sine", keys)
    if lacking:
        return _missing(claim, ABLATIONS_COMMAND, lacking)
    (loss_f, loss_n), (fund_f, fund_n), (cents_f, cents_n) = values
    loss_lower, less_fundamental, no_better_pitch = (
        loss_n < loss_f, fund_n < fund_f, cents_n >= cents_f
    )  # fmt: skip
    why = (
        f"training loss {loss_n:.3f} vs full {loss_f:.3f} "
        f"({'lower' if loss_lower else 'not lower'}); "
        f"fundamental fraction {fund_n:.3f} vs {fund_f:.3f}; "
        f"median pitch error {cents_n:.0f} vs {cents_f:.0f} cents"
    )
    ok = loss_lower and less_fundamental and no_better_pitch
    return Verdict(claim, HOLDS if ok else FAILS, why, ABLATIONS_COMMAND)


def no_adsr_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff ``no_adsr`` gives fewer percussive clips than ``full`` and a later energy
    centroid (its energy sits later in the clip: sustained)."""
    claim = "Removing the ADSR conditioning gives sustained instead of percussive sounds"
    keys = ("profile.percussive_rate", "profile.median_energy_centroid_s")
    values, lacking = _paired(result, "no_adsr", keys)
    if lacking:
        return _missing(claim, ABLATIONS_COMMAND, lacking)
    (perc_f, perc_n), (cent_f, cent_n) = values
    why = (
        f"percussive share {perc_n:.0%} vs full {perc_f:.0%}; "
        f"energy centroid {1000 * cent_n:.0f} ms vs {1000 * cent_f:.0f} ms"
    )
    ok = perc_n < perc_f and cent_n > cent_f
    return Verdict(claim, HOLDS if ok else FAILS, why, ABLATIONS_COMMAND)


def full_res_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff training ``full_res`` costs at least :data:`FAR_MORE` times ``full``'s
    time per step *and* peak memory."""
    claim = "Full resolution (no band downsampling) costs far more time per step and memory"
    keys = ("seconds_per_step", "peak_memory_mb")
    values, lacking = _paired(result, "full_res", keys)
    if lacking:
        return _missing(claim, ABLATIONS_COMMAND, lacking)
    (time_f, time_r), (mem_f, mem_r) = values
    if time_f <= 0 or mem_f <= 0:
        return _missing(claim, ABLATIONS_COMMAND, "full's time or memory measured as zero")
    time_x, mem_x = time_r / time_f, mem_r / mem_f
    why = (
        f"time per step {time_x:.1f}x, peak training memory {mem_x:.1f}x full's "
        f"(rule: both >= {FAR_MORE:g}x)"
    )
    ok = time_x >= FAR_MORE and mem_x >= FAR_MORE
    return Verdict(claim, HOLDS if ok else FAILS, why, ABLATIONS_COMMAND)


def _bench_row(result: dict[str, Any] | None, model: str, pass_: str) -> dict[str, Any] | None:
    for row in (result or {}).get("rows", []):
        if row.get("model") == model and row.get("pass") == pass_:
            return row
    return None


def logcascade_memory_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff one full-rate Mamba2 sized for 20 Hz needs at least 256x the LogCascade's
    peak memory (``mambakit bench drums``): in a forward+backward pass when that was
    measured (``--all``), else in a forward pass (a lower bound of the training ratio's
    order: the large state's activations dominate both)."""
    claim = "The LogCascade is up to 256x more memory-efficient than one large full-rate state"
    for pass_ in ("fwd+bwd", "fwd"):
        ratio = _get(_bench_row(result, "mamba2_20hz", pass_), "mem_ratio")
        if ratio is not None:
            break
    if ratio is None:
        return _missing(claim, BENCH_DRUMS_COMMAND, "needs the mamba2_20hz memory ratio")
    why = f"mamba2_20hz peak memory is {ratio:.1f}x the LogCascade's ({pass_})"
    return Verdict(
        claim, HOLDS if ratio >= LOGCASCADE_MEMORY_CLAIM else FAILS, why, BENCH_DRUMS_COMMAND
    )


def _row_at(result: dict[str, Any] | None, batches: int) -> dict[str, Any] | None:
    for row in (result or {}).get("rows", []):
        if row.get("batches") == batches:
            return row
    return None


def usable_failures(row: dict[str, Any]) -> list[str]:
    """What keeps a row's samples from being "usable" (empty list: usable)."""
    failures = []
    peak = _get(row, "profile.median_peak_db")
    corr = _get(row, "scores.envelope_correlation")
    perc = _get(row, "profile.percussive_rate")
    cents = _get(row, "scores.median_pitch_error_cents")
    if peak is None or peak < USABLE_MIN_PEAK_DB:
        failures.append(f"median peak {_show(peak, '.0f')} dBFS < {USABLE_MIN_PEAK_DB:g}")
    if corr is None or corr < USABLE_MIN_ENVELOPE_CORRELATION:
        failures.append(f"envelope correlation {_show(corr)} < {USABLE_MIN_ENVELOPE_CORRELATION}")
    if perc is None or perc < USABLE_MIN_PERCUSSIVE_RATE:
        failures.append(f"percussive share {_show(perc, '.0%')} < {USABLE_MIN_PERCUSSIVE_RATE:.0%}")
    if cents is not None and cents > USABLE_MAX_PITCH_ERROR_CENTS:
        failures.append(f"pitch error {cents:.0f} > {USABLE_MAX_PITCH_ERROR_CENTS:g} cents")
    return failures


def coherent_failures(row: dict[str, Any], scaffold: dict[str, Any] | None) -> list[str]:
    """What keeps a row's samples from being "coherent" (empty list: coherent)."""
    failures = []
    acc, ref = _get(row, "scores.tag_accuracy"), _get(scaffold, "scores.tag_accuracy")
    corr = _get(row, "scores.envelope_correlation")
    cents = _get(row, "scores.median_pitch_error_cents")
    if acc is None or ref is None or acc < ref:
        failures.append(f"tag accuracy {_show(acc, '.0%')} < scaffold's {_show(ref, '.0%')}")
    if corr is None or corr < COHERENT_MIN_ENVELOPE_CORRELATION:
        failures.append(f"envelope correlation {_show(corr)} < {COHERENT_MIN_ENVELOPE_CORRELATION}")
    if cents is not None and cents > COHERENT_MAX_PITCH_ERROR_CENTS:
        failures.append(f"pitch error {cents:.0f} > {COHERENT_MAX_PITCH_ERROR_CENTS:g} cents")
    return failures


def first_batch_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff the run trained on one batch passes every test of :func:`usable_failures`."""
    claim = "Usable samples after the first batch of size 2"
    row = _row_at(result, FIRST_BATCH)
    if row is None:
        return _missing(claim, EARLY_COMMAND, f"no run of {FIRST_BATCH} batch")
    size = (result or {}).get("config", {}).get("batch_size")
    if size != 2:
        claim += f" (measured with batches of {size})"
    failures = usable_failures(row)
    if failures:
        return Verdict(claim, FAILS, "; ".join(failures), EARLY_COMMAND)
    return Verdict(claim, HOLDS, "audible, envelope-shaped, percussive and on pitch", EARLY_COMMAND)


def coherent_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff a run of at most 50 batches passes :func:`coherent_failures`; does not hold
    iff none does and 50 batches were measured."""
    claim = f"Coherent samples within {COHERENT_BY} batches"
    rows = [r for r in (result or {}).get("rows", []) if r.get("batches", 0) <= COHERENT_BY]
    scaffold = (result or {}).get("scaffold")
    for row in rows:
        if not coherent_failures(row, scaffold):
            why = f"coherent after {row['batches']} batches"
            return Verdict(claim, HOLDS, why, EARLY_COMMAND)
    at_limit = _row_at(result, COHERENT_BY)
    if at_limit is None:
        return _missing(claim, EARLY_COMMAND, f"no run of {COHERENT_BY} batches")
    why = f"at {COHERENT_BY} batches: " + "; ".join(coherent_failures(at_limit, scaffold))
    return Verdict(claim, FAILS, why, EARLY_COMMAND)


def _summary_row(part: dict[str, Any] | None, backbone: str) -> dict[str, Any] | None:
    for row in (part or {}).get("summary", []):
        if row.get("backbone") == backbone:
            return row
    return None


def hybrid_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff the hybrid's mean validation loss over seeds is lower than the
    transformer's by more than the seed spread: the larger of the two backbones' loss ranges
    (max - min over seeds), with at least :data:`MIN_SEEDS` seeds each (``mambakit eval
    lm-compare``: parameter-matched presets, equal steps). Judged on the codec tokens when the
    comparison had them, else on the synthetic probes (mean held-out loss), and says which."""
    claim = "A Jamba-style 1:3 hybrid beats a transformer (matched parameters, equal steps)"
    if result is None:
        return _missing(claim, LM_COMPARE_COMMAND, "no lm-compare result")
    codec = result.get("codec")
    part = codec or result.get("probes")
    split = (result.get("config") or {}).get("split", "val")
    where = f"on codec tokens ({split} split)" if codec else "on the synthetic probes only"
    rows = {b: _summary_row(part, b) for b in ("hybrid", "transformer")}
    absent = [b for b, row in rows.items() if row is None]
    if absent:
        return _missing(claim, LM_COMPARE_COMMAND, f"no {' or '.join(absent)} runs {where}")
    hybrid, transformer = rows["hybrid"], rows["transformer"]
    n = min(_get(hybrid, "loss.n") or 0, _get(transformer, "loss.n") or 0)
    values = [_get(r, f"loss.{k}") for r in (hybrid, transformer) for k in ("mean", "min", "max")]
    if any(v is None for v in values):
        return _missing(claim, LM_COMPARE_COMMAND, f"missing losses {where}")
    if n < MIN_SEEDS:
        return _missing(
            claim, LM_COMPARE_COMMAND, f"{n:.0f} seed(s) {where}: need {MIN_SEEDS} for a spread"
        )
    mean_h, lo_h, hi_h, mean_t, lo_t, hi_t = values  # type: ignore[misc]
    margin, spread = mean_t - mean_h, max(hi_h - lo_h, hi_t - lo_t)
    config = result.get("config") or {}
    if config.get("steps"):
        where += f", {config['steps']} steps"
    gap = ((result.get("probes") or {}).get("corpus") or {}).get("gap")
    if not codec and gap:
        where += f", recall gap {gap}"
    why = (
        f"{where}: mean loss hybrid {mean_h:.4f} vs transformer {mean_t:.4f} over {n:.0f} "
        f"seeds, margin {margin:+.4f} vs seed spread {spread:.4f} (rule: margin > spread)"
    )
    params_h, params_t = _get(hybrid, "n_parameters"), _get(transformer, "n_parameters")
    if params_h and params_t:
        why += f"; hybrid at {params_h / params_t:.2f}x the transformer's parameters"
    return Verdict(claim, HOLDS if margin > spread else FAILS, why, LM_COMPARE_COMMAND)


def _timbre_row(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The seed-size row of ``mambakit bench timbre``: base preset, unidirectional Mamba."""
    for row in (result or {}).get("rows", []):
        if row.get("preset") == "base" and row.get("mamba") == "uni":
            return row
    return None


def _bench_device(result: dict[str, Any] | None) -> str:
    """``"CPU (2 cores, <model>)"`` or the GPU's name, from the result's ``meta``."""
    machine = ((result or {}).get("meta") or {}).get("machine") or {}
    if machine.get("gpu"):
        return str(machine["gpu"])
    return f"CPU ({machine.get('cpu_cores', '?')} cores, {machine.get('cpu', 'unknown CPU')})"


def timbre_memory_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff the measured peak memory of one forward+backward pass of the seed-size
    generator (``base``, unidirectional; ``mambakit bench timbre``) is at most
    :data:`TIMBRE_MEMORY_SLACK` times the seed's 275.25 MB. The claim names the clip length
    when it is not 2.1 s; on a CPU the peak is resident memory (an upper bound)."""
    claim = "Forward+backward of the seed-size model fits in about 275 MB on a 2.1 s clip"
    row = _timbre_row(result)
    peak = _get(row, "train_peak_mb")
    if peak is None:
        return _missing(claim, BENCH_TIMBRE_COMMAND, "needs the base (unidirectional) fwd+bwd peak")
    clip = _get(row, "clip_seconds")
    if clip is not None and abs(clip - 2.1) > 1e-6:
        claim += f" (measured at {clip:g} s)"
    ratio = peak / SEED_TIMBRE_TRAIN_MB
    estimate = _get(row, "summary_estimate_mb")
    why = (
        f"base preset ({_show(_get(row, 'params_m'))} M parameters): measured peak "
        f"{peak:.0f} MB = {ratio:.2f}x the seed's {SEED_TIMBRE_TRAIN_MB} MB "
        f"(rule: <= {TIMBRE_MEMORY_SLACK:g}x) on {_bench_device(result)}; "
        f"torchinfo-style estimate {_show(estimate, '.0f')} MB"
    )
    verdict = HOLDS if ratio <= TIMBRE_MEMORY_SLACK else FAILS
    return Verdict(claim, verdict, why, BENCH_TIMBRE_COMMAND)


def timbre_realtime_claim(result: dict[str, Any] | None) -> Verdict:
    """Holds iff the seed-size generator transfers a long content clip (10 s by default,
    through the chunked path) faster than real time on the machine of ``mambakit bench
    timbre``: speed in times real time (audio s / wall s) above :data:`REAL_TIME_FACTOR`. The why
    names the device (the seed timed an A100; a CPU figure says CPU)."""
    claim = "Real-time one-shot transfer"
    row = _timbre_row(result)
    rtf = _get(row, "x_realtime_long")
    if rtf is None:
        return _missing(claim, BENCH_TIMBRE_COMMAND, "needs the base (unidirectional) speed")
    seconds, chunks = _get(row, "transfer_seconds"), _get(row, "chunks")
    why = (
        f"base preset: {rtf:.2f}x real time (audio s / wall s; rule: > {REAL_TIME_FACTOR:g}) "
        f"on {_show(seconds, 'g')} s of content in {_show(chunks, '.0f')} chunks, on "
        f"{_bench_device(result)}; the seed's figure is from an A100"
    )
    return Verdict(claim, HOLDS if rtf > REAL_TIME_FACTOR else FAILS, why, BENCH_TIMBRE_COMMAND)


def _run_with_objective(result: dict[str, Any] | None, objective: str) -> dict[str, Any] | None:
    for row in (result or {}).get("runs", []):
        if row.get("objective") == objective:
            return row
    return None


def _paired_difference(
    transfer: dict[str, Any], recon: dict[str, Any]
) -> tuple[float, float, float] | None:
    """``(mean, standard error, share > 0)`` of the per-pair style-gain differences, or
    None when the rows lack equal-length ``style_gain_per_pair`` lists (>= 2 pairs)."""
    a, b = transfer.get("style_gain_per_pair"), recon.get("style_gain_per_pair")
    if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b) or len(a) < 2:
        return None
    diffs = [x - y for x, y in zip(a, b)]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    return statistics.fmean(diffs), se, sum(d > 0 for d in diffs) / len(diffs)


def timbre_transfer_claim(result: dict[str, Any] | None) -> Verdict:
    """From ``mambakit eval timbre``: holds iff the first run trained with objective
    ``transfer`` has a higher ``style_gain`` (its outputs' MFCC statistics are closer to the
    target's) than the first run trained with ``reconstruction``, *and* it keeps the
    content: pitch and loudness agreement each at least
    :data:`TIMBRE_MIN_CONTENT_CORRELATION` or, where lower, what a perfect transfer scores
    (the evaluation's ``reference`` row: the targets themselves).

    "Higher": both runs are scored on the same pairs, so where the rows carry
    ``style_gain_per_pair`` the paired difference must exceed twice its standard error
    (:data:`TIMBRE_GAIN_SE_MULTIPLE`); otherwise the means are compared.

    The cap: the target, note p of instrument B, has B's envelope, not the content's, and
    on some instruments the pitch tracker disagrees with itself across timbres; a rule
    asking more agreement than the target has would reject a perfect transfer and reward
    copying the content. Without a reference row both must reach the threshold. The
    objective is each run's ``timbre_train.json``; the why flags pairs that were not held
    out and unequal budgets."""
    claim = (
        "Transfer training beats reconstruction-only on style match while keeping content "
        f"correlation >= {TIMBRE_MIN_CONTENT_CORRELATION:g}"
    )
    runs = {o: _run_with_objective(result, o) for o in ("transfer", "reconstruction")}
    absent = [o for o, row in runs.items() if row is None]
    if absent:
        what = " or ".join(absent)
        return _missing(claim, EVAL_TIMBRE_COMMAND, f"no run trained with objective {what}")
    transfer, recon = runs["transfer"], runs["reconstruction"]
    keys = ("style_gain", "pitch_corr", "loudness_corr")
    gain_t, pitch_t, loud_t = (_get(transfer, k) for k in keys)
    gain_r = _get(recon, "style_gain")
    if None in (gain_t, pitch_t, loud_t, gain_r):
        return _missing(claim, EVAL_TIMBRE_COMMAND, "style gain or content correlation missing")
    threshold = TIMBRE_MIN_CONTENT_CORRELATION
    reference = (result or {}).get("reference")
    pitch_ref, loud_ref = _get(reference, "pitch_corr"), _get(reference, "loudness_corr")
    pitch_needed, loud_needed = (threshold if r is None else min(threshold, r)
                                 for r in (pitch_ref, loud_ref))  # fmt: skip
    paired = _paired_difference(transfer, recon)
    pairs = f"pairs `{result['pairs_dir']}`: " if (result or {}).get("pairs_dir") else ""
    why = pairs + f"style gain {gain_t:.3f} ({transfer.get('name')}, transfer) vs {gain_r:.3f} "
    why += f"({recon.get('name')}, reconstruction)"
    if paired is not None:
        diff, se, better = paired
        why += f", paired difference {diff:+.3f} ± {se:.3f} (SE), transfer higher on "
        why += f"{better:.0%} of the pairs"
    why += (
        f"; transfer run's content correlation: pitch {pitch_t:.3f}, loudness {loud_t:.3f} "
        f"(rule: higher gain{f' by > {TIMBRE_GAIN_SE_MULTIPLE:g} SE' if paired else ''}, "
        f"pitch >= {pitch_needed:.3g}, "
        f"loudness >= {loud_needed:.3g})"
    )
    if reference is not None:
        why += "; a perfect transfer (the targets themselves) scores pitch "
        why += f"{_show(pitch_ref, '.3f')}, loudness {_show(loud_ref, '.3f')}"
    if transfer.get("adversarial") is not None and recon.get("adversarial") is not None:
        from mambakit.timbre.evaluate import losses_label

        why += (
            f"; losses: {losses_label(transfer['adversarial'])} (transfer), "
            f"{losses_label(recon['adversarial'])} (reconstruction)"
        )
    seen = [r.get("name") for r in (transfer, recon) if r.get("shared_notes")]
    if seen:
        why += "; pairs not held out for " + ", ".join(str(s) for s in seen)
    budgets = [r.get("budget") for r in (transfer, recon)]
    if None not in budgets and budgets[0] != budgets[1]:
        why += f"; unequal budgets {budgets[0]} vs {budgets[1]}"
    higher = gain_t > gain_r if paired is None else paired[0] > TIMBRE_GAIN_SE_MULTIPLE * paired[1]
    ok = higher and pitch_t >= pitch_needed and loud_t >= loud_needed
    return Verdict(claim, HOLDS if ok else FAILS, why, EVAL_TIMBRE_COMMAND)


def _run_with_engine(result: dict[str, Any] | None, engine: str) -> dict[str, Any] | None:
    for row in (result or {}).get("runs", []):
        if (row.get("engine") or "unet") == engine:
            return row
    return None


def timbre_engine_claim(result: dict[str, Any] | None) -> Verdict:
    """From ``mambakit eval timbre`` with a ``scaffold`` run: holds iff its style gain is at
    least :data:`SCAFFOLD_MIN_STYLE_GAIN`, its pitch accuracy against the content at least
    :data:`SCAFFOLD_MIN_PITCH_ACCURACY` and its speed on the evaluation's long content at
    least :data:`SCAFFOLD_MIN_X_REALTIME` times real time, on pairs held out from its
    training (issue 15's targets). The why sets the U-Net's row beside it when the same
    comparison has one, with the paired style-gain difference."""
    claim = (
        f"The scaffold engine transfers: style gain >= {SCAFFOLD_MIN_STYLE_GAIN:g}, pitch "
        f"accuracy >= {SCAFFOLD_MIN_PITCH_ACCURACY:g}, >= {SCAFFOLD_MIN_X_REALTIME:g}x real time"
    )
    command = (
        "mambakit eval timbre SCAFFOLD_RUN [UNET_RUN] --pairs HELDOUT --json out/timbre/x.json"
    )
    row = _run_with_engine(result, "scaffold")
    if row is None:
        return _missing(claim, command, "no scaffold run in the comparison")
    gain, pitch, speed = (_get(row, k) for k in ("style_gain", "pitch_accuracy", "x_realtime"))
    if None in (gain, pitch, speed):
        return _missing(claim, command, "style gain, pitch accuracy or speed missing")
    why = (
        f"pairs `{(result or {}).get('pairs_dir', '?')}`: {row.get('name')}: style gain "
        f"{gain:.3f}, pitch accuracy {pitch:.3f}, {speed:.1f}x real time on "
        f"{_show(_get(row, 'speed_seconds'), 'g')} s of content"
    )
    unet = _run_with_engine(result, "unet")
    if unet is not None:
        why += (
            f"; U-Net {unet.get('name')}: style gain {_show(_get(unet, 'style_gain'), '.3f')}, "
            f"pitch accuracy {_show(_get(unet, 'pitch_accuracy'), '.3f')}, "
            f"{_show(_get(unet, 'x_realtime'), '.1f')}x real time"
        )
        paired = _paired_difference(row, unet)
        if paired is not None:
            why += f", paired style-gain difference {paired[0]:+.3f} ± {paired[1]:.3f} (SE)"
    else:
        why += "; no U-Net run in this comparison"
    held_out = row.get("shared_notes") == 0
    if not held_out:
        why += "; the pairs are not (known to be) held out from its training"
    ok = (
        held_out
        and gain >= SCAFFOLD_MIN_STYLE_GAIN
        and pitch >= SCAFFOLD_MIN_PITCH_ACCURACY
        and speed >= SCAFFOLD_MIN_X_REALTIME
    )
    why += (
        f" (rule: gain >= {SCAFFOLD_MIN_STYLE_GAIN:g}, pitch >= {SCAFFOLD_MIN_PITCH_ACCURACY:g}, "
        f"speed >= {SCAFFOLD_MIN_X_REALTIME:g}x, held out)"
    )
    return Verdict(claim, HOLDS if ok else FAILS, why, command)


def _lm_rows(result: dict[str, Any] | None, backbone: str) -> list[dict[str, Any]]:
    rows = [r for r in (result or {}).get("rows", []) if r.get("backbone") == backbone]
    return sorted(rows, key=lambda r: r["context_seconds"])


def lm_decode_memory_claim(result: dict[str, Any] | None) -> Verdict:
    """Seed 003 (never measured there): a Mamba LM generates with constant memory and step
    time, a transformer's grow with the context. Holds when, in ``mambakit bench lm``,
    ``mamba2``'s cache is the same at the shortest and longest context and smaller than the
    transformer's there, and its step time grows by at most :data:`CONSTANT_STEP_GROWTH`."""
    claim = "A Mamba LM decodes with constant memory and step time; a transformer's grow"
    mamba, attn = _lm_rows(result, "mamba2"), _lm_rows(result, "transformer")
    if len(mamba) < 2 or len(attn) < 2:
        return _missing(claim, BENCH_LM_COMMAND, "needs mamba2 and transformer at 2+ contexts")
    short, long_ = mamba[0], mamba[-1]
    growth = long_["step_ms"] / short["step_ms"]
    cache_same = math.isclose(short["cache_mb"], long_["cache_mb"], rel_tol=1e-6)
    ok = cache_same and long_["cache_mb"] < attn[-1]["cache_mb"]
    ok = ok and growth <= CONSTANT_STEP_GROWTH
    why = (
        f"at {short['context_seconds']:g} -> {long_['context_seconds']:g} s of context "
        f"(batch {result.get('batch_size', 1)}): mamba2 cache {short['cache_mb']:.2f} -> "
        f"{long_['cache_mb']:.2f} MiB, step {growth:.2f}x (rule <= {CONSTANT_STEP_GROWTH:g}x), "
        f"{long_['tokens_per_s']:.0f} tokens/s; transformer cache {attn[0]['cache_mb']:.1f} -> "
        f"{attn[-1]['cache_mb']:.1f} MiB, step {attn[-1]['step_ms'] / attn[0]['step_ms']:.2f}x, "
        f"{attn[-1]['tokens_per_s']:.0f} tokens/s"
    )
    return Verdict(claim, HOLDS if ok else FAILS, why, BENCH_LM_COMMAND)


def all_verdicts(
    results: dict[str, dict[str, Any] | None],
    every: dict[str, list[dict[str, Any]]] | None = None,
) -> list[Verdict]:
    """Every claim judged from ``results`` (keys ``ablations``, ``early``, ``bench_drums``,
    ``lm_compare``, ``bench_lm``, ``bench_timbre``, ``eval_timbre``; a missing or ``None``
    entry gives ``not measured here``).

    ``every`` optionally lists several results of one key (``eval_timbre``, ``lm_compare``:
    comparisons on different data or budgets, each a test of the claim in its own right);
    the claim then gets one verdict per result, in the order given, instead of one from
    ``results``.
    """
    ablations, early = results.get("ablations"), results.get("early")
    every = every or {}

    def each(
        key: str,
        rule: Callable[[dict[str, Any] | None], Verdict],
        about: Callable[[dict[str, Any]], bool] = lambda r: True,
    ) -> list[Verdict]:
        """One verdict per result of ``key`` that ``about`` says tests the claim (or one
        from ``results[key]`` / a missing one when none does)."""
        chosen = [r for r in every.get(key, []) if about(r)]
        if chosen:
            return [rule(r) for r in chosen]
        latest = results.get(key)
        return [rule(latest if latest is not None and about(latest) else None)]

    def has_objective(result: dict[str, Any]) -> bool:
        return _run_with_objective(result, "reconstruction") is not None

    def has_scaffold(result: dict[str, Any]) -> bool:
        return _run_with_engine(result, "scaffold") is not None

    return [
        no_sine_claim(ablations),
        no_adsr_claim(ablations),
        full_res_claim(ablations),
        logcascade_memory_claim(results.get("bench_drums")),
        first_batch_claim(early),
        coherent_claim(early),
        timbre_memory_claim(results.get("bench_timbre")),
        timbre_realtime_claim(results.get("bench_timbre")),
        *each("eval_timbre", timbre_transfer_claim, has_objective),
        *each("eval_timbre", timbre_engine_claim, has_scaffold),
        *each("lm_compare", hybrid_claim),
        lm_decode_memory_claim(results.get("bench_lm")),
    ]


def verdicts_markdown(verdicts: list[Verdict]) -> str:
    """A Markdown table: claim, verdict (bold), why, command."""
    lines = ["| seed claim | verdict | why | measured by |", "|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v.claim} | **{v.verdict}** | {v.why} | `{v.command}` |")
    return "\n".join(lines)
