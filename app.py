"""SEDD Protein Studio: design proteins by masked infilling, watch them denoise, fold them in 3D.

    python app.py [--checkpoint DIR_OR_HUB_ID] [--esmfold NAME_OR_DIR] [--fold BACKEND]

Serves on 127.0.0.1:7860, or the next free port (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT respected). The API endpoint
``generate`` takes ``template``, ``num_samples``, ``steps``, ``seed`` (and ``temperature``, ``fold``,
``exclude``, ``span_lengths``, ``sampler``, ``top_p``, ``stop_epoch``, ``particles``);
it streams, and the first element of its final output is the FASTA text of the designs. The endpoint
``score`` takes ``sequence`` and returns one entry of ``sedd.score --json``'s ``"sequences"`` list,
with the scan. Both are also MCP tools (Gradio's MCP server, ``/gradio_api/mcp/``).

This file is UI only: callbacks, then layout, then wiring, then launch, then the start-up helpers
that tests and scripts share (``serve`` in this process, ``spawn`` for ``python app.py``). Requests, runs and
downloads are ``sedd/studio.py``; folding ``sedd/fold.py``; HTML and plots ``sedd/render.py``.
"""
from __future__ import annotations

import argparse
import atexit
import functools
import inspect
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import torch

from sedd import checkpoint as ckpt
from sedd import render, score, studio
from sedd.cli import COUNT
from sedd.fold import ESMFOLD_MODEL, ESMAtlasBackend, ESMFoldBackend, check_foldable, in_background
from sedd.spans import TOP as SPAN_TOP, candidate_layouts

try:                       # ZeroGPU on Hugging Face Spaces: a GPU is attached per call
    import spaces
except ImportError:
    spaces = None

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
EXAMPLES = json.loads((ASSETS / "examples.json").read_text())
SCORE_EXAMPLES = json.loads((ASSETS / "score_examples.json").read_text())
TOP_HEADERS = ["substitution", "log p(b) − log p(wt) (nats)"]
SPAN_MODES = [("draw per design", "sample"), ("most probable", "map")]
COLOR_CHOICES = {"pLDDT": "plddt", "designed vs fixed": "designed"}
OUTPUT_MAX_AGE_S = 3600
OUTPUT_MAX_BYTES = 256 * 2**20     # downloads kept at most; the oldest runs go first
# Sessions whose state (designs, the page's settings: ~130 kB each) the server keeps; the least recently
# used go first. Gradio's default of 10,000 let a public Space grow by ~1.3 GB that it never gave back.
STATE_SESSIONS = 1000
STOPPED_HTML = render.message_html("Stopped: the run was cancelled.", "warn")
NO_STRUCTURE_YET = render.message_html("Structures and their pLDDT appear here when designs are folded (choose a "
                                       "folding backend; off by default without a GPU).")
STRUCTURE_TO_COME = render.message_html("Structures and their pLDDT appear here once the designs are folded.")
STOP_COUNTING_JS = """() => {
    window.seddStops = 0;
    window.seddClicks = {};
    window.seddSnapshots = {};
    document.addEventListener("click", e => {       // capture: before Gradio handles the click
        if (e.target.closest("#generate")) window.seddStopsAtGenerate = window.seddStops;
        if (e.target.closest("#stop")) window.seddStops += 1;
        const pressed = e.target.closest("#generate, #score");          // for snapshot_at_click_js
        if (pressed) window.seddClicks[pressed.id] = (window.seddClicks[pressed.id] ?? 0) + 1;
    }, true);
}"""
SHOW_REFUSAL_JS = """() => {
    // A refusal shows under the input at fault, which is often scrolled out of sight above the button
    // that was pressed: the press then seemed to do nothing. For a few seconds after a press, the first
    // refusal shown in that button's tab (the order a user reads and fixes them) is brought into view,
    // once; a refusal left in the other tab, hidden with it, is not one of them.
    let pressed = 0, tab = document;
    document.addEventListener("click", e => {
        const button = e.target.closest("#generate, #score");
        if (button) [pressed, tab] = [Date.now(), button.closest("[role=tabpanel]") || document];
    }, true);
    new MutationObserver(() => {
        if (!pressed || Date.now() - pressed > 5000) return;
        const reason = [...tab.querySelectorAll("div.validation-error")].find(el => el.getClientRects().length);
        const box = reason && (reason.closest(".block") || reason), r = box && box.getBoundingClientRect();
        if (r && (r.top < 0 || r.bottom > window.innerHeight)) {     // in view: it may be an old one, so wait on
            pressed = 0;
            box.scrollIntoView({block: "center", behavior: "smooth"});
        }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def snapshot_at_click_js(button: str) -> str:
    """A click of Generate (or Score) while its last request is on the page runs when that one ends
    (trigger_mode "always_last"), and Gradio reads its inputs only then: a template typed while it
    waited went into it. This js-only step of the click, which runs at the click itself, keeps the
    inputs as they were then, once per physical click (Gradio's later dispatch of the waiting request
    runs it again), and the request sends them (``sent_as_at_click_js``)."""
    return f"""(...values) => {{
    const clicks = window.seddClicks?.["{button}"];
    if (window.seddSnapshots && window.seddSnapshots["{button}"]?.of !== clicks)
        window.seddSnapshots["{button}"] = {{of: clicks, values}};
}}"""


def sent_as_at_click_js(button: str, then: str = "values") -> str:
    """The request's js: the inputs kept at the click (``snapshot_at_click_js``), else the page's; ``then``
    maps ``values`` further."""
    return f"""(...inputs) => {{
    const values = window.seddSnapshots?.["{button}"]?.values ?? inputs;
    return {then};
}}"""


MAX_UPLOAD = "1kb"                 # the page has no file input; refuse anonymous uploads
NO_SEED_YET = -1                   # the hidden seed output before any run (seeds are 0 … 2**31 − 1)
log = logging.getLogger("sedd.studio")


def _rounded(value: float | None, digits: int = 1) -> float | None:
    """A number cell: a number, so that the table sorts it as one (text sorts 100.0 before 66.7); None is blank."""
    return None if value is None else round(value, digits)


def _fold_state(d: studio.Design) -> str:
    return "ok" if d.fold else "failed" if d.fold_error else "stopped" if d.awaiting_fold else "off"


# The ranked table, one (header, type, cell of (rank, design)) triple per column: a new column is one line.
TABLE_COLUMNS: list[tuple[str, str, Callable[[int, studio.Design], object]]] = [
    ("rank", "number", lambda rank, d: rank),
    ("design", "str", lambda rank, d: d.name),
    ("mean pLDDT", "number", lambda rank, d: _rounded(d.fold.mean_plddt if d.fold else None)),
    ("pTM", "number", lambda rank, d: _rounded(d.fold.ptm if d.fold else None, 3)),
    ("length", "number", lambda rank, d: len(d.sequence)),
    ("nearest other design (% identity, designed positions)", "number",
     lambda rank, d: _rounded(None if d.nearest_identity is None else 100 * d.nearest_identity)),
    ("fold", "str", lambda rank, d: _fold_state(d)),
    ("model score (nats/res)", "number", lambda rank, d: _rounded(d.score, 3)),
    ("span lengths", "str", lambda rank, d: ", ".join(map(str, d.span_lengths)) or "–"),
    ("sequence", "str", lambda rank, d: d.sequence),
]
TABLE_HEADERS = [header for header, _, _ in TABLE_COLUMNS]


def checked_by_callback(component: gr.components.Component) -> gr.components.Component:
    """Pass the raw value to the callback, whose check names the control and what it allows.

    Gradio's own checks say only "Value 0 is less than minimum value 16", or, for a seed of
    ``"1e3"`` sent through the API, "upstream app has raised an exception", and a choice a ``Radio``
    does not offer is an HTTP 400 that names no parameter. (A subclass would do
    the same, but Gradio writes a ``.pyi`` stub next to any module that defines a component class.)
    """
    component.preprocess = lambda payload: payload
    return component


def integer_in_api(component: gr.components.Component) -> gr.components.Component:
    """Document the component's parameter as an integer in the API (and MCP) schema, as the contract says."""
    component.api_info = lambda: {"type": "integer"}
    return component


