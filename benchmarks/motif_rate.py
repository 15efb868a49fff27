"""Catalytic-motif rate of unconditional samples, precisely enough to compare checkpoints.

    python benchmarks/motif_rate.py checkpoints/acyp old=/path/to/previous --samples 2048
    python benchmarks/motif_rate.py checkpoints/acyp --samples 1024 --json motif.json
    python benchmarks/motif_rate.py checkpoints/acyp checkpoints/acyp-base --samples 2048 --device cuda

``sedd.evaluate`` reports the motif rate of its 256 samples: a binomial standard error of about
2.5 points, as large as the differences between the models it is used to choose. This script
draws many more samples of each checkpoint with the evaluation's own sampler
(``sedd.metrics.draw_samples``: lengths from the checkpoint's histogram, the default 128-step
τ-leaping, batches of 128) and reports the rate with its standard error and Wilson 95 % interval.
An autoregressive baseline (``benchmarks/ar_baseline.py``'s ``RUN/ar``) is sampled left to right
with its exact distribution instead (``sedd.autoregressive.draw_samples``; it chooses its own
lengths), so the same network trained the other way can be compared with the diffusion model.
``--sampler left-to-right`` samples the diffusion models one position at a time, left to right,
instead of by τ-leaping: an exact sample of the same model in a fixed order rather than a random
one, which tells whether the order, not the model, costs the motif.

Every checkpoint is sampled with the same seed, so all of them draw the same lengths and the same
random numbers (common random numbers). Compared with the first checkpoint, the paired difference
then has a smaller standard error than two independent rates would: it is computed from the
per-sample differences d_i = hit_i(model) − hit_i(first), SE = sd(d) / √n. Between a diffusion and
an autoregressive model nothing is shared, and the same formula gives the SE of two independent rates.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import autoregressive  # noqa: E402
from sedd import checkpoint as ckpt  # noqa: E402
from sedd.cli import COUNT, OUTPUT_FILE, SEED, script  # noqa: E402
from sedd.metrics import (MOTIF, binomial_stderr, draw_samples, evaluation_templates, motif_hits,  # noqa: E402
                          wilson_interval)
from sedd.model import device_of  # noqa: E402

DIFFUSION_SAMPLERS = {"tau-leaping": "τ-leaping, 128 steps", "left-to-right": "one position at a time, left to right"}
AUTOREGRESSIVE = "left to right (autoregressive)"


def rate_summary(hits: list[bool]) -> dict:
    n, k = len(hits), sum(hits)
    p = k / n
    low, high = wilson_interval(k, n)
    return {"samples": n, "hits": k, "rate": p, "stderr": binomial_stderr(p, n), "wilson95": [low, high]}


def paired_difference(hits: list[bool], reference: list[bool]) -> dict:
    """Rate difference (hits − reference) over the same samples' random numbers, with its paired SE."""
    d = [int(a) - int(b) for a, b in zip(hits, reference, strict=True)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else 0.0
    return {"difference": mean, "stderr": sd / math.sqrt(n),
            "only_this": sum(x == 1 for x in d), "only_reference": sum(x == -1 for x in d)}


@torch.no_grad()
def draw_left_to_right(model: ckpt.Checkpoint, num_samples: int, *, seed: int = 0, batch_size: int = 128,
                       progress: bool = False) -> list[str]:
    """A diffusion model sampled position by position: x_i ~ p_θ(x_i | x_<i, the rest masked).

    Exact ancestral sampling of the any-order model in a fixed order, one network evaluation per
    residue, with the lengths ``draw_samples`` draws for the same seed.
    """
    from tqdm.auto import tqdm

    net, mask, pad = model.model, model.alphabet.mask_id, model.alphabet.pad_id
    device = device_of(net)
    lengths = [len(t) for t in evaluation_templates(model, num_samples, seed)]
    sequences: list[str] = []
    for b in tqdm(range(0, num_samples, batch_size), disable=not progress, leave=False, desc="sampling batches"):
        rows = lengths[b:b + batch_size]
        x = torch.full((len(rows), max(rows)), pad, dtype=torch.long, device=device)
        for r, n in enumerate(rows):
            x[r, :n] = mask
        generator = torch.Generator().manual_seed(seed + b // batch_size)      # a CPU stream on any device
        for i in range(max(rows)):
            token = torch.multinomial(net(x)[:, i].float().softmax(-1).cpu(), 1, generator=generator).squeeze(1).to(device)
            x[:, i] = torch.where(x[:, i] == mask, token, x[:, i])          # rows shorter than i keep PAD
        sequences += [model.alphabet.decode(row[:n].tolist()) for row, n in zip(x, rows)]
    return sequences


def parse_checkpoints(specs: list[str]) -> list[tuple[str, str]]:
    """``name=path`` or ``path`` (named by its folder) → [(name, path)]."""
    out = []
    for spec in specs:
        name, _, path = spec.rpartition("=")
        out.append((name or Path(path).name, path))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"checkpoint names must differ, got {names}; name them as name=path")
    return out


def measure(checkpoints: list[tuple[str, str]], samples: int, seed: int, progress: bool = True,
            sampler: str = "tau-leaping", device: str = "cpu") -> list[dict]:
    """``sampler``: how diffusion checkpoints are sampled (an autoregressive one always left to right)."""
    rows, reference = [], None
    for name, path in checkpoints:
        model = ckpt.load(path, causal=None, device=device)
        if model.model.config.causal:
            draw, label = autoregressive.draw_samples, AUTOREGRESSIVE
        else:
            draw = draw_samples if sampler == "tau-leaping" else draw_left_to_right
            label = DIFFUSION_SAMPLERS[sampler]
        start = time.perf_counter()
        sequences = draw(model, samples, seed=seed, progress=progress)
        seconds = time.perf_counter() - start
        hits = motif_hits(sequences)
        row = {"name": name, "checkpoint": str(path), "sampler": label, "seconds": seconds,
               "mean_length": sum(map(len, sequences)) / len(sequences), **rate_summary(hits)}
        if reference is None:
            reference = hits
        else:
            row["vs_first"] = paired_difference(hits, reference)
        rows.append(row)
        print(f"{name}: {row['hits']}/{samples} = {row['rate']:.1%} in {seconds:.0f} s", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    first = rows[0]["name"]
    head = (f"| checkpoint | sampler | motif rate | ± SE | Wilson 95 % | vs {first} (paired) |\n"
            "|---|---|---:|---:|---:|---:|")
    body = []
    for r in rows:
        diff = r.get("vs_first")
        vs = f"{diff['difference']:+.1%} ± {diff['stderr']:.1%}" if diff else "—"
        body.append(f"| {r['name']} | {r['sampler']} | {r['rate']:.1%} ({r['hits']}/{r['samples']}) | {r['stderr']:.1%} | "
                    f"{r['wilson95'][0]:.1%}–{r['wilson95'][1]:.1%} | {vs} |")
    return "\n".join([head, *body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint directories, optionally name=path; the first is the reference")
    p.add_argument("--samples", type=int, default=1024, help="unconditional samples per checkpoint")
    p.add_argument("--seed", type=SEED, default=0, help="the same seed for every checkpoint (common random numbers)")
    p.add_argument("--sampler", choices=list(DIFFUSION_SAMPLERS), default="tau-leaping",
                   help="how diffusion checkpoints are sampled (autoregressive ones: always left to right)")
    p.add_argument("--threads", type=COUNT, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps: where the networks run (default cpu)")
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    if a.samples < 2:
        p.error(f"--samples must be at least 2, got {a.samples}")
    try:
        ckpt.check_device(a.device)
        checkpoints = parse_checkpoints(a.checkpoints)
        for _, path in checkpoints:      # every one now, not after the first has been sampled for minutes
            ckpt.resolve(path)
    except ValueError as e:
        p.error(str(e))
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = measure(checkpoints, a.samples, a.seed, sampler=a.sampler, device=a.device)
    print(f"motif {MOTIF}, {a.samples} unconditional samples per checkpoint (diffusion models: lengths from the "
          f"checkpoint's histogram), seed {a.seed}, {torch.get_num_threads()} threads")
    print(table(rows))
    if a.json:
        result = {"motif": MOTIF, "samples": a.samples, "seed": a.seed, "sampler": a.sampler, "device": a.device,
                  "command": " ".join(sys.argv), "rows": rows}
        ckpt.atomic_write_text(Path(a.json), json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
