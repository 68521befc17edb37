"""``make demo`` / ``mambakit demo``: the drum synthesizer end to end, offline, on a CPU.

1. load the shipped ``gm-drums`` model (trained on the General MIDI kits of FluidR3_GM);
2. generate the bundled 8-pad kit (WAVs + SFZ) and render the bundled MIDI pattern with it,
   and draw a sheet (waveform, spectrogram, requested vs generated envelope per pad);
3. fine-tune the shipped model on a folder of one-shots for a short budget (by default the
   built-in procedural corpus; ``mambakit drums train FOLDER --init gm-drums`` does the
   same with your own samples) and generate the kit again from the fine-tuned model;
4. score control adherence of the fine-tuned model on held-out requests, in summary.md.

Steps 1-2 need no training and are timed in the summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def run_demo(
    out_dir: Path,
    minutes: float = 1.0,
    n_per_tag: int = 8,
    eval_limit: int = 12,
    model: str = "gm-drums",
) -> Path:
    """Run every step into ``out_dir`` and return the summary path."""
    from mambakit.drums import DrumSynth, train_drums
    from mambakit.drums.arrange import bundled_pattern_path, render_pattern
    from mambakit.drums.data import load_corpus
    from mambakit.drums.kit import default_kit_path, generate_kit, load_kit_yaml, write_kit
    from mambakit.drums.procedural import write_corpus
    from mambakit.drums.training import drums_train_config
    from mambakit.dsp import save_audio
    from mambakit.eval.drums import evaluate_synth, save_report, scores_markdown

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"mambakit demo: writing to {out_dir.resolve()}")
    start = time.perf_counter()
    synth = DrumSynth.from_pretrained(model)
    pads = load_kit_yaml(default_kit_path())
    audios = generate_kit(synth, pads)
    sfz = write_kit(out_dir / "kit", pads, audios, synth.sample_rate)
    beat, sr = render_pattern(out_dir / "kit", bundled_pattern_path())
    save_audio(out_dir / "beat.wav", beat, sr, subtype="PCM_24")
    kit_seconds = time.perf_counter() - start
    print(
        f"[1/4] {model}: kit of {len(pads)} pads and a {beat.shape[-1] / sr:.1f} s beat in "
        f"{kit_seconds:.1f} s -> {sfz}, beat.wav"
    )
    sheet = draw_sheet(pads, audios, synth.sample_rate, out_dir / "sheet.png")
    print(f"[2/4] sheet -> {sheet}")

    corpus, heldout, run = out_dir / "corpus", out_dir / "heldout", out_dir / "run"
    cache = out_dir / "cache"
    if not corpus.exists():
        write_corpus(corpus, n_per_tag=n_per_tag, seed=0)
    if not heldout.exists():
        write_corpus(heldout, n_per_tag=2, seed=1)
    train_set = load_corpus(corpus, cache_dir=cache, workers=0)
    begin = time.perf_counter()
    summary = train_drums(
        train_set, run, drums_train_config(minutes=minutes, resume=True), init_from=model
    )
    tuned = DrumSynth.from_pretrained(run)
    write_kit(out_dir / "kit_finetuned", pads, generate_kit(tuned, pads), tuned.sample_rate)
    print(
        f"[3/4] fine-tuned {model} on {corpus} ({len(train_set)} clips): {summary.steps} "
        f"steps in {time.perf_counter() - begin:.0f} s -> {run}, kit_finetuned/"
    )

    heldout_set = load_corpus(heldout, cache_dir=cache, workers=0)
    scores = evaluate_synth(tuned, train_set, heldout_set, limit=eval_limit)
    save_report(scores, out_dir, {"train_steps": summary.steps})
    table = scores_markdown(scores)
    summary_md = out_dir / "summary.md"
    summary_md.write_text(
        "# mambakit demo\n\n"
        f"- shipped model `{model}`: {len(pads)} pads generated and the beat rendered in "
        f"{kit_seconds:.1f} s (`kit/kit.sfz`, `beat.wav`, `sheet.png`)\n"
        f"- fine-tuned on `{corpus.name}/`: {summary.steps} steps, final loss "
        f"{summary.final_loss:.4f} (`run/`, `kit_finetuned/`)\n\n"
        "## Control adherence of the fine-tuned model on held-out requests\n\n"
        f"{table}\n"
    )
    (out_dir / "summary.json").write_text(
        json.dumps({"kit_seconds": kit_seconds, "finetune_steps": summary.steps}, indent=2)
    )
    print("[4/4] adherence on held-out requests:\n" + table)
    print(f"\ndone: everything is in {out_dir.resolve()} (summary.md, sheet.png, kit/, beat.wav)")
    return summary_md


def draw_sheet(pads, audios, sr: int, path: Path) -> Path:
    """One row per pad: waveform, log spectrogram, requested ADSR vs generated envelope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mambakit.app.plots import draw_spectrogram
    from mambakit.dsp import hilbert_envelope, render_adsr

    fig, axes = plt.subplots(len(pads), 3, figsize=(13, 2.0 * len(pads)), squeeze=False)
    for row, (pad, audio) in zip(axes, zip(pads, audios)):
        t = np.arange(len(audio)) / sr
        row[0].plot(t, audio, lw=0.5)
        row[0].set_ylabel(pad.name, rotation=0, ha="right")
        draw_spectrogram(row[1], audio, sr)
        row[1].set_ylim(0, 16000)
        env = hilbert_envelope(audio, sr)
        req = render_adsr(pad.adsr(), len(audio), sr)
        row[2].plot(t, env / max(env.max(), 1e-9), label="generated", lw=0.8)
        row[2].plot(t, req.numpy(), label="requested", lw=0.8, ls="--")
    axes[0][0].set_title("waveform")
    axes[0][1].set_title("spectrogram (Hz)")
    axes[0][2].set_title("envelope (normalised)")
    axes[0][2].legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
