"""Sampler speed: network evaluations and wall time per sample, cached vs ``no_cache``, side by side.

    python benchmarks/sampler.py                      # small preset, random weights
    python benchmarks/sampler.py --checkpoint checkpoints/acyp --steps 1024
    python benchmarks/sampler.py --sampler remask --steps 16    # any strategy of sedd.sampler

Both variants run on the same templates with the same seed, interleaved, so machine noise hits
both alike; the table reports the median of ``--repeats`` runs. Random weights are fine for NFE and
time: the unmasking schedule does not depend on the weights, only the residues drawn do.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint
from sedd.alphabet import PROTEIN
from sedd.cli import COUNT, OUTPUT_FILE, STEPS, script
from sedd.model import PRESETS, ScoreNetwork, preset
from sedd.sampler import STRATEGIES, run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="use a trained checkpoint instead of a random `--preset` model")
    p.add_argument("--preset", default="small", choices=list(PRESETS))
    p.add_argument("--steps", type=STEPS, default=1024)
    p.add_argument("--batch-sizes", type=COUNT, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=COUNT, default=3)
    p.add_argument("--sampler", default="tau-leaping", choices=STRATEGIES)
    p.add_argument("--threads", type=COUNT, default=None)
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the rows, with the run's settings, to this JSON file")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.checkpoint:
        model = checkpoint.load(a.checkpoint).model
    else:
        torch.manual_seed(0)
        model = ScoreNetwork(preset(a.preset, vocab_size=PROTEIN.size)).eval()
    print(f"model: {a.checkpoint or a.preset} ({model.num_parameters() / 1e6:.2f} M parameters), "
          f"{a.steps} steps, sampler {a.sampler}, {torch.get_num_threads()} threads")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for batch in a.batch_sizes:
        lengths = torch.randint(100, 128, (batch,), generator=gen).tolist()
        templates = [[PROTEIN.mask_id] * n for n in lengths]
        results = {True: [], False: []}
        for r in range(a.repeats):
            for cached in (True, False):
                start = time.perf_counter()
                frame = run(model, templates, mask_id=PROTEIN.mask_id, steps=a.steps, seed=r, use_cache=cached,
                            strategy=a.sampler)
                results[cached].append((frame.nfe / batch, time.perf_counter() - start))
        nfe = {c: statistics.median(x[0] for x in results[c]) for c in results}
        sec = {c: statistics.median(x[1] for x in results[c]) for c in results}
        rows.append((batch, sum(lengths) / batch, nfe[True], nfe[False], sec[True] / batch, sec[False] / batch))

    print("\n| batch | mean length | NFE/sample cached | NFE/sample no_cache | NFE ratio "
          "| s/sample cached | s/sample no_cache | time ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b, n, nc, nu, sc, su in rows:
        print(f"| {b} | {n:.0f} | {nc:.1f} | {nu:.0f} | {nu / nc:.1f}× | {sc:.3f} | {su:.3f} | {su / sc:.1f}× |")
    if a.json:
        keys = ("batch", "mean_length", "nfe_per_sample_cached", "nfe_per_sample_no_cache",
                "seconds_per_sample_cached", "seconds_per_sample_no_cache")
        result = {"model": a.checkpoint or a.preset, "steps": a.steps, "sampler": a.sampler, "repeats": a.repeats,
                  "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
                  "rows": [dict(zip(keys, row)) for row in rows]}
        checkpoint.atomic_write_text(Path(a.json), json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(script(main))
