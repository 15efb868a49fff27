"""Write a checkpoint's model card (README.md) from its config.json, beside a reference model.

    python benchmarks/model_card.py checkpoints/acyp-base --compare checkpoints/acyp \
        --hardware "one NVIDIA H200" --reproduce "bash benchmarks/gpu_base_model.sh 8"

Every figure comes from the ``training`` and ``evaluation`` blocks that ``sedd.train`` and
``sedd.evaluate --update-config`` wrote, and, where the checkpoint's ``eval/`` folder holds them, from
``motif_rate.json`` (``benchmarks/motif_rate.py``: the motif rate on many samples, beside the reference
model) and ``gpu_check.json`` (``benchmarks/gpu_check.sh``: speed on the GPU it was trained on); nothing
is typed in by hand, so rerunning this after a new evaluation rewrites the card.
``benchmarks/gpu_base_model.sh`` calls it for the GPU model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sedd.checkpoint import (CONFIG_NAME, DEFAULT_CHECKPOINT, GPU_CHECKPOINT, WEIGHTS_NAME,  # noqa: E402
                             atomic_write_text, shown)
from sedd.cli import script  # noqa: E402
from sedd.metrics import MOTIF  # noqa: E402

# (label, where in the evaluation block, format)
ROWS = (
    ("**ELBO, nats/residue** (lower is better)", ("elbo_nats_per_residue",), "{:.3f}"),
    ("infill recovery, 30 % masked, 128 steps", ("infill_recovery",), "{:.3f}"),
    ("{motif} in the samples, 128 steps", ("samples", "motif_rate"), "{:.1%}"),
    ("family-HMM hit rate (E ≤ 1e-5)", ("samples", "family_hmm", "hit_rate"), "{:.1%}"),
    ("HMM bits ratio (samples / held-out naturals)", ("samples", "family_hmm", "bits_ratio"), "{:.3f}"),
    ("median identity to the nearest training sequence", ("samples", "median_nearest_identity"), "{:.3f}"),
    ("mean pairwise identity of the samples", ("samples", "mean_pairwise_identity"), "{:.3f}"),
)


def _get(block: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(block, dict) or key not in block:
            return None
        block = block[key]
    return block


def _cell(block: dict, path: tuple[str, ...], fmt: str) -> str:
    value = _get(block, path)
    return "–" if value is None else fmt.format(value)


def _held_out(train: dict, split: dict) -> str:
    """What the run held out: whole clusters of its --clusters file, or (without one) a random share of the
    sequences, whose near-duplicates in training flatter the figures."""
    count = f"{split.get('held_out_sequences', train['num_val_sequences']):,} sequences"
    if train["clusters"]:
        return f"whole clusters of `{train['clusters']}` ({count})"
    return f"{count} at random, no clusters (near-duplicates of training sequences may flatter the figures)"


def card(directory: Path, compare: Path, hardware: str, reproduce: str) -> str:
    config = json.loads((directory / CONFIG_NAME).read_text())
    ref = json.loads((compare / CONFIG_NAME).read_text())
    train, evaluation = config["training"], config["evaluation"]
    recipe, net = train["config"], config["model"]
    split = evaluation.get("split", {})
    megabytes = (directory / WEIGHTS_NAME).stat().st_size / 1e6
    lines = [
        f"# SEDD ACYP — `{directory.name}`",
        "",
        "A score-entropy discrete diffusion model (absorbing process, log-linear schedule) of the acylphosphatase "
        f"family, preset `{train['preset']}`. This card is written by `benchmarks/model_card.py` from `config.json` "
        "(the `training` block of `sedd.train`, the `evaluation` block of `sedd.evaluate --update-config`); "
        "`eval/report.md` is the full evaluation.",
        "",
        "| | |",
        "|---|---|",
        f"| network | {net['n_layers']} layers, d = {net['d_model']}, {net['n_heads']} heads, {net.get('mlp', 'gelu')} MLP, "
        f"dropout {net['dropout']} — **{train['parameters']:,} parameters**; weights {megabytes:.1f} MB "
        f"({_weights_dtype(directory)}) |",
        f"| data | `{train['data']}`, held out: {_held_out(train, split)}, {train['num_train_sequences']:,} to train |",
        f"| training | {train['steps']:,} steps, {train['tokens_seen'] / 1e6:.1f} M residues, "
        f"{recipe['tokens_per_batch']:,} residues/batch, lr {recipe['lr']:g}, optimizer {recipe['optimizer']}, "
        f"t sampling {recipe['time_sampling']}, {train['wall_seconds'] / 60:.1f} wall-minutes on {train['device']} |",
        f"| hardware | {hardware} |",
        "",
        f"## Evaluation, beside `{compare.name}`",
        "",
        f"Both with `sedd.evaluate` on the same held-out clusters ({_cell(evaluation, ('num_sequences',), '{:,}')} sequences); "
        "the held-out set also chose the shipped step, so the figures may be slightly "
        "optimistic.",
        "",
        f"| | `{compare.name}` | **`{directory.name}`** |",
        "|---|---:|---:|",
    ]
    pattern = _get(evaluation, ("samples", "motif")) or MOTIF     # recorded since evaluate --motif
    motif = f"catalytic motif `{pattern}`" if pattern == MOTIF else f"motif `{pattern}`"
    lines += [f"| {label.format(motif=motif)} | {_cell(ref['evaluation'], path, fmt)} | "
              f"{_cell(evaluation, path, fmt)} |" for label, path, fmt in ROWS]
    lines += _motif_rate(directory / "eval" / "motif_rate.json") + _use(directory)
    lines += _gpu_speed(directory / "eval" / "gpu_check.json")
    if (directory / "loss.png").is_file():
        lines += ["", "![validation ELBO during training](loss.png)"]
    lines += ["", "## Reproduce", "", "```bash", reproduce, "```", ""]
    return "\n".join(lines)


def _use(directory: Path) -> list[str]:
    name = shown(directory.resolve())       # checkpoints/acyp-base, run from the repository's root
    served = directory.resolve() == GPU_CHECKPOINT.resolve()      # this folder, not another of the same name
    default = (" On a GPU the studio serves it when no model is named (`--checkpoint` and `$SEDD_CHECKPOINT` "
               "still choose); on a CPU it serves `checkpoints/acyp`." if served else "")
    return ["", "## Use", "",
            f"`python app.py --checkpoint {name}`, `python -m sedd.sample --checkpoint {name} ...`, "
            f"`python -m sedd.score --checkpoint {name} ...`: the weights are stored as {_weights_dtype(directory)} "
            f"and loaded as float32 on any device.{default}"]


def _motif_rate(path: Path) -> list[str]:
    """The rows of benchmarks/motif_rate.py's JSON: the rate with its error, and the paired difference."""
    if not path.is_file():
        return []
    run = json.loads(path.read_text())
    first = run["rows"][0]["name"]
    lines = ["", f"**The motif on {run['samples']:,} samples per model** (`{path.parent.name}/{path.name}`: "
             f"`benchmarks/motif_rate.py`, seed {run['seed']}, on {run.get('device', 'cpu')}; diffusion models "
             "draw the same lengths and random numbers, so their difference is paired by sample):", "",
             f"| model | sampler | motif rate ± SE | vs `{first}`, paired |", "|---|---|---:|---:|"]
    for row in run["rows"]:
        diff = row.get("vs_first")
        vs = f"{diff['difference']:+.1%} ± {diff['stderr']:.1%}" if diff else "—"
        sampler = row.get("sampler", "τ-leaping, 128 steps")       # runs from before --sampler: τ-leaping
        lines.append(f"| `{row['name']}` | {sampler} | {row['rate']:.1%} ± {row['stderr']:.1%} "
                     f"({row['hits']:,}/{row['samples']:,}) | {vs} |")
    return lines


