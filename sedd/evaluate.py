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
``--fold``: mean pLDDT (0–100) and pTM per sample from ``sedd.fold.ESMFoldBackend``; when it cannot
run (no weights, no network) its message is reported as ``"fold": {"error": ...}`` and the
other metrics stand.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .alphabet import Template
from .data import Dataset, bucketed_batches, collate, describe_dropped, read_fasta
from .loss import diffusion_loss
from .sample import Request, decode_rows, stream, templates_for, to_fasta
from .sampler import last_frame
from .schedule import LogLinearSchedule

MOTIF = r"G.VQG[VI].[FY]R"
GAP_PENALTY = (-10, -1)      # affine: opening a gap costs 10, each further position 1
KMER = 3
ALIGN_CANDIDATES = 20
MAX_PAIRS = 2000
T_SAMPLES_PER_ROUND = 64     # bounds one forward at ≤ 64 copies of a sequence


@torch.no_grad()
def estimate_elbo(model, data: Dataset, schedule: LogLinearSchedule, mask_id: int, t_samples: int = 4,
                  seed: int = 0, tokens_per_batch: int = 16384, device=None, progress: bool = False) -> dict:
    """Per-residue ELBO (nats) of ``data`` under ``model`` with its Monte Carlo standard error."""
    from tqdm.auto import tqdm

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    K = t_samples
    per_seq = torch.zeros(len(data), K, dtype=torch.float64)
    batches = bucketed_batches([len(t) for t in data.tokens], max(1, tokens_per_batch // K), seed)
    for batch in tqdm(batches, desc="ELBO", disable=not progress, leave=False):
        x0, lengths = collate([data.tokens[i] for i in batch], pad_id=mask_id + 1)
        B = len(batch)
        strata = (torch.arange(K).repeat(B) + torch.rand(B * K, generator=gen)) / K          # [B·K]
        t = schedule.eps + (1 - schedule.eps) * strata
        # one forward per (sequence, time): repeat each sequence K times
        nats = diffusion_loss(model, x0.repeat_interleave(K, 0).to(device), lengths.repeat_interleave(K).to(device),
                              schedule, mask_id, t=t.to(device), generator=None if device != torch.device("cpu") else gen)
        per_seq[batch] = nats.double().cpu().view(B, K)
    model.train(was_training)
    n_res = data.num_residues()
    elbo = per_seq.sum().item() / (K * n_res)
    var = per_seq.var(dim=1, unbiased=True).sum().item() / K if K > 1 else float("nan")
    return {"elbo_nats_per_residue": elbo, "elbo_stderr": math.sqrt(var) / n_res,
            "num_sequences": len(data), "num_residues": n_res, "t_samples": K}


def length_nll(length_histogram: dict[int, int], data: Dataset) -> float:
    """−log p(length) per residue under the (add-one smoothed) training length histogram."""
    lo, hi = min(length_histogram), max(length_histogram)
    support = range(min(lo, *(len(t) for t in data.tokens)), max(hi, *(len(t) for t in data.tokens)) + 1)
    total = sum(length_histogram.values()) + len(support)
    nll = sum(-math.log((length_histogram.get(len(t), 0) + 1) / total) for t in data.tokens)
    return nll / data.num_residues()


# ---- likelihood to a target precision --------------------------------------------------------------
def elbo_to_precision(model, data: Dataset, schedule: LogLinearSchedule, mask_id: int, *, t_samples: int = 4,
                      target_stderr: float = 0.01, max_t_samples: int = 1024, seed: int = 0, device=None,
                      progress: bool = False) -> dict:
    """``estimate_elbo`` repeated with fresh times until its standard error is below ``target_stderr``.

    Starts with ``t_samples`` times per sequence; each further round asks for the K the pooled
    variance predicts, K_needed = K·(SE/target)²·1.1, capped at ``max_t_samples`` in all (rounds
    combine as in the module docstring). Returns ``estimate_elbo``'s keys, ``t_samples`` = the
    total K, plus ``elbo_target_stderr`` and ``elbo_target_met``.
    """
    if t_samples < 2:
        raise ValueError(f"t_samples must be at least 2 to estimate a standard error, got {t_samples}")
    rounds: list[tuple[int, float, float]] = []              # (K_r, ELBO_r, SE_r)
    first, k_next = None, t_samples
    while True:
        k_r = min(k_next, T_SAMPLES_PER_ROUND)
        result = estimate_elbo(model, data, schedule, mask_id, t_samples=k_r, seed=seed + 7919 * len(rounds),
                               device=device, progress=progress)
        first = first or result
        rounds.append((k_r, result["elbo_nats_per_residue"], result["elbo_stderr"]))
        k_total = sum(k for k, _, _ in rounds)
        elbo = sum(k * e for k, e, _ in rounds) / k_total
        stderr = math.sqrt(sum((k * se) ** 2 for k, _, se in rounds)) / k_total
        if stderr < target_stderr or k_total >= max_t_samples:
            break
        k_needed = math.ceil(k_total * (stderr / target_stderr) ** 2 * 1.1)
        k_next = max(2, min(k_needed, max_t_samples) - k_total)
    return {**first, "elbo_nats_per_residue": elbo, "elbo_stderr": stderr, "t_samples": k_total,
            "elbo_target_stderr": target_stderr, "elbo_target_met": stderr < target_stderr}


# ---- infill recovery ---------------------------------------------------------------------------------
def mask_for_infill(tokens: list[int], mask_id: int, fraction: float, generator: torch.Generator) -> list[int]:
    """Template with round(fraction·n) positions (at least one) masked, chosen uniformly without replacement."""
    n = len(tokens)
    k = min(n, max(1, round(fraction * n)))
    template = list(tokens)
    for pos in torch.randperm(n, generator=generator)[:k].tolist():
        template[pos] = mask_id
    return template


def infill_recovery(model: ckpt.Checkpoint, data: Dataset, *, fraction: float = 0.3, seed: int = 0,
                    batch_size: int = 64, request: Request | None = None, progress: bool = False) -> dict:
    """Share of randomly masked residues the sampler restores exactly (see the module docstring).

    Sequences are sorted by length and infilled ``batch_size`` at a time (rows of different lengths
    share a batch); batch b uses sampler seed ``seed + b``. ``request`` supplies steps/temperature
    (default: ``Request``'s defaults). Returns ``infill_recovery``, ``infill_masked_residues``,
    ``infill_fraction`` and ``infill_steps``.
    """
    from tqdm.auto import tqdm

    if not 0 < fraction <= 1:
        raise ValueError(f"infill fraction must be in (0, 1], got {fraction}")
    mask_id = model.alphabet.mask_id
    gen = torch.Generator().manual_seed(seed)
    templates = [mask_for_infill(t, mask_id, fraction, gen) for t in data.tokens]
    order = sorted(range(len(data)), key=lambda i: len(data.tokens[i]))
    defaults = request or Request(templates=[])
    restored = masked = 0
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for b, chunk in enumerate(tqdm(chunks, desc="infill", disable=not progress, leave=False)):
        req = Request([Template(tuple(templates[i]), mask_id) for i in chunk], steps=defaults.steps,
                      temperature=defaults.temperature, seed=seed + b, use_cache=defaults.use_cache)
        frame = last_frame(stream(model, req))
        for row, i in enumerate(chunk):
            truth = torch.tensor(data.tokens[i])
            designed = torch.tensor(templates[i]) == mask_id
            restored += int((frame.tokens[row, :len(truth)].cpu()[designed] == truth[designed]).sum())
            masked += int(designed.sum())
    return {"infill_recovery": restored / masked, "infill_masked_residues": masked, "infill_fraction": fraction,
            "infill_steps": defaults.steps}


# ---- sequence identity -----------------------------------------------------------------------------
def _blosum62():
    from biotite.sequence.align import SubstitutionMatrix
    return SubstitutionMatrix.std_protein_matrix()


def alignment_identity(a: str, b: str, matrix=None) -> float:
    """Identical aligned pairs / min(len a, len b) of the optimal global alignment (BLOSUM62,
    affine gaps −10/−1, free end gaps). 1.0 for identical sequences."""
    from biotite.sequence import ProteinSequence
    from biotite.sequence.align import align_optimal

    if not a or not b:
        raise ValueError("cannot align an empty sequence")
    alignment = align_optimal(ProteinSequence(a), ProteinSequence(b), matrix or _blosum62(),
                              gap_penalty=GAP_PENALTY, terminal_penalty=False, max_number=1)[0]
    trace = alignment.trace                                              # [columns, 2], −1 = gap
    paired = trace[(trace[:, 0] >= 0) & (trace[:, 1] >= 0)]
    same = np.frombuffer(a.encode(), np.uint8)[paired[:, 0]] == np.frombuffer(b.encode(), np.uint8)[paired[:, 1]]
    return int(same.sum()) / min(len(a), len(b))


def _kmer_ids(seq: str, index: dict[str, int], size: int, k: int = KMER) -> np.ndarray:
    """Distinct k-mers of ``seq`` as integers in base ``size``; k-mers with characters outside ``index`` are skipped."""
    codes = np.array([index.get(ch, -1) for ch in seq], dtype=np.int64)
    if len(codes) < k:
        return np.zeros(0, np.int64)
    windows = np.stack([codes[j:len(codes) - k + 1 + j] for j in range(k)])      # [k, n−k+1]
    ids = (windows * size ** np.arange(k).reshape(-1, 1)).sum(0)
    return np.unique(ids[(windows >= 0).all(0)])


class NearestReference:
    """Approximate nearest reference by alignment identity: 3-mer prefilter, then align the top few.

    The prefilter scores reference r for query q by |K(q) ∩ K(r)| / min(|K(q)|, |K(r)|) with K the
    set of distinct 3-mers (an inverted index makes this one ``bincount`` per query); the
    ``candidates`` best-scoring references are aligned and the highest identity kept.
    """

    def __init__(self, references: list[str], residues: str, candidates: int = ALIGN_CANDIDATES):
        self.references = references
        self.candidates = candidates
        self.exact = {s: i for i, s in reversed(list(enumerate(references)))}
        self._index, self._size = {ch: i for i, ch in enumerate(residues)}, len(residues)
        kmers = [_kmer_ids(s, self._index, self._size) for s in references]
        self.num_kmers = np.array([len(k) for k in kmers], dtype=np.float64)
        owners = np.repeat(np.arange(len(references)), [len(k) for k in kmers])
        flat = np.concatenate(kmers) if kmers else np.zeros(0, np.int64)
        order = np.argsort(flat, kind="stable")
        self._owners = owners[order]                                     # postings, grouped by k-mer
        self._starts = np.searchsorted(flat[order], np.arange(self._size ** KMER + 1))
        self._matrix = _blosum62()

    def candidates_for(self, query: str) -> np.ndarray:
        """Indices of the references with the highest 3-mer similarity to ``query`` (best first)."""
        q = _kmer_ids(query, self._index, self._size)
        hits = [self._owners[self._starts[k]:self._starts[k + 1]] for k in q]
        shared = np.bincount(np.concatenate(hits) if hits else np.zeros(0, np.int64),
                             minlength=len(self.references)).astype(np.float64)
        score = shared / np.maximum(1.0, np.minimum(len(q), self.num_kmers))
        top = min(self.candidates, len(self.references))
        best = np.argpartition(-score, top - 1)[:top]
        return best[np.argsort(-score[best], kind="stable")]

    def nearest(self, query: str) -> tuple[float, int]:
        """(identity, reference index) of the nearest reference found."""
        if query in self.exact:
            return 1.0, self.exact[query]
        scored = [(alignment_identity(query, self.references[i], self._matrix), int(i)) for i in self.candidates_for(query)]
        return max(scored, key=lambda pair: (pair[0], -pair[1]))


# ---- sample metrics ----------------------------------------------------------------------------------
def composition_kl(data: list[str], samples: list[str], residues: str, pseudocount: float = 1.0) -> float:
    """KL(data ‖ samples) in nats over ``residues``, from residue counts + ``pseudocount``."""
    def dist(seqs: list[str]) -> np.ndarray:
        counts = Counter("".join(seqs))
        c = np.array([counts.get(r, 0) + pseudocount for r in residues], dtype=np.float64)
        return c / c.sum()
    p, q = dist(data), dist(samples)
    return float(np.sum(p * np.log(p / q)))


def motif_rate(sequences: list[str], pattern: str = MOTIF) -> float:
    """Share of sequences containing a match of ``pattern`` anywhere."""
    regex = re.compile(pattern)
    return sum(bool(regex.search(s)) for s in sequences) / len(sequences) if sequences else float("nan")


def mean_pairwise_identity(sequences: list[str], max_pairs: int = MAX_PAIRS, seed: int = 0,
                           progress: bool = False) -> tuple[float, int]:
    """Mean ``alignment_identity`` over all pairs, or over a seeded random subset of ``max_pairs`` pairs.

    Returns (mean identity, number of pairs used); NaN with fewer than two sequences.
    """
    from tqdm.auto import tqdm

    pairs = [(i, j) for i in range(len(sequences)) for j in range(i + 1, len(sequences))]
    if len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    if not pairs:
        return float("nan"), 0
    matrix = _blosum62()
    ids = [alignment_identity(sequences[i], sequences[j], matrix)
           for i, j in tqdm(pairs, desc="pairwise identity", disable=not progress, leave=False)]
    return float(np.mean(ids)), len(pairs)


def sample_metrics(samples: list[str], references: list[str], residues: str, *, seed: int = 0,
                   progress: bool = False) -> dict:
    """Validity, novelty, nearest-reference identity, diversity, composition KL and motif rate.

    ``nearest_identities`` holds one value per valid sample (for the histogram).
    """
    from tqdm.auto import tqdm

    if not samples or not references:
        raise ValueError("sample metrics need at least one sample and one reference sequence")
    allowed = set(residues)
    valid = [s for s in samples if s and set(s) <= allowed]
    out = {"num_samples": len(samples), "validity": len(valid) / len(samples),
           "motif_rate": motif_rate(samples), "reference_motif_rate": motif_rate(references),
           "composition_kl": composition_kl(references, valid, residues) if valid else float("nan")}
    if not valid:
        return {**out, "novelty": float("nan"), "median_nearest_identity": float("nan"),
                "mean_pairwise_identity": float("nan"), "pairs": 0, "nearest_identities": []}
    search = NearestReference(references, residues)
    nearest = [search.nearest(s)[0] for s in tqdm(valid, desc="nearest reference", disable=not progress, leave=False)]
    reference_set = set(references)
    pairwise, n_pairs = mean_pairwise_identity(valid, seed=seed, progress=progress)
    return {**out, "novelty": sum(s not in reference_set for s in valid) / len(valid),
            "median_nearest_identity": float(np.median(nearest)), "mean_pairwise_identity": pairwise,
            "pairs": n_pairs, "nearest_identities": nearest}


def draw_samples(model: ckpt.Checkpoint, num_samples: int, *, seed: int = 0, batch_size: int = 128,
                 progress: bool = False) -> list[str]:
    """Unconditional samples, lengths from the checkpoint's histogram, default sampler settings."""
    from tqdm.auto import tqdm

    templates = templates_for(model, length="auto", num_samples=num_samples, seed=seed)
    sequences: list[str] = []
    for b in range(0, num_samples, batch_size):
        request = Request(templates[b:b + batch_size], seed=seed + b // batch_size)
        frame = last_frame(tqdm(stream(model, request), total=request.steps + 1, disable=not progress, leave=False,
                                desc=f"sampling {b + 1}–{min(num_samples, b + batch_size)} of {num_samples}"))
        sequences += decode_rows(model, frame, [len(t) for t in request.templates])
    return sequences


def fold_metrics(sequences: list[str], progress: bool = False) -> dict:
    """Mean pLDDT (0–100) and pTM per sequence via ESMFold, or ``{"error": message}`` when it cannot run."""
    from tqdm.auto import tqdm

    try:
        from .fold import ESMFoldBackend, FoldError
    except ImportError as e:   # the backend module or its dependencies are missing: say so, keep the rest
        return {"error": f"structure prediction is not available: {e}"}
    backend, results, failures = ESMFoldBackend(), [], []
    for seq in tqdm(sequences, desc="folding", disable=not progress, leave=False):
        try:
            results.extend(backend.fold([seq]))
        except FoldError as e:
            if getattr(e, "reason", "failed") in ("no_weights", "no_network"):   # nothing will fold: stop here
                return {"error": str(e)}
            failures.append({"sequence": seq, "error": str(e)})                   # this sequence only
    ptms = [r.ptm for r in results if r.ptm is not None]
    return {"mean_plddt": float(np.mean([r.mean_plddt for r in results])) if results else None,
            "mean_ptm": float(np.mean(ptms)) if ptms else None, "folded": len(results),
            "per_sample": [{"sequence": r.sequence, "mean_plddt": r.mean_plddt, "ptm": r.ptm} for r in results],
            "failures": failures}


# ---- report --------------------------------------------------------------------------------------
def _histogram(identities: list[float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.hist(identities, bins=np.linspace(0, 1, 41), color="#4c72b0", edgecolor="white")
    if identities:
        ax.axvline(float(np.median(identities)), color="black", ls="--", lw=1, label="median")
        ax.legend(fontsize=8)
    ax.set_xlabel("identity to the nearest reference sequence")
    ax.set_ylabel("samples")
    fig.tight_layout()
    ckpt.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _fmt(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_report(path: str | Path, result: dict, samples: list[str] | None = None,
                 identities: list[float] | None = None) -> dict[str, str]:
    """Markdown report at ``path``; with samples also ``<stem>_samples.fasta`` and ``<stem>_identity.png`` beside it."""
    path = Path(path)
    written: dict[str, str] = {}
    lines = [f"# Evaluation of `{result['checkpoint']}`", "",
             f"Held-out data: `{result['data']}` — {result['num_sequences']} sequences, "
             f"{result['num_residues']} residues.", "",
             "| metric | value |", "|---|---|",
             f"| ELBO, −log p(residues \\| length) | {_fmt(result['elbo_nats_per_residue'])} ± "
             f"{_fmt(result['elbo_stderr'])} nats/residue (K = {result['t_samples']} t samples"
             f"{'' if result['elbo_target_met'] else ', target error not reached'}) |",
             f"| −log p(length) | {_fmt(result['length_nats_per_residue'])} nats/residue |",
             f"| infill recovery ({result['infill_fraction']:.0%} masked) | {_fmt(result['infill_recovery'])} "
             f"({result['infill_masked_residues']} masked residues) |"]
    sample_stats = result.get("samples")
    if sample_stats and samples is not None:
        fasta = path.with_name(f"{path.stem}_samples.fasta")
        png = path.with_name(f"{path.stem}_identity.png")
        ckpt.atomic_write_text(fasta, to_fasta(samples, prefix="sample"))
        _histogram(identities or [], png)
        written.update(samples_fasta=str(fasta), identity_histogram=str(png))
        lines += [f"| samples | {sample_stats['num_samples']} ([FASTA]({fasta.name})) |",
                  f"| validity | {_fmt(sample_stats['validity'])} |",
                  f"| novelty (not identical to a reference) | {_fmt(sample_stats['novelty'])} |",
                  f"| median identity to nearest reference | {_fmt(sample_stats['median_nearest_identity'])} |",
                  f"| mean pairwise identity ({sample_stats['pairs']} pairs) | "
                  f"{_fmt(sample_stats['mean_pairwise_identity'])} |",
                  f"| composition KL(data ‖ samples) | {_fmt(sample_stats['composition_kl'], 4)} nats |",
                  f"| motif `{MOTIF}` rate (references) | {_fmt(sample_stats['motif_rate'])} "
                  f"({_fmt(sample_stats['reference_motif_rate'])}) |"]
    fold = result.get("fold")
    if fold:
        lines.append(f"| ESMFold | {fold['error']} |" if "error" in fold else
                     f"| ESMFold mean pLDDT / pTM ({fold['folded']} folded) | {_fmt(fold['mean_plddt'], 1)} / "
                     f"{_fmt(fold['mean_ptm'])} |")
    if "identity_histogram" in written:
        lines += ["", f"![identity to the nearest reference]({Path(written['identity_histogram']).name})"]
    lines += ["", f"Seed {result['seed']}. Identity = identical aligned pairs / length of the shorter sequence "
              "(global alignment, BLOSUM62); the nearest reference is searched among the 20 references sharing "
              "the most 3-mers. Full definitions: `sedd/evaluate.py` (module docstring).", ""]
    ckpt.atomic_write_text(path, "\n".join(lines))
    written["report"] = str(path)
    return written


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
    result.update(elbo_to_precision(model.model, data, model.schedule, model.alphabet.mask_id, t_samples=a.t_samples,
                                    target_stderr=a.target_stderr, max_t_samples=a.max_t_samples, seed=a.seed,
                                    progress=True))
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
        lap("sample_metrics")
        if a.fold:
            result["fold"] = fold_metrics(samples, progress=True)
            lap("fold")
    result["seconds"] = {**timings, "total": round(sum(timings.values()), 2)}
    return result, samples


def _summary(result: dict) -> str:
    lines = [f"ELBO             {result['elbo_nats_per_residue']:.4f} ± {result['elbo_stderr']:.4f} nats/residue "
             f"(K = {result['t_samples']}; {result['num_sequences']} sequences, {result['num_residues']} residues)",
             f"−log p(length)   {_fmt(result['length_nats_per_residue'], 4)} nats/residue",
             f"infill recovery  {result['infill_recovery']:.4f} ({result['infill_masked_residues']} masked residues)"]
    s = result.get("samples")
    if s:
        lines.append(f"samples          {s['num_samples']}: validity {s['validity']:.3f}, novelty {_fmt(s['novelty'])}, "
                     f"median nearest identity {_fmt(s['median_nearest_identity'])}, mean pairwise identity "
                     f"{_fmt(s['mean_pairwise_identity'])}, composition KL {_fmt(s['composition_kl'], 4)}, "
                     f"motif rate {s['motif_rate']:.3f} (references {s['reference_motif_rate']:.3f})")
    fold = result.get("fold")
    if fold:
        lines.append(f"fold             {fold['error']}" if "error" in fold else
                     f"fold             {fold['folded']} folded: mean pLDDT {_fmt(fold['mean_plddt'], 1)}, "
                     f"mean pTM {_fmt(fold['mean_ptm'])}")
    return "\n".join(lines)


def _json_safe(value):
    """NaN/inf → None, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


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
    print(json.dumps(_json_safe(result), allow_nan=False) if a.json else _summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
