"""The evaluation metrics against their definitions (``sedd/evaluate.py``'s docstring), on hand-made cases."""
from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_fasta

from sedd import checkpoint, hmm, metrics
from sedd import evaluate as ev
from sedd.alphabet import PROTEIN
from sedd.data import Dataset
from sedd.design import Request
from sedd.sampler import MAX_SEED

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "motif_rate.py"
spec = importlib.util.spec_from_file_location("motif_rate", SCRIPT)
motif_rate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(motif_rate)


def random_protein(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(PROTEIN.residues) for _ in range(n))


def substitute(seq: str, positions, rng: random.Random) -> str:
    """``seq`` with a different residue at each of ``positions``."""
    out = list(seq)
    for i in positions:
        out[i] = rng.choice([r for r in PROTEIN.residues if r != seq[i]])
    return "".join(out)


# ---- identity ------------------------------------------------------------------------------------------
def test_identity_counts_identical_pairs_not_similar_ones_over_the_shorter_sequence():
    seq = "ACDEFGHIKLMNPQRSTVWY"
    assert metrics.alignment_identity(seq, seq.replace("I", "V").replace("L", "M")) == pytest.approx(18 / 20)
    # an internal gap of 3 (cost −12) rather than mismatches: all 40 residues of the shorter pair up
    head, tail = "MKTAYIAKQRQISFVKSHFS", "RQLEERLGLIEVQAPILSRV"
    assert metrics.alignment_identity(head + tail, head + "WWW" + tail) == 1.0
    # overlap: a's end gaps and b's end gaps are both free; 20 identical pairs / min(30, 30)
    p, q, r = "CWCWCWCWCW", head, "HPHPHPHPHP"
    assert metrics.alignment_identity(p + q, q + r) == pytest.approx(20 / 30)
    # overhangs of 12: free, the overlap CWHY (BLOSUM 9+11+8+7) wins; penalised (−21 twice), the ungapped
    # alignment and its six E–E pairs would: 4/16 here, 6/16 with end gaps charged
    assert metrics.alignment_identity("KE" * 6 + "CWHY", "CWHY" + "DE" * 6) == pytest.approx(4 / 16)


def test_identity_reads_residues_in_either_case():
    assert metrics.alignment_identity("MKVLAG", "mkvlag") == 1.0


def test_identity_is_symmetric_even_where_equally_good_alignments_differ():
    # two co-optimal alignments of these pair 2 or 1 identical residues: the traceback alone picks by argument order
    for a, b in [("CDAD", "GADC"), ("GGDC", "CCGD"), ("ADDDG", "AACG")]:
        assert metrics.alignment_identity(a, b) == metrics.alignment_identity(b, a)
    assert metrics.alignment_identity("CDAD", "GADC") == 0.5          # the most identical pairs among them
    assert metrics.alignment_identity("ADCA", "DACA") == 0.75         # biotite's first traceback pairs only 2 of 4


def test_nearest_reference_is_the_exhaustive_maximum_on_a_family():
    from conftest import profile_family

    references, _ = profile_family(400, 70, seed=21, sharpness=2.5)      # ~0.5 identity, as in the ACYP family
    queries = profile_family(410, 70, seed=21, sharpness=2.5)[0][400:]
    search = metrics.NearestReference(references, PROTEIN.residues)
    for q in queries:
        exhaustive = max(metrics.alignment_identity(q, r) for r in references)
        assert search.nearest(q)[0] == pytest.approx(exhaustive)


def test_nearest_reference_finds_a_relative_that_shares_no_3mer():
    rng = random.Random(3)
    query = random_protein(rng, 60)
    relative = substitute(query, range(0, 60, 3), rng)       # 40/60 identical, yet every 3-mer differs
    decoys = []
    for _ in range(150):                     # random sequences carrying a few of the query's 3-mers
        seq = list(random_protein(rng, 60))
        for start in rng.sample(range(0, 57, 3), 4):
            at = rng.randrange(57)
            seq[at:at + 3] = query[start:start + 3]
        decoys.append("".join(seq))
    references = decoys + [relative]
    identity, index = metrics.NearestReference(references, PROTEIN.residues).nearest(query)
    assert index == len(decoys) and identity == pytest.approx(40 / 60)