def seed_box() -> gr.Textbox:
    """The seed input: blank means a fresh random seed for every run.

    A text box, because Gradio's ``Number`` shows and sends 0 when its value is None, so the seed
    was never blank. The API still documents the parameter as an integer (the contract), and the
    callback checks whatever arrives (``studio.checked_seed``).
    """
    return integer_in_api(checked_by_callback(gr.Textbox(label="Seed (blank = random)", value="",
                                                         placeholder="random", max_lines=1, elem_id="seed")))


def examples_in_page(box: gr.Textbox, texts: list[str], labels: list[str], label: str) -> gr.Dataset:
    """Example buttons that fill ``box`` in the browser itself, with no round trip to the server.

    ``gr.Examples`` fills it through a server event, so a Generate pressed a moment after an example
    sent the box's previous text ("template is empty" under a box that by then held the example).
    The dataset's click hands its script the example's index.
    """
    examples = gr.Dataset(components=[box], samples=[[text] for text in texts], sample_labels=labels, label=label)
    examples.click(None, inputs=[examples], outputs=[box], js=f"(i) => {json.dumps(texts)}[i]")
    return examples


# ---- callbacks --------------------------------------------------------------------------------------

def log_refusal(what: str, reason: str) -> None:
    log.warning("refused a %s request: %s", what, reason.replace("\n", " "))     # one line, no traceback


GENERATE_OUTPUTS = ("fasta", "frames", "status", "seed", "table", "structure", "plot", "files", "designs")


def generate_outputs(**changed) -> tuple:
    """One output tuple of ``generate``, in ``GENERATE_OUTPUTS`` order; what is not named is left as the page shows it."""
    unknown = set(changed) - set(GENERATE_OUTPUTS)
    assert not unknown, f"generate has no output {unknown}"
    return tuple(changed.get(name, gr.skip()) for name in GENERATE_OUTPUTS)


