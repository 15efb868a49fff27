"""Sample designs from the command line: ``python -m sedd.sample``.

    python -m sedd.sample --template "MKV__GF_R____" --num-samples 4 --seed 1
    python -m sedd.sample --length auto --num-samples 8 --json
    python -m sedd.sample --template "MKV[KR]GF[2-10]GQ__" --omit C --span-lengths map
    python -m sedd.sample --length auto --num-samples 8 --steps 16 --sampler remask --top-p 0.95
    python -m sedd.sample --template "MKV[KR]GF____[^P]GQ__" --omit C --particles 16

FASTA on stdout, each batch as soon as it is drawn (an interrupted run keeps the designs already
printed), a progress bar on stderr. ``--json`` prints one object with the sequences, the
network evaluations per sample, the wall time, the steps, the seed, the sampler, top-p, the
checkpoint and the command that draws the same designs; with ``[a-b]`` spans also ``span_lengths``
(per design), ``span_posterior`` (the top 10 combinations) and ``span_posterior_nfe`` (the network
rows that choosing the lengths took, shared by all designs and not in ``nfe_per_sample``); with
``--particles`` above 1 and allowed sets (``[KR]``, ``[^C]``, ``--omit``) also ``particles`` and
``constraint_log_prob`` (per design: the estimated log-probability that the sampler without the sets
would meet them).
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections import Counter

import torch

from . import checkpoint as ckpt
from .cli import COUNT, MAX_STEPS, POSITIVE, PROBABILITY_MASS, SEED, STEPS, checked, is_out_of_memory, run, whole_number
from .design import Plan, Request, batch_seed, decode_rows, plan_designs, stream, to_fasta
from .sampler import STRATEGIES, check_options
from .spans import SPAN_LENGTH_MODES, TOP

LISTED_DESIGNS = 8      # the span-length note lists each design's lengths up to this many designs


# the designs' templates are planned before the first is drawn (about 2 kB each); more designs than this
# would take days on a CPU and gigabytes before the first one: several runs with other seeds draw them
MAX_SAMPLES = 100_000
SAMPLES = checked(whole_number, lambda v: 0 < v <= MAX_SAMPLES, f"a whole number from 1 to {MAX_SAMPLES:,} (draw more "
                  "in several runs with other seeds: no batch of one seed repeats one of another)")
# --length: "auto" or a whole number from 1, whose upper bound (the checkpoint's max_len) is checked once it is loaded
LENGTH = checked(lambda text: "auto" if text.strip() == "auto" else whole_number(text), lambda v: v == "auto" or v >= 1,
                 "a whole number of residues, 1 or more, or 'auto'")


def _describe_posterior(plan: Plan) -> str:
    """One stderr line: how the span lengths were chosen and the most probable combination."""
    best = plan.posterior.top(1, with_stderr=True)[0]
    error = f" ± {best['stderr']:.2f}" if best["stderr"] else ""
    return (f"span lengths ({plan.posterior.method}): most probable {best['lengths']} (p = {best['prob']:.2f}"
            f"{error}); designs use {_designs_use(plan.span_lengths)}")


def _designs_use(span_lengths: list[list[int]]) -> str:
    """The span lengths the designs drew: each design's for a few designs, else the commonest combinations
    with their counts (one line, whatever ``--num-samples``)."""
    if len(span_lengths) <= LISTED_DESIGNS:
        return str(span_lengths)
    counts = Counter(map(tuple, span_lengths)).most_common()
    shown = ", ".join(f"{list(lengths)} × {n:,}" for lengths, n in counts[:LISTED_DESIGNS])
    more = len(counts) - LISTED_DESIGNS
    return shown + (f" and {more:,} more combinations" if more > 0 else "") + " (--json lists each design's)"


def _command(p: argparse.ArgumentParser, a: argparse.Namespace, seed: int, checkpoint: str) -> str:
    """The ``python -m sedd.sample`` command that draws the same designs: the seed filled in, the options
    that differ from their defaults, and those that always matter."""
    what = ["--template", a.template] if a.template is not None else ["--length", str(a.length)]
    words = ["python", "-m", "sedd.sample", "--checkpoint", checkpoint, *what, "--num-samples", str(a.num_samples),
             "--steps", str(a.steps), "--temperature", repr(a.temperature), "--seed", str(seed)]
    for dest in ("omit", "span_lengths", "sampler", "top_p", "particles", "batch_size", "device"):
        value = getattr(a, dest)
        if value != p.get_default(dest):
            words += ["--" + dest.replace("_", "-"), repr(value) if isinstance(value, float) else str(value)]
    return shlex.join(words)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sedd.sample", description="Design sequences with a SEDD model.")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory or Hugging Face Hub repo id "
                                                       "(default: $SEDD_CHECKPOINT, else the bundled ACYP model)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--template", help="residues with designed positions marked _ ? # or X, [n] for n of them, "
                                         "[a-b] for a span whose length the model chooses, [KR] or [^C] for a "
                                         "position restricted to (or barred from) residues")
    what.add_argument("--length", type=LENGTH,
                      help="N residues, all designed, or 'auto' to draw lengths from the training data")
    p.add_argument("--num-samples", type=SAMPLES, default=1, help=f"designs to draw, 1 to {MAX_SAMPLES:,} (default 1)")
    p.add_argument("--steps", type=STEPS, default=128,
                   help=f"denoising steps, 1 to {MAX_STEPS:,} (default 128; with τ-leaping the network runs at "
                        "most once per masked position whatever the count)")
    p.add_argument("--temperature", type=POSITIVE, default=1.0,
                   help="divides the model's log-probabilities; below 1 sharper, above 1 more varied (default 1.0)")
    p.add_argument("--seed", type=SEED, default=None,
                   help="default: a random seed, printed (a note on stderr, or the seed of --json)")
    p.add_argument("--omit", default="", metavar="RESIDUES",
                   help="residues never placed at a designed position, e.g. C or CM")
    p.add_argument("--span-lengths", choices=SPAN_LENGTH_MODES, default="sample",
                   help="[a-b] spans: each design draws its lengths from the model's posterior (sample) "
                        "or all take the most probable (map)")
    p.add_argument("--sampler", default="tau-leaping", choices=STRATEGIES,
                   help="which masked positions to reveal each step (default: tau-leaping, the exact process)")
    p.add_argument("--top-p", type=PROBABILITY_MASS, default=1.0, help="nucleus sampling: keep the most probable residues "
                                                            "up to this mass (default 1 = off)")
    p.add_argument("--particles", type=COUNT, default=1,
                   help="K > 1: allowed sets ([KR], [^C], --omit) condition the tau-leaping sampler exactly, by "
                        "K weighted particles per design (sequential Monte Carlo; K times the network evaluations; "
                        "default 1: each prediction is renormalised over its set)")
    p.add_argument("--batch-size", type=COUNT, default=256,
                   help="designs per sampler call (memory grows with it, times --particles); more designs run "
                        "in several calls, the first with --seed itself (default 256)")
    p.add_argument("--no-cache", action="store_true", help="evaluate the network at every step (speed reference)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of FASTA")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    return p


def _draw(model: ckpt.Checkpoint, templates: list, a: argparse.Namespace, seed: int):
    """The designs of ``templates``, in sampler calls of ``--batch-size``, each printed as FASTA as soon
    as it is drawn unless ``--json``: (sequences, network evaluations in all, log P(allowed sets met)
    per design, whether particles conditioned any batch)."""
    from tqdm.auto import tqdm
    starts = range(0, len(templates), a.batch_size)
    sequences, nfe, log_probs, constrained = [], 0, [], False
    # counts steps, not frames: "--steps 128" read "0/129", the initial state being a frame too
    with tqdm(total=len(starts) * a.steps, desc="denoising", unit="step", file=sys.stderr, leave=False) as bar:
        for index, b in enumerate(starts):
            batch = templates[b:b + a.batch_size]
            request = Request(batch, a.steps, a.temperature, batch_seed(seed, index), use_cache=not a.no_cache,
                              sampler=a.sampler, top_p=a.top_p, particles=a.particles)
            for frame in stream(model, request):
                bar.update(frame.step - (bar.n - index * a.steps))
            drawn = decode_rows(model, frame, [len(t) for t in batch])
            if not a.json:           # printed as it is drawn: an interrupted run keeps what it printed
                sys.stdout.write(to_fasta(drawn, first=len(sequences) + 1))
                sys.stdout.flush()
            sequences += drawn
            nfe += frame.nfe
            # particles ran when something was restricted; a batch whose spans drew no restricted
            # position met its (empty) restrictions with probability 1
            constrained |= frame.constraint_log_prob is not None
            log_probs += [0.0] * len(batch) if frame.constraint_log_prob is None else frame.constraint_log_prob.tolist()
    return sequences, nfe, log_probs, constrained


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
    try:
        # the sampler's own checks (--particles with --sampler/--top-p, its range) before the span lengths' minutes
        check_options(a.sampler, a.steps, a.temperature, a.top_p, seed, particles=a.particles)
        model = ckpt.load(a.checkpoint, device=a.device)
        start = time.perf_counter()
        plan = plan_designs(model, template=a.template, length=a.length, num_samples=a.num_samples, seed=seed,
                            exclude=a.omit, span_lengths=a.span_lengths, progress=True)
        templates = plan.templates
        for notice in templates[0].notices:
            print(f"note: {notice}", file=sys.stderr)
        if plan.posterior is not None:
            print(f"note: {_describe_posterior(plan)}", file=sys.stderr)
        if a.seed is None and not a.json:    # --json says it; a FASTA run would otherwise lose it
            print(f"note: seed {seed} (drawn at random; --seed {seed} draws these designs again)", file=sys.stderr)
        sequences, nfe, log_probs, constrained = _draw(model, templates, a, seed)
        seconds = time.perf_counter() - start
        if constrained:
            mean_p = sum(math.exp(v) for v in log_probs) / len(log_probs)
            print(f"note: {a.particles} particles per design; the model alone meets the allowed sets with probability "
                  f"≈ {mean_p:.3g} (mean over designs)", file=sys.stderr)
        if a.json:
            checkpoint = str(a.checkpoint or model.source)
            out = {"sequences": sequences, "nfe_per_sample": nfe / len(sequences), "seconds": round(seconds, 4),
                   "steps": a.steps, "seed": seed, "sampler": a.sampler, "top_p": a.top_p, "checkpoint": checkpoint,
                   "command": _command(p, a, seed, checkpoint)}
            if plan.posterior is not None:
                out |= {"span_lengths": plan.span_lengths, "span_posterior": plan.posterior.top(TOP),
                        "span_posterior_nfe": plan.posterior.nfe}
            if constrained:
                out |= {"particles": a.particles,         # JSON has no -inf
                        "constraint_log_prob": [v if math.isfinite(v) else None for v in log_probs]}
            print(json.dumps(out))
    except BrokenPipeError:                # a reader that stopped early (| head): cli.run ends quietly
        raise
    except (ValueError, OSError) as e:     # bad templates, options and checkpoints; unreadable files; a full disk
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not is_out_of_memory(e):
            raise
        designs = min(a.batch_size, a.num_samples)
        rows = f"{designs:,} designs" + (f" × {a.particles} particles" if a.particles > 1 else "")
        print(f"error: out of memory drawing a sampler call of {rows} at once; lower --batch-size "
              f"(now {a.batch_size})" + (" or --particles" if a.particles > 1 else ""), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