def test_novelty_is_exact_identity_not_alignment_identity():
    rng = random.Random(4)
    references = [random_protein(rng, 50) for _ in range(5)]
    fragment = references[2][5:45]                         # identity 1.0 to a reference, yet not identical
    m = metrics.sample_metrics([fragment, references[3]], references, PROTEIN.residues)
    assert m["novelty"] == 0.5 and m["nearest_identities"] == [1.0, 1.0]


def test_mean_pairwise_identity_is_the_mean_over_unordered_pairs():
    rng = random.Random(5)
    a, b = random_protein(rng, 40), random_protein(rng, 50)
    ab = metrics.alignment_identity(a, b)
    mean, pairs = metrics.mean_pairwise_identity([a, a, b])
    assert pairs == 3 and mean == pytest.approx((1.0 + 2 * ab) / 3)
    assert metrics.mean_pairwise_identity([a])[1] == 0 and math.isnan(metrics.mean_pairwise_identity([a])[0])


# ---- composition, motif, repeats -----------------------------------------------------------------------
def test_composition_kl_pools_residues_and_ignores_other_characters():
    residues = PROTEIN.residues
    # pooled counts: ["AAAA", "C"] is the same composition as ["AACA", "A"]
    pooled = metrics.composition_kl(["ACD"], ["AACA", "A"], residues)
    assert metrics.composition_kl(["ACD"], ["AAAA", "C"], residues) == pooled
    # by hand: data {A: 3, X ignored}, samples {C: 1}, +1 on each of the 20 residues
    p = np.ones(20)
    p[0] += 3
    q = np.ones(20)
    q[1] += 1
    p, q = p / p.sum(), q / q.sum()
    assert metrics.composition_kl(["AXA", "A"], ["C"], residues) == pytest.approx(float(np.sum(p * np.log(p / q))))


def test_motif_counts_a_sequence_once_wherever_its_matches_are():
    site = "GAVQGIAYR"
    assert metrics.motif_hits([site + "MK" + site, site + "M", "M" + site, "MGAVQGIAY", "gavqgiayr"]) == \
        [True, True, True, False, False]
    assert metrics.motif_rate([site * 3, "AAAA"]) == 0.5


def test_repeat_rate_counts_runs_of_exactly_the_threshold():
    m = metrics.low_complexity(["ACCCCCA", "ACCCCA", "W"], threshold=5)
    assert m["repeat_rate"] == pytest.approx(1 / 3) and m["max_longest_run"] == 5 and m["repeat_run"] == 5


