"""HTML and figures for the studio: denoising frames, the 3D view, the pLDDT plot and messages.

Gradio does not run scripts inserted into an HTML component, so the 3D view is a complete
py3Dmol page inside ``<iframe srcdoc>`` (sandboxed: scripts run, with no access to the app).
Everything that can hold user text goes through ``html.escape``; the PDB text is reduced to its
coordinate records before it is embedded.
"""
from __future__ import annotations

import html
from pathlib import Path

from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
LOCAL_3DMOL = ROOT / "node_modules" / "3dmol" / "build" / "3Dmol-min.js"   # npm package `3dmol`
CDN_3DMOL = "https://cdn.jsdelivr.net/npm/3dmol@2.5.5/build/3Dmol-min.js"

# AlphaFold's pLDDT colours: (lower bound, colour, legend label), highest band first.
PLDDT_BANDS = [(90.0, "#0053d6", "very high (≥ 90)"), (70.0, "#65cbf3", "confident (70–90)"),
               (50.0, "#ffdb13", "low (50–70)"), (0.0, "#ff7d45", "very low (< 50)")]
DESIGNED_COLOR, FIXED_COLOR = "#e4572e", "#b8c4cc"

# Position states in a frame: fixed by the template, designed and revealed earlier,
# revealed since the previous frame shown, still masked.
FIXED, DESIGNED, NEW, MASKED = "f", "d", "n", "m"
_STATE_CLASS = {FIXED: "res-fixed", DESIGNED: "res-designed", NEW: "res-new", MASKED: "res-masked"}
_STATE_TITLE = {FIXED: "fixed by the template", DESIGNED: "designed", NEW: "just revealed", MASKED: "still masked"}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def error_text(message: str) -> str:
    """A message for ``gr.Error``, which the page renders as HTML: escape markup, keep quotes readable."""
    return html.escape(message, quote=False)