class StudioCallbacks:
    """The page's callbacks over one loaded model and its folding backends."""

    def __init__(self, model: ckpt.Checkpoint, backends: dict, limits: studio.Limits = studio.Limits(),
                 js_url: str = render.CDN_3DMOL, min_interval: float = 0.1, output_root: Path | None = None,
                 max_output_bytes: int = OUTPUT_MAX_BYTES):
        self.model, self.backends, self.limits = model, backends, limits
        self.js_url, self.min_interval = js_url, min_interval
        # Inside Gradio's cache folder: Gradio serves a file from there as it is, without a copy.
        cache = Path(gr.utils.get_upload_folder())
        cache.mkdir(parents=True, exist_ok=True)
        studio.remove_orphaned_outputs(cache)
        self.output_root = output_root or Path(tempfile.mkdtemp(prefix=f"sedd-studio-{os.getpid()}-", dir=cache))
        self.output_root.mkdir(parents=True, exist_ok=True)
        self.max_output_bytes = max_output_bytes
        self._stops: dict[str, int] = {}        # session → how many times its page's Stop was pressed
        # session → its runs waiting or running (build_demo reads Gradio's queue); None: unknown
        self.runs_pending: Callable[[str], int] | None = None

    def stop(self, presses: int = 1, request: gr.Request | None = None) -> str:
        """The page's Stop, pressed for the ``presses``-th time: every run of the session started by
        a Generate clicked before this press ends, a running one at its next frame, a waiting one
        when its turn comes, whichever request reaches the server first.

        The page counts both in the browser, in click order: each Stop sends its count, each
        Generate the count so far (``stop_epoch``). Neither arrival order at the server nor time
        stamps decide, and Gradio's client-side cancel is not used (``cancels=`` lost a Generate
        clicked while the cancel was in flight: Gradio 6.31 defers the click, then drops it).

        The press is recorded either way; the status says "Stopped" only when the session has a
        run waiting or running, so a Stop after a run has ended, or while only a score runs (which
        a Stop does not end), leaves that run's status on the page.
        """
        session = request.session_hash if request is not None else None
        try:
            presses = int(presses or 0)
        except (TypeError, ValueError, OverflowError):      # not the page's count: a hand-made request
            return gr.skip()
        if session:
            pressed = max(self._stops.pop(session, 0), presses)
            self._stops[session] = pressed                          # the most recent last
            if len(self._stops) > STATE_SESSIONS:                   # as Gradio forgets sessions' state
                del self._stops[next(iter(self._stops))]
            if self.runs_pending is not None and not self.runs_pending(session):
                return gr.skip()
        return STOPPED_HTML

    def _stopped(self, request: gr.Request | None, stop_epoch: int) -> bool:
        session = request.session_hash if request is not None else None
        return session is not None and self._stops.get(session, 0) > stop_epoch

    def close(self) -> None:
        """Remove every download this studio wrote (at exit)."""
        shutil.rmtree(self.output_root, ignore_errors=True)

    def _write_outputs(self, run: studio.Run | studio.Scored) -> list[str]:
        directory = self.output_root / uuid.uuid4().hex
        paths = run.write_files(directory)
        studio.prune_outputs(self.output_root, directory, self.max_output_bytes, OUTPUT_MAX_AGE_S)
        return [str(p) for p in paths]

    def _status(self, text: str, settings: studio.Settings | None = None, kind: str = "info",
                posterior: str = "") -> str:
        notices = "".join(render.message_html(f"Note: {n}.", "warn") for n in (settings.notices if settings else []))
        return notices + render.message_html(text, kind) + posterior

    def generate(self, template: str, num_samples: int = 4, steps: int = 128, seed: int | None = None,
                 temperature: float = 1.0, fold: str = "off", exclude: str = "",
                 span_lengths: str = "sample", sampler: str = "tau-leaping", top_p: float = 1.0,
                 stop_epoch: int = 0, particles: int = 1, request: gr.Request | None = None):
        """Design proteins: fill the masked positions of a template with the SEDD model, then fold and rank them.

        Streams every denoising state (over MCP only the final outputs come, as one text: a Python literal
        of the list); the final output's first element is the FASTA text of the designs in
        the order they were drawn (design_1, design_2, …, as ``python -m sedd.sample`` prints them); the table,
        the fifth element, ranks them by mean pLDDT when folded, else by the model score (ELBO, nats per
        residue, lower = better).

        Args:
            template: protein sequence (one-letter codes) with the positions to design marked _ ? # or X; [n] = n designed positions, [a-b] = a designed span of a to b positions whose length the model chooses, [KR] = one position restricted to the listed residues, [^C] = one position that is anything but them; a FASTA header line, digits and spaces are ignored; 1 to the model's maximum length (128 for the bundled model) positions.
            num_samples: number of designs to draw, 1 to 8.
            steps: denoising steps, 16 to 1024 (more steps = finer sampling, slower).
            seed: random seed, 0 to 2147483647; left out (or blank, in the HTTP API) draws a random seed (returned with the results).
            temperature: sampling temperature, 0.1 to 2.0 (1.0 samples the model; lower = more conservative).
            fold: folding backend, one of "ESMFold (local)", "ESM Atlas API", "off".
            exclude: residues never placed at any designed position, e.g. "C" (empty = none).
            span_lengths: how [a-b] span lengths are chosen from the model's posterior: "sample" (each design draws its own) or "map" (all take the most probable).
            sampler: "tau-leaping" (the exact reverse process, default), "confidence" (reveal the most confident positions first) or "remask" (may also send low-confidence designed residues back to mask and redraw them).
            top_p: nucleus sampling, 0.05 to 1 (1 = off): keep the most probable residues up to this probability mass.
            stop_epoch: for the page's Stop button (how many times it had been pressed when this run was asked for); leave it at 0.
            particles: particles per design, 1 to 64 (default 1). Above 1, positions restricted to a set of residues ([KR], [^C] or exclude) are exact conditioning: each design runs that many weighted particles (sequential Monte Carlo) and follows the model's distribution given that every restricted position is in its set (exactly as the count grows), and the status estimates how likely the model alone is to meet the sets; with 1, each position's prediction is only renormalised over its set. Costs that many times the network evaluations; needs sampler "tau-leaping" and top_p 1; without a restricted position it has no effect.
        """
        try:      # the page's requests were checked before they were queued (Admission); API calls too
            parsed, settings = self.check(template, num_samples, steps, seed, temperature, fold, exclude,
                                          span_lengths, sampler, top_p, stop_epoch, particles)
            stop_epoch = studio.checked_stop_epoch(stop_epoch)
        except studio.RequestError as e:
            raise gr.Error(render.error_text(str(e)), title="Cannot design this", print_exception=False) from None
        run = studio.Run(self.model, parsed, settings)

        def check() -> None:
            if self._stopped(request, stop_epoch):
                raise studio.Cancelled

        # The session's Stop ends the run between two outputs (or two span-length candidates); a
        # stopped run then yields once more (``_stopped_outputs``), so a frame or status it yielded
        # as the Stop came in is not what the page keeps.
        try:
            for outputs in self._run(run, fold, check):
                check()
                yield outputs
        except studio.Cancelled:
            yield self._stopped_outputs(run)      # leaving the loop closed _run's generator: the sampler ends

    def check(self, template: str, num_samples=4, steps=128, seed=None, temperature=1.0, fold="off", exclude="",
              span_lengths="sample", sampler="tau-leaping", top_p=1.0, stop_epoch=0, particles=1, *_ignored):
        """``generate``'s inputs, in its order, checked; a refusal is logged and raised as ``studio.RequestError``."""
        try:
            checked = studio.check_request(self.model, template, num_samples, steps, temperature, seed, fold,
                                           self.limits, exclude, span_lengths, sampler, top_p, particles)
            studio.checked_stop_epoch(stop_epoch)
            return checked
        except studio.RequestError as e:
            log_refusal("generate", str(e))
            raise

    def _choose_span_lengths(self, run: studio.Run, check: Callable[[], None]):
        """The span-length choice (up to a minute), with a status each second of how far it has got.

        It runs in a thread so that this generator keeps yielding: Gradio closes the generator of a
        client that has gone at a yield, and closing it ends the choice before its next candidate
        layout, as the page's Stop does (``check``)."""
        settings, scored, abandoned = run.settings, [0], threading.Event()
        total = candidate_layouts(run.template)

        def checked() -> None:                       # before each candidate layout
            if abandoned.is_set():
                raise studio.Cancelled
            check()
            scored[0] += 1

        def status():
            done = f" ({scored[0] - 1} of {render.plural(total, 'candidate layout')} scored)" if scored[0] > 1 else ""
            return self._cleared(self._status(f"Choosing span lengths…{done}", settings), settings)
        yield status()
        try:
            for _ in in_background(lambda: run.choose_span_lengths(checked), poll_s=1.0):
                yield status()
        finally:
            abandoned.set()

    def _run(self, run: studio.Run, fold: str, check: Callable[[], None]):
        """One checked generate request, as the page's successive outputs (``check``: raises ``Cancelled``)."""
        settings = run.settings
        if run.template.spans:
            yield from self._choose_span_lengths(run, check)
        chart = self._posterior_chart(run)
        yield self._cleared(self._status("Denoising…", settings, posterior=chart), settings)
        frame = ""
        for view in run.denoise(self.min_interval):
            frame = render.frame_html(view.sequences, view.states, view.step, view.steps, view.nfe)
            yield generate_outputs(fasta=view.fasta(), frames=frame)
        done = (f"{render.plural(len(run.designs), 'design')} in {settings.steps} steps "
                f"(seed {settings.seed}{settings.departures()}).") \
            + (f" No {', '.join(settings.exclude)} at any designed position." if settings.exclude else "")
        backend = self.backends.get(fold)
        if backend is not None:
            for design in run.fold(backend, check):
                loads = "" if getattr(backend, "loaded", True) else " (loading its weights first)"
                yield generate_outputs(fasta=run.fasta(), status=self._status(
                    f"{done} Folding design {design.index} of {len(run.designs)} with {fold}{loads}…", settings,
                    posterior=chart))
        for design in run.score():
            yield generate_outputs(fasta=run.fasta(), status=self._status(
                f"{done} Model score of design {design.index} of {len(run.designs)}…", settings, posterior=chart))
        errors = sorted({d.fold_error for d in run.designs if d.fold_error})
        particles = run.particles_summary()
        status = self._status(done + (" " + particles if particles else "")
                              + (" Folding failed: " + " ".join(errors) if errors else ""), settings,
                              "warn" if errors else "info", chart)
        # the last frame again: the API's (and MCP's) final output holds it, not Gradio's "no change"
        yield self._results(run, frame, status)

    @staticmethod
    def _cleared(status: str, settings: studio.Settings) -> tuple:
        """The outputs of a run that has no designs yet: the previous run's all cleared."""
        structure = NO_STRUCTURE_YET if settings.fold == "off" else STRUCTURE_TO_COME
        return generate_outputs(fasta="", frames="", status=status, seed=settings.seed, table=None,
                                structure=structure, plot=None, files=None, designs=[])

    def _results(self, run: studio.Run, frame: str, status: str) -> tuple:
        """The outputs of a run whose designs are drawn: FASTA, table, first design's structure, downloads."""
        ranked = run.ranked()
        files = self._write_outputs(run)
        structure, plot = self._show(ranked[0], "plddt") if ranked else ("", None)
        return generate_outputs(fasta=run.fasta(), frames=frame, status=status, seed=run.settings.seed,
                                table=self._table(ranked), structure=structure, plot=plot, files=files, designs=ranked)

    def _posterior_chart(self, run: studio.Run) -> str:
        """The span-length posterior as a bar chart for the status ("" without spans, or before the choice)."""
        posterior = run.plan.posterior if run.plan is not None else None
        return "" if posterior is None else render.span_posterior_html(posterior.top(SPAN_TOP, with_stderr=True),
                                                                        posterior.method)

    def _stopped_outputs(self, run: studio.Run) -> tuple:
        """The last outputs of a stopped run.

        Stopped while choosing span lengths or denoising, the run has no designs: the status says
        "Stopped" and the page keeps the partial frame it shows. Stopped while folding or scoring,
        the designs are complete: every output shows them (FASTA, table, structure, downloads), and
        the status and table say which were not folded or scored.
        """
        if not run.designs:         # nothing will be folded: the panel no longer says structures are coming
            return generate_outputs(status=STOPPED_HTML, structure=NO_STRUCTURE_YET)
        n = len(run.designs)
        unfolded = sum(d.awaiting_fold for d in run.designs)
        unscored = sum(d.score is None for d in run.designs)
        missing = ([f"{unfolded} not folded"] if unfolded else []) + \
            ([f"{unscored} without a model score"] if unscored else [])
        detail = f": {', '.join(missing)}" if missing else ""
        status = self._status(f"Stopped: the run was cancelled after drawing {render.plural(n, 'design')} "
                              f"(seed {run.settings.seed}){detail}. The designs are in the table and the downloads.",
                              run.settings, "warn", self._posterior_chart(run))
        return self._results(run, gr.skip(), status)

    def _table(self, ranked: list[studio.Design]) -> list[list]:
        return [[cell(rank, d) for _, _, cell in TABLE_COLUMNS] for rank, d in enumerate(ranked, start=1)]

    def heading(self, ranked: list[studio.Design] | None) -> str:
        if not ranked:         # a fresh page, or a run stopped before its first design
            return ("## Designs (none yet) — they will be ranked by mean pLDDT when folded, "
                    "else by model score")
        basis = studio.ranking_basis(ranked)
        why = {"mean pLDDT": "ESMFold confidence; higher first",
               "model score": "ELBO, nats/residue; lower = more likely under the model",
               "drawing order": "the run was stopped before any design was folded or scored"}[basis]
        done = studio.ranking_coverage(ranked)
        if done < len(ranked):     # a stopped run: say how many designs the ranking covers
            verb = "folded" if basis == "mean pLDDT" else "scored"
            why += f"; only {done} of {len(ranked)} {verb}, the rest after them in drawing order"
        heading = f"## Designs, ranked by {basis} ({why}) — click a row to view it"
        blank = studio.why_nearest_is_blank(ranked)                             # a blank cell, said why
        if blank:
            heading += ("\n\n*Nearest other design* compares designs of the same span lengths, position by "
                        f"position; it is blank for a design {' or '.join(blank)}.")
        return heading

    def score(self, sequence: str) -> dict:
        """Score a protein sequence with the SEDD model: how family-like it is and what every single substitution would do.

        Returns an object (over MCP its text, a Python literal: read it with ast.literal_eval, not json.loads) with name, sequence, length, elbo_nats_per_residue and elbo_stderr (the ELBO bound on -log p(sequence | length), nats per residue, lower = more family-like), pll_nats_per_residue (the negative pseudo-log-likelihood, nats per residue, lower = more likely), per_residue_log_prob (log p of each residue with only it masked, L values) and scan ({"residues": "ACDEFGHIKLMNPQRSTVWY", "scores": L rows of 20 values log p(b) - log p(wild type) with only that position masked; 0 on the wild type, negative = predicted harmful}).

        Args:
            sequence: a full protein sequence in one-letter codes (the 20 canonical residues), 1 to the model's maximum length (128 for the bundled model); a FASTA header line, digits, spaces and a trailing * are ignored, and of several FASTA records the first is scored (the entry's name says which); masked positions (_ ? # X) are refused.
        """
        try:      # the page's requests were checked before they were queued (check_score); API calls too
            return studio.score_request(self.model, sequence, seed=0)
        except ValueError as e:
            log_refusal("score", str(e))
            raise gr.Error(render.error_text(str(e)), title="Cannot score this", print_exception=False) from None

    def check_score(self, sequence: str) -> None:
        """``score``'s input, checked by its validator (``Admission``) before it is queued; a refusal is
        logged and raised (``ValueError``), its reason shown under the sequence until it is edited."""
        try:
            studio.check_score_request(self.model, sequence, self.limits)
        except ValueError as e:
            log_refusal("score", str(e))
            raise

    def show_score(self, entry: dict, design: tuple[str, list[bool]] | None = None, text: str = ""):
        """The Score tab's views of an entry (of the sequence box's ``text``): summary, per-residue track,
        scan heatmap, top substitutions, files."""
        view = studio.scored(self.model, entry, design)
        top = [[name, round(value, 3)] for name, value in score.top_substitutions(entry, 20)]
        notices = "".join(render.message_html(f"Note: {n}.", "warn") for n in studio.score_notices(self.model, text, entry))
        return (notices + render.score_summary_html(entry, view.percentile),
                render.score_track_figure(entry["per_residue_log_prob"], view.designed),
                render.scan_heatmap_figure(entry, view.designed), top, self._write_outputs(view))

    def send_to_score(self, ranked: list[studio.Design] | None, row: int):
        """"Score this design": the selected design goes to the Score tab, its designed positions with it."""
        if not ranked:
            raise gr.Error("Generate designs first; then click a row of the table and score it.", title="No design yet",
                           print_exception=False)
        d = ranked[min(row, len(ranked) - 1)]
        return f">{d.name}\n{d.sequence}", (d.sequence, list(d.designed)), gr.Tabs(selected="score")

    def _show(self, design: studio.Design, color_by: str) -> tuple[str, object]:
        if design.fold is None:
            why = design.fold_error or ("The run was stopped before it was folded." if design.awaiting_fold else
                                        "Folding is off: choose a folding backend to see structures.")
            kind = "error" if design.fold_error else "info"
            return render.message_html(f"No structure for {design.name}. {why} The designs are still "
                                       "in the FASTA box and the downloads.", kind), None
        f = design.fold
        title = f"{design.name}: mean pLDDT {f.mean_plddt:.1f}" + (f", pTM {f.ptm:.3f}" if f.ptm is not None else "") \
            + f" ({f.backend})"
        return (render.structure_html(f.pdb, f.plddt, design.designed, title, color_by, self.js_url),
                render.plddt_figure(f.plddt, design.designed))

    def select(self, ranked: list[studio.Design] | None, color: str, evt: gr.SelectData):
        """A row of the ranked table was clicked: show that design (the row's index is the design's
        place in ``ranked`` even when the page shows the table sorted or filtered by its column menus)."""
        if not ranked:
            return gr.skip(), gr.skip(), 0
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index)
        return (*self._show(ranked[row], COLOR_CHOICES[color]), row)

    def recolor_first(self, ranked: list[studio.Design] | None, color: str):
        """After a run, whose first design is drawn in pLDDT colours: redraw it in the colouring the page shows."""
        if COLOR_CHOICES[color] == "plddt":
            return gr.skip(), gr.skip()
        return self.recolor(ranked, 0, color)

    def recolor(self, ranked: list[studio.Design] | None, row: int, color: str):
        if not ranked:
            return gr.skip(), gr.skip()
        return self._show(ranked[min(row, len(ranked) - 1)], COLOR_CHOICES[color])