# ---- the motif rate's statistics, by hand against the model card's figures ------------------------------
def test_rate_statistics_reproduce_the_published_2048_sample_figures():
    summary = motif_rate.rate_summary([True] * 1586 + [False] * 462)
    p = 1586 / 2048
    assert summary["stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 2048))           # 0.9 points
    z = 1.959963984540054
    centre = (p + z * z / 4096) / (1 + z * z / 2048)
    half = z / (1 + z * z / 2048) * math.sqrt(p * (1 - p) / 2048 + z * z / (4 * 2048 ** 2))
    assert summary["wilson95"] == pytest.approx([centre - half, centre + half])
    assert summary["wilson95"] == pytest.approx([0.7558, 0.7920], abs=1e-4)
    # previous vs shipped: 236 samples only the previous model hit, 284 only the shipped one, of 2,048
    this = [True] * 236 + [False] * 284 + [True] * 1302 + [False] * 226
    first = [False] * 236 + [True] * 284 + [True] * 1302 + [False] * 226
    d = motif_rate.paired_difference(this, first)
    mean = -48 / 2048
    sd = math.sqrt((520 / 2048 - mean ** 2) * 2048 / 2047)
    assert d["difference"] == pytest.approx(mean) and d["stderr"] == pytest.approx(sd / math.sqrt(2048))
    assert d["stderr"] == pytest.approx(0.011125, abs=1e-6)


# ---- family HMM ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def family_and_hmm():
    from conftest import profile_family

    train, _ = profile_family(80, 50, seed=8, sharpness=3.0)
    return train, hmm.build(train, iterations=1)


def test_an_e_value_does_not_depend_on_how_many_sequences_are_scored_with_it(family_and_hmm):
    train, family = family_and_hmm
    alone_bits, alone_e = hmm.bit_scores(family, train[:1])
    bits, evalues = hmm.bit_scores(family, train[:40])
    assert alone_e[0] < 1e-10                                   # (so pytest.approx's absolute tolerance cannot hide it)
    assert bits[0] == alone_bits[0] and evalues[0] == alone_e[0]


def test_a_sequence_hmmer_cannot_align_scores_minus_infinity_and_is_no_hit(family_and_hmm):
    _, family = family_and_hmm
    bits, evalues = hmm.bit_scores(family, ["W" * 50, "AC"])
    assert (bits == -np.inf).all() and (evalues == np.inf).all()


def test_hit_rate_is_e_at_most_the_threshold_and_bits_ratio_a_ratio_of_medians(monkeypatch):
    table = {"n1": (100.0, 1e-30), "n2": (80.0, 1e-20), "n3": (60.0, 1e-9),
             "s1": (50.0, hmm.HIT_EVALUE), "s2": (10.0, 2 * hmm.HIT_EVALUE), "s3": (-np.inf, np.inf)}

    def fake(_, seqs):
        rows = [table.get(s, (-1.0, 1.0)) for s in seqs]
        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    monkeypatch.setattr(hmm, "bit_scores", fake)
    m = hmm.family_metrics(None, ["s1", "s2", "s3"], ["n1", "n2", "n3"])
    assert m["hit_rate"] == pytest.approx(1 / 3) and m["natural_hit_rate"] == 1.0
    assert m["median_bits"] == 10.0 and m["natural_median_bits"] == 80.0 and m["bits_ratio"] == 10.0 / 80.0
    assert m["shuffled"]["bits_ratio"] == -1.0 / 80.0         # the control scores the shuffled samples


def test_the_shuffled_control_keeps_each_samples_residues_and_length():
    seqs = ["MKVLAAGG", "WWYYC"]
    out = hmm.shuffled(seqs, seed=3)
    assert [sorted(s) for s in out] == [sorted(s) for s in seqs] and out == hmm.shuffled(seqs, seed=3)
    assert out != hmm.shuffled(seqs, seed=4)                    # a seeded random order, not a fixed one


# ---- infill recovery and the evaluation's JSON ----------------------------------------------------------
class Constant(torch.nn.Module):
    """Puts all probability on one residue everywhere."""

    def __init__(self, residue: int):
        super().__init__()
        self.residue = residue
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x_t: torch.LongTensor) -> torch.Tensor:
        return 50.0 * torch.nn.functional.one_hot(torch.full_like(x_t, self.residue), PROTEIN.size).float()


def test_infill_recovery_pools_masked_residues_over_sequences(tiny_checkpoint):
    model = checkpoint.load(tiny_checkpoint)
    model.model = Constant(PROTEIN.encode("A")[0])
    data = Dataset(["short", "long"], [PROTEIN.encode("A" * 10), PROTEIN.encode("C" * 40)])
    result = metrics.infill_recovery(model, data, batch_size=2)
    # 3 of 10 and 12 of 40 masked; only the 3 A's come back: 3/15 pooled (a mean per sequence would say 0.5)
    assert result["infill_masked_residues"] == 15 and result["infill_recovery"] == pytest.approx(3 / 15)


def test_the_largest_seeds_run_every_batch_and_the_others_keep_their_batch_seeds(tiny_checkpoint):
    """Batch b is seeded seed + b (the stored figures were drawn so): seed 2**63 − 1, which the
    command line accepts, failed at the second batch, after the first batch's work."""
    model = checkpoint.load(tiny_checkpoint)
    data = Dataset(["a", "b"], [PROTEIN.encode("MKVLAGGWWK"), PROTEIN.encode("MKVLAGGWWKAA")])
    fast = Request([], steps=2)
    assert metrics.infill_recovery(model, data, seed=MAX_SEED, batch_size=1, request=fast)["infill_masked_residues"] == 7
    assert len(metrics.draw_samples(model, 3, seed=MAX_SEED, batch_size=2)) == 3
    assert [metrics._batch_seed(5, b) for b in range(3)] == [5, 6, 7] and metrics._batch_seed(MAX_SEED, 1) == 0


