"""Likelihood, infill and sample-quality metrics, and ``python -m sedd.evaluate``.

    python -m sedd.evaluate --checkpoint DIR --data heldout.fasta --json
    python -m sedd.evaluate --checkpoint DIR --data heldout.fasta --samples 256 --reference train.fasta \
        --report eval/report.md [--fold]

ELBO estimator. For a sequence x_0 of length n the bound (``loss.py``) is
    −log p(x_0 | n) ≤ E_{t~U[ε,1]} [ (1/t) Σ_{i masked in x_t} −log p_θ(x_0^i | x_t) ] =: E_t[f(t)].
Each sequence gets K stratified times t_k = ε + (1−ε)(k + u_k)/K, k = 0…K−1, and one x_t per time.
The reported value is Σ_seq Σ_k f / (K Σ_seq n) in nats/residue. Its standard error is the Monte
Carlo error of that number for this fixed set of sequences: sqrt(Σ_seq Var_k(f)/K) / Σ_seq n, with
Var_k the sample variance over the K times (conservative under stratification).
``elbo_to_precision`` adds rounds of fresh stratified times (independent seeds) until that error
is below a target (0.01 by default): rounds r with K_r times combine as
    ELBO = Σ_r K_r ELBO_r / K,   SE = sqrt(Σ_r K_r² SE_r²) / K,   K = Σ_r K_r,
which is the single-round formula with the variance pooled over all K times. For an untrained
model Var(f) ≈ n log²20 (ln(1/ε) − 1), so reaching 0.01 takes K·Σn ≈ 5·10⁵ (sequence, t) tokens.
−log p(length) is reported separately (``length_nll``): the model is conditional on the length.

Infill recovery. In every sequence round(0.3 n) positions (at least one) are chosen uniformly
without replacement with a seeded generator, masked, and infilled once by the default sampler
(``sedd.sample.Request``: 128 steps, temperature 1, cache on); recovery = exactly restored masked
residues / all masked residues, pooled over sequences.

Sample metrics (``--samples N --reference FASTA``); lengths drawn from the checkpoint's histogram.
- validity: share of samples made only of the alphabet's residues (no mask, nothing else);
- novelty: share of valid samples not identical to any reference sequence;
- identity(a, b): global alignment (Needleman–Wunsch, biotite ``align_optimal``), BLOSUM62,
  affine gaps open −10 / extend −1, end gaps free; identity = identical aligned pairs /
  min(len a, len b). Nearest-reference identity is the maximum over the references — searched
  approximately: the references are ranked by shared distinct 3-mers / min(distinct 3-mers of
  either), and only the top 20 are aligned (an exhaustive search of ~25k references × 256 samples
  does not fit a CPU budget; a sequence with an identical reference gets 1.0 directly). Reported
  as the median over valid samples and drawn as a histogram;
- mean pairwise identity among samples (lower = more diverse): all pairs, or a seeded random
  subset of 2,000 pairs when there are more;
- composition KL: KL(data ‖ samples) = Σ_a p_data(a) log(p_data(a)/p_samples(a)) in nats over the
  alphabet's residues, each distribution from residue counts + 1 (Laplace smoothing, so the KL is
  finite when a residue never occurs in the samples);
- motif rate: share of samples matching the regex ``G.VQG[VI].[FY]R`` anywhere (92 % in nature);
  the same rate on the references is reported beside it.
- family membership (``sedd/hmm.py``): with a profile HMM (``--hmm``, or ``family.hmm`` beside the
  checkpoint), the samples' hit rate at E ≤ 1e-5 and median bit score / that of the held-out
  ``--data`` sequences, and the same for each sample's residues shuffled (a control that scores ≈ 0);
- low complexity: the longest single-residue run per sample (mean, maximum) and the share of
  samples with a run of 5 or more (``repeat_rate``).
``--fold``: mean pLDDT (0–100) and pTM per sample from ``sedd.fold.ESMFoldBackend``; when it cannot
run (no weights, no network) its message is reported as ``"fold": {"error": ...}`` and the
other metrics stand.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time

from . import checkpoint as ckpt
from .data import Dataset, describe_dropped, read_fasta
from .hmm import HMM_NAME, family_metrics, load as load_hmm
from .likelihood import elbo_to_precision, length_nll
from .metrics import draw_samples, fold_metrics, infill_recovery, sample_metrics
from .report import json_safe, summary, write_report


# ---- command line ------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sedd.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="checkpoint directory or Hub repo id (default: the bundled model)")
    p.add_argument("--data", required=True, help="held-out FASTA")
    p.add_argument("--max-seqs", type=int, help="evaluate a seeded random subset of N sequences")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--t-samples", type=int, default=4, help="t samples per sequence in the first ELBO round")
    p.add_argument("--target-stderr", type=float, default=0.01, help="add t samples until the ELBO error is below this")
    p.add_argument("--max-t-samples", type=int, default=1024, help="stop adding t samples here")
    p.add_argument("--infill-fraction", type=float, default=0.3)
    p.add_argument("--batch-size", type=int, default=64, help="sequences per sampler batch")
    p.add_argument("--samples", type=int, help="draw N unconditional samples and score them (needs --reference)")
    p.add_argument("--reference", help="FASTA of reference (training) sequences for the sample metrics")
    p.add_argument("--hmm", help=f"family profile HMM for the sample metrics (default: {HMM_NAME} beside the checkpoint, if there)")
    p.add_argument("--fold", action="store_true", help="fold the samples with ESMFold (mean pLDDT, pTM)")
    p.add_argument("--report", help="write a Markdown report here (samples FASTA and histogram PNG beside it)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if (a.samples is None) != (a.reference is None):
        p.error("--samples and --reference go together")
    if a.fold and a.samples is None:
        p.error("--fold folds the samples: give --samples N --reference FASTA")
    for name in ("max_seqs", "samples", "t_samples", "max_t_samples", "batch_size"):
        value = getattr(a, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _load_data(path: str, model: ckpt.Checkpoint, max_seqs: int | None, seed: int) -> Dataset:
    data = read_fasta(path, model.alphabet, max_len=model.max_len)
    if data.num_dropped:
        print(f"note: {path}: {describe_dropped(data)}", file=sys.stderr)
    if max_seqs is not None and max_seqs < len(data):
        data = data.subset(sorted(random.Random(seed).sample(range(len(data)), max_seqs)))
    return data


def evaluate(a: argparse.Namespace) -> tuple[dict, list[str] | None]:
    """Run every requested metric; returns the result dict and the samples (if drawn)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    model = ckpt.load(a.checkpoint, device=a.device)
    data = _load_data(a.data, model, a.max_seqs, a.seed)
    result = {"checkpoint": str(model.source), "data": str(a.data), "seed": a.seed}
    lap("load")
    elbo = elbo_to_precision(model.model, data, model.schedule, model.alphabet.mask_id, t_samples=a.t_samples,
                             target_stderr=a.target_stderr, max_t_samples=a.max_t_samples, seed=a.seed, progress=True)
    result.update({k: v for k, v in elbo.items() if not k.startswith("per_sequence")})
    result["length_nats_per_residue"] = length_nll(model.length_histogram, data) if model.length_histogram else None
    lap("elbo")
    result.update(infill_recovery(model, data, fraction=a.infill_fraction, seed=a.seed, batch_size=a.batch_size,
                                  progress=True))
    lap("infill")
    samples = None
    if a.samples:
        reference_data = read_fasta(a.reference, model.alphabet)
        if reference_data.num_dropped:
            print(f"note: reference {a.reference}: {describe_dropped(reference_data)}", file=sys.stderr)
        references = [model.alphabet.decode(t) for t in reference_data.tokens]
        samples = draw_samples(model, a.samples, seed=a.seed, batch_size=max(a.batch_size, 128), progress=True)
        lap("sampling")
        result["samples"] = sample_metrics(samples, references, model.alphabet.residues, seed=a.seed, progress=True)
        hmm_path = a.hmm or ckpt.resolve(a.checkpoint) / HMM_NAME
        if a.hmm or hmm_path.is_file():
            naturals = [model.alphabet.decode(t) for t in data.tokens]
            result["samples"]["family_hmm"] = family_metrics(load_hmm(hmm_path), samples, naturals, seed=a.seed)
        lap("sample_metrics")
        if a.fold:
            result["fold"] = fold_metrics(samples, progress=True)
            lap("fold")
    result["seconds"] = {**timings, "total": round(sum(timings.values()), 2)}
    return result, samples


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    _check_args(p, a)
    try:
        result, samples = evaluate(a)
        if a.report:
            identities = result.get("samples", {}).get("nearest_identities")
            result["files"] = write_report(a.report, result, samples, identities)
    except (ValueError, OSError) as e:   # bad paths, bad checkpoints, empty FASTA: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(json_safe(result), allow_nan=False) if a.json else summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