# ---- layout and wiring ------------------------------------------------------------------------------

def refusal_notice(elem_id: str) -> gr.Textbox:
    """Where a tab shows a refusal that is no input's fault (a full queue, a session at its cap): under
    the button just pressed, where the eye is. The tab's page event sends it as its last input, the
    validator gives the reason at it (``Admission``), and the page clears it when a request is
    admitted. Only the reason shows (studio.css).

    Not a ``gr.Error`` raised by the validator: Gradio 6.31 answers that with an HTTP 400 whose
    message gradio_client drops, and the page marks every output "Error"."""
    return gr.Textbox(label="Refused", show_label=False, interactive=False, container=False, elem_id=elem_id,
                      elem_classes="refusal")


def with_notice(fn: Callable) -> Callable:
    """``fn`` for a page event that also sends the tab's ``refusal_notice``, which only the validator
    reads: the signature Gradio reads gains a ``notice`` parameter after the event's inputs (after
    ``fn``'s last parameter that is not a ``gr.Request``, which Gradio fills by its annotation
    wherever it stands), and the call drops it. The notice has a default, so the parameters after it
    are declared with one too; only Gradio reads this signature, and it passes every argument."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    at = 1 + max((i for i, p in enumerate(params) if "Request" not in str(p.annotation)), default=-1)
    notice = inspect.Parameter("notice", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="", annotation=str)
    after = [p.replace(default=None) if p.default is p.empty else p for p in params[at:]]

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            yield from fn(*args[:at], *args[at + 1:], **kwargs)
    else:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            return fn(*args[:at], *args[at + 1:], **kwargs)
    call.__signature__ = signature.replace(parameters=params[:at] + [notice] + after)
    return call


def with_heading(generate: Callable, heading: Callable[[list], str]) -> Callable:
    """``generate`` (a generator of output tuples whose last element is the designs) with one more
    output, ``heading(designs)``, sent in the same message as the designs it describes.

    As a step after the run, the heading came after the table, and a page caught between the two (a
    Stop while scoring) showed a table of designs under "Designs (none yet)"; and while a new run
    drew, the cleared table sat under the last run's ranking."""
    @functools.wraps(generate)
    def outputs(*args, **kwargs):
        for values in generate(*args, **kwargs):
            designs = values[-1]
            yield *values, (gr.skip() if designs == gr.skip() else heading(designs))
    return outputs


