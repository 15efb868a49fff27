"""SEDD Protein Studio: design proteins by masked infilling, watch them denoise, fold them in 3D.

    python app.py [--checkpoint DIR_OR_HUB_ID] [--esmfold NAME_OR_DIR] [--fold BACKEND]

Serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT respected). The API endpoint
``generate`` takes ``template``, ``num_samples``, ``steps``, ``seed`` (and ``temperature``, ``fold``,
``exclude``, ``span_lengths``);
it streams, and the first element of its final output is the FASTA text of the designs.

This file is UI only: callbacks, then layout, then wiring, then launch. Requests, runs and
downloads are ``sedd/studio.py``; folding ``sedd/fold.py``; HTML and plots ``sedd/render.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import torch

from sedd import checkpoint as ckpt
from sedd import render, studio
from sedd.fold import ESMFOLD_MODEL, ESMAtlasBackend, ESMFoldBackend

try:                       # ZeroGPU on Hugging Face Spaces: a GPU is attached per call
    import spaces
except ImportError:
    spaces = None

ASSETS = Path(__file__).resolve().parent / "assets"
EXAMPLES = json.loads((ASSETS / "examples.json").read_text())
TABLE_HEADERS = ["rank", "design", "mean pLDDT", "pTM", "length", "identity to template (%)", "fold", "span lengths",
                 "sequence"]
SPAN_MODES = [("draw per design", "sample"), ("most probable", "map")]
COLOR_CHOICES = {"pLDDT": "plddt", "designed vs fixed": "designed"}
OUTPUT_MAX_AGE_S = 3600


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def checked_by_callback(slider: gr.Slider) -> gr.Slider:
    """Leave the range check to the callback, whose error names the control and its range.

    Gradio's own check says only "Value 0 is less than minimum value 16". (A subclass would do the
    same, but Gradio writes a ``.pyi`` stub next to any module that defines a component class.)
    """
    slider.preprocess = lambda payload: payload
    return slider


# ---- callbacks --------------------------------------------------------------------------------------

class StudioCallbacks:
    """The page's callbacks over one loaded model and its folding backends."""

    def __init__(self, model: ckpt.Checkpoint, backends: dict, limits: studio.Limits = studio.Limits(),
                 js_url: str = render.CDN_3DMOL, min_interval: float = 0.1, output_root: Path | None = None):
        self.model, self.backends, self.limits = model, backends, limits
        self.js_url, self.min_interval = js_url, min_interval
        self.output_root = output_root or Path(tempfile.mkdtemp(prefix="sedd-studio-"))
        self.output_root.mkdir(parents=True, exist_ok=True)

    def _new_output_dir(self) -> Path:
        """A folder for this run's downloads; runs older than an hour are removed."""
        for old in self.output_root.iterdir():
            if time.time() - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        return self.output_root / uuid.uuid4().hex

    def _status(self, text: str, settings: studio.Settings | None = None, kind: str = "info",
                posterior: str = "") -> str:
        notices = "".join(render.message_html(f"Note: {n}.", "warn") for n in (settings.notices if settings else []))
        return notices + render.message_html(text, kind) + posterior

    def generate(self, template: str, num_samples: int = 4, steps: int = 128, seed: int | None = None,
                 temperature: float = 1.0, fold: str = "off", exclude: str = "", span_lengths: str = "sample"):
        """Stream the denoising, then fold and rank; yields every output of the page each time."""
        try:
            parsed, settings = studio.check_request(self.model, template, num_samples, steps, temperature, seed,
                                                    fold, self.limits, exclude, span_lengths)
        except ValueError as e:
            raise gr.Error(render.error_text(str(e)), title="Cannot design this") from None
        run = studio.Run(self.model, parsed, settings)
        skip = gr.skip()
        chart = ""
        if parsed.spans:
            yield ("", "", self._status("Choosing span lengths…", settings), settings.seed, None, "", None, None, [])
            posterior = run.choose_span_lengths()
            chart = render.span_posterior_html(settings.span_posterior, posterior.method)
        yield ("", "", self._status("Denoising…", settings, posterior=chart), settings.seed, None, "", None, None, [])
        for view in run.denoise(self.min_interval):
            fasta = "".join(f">design_{i + 1} (step {view.step})\n{s}\n" for i, s in enumerate(view.sequences))
            yield (fasta, render.frame_html(view.sequences, view.states, view.step, view.steps, view.nfe),
                   skip, skip, skip, skip, skip, skip, skip)
        done = f"{len(run.designs)} designs in {settings.steps} steps (seed {settings.seed})."
        backend = self.backends.get(fold)
        if backend is not None:
            for design in run.fold(backend):
                yield (run.fasta(), skip, self._status(f"{done} Folded {design.index} of {len(run.designs)} "
                                                       f"with {fold}…", settings, posterior=chart),
                       skip, skip, skip, skip, skip, skip)
        ranked = run.ranked()
        files = [str(p) for p in run.write_files(self._new_output_dir())]
        structure, plot = self._show(ranked[0], "plddt") if ranked else ("", None)
        errors = sorted({d.fold_error for d in run.designs if d.fold_error})
        status = self._status(done + (" Folding failed: " + " ".join(errors) if errors else ""), settings,
                              "warn" if errors else "info", chart)
        yield (run.fasta(), skip, status, settings.seed, self._table(ranked), structure, plot, files, ranked)

    def _table(self, ranked: list[studio.Design]) -> list[list]:
        rows = []
        for rank, d in enumerate(ranked, start=1):
            f = d.fold
            rows.append([rank, d.name, _fmt(f.mean_plddt if f else None), _fmt(f.ptm if f else None, 3),
                         len(d.sequence), _fmt(100 * d.identity), "ok" if f else ("failed" if d.fold_error else "off"),
                         ", ".join(map(str, d.span_lengths)) or "–", d.sequence])
        return rows

    def _show(self, design: studio.Design, color_by: str) -> tuple[str, object]:
        if design.fold is None:
            why = design.fold_error or "Folding is off: choose a folding backend to see structures."
            kind = "error" if design.fold_error else "info"
            return render.message_html(f"No structure for {design.name}. {why} The designs are still "
                                       "in the FASTA box and the downloads.", kind), None
        f = design.fold
        title = f"{design.name}: mean pLDDT {f.mean_plddt:.1f}" + (f", pTM {f.ptm:.3f}" if f.ptm is not None else "") \
            + f" ({f.backend})"
        return (render.structure_html(f.pdb, f.plddt, design.designed, title, color_by, self.js_url),
                render.plddt_figure(f.plddt, design.designed))

    def select(self, ranked: list[studio.Design] | None, color: str, evt: gr.SelectData):
        """A row of the ranked table was clicked: show that design."""
        if not ranked:
            return gr.skip(), gr.skip(), 0
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index)
        return (*self._show(ranked[row], COLOR_CHOICES[color]), row)

    def recolor(self, ranked: list[studio.Design] | None, row: int, color: str):
        if not ranked:
            return gr.skip(), gr.skip()
        return self._show(ranked[min(row, len(ranked) - 1)], COLOR_CHOICES[color])


