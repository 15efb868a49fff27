"""Do the scores mean something? Natural sequences vs shuffled and mutated copies; the scan at the catalytic motif.

    python benchmarks/score_validation.py --data val.fasta [--checkpoint DIR] [--max-seqs 200] [--seed 0] [--json OUT]

There is no ACYP deep-mutational scan to check against, so this asks two questions a working
family model must answer, on held-out sequences (the checkpoint's cluster-held-out validation
split: sequences from clusters it never saw):

1. Separation. For a seeded subset of ``--max-seqs`` natural sequences, two controls per sequence:
   the same residues shuffled (a seeded permutation), and a 10 %-mutated copy (round(0.1 L)
   positions drawn uniformly without replacement, each replaced by one of the 19 other residues
   uniformly). Each sequence is scored by the ELBO per residue (``sedd.likelihood.estimate_elbo``,
   64 stratified times per sequence, the estimator of ``sedd.score``) and by the pseudo-log-
   likelihood per residue (``sedd.score.masked_marginals``). AUROC = P(natural scores better than
   control) over all (natural, control) pairs, ties counted ½ (Mann–Whitney U / n₁n₂, scipy);
   "paired" = share of sequences that beat their own control.
2. Constraint. Over the natural sequences that contain the catalytic motif ``G.VQG[VI].[FY]R``
   (first match), the mean scan score (mean of log p(b) − log p(wild type) over the 19 substitutions
   of a position, only that position masked) at the 9 motif positions vs at every other position,
   pooled over sequences; and per motif position.
Budget: with the bundled 1.8 M-parameter model and 200 sequences, about 10 CPU-minutes on one thread
(600 ELBOs at 64 times each, 600 passes of L masked rows).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint, metrics, score
from sedd.cli import COUNT, OUTPUT_FILE, SEED, script
from sedd.data import Dataset, read_fasta
from sedd.likelihood import estimate_elbo

MOTIF = re.compile(metrics.MOTIF)              # the evaluation's motif, G.VQG[VI].[FY]R
MOTIF_LEN = 9


def shuffled(tokens: list[int], rng: random.Random) -> list[int]:
    out = list(tokens)
    rng.shuffle(out)
    return out


def mutated(tokens: list[int], rng: random.Random, V: int, fraction: float = 0.1) -> list[int]:
    out = list(tokens)
    for i in rng.sample(range(len(out)), max(1, round(fraction * len(out)))):
        out[i] = rng.choice([b for b in range(V) if b != out[i]])
    return out


def elbo_per_residue(model, tokens: list[list[int]], seed: int) -> np.ndarray:
    data = Dataset([str(i) for i in range(len(tokens))], tokens)
    result = estimate_elbo(model.model, data, model.schedule, model.alphabet.mask_id, t_samples=score.FAMILY_T_SAMPLES,
                           seed=seed, progress=True, pad_id=model.alphabet.pad_id)
    return np.array(result["per_sequence"]) / np.array([len(t) for t in tokens])


def auroc(natural: np.ndarray, control: np.ndarray) -> float:
    """P(natural < control) + ½ P(tie), lower = better (Mann–Whitney U of the controls / n₁n₂)."""
    from scipy.stats import mannwhitneyu
    return float(mannwhitneyu(control, natural).statistic / (len(natural) * len(control)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--data", required=True, help="held-out FASTA (the checkpoint's validation split)")
    p.add_argument("--max-seqs", type=COUNT, default=200)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the numbers here")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    model = checkpoint.load(a.checkpoint)
    data = read_fasta(a.data, model.alphabet, max_len=model.max_len)
    rng = random.Random(a.seed)
    chosen = sorted(rng.sample(range(len(data)), min(a.max_seqs, len(data))))
    sets = {"natural": [data.tokens[i] for i in chosen]}
    sets["shuffled"] = [shuffled(t, rng) for t in sets["natural"]]
    sets["10% mutated"] = [mutated(t, rng, model.alphabet.size) for t in sets["natural"]]

    elbo = {name: elbo_per_residue(model, seqs, a.seed) for name, seqs in sets.items()}
    pll, motif_scan, other_scan, per_motif_position, n_motif = {}, [], [], np.zeros(MOTIF_LEN), 0
    for name, seqs in sets.items():
        values = []
        for tokens in tqdm(seqs, desc=f"marginals ({name})", leave=False):
            marginals = score.masked_marginals(model, tokens)
            values.append(-marginals.gather(1, torch.tensor(tokens).view(-1, 1)).mean().item())
            match = MOTIF.search(model.alphabet.decode(tokens)) if name == "natural" else None
            if match:
                row_means = (score.scan_from_marginals(marginals, tokens).sum(1) / (model.alphabet.size - 1)).numpy()
                inside = np.zeros(len(tokens), dtype=bool)
                inside[match.start():match.end()] = True
                motif_scan.extend(row_means[inside])
                other_scan.extend(row_means[~inside])
                per_motif_position += row_means[inside]
                n_motif += 1
        pll[name] = np.array(values)

    result = {"checkpoint": str(model.source), "data": str(a.data), "num_sequences": len(chosen), "seed": a.seed,
              "mean_elbo": {k: float(v.mean()) for k, v in elbo.items()},
              "mean_pll": {k: float(v.mean()) for k, v in pll.items()}, "auroc": {}, "paired": {},
              "motif": {"num_sequences": n_motif,       # none with the motif (another family): null, not 0 or NaN
                        "mean_scan_at_motif": float(np.mean(motif_scan)) if n_motif else None,
                        "mean_scan_elsewhere": float(np.mean(other_scan)) if n_motif else None,
                        "per_position": (per_motif_position / n_motif).round(3).tolist() if n_motif else None}}
    for control in ("shuffled", "10% mutated"):
        for metric, values in (("elbo", elbo), ("pll", pll)):
            result["auroc"][f"{metric} vs {control}"] = auroc(values["natural"], values[control])
            result["paired"][f"{metric} vs {control}"] = float((values["natural"] < values[control]).mean())

    print(f"{len(chosen)} held-out sequences of {a.data}; checkpoint {model.source}\n")
    print("| score | natural | shuffled | 10 % mutated | AUROC vs shuffled | AUROC vs mutated |\n|---|---|---|---|---|---|")
    for metric, values in (("ELBO (nats/res)", elbo), ("PLL (nats/res)", pll)):
        key = "elbo" if metric.startswith("ELBO") else "pll"
        print(f"| {metric} | {values['natural'].mean():.3f} | {values['shuffled'].mean():.3f} | "
              f"{values['10% mutated'].mean():.3f} | {result['auroc'][f'{key} vs shuffled']:.3f} | "
              f"{result['auroc'][f'{key} vs 10% mutated']:.3f} |")
    m = result["motif"]
    if m["num_sequences"]:
        print(f"\nmean scan score (nats, mean over the 19 substitutions of a position), {m['num_sequences']} sequences "
              f"with G.VQG[VI].[FY]R: motif positions {m['mean_scan_at_motif']:.2f}, elsewhere {m['mean_scan_elsewhere']:.2f}")
        print("per motif position (G . V Q G [VI] . [FY] R):", " ".join(f"{v:.2f}" for v in m["per_position"]))
    else:
        print("\nno sequence has the catalytic motif G.VQG[VI].[FY]R: no scan at the motif")
    if a.json:
        checkpoint.atomic_write_text(Path(a.json), json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(script(main))