def without_last_output(generate: Callable) -> Callable:
    """``generate`` (a generator of output tuples, with its signature and docstring) minus each tuple's last element."""
    @functools.wraps(generate)
    def outputs(*args, **kwargs):
        for values in generate(*args, **kwargs):
            yield values[:-1]
    return outputs


def model_name(source: str) -> str:
    """What the page calls the model: a local checkpoint's folder name, else the Hub id as given.

    Never the absolute path, which says nothing to a visitor and shows the server's file system."""
    path = Path(source)
    return path.resolve().name if path.exists() else source


def model_summary(model: ckpt.Checkpoint) -> str:
    evaluation = model.meta.get("evaluation") or model.meta.get("metrics") or {}
    elbo = evaluation.get("elbo_nats_per_residue")
    trained = model.meta.get("training", {}).get("steps")
    return (f"Model `{model_name(model.source)}` · {model.model.num_parameters() / 1e6:.1f} M parameters · lengths 1–{model.max_len}"
            + (f" · {trained} training steps" if trained else "")
            + (f" · held-out ELBO {elbo:.3f} nats/residue" if elbo else ""))


def accept_older_calls(demo: gr.Blocks, inputs: list, required: list[str]) -> None:
    """Let a raw API call of the event with ``inputs`` leave out the inputs after the ``required`` ones
    (their names, in order): they take their components' values, the defaults the API documents, as
    gradio_client fills them; a call with fewer values is refused naming the required inputs. A
    JSON null for one of those optional inputs means the same (``temperature`` null was refused while
    ``exclude`` null meant none: a client cannot tell which null means "the default").

    A raw HTTP call (``/gradio_api/call/generate``, ``queue/join``) sends every input by position,
    and Gradio refuses one with fewer values than inputs ("didn't receive enough input values"), so
    without this a parameter appended later would break every such caller written before it.
    Gradio checks the count in ``Blocks.validate_inputs``, for the validator and for the run, on
    the list it then reads: the missing values are appended to that list before the check.
    """
    validate = demo.validate_inputs

    def with_defaults(block_fn, values):
        if (isinstance(values, list) and len(block_fn.inputs) == len(inputs)
                and all(a is b for a, b in zip(block_fn.inputs, inputs))):
            if len(values) < len(required):
                what = required[0] if len(required) == 1 else f"at least {', '.join(required)}, in that order"
                raise ValueError(f"this call sends {len(values)} input values; send {what}")
            values.extend(component.value for component in inputs[len(values):])
            for i in range(len(required), len(inputs)):      # a JSON null means what leaving the input out means
                if values[i] is None:
                    values[i] = inputs[i].value
        return validate(block_fn, values)

    demo.validate_inputs = with_defaults


class Admission:
    """Gradio validator for ``generate`` (and, for the last two points, ``score``), run before a
    request takes a place in the queue.

    A refused request never starts, so the page keeps its last results instead of marking every
    output "Error" with the reason only in a toast that fades. It refuses:

    - **bad input** (``cb.check``), the reason shown under the input at fault until that input is
      edited (or, for particles, the sampler or top-p: ``build_demo``);
    - a session that already has ``cap`` runs waiting or running, so one visitor (or one API
      client that never reads its results: Gradio counts a session's events until their results
      are delivered) cannot fill the queue for everyone. Not an MCP call: Gradio's MCP server sends
      every agent's calls through its one client, so all agents would count as one session (a
      second agent refused at a cap of 1 while the first ran); the queue's cap bounds them;
    - a full queue. Gradio checks the queue's size before it awaits a validator, so a burst of
      requests would all pass that check and overfill the queue.

    The last two are no fault of an input: on the page the reason shows in the tab's notice
    (``refusal_notice``), the page event's last input, until a request is admitted. An API call
    has no notice, and Gradio's refusal names a parameter: there it names the first, and the reason
    says that the input is not at fault.

    The check is a coroutine that never suspends, run by Gradio's event loop right before the request
    is queued, so the requests of a burst are counted one by one (tested). Gradio passes the request
    first (it fills a leading parameter annotated ``gr.Request``), then the event's inputs, in the
    order of ``generate``'s parameters. API clients get the same message, as a validation error.
    """

    def __init__(self, cb: StudioCallbacks, cap: int, max_queue: int):
        self.cb, self.cap, self.max_queue, self.demo = cb, cap, max_queue, None
        self.fields = list(inspect.signature(cb.generate).parameters)

    def pending(self, session: str) -> int:
        """The session's events waiting or running (Gradio counts them until their results are delivered)."""
        return len(self.demo._queue.pending_event_ids_session.get(session, ()))

    def runs_pending(self, session: str) -> int:
        """The session's ``generate`` runs waiting or running: its pending events less a score, the
        steps that follow a run and any other event."""
        queue = self.demo._queue
        events = (queue.event_ids_to_events.get(i) for i in queue.pending_event_ids_session.get(session, ()))
        return sum(e is not None and e.concurrency_id == "generate" for e in events)

    def refusal(self, request: gr.Request, endpoint: str, inputs: tuple, crowd_at: int) -> tuple[int, str] | None:
        """(the index of the input to show the reason at, the reason), or None to admit the request:
        a bad input's reason at that input, a crowd refusal at ``crowd_at``."""
        try:
            if endpoint == "score":
                self.cb.check_score(inputs[0])
            else:
                self.cb.check(*inputs)
        except studio.RequestError as e:
            return self.fields.index(e.field), str(e)
        except ValueError as e:                # the score's one input
            return 0, str(e)
        crowd = self.crowd_refusal(request, endpoint, "request" if endpoint == "score" else "run")
        if crowd and crowd_at >= 0:           # an API call: shown as "template: …", which reads as its fault
            crowd = f"busy, not an input error: {crowd}"
        return (crowd_at, crowd) if crowd else None

    def crowd_refusal(self, request: gr.Request, endpoint: str, noun: str) -> str | None:
        """The reason to refuse a well-formed request (a full queue, a session at its cap), or None."""
        pending = self.pending(request.session_hash)
        waiting = len(self.demo._queue)
        if waiting >= self.max_queue:
            refusal = f"the queue is full ({render.plural(waiting, 'run')} waiting); try again in a minute"
        elif pending >= self.cap and request.headers.get("x-gradio-user") != "mcp":   # Gradio's MCP client
            refusal = (f"this session already has {render.plural(pending, noun)} waiting or running "
                       f"(at most {self.cap}); wait for one to finish")
        else:
            return None
        log_refusal(endpoint, refusal)
        return refusal

    def verdicts(self, request: gr.Request, endpoint: str, inputs: tuple, crowd_at: int):
        verdicts = [gr.validate(True, "")] * len(inputs)      # one per input
        refused = self.refusal(request, endpoint, inputs, crowd_at)
        if refused:
            verdicts[refused[0]] = gr.validate(False, refused[1])
        return verdicts if len(verdicts) > 1 else verdicts[0]     # Gradio reads a one-input event's alone

    async def check(self, request: gr.Request, *inputs):
        return self.verdicts(request, "generate", inputs, 0)

    async def check_page(self, request: gr.Request, *inputs):
        """The page's ``generate``, whose last input is the notice."""
        return self.verdicts(request, "generate", inputs, -1)

    async def check_score(self, request: gr.Request, sequence: str):
        return self.verdicts(request, "score", (sequence,), 0)

    async def check_score_page(self, request: gr.Request, sequence: str, notice: str):
        """The page's ``score``, whose last input is the notice."""
        return self.verdicts(request, "score", (sequence, notice), -1)

    async def check_template_with_exclude(self, template: str, exclude: str):
        """An edit of Exclude: the template checked again with the new exclusion, so a refusal Exclude
        fixed (a bracket whose residues were all excluded) clears, and any other shows again."""
        refusal = studio.template_refusal(self.cb.model, template, exclude, self.cb.limits)
        return [gr.validate(refusal is None, refusal or ""), gr.validate(True, "")]


