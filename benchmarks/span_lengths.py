"""Span-length recovery and cost: does the model choose the right length for a ``[2-10]`` gap?

    python benchmarks/span_lengths.py --data VAL.fasta [--checkpoint DIR] [--num-seqs 100]
        [--two-span-seqs 5] [--t-samples K] [--masks common|independent] [--figure PNG] [--json JSON]

Recovery: for each of ``--num-seqs`` held-out sequences (drawn with ``--seed``; lengths ≥ 38) cut out
a segment of 3–8 residues (length uniform) starting at a uniform interior position with at least
10 residues kept on each side, and replace it by ``[2-10]``. The model's posterior over the nine
lengths (``sedd.spans.span_posterior``, enumeration) is compared with the truth: how often its mode
is the true length, within ±1, and the mean posterior probability of the truth. A uniform choice
gets exactly 1/9 and 3/9 (every true length 3–8 has both neighbours in 2–10). The first
``--stability-seqs`` sequences are scored again with another ELBO seed: how often the mode agrees.

Cost: on ``--two-span-seqs`` sequences, the wall time of choosing the lengths for one span (9
candidates) and for two spans (two cut segments, 81 combinations, enumerated), each divided by the
time of one plain run of the same template with the true lengths (128 steps, ``--designs`` designs,
cached τ-leaping), measured side by side on the same sequence, one thread. Medians are reported.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint, spans
from sedd.cli import COUNT, COUNT_OR_ZERO, OUTPUT_FILE, SEED, script
from sedd.data import Dataset, read_fasta
from sedd.design import Request, stream
from sedd.likelihood import estimate_elbo
from sedd.sampler import last_frame
from sedd.spans import span_posterior

LOW, HIGH = 2, 10           # the span written into the template
CUT = (3, 8)                # true segment lengths
MARGIN = 10                 # residues kept on each side of a cut
MIN_LENGTH = 2 * MARGIN + 2 * CUT[1] + 2      # room for two cuts with their margins (38)


def choose_sequences(shuffled: list[str], num_seqs: int, two_span_seqs: int, max_len: int) -> tuple[list, list]:
    """The recovery part's sequences (the first ``num_seqs`` with room for one span at its longest
    within ``max_len``) and the cost part's (the next ``two_span_seqs`` with room for two). A cut of
    3 residues written as ``[2-10]`` makes the template up to 7 positions longer: a held-out
    sequence of 122–127 residues would be refused as a template beyond the model's maximum."""
    grows = HIGH - CUT[0]
    fits_one = [i for i, s in enumerate(shuffled) if len(s) + grows <= max_len][:num_seqs]
    after = fits_one[-1] + 1 if fits_one else 0
    fits_two = [s for s in shuffled[after:] if len(s) + 2 * grows <= max_len][:two_span_seqs]
    return [shuffled[i] for i in fits_one], fits_two


def cut(seq: str, rng: random.Random, avoid: range | None = None) -> tuple[int, int]:
    """(start, length) of a random interior segment of 3–8 residues, not overlapping ``avoid``."""
    while True:
        k = rng.randint(*CUT)
        start = rng.randint(MARGIN, len(seq) - MARGIN - k)
        if avoid is None or start + k + 1 < avoid.start or start > avoid.stop + 1:
            return start, k


def one_span(seq: str, start: int, k: int) -> str:
    return seq[:start] + f"[{LOW}-{HIGH}]" + seq[start + k:]


def two_spans(seq: str, first: tuple[int, int], second: tuple[int, int]) -> str:
    (s1, k1), (s2, k2) = sorted([first, second])
    return seq[:s1] + f"[{LOW}-{HIGH}]" + seq[s1 + k1:s2] + f"[{LOW}-{HIGH}]" + seq[s2 + k2:]


