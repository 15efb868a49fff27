"""Validation ELBO against training step for finished runs, side by side, as a table and a plot.

    python benchmarks/learning_curves.py mini=runs/acyp-mini2 small=runs/acyp-small150 \\
        --png assets/learning_curves.png --json checkpoints/acyp/eval/learning_curves.json

Each RUN is a ``sedd.train`` output folder: ``history.json`` holds the validation probe ELBO (EMA
and raw weights, the first 512 held-out sequences) every ``eval_every`` steps, ``config.json`` the
run's summary (preset, parameters, steps, residues seen, wall time). Comparing runs at equal steps
separates what a change does per residue of training from what it costs per second: with the same
residues per step (``--tokens-per-batch``), a step is the same amount of data for every run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint as ckpt  # noqa: E402
from sedd.cli import COUNT, OUTPUT_FILE, script  # noqa: E402


def load_run(label: str, folder: str | Path) -> dict:
    """The run's summary and its validation curve (step → EMA and raw probe ELBO)."""
    folder = Path(folder)
    try:
        history = json.loads((folder / "history.json").read_text())
        training = json.loads((folder / "config.json").read_text())["training"]
    except (OSError, KeyError, ValueError) as e:
        raise SystemExit(f"learning_curves: {folder} is not a finished sedd.train run ({e})")
    curve = {row["step"]: {"ema": row["val_elbo_ema"], "raw": row["val_elbo_raw"]}
             for row in history if "val_elbo_ema" in row}
    if not curve:
        raise SystemExit(f"learning_curves: {folder}/history.json has no validation points")
    return {"label": label, "folder": str(folder), "preset": training["preset"],
            "parameters": training["parameters"], "steps": training["steps"],
            "residues_seen": training["tokens_seen"], "wall_minutes": training["wall_seconds"] / 60,
            "tokens_per_batch": training["config"]["tokens_per_batch"], "curve": curve}


def shared_steps(runs: list[dict], every: int) -> list[int]:
    """Steps every run was validated at: multiples of ``every``, and the last step they all reached."""
    common = sorted(set.intersection(*(set(r["curve"]) for r in runs)))
    picked = [s for s in common if s % every == 0]
    return picked + common[-1:] if common and common[-1] not in picked else picked


def table(runs: list[dict], steps: list[int]) -> str:
    head = ["run", "preset", "parameters", "wall min", "steps", "residues seen", "residues/s"]
    head += [f"step {s:,}" for s in steps] + ["last step"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in runs:
        last = max(r["curve"])
        cells = [r["label"], r["preset"], f"{r['parameters'] / 1e6:.2f} M", f"{r['wall_minutes']:.0f}",
                 f"{r['steps']:,}", f"{r['residues_seen'] / 1e6:.1f} M",
                 f"{r['residues_seen'] / (r['wall_minutes'] * 60):,.0f}"]
        cells += [f"{r['curve'][s]['ema']:.3f}" for s in steps] + [f"{r['curve'][last]['ema']:.3f} ({last:,})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in runs:
        steps = sorted(r["curve"])
        ax.plot(steps, [r["curve"][s]["ema"] for s in steps], marker=".", markersize=3,
                label=f"{r['label']} ({r['parameters'] / 1e6:.1f} M, {r['wall_minutes']:.0f} min)")
    ax.set_xlabel("training step (same residues per step)")
    ax.set_ylabel("validation probe ELBO, EMA (nats/residue)")
    lows = [min(p["ema"] for p in r["curve"].values()) for r in runs]
    ax.set_ylim(min(lows) - 0.02, min(lows) + 0.35)        # the early steps are far above; show where runs differ
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    ckpt.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN", help="a label and a sedd.train output folder")
    p.add_argument("--every", type=COUNT, default=1000, help="table columns at multiples of this step")
    p.add_argument("--png", type=OUTPUT_FILE, help="write the plot here")
    p.add_argument("--json", type=OUTPUT_FILE, help="write the runs' summaries and curves here")
    a = p.parse_args(argv)
    pairs = [spec.partition("=") for spec in a.runs]
    if any(not sep or not label or not folder for label, sep, folder in pairs):
        p.error("each run is LABEL=FOLDER, e.g. mini=runs/acyp-mini2")
    runs = [load_run(label, folder) for label, _, folder in pairs]
    if len({r["tokens_per_batch"] for r in runs}) > 1:
        print("learning_curves: the runs differ in --tokens-per-batch, so a step is not the same data for all",
              file=sys.stderr)
    print(table(runs, shared_steps(runs, a.every)))
    if a.png:
        plot(runs, Path(a.png))
    if a.json:
        ckpt.atomic_write_text(Path(a.json), json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
