"""The autoregressive baseline: shifted targets, an exact NLL that learns what can be learned and no more,
ancestral samples from the model's own distribution, and its checkpoints kept apart from diffusion ones."""
import math
import random
import warnings

import pytest
import torch

from conftest import write_fasta
from sedd import autoregressive, checkpoint
from sedd.alphabet import PROTEIN
from sedd.autoregressive import (AutoregressiveTrainer, autoregressive_config, causal_nll, draw_samples, exact_nll,
                                  sample, shift)
from sedd.data import Dataset, collate
from sedd.model import ScoreNetwork, preset, weights_from_causal_twin
from sedd.schedule import LogLinearSchedule
from sedd.train import TrainConfig

V = PROTEIN.size
LENGTH = 24
SEQ = PROTEIN.encode("MSTARPLKSVDYEVFGRVQGVFFRKYTQAEGKKLGL")


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


def test_causal_nll_and_sampling_need_a_causal_network():
    """A ValueError, not an assert (``python -O`` would strip it and score a diffusion network)."""
    model = ScoreNetwork(preset("tiny", vocab_size=V + 1))
    with pytest.raises(ValueError, match="causal network"):
        causal_nll(model, torch.zeros(1, 4, dtype=torch.long), torch.tensor([4]))
    with pytest.raises(ValueError, match="causal network"):
        sample(model, 1)


@pytest.fixture(scope="module")
def deterministic(tmp_path_factory):
    """The baseline trained on the deterministic family (shared: training is the slow part)."""
    return train_ar(tmp_path_factory.mktemp("ar") / "deterministic", deterministic_family(400, seed=0))


def random_ar(max_len: int = 16) -> ScoreNetwork:
    torch.manual_seed(0)
    return ScoreNetwork(autoregressive_config(preset("tiny", vocab_size=V, max_len=max_len, dropout=0.0))).eval()


def test_deterministic_family_goes_to_zero_while_a_shuffled_one_stays_at_log_20(deterministic, tmp_path):
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


def test_samples_of_a_deterministic_family_follow_its_rule_and_end_where_it_ends(deterministic):
    samples = sample(deterministic, 64, generator=torch.Generator().manual_seed(0))
    assert sum(len(s) == LENGTH for s in samples) >= 62, samples     # END where every training sequence ends
    steps = [(b - a) % V == 7 for s in samples for a, b in zip(s, s[1:])]
    assert sum(steps) / len(steps) > 0.97, samples      # reading the wrong position's logits gives ~1/20
    assert len({s[0] for s in samples}) >= 10             # the first residue stays uniform: samples, not a copy


def test_the_first_residue_is_drawn_from_the_models_own_distribution_given_one_residue_at_least():
    model = random_ar()
    with torch.no_grad():
        model.head.bias[V] += 2.0                          # END likely everywhere, first position included
    first = model(torch.tensor([[V + 1]]))[0, -1]
    assert first.softmax(-1)[V] > 0.2
    expected = first[:V].softmax(-1)                       # p(x_1 | BOS, x_1 is a residue)
    samples = sample(model, 4000, generator=torch.Generator().manual_seed(1))
    assert all(samples), "an empty sample: END drawn before any residue"
    counts = torch.bincount(torch.tensor([s[0] for s in samples]), minlength=V).double()
    assert torch.allclose(counts / 4000, expected.double(), atol=0.02)
    assert sample(model, 5, generator=torch.Generator().manual_seed(2)) == sample(
        model, 5, generator=torch.Generator().manual_seed(2))


def test_a_sample_that_never_ends_stops_at_the_last_position_the_network_has():
    model = random_ar(max_len=9)
    with torch.no_grad():
        model.head.bias[V] = -1e4                          # END is never drawn
    lengths = [len(s) for s in sample(model, 6, generator=torch.Generator().manual_seed(0))]
    assert lengths == [model.config.max_len - 1] * 6 == [9] * 6      # BOS takes the first of its 10 positions
    with pytest.raises(ValueError, match="temperature must be positive"):
        sample(model, 1, temperature=0.0)