def build_demo(cb: StudioCallbacks, default_fold: str = "off", concurrency: int = 2, max_queue: int = 32,
               per_session: int = 4) -> gr.Blocks:
    lim = cb.limits
    admit = Admission(cb, per_session, max_queue)
    with gr.Blocks(title="SEDD Protein Studio", delete_cache=(OUTPUT_MAX_AGE_S, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown("# SEDD Protein Studio\nScore-entropy discrete diffusion fills the masked positions "
                    "(`_ ? # X`) of your template; watch the residues appear, then fold the designs.\n\n"
                    + model_summary(cb.model))
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=2):
                        template = checked_by_callback(gr.Textbox(
                            label="Template", lines=5, elem_id="template",
                            placeholder="Residues, with _ ? # or X at the positions to design; [n] for n of them, "
                                        "[3-8] for a span whose length the model chooses, [KR] or [^C] for a position "
                                        "restricted to (or barred from) residues. A FASTA header line, digits and "
                                        "spaces are ignored."))
                        examples_in_page(template, [e["template"] for e in EXAMPLES], [e["label"] for e in EXAMPLES],
                                         "Example templates")
                        with gr.Row():
                            num_samples = integer_in_api(checked_by_callback(gr.Slider(1, lim.max_designs, value=4, step=1,
                                                                                         label="Number of designs")))
                            steps = integer_in_api(checked_by_callback(gr.Slider(lim.min_steps, lim.max_steps, value=128,
                                                                                  step=1, label="Steps")))
                        with gr.Row():
                            temperature = checked_by_callback(gr.Slider(lim.min_temperature, lim.max_temperature, value=1.0,
                                                                    step=0.05, label="Temperature"))
                            seed = seed_box()
                        with gr.Row():
                            exclude = gr.Textbox("", label="Exclude residues", placeholder="e.g. C", max_lines=1,
                                                 elem_id="exclude", info="never placed at a designed position")
                            span_mode = checked_by_callback(gr.Radio(SPAN_MODES, value="sample",
                                                                     label="Span lengths [a-b]", elem_id="span-mode"))
                        with gr.Row():
                            sampler = checked_by_callback(gr.Dropdown(
                                list(studio.STRATEGIES), value="tau-leaping", label="Sampler", elem_id="sampler",
                                info="tau-leaping: the exact process; confidence: most confident positions first; "
                                     "remask: may also send low-confidence residues back to mask"))
                            top_p = checked_by_callback(gr.Slider(lim.min_top_p, 1.0, value=1.0, step=0.01,
                                                                  label="Top-p", info="nucleus sampling; 1 = off"))
                        particles = integer_in_api(checked_by_callback(gr.Slider(
                            1, lim.max_particles, value=1, step=1, label="Particles per design (exact allowed sets)",
                            elem_id="particles",
                            info="only matters with [KR], [^C] or excluded residues: above 1, each design runs that "
                                 "many weighted particles, so the restricted positions condition the whole sequence "
                                 "(exactly as the count grows); costs that many times the network evaluations "
                                 "(tau-leaping, top-p 1)")))
                        fold = checked_by_callback(gr.Radio(list(studio.FOLD_BACKENDS), value=default_fold,
                                                            label="Folding backend"))
                        with gr.Row():
                            run_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                            # Stop presses so far (see cb.stop); checked by the callback (Gradio's own check: a bare 400)
                            stop_epoch = checked_by_callback(gr.Number(0, precision=0, visible=False))
                        generate_refusal = refusal_notice("generate-refusal")
                        with gr.Row():
                            # The API returns the seed as a number (seed_used, hidden); the page shows it as text,
                            # because Gradio's Number shows 0, a real seed, before anything has run.
                            seed_used = gr.Number(value=NO_SEED_YET, precision=0, visible=False, label="Seed used")
                            seed_shown = gr.Textbox(label="Seed used", interactive=False, placeholder="–", max_lines=1,
                                                    elem_id="seed-used")
                            reuse = gr.Button("Reuse this seed", size="sm")
                    with gr.Column(scale=3):
                        status = gr.HTML(label="Status", elem_id="status")
                        frames = gr.HTML(elem_id="frames", label="Denoising")
                        fasta = gr.Textbox(label="FASTA", lines=6, buttons=["copy"], elem_id="fasta")
                heading = gr.Markdown(cb.heading([]), elem_id="designs-heading")
                table = gr.Dataframe(headers=TABLE_HEADERS, datatype=[kind for _, kind, _ in TABLE_COLUMNS],
                                     interactive=False, elem_id="designs", wrap=False, label="Ranked designs",
                                     show_label=False)        # the heading above names it on the page
                # enabled once there is a design to send (a click before raised an error over the Score tab)
                score_design_btn = gr.Button("Score this design (the selected row) in the Score tab", size="sm",
                                             elem_id="score-design", interactive=False)
                with gr.Row():
                    with gr.Column(scale=3):
                        color = gr.Radio(list(COLOR_CHOICES), value="pLDDT", label="Colour the structure by")
                        structure = gr.HTML(NO_STRUCTURE_YET, label="Structure", elem_id="structure")
                    # the title is the figure's own: Gradio's label floated over the plot's top left corner
                    plot = gr.Plot(label="Per-residue pLDDT (designed positions marked)", show_label=False,
                                   elem_id="plddt-plot", scale=2)
                files = gr.File(label="Downloads: FASTA, PDBs, trajectory, settings", file_count="multiple",
                                interactive=False, elem_id="downloads", elem_classes="downloads")
            with gr.Tab("Score", id="score"):
                gr.Markdown("Paste a full sequence (or pick an example, or send a design from the Generate tab) "
                            "to see how family-like the model finds it and what every single substitution would do.")
                with gr.Row():
                    with gr.Column(scale=2):
                        score_input = checked_by_callback(gr.Textbox(
                            label="Sequence", lines=4, elem_id="score-sequence",
                            placeholder="A full protein sequence (one-letter codes); a FASTA header line, digits and "
                                        "spaces are ignored."))
                        examples_in_page(score_input, [e["sequence"] for e in SCORE_EXAMPLES],
                                         [e["label"] for e in SCORE_EXAMPLES], "Example sequences")
                        score_btn = gr.Button("Score", variant="primary", elem_id="score")
                        score_refusal = refusal_notice("score-refusal")
                    with gr.Column(scale=3):
                        score_summary = gr.HTML(elem_id="score-summary")
                        score_files = gr.File(label="Downloads: scan (CSV), scores (JSON)", file_count="multiple",
                                              interactive=False, elem_id="score-downloads", elem_classes="downloads")
                track = gr.Plot(label="Per-residue log-probability", show_label=False, elem_id="score-track")
                heatmap = gr.Plot(label="Single-substitution scan", show_label=False, elem_id="score-heatmap")
                with gr.Row():      # side by side on a wide screen, one above the other on a phone
                    with gr.Column(min_width=320):
                        top = gr.Dataframe(headers=TOP_HEADERS, interactive=False, elem_id="score-top",
                                           label="Top predicted substitutions (highest first; > 0 = the model "
                                                 "prefers the substitution to the wild type)")
                    with gr.Column(min_width=320):
                        with gr.Accordion("Scores as JSON (the API's output)", open=False):
                            score_json = gr.JSON(label="Scores", show_label=False, elem_id="score-json")
                design_sent = gr.State(None)
                designs = gr.State([])
                selected = gr.State(0)

        fn = spaces.GPU(duration=180)(cb.generate) if spaces is not None else cb.generate
        # in generate's order: parameters added later go last, so positional API callers keep their meaning
        inputs = [template, num_samples, steps, seed, temperature, fold, exclude, span_mode, sampler, top_p, stop_epoch,
                  particles]
        stop_index = next(i for i, c in enumerate(inputs) if c is stop_epoch)
        outputs = [fasta, frames, status, seed_used, table, structure, plot, files]       # GENERATE_OUTPUTS[:-1]
        # The browser counts Stop presses; a Generate sends the count at its click, which may come
        # before Gradio sends the run (a click while a run is ending waits for it). See cb.stop.
        demo.load(None, js=STOP_COUNTING_JS, api_name=False)
        demo.load(None, js=SHOW_REFUSAL_JS, api_name=False)
        run_btn.click(None, inputs + [generate_refusal], None, js=snapshot_at_click_js("generate"), queue=False,
                      api_name=False, show_progress="hidden")
        event = run_btn.click(with_notice(with_heading(fn, cb.heading)), inputs + [generate_refusal],
                              outputs + [designs, heading],
                              js=sent_as_at_click_js("generate", f"values.map((v, i) => i === {stop_index} ? "
                                                                 "(window.seddStopsAtGenerate ?? 0) : v)"),
                              api_name=False, concurrency_limit=concurrency, concurrency_id="generate",
                              show_progress="minimal",
                              # A click while the page still holds the previous run (a Stop being
                              # processed) runs once that ends; the default ("once") drops it.
                              trigger_mode="always_last", validator=admit.check_page)
        # The API and MCP endpoint: the same run without the page's State output, which Gradio
        # 6.31 cannot return to an MCP client that asks for no progress ("pop index out of range").
        # One concurrency group for both: --concurrency runs at most, whoever asks.
        gr.Button(visible=False).click(without_last_output(fn), inputs, outputs, api_name="generate",
                                       concurrency_limit=concurrency, concurrency_id="generate",
                                       validator=admit.check)
        # No check of our own for a client that has gone: when its result stream closes, Gradio drops
        # its waiting runs and ends its running one at the next yield (closing the generator), so
        # the sampler, which runs between yields, stops too (tests/test_app_reliability.py).
        # the first design is shown; in the colouring the page has chosen
        event.then(lambda: 0, None, selected, api_name=False) \
            .then(cb.recolor_first, [designs, color], [structure, plot], api_name=False)
        # the API/MCP endpoint returns the entry alone; the page's Score then draws it
        score_fn = spaces.GPU(duration=60)(cb.score) if spaces is not None else cb.score
        score_views = [score_summary, track, heatmap, top, score_files]
        # always_last: a Score clicked while one runs is scored after it (the default dropped the click,
        # and the page showed the first sequence's results under the second); its views likewise are
        # drawn after the ones being drawn (a Score that ended while the last one's were drawn was not
        # drawn at all). Its output is the JSON in a closed accordion: the progress shows on the summary.
        score_events = dict(concurrency_limit=concurrency, concurrency_id="score")
        shown = dict(api_name=False, trigger_mode="always_last")
        score_btn.click(None, [score_input, score_refusal], None, js=snapshot_at_click_js("score"), queue=False,
                        api_name=False, show_progress="hidden")
        score_btn.click(with_notice(score_fn), [score_input, score_refusal], score_json, api_name=False,
                        show_progress_on=[score_summary], js=sent_as_at_click_js("score"),
                        validator=admit.check_score_page, trigger_mode="always_last", **score_events) \
            .success(cb.show_score, [score_json, design_sent, score_input], score_views, **shown)
        gr.Button(visible=False).click(score_fn, score_input, score_json, api_name="score", validator=admit.check_score,
                                       **score_events)
        # The table's clicks run one at a time, in click order (one group, limit 1): a row clicked and
        # then "Score this design" at once sent the row selected before, the two running side by side.
        table_events = dict(api_name=False, concurrency_id="designs-table", concurrency_limit=1)
        score_design_btn.click(cb.send_to_score, [designs, selected], [score_input, design_sent, tabs], **table_events) \
            .success(score_fn, score_input, score_json, api_name=False, show_progress_on=[score_summary]) \
            .success(cb.show_score, [score_json, design_sent, score_input], score_views, **shown)
        designs.change(lambda ranked: gr.Button(interactive=bool(ranked)), designs, score_design_btn, queue=False,
                       show_progress="hidden", api_name=False)
        # Not queued: a Stop must reach the server even when the queue is full.
        stop_btn.click(cb.stop, stop_epoch, status, js="() => window.seddStops", api_name=False, queue=False)
        seed_used.change(None, seed_used, seed_shown, js="(s) => String(s)", api_name=False)
        # A refusal of particles above 1 names the sampler and top-p too: changing either clears it, as
        # editing particles does. The clearing is Gradio's (6.31): when a server event's first message
        # arrives, the page clears the refusal under each of its inputs, so this round trip, which does
        # nothing else, is what clears it (a js-only event would not). Release, not every step of a drag.
        gr.on([sampler.input, top_p.release], lambda *_: None, [particles, sampler, top_p], None, queue=False,
              show_progress="hidden", api_name=False)
        # Likewise the template's refusal of a bracket whose residues are all excluded: Exclude can fix it.
        # The round trip would clear any refusal under the template, so it is queued with a validator
        # (Gradio runs validators only for queued events) that checks the template again with the new
        # exclusion: a refusal that still holds shows again. (.change: a Textbox's .input event did not
        # reach the server when a test typed into it.)
        exclude.change(lambda *_: None, [template, exclude], None, show_progress="hidden", api_name=False,
                       validator=admit.check_template_with_exclude)
        reuse.click(lambda s: s, seed_shown, seed, api_name=False)
        table.select(cb.select, [designs, color], [structure, plot, selected], trigger_mode="always_last",
                     **table_events)
        color.change(cb.recolor, [designs, selected, color], [structure, plot], **table_events)
    admit.demo = demo
    cb.runs_pending = admit.runs_pending
    # a raw call may send only the contract's template, num_samples, steps and seed (or any longer prefix)
    accept_older_calls(demo, inputs, admit.fields[:admit.fields.index("seed") + 1])
    # and a call of score without its one value is refused in the same words, not Gradio's
    accept_older_calls(demo, [score_input], ["sequence"])
    # Gradio's own bound is a backstop above --max-queue: Gradio checks it before any validator, and its
    # refusal marks every output of the page "Error" with the reason only in a toast. Admission refuses
    # first, at --max-queue, in the tab's notice; the room above is for the steps that follow a run.
    return demo.queue(max_size=2 * max_queue, default_concurrency_limit=concurrency)


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
                                                       "(default: $SEDD_CHECKPOINT, else checkpoints/acyp-base on a GPU "
                                                       "when it exists, else checkpoints/acyp)")
    p.add_argument("--esmfold", default=os.environ.get("SEDD_ESMFOLD", ESMFOLD_MODEL),
                   help="ESMFold weights: Hub id or local directory (default: $SEDD_ESMFOLD, else %(default)s)")
    p.add_argument("--fold", choices=studio.FOLD_BACKENDS, default=os.environ.get("SEDD_FOLD"),
                   help="default folding backend (default: ESMFold (local) with a GPU, else off)")
    p.add_argument("--concurrency", type=COUNT, default=2, help="generate requests run at once")
    p.add_argument("--max-queue", type=COUNT, default=32, help="requests waiting at most; more are refused")
    p.add_argument("--max-per-session", type=COUNT, default=4,
                   help="requests (runs and scores) one session (browser tab or API client) may have waiting "
                        "or running")
    a = p.parse_args(argv)
    if a.fold is not None and a.fold not in studio.FOLD_BACKENDS:        # argparse checks only what was typed
        p.error(f"SEDD_FOLD={a.fold!r} is not a folding backend; choose one of "
                f"{', '.join(map(repr, studio.FOLD_BACKENDS))}, or unset it")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        # once, and on the GPU when there is one; unnamed: acyp-base on a GPU when trained, else acyp
        model = ckpt.load(ckpt.default_for_device(device) if a.checkpoint is None else a.checkpoint, device=device)
    except (ValueError, OSError) as e:      # OSError: a file there that cannot be read
        p.error(f"cannot load the score model: {e}")
    default_fold = a.fold or ("ESMFold (local)" if device == "cuda" and model.alphabet.is_protein else "off")
    if default_fold != "off":
        try:
            check_foldable(model.alphabet)
        except ValueError as e:
            p.error(f"--fold {default_fold!r}: {e}")
    cb = StudioCallbacks(model, make_backends(a.esmfold), js_url=js_url_for_3dmol())
    atexit.register(cb.close)                                   # the downloads go with the server
    signal.signal(signal.SIGTERM, exit_on_sigterm)              # a stopped Space exits through atexit
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")      # the one-line refusals
    launch(build_demo(cb, default_fold, a.concurrency, a.max_queue, a.max_per_session))


