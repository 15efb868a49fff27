"""Infill recovery and sample-quality metrics (definitions in ``sedd/evaluate.py``'s docstring).
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter

import numpy as np
import torch

from . import checkpoint as ckpt
from .alphabet import Template
from .data import Dataset
from .design import Request, decode_rows, stream
from .sampler import MAX_SEED, last_frame

MOTIF = r"G.VQG[VI].[FY]R"
GAP_PENALTY = (-10, -1)      # affine: opening a gap costs 10, each further position 1
KMER = 3
ALIGN_CANDIDATES = 100       # references aligned per query from each of the two prefilters (NearestReference)
CO_OPTIMAL = 1000            # equally scoring alignments searched for the most identical pairs
NEAREST_SEARCH = (f"the {ALIGN_CANDIDATES} references sharing the most 3-mers and the {ALIGN_CANDIDATES} with the "
                  "most identical residues on one ungapped diagonal")
MAX_PAIRS = 2000
REPEAT_RUN = 5               # a single residue repeated this many times counts as a low-complexity repeat


def _batch_seed(seed: int, b: int) -> int:
    """The evaluations' seed of batch b: ``seed + b``, wrapped into the sampler's range, so that the
    largest seeds run (they failed at the second batch). Seeds b apart share batches; the stored
    figures were drawn this way, so it stays (``design.batch_seed`` is the way that avoids it)."""
    return (seed + b) % (MAX_SEED + 1)


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
    share a batch); batch b uses sampler seed ``seed + b`` (``_batch_seed``). ``request`` supplies
    steps/temperature (default: ``Request``'s defaults). Returns ``infill_recovery``, ``infill_masked_residues``,
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
                      temperature=defaults.temperature, seed=_batch_seed(seed, b), use_cache=defaults.use_cache)
        frame = last_frame(stream(model, req))
        for row, i in enumerate(chunk):
            truth = torch.tensor(data.tokens[i])
            designed = torch.tensor(templates[i]) == mask_id
            restored += int((frame.tokens[row, :len(truth)].cpu()[designed] == truth[designed]).sum())
            masked += int(designed.sum())
    return {"infill_recovery": restored / masked, "infill_masked_residues": masked, "infill_fraction": fraction,
            "infill_steps": defaults.steps}


# ---- sequence identity -----------------------------------------------------------------------------
MATCH_MISMATCH = (5, -4)      # the scores of an alphabet that is not protein letters (biotite has no matrix for it)


class IdentityScoring:
    """How ``alignment_identity`` scores an alignment of an alphabet's sequences: BLOSUM62 where the
    residues are protein letters (read in either case, as everywhere), else ``MATCH_MISMATCH`` over the
    alphabet's own characters, case kept (§10: a model of any alphabet; BLOSUM62 alone made the sample
    metrics of a text model fail, after its sampling, on the first letter outside it)."""

    def __init__(self, residues: str | None = None):
        from biotite.sequence import Alphabet, ProteinSequence
        from biotite.sequence.align import SubstitutionMatrix

        # protein letters, and no two residues that differ only in case (an alphabet that tells them apart)
        # (A, C, G, T/U alone are nucleotides, though protein letters too: BLOSUM62 would misscore them)
        self.protein = residues is None or (set(residues.upper()) <= set(ProteinSequence.alphabet.get_symbols())
                                            and len(set(residues.upper())) == len(set(residues))
                                            and not set(residues.upper()) <= set("ACGTUN"))
        if self.protein:
            self.matrix = SubstitutionMatrix.std_protein_matrix()
        else:
            alphabet = Alphabet(sorted(set(residues)))
            scores = np.full((len(alphabet), len(alphabet)), MATCH_MISMATCH[1], dtype=np.int32)
            np.fill_diagonal(scores, MATCH_MISMATCH[0])
            self.matrix = SubstitutionMatrix(alphabet, alphabet, scores)

    @property
    def name(self) -> str:
        """What the report says the alignments were scored with."""
        return "BLOSUM62" if self.protein else f"match {MATCH_MISMATCH[0]:+d}, mismatch {MATCH_MISMATCH[1]:+d}"

    def prepared(self, text: str) -> str:
        return text.upper() if self.protein else text

    def sequence(self, text: str):
        from biotite.sequence import GeneralSequence, ProteinSequence
        return ProteinSequence(text) if self.protein else GeneralSequence(self.matrix.get_alphabet1(), text)


def alignment_identity(a: str, b: str, scoring: IdentityScoring | None = None) -> float:
    """Identical aligned pairs / min(len a, len b) of the optimal global alignment (``scoring``:
    BLOSUM62 by default; affine gaps −10/−1, free end gaps). 1.0 for identical sequences.

    Equally scoring alignments can pair different residues, and which one a traceback returns
    depends on the argument order; so the identity is that of the one with the most identical pairs
    (of up to ``CO_OPTIMAL`` of them, the pair taken in a fixed order): identity(a, b) = identity(b, a).
    """
    from biotite.sequence.align import align_optimal

    if not a or not b:
        raise ValueError("cannot align an empty sequence")
    scoring = scoring or IdentityScoring()
    a, b = sorted((scoring.prepared(a), scoring.prepared(b)))
    codes = np.array([ord(c) for c in a]), np.array([ord(c) for c in b])     # characters, not UTF-8 bytes
    best = 0
    for alignment in align_optimal(scoring.sequence(a), scoring.sequence(b), scoring.matrix,
                                   gap_penalty=GAP_PENALTY, terminal_penalty=False, max_number=CO_OPTIMAL):
        trace = alignment.trace                                          # [columns, 2], −1 = gap
        paired = trace[(trace[:, 0] >= 0) & (trace[:, 1] >= 0)]
        best = max(best, int((codes[0][paired[:, 0]] == codes[1][paired[:, 1]]).sum()))
    return best / min(len(a), len(b))


def _kmer_ids(seq: str, index: dict[str, int], size: int, k: int = KMER) -> np.ndarray:
    """Distinct k-mers of ``seq`` as integers in base ``size``; k-mers with characters outside ``index`` are skipped."""
    codes = np.array([index.get(ch, -1) for ch in seq], dtype=np.int64)
    if len(codes) < k:
        return np.zeros(0, np.int64)
    windows = np.stack([codes[j:len(codes) - k + 1 + j] for j in range(k)])      # [k, n−k+1]
    ids = (windows * size ** np.arange(k).reshape(-1, 1)).sum(0)
    return np.unique(ids[(windows >= 0).all(0)])


class NearestReference:
    """Approximate nearest reference by alignment identity: two cheap prefilters, then align their top few.

    - shared words: reference r scores |K(q) ∩ K(r)| / min(|K(q)|, |K(r)|) for query q, K the set of
      distinct 3-mers (an inverted index makes this one ``bincount`` per query);
    - best diagonal: identical residues on the best ungapped diagonal (any offset, overhangs free) /
      min(len q, len r). At the family's ~50 % identity a substitution every few residues breaks most
      3-mers, and the shared-word ranking alone often misses the nearest reference.
    The ``candidates`` best references of each prefilter are aligned and the highest identity kept.
    On the first 8 of the bundled model's evaluation samples, against all 23,393 training sequences,
    this finds the exhaustive maximum for 7 (mean shortfall 0.0014); the 3-mer prefilter alone with
    20 candidates, used before, found it for 4 (0.0195) (``benchmarks/nearest_search.py``).
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
        self.lengths = np.array([len(s) for s in references], dtype=np.float64)
        # residue codes, padded with OFF_REFERENCE; characters outside ``residues`` never match either
        self._codes = np.full((len(references), max(map(len, references), default=1)), self._OFF_REFERENCE, np.uint8)
        for i, s in enumerate(references):
            self._codes[i, :len(s)] = [self._index.get(ch, self._OFF_REFERENCE) for ch in s]
        self._scoring = IdentityScoring(residues)

    _OFF_REFERENCE, _OFF_QUERY = 255, 254

    def _top(self, score: np.ndarray) -> np.ndarray:
        top = min(self.candidates, len(self.references))
        best = np.argpartition(-score, top - 1)[:top]
        return best[np.argsort(-score[best], kind="stable")]

    def candidates_for(self, query: str) -> np.ndarray:
        """Indices of the references with the highest 3-mer similarity to ``query`` (best first)."""
        q = _kmer_ids(query, self._index, self._size)
        hits = [self._owners[self._starts[k]:self._starts[k + 1]] for k in q]
        shared = np.bincount(np.concatenate(hits) if hits else np.zeros(0, np.int64),
                             minlength=len(self.references)).astype(np.float64)
        return self._top(shared / np.maximum(1.0, np.minimum(len(q), self.num_kmers)))

    def diagonal_candidates(self, query: str) -> np.ndarray:
        """Indices of the references with the most identical residues on one ungapped diagonal, as a
        share of the shorter sequence (best first)."""
        q = [self._index.get(ch, self._OFF_QUERY) for ch in query]
        n, width = len(q), self._codes.shape[1]
        diagonals = np.zeros((len(self.references), n - 1 + width), np.int16)   # column n−1−i+j: q_i against r_j
        for residue in set(q):
            same = self._codes == residue                                         # [N, width]
            for i in (i for i, c in enumerate(q) if c == residue):
                diagonals[:, n - 1 - i:n - 1 - i + width] += same
        return self._top(diagonals.max(1) / np.minimum(n, self.lengths))

    def nearest(self, query: str) -> tuple[float, int]:
        """(identity, reference index) of the nearest reference found."""
        if query in self.exact:
            return 1.0, self.exact[query]
        found = np.union1d(self.candidates_for(query), self.diagonal_candidates(query))
        scored = [(alignment_identity(query, self.references[i], self._scoring), int(i)) for i in found]
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