def test_an_autoregressive_checkpoint_loads_only_where_asked_for(tmp_path, tiny_checkpoint):
    directory = checkpoint.save(tmp_path / "ar", random_ar(), PROTEIN, LogLinearSchedule(), {8: 1})
    with pytest.raises(ValueError, match="holds an autoregressive baseline"):
        checkpoint.load(directory)                         # the default: samplers and scores need diffusion
    with pytest.raises(ValueError, match="holds a diffusion model; this needs an autoregressive"):
        checkpoint.load(tiny_checkpoint, causal=True)
    model = checkpoint.load(directory, causal=None)
    assert model.model.config.causal and model.model.config.vocab_size == V + 1
    samples = draw_samples(model, 5, seed=0, batch_size=2)
    assert len(samples) == 5 and all(set(s) <= set(PROTEIN.residues) for s in samples)
    assert samples == draw_samples(checkpoint.load(directory, causal=True), 5, seed=0, batch_size=2)


def test_a_diffusion_network_started_from_its_causal_twin_computes_what_the_twin_computes_where_they_agree():
    """With one token attention is the same both ways: the started network's logits are the twin's, less END."""
    twin = random_ar()
    fresh = ScoreNetwork(preset("tiny", vocab_size=V, max_len=16, dropout=0.0))
    before = fresh.state_dict()
    state = weights_from_causal_twin(twin.state_dict(), before, V)
    assert torch.equal(state["embed.weight"][V:], before["embed.weight"][V:])        # MASK and PAD stay fresh
    fresh.load_state_dict(state)
    fresh.eval()
    tokens = torch.arange(V).unsqueeze(1)                                            # each residue alone
    torch.testing.assert_close(fresh(tokens), twin(tokens)[..., :V])


def test_a_twin_of_another_size_is_refused_with_what_differs():
    fresh = ScoreNetwork(preset("mini", vocab_size=V, dropout=0.0)).state_dict()
    with pytest.raises(ValueError, match=r"does not match this one \(embed.weight: \(23, 64\) vs \(22, 192\).*same preset"):
        weights_from_causal_twin(random_ar().state_dict(), fresh, V)


# ---- what the exact NLL cannot score: END, BOS and PAD ids, no or too long sequences --------------------
@pytest.fixture(scope="module")
def causal() -> ScoreNetwork:
    torch.manual_seed(0)
    return ScoreNetwork(autoregressive_config(preset("tiny", vocab_size=PROTEIN.size, dropout=0.0))).eval()


@pytest.mark.parametrize("bad", [PROTEIN.size, PROTEIN.size + 1, PROTEIN.size + 2], ids=["end", "bos", "pad"])
def test_autoregressive_nll_refuses_end_bos_and_pad_ids_in_a_sequence(causal, bad):
    """The causal network's END, BOS and PAD ids follow the residues: in a sequence they were read as
    those (a PAD silently dropped its residue from the sum and hid it from attention)."""
    with pytest.raises(ValueError, match=rf"holds {bad} at position 3, which is not a residue id: allowed 0 … 19"):
        exact_nll(causal, Dataset(["a"], [SEQ[:2] + [bad] + SEQ[3:]]))


def test_autoregressive_nll_refuses_empty_input_and_too_long_sequences(causal):
    """Empty input was a ZeroDivisionError; a too-long sequence an AssertionError that gave the
    shifted length and limit (129 of 129 for a 128-residue model), not the user's."""
    with pytest.raises(ValueError, match="no sequences to score"):
        exact_nll(causal, Dataset([], []))
    with pytest.raises(ValueError, match="is empty"):
        exact_nll(causal, Dataset(["a"], [[]]))
    with pytest.raises(ValueError, match="has 129 residues; the model's maximum is 128"):
        exact_nll(causal, Dataset(["a"], [(SEQ * 4)[:129]]))
    assert exact_nll(causal, Dataset(["a"], [(SEQ * 4)[:128]]))["num_residues"] == 128


def test_autoregressive_nll_restores_the_training_mode_when_it_fails(causal, monkeypatch):
    """As ``estimate_elbo`` does: a failure mid-way must not leave a training network in eval mode."""
    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(autoregressive, "causal_nll", fail)
    causal.train()
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            exact_nll(causal, Dataset(["a"], [SEQ]))
        assert causal.training
    finally:
        causal.eval()
