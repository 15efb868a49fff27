"""Sampler quality vs network evaluations: strategies × step counts, unconditional designs, one table and plot.

    python benchmarks/sampler_quality.py --reference train.fasta --naturals val.fasta \
        --plot assets/sampler_quality.png --out-json assets/sampler_quality.json

Every configuration draws the same ``--num-samples`` templates (lengths from the checkpoint's
histogram, seed ``--seed``) in batches of ``--batch-size`` (batch b uses sampler seed seed + b), and
reports per design: network evaluations (NFE, rows), wall time; and over the designs: family-HMM hit
rate (E ≤ 1e-5) and bits ratio (median bit score / that of ``--naturals``; ``sedd/hmm.py``), catalytic
motif rate, composition KL(reference ‖ designs), mean pairwise identity (a seeded subset of
``--pairs`` pairs; ``sedd/metrics.py``), novelty (share not *identical* to a ``--reference``
sequence: an exact-match check, no alignment search) and repeat rate (share with a single-residue
run ≥ 5). A configuration is ``strategy[:knob=value,...][@steps,...]`` with knobs ``eta``,
``remask_budget``, ``order_noise``, ``top_p`` and ``temperature`` (``sedd.sampler.sample``; unnamed
knobs keep their defaults), e.g. ``remask:eta=2,top_p=0.95@8,16`` (only 8 and 16 steps).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint, hmm
from sedd.cli import COUNT, OUTPUT_FILE, SEED, STEPS, TWO_OR_MORE, script
from sedd.data import read_fasta
from sedd.design import decode_rows
from sedd.metrics import (
    composition_kl,
    evaluation_templates,
    low_complexity,
    mean_pairwise_identity,
    motif_rate,
)
from sedd.report import json_safe
from sedd.sampler import STRATEGIES, run

KNOBS = {"eta": float, "remask_budget": float, "order_noise": float, "top_p": float, "temperature": float}


def parse_config(text: str) -> tuple[str, dict, list[int] | None]:
    """``"remask:eta=2,top_p=0.95@8,16"`` → ("remask", {"eta": 2.0, "top_p": 0.95}, [8, 16]) (no ``@``: None);
    a malformed one raises ValueError, naming it."""
    text, _, only = text.partition("@")
    steps = [int(s) for s in only.split(",") if s.strip().isdigit() and int(s) > 0] if only else None
    if only and len(steps) != len(only.split(",")):
        raise ValueError(f"{text}@{only}: the steps after '@' must be whole numbers above 0, e.g. @8,16")
    strategy, _, rest = text.partition(":")
    if strategy not in STRATEGIES:
        raise ValueError(f"{text}: unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    knobs = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in KNOBS:
            raise ValueError(f"{text}: unknown knob {key!r}; knobs: {', '.join(KNOBS)}")
        try:
            knobs[key] = KNOBS[key](value)
        except ValueError:
            raise ValueError(f"{text}: knob {key} needs a number, got {value!r}") from None
    return strategy, knobs, steps


def draw(model, templates, strategy: str, knobs: dict, steps: int, seed: int, batch_size: int) -> tuple[list[str], int, float]:
    """Designs, total NFE and seconds for one configuration."""
    sequences, nfe, seconds = [], 0, 0.0
    for b in range(0, len(templates), batch_size):
        batch = templates[b:b + batch_size]
        start = time.perf_counter()
        frame = run(model.model, [t.tokens for t in batch], mask_id=model.alphabet.mask_id, steps=steps,
                    seed=seed + b // batch_size, schedule=model.schedule, strategy=strategy, **knobs)
        seconds += time.perf_counter() - start
        nfe += frame.nfe
        sequences += decode_rows(model, frame, [len(t) for t in batch])
    return sequences, nfe, seconds


def score(designs: list[str], family, naturals: list[str], references: list[str], reference_set: set[str],
          residues: str, pairs: int, seed: int) -> dict:
    fam = hmm.family_metrics(family, designs, naturals, seed=seed)
    return {"hmm_hit_rate": fam["hit_rate"], "hmm_bits_ratio": fam["bits_ratio"],
            "shuffled_bits_ratio": fam["shuffled"]["bits_ratio"], "shuffled_hit_rate": fam["shuffled"]["hit_rate"],
            "motif_rate": motif_rate(designs), "composition_kl": composition_kl(references, designs, residues),
            "mean_pairwise_identity": mean_pairwise_identity(designs, max_pairs=pairs, seed=seed)[0],
            "novelty": sum(s not in reference_set for s in designs) / len(designs),
            "repeat_rate": low_complexity(designs)["repeat_rate"]}


def plot(rows: list[dict], natural: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nfe = ("nfe_per_design", "network evaluations per design (labels: steps)")
    identity = ("mean_pairwise_identity", "mean pairwise identity (lower = more diverse)")
    panels = [(nfe, "hmm_bits_ratio", "HMM bits ratio (designs / held-out)"), (nfe, "motif_rate", "catalytic motif rate"),
              (nfe, *identity),
              # the trade-off: how much diversity each way of raising the motif rate costs
              (identity, "motif_rate", "motif rate vs diversity (star: held-out naturals)")]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    colour = {config: plt.get_cmap("tab20")(i % 20) for i, config in enumerate(configs)}
    fig, axes = plt.subplots(1, len(panels), figsize=(19, 4.2), dpi=110)
    for ax, ((x, xlabel), y, title) in zip(axes, panels):
        for config in configs:
            mine = sorted((r for r in rows if r["config"] == config), key=lambda r: r["nfe_per_design"])
            ax.plot([r[x] for r in mine], [r[y] for r in mine], marker="o", color=colour[config], label=config)
            for r in mine:
                ax.annotate(str(r["steps"]), (r[x], r[y]), fontsize=6, alpha=0.6, textcoords="offset points",
                            xytext=(3, 3))
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=9)
        if (x, xlabel) == nfe:
            ax.axhline(natural[y], color="grey", ls=":", lw=1, label="held-out naturals")
            ax.set_xscale("log")
    trade = axes[3]
    trade.plot(natural["mean_pairwise_identity"], natural["motif_rate"], marker="*", ms=12, color="grey", ls="")
    near = [r for r in rows + [natural] if r["motif_rate"] >= 0.7]          # zoomed on the family-like designs
    if near:          # another family, or a weak model, may have none: then the panel shows every point
        xs = [r["mean_pairwise_identity"] for r in near]
        trade.set_xlim(min(xs) - 0.005, max(xs) + 0.008)
        trade.set_ylim(0.7, max(r["motif_rate"] for r in near) + 0.015)
        trade.set_title(f"{trade.get_title()}, motif ≥ 0.7", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    checkpoint.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def table(rows: list[dict], natural: dict) -> str:
    head = ("| sampler | steps | NFE/design | s/design | HMM hit rate | HMM bits ratio | motif rate | comp. KL "
            "| mean pairwise id. | novelty | repeat rate |")
    lines = [head, "|" + "---|" * 2 + "---:|" * 9]
    for r in rows + [natural]:
        cost = ("–", "–") if r["nfe_per_design"] is None else (f"{r['nfe_per_design']:.1f}", f"{r['seconds_per_design']:.3f}")
        lines.append(f"| {r['config']} | {r['steps']} | {cost[0]} | {cost[1]} "
                     f"| {r['hmm_hit_rate']:.3f} | {r['hmm_bits_ratio']:.3f} | {r['motif_rate']:.3f} "
                     f"| {r['composition_kl']:.4f} | {r['mean_pairwise_identity']:.3f} | {r['novelty']:.3f} "
                     f"| {r['repeat_rate']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="checkpoints/acyp")
    p.add_argument("--reference", required=True, help="training FASTA (novelty, composition)")
    p.add_argument("--naturals", required=True, help="held-out FASTA (HMM bits of natural sequences)")
    p.add_argument("--hmm", help="profile HMM (default: family.hmm beside the checkpoint)")
    p.add_argument("--configs", nargs="+", default=list(STRATEGIES), help="strategy[:knob=value,...][@steps,...]")
    p.add_argument("--steps", type=STEPS, nargs="+", default=[8, 16, 32, 64, 128, 1024])
    p.add_argument("--num-samples", type=TWO_OR_MORE, default=256,
                   help="designs per configuration (at least 2: diversity is a mean over pairs)")
    p.add_argument("--batch-size", type=COUNT, default=128)
    p.add_argument("--pairs", type=COUNT, default=1000, help="pairs for the mean pairwise identity")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--threads", type=COUNT)
    p.add_argument("--plot", type=OUTPUT_FILE, help="PNG of quality vs network evaluations")
    p.add_argument("--out-json", type=OUTPUT_FILE, help="write every row as JSON here")
    p.add_argument("--rows", help="skip sampling: table and plot from the rows an earlier run logged (one JSON "
                                  "object per line, as printed on stderr)")
    a = p.parse_args()
    from tqdm.auto import tqdm

    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        configs = [(text, *parse_config(text)) for text in a.configs]
    except ValueError as e:
        p.error(f"argument --configs: {e}")
    model = checkpoint.load(a.checkpoint)
    family = hmm.load(a.hmm or checkpoint.resolve(a.checkpoint) / hmm.HMM_NAME)
    residues = model.alphabet.residues
    references = [model.alphabet.decode(t) for t in read_fasta(a.reference, model.alphabet).tokens]
    naturals = [model.alphabet.decode(t) for t in read_fasta(a.naturals, model.alphabet).tokens]
    reference_set = set(references)
    # sorted by length so that a batch pads little; the same templates for every configuration
    templates = sorted(evaluation_templates(model, a.num_samples, a.seed), key=len)
    print(f"{a.checkpoint}: {a.num_samples} designs per configuration, mean length "
          f"{np.mean([len(t) for t in templates]):.1f}, {torch.get_num_threads()} threads", file=sys.stderr)

    rows = [json.loads(line) for line in Path(a.rows).read_text().splitlines() if line.startswith("{")] if a.rows else []
    grid = [(text, strategy, knobs, s) for text, strategy, knobs, only in configs for s in (only or a.steps)]
    for text, strategy, knobs, steps in tqdm([] if a.rows else grid, desc="configurations"):
        designs, nfe, seconds = draw(model, templates, strategy, knobs, steps, a.seed, a.batch_size)
        rows.append({"config": text, "steps": steps, "nfe_per_design": nfe / len(designs),
                     "seconds_per_design": seconds / len(designs),
                     **score(designs, family, naturals, references, reference_set, residues, a.pairs, a.seed)})
        tqdm.write(json.dumps(rows[-1]), file=sys.stderr)
    sample = [naturals[i] for i in np.random.default_rng(a.seed).choice(len(naturals), min(a.num_samples, len(naturals)),
                                                                         replace=False)]
    natural = {"config": "held-out naturals", "steps": "–",
               "nfe_per_design": None, "seconds_per_design": None,      # not sampled: no cost (JSON null)
               **score(sample, family, naturals, references, reference_set, residues, a.pairs, a.seed)}
    print(table(rows, natural))
    if a.out_json:                # before the plot: the rows are what took the time
        result = {"args": {**vars(a), "reference": Path(a.reference).name, "naturals": Path(a.naturals).name},
                  "rows": rows, "naturals": natural}
        # strict JSON: a value that is not finite (a control with no HMM hit has −inf bits) is null
        checkpoint.atomic_write_text(Path(a.out_json), json.dumps(json_safe(result), indent=1, allow_nan=False))
    if a.plot:
        plot(rows, natural, Path(a.plot))


if __name__ == "__main__":
    sys.exit(script(main))
