"""Sample designs from the command line: ``python -m sedd.sample``.

    python -m sedd.sample --template "MKV__GF_R____" --num-samples 4 --seed 1
    python -m sedd.sample --length auto --num-samples 8 --json
    python -m sedd.sample --length auto --num-samples 8 --steps 16 --sampler remask --top-p 0.95

FASTA on stdout, a progress bar on stderr. ``--json`` prints one object with the sequences, the
network evaluations per sample, the wall time, the steps, the seed, the sampler, top-p and the checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import torch

from . import checkpoint as ckpt
from .design import Request, decode_rows, stream, templates_for, to_fasta
from .sampler import STRATEGIES, last_frame


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sedd.sample", description="Design sequences with a SEDD model.")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory or Hugging Face Hub repo id "
                                                       "(default: $SEDD_CHECKPOINT, else the bundled ACYP model)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--template", help="residues with designed positions marked _ ? # or X")
    what.add_argument("--length", help="N residues, all designed, or 'auto' to draw lengths from the training data")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None, help="default: a random seed, printed with --json")
    p.add_argument("--sampler", default="tau-leaping", choices=STRATEGIES,
                   help="which masked positions to reveal each step (default: tau-leaping, the exact process)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: keep the most probable residues "
                                                            "up to this mass (default 1 = off)")
    p.add_argument("--no-cache", action="store_true", help="evaluate the network at every step (speed reference)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of FASTA")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
    try:
        if a.length is not None and a.length != "auto" and not a.length.isdigit():
            raise ValueError(f"--length takes a positive integer or 'auto', got {a.length!r}")
        model = ckpt.load(a.checkpoint, device=a.device)
        templates = templates_for(model, template=a.template, length=a.length, num_samples=a.num_samples, seed=seed)
        for notice in templates[0].notices:
            print(f"note: {notice}", file=sys.stderr)
        request = Request(templates, a.steps, a.temperature, seed, use_cache=not a.no_cache, sampler=a.sampler,
                          top_p=a.top_p)
        from tqdm.auto import tqdm
        start = time.perf_counter()
        frame = last_frame(tqdm(stream(model, request), total=a.steps + 1, desc="denoising", file=sys.stderr,
                                leave=False))
        seconds = time.perf_counter() - start
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sequences = decode_rows(model, frame, [len(t) for t in templates])
    if a.json:
        print(json.dumps({"sequences": sequences, "nfe_per_sample": frame.nfe / len(sequences),
                          "seconds": round(seconds, 4), "steps": a.steps, "seed": seed,
                          "sampler": a.sampler, "top_p": a.top_p,
                          "checkpoint": str(a.checkpoint or model.source)}))
    else:
        sys.stdout.write(to_fasta(sequences))
    return 0


if __name__ == "__main__":
    sys.exit(main())
