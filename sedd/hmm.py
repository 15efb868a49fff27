"""Family membership by a profile HMM (HMMER3 via pyhmmer): a metric that does not come from our model.

    python -m sedd.hmm --train train.fasta --out checkpoints/acyp/family.hmm

Building. A representative training sequence (an approximate medoid: among a seeded sample of
``sample`` training sequences, the one sharing the most distinct 3-mers with the others, as a share
of the smaller 3-mer set) seeds ``jackhmmer`` against all training sequences for ``iterations``
rounds; the last round's HMM is the family model, stored as ``family.hmm`` beside the checkpoint.

Scoring. Each sequence is scored against the HMM with HMMER's filters off (biased-composition null2
correction on) and E-values computed with Z = 1, i.e. per sequence (so a sequence's E-value and
verdict do not depend on how many sequences are scored with it). A sequence in which HMMER finds
no domain at all (common for shuffled ones) is not reported; it gets −inf bits and E = inf, so it
is no hit and sits below every scored sequence in the medians:
- ``hit_rate``: share of sequences with E ≤ 1e-5;
- ``bits_ratio``: median bit score of the samples / median bit score of held-out natural sequences;
- the same two numbers for a shuffled control: each sample's residues permuted (seeded), which
  keeps composition and length and destroys the family — it must score ≈ 0.
"""
from __future__ import annotations

import argparse
import functools
import random
import sys
from pathlib import Path

import numpy as np

HIT_EVALUE = 1e-5
HMM_NAME = "family.hmm"          # beside the checkpoint, where sedd.evaluate finds it


@functools.cache
def _amino():
    """One shared amino-acid alphabet: pyhmmer objects keep pointers into it, so it must outlive them."""
    from pyhmmer import easel
    return easel.Alphabet.amino()


def _digital(sequences: list[str]):
    from pyhmmer import easel

    alphabet = _amino()
    seqs = [easel.TextSequence(name=f"s{i}".encode(), sequence=s).digitize(alphabet) for i, s in enumerate(sequences)]
    return easel.DigitalSequenceBlock(alphabet, seqs)


def _kmers(seq: str, k: int = 3) -> set[str]:
    return {seq[i:i + k] for i in range(len(seq) - k + 1)}


def representative(sequences: list[str], sample: int = 500, seed: int = 0) -> str:
    """Approximate medoid: the sampled sequence with the highest mean 3-mer overlap with the others."""
    if not sequences:
        raise ValueError("cannot build a family HMM from no sequences")
    pool = random.Random(seed).sample(sequences, min(sample, len(sequences)))
    sets = [_kmers(s) for s in pool]

    def overlap(a: set, b: set) -> float:
        return len(a & b) / max(1, min(len(a), len(b)))
    scores = [sum(overlap(a, b) for b in sets) for a in sets]
    return pool[int(np.argmax(scores))]


def build(sequences: list[str], *, iterations: int = 3, seed: int = 0, progress: bool = False):
    """A ``pyhmmer.plan7.HMM`` of the family: jackhmmer from ``representative`` against ``sequences``."""
    from pyhmmer import hmmer
    from tqdm.auto import tqdm

    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    query = _digital([representative(sequences, seed=seed)])[0]
    query.name = b"family"
    block = _digital(sequences)
    result = None
    for result in tqdm(hmmer.jackhmmer(query, block, max_iterations=iterations, cpus=1), total=iterations,
                       desc="jackhmmer", disable=not progress, leave=False):
        pass
    hmm = result.hmm
    hmm.name = b"family"
    return hmm


def save(hmm, path: str | Path) -> Path:
    """Write the HMM in HMMER3 text format, atomically."""
    from .checkpoint import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            hmm.write(f)
    atomic_write(Path(path), write)
    return Path(path)