def composition_kl_floor(num_residues: int, alphabet_size: int) -> float:
    """The composition KL that ``num_residues`` residues drawn from the data itself score, in
    expectation: (V − 1)/(2N) to first order (Miller and Madow). ``composition_kl`` compares counts,
    so it is never 0 for a finite sample, and a value near this floor cannot be told from a perfect
    match at that sample size (256 ACYP samples: ≈ 0.0004 nats). The first-order term ignores the
    pseudocounts, which shrink the KL of a few residues: it overstates the floor below about 1,000
    residues (by a third at 100, the size of one or two short samples) and matches it above."""
    return (alphabet_size - 1) / (2 * num_residues)


def motif_hits(sequences: list[str], pattern: str = MOTIF) -> list[bool]:
    """For each sequence, whether it contains a match of ``pattern`` anywhere."""
    regex = re.compile(pattern)
    return [bool(regex.search(s)) for s in sequences]


def motif_rate(sequences: list[str], pattern: str = MOTIF) -> float:
    """Share of sequences containing a match of ``pattern`` anywhere."""
    return sum(motif_hits(sequences, pattern)) / len(sequences) if sequences else float("nan")


def binomial_stderr(rate: float, n: int) -> float:
    """Standard error of a share ``rate`` of ``n`` independent draws: √(p(1 − p)/n)."""
    return math.sqrt(rate * (1 - rate) / n)