def independent_masks(model, spec, combos, *, t_samples, seed, progress=False, check=None) -> torch.Tensor:
    """The comparison for ``--masks independent``: one ``estimate_elbo(observed=...)`` call per
    candidate with the same seed, so the same times but masks drawn afresh for each layout (the
    signature of ``spans.observed_log_likelihoods``, which it replaces; one row, the estimates:
    the posterior's errors are not estimated)."""
    out = []
    for combo in combos:
        if check is not None:
            check()
        tpl = spec.expand(combo)
        tokens = [0 if d else tok for tok, d in zip(tpl.tokens, tpl.designed)]
        result = estimate_elbo(model.model, Dataset(["candidate"], [tokens]), model.schedule, model.alphabet.mask_id,
                               t_samples=t_samples, seed=seed, observed=[[not d for d in tpl.designed]])
        out.append(-result["per_sequence"][0])
    return torch.tensor([out], dtype=torch.float64)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def recovery(model, seqs: list[str], rng: random.Random, t_samples: int, stability: int) -> dict:
    from tqdm.auto import tqdm

    rows = []
    for i, seq in enumerate(tqdm(seqs, desc="recovery")):
        start, k = cut(seq, rng)
        spec = model.alphabet.parse_spec(one_span(seq, start, k), model.max_len)
        post = span_posterior(model, spec, t_samples=t_samples, seed=i)
        lengths, probs = post.factors[0]
        row = {"true": k, "mode": post.mode()[0], "p_true": probs[lengths.index(k)],
               "p_true_stderr": post.factor_stderr[0][lengths.index(k)] if post.factor_stderr else None}
        if i < stability:
            other = span_posterior(model, spec, t_samples=t_samples, seed=10_000 + i)
            row["mode_other_seed"] = other.mode()[0]
            row["p_true_other_seed"] = other.factors[0][1][lengths.index(k)]
        rows.append(row)
    n = len(rows)
    stable = [r for r in rows if "mode_other_seed" in r]
    return {
        "num_sequences": n,
        "mode_exact": sum(r["mode"] == r["true"] for r in rows) / n,
        "mode_within_1": sum(abs(r["mode"] - r["true"]) <= 1 for r in rows) / n,
        "mean_p_true": statistics.fmean(r["p_true"] for r in rows),
        "uniform_exact": 1 / (HIGH - LOW + 1),
        "uniform_within_1": 3 / (HIGH - LOW + 1),
        "mode_agreement_between_seeds": (sum(r["mode"] == r["mode_other_seed"] for r in stable) / len(stable)
                                         if stable else None),
        "stability_sequences": len(stable),
        "rows": rows,
    }


def cost(model, seqs: list[str], rng: random.Random, t_samples: int, designs: int) -> dict:
    from tqdm.auto import tqdm

    rows = []
    for i, seq in enumerate(tqdm(seqs, desc="cost")):
        first = cut(seq, rng)
        second = cut(seq, rng, avoid=range(first[0], first[0] + first[1]))
        plain = model.alphabet.parse_template(seq[:first[0]] + "_" * first[1] + seq[first[0] + first[1]:],
                                              model.max_len)
        _, t_plain = timed(partial(last_frame, stream(model, Request([plain] * designs, steps=128, seed=i))))
        one = model.alphabet.parse_spec(one_span(seq, *first), model.max_len)
        two = model.alphabet.parse_spec(two_spans(seq, first, second), model.max_len)
        _, t_one = timed(partial(span_posterior, model, one, t_samples=t_samples, seed=i))
        post2, t_two = timed(partial(span_posterior, model, two, t_samples=t_samples, seed=i))
        truth2 = tuple(k for _, k in sorted([first, second]))
        rows.append({"plain_s": t_plain, "one_span_s": t_one, "two_spans_s": t_two, "method_two": post2.method,
                     "two_span_mode_exact": post2.mode() == truth2})
    med = {key: statistics.median(r[key] for r in rows) for key in ("plain_s", "one_span_s", "two_spans_s")}
    return {"num_sequences": len(rows), "designs_per_plain_run": designs, **{f"median_{k}": v for k, v in med.items()},
            "one_span_x_plain": statistics.median(r["one_span_s"] / r["plain_s"] for r in rows),
            "two_spans_x_plain": statistics.median(r["two_spans_s"] / r["plain_s"] for r in rows),
            "two_span_both_exact": sum(r["two_span_mode_exact"] for r in rows) / len(rows), "rows": rows}


