"""``mambakit lm ...``: tokenize, train, eval, generate, probe, bench (codec-token music LM).

Also ``mambakit eval lm`` (= ``lm eval``), ``mambakit eval lm-compare`` (the backbones at
matched parameters and equal steps over seeds) and ``mambakit bench lm`` (= ``lm bench``).
Thin client of :mod:`mambakit.lm`; every handler imports its module lazily and returns an
exit code.
"""

from __future__ import annotations

import argparse

from mambakit.cli.common import (
    UserError,
    add_device_argument,
    add_train_arguments,
    print_result,
    same_named,
    train_fields,
)

BACKBONES = ("transformer", "mamba", "mamba2", "hybrid")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lm", help="codec-token music language model")
    sub = parser.add_subparsers(dest="lm_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = sub.add_parser("tokenize", help="encode a folder of music into a token store")
    p.add_argument("folder", help="folder of audio files (searched recursively)")
    p.add_argument("--codec", default="dac", help="dac | encodec | local dir | hub id")
    p.add_argument("--out", required=True, help="token store directory")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--chunk-seconds", type=float, default=30.0)
    add_device_argument(p)
    p.set_defaults(func=_tokenize)

    p = sub.add_parser("train", help="train an LM on a token store")
    p.add_argument("tokens", help="token store made by `mambakit lm tokenize`")
    p.add_argument("--backbone", choices=BACKBONES, default="hybrid")
    p.add_argument("--preset", choices=("tiny", "small", "base"), default="small")
    p.add_argument("--pattern", choices=("delay", "parallel", "flat"), default="delay")
    p.add_argument("--out", required=True, help="run directory")
    add_train_arguments(p, "budget (default: 10000 steps)", steps=10_000, resume=False)
    p.add_argument("--seq-len", type=int, default=512, help="frames per training crop")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--label-smoothing", type=float, default=0.0, help="training objective only")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="per-codebook loss / ppl / top-k of runs, side by side")
    _add_eval_arguments(p)

    p = sub.add_parser("generate", help="generate audio from a run (optionally continue a clip)")
    p.add_argument("run")
    p.add_argument("--prompt", default=None, help="audio clip to continue")
    p.add_argument("--prompt-seconds", type=float, default=None, help="use its last N seconds")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=250)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--codec", default=None, help="override the codec recorded in the run")
    p.add_argument(
        "--decode-weights", default="fp32", metavar="{fp32,bf16,int8}",
        help="weight format of the decode steps (CPU: bf16/int8 step several times faster, "
        "outputs within their rounding of fp32; default fp32, exact)",
    )  # fmt: skip
    add_device_argument(p)
    p.add_argument("-o", "--output", default="generated.wav")
    p.set_defaults(func=_generate)

    p = sub.add_parser("probe", help="synthetic local-vs-recall probe (no codec needed)")
    p.add_argument("--backbones", default="transformer,mamba2,hybrid")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--gap", type=int, default=64, help="tokens between motif and recurrence")
    p.add_argument("--preset", choices=("tiny", "small", "base"), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the report here")
    p.set_defaults(func=_probe)

    setup_bench(sub.add_parser("bench", help=BENCH_HELP))


BENCH_HELP = "LM decode speed (tokens/s) and cache memory vs context length"


def setup_bench(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mambakit lm bench`` and ``mambakit bench lm`` (one implementation)."""
    p.add_argument("--backbones", default="transformer,mamba,mamba2,hybrid")
    p.add_argument("--contexts", default="1,10,60", help="context lengths in seconds")
    p.add_argument("--preset", choices=("tiny", "small", "base"), default="small")
    p.add_argument("--steps", type=int, default=16, help="decode steps timed per context")
    p.add_argument(
        "--batch", type=int, default=1, help="sequences decoded together (default 1; e.g. 8)"
    )
    p.add_argument(
        "--weights", default="fp32", help="decode-weight formats timed side by side, "
        "comma-separated, of fp32, bf16, int8 (e.g. fp32,int8)",
    )  # fmt: skip
    add_device_argument(p)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result here")
    p.set_defaults(func=_bench)


def register_eval(eval_subparsers: argparse._SubParsersAction) -> None:
    """``mambakit eval lm RUN...`` (same as ``mambakit lm eval``) and ``eval lm-compare``."""
    _add_eval_arguments(eval_subparsers.add_parser("lm", help="evaluate LM runs"))
    p = eval_subparsers.add_parser(
        "lm-compare",
        help="backbones at matched parameters, equal steps, several seeds (codec tokens + probes)",
    )
    p.add_argument(
        "tokens", nargs="?", default=None, help="token store (`mambakit lm tokenize`); "
        "without it only the synthetic probes are run",
    )  # fmt: skip
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        "--budget-minutes", type=float, help="training minutes per run at the slowest "
        "backbone's measured step time: one step count for all",
    )  # fmt: skip
    budget.add_argument("--steps", type=int, help="optimizer steps per run")
    p.add_argument("--backbones", default="transformer,hybrid,mamba2")
    p.add_argument("--preset", choices=("tiny", "small", "base"), default="tiny")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    p.add_argument("--seq-len", type=int, default=512, help="frames per training crop")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=None, help="default: 10%% of the steps")
    p.add_argument("--split", default="val", help="token-store split scored (default val)")
    p.add_argument("--max-windows", type=int, default=256, help="scored windows of the split")
    p.add_argument("--probe-gap", type=int, default=64, help="probe recall distance (tokens)")
    add_device_argument(p)
    p.add_argument("--out", default="out/lm-compare", help="default out/lm-compare")
    p.set_defaults(func=_compare)


def _add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+")
    p.add_argument("--tokens", default=None, help="token store (default: the run's own)")
    p.add_argument("--split", default="val")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--max-windows", type=int, default=256)
    add_device_argument(p)
    p.add_argument("--json", default=None)
    p.set_defaults(func=_eval)


def _tokenize(args: argparse.Namespace) -> int:
    from mambakit.lm.codecs import load_codec
    from mambakit.lm.store import tokenize_folder

    codec = load_codec(args.codec, device=args.device, chunk_seconds=args.chunk_seconds)
    manifest = tokenize_folder(args.folder, codec, args.out, val_fraction=args.val_fraction)
    n_frames = sum(f["frames"] for f in manifest["files"])
    print(
        f"{len(manifest['files'])} files, {n_frames / codec.frame_rate / 3600:.2f} h of "
        f"tokens in {args.out}; {len(manifest['skipped'])} skipped"
    )
    for bad in manifest["skipped"]:
        print(f"  skipped {bad['path']}: {bad['error']}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from mambakit.lm.model import count_parameters
    from mambakit.lm.training import train_lm
    from mambakit.train import TrainConfig

    config = TrainConfig(
        lr=args.lr, warmup_steps=args.warmup, max_steps=args.steps, max_minutes=args.minutes,
        grad_accum=args.grad_accum, **train_fields(args),
    )  # fmt: skip
    model, summary = train_lm(
        args.tokens,
        args.out,
        backbone=args.backbone,
        scale=args.preset,
        pattern=args.pattern,
        seq_len=args.seq_len,
        label_smoothing=args.label_smoothing,
        train_config=config,
    )
    params = f"{args.backbone}/{args.preset}, {count_parameters(model):,} parameters"
    print(f"{params}: {summary.describe(args.out)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mambakit.eval.lm import evaluate_runs, runs_markdown

    options = same_named(args, "tokens", "split", "seq_len", "max_windows", "device")
    results = evaluate_runs(args.runs, **options)
    return print_result(runs_markdown(results), results, args.json)


def _generate(args: argparse.Namespace) -> int:
    from mambakit.dsp import load_audio, save_audio
    from mambakit.lm.generate import MusicGenerator, Sampling

    generator = MusicGenerator.from_pretrained(args.run, codec=args.codec, device=args.device)
    if args.decode_weights != "fp32":
        from mambakit.ssm import decode_weights_

        (fmt,) = _weight_formats(args.decode_weights, "--decode-weights", most=1)
        try:
            decode_weights_(generator.model, fmt)
        except RuntimeError as e:  # int8 without the CPU kernel
            raise UserError(str(e)) from None
    prompt, prompt_sr = None, None
    if args.prompt:
        prompt, prompt_sr = load_audio(args.prompt)
    audio = generator.generate(
        prompt,
        prompt_sample_rate=prompt_sr,
        prompt_seconds=args.prompt_seconds,
        seconds=args.seconds,
        sampling=Sampling(args.temperature, args.top_k, args.top_p, args.seed),
    )
    save_audio(args.output, audio[0].cpu(), generator.sample_rate)
    print(f"wrote {args.output} ({audio.shape[-1] / generator.sample_rate:.1f} s)")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from mambakit.lm.probes import probe_markdown, run_probe

    report = run_probe(
        _names(args.backbones),
        steps=args.steps,
        gap=args.gap,
        scale=args.preset,
        seed=args.seed,
    )
    return print_result(probe_markdown(report), report, args.json)


def _weight_formats(text: str, flag: str = "--weights", most: int = 3) -> list[str]:
    """The comma-separated decode-weight formats in ``text`` (at most ``most``); a user
    error if one is unknown."""
    from mambakit.ssm import DECODE_WEIGHTS

    formats = [w.strip() for w in text.split(",") if w.strip()]
    if not 0 < len(formats) <= most or any(w not in DECODE_WEIGHTS for w in formats):
        many = "one" if most == 1 else "one or more"
        raise UserError(f"{flag} {text!r}: give {many} of {', '.join(DECODE_WEIGHTS)}")
    return formats


def _bench(args: argparse.Namespace) -> int:
    from mambakit.bench.common import result_metadata
    from mambakit.bench.lm import lm_bench_markdown, run_lm_bench

    report = run_lm_bench(
        _names(args.backbones),
        context_seconds=[float(s) for s in args.contexts.split(",")],
        scale=args.preset,
        n_steps=args.steps,
        batch_size=args.batch,
        device=args.device,
        weights=_weight_formats(args.weights),
    )
    report["meta"] = result_metadata(device=args.device)  # machine, command, commit, date
    return print_result(lm_bench_markdown(report), report, args.json)


def _compare(args: argparse.Namespace) -> int:
    from mambakit.eval.claims import hybrid_claim
    from mambakit.eval.lm_compare import lm_compare_markdown, run_lm_compare

    passed = ("steps", "preset", "seq_len", "batch_size", "lr", "warmup", "split", "max_windows",
              "probe_gap", "device")  # fmt: skip
    result = run_lm_compare(
        args.tokens, args.out, minutes=args.budget_minutes, backbones=_names(args.backbones),
        seeds=[int(s) for s in _names(args.seeds)], **same_named(args, *passed),
    )  # fmt: skip
    print(lm_compare_markdown(result) + "\n")
    verdict = hybrid_claim(result)
    print(f"- {verdict.claim}: {verdict.verdict} ({verdict.why})")
    print(f"\nsaved {args.out}/lm_compare.json, lm_compare.md")
    return 0


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]