Z95 = 1.959963984540054      # the standard normal's 97.5th percentile


def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion: sound near 0 and 1, where p ± z·SE shrinks
    to the point itself (0 hits in 50 is not a certain 0)."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)       # 0 hits: -7e-18 would print as "-0.000"


def mean_pairwise_identity(sequences: list[str], max_pairs: int = MAX_PAIRS, seed: int = 0,
                           progress: bool = False, residues: str | None = None) -> tuple[float, int]:
    """Mean ``alignment_identity`` over all pairs, or over a seeded random subset of ``max_pairs`` pairs.

    Returns (mean identity, number of pairs used); NaN with fewer than two sequences.
    """
    from tqdm.auto import tqdm

    pairs = [(i, j) for i in range(len(sequences)) for j in range(i + 1, len(sequences))]
    if len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    if not pairs:
        return float("nan"), 0
    scoring = IdentityScoring(residues)
    ids = [alignment_identity(sequences[i], sequences[j], scoring)
           for i, j in tqdm(pairs, desc="pairwise identity", disable=not progress, leave=False)]
    return float(np.mean(ids)), len(pairs)


def sample_metrics(samples: list[str], references: list[str], residues: str, *, seed: int = 0,
                   progress: bool = False, motif: str = MOTIF) -> dict:
    """Validity, novelty, nearest-reference identity, diversity, composition KL, motif rate, repeats.

    ``nearest_identities`` holds one value per valid sample (for the histogram); ``nearest_search``
    says which references were aligned to find them; ``motif`` is the pattern of the motif rates
    (ACYP's catalytic motif unless given).
    """
    from tqdm.auto import tqdm

    if not samples or not references:
        raise ValueError("sample metrics need at least one sample and one reference sequence")
    allowed = set(residues)
    valid = [s for s in samples if s and set(s) <= allowed]
    out = {"num_samples": len(samples), "validity": len(valid) / len(samples), **low_complexity(samples),
           "identity_scoring": IdentityScoring(residues).name,
           "motif": motif, "motif_rate": motif_rate(samples, motif),
           "reference_motif_rate": motif_rate(references, motif),
           "composition_kl": composition_kl(references, valid, residues) if valid else float("nan"),
           "composition_kl_floor": composition_kl_floor(sum(map(len, valid)), len(residues)) if valid else float("nan")}
    if not valid:
        return {**out, "novelty": float("nan"), "median_nearest_identity": float("nan"),
                "mean_pairwise_identity": float("nan"), "pairs": 0, "nearest_identities": [],
                "nearest_search": NEAREST_SEARCH}
    search = NearestReference(references, residues)
    nearest = [search.nearest(s)[0] for s in tqdm(valid, desc="nearest reference", disable=not progress, leave=False)]
    reference_set = set(references)
    pairwise, n_pairs = mean_pairwise_identity(valid, seed=seed, progress=progress, residues=residues)
    return {**out, "novelty": sum(s not in reference_set for s in valid) / len(valid),
            "median_nearest_identity": float(np.median(nearest)), "mean_pairwise_identity": pairwise,
            "pairs": n_pairs, "nearest_identities": nearest, "nearest_search": NEAREST_SEARCH}


