"""Review 4 of the likelihood side: what the estimators are given must be what they can score.

The ELBO (``likelihood.estimate_elbo``), −log p(length) (``likelihood.length_nll``) and the
autoregressive NLL (``autoregressive.exact_nll``) are public API. Before this review a MASK or PAD id
in a sequence was silently scored as a residue (MASK as the last residue, at every t), an empty
sequence got an ELBO of 0 nats/residue, and other bad inputs ended in a ZeroDivisionError,
IndexError or AssertionError. Each now raises a ValueError that names the sequence, the position
and what is allowed.
"""
from __future__ import annotations

import pytest
import torch

from sedd import autoregressive
from sedd.alphabet import PROTEIN
from sedd.autoregressive import autoregressive_config, exact_nll
from sedd.data import Dataset
from sedd.likelihood import estimate_elbo, length_nll
from sedd.model import ScoreNetwork, preset
from sedd.schedule import LogLinearSchedule

SEQ = PROTEIN.encode("MSTARPLKSVDYEVFGRVQGVFFRKYTQAEGKKLGL")
MASK, PAD = PROTEIN.mask_id, PROTEIN.pad_id


def elbo(model, tokens: list[list[int]], **kw) -> dict:
    data = Dataset([f"s{i}" for i in range(len(tokens))], tokens)
    return estimate_elbo(model, data, LogLinearSchedule(), MASK, **{"t_samples": 2, "seed": 0, **kw})


@pytest.fixture(scope="module")
def causal() -> ScoreNetwork:
    torch.manual_seed(0)
    return ScoreNetwork(autoregressive_config(preset("tiny", vocab_size=PROTEIN.size, dropout=0.0))).eval()


@pytest.mark.parametrize("bad", [MASK, PAD, 99, -1, "M", 1.0], ids=["mask", "pad", "too-big", "negative", "str", "float"])
def test_elbo_refuses_a_token_that_is_not_a_residue_and_says_where(tiny_model, bad):
    """A MASK id used to be scored as residue V − 1 at every t, a PAD id as a residue hidden from
    attention: a number with no meaning, no error. Now: the sequence, the position, the allowed ids."""
    tokens = SEQ[:5] + [bad] + SEQ[6:]
    with pytest.raises(ValueError, match=r"sequence 's1' \(number 2\) holds .* at position 6, which is not a "
                                         r"residue id: allowed 0 … 19"):
        elbo(tiny_model, [SEQ, tokens])


def test_mask_ids_stay_allowed_where_a_position_is_not_observed(tiny_model):
    """Partial observations may leave MASK at their unobserved positions (they are masked at every t
    anyway, so the bound is the same as with any residue there); at an observed position MASK is refused."""
    observed = [[i != 5 for i in range(len(SEQ))]]
    with_mask = elbo(tiny_model, [SEQ[:5] + [MASK] + SEQ[6:]], observed=observed, t_samples=4)
    with_residue = elbo(tiny_model, [SEQ], observed=observed, t_samples=4)
    assert with_mask["per_sequence"] == pytest.approx(with_residue["per_sequence"], abs=1e-5)
    with pytest.raises(ValueError, match="position 7, which is not a residue id"):
        elbo(tiny_model, [SEQ[:6] + [MASK] + SEQ[7:]], observed=observed)


def test_elbo_refuses_an_empty_sequence_and_one_longer_than_the_network(tiny_model):
    """An empty sequence used to get an ELBO of 0.0 nats/residue (a perfect score for nothing), and a
    too-long one an AssertionError from inside the network (none at all under ``python -O``)."""
    with pytest.raises(ValueError, match=r"sequence 's0' \(number 1\) is empty: a likelihood needs 1 to 128 residues"):
        elbo(tiny_model, [[]])
    with pytest.raises(ValueError, match=r"'s1' \(number 2\) has 129 residues; the model's maximum is 128"):
        elbo(tiny_model, [SEQ, (SEQ * 4)[:129]])


def test_elbo_refuses_fewer_than_one_time(tiny_model):
    with pytest.raises(ValueError, match="t_samples must be at least 1, got 0"):
        elbo(tiny_model, [SEQ], t_samples=0)


def test_length_nll_refuses_an_empty_set_and_a_length_outside_its_support():
    """p(n) is a distribution over n = 1 … max_len: length 0 used to be given (count + 1)/total, a
    probability outside the distribution, and an empty set a ZeroDivisionError."""
    with pytest.raises(ValueError, match="no sequences"):
        length_nll({36: 3}, Dataset([], []), 128)
    with pytest.raises(ValueError, match=r"1 sequences are empty; the model's lengths are 1 … 128"):
        length_nll({36: 3}, Dataset(["a", "b"], [SEQ, []]), 128)


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
