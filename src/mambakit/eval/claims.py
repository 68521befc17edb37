"""The seed's claims and the explicit rules that judge them from measured numbers.

Each rule takes the JSON result of one command (or ``None`` when it was not run), looks up
the numbers it needs, decides, and returns :class:`Evidence`: the verdict (``holds``,
``does not hold`` or ``not measured here``), the numbers it compared, by name, and the
clauses that word them. :func:`word` is the one place those become prose, so a test asserts
a rule's decision and numbers, never its sentences. The thresholds are the constants below;
changing a rule means changing this file, never editing a report by hand.
"""

from __future__ import annotations

import math
import statistics
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
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
class Evidence:
    """One seed claim judged by a rule: the verdict, the numbers it compared (by name),
    the clauses that word them (``str.format`` patterns over ``numbers``) and the command
    that measures it."""

    claim: str
    verdict: str
    command: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    wording: tuple[str, ...] = ()

    @property
    def why(self) -> str:
        """The numbers in words (:func:`word`)."""
        return word(self)


class _Wording(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        return "missing" if value is None else super().format_field(value, format_spec)


def word(evidence: Evidence) -> str:
    """The one renderer of evidence: its clauses formatted with its numbers, joined; a
    number that is ``None`` reads "missing"."""
    return "".join(_Wording().vformat(c, (), dict(evidence.numbers)) for c in evidence.wording)


ABLATIONS_COMMAND = "mambakit eval ablations DATA --budget-minutes M"
EARLY_COMMAND = "mambakit eval early-training DATA"
BENCH_DRUMS_COMMAND = "mambakit bench drums (make bench)"
BENCH_TIMBRE_COMMAND = "mambakit bench timbre (make bench)"
EVAL_TIMBRE_COMMAND = (
    "mambakit eval timbre TRANSFER_RUN RECONSTRUCTION_RUN --pairs HELDOUT "
    "--json out/timbre/eval.json"
)
EVAL_ENGINES_COMMAND = (
    "mambakit eval timbre SCAFFOLD_RUN [UNET_RUN] --pairs HELDOUT --json out/timbre/x.json"
)
LM_COMPARE_COMMAND = "mambakit eval lm-compare TOKENS --budget-minutes M"
BENCH_LM_COMMAND = "mambakit bench lm --json out/bench/lm.json (make bench)"


def _num(value: Any) -> float | None:
    """A finite float, or None for a missing / NaN / non-numeric value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def _get(row: Mapping[str, Any] | None, path: str) -> float | None:
    """The number at a dotted ``path`` of nested dicts (``"profile.percussive_rate"``)."""
    value: Any = row
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return _num(value)


def find_row(rows: Iterable[dict[str, Any]] | None, **match: Any) -> dict[str, Any] | None:
    """The first of ``rows`` whose items include every ``key=value`` of ``match``."""
    for row in rows or ():
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _rows(result: Mapping[str, Any] | None, key: str = "rows") -> list[dict[str, Any]]:
    return list((result or {}).get(key) or [])


def _unmeasured(claim: str, command: str, lacking: str) -> Evidence:
    return Evidence(claim, UNMEASURED, command, {"lacking": lacking}, ("{lacking}",))


def _decide(ok: bool) -> str:
    return HOLDS if ok else FAILS


# ------------------------------------------------------------------ ablations (seed 001)


Pair = tuple[float, float]  # (full's, the ablated variant's) value of one key


def _paired(
    result: dict[str, Any] | None, ablated: str, keys: tuple[str, ...]
) -> tuple[list[Pair], str | None]:
    """``(full's, ablated's)`` value of each key, and what is lacking (``None``: nothing):
    the result, a run, or some numbers."""
    if result is None:
        return [], "no ablations result"
    rows = {name: find_row(_rows(result, "variants"), name=name) for name in ("full", ablated)}
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
    return pairs, ("missing or n/a: " + ", ".join(gaps)) if gaps else None  # type: ignore[return-value]


# A judge of an ablation: the (full's, ablated's) pair of each key -> (holds?, numbers,
# wording), or a string saying what is lacking.
_Judge = Callable[..., tuple[bool, dict[str, Any], tuple[str, ...]] | str]


def _ablation_evidence(
    result: dict[str, Any] | None, claim: str, ablated: str, keys: tuple[str, ...], judge: _Judge
) -> Evidence:
    """``claim`` about variant ``ablated`` vs ``full``: unmeasured when the result, a run or
    a number is lacking (:func:`_paired`), else as ``judge`` decides on the pairs of
    ``keys``."""
    values, lacking = _paired(result, ablated, keys)
    judged = lacking or judge(*values)
    if isinstance(judged, str):
        return _unmeasured(claim, ABLATIONS_COMMAND, judged)
    ok, numbers, wording = judged
    return Evidence(claim, _decide(ok), ABLATIONS_COMMAND, numbers, wording)


def no_sine_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff ``no_sine`` ends training at a lower loss than ``full`` yet keeps less power
    at the requested fundamental and has no smaller pitch error."""

    def judge(loss: Pair, fundamental: Pair, cents: Pair) -> tuple[bool, dict, tuple]:
        (loss_f, loss_n), (fund_f, fund_n), (cents_f, cents_n) = loss, fundamental, cents
        loss_lower = loss_n < loss_f
        numbers = {
            "loss": loss_n, "loss_full": loss_f, "lower": "lower" if loss_lower else "not lower",
            "fundamental": fund_n, "fundamental_full": fund_f,
            "pitch_error_cents": cents_n, "pitch_error_cents_full": cents_f,
        }  # fmt: skip
        wording = (
            "training loss {loss:.3f} vs full {loss_full:.3f} ({lower}); ",
            "fundamental fraction {fundamental:.3f} vs {fundamental_full:.3f}; ",
            "median pitch error {pitch_error_cents:.0f} vs {pitch_error_cents_full:.0f} cents",
        )
        return loss_lower and fund_n < fund_f and cents_n >= cents_f, numbers, wording

    keys = ("train_tail.loss", "profile.fundamental_fraction", "scores.median_pitch_error_cents")
    claim = "Removing the sine anchors hurts the fundamental despite a lower training loss"
    return _ablation_evidence(result, claim, "no_sine", keys, judge)


def no_adsr_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff ``no_adsr`` gives fewer percussive clips than ``full`` and a later energy
    centroid (its energy sits later in the clip: sustained)."""

    def judge(percussive: Pair, centroid: Pair) -> tuple[bool, dict, tuple]:
        (perc_f, perc_n), (cent_f, cent_n) = percussive, centroid
        numbers = {
            "percussive": perc_n, "percussive_full": perc_f,
            "centroid_ms": 1000 * cent_n, "centroid_ms_full": 1000 * cent_f,
        }  # fmt: skip
        wording = (
            "percussive share {percussive:.0%} vs full {percussive_full:.0%}; ",
            "energy centroid {centroid_ms:.0f} ms vs {centroid_ms_full:.0f} ms",
        )
        return perc_n < perc_f and cent_n > cent_f, numbers, wording

    claim = "Removing the ADSR conditioning gives sustained instead of percussive sounds"
    keys = ("profile.percussive_rate", "profile.median_energy_centroid_s")
    return _ablation_evidence(result, claim, "no_adsr", keys, judge)


def full_res_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff training ``full_res`` costs at least :data:`FAR_MORE` times ``full``'s
    time per step *and* peak memory."""

    def judge(seconds: Pair, memory: Pair) -> tuple[bool, dict, tuple] | str:
        (time_f, time_r), (mem_f, mem_r) = seconds, memory
        if time_f <= 0 or mem_f <= 0:
            return "full's time or memory measured as zero"
        numbers = {"time_ratio": time_r / time_f, "memory_ratio": mem_r / mem_f, "rule": FAR_MORE}
        wording = (
            "time per step {time_ratio:.1f}x, peak training memory {memory_ratio:.1f}x full's "
            "(rule: both >= {rule:g}x)",
        )
        ok = numbers["time_ratio"] >= FAR_MORE and numbers["memory_ratio"] >= FAR_MORE
        return ok, numbers, wording

    claim = "Full resolution (no band downsampling) costs far more time per step and memory"
    keys = ("seconds_per_step", "peak_memory_mb")
    return _ablation_evidence(result, claim, "full_res", keys, judge)


def logcascade_memory_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff one full-rate Mamba2 sized for 20 Hz needs at least 256x the LogCascade's
    peak memory (``mambakit bench drums``): in a forward+backward pass when that was
    measured (``--all``), else in a forward pass (a lower bound of the training ratio's
    order: the large state's activations dominate both)."""
    claim = "The LogCascade is up to 256x more memory-efficient than one large full-rate state"
    for pass_ in ("fwd+bwd", "fwd"):
        ratio = _get(find_row(_rows(result), model="mamba2_20hz", **{"pass": pass_}), "mem_ratio")
        if ratio is not None:
            break
    if ratio is None:
        return _unmeasured(claim, BENCH_DRUMS_COMMAND, "needs the mamba2_20hz memory ratio")
    numbers = {"ratio": ratio, "pass": pass_}
    wording = ("mamba2_20hz peak memory is {ratio:.1f}x the LogCascade's ({pass})",)
    return Evidence(
        claim, _decide(ratio >= LOGCASCADE_MEMORY_CLAIM), BENCH_DRUMS_COMMAND, numbers, wording
    )


# ------------------------------------------------------------------ early training (seed 001)


@dataclass(frozen=True)
class _Bound:
    """One threshold test of a row: the number at ``path`` (``name`` in the evidence) must
    be at least (``floor``) or at most ``limit`` (``limit_name``); ``clause`` words a
    failure. A missing number fails a floor and passes a ceiling (a clip without a pitch
    has no pitch error)."""

    name: str
    path: str
    floor: bool
    limit_name: str
    limit: float
    clause: str

    def failed(self, value: float | None) -> bool:
        if self.floor:
            return value is None or value < self.limit
        return value is not None and value > self.limit


def _envelope_bound(limit: float) -> _Bound:
    clause = "envelope correlation {envelope_correlation:.2f} < {min_envelope_correlation}"
    return _Bound("envelope_correlation", "scores.envelope_correlation", True,
                  "min_envelope_correlation", limit, clause)  # fmt: skip


def _pitch_bound(limit: float) -> _Bound:
    clause = "pitch error {pitch_error_cents:.0f} > {max_pitch_error_cents:g} cents"
    return _Bound("pitch_error_cents", "scores.median_pitch_error_cents", False,
                  "max_pitch_error_cents", limit, clause)  # fmt: skip


USABLE_BOUNDS = (
    _Bound("peak_db", "profile.median_peak_db", True, "min_peak_db", USABLE_MIN_PEAK_DB,
           "median peak {peak_db:.0f} dBFS < {min_peak_db:g}"),
    _envelope_bound(USABLE_MIN_ENVELOPE_CORRELATION),
    _Bound("percussive", "profile.percussive_rate", True, "min_percussive",
           USABLE_MIN_PERCUSSIVE_RATE, "percussive share {percussive:.0%} < {min_percussive:.0%}"),
    _pitch_bound(USABLE_MAX_PITCH_ERROR_CENTS),
)  # fmt: skip
COHERENT_BOUNDS = (
    _envelope_bound(COHERENT_MIN_ENVELOPE_CORRELATION),
    _pitch_bound(COHERENT_MAX_PITCH_ERROR_CENTS),
)


def _bound_failures(
    row: dict[str, Any], bounds: Iterable[_Bound]
) -> tuple[dict[str, Any], list[str]]:
    """The numbers each of ``bounds`` tests (and its limit), and the clause of each failure."""
    numbers: dict[str, Any] = {}
    failures = []
    for bound in bounds:
        value = _get(row, bound.path)
        numbers.update({bound.name: value, bound.limit_name: bound.limit})
        if bound.failed(value):
            failures.append(bound.clause)
    return numbers, failures


def usable_failures(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The numbers of the "usable" tests (:data:`USABLE_BOUNDS`) of a row, and a clause for
    each failed test (an empty list: usable)."""
    return _bound_failures(row, USABLE_BOUNDS)


def coherent_failures(
    row: dict[str, Any], scaffold: dict[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """The numbers of the "coherent" tests of a row, and a clause for each failed test (an
    empty list: coherent): tag accuracy at least the scaffold's, then
    :data:`COHERENT_BOUNDS`."""
    acc, ref = _get(row, "scores.tag_accuracy"), _get(scaffold, "scores.tag_accuracy")
    numbers, failures = _bound_failures(row, COHERENT_BOUNDS)
    numbers.update({"tag_accuracy": acc, "scaffold_tag_accuracy": ref})
    if acc is None or ref is None or acc < ref:
        tag_clause = "tag accuracy {tag_accuracy:.0%} < scaffold's {scaffold_tag_accuracy:.0%}"
        failures.insert(0, tag_clause)
    return numbers, failures


def first_batch_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff the run trained on one batch passes every test of :func:`usable_failures`."""
    claim = "Usable samples after the first batch of size 2"
    row = find_row(_rows(result), batches=FIRST_BATCH)
    if row is None:
        return _unmeasured(claim, EARLY_COMMAND, f"no run of {FIRST_BATCH} batch")
    size = (result or {}).get("config", {}).get("batch_size")
    if size != 2:
        claim += f" (measured with batches of {size})"
    numbers, failures = usable_failures(row)
    if failures:
        return Evidence(claim, FAILS, EARLY_COMMAND, numbers, ("; ".join(failures),))
    wording = ("audible, envelope-shaped, percussive and on pitch",)
    return Evidence(claim, HOLDS, EARLY_COMMAND, numbers, wording)


def coherent_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff a run of at most 50 batches passes :func:`coherent_failures`; does not hold
    iff none does and 50 batches were measured."""
    claim = f"Coherent samples within {COHERENT_BY} batches"
    rows = [r for r in _rows(result) if r.get("batches", 0) <= COHERENT_BY]
    scaffold = (result or {}).get("scaffold")
    for row in rows:
        numbers, failures = coherent_failures(row, scaffold)
        if not failures:
            numbers = {**numbers, "batches": row["batches"]}
            return Evidence(
                claim, HOLDS, EARLY_COMMAND, numbers, ("coherent after {batches} batches",)
            )
    at_limit = find_row(_rows(result), batches=COHERENT_BY)
    if at_limit is None:
        return _unmeasured(claim, EARLY_COMMAND, f"no run of {COHERENT_BY} batches")
    numbers, failures = coherent_failures(at_limit, scaffold)
    numbers = {**numbers, "batches": COHERENT_BY}
    wording = ("at {batches} batches: ", "; ".join(failures))
    return Evidence(claim, FAILS, EARLY_COMMAND, numbers, wording)


# ------------------------------------------------------------------ music LM (seed 002/003)


def hybrid_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff the hybrid's mean validation loss over seeds is lower than the
    transformer's by more than the seed spread: the larger of the two backbones' loss ranges
    (max - min over seeds), with at least :data:`MIN_SEEDS` seeds each (``mambakit eval
    lm-compare``: parameter-matched presets, equal steps). Judged on the codec tokens when the
    comparison had them, else on the synthetic probes (mean held-out loss), and says which."""
    claim = "A Jamba-style 1:3 hybrid beats a transformer (matched parameters, equal steps)"
    if result is None:
        return _unmeasured(claim, LM_COMPARE_COMMAND, "no lm-compare result")
    codec = result.get("codec")
    part = codec or result.get("probes")
    split = (result.get("config") or {}).get("split", "val")
    where = f"on codec tokens ({split} split)" if codec else "on the synthetic probes only"
    rows = {b: find_row(_rows(part, "summary"), backbone=b) for b in ("hybrid", "transformer")}
    absent = [b for b, row in rows.items() if row is None]
    if absent:
        return _unmeasured(claim, LM_COMPARE_COMMAND, f"no {' or '.join(absent)} runs {where}")
    hybrid, transformer = rows["hybrid"], rows["transformer"]
    n = min(_get(hybrid, "loss.n") or 0, _get(transformer, "loss.n") or 0)
    values = [_get(r, f"loss.{k}") for r in (hybrid, transformer) for k in ("mean", "min", "max")]
    if any(v is None for v in values):
        return _unmeasured(claim, LM_COMPARE_COMMAND, f"missing losses {where}")
    if n < MIN_SEEDS:
        return _unmeasured(
            claim, LM_COMPARE_COMMAND, f"{n:.0f} seed(s) {where}: need {MIN_SEEDS} for a spread"
        )
    mean_h, lo_h, hi_h, mean_t, lo_t, hi_t = values  # type: ignore[misc]
    config = result.get("config") or {}
    if config.get("steps"):
        where += f", {config['steps']} steps"
    gap = ((result.get("probes") or {}).get("corpus") or {}).get("gap")
    if not codec and gap:
        where += f", recall gap {gap}"
    numbers = {
        "where": where, "loss_hybrid": mean_h, "loss_transformer": mean_t, "seeds": n,
        "margin": mean_t - mean_h, "spread": max(hi_h - lo_h, hi_t - lo_t),
    }  # fmt: skip
    wording = [
        "{where}: mean loss hybrid {loss_hybrid:.4f} vs transformer {loss_transformer:.4f} over "
        "{seeds:.0f} seeds, margin {margin:+.4f} vs seed spread {spread:.4f} "
        "(rule: margin > spread)"
    ]
    params_h, params_t = _get(hybrid, "n_parameters"), _get(transformer, "n_parameters")
    if params_h and params_t:
        numbers["parameter_ratio"] = params_h / params_t
        wording.append("; hybrid at {parameter_ratio:.2f}x the transformer's parameters")
    ok = numbers["margin"] > numbers["spread"]
    return Evidence(claim, _decide(ok), LM_COMPARE_COMMAND, numbers, tuple(wording))


def lm_decode_memory_claim(result: dict[str, Any] | None) -> Evidence:
    """Seed 003 (never measured there): a Mamba LM generates with constant memory and step
    time, a transformer's grow with the context. Holds when, in ``mambakit bench lm``,
    ``mamba2``'s cache is the same at the shortest and longest context and smaller than the
    transformer's there, and its step time grows by at most :data:`CONSTANT_STEP_GROWTH`."""
    claim = "A Mamba LM decodes with constant memory and step time; a transformer's grow"

    def by_context(backbone: str) -> list[dict[str, Any]]:  # fp32 weights: the model as trained
        rows = [
            r for r in _rows(result)
            if r.get("backbone") == backbone and r.get("weights", "fp32") == "fp32"
        ]  # fmt: skip
        return sorted(rows, key=lambda r: r["context_seconds"])

    mamba, attn = by_context("mamba2"), by_context("transformer")
    if len(mamba) < 2 or len(attn) < 2:
        return _unmeasured(claim, BENCH_LM_COMMAND, "needs mamba2 and transformer at 2+ contexts")
    short, long_ = mamba[0], mamba[-1]
    numbers = {
        "context_short": short["context_seconds"], "context_long": long_["context_seconds"],
        "batch": (result or {}).get("batch_size", 1),
        "cache_short": short["cache_mb"], "cache_long": long_["cache_mb"],
        "step_growth": long_["step_ms"] / short["step_ms"], "rule": CONSTANT_STEP_GROWTH,
        "tokens_per_s": long_["tokens_per_s"],
        "attention_cache_short": attn[0]["cache_mb"], "attention_cache_long": attn[-1]["cache_mb"],
        "attention_step_growth": attn[-1]["step_ms"] / attn[0]["step_ms"],
        "attention_tokens_per_s": attn[-1]["tokens_per_s"],
    }  # fmt: skip
    wording = (
        "at {context_short:g} -> {context_long:g} s of context (batch {batch}): ",
        "mamba2 cache {cache_short:.2f} -> {cache_long:.2f} MiB, step {step_growth:.2f}x "
        "(rule <= {rule:g}x), {tokens_per_s:.0f} tokens/s; ",
        "transformer cache {attention_cache_short:.1f} -> {attention_cache_long:.1f} MiB, "
        "step {attention_step_growth:.2f}x, {attention_tokens_per_s:.0f} tokens/s",
    )
    cache_same = math.isclose(short["cache_mb"], long_["cache_mb"], rel_tol=1e-6)
    ok = cache_same and long_["cache_mb"] < attn[-1]["cache_mb"]
    ok = ok and numbers["step_growth"] <= CONSTANT_STEP_GROWTH
    return Evidence(claim, _decide(ok), BENCH_LM_COMMAND, numbers, wording)


# ------------------------------------------------------------------ timbre (seed 004)


def _seed_size_row(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The seed-size row of ``mambakit bench timbre``: base preset, unidirectional Mamba."""
    return find_row(_rows(result), preset="base", mamba="uni")


def _bench_device(result: dict[str, Any] | None) -> str:
    """``"CPU (2 cores, <model>)"`` or the GPU's name, from the result's ``meta``."""
    machine = ((result or {}).get("meta") or {}).get("machine") or {}
    if machine.get("gpu"):
        return str(machine["gpu"])
    return f"CPU ({machine.get('cpu_cores', '?')} cores, {machine.get('cpu', 'unknown CPU')})"


def timbre_memory_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff the measured peak memory of one forward+backward pass of the seed-size
    generator (``base``, unidirectional; ``mambakit bench timbre``) is at most
    :data:`TIMBRE_MEMORY_SLACK` times the seed's 275.25 MB. The claim names the clip length
    when it is not 2.1 s; on a CPU the peak is resident memory (an upper bound)."""
    claim = "Forward+backward of the seed-size model fits in about 275 MB on a 2.1 s clip"
    row = _seed_size_row(result)
    peak = _get(row, "train_peak_mb")
    if peak is None:
        return _unmeasured(
            claim, BENCH_TIMBRE_COMMAND, "needs the base (unidirectional) fwd+bwd peak"
        )
    clip = _get(row, "clip_seconds")
    if clip is not None and abs(clip - 2.1) > 1e-6:
        claim += f" (measured at {clip:g} s)"
    numbers = {
        "params_m": _get(row, "params_m"), "peak_mb": peak, "seed_mb": SEED_TIMBRE_TRAIN_MB,
        "ratio": peak / SEED_TIMBRE_TRAIN_MB, "rule": TIMBRE_MEMORY_SLACK,
        "device": _bench_device(result), "estimate_mb": _get(row, "summary_estimate_mb"),
    }  # fmt: skip
    wording = (
        "base preset ({params_m:.2f} M parameters): measured peak {peak_mb:.0f} MB = "
        "{ratio:.2f}x the seed's {seed_mb} MB (rule: <= {rule:g}x) on {device}; ",
        "torchinfo-style estimate {estimate_mb:.0f} MB",
    )
    ok = numbers["ratio"] <= TIMBRE_MEMORY_SLACK
    return Evidence(claim, _decide(ok), BENCH_TIMBRE_COMMAND, numbers, wording)


def timbre_realtime_claim(result: dict[str, Any] | None) -> Evidence:
    """Holds iff the seed-size generator transfers a long content clip (10 s by default,
    through the chunked path) faster than real time on the machine of ``mambakit bench
    timbre``: speed in times real time (audio s / wall s) above :data:`REAL_TIME_FACTOR`. The
    evidence names the device (the seed timed an A100; a CPU figure says CPU)."""
    claim = "Real-time one-shot transfer"
    row = _seed_size_row(result)
    speed = _get(row, "x_realtime_long")
    if speed is None:
        return _unmeasured(claim, BENCH_TIMBRE_COMMAND, "needs the base (unidirectional) speed")
    numbers = {
        "x_realtime": speed, "rule": REAL_TIME_FACTOR, "seconds": _get(row, "transfer_seconds"),
        "chunks": _get(row, "chunks"), "device": _bench_device(result),
    }  # fmt: skip
    wording = (
        "base preset: {x_realtime:.2f}x real time (audio s / wall s; rule: > {rule:g}) ",
        "on {seconds:g} s of content in {chunks:.0f} chunks, on {device}; ",
        "the seed's figure is from an A100",
    )
    return Evidence(
        claim, _decide(speed > REAL_TIME_FACTOR), BENCH_TIMBRE_COMMAND, numbers, wording
    )


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


def timbre_transfer_claim(result: dict[str, Any] | None) -> Evidence:
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
    objective is each run's ``timbre_train.json``; the evidence flags pairs that were not
    held out and unequal budgets."""
    claim = (
        "Transfer training beats reconstruction-only on style match while keeping content "
        f"correlation >= {TIMBRE_MIN_CONTENT_CORRELATION:g}"
    )
    runs = {o: find_row(_rows(result, "runs"), objective=o) for o in ("transfer", "reconstruction")}
    absent = [o for o, row in runs.items() if row is None]
    if absent:
        what = " or ".join(absent)
        return _unmeasured(claim, EVAL_TIMBRE_COMMAND, f"no run trained with objective {what}")
    transfer, recon = runs["transfer"], runs["reconstruction"]
    gain_t, pitch_t, loud_t = (
        _get(transfer, k) for k in ("style_gain", "pitch_corr", "loudness_corr")
    )
    gain_r = _get(recon, "style_gain")
    if None in (gain_t, pitch_t, loud_t, gain_r):
        return _unmeasured(claim, EVAL_TIMBRE_COMMAND, "style gain or content correlation missing")
    reference = (result or {}).get("reference")
    pitch_ref, loud_ref = _get(reference, "pitch_corr"), _get(reference, "loudness_corr")
    threshold = TIMBRE_MIN_CONTENT_CORRELATION
    numbers: dict[str, Any] = {
        "pairs": (result or {}).get("pairs_dir"),
        "gain": gain_t, "name": transfer.get("name"),
        "gain_baseline": gain_r, "name_baseline": recon.get("name"),
        "pitch": pitch_t, "loudness": loud_t,
        "pitch_needed": threshold if pitch_ref is None else min(threshold, pitch_ref),
        "loudness_needed": threshold if loud_ref is None else min(threshold, loud_ref),
        "pitch_reference": pitch_ref, "loudness_reference": loud_ref,
        "se_multiple": TIMBRE_GAIN_SE_MULTIPLE,
    }  # fmt: skip
    wording = ["pairs `{pairs}`: "] if numbers["pairs"] else []
    wording.append(
        "style gain {gain:.3f} ({name}, transfer) vs {gain_baseline:.3f} "
        "({name_baseline}, reconstruction)"
    )
    paired = _paired_difference(transfer, recon)
    if paired is not None:
        numbers.update(difference=paired[0], se=paired[1], share_higher=paired[2])
        wording.append(
            ", paired difference {difference:+.3f} ± {se:.3f} (SE), transfer higher on "
            "{share_higher:.0%} of the pairs"
        )
    wording.append(
        "; transfer run's content correlation: pitch {pitch:.3f}, loudness {loudness:.3f} "
        + ("(rule: higher gain by > {se_multiple:g} SE, " if paired else "(rule: higher gain, ")
        + "pitch >= {pitch_needed:.3g}, loudness >= {loudness_needed:.3g})"
    )
    if reference is not None:
        wording.append(
            "; a perfect transfer (the targets themselves) scores pitch {pitch_reference:.3f}, "
            "loudness {loudness_reference:.3f}"
        )
    if transfer.get("adversarial") is not None and recon.get("adversarial") is not None:
        from mambakit.eval.timbre import losses_label

        numbers.update(
            losses=losses_label(transfer["adversarial"]),
            losses_baseline=losses_label(recon["adversarial"]),
        )
        wording.append("; losses: {losses} (transfer), {losses_baseline} (reconstruction)")
    seen = [str(r.get("name")) for r in (transfer, recon) if r.get("shared_notes")]
    if seen:
        numbers["not_held_out"] = ", ".join(seen)
        wording.append("; pairs not held out for {not_held_out}")
    budgets = [r.get("budget") for r in (transfer, recon)]
    if None not in budgets and budgets[0] != budgets[1]:
        numbers.update(budget=budgets[0], budget_baseline=budgets[1])
        wording.append("; unequal budgets {budget} vs {budget_baseline}")
    higher = (
        gain_t > gain_r  # type: ignore[operator]
        if paired is None
        else paired[0] > TIMBRE_GAIN_SE_MULTIPLE * paired[1]
    )
    ok = higher and pitch_t >= numbers["pitch_needed"] and loud_t >= numbers["loudness_needed"]  # type: ignore[operator]
    return Evidence(claim, _decide(ok), EVAL_TIMBRE_COMMAND, numbers, tuple(wording))


def _run_of_engine(result: dict[str, Any] | None, engine: str) -> dict[str, Any] | None:
    """The first run of ``engine`` in a timbre evaluation (a run without one is a U-Net)."""
    runs = [r for r in _rows(result, "runs") if (r.get("engine") or "unet") == engine]
    return runs[0] if runs else None


def timbre_engine_claim(result: dict[str, Any] | None) -> Evidence:
    """From ``mambakit eval timbre`` with a ``scaffold`` run: holds iff its style gain is at
    least :data:`SCAFFOLD_MIN_STYLE_GAIN`, its pitch accuracy against the content at least
    :data:`SCAFFOLD_MIN_PITCH_ACCURACY` and its speed on the evaluation's long content at
    least :data:`SCAFFOLD_MIN_X_REALTIME` times real time, on pairs held out from its
    training (issue 15's targets). The evidence sets the U-Net's row beside it when the same
    comparison has one, with the paired style-gain difference."""
    claim = (
        f"The scaffold engine transfers: style gain >= {SCAFFOLD_MIN_STYLE_GAIN:g}, pitch "
        f"accuracy >= {SCAFFOLD_MIN_PITCH_ACCURACY:g}, >= {SCAFFOLD_MIN_X_REALTIME:g}x real time"
    )
    row = _run_of_engine(result, "scaffold")
    if row is None:
        return _unmeasured(claim, EVAL_ENGINES_COMMAND, "no scaffold run in the comparison")
    notes = (result or {}).get("style_notes", 1)
    if notes != 1:  # the pairs have one style note
        return _unmeasured(claim, EVAL_ENGINES_COMMAND, f"style clips of {notes} notes, not one")
    gain, pitch, speed = (_get(row, k) for k in ("style_gain", "pitch_accuracy", "x_realtime"))
    if None in (gain, pitch, speed):
        lacking = "style gain, pitch accuracy or speed missing"
        return _unmeasured(claim, EVAL_ENGINES_COMMAND, lacking)
    held_out = row.get("shared_notes") == 0
    numbers: dict[str, Any] = {
        "pairs": (result or {}).get("pairs_dir", "?"), "name": row.get("name"),
        "gain": gain, "pitch_accuracy": pitch, "x_realtime": speed,
        "seconds": _get(row, "speed_seconds"), "held_out": held_out,
        "min_gain": SCAFFOLD_MIN_STYLE_GAIN, "min_pitch": SCAFFOLD_MIN_PITCH_ACCURACY,
        "min_speed": SCAFFOLD_MIN_X_REALTIME,
    }  # fmt: skip
    wording = [
        "pairs `{pairs}`: {name}: style gain {gain:.3f}, pitch accuracy {pitch_accuracy:.3f}, "
        "{x_realtime:.1f}x real time on {seconds:g} s of content"
    ]
    unet = _run_of_engine(result, "unet")
    if unet is None:
        wording.append("; no U-Net run in this comparison")
    else:
        numbers.update(
            unet=unet.get("name"), unet_gain=_get(unet, "style_gain"),
            unet_pitch_accuracy=_get(unet, "pitch_accuracy"),
            unet_x_realtime=_get(unet, "x_realtime"),
        )  # fmt: skip
        wording.append(
            "; U-Net {unet}: style gain {unet_gain:.3f}, pitch accuracy "
            "{unet_pitch_accuracy:.3f}, {unet_x_realtime:.1f}x real time"
        )
        paired = _paired_difference(row, unet)
        if paired is not None:
            numbers.update(difference=paired[0], se=paired[1])
            wording.append(", paired style-gain difference {difference:+.3f} ± {se:.3f} (SE)")
    if not held_out:
        wording.append("; the pairs are not (known to be) held out from its training")
    wording.append(
        " (rule: gain >= {min_gain:g}, pitch >= {min_pitch:g}, speed >= {min_speed:g}x, held out)"
    )
    ok = (
        held_out
        and gain >= SCAFFOLD_MIN_STYLE_GAIN  # type: ignore[operator]
        and pitch >= SCAFFOLD_MIN_PITCH_ACCURACY  # type: ignore[operator]
        and speed >= SCAFFOLD_MIN_X_REALTIME  # type: ignore[operator]
    )
    return Evidence(claim, _decide(ok), EVAL_ENGINES_COMMAND, numbers, tuple(wording))


# ------------------------------------------------------------------ all of them


def all_verdicts(
    results: dict[str, dict[str, Any] | None],
    every: dict[str, list[dict[str, Any]]] | None = None,
) -> list[Evidence]:
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
        rule: Callable[[dict[str, Any] | None], Evidence],
        about: Callable[[dict[str, Any]], bool] = lambda r: True,
    ) -> list[Evidence]:
        """One verdict per result of ``key`` that ``about`` says tests the claim (or one
        from ``results[key]`` / a missing one when none does)."""
        chosen = [r for r in every.get(key, []) if about(r)]
        if chosen:
            return [rule(r) for r in chosen]
        latest = results.get(key)
        return [rule(latest if latest is not None and about(latest) else None)]

    def has_objective(result: dict[str, Any]) -> bool:
        return find_row(_rows(result, "runs"), objective="reconstruction") is not None

    def has_scaffold(result: dict[str, Any]) -> bool:
        return _run_of_engine(result, "scaffold") is not None

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


def verdicts_markdown(verdicts: list[Evidence]) -> str:
    """A Markdown table: claim, verdict (bold), the evidence in words, command."""
    from mambakit.results import markdown_table

    rows = [
        {
            "claim": v.claim,
            "verdict": f"**{v.verdict}**",
            "why": word(v),
            "command": f"`{v.command}`",
        }
        for v in verdicts
    ]
    columns = [
        ("claim", "seed claim"),
        ("verdict", "verdict"),
        ("why", "why"),
        ("command", "measured by"),
    ]
    return markdown_table(rows, columns)