def plural(count: int, noun: str) -> str:
    """``1 design``, ``2 designs``: the count and the noun, in agreement."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def plddt_color(value: float) -> str:
    """The band's colour; a value below 0 or not a number is no confidence: the lowest band (``next`` of
    an empty search raised StopIteration, which a streaming callback turns into a RuntimeError)."""
    return next((color for low, color, _ in PLDDT_BANDS if value >= low), PLDDT_BANDS[-1][1])


def message_html(text: str, kind: str = "info") -> str:
    """A boxed message (``kind``: info, warn or error); the text is escaped."""
    return f'<div class="studio-msg studio-msg-{esc(kind)}">{esc(text)}</div>'


# ---- span lengths ----------------------------------------------------------------------------------

def _probability(p: float) -> str:
    """Two decimals, or two significant digits below 0.1, so that small ones still differ: 0.42, 0.013, 2.1e-05."""
    return f"{p:.2f}" if p >= 0.1 else f"{p:.2g}"


def _error(stderr: float | None) -> str:
    """" ± e", as ``_probability`` writes a probability; nothing where no error was estimated (or it is 0)."""
    return f" ± {_probability(stderr)}" if stderr else ""


def span_posterior_html(top: list[dict], method: str) -> str:
    """The span-length posterior as a small bar chart: one bar per combination, most probable first.

    top: ``[{"lengths": [k, …], "prob": p, "stderr": e}, …]`` (``SpanPosterior.top(with_stderr=True)``;
    without ``stderr``, or None, no error is shown); method: how it was computed. Bars are drawn
    relative to the most probable combination: with several spans every combination may be a percent
    or less, and bars to scale would all be the same sliver.
    """
    most = max((c["prob"] for c in top), default=0.0) or 1.0
    rows = "".join(
        f'<div class="span-row"><span class="span-label">{esc(", ".join(map(str, c["lengths"])))}</span>'
        f'<span class="span-bar" style="width:{max(0.5, 60 * c["prob"] / most):.1f}%"></span>'
        f'<span class="span-prob">{_probability(c["prob"])}{_error(c.get("stderr"))}</span></div>' for c in top)
    errors = "; ± its Monte Carlo error" if any(c.get("stderr") for c in top) else ""
    return (f'<div class="span-posterior"><div class="span-title">Span lengths chosen by the model '
            f'(posterior, {esc(method)}; top {len(top)}{errors})</div>{rows}</div>')


# ---- denoising frames ------------------------------------------------------------------------------

def _row_html(sequence: str, states: str) -> str:
    """One design as runs of same-state residues, so a 1,000-residue frame stays a few KB."""
    parts, start = [], 0
    for i in range(1, len(sequence) + 1):
        if i == len(sequence) or states[i] != states[start]:
            parts.append(f'<span class="{_STATE_CLASS[states[start]]}">{esc(sequence[start:i])}</span>')
            start = i
    return "".join(parts)


def legend_frames() -> str:
    """One sample residue per state and what it means, each kept on one line (a narrow screen wraps between them)."""
    return " ".join(f'<span class="legend-item"><span class="{_STATE_CLASS[s]}">{"A" if s != MASKED else "_"}</span> '
                    f'{_STATE_TITLE[s]}</span>' for s in (FIXED, DESIGNED, NEW, MASKED))


def frame_html(sequences: list[str], states: list[str], step: int, steps: int, nfe: int, note: str = "") -> str:
    """A denoising state: one line per design, with step and network-evaluation counters.

    sequences: one string per design, ``_`` at masked positions; states: one code per position
    (``FIXED``, ``DESIGNED``, ``NEW``, ``MASKED``).
    """
    assert len(sequences) == len(states), "one state string per design"
    per_design = nfe / max(1, len(sequences))
    masked = sum(s.count(MASKED) for s in states)
    header = (f'<div class="frame-counters"><b>step {step} / {steps}</b> · network evaluations {nfe} '
              f'({per_design:.1f} per design) · {plural(masked, "position")} still masked'
              + (f" · {esc(note)}" if note else "") + "</div>")
    rows = "".join(f'<div class="frame-row"><span class="frame-label">{i + 1:>2}</span>'
                   f'<span class="frame-seq">{_row_html(seq, st)}</span></div>'
                   for i, (seq, st) in enumerate(zip(sequences, states)))
    return (f'<div class="frame" data-step="{step}">{header}<div class="frame-rows">{rows}</div>'
            f'<div class="frame-legend">{legend_frames()}</div></div>')


# ---- 3D view ------------------------------------------------------------------------------------

def _clean_pdb(pdb: str) -> str:
    """Only coordinate records: a PDB from a web service must not carry markup into the page."""
    keep = ("ATOM", "HETATM", "TER", "MODEL", "ENDMDL", "END")
    return "\n".join(line for line in pdb.splitlines() if line.startswith(keep) and "<" not in line) + "\n"


def _residue_groups(flags: list[bool]) -> tuple[list[int], list[int]]:
    """1-based residue numbers where ``flags`` is True and where it is False."""
    return ([i + 1 for i, f in enumerate(flags) if f], [i + 1 for i, f in enumerate(flags) if not f])


def legend_structure(color_by: str) -> str:
    if color_by == "designed":
        items = [(DESIGNED_COLOR, "designed positions"), (FIXED_COLOR, "fixed by the template")]
    else:
        items = [(color, label) for _, color, label in PLDDT_BANDS]
    swatches = "".join(f'<span class="legend-item"><span class="swatch" style="background:{c}"></span>{esc(label)}</span>'
                       for c, label in items)
    title = "Colour: designed vs fixed" if color_by == "designed" else "Colour: pLDDT (ESMFold confidence)"
    return f'<div class="structure-legend"><b>{title}</b> {swatches}</div>'


# The 3D view must never be a silent blank box. Two ways it became one: the viewer started while its
# box had no size (the sandboxed iframe not laid out yet; one page load in ten in headless Chromium),
# and no resize notification reached it, so WebGL never started; or the browser has no WebGL at all,
# and 3Dmol.createViewer throws. 3Dmol's resize() starts a renderer that never started: retry it
# until the box has a size, then for five seconds, and if WebGL still fails say so.
_WEBGL_RETRY = """<script>
$3Dmolpromise.then(function () {
  var box = document.getElementById("3dmolviewer_UID"), failures = 0;
  function noWebGL() {
    box.innerHTML = '<p class="no-webgl" style="font:14px sans-serif;padding:1em">This browser could not '
      + 'start WebGL, which the 3D view needs. The structure is in the downloads as a PDB file.</p>';
  }
  (function retry() {
    var viewer = viewer_UID;
    if (!viewer) return noWebGL();                  // createViewer threw
    if (!viewer.renderer.isLost()) return;          // drawn
    try { viewer.resize(); } catch (e) {}           // starts the renderer once the box has a size
    if (!viewer.renderer.isLost()) return;
    if (box.offsetWidth > 0 && ++failures >= 20) return noWebGL();   // a hidden box is not a failure
    setTimeout(retry, 250);
  })();
});
</script>"""


def viewer_page(pdb: str, plddt: list[float], designed: list[bool], color_by: str = "plddt",
                js_url: str = CDN_3DMOL, height: int = 440) -> str:
    """A standalone HTML page with a py3Dmol cartoon coloured by pLDDT band or by designed/fixed."""
    import py3Dmol

    view = py3Dmol.view(width="100%", height=f"{height}px", js=js_url)
    view.addModel(_clean_pdb(pdb), "pdb")
    if color_by == "designed":
        on, off = _residue_groups(designed)
        groups = [(on, DESIGNED_COLOR), (off, FIXED_COLOR)]
    else:
        groups = [([i + 1 for i, p in enumerate(plddt) if plddt_color(p) == color], color)
                  for _, color, _ in PLDDT_BANDS]
    view.setStyle({}, {"cartoon": {"color": FIXED_COLOR}})
    for residues, color in groups:
        if residues:
            view.setStyle({"resi": residues}, {"cartoon": {"color": color}})
    if color_by == "designed" and any(designed):
        view.addStyle({"resi": _residue_groups(designed)[0]}, {"stick": {"color": DESIGNED_COLOR, "radius": 0.15}})
    view.zoomTo()
    return ('<!doctype html><html><head><meta charset="utf-8"></head>'
            f'<body style="margin:0;overflow:hidden">{view.write_html()}'
            f'{_WEBGL_RETRY.replace("UID", str(view.uniqueid))}</body></html>')


def structure_html(pdb: str, plddt: list[float], designed: list[bool], title: str, color_by: str = "plddt",
                   js_url: str = CDN_3DMOL, height: int = 440) -> str:
    """The 3D view in a sandboxed ``<iframe srcdoc>``, with a title and a colour legend."""
    page = viewer_page(pdb, plddt, designed, color_by, js_url, height)
    return (f'<div class="structure"><div class="structure-title">{esc(title)}</div>'
            f'<iframe class="structure-view" sandbox="allow-scripts" title="3D structure" '
            f'style="width:100%;height:{height + 10}px;border:0" srcdoc="{esc(page)}"></iframe>'
            f"{legend_structure(color_by)}</div>")


# ---- plots -----------------------------------------------------------------------------------------

# Margins in inches, so that every per-position plot of one length puts a position at the same x
# (the Score tab's track and heatmap are drawn one above the other, at the same width).
_LEFT_IN, _RIGHT_IN, _TOP_IN, _BOTTOM_IN = 0.85, 1.15, 0.5, 0.85


def _layout(fig: Figure, right_in: float = _RIGHT_IN, top_in: float = _TOP_IN) -> None:
    """Margins in inches; and whole positions on the x axis (a short sequence was ticked at 2.5, 7.5, …)."""
    from matplotlib.ticker import MaxNLocator

    # min_n_ticks=1: with the default 2 a one-residue plot (x from 0.5 to 1.5) fell back to 0.5, 0.6, …
    fig.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=_LEFT_IN / w, right=1 - right_in / w, bottom=_BOTTOM_IN / h, top=1 - top_in / h)


def _legend_below(fig: Figure, ax) -> None:
    """The legend under the axes, left-aligned with them: inside the axes it hid the data it sat on."""
    fig.legend(*ax.get_legend_handles_labels(), loc="lower left", bbox_to_anchor=(ax.get_position().x0, 0.0),
               ncol=3, fontsize=8, frameon=False)


def plddt_figure(plddt: list[float], designed: list[bool]) -> Figure:
    """Per-residue pLDDT on the 50/70/90 bands, designed positions marked along the bottom.

    A bare ``Figure`` (not pyplot), so no global figure registry grows with every request.
    """
    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    ax = fig.add_subplot()
    ax.set_title("Per-residue pLDDT (designed positions marked)", fontsize=10)
    x = list(range(1, len(plddt) + 1))
    uppers = [100.0] + [low for low, _, _ in PLDDT_BANDS[:-1]]
    for (low, color, label), high in zip(PLDDT_BANDS, uppers):
        ax.axhspan(low, high, color=color, alpha=0.15, lw=0)
    ax.plot(x, plddt, color="#1f2d3a", lw=1.2, label="pLDDT")
    on = [i for i, f in zip(x, designed) if f]
    if on:
        ax.scatter(on, [2.0] * len(on), marker="|", s=60, color=DESIGNED_COLOR, label="designed position")
    ax.set_xlim(0.5, len(plddt) + 0.5)
    ax.set_ylim(0, 100)
    ax.set_yticks([0, 50, 70, 90, 100])                  # the band boundaries
    ax.set_xlabel("residue")
    ax.set_ylabel("pLDDT")
    _layout(fig, right_in=0.25, top_in=0.35)
    _legend_below(fig, ax)
    return fig


# ---- scores (Score tab) -----------------------------------------------------------------------------

def score_summary_html(entry: dict, percentile: float | None) -> str:
    """The whole-sequence score, its pseudo-log-likelihood and where it falls among the family. The
    pseudo-log-likelihood is shown as ``sedd.score`` stores it, negated (nats per residue, lower = more
    likely, like the ELBO), and labelled so: a positive "log-likelihood" read as contradicting the log p
    track below it."""
    family = ("The checkpoint stores no score distribution of its validation sequences, so there is no family "
              "percentile." if percentile is None else
              f"More family-like than <b>{percentile:.0f} %</b> of the model's held-out natural sequences "
              "(lower ELBO = more likely).")
    return (f'<div class="score-summary"><div class="score-name">{esc(entry["name"])} · {plural(entry["length"], "residue")}</div>'
            f'<div class="score-main">ELBO <b>{entry["elbo_nats_per_residue"]:.3f} ± {entry["elbo_stderr"]:.3f}</b> '
            f'nats/residue · negative pseudo-log-likelihood {entry["pll_nats_per_residue"]:.3f} nats/residue</div>'
            f'<div class="score-family">{family}</div></div>')


def _mark_designed(ax, designed: list[bool] | None, y: float, label: str = "designed position") -> None:
    on = [i + 1 for i, f in enumerate(designed or []) if f]
    if on:
        ax.scatter(on, [y] * len(on), marker="v", s=18, color=DESIGNED_COLOR, label=label, clip_on=False, zorder=3)


def _track_width(length: int) -> float:
    """Figure width (inches) for a per-position plot: at one width and ``_layout``'s margins, the track
    and the heatmap line up."""
    return min(max(6.0, 0.11 * length + 2.0), 18.0)


def score_track_figure(log_probs: list[float], designed: list[bool] | None = None) -> Figure:
    """log p(x_i | x_{−i}) per position: low = the model finds the residue present surprising there."""
    fig = Figure(figsize=(_track_width(len(log_probs)), 3.1), dpi=100)
    ax = fig.add_subplot()
    ax.set_title("Per-residue log-probability, only that residue masked", fontsize=10)
    x = list(range(1, len(log_probs) + 1))
    ax.bar(x, log_probs, width=1.0, color="#3b6ea5", label="log p(residue | rest)")
    _mark_designed(ax, designed, 0.3)
    ax.axhline(0, color="#1f2d3a", lw=0.6)
    ax.set_xlim(0.5, len(log_probs) + 0.5)
    ax.set_ylim(min(min(log_probs), -1.0) * 1.05, 0.6)
    ax.set_xlabel("position")
    ax.set_ylabel("log p (nats)")
    _layout(fig)
    _legend_below(fig, ax)
    return fig


def scan_heatmap_figure(entry: dict, designed: list[bool] | None = None) -> Figure:
    """The 20 × L scan, log p(b) − log p(wild type): red = predicted harmful, blue = predicted tolerated.

    Wild-type cells (0 by definition) carry a black dot; designed positions a triangle above.
    """
    import numpy as np
    from matplotlib.colors import CenteredNorm

    scores = np.asarray(entry["scan"]["scores"]).T                  # [V, L]
    residues, sequence = entry["scan"]["residues"], entry["sequence"]
    L = len(sequence)
    fig = Figure(figsize=(_track_width(L), 4.6), dpi=100)
    ax = fig.add_subplot()
    ax.set_title("Single-substitution scan: log p(b) − log p(wild type), only that position masked", fontsize=10)
    # one scale for both signs: a gain of 0.01 nats is as pale as a loss of 0.01 (a two-slope scale
    # would paint the largest gain, however small, as deep blue as the worst loss is red)
    norm = CenteredNorm(0.0, halfrange=max(float(np.abs(scores).max()), 1e-3))
    image = ax.imshow(scores, aspect="auto", cmap="RdBu", norm=norm, interpolation="nearest",
                      extent=(0.5, L + 0.5, len(residues) - 0.5, -0.5))
    # a white rim: a bare black dot vanishes on the darkest red
    ax.scatter(range(1, L + 1), [residues.index(c) for c in sequence], s=9, color="black", edgecolors="white",
               linewidths=0.6, label="wild type")
    _mark_designed(ax, designed, -1.3)
    ax.set_yticks(range(len(residues)), list(residues), fontsize=7)
    ax.set_xlabel("position")
    ax.set_ylabel("substitution")
    _layout(fig)
    # the colour bar in the right margin, so the map's axes span the same x as the track's
    w, _ = fig.get_size_inches()
    box = ax.get_position()
    fig.colorbar(image, cax=fig.add_axes((box.x1 + 0.1 / w, box.y0, 0.15 / w, box.height)),
                 label="log p(b) − log p(wt)")
    _legend_below(fig, ax)
    return fig