def exit_on_sigterm(*_) -> None:
    """Exit through ``atexit`` (which removes the downloads); a second SIGTERM while it runs (a
    supervisor repeating itself) is ignored rather than interrupting the clean-up with a traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(0)


def cancel_runs_of_abandoned_mcp_calls() -> None:
    """Make Gradio's MCP server cancel the run behind a tool call its agent gave up on.

    Gradio 6.31 runs a tool call as a job of its own ``gradio_client`` and awaits it, its result in a
    worker thread that a cancellation does not interrupt, and never cancels the job: a call that the
    agent cancelled, timed out or left ran to its end, holding one of the ``--concurrency`` places
    (an agent's 3-second timeout kept the server drawing for 23 s more, with the bundled model). Here a
    cancelled wait cancels the job, which ends a streaming run at its next frame, as an API client's
    cancel does. Gradio's private methods: where they are not what this expects, they are left as
    they are, with a warning."""
    import anyio
    from gradio.mcp import GradioMCPServer

    without_progress = getattr(GradioMCPServer, "_execute_tool_without_progress", None)
    with_progress = getattr(GradioMCPServer, "_execute_tool_with_progress", None)
    if without_progress is None or with_progress is None:
        log.warning("Gradio's MCP server has changed: a tool call its agent gives up on runs to its end")
        return
    if getattr(without_progress, "cancels_its_job", False):
        return

    async def wait(self, job):
        try:
            return [await anyio.to_thread.run_sync(job.result, abandon_on_cancel=True)]
        except anyio.get_cancelled_exc_class():
            job.cancel()
            raise

    async def follow(self, job, progress_token):
        try:
            return await with_progress(self, job, progress_token)
        except anyio.get_cancelled_exc_class():
            job.cancel()
            raise

    wait.cancels_its_job = True
    GradioMCPServer._execute_tool_without_progress = wait
    GradioMCPServer._execute_tool_with_progress = follow


def launch(demo: gr.Blocks, **kwargs):
    """Serve the page and its MCP server (host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT unless given).

    With no port given, Gradio binds the first free port from $GRADIO_SERVER_PORT (else 7860) on
    and moves to the next when binding fails, so servers started side by side never race for one.
    """
    cancel_runs_of_abandoned_mcp_calls()
    return demo.launch(css_paths=[ASSETS / "studio.css"], max_file_size=MAX_UPLOAD, mcp_server=True,
                       state_session_capacity=STATE_SESSIONS, **kwargs)


# ---- start-up for tests and scripts ------------------------------------------------------------------

def serve(demo: gr.Blocks, attempts: int = 3) -> str:
    """Serve ``demo`` from this process on 127.0.0.1 without blocking; returns its URL.

    Gradio gives a new server a few seconds to answer its first request; on a loaded machine it
    can miss that window ("localhost is not accessible"): then close and start again.
    """
    for attempt in range(attempts):
        try:
            launch(demo, server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
            return demo.local_url
        except ValueError as e:
            demo.close()
            if "localhost is not accessible" not in str(e) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


_URL_LINE = re.compile(r"Running on local URL:\s+(http://\S+)")


def spawn(args: list[str], log: Path, env: dict | None = None, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py ARGS`` in a child process; return it and its URL once it serves.

    The child binds its own port (see ``launch``) and prints it; the URL is read from that line,
    so no port is chosen in advance. Everything the child prints goes to ``log``. Raises
    ``RuntimeError`` with the log's end if the child exits or does not serve within ``timeout`` s.
    """
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue = queue.Queue()

    def copy_output() -> None:           # keeps draining the pipe, so the child never blocks on it
        with open(log, "w") as out:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                lines.put(line)
        lines.put(None)

    threading.Thread(target=copy_output, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        match = _URL_LINE.search(line or "")
        if match:
            return proc, match.group(1).rstrip("/") + "/"
        if line is None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"python app.py did not serve within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


if __name__ == "__main__":
    main()
