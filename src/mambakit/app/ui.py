"""The Gradio app: layout and wiring only; every action is a function of
:mod:`mambakit.app.handlers`.

Tabs: **Drum machine** (8 pads, per-pad controls with a live plot of the requested
envelope and pitch curve, generate / variations, a 16-step sequencer, kit and loop
export), **Timbre transfer**, **Continue music**. Models named on the command line are
shared by all sessions; a run typed into a tab's run box is validated
(:func:`handlers.validate_run_dir`) and loaded for that session only. Every session gets
its own :class:`handlers.SessionFiles` folder, removed when the session ends.

Errors in handlers become ``gr.Error`` messages in the page; unexpected ones are logged
on the server with their traceback and shown as one line, never as a stack trace.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mambakit.app import handlers as h
from mambakit.app.plots import analysis_figure, requested_figure
from mambakit.drums.tags import TAGS
from mambakit.timbre.model import TimbreConfig

log = logging.getLogger("mambakit.ui")

#: Pad controls in the order they appear as event inputs (names of PadParams fields).
PAD_CONTROLS = (
    "tag",
    "text",
    "note",
    "attack",
    "decay",
    "sustain",
    "release",
    "pitch_drop",
    "pitch_decay",
    "steps",
    "cfg",
    "seed",
    "strength",
)
ALPHA_LEVELS = ("skip 1", "skip 2", "skip 3", "skip 4", "bottleneck")


def _require_gradio():
    try:
        import gradio as gr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the web UI needs gradio: pip install 'mambakit[ui]' (or pip install gradio)"
        ) from exc
    return gr


def _page_errors(fn):
    """Turn handler exceptions into one-line messages in the page."""
    gr = _require_gradio()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except h.UIError as exc:
            # duration=None: the message stays until dismissed, so a slow page still shows it
            raise gr.Error(str(exc), duration=None, print_exception=False) from None
        except Exception as exc:
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(
                f"unexpected error ({type(exc).__name__}: {exc}); details in the server log",
                duration=None,
                print_exception=False,
            ) from None

    return wrapper


class AppModels:
    """Models given on the command line (shared, read-only) and the drum run's status."""

    def __init__(self, drums: str | None = None, timbre: str | None = None, lm: str | None = None):
        self.drums = self.timbre = self.lm = None
        self.status: dict[str, str] = {}
        if drums is None:  # the shipped model, else the run `make demo` made
            default = h.default_drum_run()
            drums = None if default is None else str(default)
        for kind, run, loader in (
            ("drums", drums, h.load_drums),
            ("timbre", timbre, h.load_timbre),
            ("lm", lm, h.load_lm),
        ):
            if run is None:
                self.status[kind] = (
                    f"No {kind} model loaded. Type the path of a run directory below "
                    "(the folder a training run wrote) and press Load."
                )
                if (
                    kind == "timbre"
                    and importlib.util.find_spec("mambakit.timbre.pipeline") is None
                ):
                    self.status[kind] = "Timbre transfer is not available in this installation."
                continue
            try:
                model, message = loader(run)
            except h.UIError as exc:
                model, message = None, f"Could not load {run}: {exc}"
            setattr(self, kind, model)
            self.status[kind] = message


def _session(files: h.SessionFiles | None, root: Path) -> h.SessionFiles:
    return files if files is not None else h.SessionFiles(root)


