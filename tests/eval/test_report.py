"""``mambakit report`` on the results the session's tiny studies wrote."""

import json
import os

from mambakit.cli import main
from mambakit.eval.claims import all_verdicts
from mambakit.report import SOURCES, build_report, find_latest, machine_label


def test_report_labels_every_section_and_says_what_is_missing(
    ablation_result, early_result, results_dir, tmp_path
):
    bench = results_dir / "bench"
    bench.mkdir(exist_ok=True)
    rows = [{"model": "mamba2_20hz", "pass": "fwd+bwd", "mem_ratio": 300.0}]
    (bench / "drums.json").write_text(json.dumps({"rows": rows, "generation": {}}))
    path = build_report(results_dir, tmp_path / "docs")
    text = path.read_text()
    assert path == tmp_path / "docs" / "RESULTS.md"
    # verdicts: one row per claim; the bench row holds by the 256x rule
    assert text.count("| **") == len(all_verdicts({}))
    assert "| **holds** | mamba2_20hz peak memory is 300.0x" in text
    # every measured section names machine, command, commit and date
    meta = ablation_result["meta"]
    assert "CPU only" in text and f"torch {meta['machine']['torch']}" in text
    assert f"{meta['machine']['cpu_cores']} CPUs" in text and meta["date_utc"] in text
    assert "not recorded with this result" in text  # the hand-written bench JSON has no meta
    # missing results name the command that makes them
    assert "SSM layers: speed and memory: no" in text and "make bench" in text
    assert "## Ablations" in text and "## Quality from the first batches" in text
    for image in ("ablations.png", "early_training.png"):
        assert (tmp_path / "docs" / "img" / image).stat().st_size > 20_000
        assert f"(img/{image})" in text


def test_find_latest_skips_other_kinds_and_picks_the_newest(tmp_path):
    folder = tmp_path / "ablations"
    folder.mkdir()
    (folder / "old.json").write_text(json.dumps({"kind": "ablations"}))
    (folder / "other.json").write_text(json.dumps({"kind": "early-training"}))
    (folder / "broken.json").write_text("{")
    new = folder / "new.json"
    new.write_text(json.dumps({"kind": "ablations"}))
    os.utime(folder / "old.json", (1, 1))
    ablations = next(s for s in SOURCES if s.key == "ablations")
    assert find_latest(tmp_path, ablations) == new
    assert find_latest(tmp_path / "nowhere", ablations) is None


def test_every_drum_evaluation_gets_its_own_section(tmp_path):
    from dataclasses import asdict

    from mambakit.eval.drums import DrumScores

    for name, accuracy in (("procedural", 0.875), ("gm", 0.517)):
        folder = tmp_path / name / "eval"
        folder.mkdir(parents=True)
        scores = [asdict(DrumScores("model", n=4, tag_accuracy=accuracy)),
                  asdict(DrumScores("scaffold", n=4, tag_accuracy=0.25))]  # fmt: skip
        payload = {"kind": "eval-drums", "scores": scores, "run": f"runs/{name}",
                   "real": f"data/{name}", "heldout": None,
                   "training": {"steps": 600, "seconds": 600.0}}  # fmt: skip
        (folder / "eval_drums.json").write_text(json.dumps(payload))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "eval_drums.json").write_text(json.dumps({"scores": []}))  # no kind
    text = build_report(tmp_path, tmp_path / "docs").read_text()
    assert text.count("## Drum runs: control adherence on held-out clips") == 2
    assert "Run `runs/procedural` (trained 600 steps in 10.0 min)" in text
    assert "| tag accuracy | 87.5% | 25.0% |" in text and "| tag accuracy | 51.7% |" in text
    assert "runs/other" not in text


def test_machine_label_names_the_gpu_or_says_cpu_only():
    meta = {
        "machine": {"platform": "Linux-x", "cpu_cores": 16, "torch": "2.5", "gpu": "NVIDIA H100"},
        "command": "mambakit bench drums",
        "git_commit": "0123456789abcdef",
        "date_utc": "2026-01-01T00:00:00+00:00",
    }
    label = machine_label({"meta": meta}, "cmd")
    assert "NVIDIA H100" in label and "16 CPUs" in label and "`0123456789`" in label
    del meta["machine"]["gpu"]
    assert "CPU only" in machine_label({"meta": meta}, "cmd")
    assert "rerun `cmd` to record them" in machine_label({"rows": []}, "cmd")


