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
    return next(color for low, color, _ in PLDDT_BANDS if value >= low)


def message_html(text: str, kind: str = "info") -> str:
    """A boxed message (``kind``: info, warn or error); the text is escaped."""
    return f'<div class="studio-msg studio-msg-{esc(kind)}">{esc(text)}</div>'


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
    return "".join(f'<span class="{_STATE_CLASS[s]}">{"A" if s != MASKED else "_"}</span> {_STATE_TITLE[s]} '
                   for s in (FIXED, DESIGNED, NEW, MASKED))


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
            f'<body style="margin:0;overflow:hidden">{view.write_html()}</body></html>')


def structure_html(pdb: str, plddt: list[float], designed: list[bool], title: str, color_by: str = "plddt",
                   js_url: str = CDN_3DMOL, height: int = 440) -> str:
    """The 3D view in a sandboxed ``<iframe srcdoc>``, with a title and a colour legend."""
    page = viewer_page(pdb, plddt, designed, color_by, js_url, height)
    return (f'<div class="structure"><div class="structure-title">{esc(title)}</div>'
            f'<iframe class="structure-view" sandbox="allow-scripts" title="3D structure" '
            f'style="width:100%;height:{height + 10}px;border:0" srcdoc="{esc(page)}"></iframe>'
            f"{legend_structure(color_by)}</div>")


# ---- pLDDT plot ---------------------------------------------------------------------------------

def plddt_figure(plddt: list[float], designed: list[bool]) -> Figure:
    """Per-residue pLDDT on the 50/70/90 bands, designed positions marked along the bottom.

    A bare ``Figure`` (not pyplot), so no global figure registry grows with every request.
    """
    fig = Figure(figsize=(6.4, 3.0), dpi=100)
    ax = fig.add_subplot()
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
    ax.set_xlabel("residue")
    ax.set_ylabel("pLDDT")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    return fig