def _gpu_speed(path: Path) -> list[str]:
    """Training and sampling speed from benchmarks/gpu_check.sh's JSON (random weights of each preset)."""
    if not path.is_file():
        return []
    check = json.loads(path.read_text())
    tests = check["gpu_tests"]
    lines = ["", f"## Speed on {check['gpu']}", "",
             f"From `{path.parent.name}/{path.name}` (`benchmarks/gpu_check.sh`, torch {check['torch']}; its "
             f"{tests['tests']} GPU tests: {tests['tests'] - tests['failures'] - tests['errors'] - tests['skipped']} "
             f"passed, {tests['skipped']} skipped). Training, bf16 autocast:", "",
             "| preset | parameters | residues/batch | residues/s |", "|---|---:|---:|---:|"]
    lines += [f"| {r['preset']} | {r['parameters'] / 1e6:.1f} M | {r['tokens_per_batch']:,} | {r['tokens_per_second']:,.0f} |"
              for r in check["training"]]
    lines += ["", "Sampling, τ-leaping with the cache:", "",
              "| preset | designs × length | steps | network evaluations / design | s / design |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['preset']} | {r['designs']} × {r['length']} | {r['steps']:,} | {r['nfe_per_design']:.1f} | "
              f"{r['seconds_per_design']:.3f} |" for r in check["sampling"]]
    return lines


def _weights_dtype(directory: Path) -> str:
    from safetensors import safe_open
    with safe_open(str(directory / WEIGHTS_NAME), "pt") as f:
        return str(f.get_slice(next(iter(f.keys()))).get_dtype()).lower()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a local checkpoint with 'training' and 'evaluation' blocks")
    p.add_argument("--compare", type=Path, default=DEFAULT_CHECKPOINT,
                   help="the model to set it beside (default: the bundled model)")
    p.add_argument("--hardware", required=True, help="what it was trained on, in words")
    p.add_argument("--reproduce", required=True, help="the command that made it")
    a = p.parse_args(argv)
    for directory in (a.checkpoint, a.compare):
        if not (directory / CONFIG_NAME).is_file():
            p.error(f"{directory} is not a checkpoint directory: it holds no {CONFIG_NAME}")
        config = json.loads((directory / CONFIG_NAME).read_text())
        missing = [k for k in ("training", "evaluation") if k not in config]
        if missing:
            p.error(f"{directory} has no {' or '.join(missing)} block in {CONFIG_NAME}; train it with sedd.train "
                    "and run sedd.evaluate --update-config first")
    atomic_write_text(a.checkpoint / "README.md", card(a.checkpoint, a.compare, a.hardware, a.reproduce))
    print(f"wrote {a.checkpoint / 'README.md'}")


if __name__ == "__main__":
    sys.exit(script(main))
