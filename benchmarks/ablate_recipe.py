"""Recipe ablation: equal CPU-time budgets, one change at a time, validation ELBO at the end.

    python benchmarks/ablate_recipe.py --data acyp.fasta --clusters acyp_clusters50.tsv --out runs/ablate
    python benchmarks/ablate_recipe.py ... --variants baseline,muon --cpu-minutes 20    # the issue's budget
    python benchmarks/ablate_recipe.py ... --on combined --variants lr-2e-3,small     # a second round

Every variant is the baseline with exactly one change (``VARIANTS``). The baseline is today's
recipe (``TrainConfig`` defaults: AdamW, stratified t, GELU MLP, untied head, dropout 0.1) with
the settings a short run needs, shared by all variants (``SHORT_RUN``): warm-up of 20 steps
instead of 200, batches of 4,096 tokens instead of 8,192 (twice the steps), no validation or
checkpoint during the run. All variants use the same cluster-held-out split (``--clusters``, seed 0,
5 %), the same seed, and the same budget in **CPU seconds of the training process**
(``TrainConfig(clock="cpu")``, one torch thread): on a machine shared with other work a wall-clock
budget would hand whichever variant ran at a quiet moment more compute. ``torch.compile``'s
inductor is told to compile in this process (``compile_threads = 1``) so compilation is charged
to that variant's budget.

With ``--on NAME`` every variant is instead NAME's recipe with that variant's change added (a second
round on top of the first round's winner), named ``NAME+variant`` and compared with NAME's own row
(NAME itself is trained first unless ``OUT/ablation.json`` holds it at the same budget and preset).

At the end of each run the raw and EMA weights are scored with ``sedd.likelihood.estimate_elbo``
on one fixed random subset of the validation split (``--val-seqs`` sequences, ``--t-samples``
times each, seed 0). Every variant sees the same sequences, times and masks (common random
numbers), so differences between rows are more precise than each row's standard error suggests.
tokens/CPU-s = residues trained on / CPU seconds of training. Results are appended to
``OUT/ablation.json`` after each variant (a rerun skips variants already there), and the table is
printed as Markdown and drawn to ``OUT/ablation.png``.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint as ckpt  # noqa: E402
from sedd.cli import COUNT, POSITIVE, TWO_OR_MORE, script  # noqa: E402
from sedd.data import Dataset  # noqa: E402
from sedd.likelihood import estimate_elbo  # noqa: E402
from sedd.model import PRESETS  # noqa: E402
from sedd.train import Trainer, TrainConfig  # noqa: E402

SHORT_RUN = dict(warmup_steps=20, tokens_per_batch=4096, eval_every=10**9, patience=0, eval_max_seqs=32,
                 checkpoint_minutes=10**6, clock="cpu", seed=0)

# name → (what changed, TrainConfig overrides); model options go through model_overrides
VARIANTS: dict[str, tuple[str, dict]] = {
    "baseline": ("today's recipe (AdamW, lr 1e-3, GELU, dropout 0.1, stratified t)", {}),
    "muon": ("Muon for the block matrices, AdamW for the rest", {"optimizer": "muon"}),
    "lr-2e-3": ("learning rate 2e-3", {"lr": 2e-3}),
    "lr-5e-4": ("learning rate 5e-4", {"lr": 5e-4}),
    "warmup-60": ("warm-up 60 steps instead of 20", {"warmup_steps": 60}),
    "swiglu": ("SwiGLU MLP (same parameters)", {"model_overrides": {"mlp": "swiglu"}}),
    "tied": ("tied input/output embeddings", {"model_overrides": {"tie_embeddings": True}}),
    "dropout-0": ("dropout 0", {"dropout": 0.0}),
    "antithetic": ("antithetic t pairs (each sequence at t and 1+ε−t)", {"time_sampling": "antithetic"}),
    "importance": ("importance-sampled t (loss-aware, p/q weights)", {"time_sampling": "importance"}),
    "compile": ("torch.compile of the network (inductor, CPU)", {"compile": True}),
    "wide-shallow": ("width 256 × 2 layers (1.6 M parameters)",
                     {"model_overrides": {"d_model": 256, "n_layers": 2, "n_heads": 8, "d_ff": 1024}}),
    "narrow-deep": ("width 128 × 8 layers (1.6 M parameters)",
                    {"model_overrides": {"d_model": 128, "n_layers": 8, "n_heads": 4, "d_ff": 512}}),
    "batch-2048": ("batches of 2,048 tokens", {"tokens_per_batch": 2048}),
    "batch-8192": ("batches of 8,192 tokens (the full runs' size)", {"tokens_per_batch": 8192}),
    "small": ("the small preset's width: d = 256, 8 heads, FFN 1024 (≈ 3.2 M parameters)",
              {"model_overrides": {"d_model": 256, "n_heads": 8, "d_ff": 1024}}),
    "combined": ("dropout 0 + SwiGLU + importance-sampled t (the three leading single changes)",
                 {"dropout": 0.0, "time_sampling": "importance", "model_overrides": {"mlp": "swiglu"}}),
}


def stacked(*changes: dict) -> dict:
    """TrainConfig overrides applied one after the other; ``model_overrides`` are merged key by key."""
    out: dict = {}
    for change in changes:
        for field, value in change.items():
            out[field] = {**out.get(field, {}), **value} if field == "model_overrides" else value
    return out


def short_run_config(data: str, clusters: str | None, out: Path, preset: str, cpu_minutes: float, **change) -> TrainConfig:
    """The shared short-run settings plus one change."""
    return TrainConfig(data=data, clusters=clusters, out=str(out), preset=preset, minutes=cpu_minutes,
                       device="cpu", **{**SHORT_RUN, **change})


def validation_subset(val: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A fixed random subset of ``n`` validation sequences (all of them when ``n`` is None)."""
    if n is None or n >= len(val):
        return val
    return val.subset(sorted(random.Random(seed).sample(range(len(val)), n)))


