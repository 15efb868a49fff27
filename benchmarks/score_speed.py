"""Scoring speed: a full single-substitution scan, the whole-sequence ELBO and ``score_sequence`` of one sequence.

    python benchmarks/score_speed.py                          # bundled model, human ACYP1 (99 residues)
    python benchmarks/score_speed.py --checkpoint DIR --sequence SEQ --repeats 5 --threads 2

Each timing is the median of ``--repeats`` runs after one warm-up, as wall time and as this
process's CPU time (see ``median_seconds``). The scan is
``masked_marginals`` + ``scan_from_marginals``: one network call on L rows. The ELBO is
``elbo_score`` (a pilot of 16 random times, then 64 to 256, as many as its standard error needs to
fall below 0.05 nats/residue), and
``score_sequence(scan=True)`` is both, i.e. what one ``python -m sedd.score --scan`` sequence costs
once the model is loaded.
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

from sedd import checkpoint, score
from sedd.cli import COUNT, OUTPUT_FILE, script

ACYP1_HUMAN = ("MAEGNTLISVDYEIFGKVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQGPISKVRHMQEWLETRGSPKSHIDKANFNNEKVILKLDYSDF"
               "QIVK")   # UniProt P07311


def median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of this process (all threads) per call.

    On a machine shared with other work the wall time grows with the load; the CPU time much less,
    and with one thread it is the wall time an idle core would give.
    """
    fn()                                    # warm-up: allocator, thread pool
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--sequence", default=ACYP1_HUMAN, help="default: human ACYP1, 99 residues")
    p.add_argument("--repeats", type=COUNT, default=5)
    p.add_argument("--threads", type=COUNT, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the timings, with the run's settings, to this JSON file")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = checkpoint.load(a.checkpoint)
    tokens = score.parse_sequence(model, a.sequence)
    rows = [
        ("scan (L rows, one pass)", lambda: score.scan_from_marginals(score.masked_marginals(model, tokens), tokens)),
        ("whole-sequence ELBO", lambda: score.elbo_score(model, tokens)),
        ("score_sequence(scan=True)", lambda: score.score_sequence(model, tokens, scan=True)),
    ]
    print(f"checkpoint {model.source} · {model.model.num_parameters() / 1e6:.1f} M parameters · length {len(tokens)} · "
          f"{torch.get_num_threads()} threads · median of {a.repeats} · load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print("| what | wall seconds | CPU seconds |\n|---|---:|---:|")
    timings = []
    for name, fn in rows:
        wall, cpu = median_seconds(fn, a.repeats)
        print(f"| {name} | {wall:.3f} | {cpu:.3f} |")
        timings.append({"what": name, "wall_seconds": wall, "cpu_seconds": cpu})
    elbo = score.elbo_estimate(model, tokens)
    print(f"the ELBO drew {elbo['pilot_t_samples']} pilot times, then {elbo['t_samples']}: "
          f"{elbo['elbo_nats_per_residue']:.3f} ± {elbo['elbo_stderr']:.3f} nats/residue")
    if a.json:
        result = {"checkpoint": str(model.source), "length": len(tokens), "threads": torch.get_num_threads(),
                  "repeats": a.repeats, "load_average": os.getloadavg()[0], "rows": timings,
                  "elbo_pilot_t_samples": elbo["pilot_t_samples"], "elbo_t_samples": elbo["t_samples"]}
        checkpoint.atomic_write_text(Path(a.json), json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(script(main))
