"""An autoregressive baseline beside SEDD: same network, data, split, recipe and CPU budget.

    python benchmarks/ar_baseline.py --data acyp.fasta --clusters acyp_clusters50.tsv --out runs/ar \
        [--preset mini] [--cpu-minutes 2] [--recipe baseline|combined] [--checkpoint checkpoints/acyp] [--json result.json]

Two runs of ``sedd.train.Trainer`` with identical settings (``ablate_recipe.SHORT_RUN``: the same
cluster-held-out split, seed, batches, AdamW schedule, EMA, and a budget in CPU seconds of the
training process, one torch thread):

- SEDD: the score network and the diffusion loss, with the ``--recipe`` of ``ablate_recipe.VARIANTS``
  (``baseline``: the ``TrainConfig`` defaults; ``combined``: dropout 0, SwiGLU, importance-sampled
  t, the bundled model's recipe);
- AR: the same network with a causal mask and one more output (END), trained on shifted targets
  (``sedd.autoregressive``: input BOS x_1…x_n, target x_1…x_n END), with the same recipe less the
  time sampling (an AR model has no diffusion time).

Both are then scored on the **whole** validation split with their EMA weights:
SEDD by ``sedd.likelihood.estimate_elbo`` (an upper bound on −log p(residues | length), Monte
Carlo, ``--t-samples`` times per sequence, seed 0) and AR by its exact NLL. Two comparisons are
fair: AR residue terms Σ −log p(x_i | x_<i) vs SEDD's ELBO (the AR model is not told the length,
so this slightly handicaps it), and AR with END, −log p(x, n), vs SEDD's ELBO + −log p(n) from the
training length histogram (``likelihood.length_nll``). With ``--checkpoint`` the bundled model's
ELBO on the same split, same estimator, is printed beside them (trained far longer: a reference,
not an equal budget).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))           # ablate_recipe
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))    # run from a checkout without installing

from ablate_recipe import VARIANTS, run_summary, short_run_config, train_quietly  # noqa: E402
from sedd import checkpoint as ckpt  # noqa: E402
from sedd.cli import COUNT, OUTPUT_FILE, POSITIVE, TWO_OR_MORE, script  # noqa: E402
from sedd.autoregressive import AutoregressiveTrainer, exact_nll  # noqa: E402
from sedd.likelihood import estimate_elbo, length_nll  # noqa: E402
from sedd.model import PRESETS  # noqa: E402
from sedd.train import Trainer  # noqa: E402


def sedd_elbo(net, trainer: Trainer, t_samples: int) -> dict:
    return estimate_elbo(net, trainer.val_set, trainer.schedule, trainer.alphabet.mask_id,
                         pad_id=trainer.alphabet.pad_id, t_samples=t_samples,
                         seed=0, device=trainer.device, progress=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FASTA file")
    p.add_argument("--clusters", help="cluster<TAB>member TSV: validate on whole held-out clusters")
    p.add_argument("--out", required=True, help="directory for the two runs")
    p.add_argument("--preset", default="mini", choices=list(PRESETS))
    p.add_argument("--cpu-minutes", type=POSITIVE, default=2.0, help="training budget of each model, CPU minutes")
    p.add_argument("--t-samples", type=TWO_OR_MORE, default=4, help="times per validation sequence for SEDD's ELBO")
    p.add_argument("--checkpoint", help="also score this SEDD checkpoint (e.g. checkpoints/acyp) on the split")
    p.add_argument("--recipe", choices=("baseline", "combined"), default="baseline",
                   help="training recipe of both models (ablate_recipe.VARIANTS)")
    p.add_argument("--threads", type=COUNT, default=1)
    p.add_argument("--json", type=OUTPUT_FILE, help="write the results here")
    a = p.parse_args(argv)
    bundled = None
    if a.checkpoint:                     # loaded now: a bad path must not cost both trainings and their results
        try:
            bundled = ckpt.load(a.checkpoint)
        except ValueError as e:
            p.error(f"--checkpoint: {e}")
    torch.set_num_threads(a.threads)
    out = Path(a.out)

    recipe = VARIANTS[a.recipe][1]
    ar_recipe = {k: v for k, v in recipe.items() if k != "time_sampling"}
    print(f"SEDD: training for {a.cpu_minutes} CPU minutes", file=sys.stderr)
    torch.manual_seed(0)
    sedd = train_quietly(short_run_config(a.data, a.clusters, out / "sedd", a.preset, a.cpu_minutes, **recipe))
    print(f"AR: training for {a.cpu_minutes} CPU minutes", file=sys.stderr)
    torch.manual_seed(0)
    ar = train_quietly(short_run_config(a.data, a.clusters, out / "ar", a.preset, a.cpu_minutes, **ar_recipe),
                       AutoregressiveTrainer)
    assert [len(t) for t in ar.val_set.tokens] == [len(t) for t in sedd.val_set.tokens], "the two runs split differently"

    length_term = length_nll(sedd.train_set.length_histogram(), sedd.val_set, sedd.model.config.max_len)
    elbo = sedd_elbo(sedd.ema, sedd, a.t_samples)
    nll = exact_nll(ar.ema, ar.val_set)
    result = {
        "preset": a.preset, "cpu_minutes": a.cpu_minutes, "recipe": a.recipe, "threads": torch.get_num_threads(),
        "val_sequences": len(sedd.val_set), "val_residues": sedd.val_set.num_residues(),
        "sedd": {**run_summary(sedd), "elbo_nats_per_residue": elbo["elbo_nats_per_residue"],
                 "elbo_stderr": elbo["elbo_stderr"], "t_samples": a.t_samples,
                 "elbo_plus_length_nats_per_residue": elbo["elbo_nats_per_residue"] + length_term},
        "ar": {**run_summary(ar), "nll_nats_per_residue": nll["nll_nats_per_residue"],
               "nll_with_end_nats_per_residue": nll["nll_with_end_nats_per_residue"]},
        "length_nats_per_residue": length_term,
    }
    if bundled is not None:
        r = estimate_elbo(bundled.model, sedd.val_set, bundled.schedule, bundled.alphabet.mask_id,
                          pad_id=bundled.alphabet.pad_id, t_samples=a.t_samples, seed=0, progress=True)
        result["bundled"] = {"checkpoint": a.checkpoint, "elbo_nats_per_residue": r["elbo_nats_per_residue"],
                             "elbo_stderr": r["elbo_stderr"], "training": bundled.meta.get("training", {}).get("config", {})}
    if a.json:
        ckpt.atomic_write_text(Path(a.json), json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


def table(r: dict) -> str:
    s, ar = r["sedd"], r["ar"]
    lines = [(f"{r['preset']}, recipe {r['recipe']}, {r['cpu_minutes']} CPU minutes each, "
              f"{r['threads']} thread(s); validation split: "
              f"{r['val_sequences']:,} sequences, {r['val_residues']:,} residues"),
             "| model | steps | tokens/CPU-s | nats/residue, residues given the length | with the length / END |",
             "|---|---:|---:|---:|---:|",
             (f"| SEDD (ELBO, an upper bound) | {s['steps']} | {s['tokens_per_cpu_second']:,.0f} | "
              f"{s['elbo_nats_per_residue']:.3f} ± {s['elbo_stderr']:.3f} | {s['elbo_plus_length_nats_per_residue']:.3f} |"),
             (f"| autoregressive (exact NLL) | {ar['steps']} | {ar['tokens_per_cpu_second']:,.0f} | "
              f"{ar['nll_nats_per_residue']:.3f} (not given the length) | {ar['nll_with_end_nats_per_residue']:.3f} |")]
    if "bundled" in r:
        b = r["bundled"]
        lines.append(f"| bundled SEDD `{b['checkpoint']}` ({b['training'].get('minutes', '?')} minutes, "
                     f"reference) | — | — | {b['elbo_nats_per_residue']:.3f} ± {b['elbo_stderr']:.3f} | "
                     f"{b['elbo_nats_per_residue'] + r['length_nats_per_residue']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(script(main))