# ---- layout and wiring ------------------------------------------------------------------------------

def model_summary(model: ckpt.Checkpoint) -> str:
    evaluation = model.meta.get("evaluation") or model.meta.get("metrics") or {}
    elbo = evaluation.get("elbo_nats_per_residue")
    trained = model.meta.get("training", {}).get("steps")
    return (f"Model `{model.source}` · {model.model.num_parameters() / 1e6:.1f} M parameters · lengths 1–{model.max_len}"
            + (f" · {trained} training steps" if trained else "")
            + (f" · held-out ELBO {elbo:.3f} nats/residue" if elbo else ""))


def build_demo(cb: StudioCallbacks, default_fold: str = "off", concurrency: int = 2, max_queue: int = 32) -> gr.Blocks:
    lim = cb.limits
    with gr.Blocks(title="SEDD Protein Studio", delete_cache=(OUTPUT_MAX_AGE_S, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown("# SEDD Protein Studio\nScore-entropy discrete diffusion fills the masked positions "
                    "(`_ ? # X`) of your template; watch the residues appear, then fold the designs.\n\n"
                    + model_summary(cb.model))
        with gr.Row():
            with gr.Column(scale=2):
                template = gr.Textbox(label="Template", lines=5, elem_id="template",
                                      placeholder="Residues, with _ ? # or X at the positions to design; [n] for n "
                                                  "of them, [3-8] for a span whose length the model chooses, [KR] "
                                                  "or [^C] for a position restricted to (or barred from) residues. "
                                                  "A FASTA header line, digits and spaces are ignored.")
                gr.Examples([[e["template"]] for e in EXAMPLES], inputs=[template],
                            example_labels=[e["label"] for e in EXAMPLES], label="Example templates")
                with gr.Row():
                    num_samples = checked_by_callback(gr.Slider(1, lim.max_designs, value=4, step=1,
                                                                 label="Number of designs"))
                    steps = checked_by_callback(gr.Slider(lim.min_steps, lim.max_steps, value=128, step=1, label="Steps"))
                with gr.Row():
                    temperature = checked_by_callback(gr.Slider(lim.min_temperature, lim.max_temperature, value=1.0,
                                                            step=0.05, label="Temperature"))
                    seed = gr.Number(label="Seed (blank = random)", value=None, precision=0, placeholder="random", elem_id="seed")
                with gr.Row():
                    exclude = gr.Textbox("", label="Exclude residues", placeholder="e.g. C", max_lines=1,
                                         elem_id="exclude", info="never placed at a designed position")
                    span_mode = gr.Radio(SPAN_MODES, value="sample", label="Span lengths [a-b]", elem_id="span-mode")
                fold = gr.Radio(list(studio.FOLD_BACKENDS), value=default_fold, label="Folding backend")
                with gr.Row():
                    run_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                with gr.Row():
                    seed_used = gr.Number(label="Seed used", interactive=False, precision=0, placeholder="–", elem_id="seed-used")
                    reuse = gr.Button("Reuse this seed", size="sm")
            with gr.Column(scale=3):
                status = gr.HTML(elem_id="status")
                frames = gr.HTML(elem_id="frames", label="Denoising")
                fasta = gr.Textbox(label="FASTA", lines=6, buttons=["copy"], elem_id="fasta")
        gr.Markdown("## Designs, ranked by mean pLDDT — click a row to view it")
        table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="designs", wrap=False)
        with gr.Row():
            with gr.Column(scale=3):
                color = gr.Radio(list(COLOR_CHOICES), value="pLDDT", label="Colour the structure by")
                structure = gr.HTML(render.message_html("Structures appear here after folding."), elem_id="structure")
            plot = gr.Plot(label="Per-residue pLDDT (designed positions marked)", elem_id="plddt-plot", scale=2)
        files = gr.File(label="Downloads: FASTA, PDBs, trajectory, settings", file_count="multiple",
                        interactive=False, elem_id="downloads")
        designs = gr.State([])
        selected = gr.State(0)

        fn = spaces.GPU(duration=180)(cb.generate) if spaces is not None else cb.generate
        event = run_btn.click(fn, [template, num_samples, steps, seed, temperature, fold, exclude, span_mode],
                              [fasta, frames, status, seed_used, table, structure, plot, files, designs],
                              api_name="generate", concurrency_limit=concurrency, show_progress="minimal")
        event.then(lambda: 0, None, selected, api_name=False)
        stop_btn.click(lambda: render.message_html("Stopped: the run was cancelled.", "warn"), None, status,
                       cancels=[event], api_name=False)
        reuse.click(lambda s: s, seed_used, seed, api_name=False)
        table.select(cb.select, [designs, color], [structure, plot, selected], api_name=False)
        color.change(cb.recolor, [designs, selected, color], [structure, plot], api_name=False)
    return demo.queue(max_size=max_queue, default_concurrency_limit=concurrency)


def make_backends(esmfold: str) -> dict:
    return {"ESMFold (local)": ESMFoldBackend(esmfold), "ESM Atlas API": ESMAtlasBackend(), "off": None}


def js_url_for_3dmol() -> str:
    """The npm package's 3Dmol.js when installed (served as a static file), else the CDN."""
    if render.LOCAL_3DMOL.is_file():
        gr.set_static_paths([render.LOCAL_3DMOL])             # that one file, nothing else
        return f"gradio_api/file={render.LOCAL_3DMOL}"      # relative: an iframe srcdoc resolves it against the page
    return render.CDN_3DMOL


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="SEDD Protein Studio (Gradio app)")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory or Hub repo id "
                                                       "(default: $SEDD_CHECKPOINT, else checkpoints/acyp)")
    p.add_argument("--esmfold", default=os.environ.get("SEDD_ESMFOLD", ESMFOLD_MODEL),
                   help="ESMFold weights: Hub id or local directory (default: $SEDD_ESMFOLD, else %(default)s)")
    p.add_argument("--fold", choices=studio.FOLD_BACKENDS, default=os.environ.get("SEDD_FOLD"),
                   help="default folding backend (default: ESMFold (local) with a GPU, else off)")
    p.add_argument("--concurrency", type=int, default=2, help="generate requests run at once")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting at most; more are refused")
    a = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = ckpt.load(a.checkpoint, device=device)      # once, and on the GPU when there is one
    except ValueError as e:
        p.error(f"cannot load the score model: {e}")
    default_fold = a.fold or ("ESMFold (local)" if device == "cuda" else "off")
    cb = StudioCallbacks(model, make_backends(a.esmfold), js_url=js_url_for_3dmol())
    launch(build_demo(cb, default_fold, a.concurrency, a.max_queue))


def launch(demo: gr.Blocks, **kwargs):
    """Serve the page (host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT unless given)."""
    return demo.launch(css_paths=[ASSETS / "studio.css"], **kwargs)


if __name__ == "__main__":
    main()
