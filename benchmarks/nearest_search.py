"""How often the evaluation's nearest-reference search finds the true nearest training sequence.

    python benchmarks/nearest_search.py --samples checkpoints/acyp/eval/report_samples.fasta \
        --data data/acyp.fasta --clusters data/acyp_clusters50.tsv --n 8 --json nearest_search.json

``sedd.metrics.NearestReference`` aligns only a few candidate references per sample (the search is
approximate: all ~23,000 alignments for each of 256 samples do not fit a CPU budget). For the first
``--n`` samples this script aligns every training sequence (the split ``sedd.evaluate --clusters``
makes) and reports, per sample, the exhaustive maximum identity, what the evaluation's search finds,
and what the earlier search found (the top 20 references by shared 3-mers alone), both with
today's identity (``sedd.metrics.alignment_identity``).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint as ckpt  # noqa: E402
from sedd.alphabet import PROTEIN  # noqa: E402
from sedd.cli import COUNT, FRACTION, OUTPUT_FILE, SEED, script  # noqa: E402
from sedd.data import read_clusters, read_fasta, split  # noqa: E402
from sedd.metrics import NearestReference, alignment_identity  # noqa: E402

EARLIER_CANDIDATES = 20


def compare(samples: list[str], references: list[str]) -> list[dict]:
    """Per sample: the exhaustive nearest identity, the search's, and the earlier 3-mer-only search's."""
    search = NearestReference(references, PROTEIN.residues)
    earlier = NearestReference(references, PROTEIN.residues, candidates=EARLIER_CANDIDATES)
    rows = []
    for query in tqdm(samples, desc="samples"):
        exhaustive = max(alignment_identity(query, r) for r in tqdm(references, desc="references", leave=False))
        found, _ = search.nearest(query)
        before = max(alignment_identity(query, references[i]) for i in earlier.candidates_for(query))
        rows.append({"exhaustive": exhaustive, "search": found, "earlier_3mer_top20": before})
    return rows


def summary(rows: list[dict]) -> dict:
    n = len(rows)
    return {"samples": n,
            **{f"{k}_found_maximum": sum(abs(r[k] - r["exhaustive"]) < 1e-12 for r in rows)
               for k in ("search", "earlier_3mer_top20")},
            **{f"{k}_mean_shortfall": sum(r["exhaustive"] - r[k] for r in rows) / n
               for k in ("search", "earlier_3mer_top20")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", required=True, help="FASTA of samples (the evaluation's report_samples.fasta)")
    p.add_argument("--data", required=True, help="the full training FASTA")
    p.add_argument("--clusters", required=True, help="cluster<TAB>member TSV, as for training")
    p.add_argument("--val-fraction", type=FRACTION, default=0.05)
    p.add_argument("--split-seed", type=SEED, default=0)
    p.add_argument("--n", type=COUNT, default=8, help="samples to check (the first N; default 8)")
    p.add_argument("--json", type=OUTPUT_FILE, help="write the rows and the summary here")
    a = p.parse_args(argv)
    samples = [PROTEIN.decode(t) for t in read_fasta(a.samples, PROTEIN).tokens[:a.n]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # the split's note about copies it leaves out
        train, _ = split(read_fasta(a.data, PROTEIN, max_len=128), a.val_fraction, a.split_seed,
                         read_clusters(a.clusters))
    rows = compare(samples, [PROTEIN.decode(t) for t in train.tokens])
    result = {"samples_file": a.samples, "references": len(train), "summary": summary(rows), "rows": rows}
    s = result["summary"]
    print(f"of {s['samples']} samples, the search found the exhaustive maximum for {s['search_found_maximum']} "
          f"(mean shortfall {s['search_mean_shortfall']:.4f}); the earlier 3-mer top-{EARLIER_CANDIDATES} for "
          f"{s['earlier_3mer_top20_found_maximum']} ({s['earlier_3mer_top20_mean_shortfall']:.4f})")
    if a.json:
        ckpt.atomic_write_text(a.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