def build_app(
    drums: str | None = None,
    timbre: str | None = None,
    lm: str | None = None,
    temp_root: str | Path | None = None,
):
    """Build the ``gr.Blocks`` app (not launched). ``drums``/``timbre``/``lm``: run dirs."""
    gr = _require_gradio()
    models = AppModels(drums, timbre, lm)
    root = Path(tempfile.mkdtemp(prefix="mambakit-ui-", dir=temp_root))
    atexit.register(shutil.rmtree, root, True)
    pads0 = h.default_pads()

    def cleanup(files: h.SessionFiles | None) -> None:
        if files is not None:
            files.cleanup()

    with gr.Blocks(title="mambakit", delete_cache=(600, 3600), analytics_enabled=False) as app:
        gr.Markdown("# mambakit\nState-space models for audio generation, on your machine.")
        files_state = gr.State(None, delete_callback=cleanup)
        model_state = gr.State({})  # runs loaded in this session: {"drums": synth, ...}
        # kit: {"pads": {name: PadParams}, "audio": {name: [T]}, "sr": int}
        kit_state = gr.State({"pads": {p.name: p for p in pads0}, "audio": {}, "sr": 44100})

        def model_of(kind: str, session_models: dict) -> Any:
            return session_models.get(kind) or getattr(models, kind)

        def run_box(kind: str, loader):
            """A status line, a run-directory box and a Load button for one model kind."""
            status = gr.Markdown(models.status[kind], elem_id=f"{kind}-status")
            with gr.Row():
                box = gr.Textbox(
                    label=f"{kind} run directory",
                    placeholder="e.g. out/demo/run",
                    scale=4,
                    elem_id=f"{kind}-run",
                )
                button = gr.Button("Load", scale=1, elem_id=f"{kind}-load")

            @_page_errors
            def load(text: str, session_models: dict):
                model, message = loader(text)
                return {**session_models, kind: model}, message

            button.click(load, [box, model_state], [model_state, status])
            return status

        # ------------------------------------------------------------ drum machine
        with gr.Tab("Drum machine", elem_id="tab-drums"):
            run_box("drums", h.load_drums)
            pad_select = gr.Radio(
                [p.name for p in pads0], value=pads0[0].name, label="Pad", elem_id="pad-select"
            )
            with gr.Row():
                with gr.Column(scale=1):
                    first = pads0[0]
                    c: dict[str, Any] = {}
                    with gr.Row():
                        c["tag"] = gr.Dropdown(list(TAGS), value=first.tag, label="tag")
                        c["note"] = gr.Textbox(
                            first.note, label="note (name or MIDI)", elem_id="pad-note"
                        )
                    c["text"] = gr.Textbox(
                        "", label="free text (optional, overrides the tag)", elem_id="pad-text"
                    )
                    for name, lo, hi, step, label in (
                        ("attack", 0.0, 0.1, 0.0005, "attack [s]"),
                        ("decay", 0.005, 2.0, 0.005, "decay [s]"),
                        ("sustain", 0.0, 1.0, 0.01, "sustain level"),
                        ("release", 0.0, 1.0, 0.005, "release [s]"),
                        ("pitch_drop", 0.0, 36.0, 0.5, "pitch drop [semitones]"),
                        ("pitch_decay", 0.001, 0.5, 0.001, "pitch decay [s]"),
                    ):
                        c[name] = gr.Slider(
                            lo,
                            hi,
                            value=getattr(first, name),
                            step=step,
                            label=label,
                            elem_id=f"pad-{name}",
                        )
                    with gr.Row():
                        c["steps"] = gr.Slider(
                            0, h.MAX_STEPS, value=0, step=1, label="steps (0 = model default)"
                        )
                        c["cfg"] = gr.Slider(1.0, 5.0, value=1.0, step=0.1, label="guidance")
                        c["seed"] = gr.Number(first.seed, precision=0, label="seed")
                    with gr.Row():  # variations of an uploaded sample (img2img-style)
                        init_file = gr.File(
                            label="input sample for variations (optional audio)",
                            elem_id="pad-init",
                            height=90,
                        )
                        c["strength"] = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="strength")
                with gr.Column(scale=1):
                    requested_plot = gr.Plot(
                        requested_figure(*h.requested_curves(first)),
                        label="requested",
                        elem_id="requested-plot",
                    )
                    with gr.Row():
                        generate_button = gr.Button(
                            "Generate pad", variant="primary", elem_id="generate-pad"
                        )
                        n_variations = gr.Slider(
                            2,
                            h.MAX_VARIATIONS,
                            value=4,
                            step=1,
                            label="variations",
                            elem_id="n-variations",
                        )
                        variations_button = gr.Button(
                            "Generate N variations", elem_id="generate-variations"
                        )
                    pad_audio = gr.Audio(label="pad", type="filepath", elem_id="pad-audio")
                    analysis_plot = gr.Plot(label="generated", elem_id="analysis-plot")
            with gr.Row():
                variation_audio = [
                    gr.Audio(
                        label=f"variation {i + 1}",
                        type="filepath",
                        visible=False,
                        elem_id=f"variation-{i + 1}",
                    )
                    for i in range(h.MAX_VARIATIONS)
                ]
            controls = [c[name] for name in PAD_CONTROLS]

            def current_pad(kit: dict, pad_name: str, values: tuple) -> h.PadParams:
                return h.pad_from_values(
                    kit["pads"][pad_name], **dict(zip(PAD_CONTROLS, values, strict=True))
                )

            @_page_errors
            def edit_pad(kit: dict, pad_name: str, *values):
                pad = current_pad(kit, pad_name, values)
                kit["pads"][pad_name] = pad
                return kit, requested_figure(*h.requested_curves(pad))

            @_page_errors
            def select_pad(kit: dict, pad_name: str):
                pad = kit["pads"][pad_name]
                audio = kit["audio"].get(pad_name)
                return [getattr(pad, name) for name in PAD_CONTROLS] + [
                    requested_figure(*h.requested_curves(pad)),
                    None if audio is None else (kit["sr"], audio),
                    None,  # the analysis belongs to the previous pad's take
                ]

            @_page_errors
            def generate(
                kit,
                pad_name,
                files,
                session_models,
                init_path,
                *values,
                progress=gr.Progress(),  # noqa: B008
            ):
                files = _session(files, root)
                pad = current_pad(kit, pad_name, values)
                kit["pads"][pad_name] = pad
                init = h.check_upload(init_path, "input sample") if init_path else None
                progress(0.1, desc=f"generating {pad_name}")
                audio, sr = h.generate_pad(model_of("drums", session_models), pad, 1, init)
                kit["audio"][pad_name], kit["sr"] = audio[0], sr
                path = h.write_wav(files, pad_name, audio[0], sr)
                _, env, _ = h.requested_curves(pad, sr, audio.shape[-1] / sr)
                return kit, files, str(path), analysis_figure(audio[0], sr, env)

            @_page_errors
            def variations(
                kit,
                pad_name,
                files,
                session_models,
                init_path,
                n,
                *values,
                progress=gr.Progress(),  # noqa: B008
            ):
                files = _session(files, root)
                pad = current_pad(kit, pad_name, values)
                init = h.check_upload(init_path, "input sample") if init_path else None
                progress(0.1, desc=f"generating {int(n)} variations of {pad_name}")
                audio, sr = h.generate_pad(model_of("drums", session_models), pad, int(n), init)
                paths = [
                    str(h.write_wav(files, f"{pad_name}-var{i + 1}", a, sr))
                    for i, a in enumerate(audio)
                ]
                updates = [
                    gr.update(value=paths[i], visible=True)
                    if i < len(paths)
                    else gr.update(value=None, visible=False)
                    for i in range(h.MAX_VARIATIONS)
                ]
                return [files, *updates]

            for control in controls:
                control.input(
                    edit_pad,
                    [kit_state, pad_select, *controls],
                    [kit_state, requested_plot],
                    show_progress="hidden",
                )
            pad_select.change(
                select_pad,
                [kit_state, pad_select],
                [*controls, requested_plot, pad_audio, analysis_plot],
            )
            generate_button.click(
                generate,
                [kit_state, pad_select, files_state, model_state, init_file, *controls],
                [kit_state, files_state, pad_audio, analysis_plot],
            )
            variations_button.click(
                variations,
                [
                    kit_state,
                    pad_select,
                    files_state,
                    model_state,
                    init_file,
                    n_variations,
                    *controls,
                ],
                [files_state, *variation_audio],
            )

            # -------------------------------------------------------- sequencer
            gr.Markdown("### Sequencer (16 steps, one bar of 4/4)")
            step_labels = [str(i) for i in range(1, h.N_STEPS + 1)]
            rows = [
                gr.CheckboxGroup(step_labels, value=[], label=p.name, elem_id=f"seq-{p.name}")
                for p in pads0
            ]
            with gr.Row():
                bpm = gr.Slider(*h.BPM_RANGE, value=120, step=1, label="BPM", elem_id="bpm")
                swing = gr.Slider(0.0, 0.9, value=0.0, step=0.05, label="swing")
                render_button = gr.Button("Render loop", variant="primary", elem_id="render-loop")
                export_button = gr.Button("Export kit (zip)", elem_id="export-kit")
            with gr.Row():
                loop_audio = gr.Audio(label="loop", type="filepath", elem_id="loop-audio")
                loop_file = gr.File(label="loop WAV", elem_id="loop-file")
                kit_file = gr.File(label="kit zip (WAVs + SFZ)", elem_id="kit-file")

            @_page_errors
            def render(kit, files, bpm_value, swing_value, *steps):
                files = _session(files, root)
                grid = {p.name: [int(s) for s in row] for p, row in zip(pads0, steps, strict=True)}
                loop = h.render_loop(
                    kit["audio"], grid, float(bpm_value), float(swing_value), kit["sr"]
                )
                path = str(h.write_wav(files, "loop", loop, kit["sr"]))
                return files, path, path

            @_page_errors
            def export(kit, files):
                files = _session(files, root)
                pads = [kit["pads"][p.name] for p in pads0]
                return files, str(h.export_kit(files, pads, kit["audio"], kit["sr"]))

            render_button.click(
                render,
                [kit_state, files_state, bpm, swing, *rows],
                [files_state, loop_audio, loop_file],
            )
            export_button.click(export, [kit_state, files_state], [files_state, kit_file])

        # ------------------------------------------------------------ timbre
        with gr.Tab("Timbre transfer", elem_id="tab-timbre"):
            run_box("timbre", h.load_timbre)
            with gr.Row():
                content = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label="content (what is played)",
                )
                style = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="style (whose timbre)"
                )
            with gr.Row():
                alphas = [  # defaults: the model's own (the seed's 1, 1, 1, 1, 0.2)
                    gr.Slider(0.0, 1.0, value=value, step=0.05, label=f"alpha {name}")
                    for name, value in zip(ALPHA_LEVELS, TimbreConfig().alpha, strict=True)
                ]
            transfer_button = gr.Button("Transfer", variant="primary", elem_id="transfer")
            transfer_audio = gr.Audio(label="result", type="filepath", elem_id="timbre-audio")

            @_page_errors
            def transfer(
                files,
                session_models,
                content_path,
                style_path,
                *alpha_values,
                progress=gr.Progress(track_tqdm=True),  # noqa: B008
            ):
                files = _session(files, root)
                model = model_of("timbre", session_models)
                if model is None:
                    raise h.UIError(models.status["timbre"])
                c_audio = h.check_upload(content_path, "content")
                s_audio = h.check_upload(style_path, "style") if style_path else None
                out, sr = h.transfer_timbre(model, c_audio, s_audio, alpha_values)
                return files, str(h.write_wav(files, "timbre", out, sr))

            transfer_button.click(
                transfer,
                [files_state, model_state, content, style, *alphas],
                [files_state, transfer_audio],
            )

        # ------------------------------------------------------------ continue music
        with gr.Tab("Continue music", elem_id="tab-lm"):
            run_box("lm", h.load_lm)
            prompt = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="prompt clip (optional)"
            )
            with gr.Row():
                seconds = gr.Slider(1.0, h.MAX_LM_SECONDS, value=5.0, step=0.5, label="seconds")
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature")
                top_k = gr.Slider(0, 1024, value=250, step=1, label="top-k (0 = off)")
                lm_seed = gr.Number(0, precision=0, label="seed")
            continue_button = gr.Button("Continue", variant="primary", elem_id="continue")
            lm_audio = gr.Audio(label="continuation", type="filepath", elem_id="lm-audio")

            @_page_errors
            def continue_fn(
                files,
                session_models,
                prompt_path,
                secs,
                temp,
                k,
                seed_value,
                progress=gr.Progress(track_tqdm=True),  # noqa: B008
            ):
                files = _session(files, root)
                model = model_of("lm", session_models)
                if model is None:
                    raise h.UIError(models.status["lm"])
                clip = h.check_upload(prompt_path, "prompt") if prompt_path else None
                out, sr = h.continue_music(
                    model, clip, float(secs), float(temp), int(k), int(seed_value or 0)
                )
                return files, str(h.write_wav(files, "continuation", out, sr))

            continue_button.click(
                continue_fn,
                [files_state, model_state, prompt, seconds, temperature, top_k, lm_seed],
                [files_state, lm_audio],
            )
    return app


def launch(
    drums: str | None = None,
    timbre: str | None = None,
    lm: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
):
    """Build and start the app on ``host:port`` (loopback unless told otherwise)."""
    app = build_app(drums, timbre, lm)
    app.queue(default_concurrency_limit=1, max_size=32)
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=h.MAX_UPLOAD_BYTES,
        show_error=True,
        prevent_thread_lock=not block,
        quiet=not block,
        ssr_mode=False,  # plain client rendering: no Node server needed
    )
    return app
