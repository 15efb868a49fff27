"""Sample designs from the command line: ``python -m sedd.sample``.

    python -m sedd.sample --template "MKV__GF_R____" --num-samples 4 --seed 1
    python -m sedd.sample --length auto --num-samples 8 --json

FASTA on stdout, a progress bar on stderr. ``--json`` prints one object with the sequences, the
network evaluations per sample, the wall time, the steps, the seed and the checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import torch

from . import checkpoint as ckpt
from .alphabet import Template
from .sampler import Frame, last_frame, sample


@dataclass
class Request:
    """What to design: one template per sample (templates may differ in length)."""

    templates: list[Template]
    steps: int = 128
    temperature: float = 1.0
    seed: int = 0
    use_cache: bool = True


def templates_for(model: ckpt.Checkpoint, *, template: str | None = None, length: int | str | None = None,
                  num_samples: int = 1, seed: int = 0) -> list[Template]:
    """Build ``num_samples`` templates from a template string, a length, or ``"auto"`` lengths."""
    alphabet = model.alphabet
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if template is not None:
        return [alphabet.parse_template(template, model.max_len)] * num_samples
    if length == "auto":
        lengths = model.sample_lengths(num_samples, torch.Generator().manual_seed(seed))
    else:
        n = int(length)
        if not 1 <= n <= model.max_len:
            raise ValueError(f"length must be between 1 and {model.max_len}, got {n}")
        lengths = [n] * num_samples
    return [Template((alphabet.mask_id,) * n, alphabet.mask_id) for n in lengths]


def stream(model: ckpt.Checkpoint, request: Request):
    """The sampler's frames for a request (device = the model's)."""
    return sample(model.model, [t.tokens for t in request.templates], mask_id=model.alphabet.mask_id,
                  steps=request.steps, temperature=request.temperature, seed=request.seed,
                  schedule=model.schedule, use_cache=request.use_cache)


def decode_rows(model: ckpt.Checkpoint, frame: Frame, lengths: list[int]) -> list[str]:
    return [model.alphabet.decode(row[:n].tolist()) for row, n in zip(frame.tokens, lengths)]


def to_fasta(sequences: list[str], prefix: str = "design") -> str:
    return "".join(f">{prefix}_{i + 1}\n{s}\n" for i, s in enumerate(sequences))


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
        request = Request(templates, a.steps, a.temperature, seed, use_cache=not a.no_cache)
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
                          "checkpoint": str(a.checkpoint or model.source)}))
    else:
        sys.stdout.write(to_fasta(sequences))
    return 0


if __name__ == "__main__":
    sys.exit(main())