def train_quietly(cfg: TrainConfig, trainer_class=Trainer) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # the by-sequence split warning without --clusters
        trainer = trainer_class(cfg)
    trainer.run()
    return trainer


def run_summary(trainer: Trainer) -> dict:
    """Size, steps and speed of a finished short run (tokens/CPU-s: residues trained on per CPU second)."""
    return {"parameters": trainer.model.num_parameters(), "steps": trainer.step, "tokens": trainer.tokens_seen,
            "cpu_seconds": trainer.seconds, "tokens_per_cpu_second": trainer.tokens_seen / max(trainer.seconds, 1e-9)}


def score(trainer: Trainer, subset: Dataset, t_samples: int) -> dict:
    """ELBO of the raw and EMA weights on ``subset`` (same times and masks for every variant)."""
    out = {}
    for name, net in (("raw", trainer.model), ("ema", trainer.ema)):
        r = estimate_elbo(net, subset, trainer.schedule, trainer.alphabet.mask_id, pad_id=trainer.alphabet.pad_id,
                          t_samples=t_samples, seed=0, device=trainer.device)
        out[f"elbo_{name}"], out[f"elbo_{name}_stderr"] = r["elbo_nats_per_residue"], r["elbo_stderr"]
    return out


def row_name(name: str, on: str | None) -> str:
    """The variant's name in the results: ``on+name`` in a second round (``on`` itself stays ``on``)."""
    return name if on in (None, name) else f"{on}+{name}"


def run_variant(name: str, a: argparse.Namespace) -> dict:
    change, overrides = VARIANTS[name]
    if a.on and name != a.on:
        change, overrides = f"{VARIANTS[a.on][0]}, then {change}", stacked(VARIANTS[a.on][1], overrides)
    name = row_name(name, a.on)
    cfg = short_run_config(a.data, a.clusters, Path(a.out) / name, a.preset, a.cpu_minutes, **overrides)
    torch.manual_seed(0)
    trainer = train_quietly(cfg)
    subset = validation_subset(trainer.val_set, a.val_seqs)
    return {"variant": name, "change": change, "overrides": overrides, "preset": a.preset, "cpu_minutes_budget": a.cpu_minutes,
            **run_summary(trainer), "val_sequences": len(subset), "val_residues": subset.num_residues(), "t_samples": a.t_samples,
            **score(trainer, subset, a.t_samples)}


