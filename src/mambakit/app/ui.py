"""The Gradio app: layout and wiring only; every action is a function of
:mod:`mambakit.app.handlers`.

Tabs, one builder each: **Drum machine** (:func:`drum_machine_tab`: 8 pads, per-pad
controls with a live plot of the requested envelope and pitch curve, generate /
variations, then :func:`sequencer`: a 16-step grid, kit and loop export), **Timbre
transfer** (:func:`timbre_tab`), **Continue music** (:func:`continue_music_tab`). Models
named on the command line, else the packaged ones, are shared by all sessions; a run typed
into a tab's run box is validated (:func:`handlers.validate_run_dir`, limited to
``--runs-root`` when given) and loaded for that session only. Every session gets its own
:class:`handlers.SessionFiles` folder, removed when the session ends.

Errors in handlers become ``gr.Error`` messages in the page; unexpected ones are logged
on the server with their traceback and shown as one line, never as a stack trace.
"""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mambakit.app import handlers as h
from mambakit.app.plots import analysis_figure, requested_figure
from mambakit.drums.tags import TAGS
from mambakit.pretrained import CheckpointError, packaged_models, resolve_pretrained_path
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
#: The packaged model (``mambakit/weights/<name>``) a tab starts with when none is named.
DEFAULT_PACKAGED = {"drums": "gm-drums", "timbre": "gm-timbre"}


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
    """Models shared by every session: those named on the command line, else the models
    shipped in the package (``mambakit/weights``) or the run ``make demo`` wrote; and a
    status line per kind."""

    def __init__(
        self,
        drums: str | None = None,
        timbre: str | None = None,
        lm: str | None = None,
        runs_root: str | Path | None = None,
    ):
        self.runs_root = runs_root
        self.models: dict[str, Any] = {}
        self.status: dict[str, str] = {}
        for kind, run in (("drums", drums), ("timbre", timbre), ("lm", lm)):
            source = run or _default_model(kind)
            self.models[kind] = None
            if source is None:
                self.status[kind] = (
                    f"No {kind} model loaded. Type the path of a run directory below "
                    "(the folder a training run wrote) and press Load."
                )
                continue
            try:
                self.models[kind], self.status[kind] = h.open_model(
                    kind, resolve_pretrained_path(source), source
                )
            except (h.UIError, CheckpointError) as exc:
                self.status[kind] = f"Could not load {source}: {exc}"

    def of(self, kind: str, session_models: dict) -> Any:
        """The model of ``kind`` for a session: its own run if it loaded one, else the shared."""
        model = session_models.get(kind) or self.models[kind]
        if model is None:
            raise h.UIError(self.status[kind])
        return model


def _default_model(kind: str) -> str | None:
    """The model a tab starts with when none is named: a packaged one, or the demo's run."""
    packaged = DEFAULT_PACKAGED.get(kind)
    if packaged in packaged_models():
        return packaged
    if kind == "drums" and h.DEMO_RUN.is_dir():  # the run `make demo` made
        return str(h.DEMO_RUN)
    return None


