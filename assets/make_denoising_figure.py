"""Draw assets/denoising.png: one design's path from all-masked to a protein, for the README.

    python assets/make_denoising_figure.py --checkpoint checkpoints/acyp --seed 3

Rows are moments of the reverse process (t from 1 to 0), columns are positions; grey = still
masked, colour = residue class of the revealed residue, the kept catalytic motif outlined.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint
from sedd.design import Request, stream

CLASSES = {"AVLIMC": ("hydrophobic", "#e9b44c"), "FWY": ("aromatic", "#9b5de5"), "STNQG P": ("polar / small", "#43aa8b"),
           "DE": ("acidic", "#f25f5c"), "KRH": ("basic", "#277da1")}
EXAMPLES = json.loads(Path(__file__).with_name("examples.json").read_text())
TEMPLATE = next(e["template"] for e in EXAMPLES if e["id"] == "motif")   # the catalytic motif kept, all else designed


def colour_of(ch: str) -> str:
    return next(colour for letters, (_, colour) in CLASSES.items() if ch in letters)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--out", default=str(Path(__file__).with_name("denoising.png")))
    a = p.parse_args()
    model = checkpoint.load(a.checkpoint)
    tpl = model.alphabet.parse_template(TEMPLATE, model.max_len)
    frames = list(stream(model, Request([tpl], steps=a.steps, seed=a.seed)))
    shown = [frames[i] for i in np.linspace(0, len(frames) - 1, 9).round().astype(int)]
    L = len(tpl)
    fig, ax = plt.subplots(figsize=(12, 3.6), dpi=130)
    for row, frame in enumerate(shown):
        seq = model.alphabet.decode(frame.tokens[0][:L].tolist())
        for i, ch in enumerate(seq):
            fixed = not tpl.designed[i]
            face = "#d9d9d9" if ch == "_" else colour_of(ch)
            ax.add_patch(plt.Rectangle((i, row), 1, 1, facecolor=face, edgecolor="black" if fixed else "white", lw=0.8 if fixed else 0.3))
            if ch != "_":
                ax.text(i + 0.5, row + 0.5, ch, ha="center", va="center", fontsize=5.2, family="monospace")
    ax.set_xlim(0, L)
    ax.set_ylim(len(shown), 0)
    ax.set_yticks([r + 0.5 for r in range(len(shown))], [f"t = {f.t:.2f}" for f in shown], fontsize=7)
    ax.set_xticks([])
    ax.set_xlabel("position (outlined: the kept catalytic motif GKVQGVFFR; grey: still masked)", fontsize=8)
    ax.set_title("Reverse diffusion: masked positions resolve into residues as t runs from 1 to 0", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, c in CLASSES.values()] + [plt.Rectangle((0, 0), 1, 1, color="#d9d9d9")]
    ax.legend(handles, [n for n, _ in CLASSES.values()] + ["masked"], ncol=6, fontsize=7, loc="upper center",
              bbox_to_anchor=(0.5, -0.08), frameon=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
