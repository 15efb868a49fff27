"""The autoregressive baseline: shifted targets, an exact NLL that learns what can be learned and no more."""
import math
import random
import warnings

import pytest
import torch

from conftest import write_fasta
from sedd.alphabet import PROTEIN
from sedd.autoregressive import AutoregressiveTrainer, autoregressive_config, causal_nll, exact_nll, shift
from sedd.data import Dataset, collate
from sedd.model import ScoreNetwork, preset
from sedd.train import TrainConfig

V = PROTEIN.size
LENGTH = 24


def deterministic_family(n: int, seed: int) -> list[list[int]]:
    """x_1 uniform, then x_{i+1} = x_i + 7 (mod 20): every residue after the first is determined."""
    rng = random.Random(seed)
    return [[(start + 7 * i) % V for i in range(LENGTH)] for start in (rng.randrange(V) for _ in range(n))]


def shuffled_family(n: int, seed: int) -> list[list[int]]:
    """The same family with each column shuffled across sequences: positions independent and uniform,
    so no model can beat log 20 nats per residue."""
    rng = random.Random(seed)
    columns = list(zip(*deterministic_family(n, seed)))
    shuffled = [rng.sample(list(column), len(column)) for column in columns]
    return [list(row) for row in zip(*shuffled)]


def train_ar(directory, sequences: list[list[int]], steps: int = 150) -> ScoreNetwork:
    """The baseline as the benchmark trains it: ``AutoregressiveTrainer`` (the Trainer's recipe)."""
    directory.mkdir()
    write_fasta(directory / "family.fasta", [PROTEIN.decode(s) for s in sequences])
    cfg = TrainConfig(data=str(directory / "family.fasta"), out=str(directory / "run"), preset="tiny", max_len=LENGTH,
                      tokens_per_batch=32 * LENGTH, max_steps=steps, warmup_steps=10, lr=3e-3, dropout=0.0,
                      eval_every=10**6, eval_max_seqs=8, patience=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # the by-sequence split warning
        trainer = AutoregressiveTrainer(cfg)
    trainer.run()
    return trainer.model.eval()


def test_shift_puts_bos_first_and_end_last():
    x0, lengths = collate([[5, 6, 7], [8]], pad_id=V + 1)
    inputs, targets = shift(x0, lengths, V)
    bos, end, pad = V + 1, V, V + 2
    assert inputs.tolist() == [[bos, 5, 6, 7], [bos, 8, pad, pad]]
    assert targets.tolist() == [[5, 6, 7, end], [8, end, pad, pad]]


def test_causal_nll_needs_a_causal_network():
    model = ScoreNetwork(preset("tiny", vocab_size=V + 1))
    with pytest.raises(AssertionError, match="causal network"):
        causal_nll(model, torch.zeros(1, 4, dtype=torch.long), torch.tensor([4]))


def test_deterministic_family_goes_to_zero_while_a_shuffled_one_stays_at_log_20(tmp_path):
    deterministic = train_ar(tmp_path / "deterministic", deterministic_family(400, seed=0))
    held_out = exact_nll(deterministic, Dataset([""] * 100, deterministic_family(100, seed=1)))
    # only the first residue is uncertain: log 20 / 24 = 0.125 nats per residue is the floor
    assert held_out["nll_nats_per_residue"] < math.log(V) / LENGTH + 0.05, held_out
    assert held_out["nll_with_end_nats_per_residue"] < held_out["nll_nats_per_residue"] + 0.01

    shuffled = train_ar(tmp_path / "shuffled", shuffled_family(400, seed=0))
    held_out = exact_nll(shuffled, Dataset([""] * 100, shuffled_family(100, seed=1)))
    # a look-ahead leak (a non-causal mask) would copy the next residue and fall far below log 20
    assert held_out["nll_nats_per_residue"] > math.log(V) - 0.1, held_out


def test_exact_nll_is_the_sum_of_next_residue_log_probabilities_computed_one_prefix_at_a_time():
    torch.manual_seed(0)
    model = ScoreNetwork(autoregressive_config(preset("tiny", vocab_size=V, dropout=0.0))).eval()
    data = Dataset(["a", "b", "c"], [[1, 2, 3, 4, 5], [6] * 9, [7, 8]])
    result = exact_nll(model, data)                        # batched, padded, one forward per batch
    bos, end = V + 1, V
    expected, with_end = [], 0.0
    for seq in data.tokens:                                # one forward per prefix, no padding
        nats = [-model(torch.tensor([[bos] + seq[:i]]))[0, -1].log_softmax(-1)[target].item()
                for i, target in enumerate(seq + [end])]
        expected.append(sum(nats[:-1]))
        with_end += sum(nats)
    assert result["per_sequence"] == pytest.approx(expected, abs=1e-4)
    assert result["nll_nats_per_residue"] == pytest.approx(sum(expected) / 16, abs=1e-5)
    assert result["nll_with_end_nats_per_residue"] == pytest.approx(with_end / 16, abs=1e-5)
    assert result["num_residues"] == 16