@dataclass
class Page:
    """What every tab wires to: Gradio, the shared models, the per-session states."""

    gr: Any
    models: AppModels
    root: Path  # where session folders are made
    files_state: Any  # gr.State: this session's SessionFiles (made on first use)
    model_state: Any  # gr.State: runs loaded in this session, {"drums": synth, ...}

    def files(self, files: h.SessionFiles | None) -> h.SessionFiles:
        return files if files is not None else h.SessionFiles(self.root)

    def run_box(self, kind: str) -> None:
        """A status line, a run-directory box and a Load button for one model kind."""
        gr = self.gr
        status = gr.Markdown(self.models.status[kind], elem_id=f"{kind}-status")
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
            model, message = h.load_run(kind, text, self.models.runs_root)
            return {**session_models, kind: model}, message

        button.click(load, [box, self.model_state], [self.model_state, status])

    def render_on_click(
        self, button: Any, kind: str, render: Callable, inputs: list, audio: Any, name: str
    ) -> None:
        """Wire ``button`` to ``render(model, *values) -> (audio [C, T], sr)``, called with
        this session's ``kind`` model and the values of ``inputs``; the result is written
        to the session's folder as ``name.wav`` and shown in ``audio``."""
        gr = self.gr

        @_page_errors
        def on_click(files, session_models, *values, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
            files = self.files(files)
            out, sr = render(self.models.of(kind, session_models), *values)
            return files, str(h.write_wav(files, name, out, sr))

        outputs = [self.files_state, audio]
        button.click(on_click, [self.files_state, self.model_state, *inputs], outputs)


def build_app(
    drums: str | None = None,
    timbre: str | None = None,
    lm: str | None = None,
    temp_root: str | Path | None = None,
    runs_root: str | Path | None = None,
):
    """Build the ``gr.Blocks`` app (not launched). ``drums``/``timbre``/``lm``: run dirs or
    packaged model names; ``runs_root``: the only folder the run boxes may load from."""
    gr = _require_gradio()
    models = AppModels(drums, timbre, lm, runs_root)
    root = Path(tempfile.mkdtemp(prefix="mambakit-ui-", dir=temp_root))
    atexit.register(shutil.rmtree, root, True)

    def cleanup(files: h.SessionFiles | None) -> None:
        if files is not None:
            files.cleanup()

    with gr.Blocks(title="mambakit", delete_cache=(600, 3600), analytics_enabled=False) as app:
        gr.Markdown("# mambakit\nState-space models for audio generation, on your machine.")
        page = Page(gr, models, root, gr.State(None, delete_callback=cleanup), gr.State({}))
        with gr.Tab("Drum machine", elem_id="tab-drums"):
            drum_machine_tab(page)
        with gr.Tab("Timbre transfer", elem_id="tab-timbre"):
            timbre_tab(page)
        with gr.Tab("Continue music", elem_id="tab-lm"):
            continue_music_tab(page)
    return app


def drum_machine_tab(page: Page) -> None:
    """Eight pads with per-pad controls, a live plot of the requested envelope and pitch
    curve, generate / variations; then the sequencer."""
    gr = page.gr
    pads0 = h.default_pads()
    # kit: {"pads": {name: PadParams}, "audio": {name: [T]}, "sr": int}
    kit_state = gr.State({"pads": {p.name: p for p in pads0}, "audio": {}, "sr": 44100})
    page.run_box("drums")
    pad_select = gr.Radio(
        [p.name for p in pads0], value=pads0[0].name, label="Pad", elem_id="pad-select"
    )
    with gr.Row():
        with gr.Column(scale=1):
            first = pads0[0]
            c: dict[str, Any] = {}
            with gr.Row():
                c["tag"] = gr.Dropdown(list(TAGS), value=first.tag, label="tag")
                c["note"] = gr.Textbox(first.note, label="note (name or MIDI)", elem_id="pad-note")
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
                c["cfg"] = gr.Slider(
                    0.0,
                    h.MAX_GUIDANCE,
                    value=0.0,
                    step=0.1,
                    label="guidance (0 = model default, 1 = off)",
                )
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

    def render_pad(kit, pad_name, session_models, init_path, values, n, progress):
        """The pad as edited and its ``n`` takes by this session's drum model."""
        pad = current_pad(kit, pad_name, values)
        init = h.check_upload(init_path, "input sample") if init_path else None
        what = pad_name if n == 1 else f"{n} variations of {pad_name}"
        progress(0.1, desc=f"generating {what}")
        return pad, *h.generate_pad(page.models.of("drums", session_models), pad, n, init)

    @_page_errors
    def generate(kit, pad_name, files, models, init_path, *values, progress=gr.Progress()):  # noqa: B008
        files = page.files(files)
        pad, audio, sr = render_pad(kit, pad_name, models, init_path, values, 1, progress)
        kit["pads"][pad_name] = pad
        kit["audio"][pad_name], kit["sr"] = audio[0], sr
        path = h.write_wav(files, pad_name, audio[0], sr)
        _, env, _ = h.requested_curves(pad, sr, audio.shape[-1] / sr)
        return kit, files, str(path), analysis_figure(audio[0], sr, env)

    @_page_errors
    def variations(kit, pad_name, files, models, init_path, n, *values, progress=gr.Progress()):  # noqa: B008
        files = page.files(files)
        _, audio, sr = render_pad(kit, pad_name, models, init_path, values, int(n), progress)
        paths = [
            str(h.write_wav(files, f"{pad_name}-var{i + 1}", a, sr)) for i, a in enumerate(audio)
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
        [kit_state, pad_select, page.files_state, page.model_state, init_file, *controls],
        [kit_state, page.files_state, pad_audio, analysis_plot],
    )
    variations_button.click(
        variations,
        [
            kit_state,
            pad_select,
            page.files_state,
            page.model_state,
            init_file,
            n_variations,
            *controls,
        ],
        [page.files_state, *variation_audio],
    )

    sequencer(page, kit_state, pads0)


def sequencer(page: Page, kit_state: Any, pads0: list[h.PadParams]) -> None:
    """A 16-step grid over the pads, loop rendering and kit export (WAVs + SFZ)."""
    gr = page.gr
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
        files = page.files(files)
        grid = {p.name: [int(s) for s in row] for p, row in zip(pads0, steps, strict=True)}
        loop = h.render_loop(kit["audio"], grid, float(bpm_value), float(swing_value), kit["sr"])
        path = str(h.write_wav(files, "loop", loop, kit["sr"]))
        return files, path, path

    @_page_errors
    def export(kit, files):
        files = page.files(files)
        pads = [kit["pads"][p.name] for p in pads0]
        return files, str(h.export_kit(files, pads, kit["audio"], kit["sr"]))

    render_button.click(
        render,
        [kit_state, page.files_state, bpm, swing, *rows],
        [page.files_state, loop_audio, loop_file],
    )
    export_button.click(export, [kit_state, page.files_state], [page.files_state, kit_file])


def timbre_tab(page: Page) -> None:
    """Content and style uploads, the U-Net's per-level AdaIN strengths and the scaffold
    engine's style strength, transfer."""
    gr = page.gr
    page.run_box("timbre")
    with gr.Row():
        content = gr.Audio(
            sources=["upload", "microphone"],
            type="filepath",
            label="content (what is played)",
            elem_id="timbre-content",
        )
        style = gr.Audio(
            sources=["upload", "microphone"], type="filepath",
            label="style (whose timbre; several notes of it work best)", elem_id="timbre-style",
        )
        more_styles = gr.File(
            file_count="multiple", file_types=["audio"], type="filepath",
            label="more notes of it (optional)",
            elem_id="timbre-more",
        )
    with gr.Row():
        alphas = [  # defaults: the model's own (the seed's 1, 1, 1, 1, 0.2)
            gr.Slider(0.0, 1.0, value=value, step=0.05, label=f"alpha {name}")
            for name, value in zip(ALPHA_LEVELS, TimbreConfig().alpha, strict=True)
        ]
    strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="style strength (scaffold engine)")
    transfer_button = gr.Button("Transfer", variant="primary", elem_id="transfer")
    transfer_audio = gr.Audio(label="result", type="filepath", elem_id="timbre-audio")

    def transfer(model, content_path, style_path, more_paths, strength_value, *alpha_values):
        c_audio = h.check_upload(content_path, "content")
        paths = ([style_path] if style_path else []) + list(more_paths or [])
        styles = [h.check_upload(p, f"style {i + 1}") for i, p in enumerate(paths)]
        out = h.transfer_timbre(model, c_audio, styles or None, alpha_values, strength_value)
        warned, notes = h.transfer_messages(model)
        for message in warned:
            gr.Warning(message)
        for message in notes:
            gr.Info(message)
        return out

    inputs = [content, style, more_styles, strength, *alphas]
    page.render_on_click(transfer_button, "timbre", transfer, inputs, transfer_audio, "timbre")


def continue_music_tab(page: Page) -> None:
    """An optional prompt clip, sampling controls, continuation."""
    gr = page.gr
    page.run_box("lm")
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

    def continuation(model, prompt_path, secs, temp, k, seed_value):
        clip = h.check_upload(prompt_path, "prompt") if prompt_path else None
        return h.continue_music(model, clip, float(secs), float(temp), int(k), int(seed_value or 0))

    inputs = [prompt, seconds, temperature, top_k, lm_seed]
    page.render_on_click(continue_button, "lm", continuation, inputs, lm_audio, "continuation")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def launch(
    drums: str | None = None,
    timbre: str | None = None,
    lm: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    runs_root: str | Path | None = None,
):
    """Build and start the app on ``host:port`` (loopback unless told otherwise).

    Serving beyond loopback needs ``runs_root``: otherwise anyone who reaches the page
    could load any checkpoint directory on this machine through the run boxes.
    """
    if host not in LOOPBACK and runs_root is None:
        raise ValueError(
            f"serving on {host} makes the run boxes reachable from other machines: give "
            "--runs-root DIR to limit them to the runs in DIR"
        )
    app = build_app(drums, timbre, lm, runs_root=runs_root)
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