def check_file(path: str | Path) -> Path:
    """``path`` if it is a file, else a ValueError saying how to build one: cheap, so callers check it
    before their slow work rather than fail after it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no profile HMM at {path}; build one with python -m sedd.hmm --train FASTA --out {path}")
    return path


def load(path: str | Path):
    from pyhmmer import plan7

    path = check_file(path)
    try:
        with plan7.HMMFile(str(path)) as f:
            hmm, more = f.read(), f.read()
    except (ValueError, EOFError) as e:     # pyhmmer's "format not recognized", "HMM file is empty"
        raise ValueError(f"{path} is not a HMMER3 profile HMM ({e}); build one with python -m sedd.hmm") from e
    # a database (Pfam-A.hmm, say) read fine and silently scored against its first profile only
    if more is not None:
        raise ValueError(f"{path} holds more than one profile HMM ({hmm.name}, {more.name}, …); "
                         "the family metric scores against one: give that family's HMM alone (hmmfetch extracts one)")
    # a DNA or RNA HMM reads fine and fails only when the first protein is scored (after the slow work)
    if not hmm.alphabet.is_amino():
        raise ValueError(f"{path} is a {hmm.alphabet.type} profile HMM; the family metric scores proteins: "
                         "give a protein HMM (python -m sedd.hmm builds one)")
    return hmm


def bit_scores(hmm, sequences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(bit score, E-value at Z = 1) per sequence, in input order; filters off. A sequence HMMER reports
    no domain in gets (−inf, inf)."""
    from pyhmmer import plan7

    if not sequences:
        return np.zeros(0), np.zeros(0)
    block = _digital(sequences)
    pipeline = plan7.Pipeline(hmm.alphabet, Z=1, E=1e300, F1=1.0, F2=1.0, F3=1.0, bias_filter=False)
    bits, evalues = np.full(len(sequences), -np.inf), np.full(len(sequences), np.inf)
    for hit in pipeline.search_hmm(hmm, block):
        i = int(hit.name[1:])          # names are s{index}
        bits[i], evalues[i] = hit.score, hit.evalue
    return bits, evalues


def shuffled(sequences: list[str], seed: int = 0) -> list[str]:
    """Each sequence's residues in a seeded random order (same composition and length)."""
    rng = random.Random(seed)
    return ["".join(rng.sample(s, len(s))) for s in sequences]


def natural_scores(hmm, naturals: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``bit_scores`` of the held-out naturals; a ValueError when their median is not above 0 bits (the HMM
    is not their family). Cheap: callers check it before their slow work, not after it."""
    if not naturals:
        raise ValueError("the HMM metric needs at least one natural sequence")
    bits, evalues = bit_scores(hmm, naturals)
    reference = float(np.median(bits))
    if not reference > 0:
        raise ValueError(f"held-out naturals score a median {reference:.1f} bits against this HMM: it is not their family")
    return bits, evalues


def family_metrics(hmm, samples: list[str], naturals: list[str], seed: int = 0,
                   natural: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """HMM hit rate and bits ratio of ``samples`` (and of their shuffled control) against ``naturals``;
    ``natural``: ``natural_scores(hmm, naturals)`` when the caller has it already. A sequence without
    a domain scores −inf bits, so when most have none the median and the ratio are −inf (null in
    ``--json``; the report says "none")."""
    if not samples or not naturals:
        raise ValueError("the HMM metric needs at least one sample and one natural sequence")
    natural_bits, natural_e = natural if natural is not None else natural_scores(hmm, naturals)
    reference = float(np.median(natural_bits))

    def summary(seqs: list[str]) -> dict:
        bits, evalues = bit_scores(hmm, seqs)
        return {"hit_rate": float(np.mean(evalues <= HIT_EVALUE)), "median_bits": float(np.median(bits)),
                "bits_ratio": float(np.median(bits) / reference)}
    return {**summary(samples), "natural_hit_rate": float(np.mean(natural_e <= HIT_EVALUE)),
            "natural_median_bits": reference, "hit_evalue": HIT_EVALUE,
            "shuffled": summary(shuffled(samples, seed))}


def main(argv: list[str] | None = None) -> int:
    from .cli import COUNT, SEED, refuse_overwriting_inputs
    p = argparse.ArgumentParser(prog="python -m sedd.hmm", description="Build the family profile HMM from training sequences.")
    p.add_argument("--train", required=True, help="FASTA of training sequences")
    p.add_argument("--out", required=True, help=f"where to write the HMM (by convention {HMM_NAME} beside the checkpoint)")
    p.add_argument("--iterations", type=COUNT, default=3, help="jackhmmer rounds (default 3)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the representative's sample (default 0)")
    a = p.parse_args(argv)
    from .alphabet import PROTEIN
    from .checkpoint import check_writable
    from .data import describe_dropped, read_fasta
    try:
        check_writable(a.out, "--out")          # before jackhmmer, not after it
        refuse_overwriting_inputs({"--out": a.out}, {"--train": a.train})
        data = read_fasta(a.train, PROTEIN)
        if data.num_dropped:
            print(f"note: {a.train}: {describe_dropped(data)}", file=sys.stderr)
        hmm = build([PROTEIN.decode(t) for t in data.tokens], iterations=a.iterations, seed=a.seed, progress=True)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # record a command anyone can rerun, not this machine's paths
    hmm.command_line = f"python -m sedd.hmm --train {Path(a.train).name} --iterations {a.iterations} --seed {a.seed}"
    try:
        save(hmm, a.out)
    except OSError as e:                        # the folder changed while jackhmmer ran: a line, not a traceback
        print(f"error: cannot write --out {a.out}: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: {hmm.M} match states from {len(data)} sequences, consensus {hmm.consensus.upper()}")
    return 0


if __name__ == "__main__":
    from .cli import run
    sys.exit(run(main))
