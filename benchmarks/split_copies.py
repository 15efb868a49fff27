"""Held-out sequences that a checkpoint's training split also held verbatim, and what they did to its ELBO.

    python benchmarks/split_copies.py --checkpoint checkpoints/acyp --json checkpoints/acyp/eval/split_copies.json

``sedd.data.split`` holds out whole clusters, but the same sequence can sit in two clusters under
two ids; until the split left such copies out of training, a held-out sequence could be trained on
verbatim. This script rebuilds the checkpoint's split from its own ``config.json`` (data, clusters,
validation fraction, seed, maximum length), finds the held-out sequences with a copy outside the
held-out clusters (the ones the old rule trained on), estimates their ELBO under the checkpoint,
and reports the held-out ELBO the evaluation would have given without them, from the checkpoint's
stored whole-set figure:

    ELBO without copies = (ELBO_all · R − ELBO_copies · r) / (R − r),

R and r the residues of the whole held-out set and of the copies. Run it from the checkout root,
where the paths in ``config.json`` point (``data`` a link to the data folder).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint as ckpt  # noqa: E402
from sedd.cli import OUTPUT_FILE, POSITIVE, script  # noqa: E402
from sedd.data import Dataset, read_clusters, read_fasta, split  # noqa: E402
from sedd.likelihood import elbo_to_precision  # noqa: E402


def held_out_copies(data: Dataset, val: Dataset) -> list[tuple[str, str]]:
    """(held-out id, id of a copy outside the held-out set) for each held-out sequence that has one."""
    held = set(val.ids)
    outside = {tuple(t): i for i, t in zip(data.ids, data.tokens) if i not in held}
    return [(i, outside[tuple(t)]) for i, t in zip(val.ids, val.tokens) if tuple(t) in outside]


def elbo_without(elbo_all: float, residues_all: int, elbo_part: float, residues_part: int) -> float:
    """The per-residue ELBO of a set without one part of it, from the set's and the part's."""
    return (elbo_all * residues_all - elbo_part * residues_part) / (residues_all - residues_part)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(ckpt.DEFAULT_CHECKPOINT))
    p.add_argument("--stderr", type=POSITIVE, default=0.01, help="target standard error of the copies' ELBO")
    p.add_argument("--json", type=OUTPUT_FILE, help="write the figures here")
    a = p.parse_args(argv)
    model = ckpt.load(a.checkpoint)
    missing = [block for block in ("training", "evaluation") if block not in model.meta]
    if missing:                           # before the split and the ELBO: the figures are relative to these
        p.error(f"{a.checkpoint}/config.json has no {' or '.join(missing)} block: this compares the held-out "
                "ELBO that `python -m sedd.evaluate --update-config` stored with the training split's copies")
    cfg = model.meta["training"]["config"]
    data = read_fasta(cfg["data"], model.alphabet, max_len=cfg["max_len"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # the split's own note about the copies
        _, val = split(data, cfg["val_fraction"], cfg["seed"], read_clusters(cfg["clusters"]))
    pairs = held_out_copies(data, val)
    index = {i: k for k, i in enumerate(val.ids)}
    copies = val.subset([index[i] for i, _ in pairs])
    stored = model.meta["evaluation"]
    result = {"checkpoint": a.checkpoint, "held_out_sequences": len(val), "held_out_residues": val.num_residues(),
              "copies": len(copies), "copy_residues": copies.num_residues() if pairs else 0,
              "pairs": [{"held_out": i, "training_copy": j} for i, j in pairs],
              "elbo_all_stored": stored["elbo_nats_per_residue"]}
    if pairs:
        est = elbo_to_precision(model.model, copies, model.schedule, model.alphabet.mask_id,
                                target_stderr=a.stderr, seed=0)
        elbo = est["elbo_nats_per_residue"]
        result.update(elbo_copies=elbo, elbo_copies_stderr=est["elbo_stderr"],
                      elbo_without_copies=elbo_without(result["elbo_all_stored"], result["held_out_residues"],
                                                       elbo, result["copy_residues"]))
    print(f"{len(copies)} of {len(val)} held-out sequences ({result['copy_residues']:,} of "
          f"{result['held_out_residues']:,} residues) have a verbatim copy the old split trained on")
    if pairs:
        print(f"their ELBO {result['elbo_copies']:.3f} ± {result['elbo_copies_stderr']:.3f} nats/residue; held-out ELBO "
              f"{result['elbo_all_stored']:.4f} with them (stored), {result['elbo_without_copies']:.4f} without")
    if a.json:
        ckpt.atomic_write_text(a.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