def test_cli_report_and_eval_wiring(tmp_path, monkeypatch, capsys, early_result):
    assert main(["report", "--results", str(tmp_path / "none"), "--docs", str(tmp_path)]) == 0
    assert "Not measured yet" in (tmp_path / "RESULTS.md").read_text()

    seen = {}

    def fake_early(data, out, settings, **kwargs):
        seen.update(kwargs, data=data, out=out, batch_size=settings.batch_size)
        return early_result

    monkeypatch.setattr("mambakit.eval.early.run_early_training", fake_early)
    argv = ["eval", "early-training", "clips", "--batches", "1,3", "--out", str(tmp_path / "e")]
    assert main(argv) == 0
    assert seen["batches"] == [1, 3] and seen["batch_size"] == 2
    assert "Usable samples after the first batch" in capsys.readouterr().out
    assert main(["eval", "ablations", "clips"]) == 2  # no budget: one clear error
    assert "--budget-minutes" in capsys.readouterr().err


def test_report_renders_the_lm_compare_section_and_its_verdict(tmp_path):
    from mambakit.bench.common import result_metadata
    from mambakit.eval.lm_compare import CODEC_METRICS, PROBE_METRICS, summarize_runs

    def run(backbone, seed, loss):
        per_codebook = [{"codebook": k, "loss": loss + k, "top1": 0.2, "top5": 0.5} for k in (0, 1)]
        scores = {m: loss for m in ("loss", "loss_local", "loss_recall", "final_train_loss")}
        scores.update(perplexity=2.0**loss, top1=0.2, top5=0.5)
        return {"backbone": backbone, "seed": seed, "n_parameters": 1000,
                "per_codebook": per_codebook, **scores}  # fmt: skip

    losses = {"transformer": (5.30, 5.32), "hybrid": (5.10, 5.11)}
    runs = [run(b, seed, loss) for b, pair in losses.items() for seed, loss in enumerate(pair)]
    result = {
        "kind": "lm-compare",
        "meta": result_metadata("mambakit eval lm-compare tokens --steps 9"),
        "config": {
            "preset": "tiny",
            "seeds": [0, 1],
            "steps": 9,
            "budget": None,
            "tokens": "tokens",
            "codec": {"id": "dac", "n_codebooks": 2, "codebook_size": 8},
            "split": "val",
            "seq_len": 16,
            "batch_size": 2,
            "lr": 3e-4,
        },
        "codec": {"runs": runs, "summary": summarize_runs(runs, CODEC_METRICS)},
        "probes": {
            "corpus": {"gap": 4, "vocab_size": 32, "motif_len": 8},
            "reference": {"local_entropy_rate": 0.5, "recall_without_memory": 3.4},
            "runs": runs,
            "summary": summarize_runs(runs, PROBE_METRICS),
        },
    }
    folder = tmp_path / "out" / "lm-compare"
    folder.mkdir(parents=True)
    (folder / "lm_compare.json").write_text(json.dumps(result))
    text = build_report(tmp_path / "out", tmp_path / "docs").read_text()
    assert "## Music LM: backbones at matched parameters and equal steps" in text
    assert "command `mambakit eval lm-compare tokens --steps 9`" in text
    assert "| hybrid | 1,000 | 5.105 ± 0.007 [5.100, 5.110] |" in text
    assert "| 1 | 6.310 ± 0.014 [6.300, 6.320] | 6.105 ± 0.007 [6.100, 6.110] |" in text
    assert "**Synthetic probes**" in text
    assert "| **holds** | on codec tokens (val split), 9 steps: mean loss hybrid 5.1050" in text

    second = tmp_path / "out" / "lm-compare-probes-only"  # another run: its own section
    second.mkdir()
    (second / "lm_compare.json").write_text(json.dumps({**result, "codec": None}))
    text = build_report(tmp_path / "out", tmp_path / "docs").read_text()
    assert text.count("## Music LM: backbones at matched parameters and equal steps") == 2
    assert "Source: `" + str(second / "lm_compare.json") + "`" in text
    assert "Could not read" not in text
    # one verdict per comparison: the first on codec tokens, the second on the probes
    assert text.count("A Jamba-style 1:3 hybrid beats a transformer") == 2
    assert "on the synthetic probes only, 9 steps, recall gap 4: mean loss hybrid" in text


def test_a_result_whose_json_is_gone_is_carried_over_with_its_verdict(tmp_path):
    results, docs = tmp_path / "out", tmp_path / "docs"
    bench = results / "bench"
    bench.mkdir(parents=True)
    rows = [{"model": "mamba2_20hz", "pass": "fwd", "mem_ratio": 300.0}]
    (bench / "drums.json").write_text(json.dumps({"rows": rows, "generation": {}}))
    first = build_report(results, docs).read_text()
    assert "| **holds** | mamba2_20hz peak memory is 300.0x" in first

    (bench / "drums.json").unlink()  # a fresh checkout: the report is there, the JSON is not
    for _ in range(2):  # carrying over twice changes nothing
        text = build_report(results, docs).read_text()
        assert text.count("## Drum model: LogCascade cost") == 1
        assert text.count("Carried over from the previous report") == 1
        assert "mamba2_20hz peak memory is 300.0x the LogCascade's (fwd) (carried over)" in text
        assert text.count("(carried over)") == 1
        assert "Drum model: LogCascade cost: no" not in text  # not listed as missing

    dropped = build_report(results, docs, carry_over=False).read_text()
    assert "Drum model: LogCascade cost: no `bench/drums.json`" in dropped
    assert "(carried over)" not in dropped