@pytest.mark.parametrize("n, k", [(1, 1), (3, 1), (5, 2), (10, 3), (15, 4), (25, 8), (128, 38)])
def test_infill_masks_round_0_3_n_positions_half_to_even(n, k):
    template = metrics.mask_for_infill(list(range(n)), -1, 0.3, torch.Generator().manual_seed(0))
    assert template.count(-1) == k


def test_the_length_term_is_the_smoothed_training_histogram_per_residue(tiny_checkpoint, tmp_path, capsys):
    sequences = ["ACDEFGHIKL" * 4, "MNPQRSTVWY" * 5, "ACDEFGHIKL" * 3]       # lengths 40, 50, 30
    write_fasta(tmp_path / "held_out.fasta", sequences)
    assert ev.main(["--checkpoint", str(tiny_checkpoint), "--data", str(tmp_path / "held_out.fasta"),
                    "--target-stderr", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    histogram, max_len = {40: 3, 50: 2}, 128                      # the tiny checkpoint's
    total = sum(histogram.values()) + max_len
    expected = -sum(math.log((histogram.get(len(s), 0) + 1) / total) for s in sequences) / 120
    assert out["length_nats_per_residue"] == pytest.approx(expected)


def test_the_composition_kl_floor_is_what_samples_of_the_data_itself_score():
    """composition_kl of a finite sample is biased up by about (V − 1)/(2N): samples drawn from the data
    itself, whose true KL is 0, score that much on average, so a figure near it cannot be told from 0."""
    rng = random.Random(0)
    weights = [rng.random() + 0.2 for _ in PROTEIN.residues]
    data = ["".join(rng.choices(PROTEIN.residues, weights, k=90)) for _ in range(3000)]
    for size in (8, 64):
        draws = [metrics.composition_kl(data, rng.sample(data, size), PROTEIN.residues) for _ in range(60)]
        floor = metrics.composition_kl_floor(size * 90, len(PROTEIN.residues))
        assert abs(np.mean(draws) / floor - 1) < 0.15, (size, np.mean(draws), floor)
    stats = metrics.sample_metrics(data[:5] + ["MK?"], data, PROTEIN.residues)
    assert stats["composition_kl_floor"] == metrics.composition_kl_floor(5 * 90, 20)       # valid samples only


def test_the_sample_metrics_of_a_model_of_any_alphabet():
    """A model of text (design §10): the identities were BLOSUM62's, which has no J, O, U or space, so
    ``sedd.evaluate`` failed with a traceback after its sampling and wrote no report."""
    residues = "abcdefghijklmnopqrstuvwxyz "
    references = ["the quick brown fox jumps", "over the lazy dog", "just one more joke"]
    stats = metrics.sample_metrics(["the quick brown fox jumps", "just one more yoke"], references, residues)
    assert stats["validity"] == 1.0 and stats["novelty"] == 0.5
    assert stats["nearest_identities"] == [1.0, pytest.approx(17 / 18)]
    assert stats["mean_pairwise_identity"] < 0.5
    assert stats["identity_scoring"] == "match +5, mismatch -4"         # the report said BLOSUM62 for every model
    assert metrics.sample_metrics(["MKV"], ["MKVL"], "ACDEFGHIKLMNPQRSTVWY")["identity_scoring"] == "BLOSUM62"
    # an alphabet that tells cases apart keeps them apart; protein letters are read in either case
    assert metrics.alignment_identity("KVLA", "kvla", metrics.IdentityScoring("KVLAkvla")) == 0
    assert metrics.alignment_identity("KVLA", "kvla", metrics.IdentityScoring("ACDEFGHIKLMNPQRSTVWY")) == 1
    # characters beyond ASCII are one residue each (the identities counted UTF-8 bytes), and DNA is not protein
    assert metrics.alignment_identity("aéb", "abb", metrics.IdentityScoring("abé")) == pytest.approx(2 / 3)
    assert not metrics.IdentityScoring("ACGT").protein and metrics.IdentityScoring("ACDEFGHIKLMNPQRSTVWY").protein
