"""Allowed sets with and without particles, against rejection sampling, on the bundled model.

    python benchmarks/particles.py --json checkpoints/acyp/eval/particles.json

One template whose allowed set fights the model: a held-out ACYP sequence whose catalytic-motif
window is designed, with the motif's aromatic position barred from its usual residues (``[^FY]``).
The exact answer is the τ-leaping sampler's law conditioned on that set, and rejection sampling
draws it: run the same template with the set lifted (a plain designed position) and keep the
designs that meet it. Against those accepted designs the script compares the sampler with one
particle (each prediction renormalised over its set, the default) and with K particles
(``sedd.sampler``, sequential Monte Carlo), all at the same steps:

- the share of designs that keep the rest of the motif, ``G.VQG[VI]`` in the window;
- the mean over designed positions of the total variation between residue frequencies, with the
  same figure between two halves of the accepted designs (the noise floor at that sample size);
- P(the set is met): the acceptance rate of the plain runs, and the particles' own estimate, the
  mean of exp(``constraint_log_prob``);
- network evaluations (rows) per design.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint as ckpt  # noqa: E402
from sedd.cli import COUNT, OUTPUT_FILE, SEED, STEPS, TWO_OR_MORE, script  # noqa: E402
from sedd.design import Request, decode_rows, stream  # noqa: E402
from sedd.report import json_safe  # noqa: E402
from sedd.sampler import last_frame  # noqa: E402

# A held-out sequence (val.fasta of the cluster split, A0A832GNF5), motif GIVQGVGFR at residues 11-19
NATURAL = "MKKALRIEISGIVQGVGFRPFVFNLAKSFNLKGHISNSCEGVSLLLEGEEEALQGFLHELPRKAPPLSQIYEIKVEEAPLSHFKELKIIKSETTGRPSFDILPDLALCKECSAELYSPENRRYL"
WINDOW = (6, 23)                 # designed positions [6, 23), 0-based: the motif and four residues each side
BARRED = (17, "FY")              # the motif's [FY] position may take anything else
REST_OF_MOTIF = re.compile("G.VQG[VI]")


def template(with_set: bool) -> str:
    start, end = WINDOW
    i, residues = BARRED
    window = "".join(f"[^{residues}]" if with_set and j == i else "_" for j in range(start, end))
    return NATURAL[:start] + window + NATURAL[end:]


def draw(model, text: str, n: int, *, steps: int, seed: int, particles: int, batch: int,
         look_ahead: bool = True) -> tuple[list[str], dict]:
    """n designs of ``text`` in batches; the designs and what they cost."""
    from tqdm.auto import tqdm

    tpl = model.alphabet.parse_spec(text, model.max_len).fixed()         # no [a-b] spans here
    designs, nfe, log_probs = [], 0, []
    start = time.perf_counter()
    for b in tqdm(range(0, n, batch), desc=f"{n} designs, {particles} particle(s) each", leave=False):
        rows = min(batch, n - b)
        frame = last_frame(stream(model, Request([tpl] * rows, steps=steps, seed=seed + b // batch, particles=particles,
                                                  look_ahead=look_ahead)))
        designs += decode_rows(model, frame, [len(tpl)] * rows)
        nfe += frame.nfe
        if frame.constraint_log_prob is not None:
            log_probs += frame.constraint_log_prob.tolist()
    cost = {"nfe_per_design": nfe / n, "seconds_per_design": (time.perf_counter() - start) / n}
    if log_probs:
        p = np.exp(log_probs)
        cost["estimated_p_set"] = float(p.mean())
        cost["estimated_p_set_stderr"] = float(p.std(ddof=1) / math.sqrt(len(p)))
    return designs, cost


def position_tv(a: list[str], b: list[str], positions: range, residues: str) -> float:
    """Mean over ``positions`` of the total variation between the residue frequencies of a and b."""
    def freq(seqs, i):
        counts = np.array([sum(s[i] == r for s in seqs) for r in residues], dtype=float)
        return counts / counts.sum()
    return float(np.mean([0.5 * np.abs(freq(a, i) - freq(b, i)).sum() for i in positions]))


def motif_share(designs: list[str]) -> dict:
    start, end = WINDOW
    hits = [bool(REST_OF_MOTIF.search(d[start - 2:end + 2])) for d in designs]
    p = sum(hits) / len(hits)
    return {"rest_of_motif": p, "rest_of_motif_stderr": math.sqrt(p * (1 - p) / len(hits))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="checkpoints/acyp")
    p.add_argument("--designs", type=TWO_OR_MORE, default=256, help="designs per particle count (at least 2)")
    p.add_argument("--plain", type=TWO_OR_MORE, default=4096,
                   help="designs without the set, for rejection sampling (at least 2)")
    p.add_argument("--particles", type=COUNT, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--without-look-ahead", type=COUNT, nargs="*", default=[], metavar="K",
                   help="particle counts to run again with the plain weights (no look-ahead), to compare")
    p.add_argument("--steps", type=STEPS, default=64)
    p.add_argument("--batch", type=COUNT, default=64, help="designs per sampler call")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--threads", type=COUNT)
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the results here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from tqdm.auto import tqdm

    model = ckpt.load(a.checkpoint)
    positions = range(*WINDOW)
    i, barred = BARRED
    plain, plain_cost = draw(model, template(False), a.plain, steps=a.steps, seed=a.seed + 10**6, particles=1,
                             batch=a.batch)
    accepted = [d for d in plain if d[i] not in barred]
    if len(accepted) < 2:              # the reference and its noise floor (two halves) need two at least
        raise ValueError(f"only {len(accepted)} of {len(plain)} plain designs meet the set, and rejection sampling "
                         "needs at least 2 as the reference: raise --plain")
    half = len(accepted) // 2
    acceptance = len(accepted) / len(plain)
    rows = [{"sampler": f"rejection ({len(accepted)} of {len(plain)} plain designs)", "particles": None,
             "designs": len(accepted), **motif_share(accepted),
             "position_tv": position_tv(accepted[:half], accepted[half:], positions, model.alphabet.residues),
             "p_set": acceptance, "p_set_stderr": math.sqrt(acceptance * (1 - acceptance) / len(plain)),
             "nfe_per_design": plain_cost["nfe_per_design"] / acceptance}]
    runs = [(k, True) for k in a.particles] + [(k, False) for k in a.without_look_ahead]
    for k, look_ahead in tqdm(runs, desc="particle counts"):
        designs, cost = draw(model, template(True), a.designs, steps=a.steps, seed=a.seed, particles=k, batch=a.batch,
                             look_ahead=look_ahead)
        assert all(d[i] not in barred for d in designs)
        name = "renormalised" if k == 1 else f"{k} particles" + ("" if look_ahead else ", no look-ahead")
        rows.append({"sampler": name, "particles": k, "look_ahead": look_ahead if k > 1 else None,
                     "designs": len(designs), **motif_share(designs),
                     "position_tv": position_tv(designs, accepted, positions, model.alphabet.residues),
                     "p_set": cost.get("estimated_p_set"), "p_set_stderr": cost.get("estimated_p_set_stderr"),
                     "nfe_per_design": cost["nfe_per_design"], "seconds_per_design": cost["seconds_per_design"]})
        tqdm.write(json.dumps(rows[-1]), file=sys.stderr)

    print(f"template {template(True)}\n{a.steps} τ-leaping steps; TV: the mean over the {len(positions)} designed positions "
          f"against the accepted plain designs (the rejection row: between their two halves, the noise floor)")
    print("| sampler | designs | G.VQG[VI] kept | TV to rejection | P(set met) | NFE/design |\n|---|---:|---:|---:|---:|---:|")
    for r in rows:
        p_set = "—" if r["p_set"] is None else f"{r['p_set']:.3f} ± {r['p_set_stderr']:.3f}"
        print(f"| {r['sampler']} | {r['designs']} | {r['rest_of_motif']:.3f} ± {r['rest_of_motif_stderr']:.3f} | "
              f"{r['position_tv']:.3f} | {p_set} | {r['nfe_per_design']:.1f} |")
    if a.json:
        out = {"command": " ".join(sys.argv), "template": template(True), "steps": a.steps, "seed": a.seed,
               "threads": torch.get_num_threads(), "rows": rows}
        ckpt.atomic_write_text(Path(a.json), json.dumps(json_safe(out), indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