def table(rows: list[dict], reference: str = "baseline") -> str:
    base = next((r for r in rows if r["variant"] == reference), None)
    head = (f"| change | parameters | steps | tokens/CPU-s | val ELBO, EMA | val ELBO, raw | EMA vs {reference} |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    body = []
    for r in rows:
        delta = f"{r['elbo_ema'] - base['elbo_ema']:+.3f}" if base and r is not base else "—"
        _, plus, name = r["variant"].partition("+")
        change = f"+ {VARIANTS[name][0]}" if plus and name in VARIANTS else r["change"]   # a second round: its one change
        body.append(f"| {change} | {r['parameters'] / 1e6:.2f} M | {r['steps']} | {r['tokens_per_cpu_second']:,.0f} | "
                    f"{r['elbo_ema']:.3f} ± {r['elbo_ema_stderr']:.3f} | {r['elbo_raw']:.3f} | {delta} |")
    return "\n".join([head, *body])


def plot(rows: list[dict], path: Path, reference: str = "baseline") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2), dpi=110)
    y = range(len(rows))
    ax.errorbar([r["elbo_ema"] for r in rows], list(y), xerr=[2 * r["elbo_ema_stderr"] for r in rows], fmt="o", ms=4,
                capsize=3)
    base = next((r for r in rows if r["variant"] == reference), None)
    if base:
        ax.axvline(base["elbo_ema"], color="grey", ls="--", lw=0.8, label=reference)
        ax.legend(fontsize=8)
    ax.set_yticks(list(y), [r["variant"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("validation ELBO after the budget, EMA weights (nats/residue, ±2 SE; lower is better)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    ckpt.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FASTA file")
    p.add_argument("--clusters", help="cluster<TAB>member TSV: validate on whole held-out clusters")
    p.add_argument("--out", required=True, help="directory for the runs and ablation.json")
    p.add_argument("--preset", default="mini", choices=list(PRESETS))
    p.add_argument("--cpu-minutes", type=POSITIVE, default=3.0, help="training budget of each variant, CPU minutes")
    p.add_argument("--variants", default="all", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--on", help="a second round: every variant on top of this variant's recipe, compared with it")
    p.add_argument("--val-seqs", type=COUNT, default=384, help="validation sequences scored (a fixed random subset)")
    p.add_argument("--t-samples", type=TWO_OR_MORE, default=4, help="times per validation sequence")
    p.add_argument("--threads", type=COUNT, default=1, help="torch threads (1 makes CPU seconds = compute)")
    a = p.parse_args(argv)
    names = list(VARIANTS) if a.variants == "all" else [v.strip() for v in a.variants.split(",")]
    unknown = [n for n in [*names, *([a.on] if a.on else [])] if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if a.on and a.on not in names:       # its own row is what the round is compared with (run unless saved)
        names.insert(0, a.on)
    torch.set_num_threads(a.threads)
    import torch._inductor.config as inductor_config
    inductor_config.compile_threads = 1               # compile in this process: its CPU time counts
    results_path = Path(a.out) / "ablation.json"

    def saved() -> list[dict]:   # read afresh each time: another process may be running other variants into OUT
        return json.loads(results_path.read_text()) if results_path.is_file() else []

    for name in names:
        if any(r["variant"] == row_name(name, a.on) and r["cpu_minutes_budget"] == a.cpu_minutes and r["preset"] == a.preset
               for r in saved()):
            print(f"{row_name(name, a.on)}: already in {results_path}, skipped", file=sys.stderr)
            continue
        print(f"{row_name(name, a.on)}: training for {a.cpu_minutes} CPU minutes", file=sys.stderr)
        row = run_variant(name, a)
        ckpt.atomic_write_text(results_path, json.dumps([r for r in saved() if r["variant"] != row["variant"]] + [row],
                                                        indent=1) + "\n")
    rows = [r for n in names for r in saved() if r["variant"] == row_name(n, a.on)]
    reference = a.on or "baseline"
    plot(rows, Path(a.out) / ("ablation.png" if a.on is None else f"ablation-on-{a.on}.png"), reference)
    print(f"{a.preset}, {a.cpu_minutes} CPU minutes each, {torch.get_num_threads()} thread(s); validation: "
          f"{rows[0]['val_sequences']} sequences ({rows[0]['val_residues']:,} residues), {a.t_samples} times each")
    print(table(rows, reference))
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
