"""Sampling time per design, per model preset: the default (cached) sampler on one device.

    python benchmarks/design_speed.py                                  # small and base on the best device
    python benchmarks/design_speed.py --device cuda --presets small,base --json figures.json

For each preset a network with random weights (seed 0) is put on ``--device``; ``--designs``
templates of ``--length`` designed positions are sampled with ``--steps`` steps (seed 0) once
untimed (allocator, kernels), then ``--repeats`` times timed. Reported: median wall seconds of a
run divided by the number of designs, and the network evaluations per design. Random weights are
fine for time: which positions unmask when does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint  # noqa: E402
from sedd.alphabet import PROTEIN  # noqa: E402
from sedd.cli import COUNT, OUTPUT_FILE, PRESET_LIST, STEPS, script  # noqa: E402
from sedd.model import ScoreNetwork, preset  # noqa: E402
from sedd.sampler import run  # noqa: E402
from sedd.train import pick_device  # noqa: E402


def measure(name: str, device: torch.device, *, designs: int, length: int, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    net = ScoreNetwork(preset(name, vocab_size=PROTEIN.size, dropout=0.0)).to(device).eval()
    templates = [[PROTEIN.mask_id] * length] * designs
    run(net, templates, mask_id=PROTEIN.mask_id, steps=steps, seed=0)           # warm-up, untimed
    seconds, nfe = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        frame = run(net, templates, mask_id=PROTEIN.mask_id, steps=steps, seed=0)
        seconds.append(time.perf_counter() - start)
        nfe = frame.nfe
    return {"preset": name, "parameters": net.num_parameters(), "device": str(device), "designs": designs,
            "length": length, "steps": steps, "nfe_per_design": nfe / designs,
            "seconds_per_design": statistics.median(seconds) / designs}


def table(rows: list[dict]) -> str:
    head = "| preset | parameters | designs × length | steps | NFE/design | s/design |\n|---|---:|---:|---:|---:|---:|"
    body = [f"| {r['preset']} | {r['parameters'] / 1e6:.1f} M | {r['designs']} × {r['length']} | {r['steps']} | "
            f"{r['nfe_per_design']:.1f} | {r['seconds_per_design']:.4f} |" for r in rows]
    return "\n".join([head, *body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", type=PRESET_LIST, default="small,base", help="comma-separated model presets")
    p.add_argument("--device", help="cuda / mps / cpu (default: the best available)")
    p.add_argument("--designs", type=COUNT, default=8, help="designs per run (one batch)")
    p.add_argument("--length", type=COUNT, default=128)
    p.add_argument("--steps", type=STEPS, nargs="+", default=[128, 1024])
    p.add_argument("--repeats", type=COUNT, default=3)
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    device = pick_device(a.device)
    rows = [measure(name, device, designs=a.designs, length=a.length, steps=steps, repeats=a.repeats)
            for name in a.presets for steps in a.steps]
    print(table(rows))
    if a.json:
        checkpoint.atomic_write_text(Path(a.json), json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