def figure(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["recovery"]["rows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    errors = [r["mode"] - r["true"] for r in rows]
    span = range(LOW - CUT[1], HIGH - CUT[0] + 1)
    left.bar(list(span), [errors.count(e) / len(rows) for e in span], color="#d95f02")
    left.set_xlabel("posterior mode − true length")
    left.set_ylabel("share of sequences")
    left.set_title("error of the chosen length")
    truths = list(range(CUT[0], CUT[1] + 1))
    exact = [statistics.fmean([r["mode"] == t for r in rows if r["true"] == t] or [float("nan")]) for t in truths]
    right.bar(truths, exact, color="#1b9e77", label="model (posterior mode)")
    right.axhline(1 / (HIGH - LOW + 1), color="grey", ls="--", label="uniform choice (1/9)")
    right.set_ylim(0, 1)
    right.set_xlabel("true segment length")
    right.set_ylabel("mode = true length")
    right.set_title("exact recovery by true length")
    right.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"[{LOW}-{HIGH}] in place of a cut segment, {len(rows)} held-out sequences", fontsize=10)
    fig.tight_layout()
    # atomically, like the JSON: an interrupted run leaves the previous figure, not half a PNG; the
    # format is named because the temporary file's suffix (.tmp) is not one matplotlib knows
    fmt = path.suffix.lstrip(".").lower() or plt.rcParams["savefig.format"]
    checkpoint.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--data", required=True, help="held-out FASTA (sequences the model never saw)")
    p.add_argument("--num-seqs", type=COUNT, default=100)
    p.add_argument("--stability-seqs", type=COUNT_OR_ZERO, default=30)
    p.add_argument("--two-span-seqs", type=COUNT_OR_ZERO, default=5, help="0: no cost part")
    p.add_argument("--designs", type=COUNT, default=4, help="designs in the plain run the cost is divided by")
    p.add_argument("--t-samples", type=COUNT, default=spans.SPAN_T_SAMPLES)
    p.add_argument("--masks", choices=("common", "independent"), default="common",
                   help="common: the library's estimator (the same times and masks for every candidate); "
                        "independent: the same times only (one estimate_elbo call per candidate)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--threads", type=COUNT, default=1)
    p.add_argument("--figure", type=OUTPUT_FILE, default=None)
    p.add_argument("--json", type=OUTPUT_FILE, default=None, help="write the full result (per-sequence rows too)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.masks == "independent":
        spans.observed_log_likelihoods = independent_masks
    model = checkpoint.load(a.checkpoint)
    data = read_fasta(a.data, model.alphabet, model.max_len)
    seqs = [model.alphabet.decode(t) for t in data.tokens if len(t) >= MIN_LENGTH]
    rng = random.Random(a.seed)
    rng.shuffle(seqs)
    for_recovery, for_cost = choose_sequences(seqs, a.num_seqs, a.two_span_seqs, model.max_len)
    # now, not after the recovery part has run: the cost part takes the sequences after the first --num-seqs
    if a.two_span_seqs and not for_cost:
        p.error(f"--data has {len(seqs)} sequences of at least {MIN_LENGTH} residues; the cost part "
                f"(--two-span-seqs) takes those after the first --num-seqs {a.num_seqs} that leave room for two "
                f"spans within the model's {model.max_len} positions, and none are left: lower --num-seqs, or give "
                "--two-span-seqs 0")
    result = {"checkpoint": model.source, "data": str(a.data), "t_samples": a.t_samples, "masks": a.masks, "seed": a.seed,
              "threads": a.threads,
              "recovery": recovery(model, for_recovery, rng, a.t_samples, a.stability_seqs),
              "cost": cost(model, for_cost, rng, a.t_samples, a.designs)
              if a.two_span_seqs else {}}
    if a.json:
        checkpoint.atomic_write_text(a.json, json.dumps(result, indent=1) + "\n")
    if a.figure:
        figure(result, Path(a.figure))
    summary = {part: {k: v for k, v in result[part].items() if k != "rows"} for part in ("recovery", "cost")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(script(main))
