"""``make demo`` / ``mambakit demo``: the drum synthesizer end to end, offline, on a CPU.

1. write the built-in procedural drum corpus (the offline default; bring your own folder
   with ``mambakit drums train``) and a held-out set from another seed;
2. train the ``tiny`` preset for a few minutes with a progress bar;
3. generate the bundled 8-pad kit (WAVs + SFZ) and render the bundled MIDI pattern;
4. draw a sheet (waveform, spectrogram, requested vs generated envelope per pad);
5. score control adherence on the held-out requests, model vs scaffold, in summary.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def run_demo(
    out_dir: Path, minutes: float = 4.0, n_per_tag: int = 16, eval_limit: int = 24
) -> Path:
    """Run every step into ``out_dir`` and return the summary path."""
    from mambakit.drums import DrumSynth, train_drums
    from mambakit.drums.arrange import bundled_pattern_path, render_pattern
    from mambakit.drums.data import load_corpus
    from mambakit.drums.kit import default_kit_path, generate_kit, load_kit_yaml, write_kit
    from mambakit.drums.procedural import write_corpus
    from mambakit.dsp import save_audio
    from mambakit.eval.drums import evaluate_synth, save_report, scores_markdown

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"mambakit demo: writing to {out_dir.resolve()}")
    corpus, heldout, run = out_dir / "corpus", out_dir / "heldout", out_dir / "run"
    cache = out_dir / "cache"
    if not corpus.exists():
        write_corpus(corpus, n_per_tag=n_per_tag, seed=0)
    if not heldout.exists():
        write_corpus(heldout, n_per_tag=3, seed=1)
    train_set = load_corpus(corpus, cache_dir=cache, workers=0)
    print(f"[1/5] corpus: {len(train_set)} clips {train_set.stats()}")

    start = time.perf_counter()
    summary = train_drums(train_set, run, preset="tiny", minutes=minutes, resume=True)
    print(f"[2/5] trained {summary.steps} steps in {time.perf_counter() - start:.0f} s")

    synth = DrumSynth.from_pretrained(run)
    pads = load_kit_yaml(default_kit_path())
    start = time.perf_counter()
    audios = generate_kit(synth, pads)
    kit_seconds = time.perf_counter() - start
    sfz = write_kit(out_dir / "kit", pads, audios, synth.sample_rate)
    beat, sr = render_pattern(out_dir / "kit", bundled_pattern_path())
    save_audio(out_dir / "beat.wav", beat, sr, subtype="PCM_24")
    print(f"[3/5] kit of {len(pads)} pads in {kit_seconds:.1f} s -> {sfz}; beat -> beat.wav")

    sheet = draw_sheet(pads, audios, synth.sample_rate, out_dir / "sheet.png")
    print(f"[4/5] sheet -> {sheet}")

    heldout_set = load_corpus(heldout, cache_dir=cache, workers=0)
    scores = evaluate_synth(synth, train_set, heldout_set, limit=eval_limit)
    save_report(scores, out_dir, {"train_steps": summary.steps})
    table = scores_markdown(scores)
    summary_md = out_dir / "summary.md"
    summary_md.write_text(
        "# mambakit demo\n\n"
        f"- training: {summary.steps} steps of the tiny preset, final loss "
        f"{summary.final_loss:.4f}\n"
        f"- kit: {len(pads)} pads generated in {kit_seconds:.1f} s (`kit/kit.sfz`), "
        f"beat: `beat.wav` ({beat.shape[-1] / sr:.1f} s)\n\n"
        "## Control adherence on held-out requests (model vs scaffold alone)\n\n"
        f"{table}\n"
    )
    (out_dir / "summary.json").write_text(
        json.dumps({"steps": summary.steps, "kit_seconds": kit_seconds}, indent=2)
    )
    print("[5/5] adherence on held-out requests:\n" + table)
    print(f"\ndone: everything is in {out_dir.resolve()} (summary.md, sheet.png, kit/, beat.wav)")
    return summary_md


def draw_sheet(pads, audios, sr: int, path: Path) -> Path:
    """One row per pad: waveform, log spectrogram, requested ADSR vs generated envelope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mambakit.app.plots import draw_spectrogram
    from mambakit.dsp import ADSR, hilbert_envelope, render_adsr

    fig, axes = plt.subplots(len(pads), 3, figsize=(13, 2.0 * len(pads)), squeeze=False)
    for row, (pad, audio) in zip(axes, zip(pads, audios)):
        t = np.arange(len(audio)) / sr
        row[0].plot(t, audio, lw=0.5)
        row[0].set_ylabel(pad.name, rotation=0, ha="right")
        draw_spectrogram(row[1], audio, sr)
        row[1].set_ylim(0, 16000)
        env = hilbert_envelope(audio, sr)
        req = render_adsr(ADSR(pad.attack, pad.decay, pad.sustain, pad.release), len(audio), sr)
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