def test_results_are_gathered_from_several_folders(tmp_path):
    kept = tmp_path / "docs" / "results" / "bench"
    kept.mkdir(parents=True)
    rows = [{"model": "mamba2_20hz", "pass": "fwd", "mem_ratio": 280.0}]
    (kept / "drums.json").write_text(json.dumps({"rows": rows, "generation": {}}))
    text = build_report(
        [tmp_path / "out", tmp_path / "docs" / "results"], tmp_path / "d"
    ).read_text()
    assert "mamba2_20hz peak memory is 280.0x" in text


def test_a_per_result_source_keeps_the_sections_of_results_not_read_again(tmp_path):
    from dataclasses import asdict

    from mambakit.eval.drums import DrumScores

    def write(name):
        folder = tmp_path / "out" / name
        folder.mkdir(parents=True)
        scores = [asdict(DrumScores("model", n=4, tag_accuracy=0.5))]
        payload = {"kind": "eval-drums", "scores": scores, "run": f"runs/{name}"}
        (folder / "eval_drums.json").write_text(json.dumps(payload))
        return folder / "eval_drums.json"

    first = write("a")
    build_report(tmp_path / "out", tmp_path / "docs")
    first.unlink()  # gone from this checkout, still in the report
    second = write("b")
    text = build_report(tmp_path / "out", tmp_path / "docs").read_text()
    assert text.count("## Drum runs: control adherence on held-out clips") == 2
    assert f"Source: `{second}`." in text and f"Source: `{first}`." in text
    assert text.count("Carried over from the previous report") == 1


def test_every_bench_source_finds_the_file_its_command_writes():
    import fnmatch

    benches = [s for s in SOURCES if s.command.startswith("make bench")]
    assert len(benches) == 5
    for source in benches:
        written = source.command.split("--json out/")[1].rstrip(")")
        assert fnmatch.fnmatch(written, source.pattern), source.key


def test_each_drums_training_comparison_gets_a_section_with_its_speed_up(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    for threads, ratio in ((1, 1.85), (2, 1.83)):
        rows = [{"code": "old", "threads": threads, "steps_per_min_median": 50.0,
                 "step_cpu_s_median": 1.2},
                {"code": "new", "threads": threads, "steps_per_min_median": 50.0 * ratio,
                 "step_cpu_s_median": 0.6}]  # fmt: skip
        payload = {"kind": "drums-training-speed", "batch": 8, "threads": threads,
                   "rows": rows, "speedup_median": ratio, "speedup_cpu_time_median": 2.0,
                   "max_abs_output_diff": 5e-7, "output_scale": 3.0}  # fmt: skip
        (bench / f"drums-training-{threads}thread.json").write_text(json.dumps(payload))
    text = build_report(tmp_path, tmp_path / "docs").read_text()
    assert text.count("## Drum model: training steps per minute, old code vs this one") == 2
    assert "| new | 2 | 91.5 | 0.600 |" in text and "Speed-up: **1.85x**" in text


def test_carrying_verdicts_never_repeats_a_row_or_keeps_an_unmeasured_one_beside_a_measured():
    from mambakit.eval.claims import UNMEASURED
    from mambakit.report import CARRIED, _carry_verdicts

    measured = "| X holds | **does not hold** | gain 0.41 | `cmd` |"
    palette = f"| X holds | **{UNMEASURED}** | style clips of 3 notes | `cmd` |"
    gone = "| Y holds | **holds** | old evidence | `cmd` |"
    header = "| claim | verdict | evidence | command |"
    old = {"X holds": [measured, measured.replace(" | `", f" {CARRIED} | `")], "Y holds": [gone]}
    table = "\n".join([header, measured, palette, f"| Y holds | **{UNMEASURED}** | - | `cmd` |"])
    first = _carry_verdicts(table, old)
    assert first.splitlines() == [header, measured, gone.replace(" | `", f" {CARRIED} | `")]
    rows = {"X holds": [measured], "Y holds": first.splitlines()[2:]}
    assert _carry_verdicts(table, rows) == first  # again: the same table