def longest_run(sequence: str) -> int:
    """Length of the longest stretch of one repeated residue (0 for an empty sequence)."""
    return max((len(m.group()) for m in re.finditer(r"(.)\1*", sequence)), default=0)


def low_complexity(sequences: list[str], threshold: int = REPEAT_RUN) -> dict:
    """Longest single-residue run: mean and maximum over ``sequences``, and the share with a run ≥ ``threshold``."""
    if not sequences:
        raise ValueError("low-complexity metrics need at least one sequence")
    runs = [longest_run(s) for s in sequences]
    return {"mean_longest_run": float(np.mean(runs)), "max_longest_run": int(max(runs)),
            "repeat_rate": sum(r >= threshold for r in runs) / len(runs), "repeat_run": threshold}


def evaluation_templates(model: ckpt.Checkpoint, num_samples: int, seed: int) -> list[Template]:
    """All-designed templates, lengths drawn from the checkpoint's histogram with ``seed`` itself, as
    every stored evaluation figure was drawn. The first sampling batch also starts from ``seed``, so
    design j's length shares a random number with the first-step reveal of position j in that
    batch's first row. At the evaluation's 128 steps that reveal has probability 1/128, so the
    coupling is kept for the stored figures to reproduce; user requests draw their lengths from a
    stream of their own (``design.stream_seed``)."""
    lengths = model.sample_lengths(num_samples, torch.Generator().manual_seed(seed))
    return [Template((model.alphabet.mask_id,) * n, model.alphabet.mask_id) for n in lengths]


def draw_samples(model: ckpt.Checkpoint, num_samples: int, *, seed: int = 0, batch_size: int = 128,
                 progress: bool = False) -> list[str]:
    """Unconditional samples, lengths from the checkpoint's histogram, default sampler settings."""
    from tqdm.auto import tqdm

    templates = evaluation_templates(model, num_samples, seed)
    sequences: list[str] = []
    for b in range(0, num_samples, batch_size):
        request = Request(templates[b:b + batch_size], seed=_batch_seed(seed, b // batch_size))
        frame = last_frame(tqdm(stream(model, request), total=request.steps + 1, disable=not progress, leave=False,
                                desc=f"sampling {b + 1}–{min(num_samples, b + batch_size)} of {num_samples}"))
        sequences += decode_rows(model, frame, [len(t) for t in request.templates])
    return sequences


def fold_metrics(sequences: list[str], progress: bool = False, device: str | torch.device | None = None) -> dict:
    """Mean pLDDT (0–100) and pTM per sequence via ESMFold, or ``{"error": message}`` when it cannot run.

    device: where ESMFold runs (``None``: the first GPU when there is one, else the CPU).
    """
    from tqdm.auto import tqdm

    try:
        from .fold import ESMFoldBackend, FoldError
    except ImportError as e:   # the backend module or its dependencies are missing: say so, keep the rest
        return {"error": f"structure prediction is not available: {e}"}
    backend, results, failures = ESMFoldBackend(device=device), [], []
    for seq in tqdm(sequences, desc="folding", disable=not progress, leave=False):
        try:
            results.extend(backend.fold([seq]))
        except FoldError as e:
            if e.fails_every_sequence:                                           # nothing will fold: stop here
                return {"error": str(e)}
            failures.append({"sequence": seq, "error": str(e)})                   # this sequence only
    ptms = [r.ptm for r in results if r.ptm is not None]
    return {"mean_plddt": float(np.mean([r.mean_plddt for r in results])) if results else None,
            "mean_ptm": float(np.mean(ptms)) if ptms else None, "folded": len(results),
            "per_sample": [{"sequence": r.sequence, "mean_plddt": r.mean_plddt, "ptm": r.ptm} for r in results],
            "failures": failures}


