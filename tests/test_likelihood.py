"""``sedd.likelihood``: the ELBO against a model whose likelihood is known exactly, partial observations,
the standard error, −log p(length) and the unigram floor; and inputs the estimators cannot score (a MASK
or PAD id, an empty or too-long sequence, no sequences at all), refused with a ValueError that names the
sequence, the position and what is allowed rather than scored as a number with no meaning."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import as_dataset, profile_family
from sedd import checkpoint, likelihood
from sedd.alphabet import PROTEIN
from sedd.data import Dataset
from sedd.likelihood import estimate_elbo, length_nll
from sedd.schedule import LogLinearSchedule

S = LogLinearSchedule()
V, MASK, PAD = PROTEIN.size, PROTEIN.mask_id, PROTEIN.pad_id
SEQ = PROTEIN.encode("MSTARPLKSVDYEVFGRVQGVFFRKYTQAEGKKLGL")


class FixedProfile(torch.nn.Module):
    """p_θ(x_0^i = b | x_t) = profile[i, b], whatever x_t.

    The reverse process then draws every position independently from its row of the profile, so
    the model's likelihood is exact and simple: −log p_θ(x | n) = Σ_i −log profile[i, x_i]. The
    ELBO is tight for it: given t, E[(1/t) Σ_{i masked} −log profile[i, x_i]] = (1−ε) Σ_i −log
    profile[i, x_i] (a position is masked with probability (1−ε)t), so the estimator's mean is
    (1−ε) × the exact value, the ε-end of the schedule being left out (0.1 % for ε = 1e-3).
    """

    pad_id = PAD

    def __init__(self, profile: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(profile.log())

    def forward(self, x_t: torch.LongTensor) -> torch.Tensor:
        B, L = x_t.shape
        return self.logits[:L].unsqueeze(0).expand(B, L, V)


class WatchesFirstPosition(torch.nn.Module):
    """Outputs ``masked_profile`` while position 0 is masked and a uniform distribution once it is not."""

    pad_id = PAD

    def __init__(self, masked_profile: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(masked_profile.log())

    def forward(self, x_t: torch.LongTensor) -> torch.Tensor:
        B, L = x_t.shape
        first_masked = (x_t[:, 0] == MASK).view(B, 1, 1)
        return torch.where(first_masked, self.logits[:L].unsqueeze(0).expand(B, L, V), torch.zeros(B, L, V))


def exact_nll(profile: torch.Tensor, sequences: list[str], positions=None) -> float:
    """Σ over sequences and (chosen) positions of −log profile[i, x_i]."""
    total = 0.0
    for seq in sequences:
        for i, a in enumerate(PROTEIN.encode(seq)):
            if positions is None or i in positions:
                total -= math.log(profile[i, a].item())
    return total


def test_elbo_of_a_model_with_a_closed_form_likelihood():
    sequences, profile = profile_family(60, 24, seed=3, sharpness=2.0)
    model = FixedProfile(profile)
    result = likelihood.estimate_elbo(model, as_dataset(sequences), S, MASK, t_samples=64, seed=0)
    n = 60 * 24
    expected = (1 - S.eps) * exact_nll(profile, sequences) / n
    assert result["num_residues"] == n
    assert result["elbo_stderr"] < 0.02 * expected                  # precise enough to tell a wrong weight
    assert abs(result["elbo_nats_per_residue"] - expected) < 4 * result["elbo_stderr"], (result, expected)
    # and per sequence: each bound's mean is its own exact value
    per_seq = torch.tensor(result["per_sequence"])
    exact = torch.tensor([(1 - S.eps) * exact_nll(profile, [s]) for s in sequences])
    z = (per_seq - exact) / torch.tensor(result["per_sequence_stderr"])
    assert z.abs().max() < 5 and abs(z.mean()) < 4 / math.sqrt(len(z))


def test_elbo_of_partial_observations_keeps_the_unobserved_masked():
    """Only positions 1… are observed. Position 0 is then masked at every t, so the model below always
    answers with its profile, and the bound is the profile's likelihood of the observed residues.
    If position 0 were ever revealed the uniform answer (log 20 per residue) would pull the value up."""
    sequences, profile = profile_family(40, 20, seed=4, sharpness=3.0)
    model = WatchesFirstPosition(profile)
    observed = [[False] + [True] * 19 for _ in sequences]
    result = likelihood.estimate_elbo(model, as_dataset(sequences), S, MASK, t_samples=64, seed=0, observed=observed)
    n = 40 * 19
    expected = (1 - S.eps) * exact_nll(profile, sequences, positions=range(1, 20)) / n
    assert result["num_residues"] == n
    assert abs(result["elbo_nats_per_residue"] - expected) < 4 * result["elbo_stderr"], (result, expected)
    # all observed: position 0 gets revealed, the uniform answers add a lot (the contrast the test relies on)
    full = likelihood.estimate_elbo(model, as_dataset(sequences), S, MASK, t_samples=64, seed=0)
    assert full["elbo_nats_per_residue"] > expected + 0.3


def test_untrained_elbo_is_near_log20_with_stderr_below_001(tiny_model):
    data = as_dataset(profile_family(40, 60, seed=1)[0])
    result = likelihood.elbo_to_precision(tiny_model, data, S, MASK, t_samples=4, target_stderr=0.01, seed=0)
    # an untrained network predicts ≈ uniform residues: −log p ≈ log 20 per residue
    assert abs(result["elbo_nats_per_residue"] - math.log(20)) < 0.15
    assert result["elbo_stderr"] < 0.01 and result["elbo_target_met"]
    assert result["t_samples"] > 4          # K was raised: 4 t samples cannot reach 0.01 on 2,400 residues
    assert result["num_residues"] == data.num_residues()


@pytest.mark.parametrize("cap", [4, 5, 6, 9])
def test_elbo_to_precision_never_draws_more_times_than_its_cap(cap):
    sequences, profile = profile_family(4, 20, seed=3)
    result = likelihood.elbo_to_precision(FixedProfile(profile), as_dataset(sequences), S, MASK, t_samples=4,
                                          target_stderr=1e-9, max_t_samples=cap, seed=0)
    assert result["t_samples"] == cap and not result["elbo_target_met"]


@pytest.mark.parametrize("cap", [2, 3])
def test_elbo_to_precision_caps_its_first_round_too(cap):
    """A first round of more times than the cap is cut to the cap, not run whole."""
    sequences, profile = profile_family(4, 20, seed=3)
    result = likelihood.elbo_to_precision(FixedProfile(profile), as_dataset(sequences), S, MASK, t_samples=8,
                                          target_stderr=1e-9, max_t_samples=cap, seed=0)
    assert result["t_samples"] == cap and not result["elbo_target_met"]


@pytest.mark.parametrize("first, cap, drawn", [(100, 1024, 100), (129, 1024, 129), (200, 150, 150), (64, 1024, 64)])
def test_elbo_to_precision_draws_its_first_count_whole_over_several_rounds(first, cap, drawn):
    """``evaluate --t-samples 100`` drew 64 times (one round's most), and stopped there when that met
    the target: the first count is now drawn whole, in rounds of at most 64, whatever the error."""
    sequences, profile = profile_family(2, 10, seed=3)
    result = likelihood.elbo_to_precision(FixedProfile(profile), as_dataset(sequences), S, MASK, t_samples=first,
                                          target_stderr=100.0, max_t_samples=cap, seed=0)
    assert result["t_samples"] == drawn and result["elbo_target_met"]


def test_the_elbo_to_a_target_precision_is_unbiased():
    """It added rounds until the error so far was below the target: a round that drew high (f(t) has
    a heavy tail at small t) also had a high error and was diluted, one that drew low stopped the loop
    and was kept. Over 1,000 seeds its mean sat 6 standard errors below the exact expectation; the
    count now comes from a pilot whose times are not reported."""
    sequences, profile = profile_family(1, 12, seed=4, sharpness=2.0)
    model, data = FixedProfile(profile), as_dataset(sequences)
    expected = (1 - S.eps) * exact_nll(profile, sequences) / 12           # E[f], exactly (FixedProfile)
    runs = torch.tensor([likelihood.elbo_to_precision(model, data, S, MASK, t_samples=4, target_stderr=0.3,
                                                      max_t_samples=64, seed=s)["elbo_nats_per_residue"]
                         for s in range(1000)], dtype=torch.float64)
    error = runs.std().item() / math.sqrt(len(runs))
    assert abs(runs.mean().item() - expected) < 3.5 * error, (runs.mean().item(), expected, error)


def test_a_pilot_that_meets_the_target_leaves_estimate_elbos_own_times():
    """The stored figures were one round of ``estimate_elbo`` with ``seed`` that met the target: they
    stay what the estimator gives, the pilot's times coming from a stream of their own."""
    sequences, profile = profile_family(8, 30, seed=5)
    model, data = FixedProfile(profile), as_dataset(sequences)
    result = likelihood.elbo_to_precision(model, data, S, MASK, t_samples=16, target_stderr=100.0, seed=3)
    alone = estimate_elbo(model, data, S, MASK, t_samples=16, seed=3)
    assert result["t_samples"] == result["pilot_t_samples"] == 16 and result["elbo_target_met"]
    assert result["elbo_nats_per_residue"] == alone["elbo_nats_per_residue"]
    assert result["per_sequence"] == pytest.approx(alone["per_sequence"])


def test_elbo_to_precision_refuses_a_target_or_cap_it_cannot_work_with():
    sequences, profile = profile_family(2, 10, seed=3)
    model, data = FixedProfile(profile), as_dataset(sequences)
    with pytest.raises(ValueError, match="target_stderr must be more than 0"):
        likelihood.elbo_to_precision(model, data, S, MASK, t_samples=4, target_stderr=0.0, max_t_samples=64)
    with pytest.raises(ValueError, match="must be at least 2 to estimate a standard error, got 4, 1 and 4"):
        likelihood.elbo_to_precision(model, data, S, MASK, t_samples=4, max_t_samples=1)
    with pytest.raises(ValueError, match="got 4, 64 and 1"):
        likelihood.elbo_to_precision(model, data, S, MASK, t_samples=4, max_t_samples=64, pilot_t_samples=1)


def test_observed_lists_must_match_the_sequences():
    """An observed list longer than its sequence would count residues that are never scored."""
    sequences, profile = profile_family(3, 20, seed=3)
    data = as_dataset([sequences[0], sequences[1][:10], sequences[2]])
    with pytest.raises(ValueError, match="one bool list per sequence"):
        likelihood.estimate_elbo(FixedProfile(profile), data, S, MASK, t_samples=2, observed=[[True] * 20] * 3)
    with pytest.raises(ValueError, match="one bool list per sequence"):
        likelihood.estimate_elbo(FixedProfile(profile), data, S, MASK, t_samples=2, observed=[[True] * 20])


def test_estimate_elbo_restores_the_training_mode_when_it_fails():
    sequences, profile = profile_family(2, 10, seed=3)

    class Breaks(FixedProfile):
        def forward(self, x_t):
            raise RuntimeError("out of memory")

    model = Breaks(profile).train()
    with pytest.raises(RuntimeError, match="out of memory"):
        likelihood.estimate_elbo(model, as_dataset(sequences), S, MASK, t_samples=2)
    assert model.training


def test_elbo_of_a_network_without_parameters():
    class Uniform(torch.nn.Module):
        pad_id = PAD

        def forward(self, x_t):
            return torch.zeros(*x_t.shape, V)

    result = likelihood.estimate_elbo(Uniform(), as_dataset(["ACDEFGHIKLMNPQRSTVWY"]), S, MASK, t_samples=64, seed=0)
    assert abs(result["elbo_nats_per_residue"] - (1 - S.eps) * math.log(20)) < 4 * result["elbo_stderr"]


def test_elbo_stderr_matches_the_spread_of_independent_estimates():
    sequences, profile = profile_family(16, 40, seed=2, sharpness=2.0)
    model, data = FixedProfile(profile), as_dataset(sequences)
    runs = [likelihood.estimate_elbo(model, data, S, MASK, t_samples=4, seed=s) for s in range(30)]
    spread = torch.tensor([r["elbo_nats_per_residue"] for r in runs]).std().item()
    claimed = sum(r["elbo_stderr"] for r in runs) / len(runs)
    assert 0.5 < claimed / spread < 2.5, (claimed, spread)   # an honest error bar (conservative side allowed)


def test_the_pooled_error_of_unequal_rounds_matches_the_spread_of_independent_estimates():
    """``elbo_to_precision`` pools rounds of unequal size (here 64 + 6 times): the error it reports, the
    one sedd.evaluate prints and sets its count by, must be as wide as its estimates scatter."""
    sequences, profile = profile_family(16, 40, seed=2, sharpness=2.0)
    model, data = FixedProfile(profile), as_dataset(sequences)
    runs = [likelihood.elbo_to_precision(model, data, S, MASK, t_samples=4, max_t_samples=70, target_stderr=1e-6,
                                         seed=1000 * s) for s in range(40)]
    assert {r["t_samples"] for r in runs} == {70}
    spread = torch.tensor([r["elbo_nats_per_residue"] for r in runs]).std().item()
    claimed = sum(r["elbo_stderr"] for r in runs) / len(runs)
    assert 0.7 < claimed / spread < 1.4, (claimed, spread)


@pytest.mark.parametrize("seed", [0, 3, 7919, 2**31 - 1, 2**62])
def test_the_pilot_never_shares_a_seed_with_a_reported_round(monkeypatch, seed):
    """The count is independent of the times reported only if the pilot's times are not among them."""
    sequences, profile = profile_family(4, 20, seed=3)
    model, data = FixedProfile(profile), as_dataset(sequences)
    seeds, estimate = [], likelihood.estimate_elbo
    monkeypatch.setattr(likelihood, "estimate_elbo", lambda *a, **k: seeds.append(k["seed"]) or estimate(*a, **k))
    result = likelihood.elbo_to_precision(model, data, S, MASK, t_samples=70, pilot_t_samples=130, target_stderr=1e-6,
                                          max_t_samples=200, seed=seed)
    pilot, reported = seeds[:3], seeds[3:]           # 130 pilot times: rounds of 64, 64 and 2
    assert result["t_samples"] == 200 and len(reported) == 4 and not set(pilot) & set(reported)
    assert reported[0] == seed                       # the reported times start where estimate_elbo's would


def test_every_round_draws_fresh_times():
    """128 times are two rounds of 64: the second must not repeat the first, or the estimate would be
    64 times' worth with the error bar of 128."""
    sequences, profile = profile_family(8, 30, seed=5)
    model, data = FixedProfile(profile), as_dataset(sequences)
    pooled = likelihood.elbo_to_precision(model, data, S, MASK, t_samples=128, max_t_samples=128, seed=3)
    first = likelihood.estimate_elbo(model, data, S, MASK, t_samples=64, seed=3)
    assert pooled["t_samples"] == 128 and pooled["per_sequence"] != pytest.approx(first["per_sequence"])


def test_elbo_is_the_same_on_every_call():
    sequences, profile = profile_family(8, 30, seed=5)
    model, data = FixedProfile(profile), as_dataset(sequences)
    a = likelihood.estimate_elbo(model, data, S, MASK, t_samples=4, seed=11)
    torch.manual_seed(123)                                   # the global RNG plays no part
    b = likelihood.estimate_elbo(model, data, S, MASK, t_samples=4, seed=11)
    assert a == b


# ---- −log p(length) --------------------------------------------------------------------------------
def test_length_nll_by_hand():
    histogram, max_len = {3: 2, 5: 1}, 6          # p(n) = (count + 1) / (3 + 6)
    data = Dataset(["a", "b"], [[0] * 3, [0] * 4])
    assert likelihood.length_nll(histogram, data, max_len) == pytest.approx((-math.log(3 / 9) - math.log(1 / 9)) / 7)


def test_length_probabilities_sum_to_one_over_every_possible_length():
    histogram, max_len = {40: 3, 50: 2, 64: 7}, 128
    total = sum(math.exp(-n * likelihood.length_nll(histogram, Dataset(["x"], [[0] * n]), max_len))
                for n in range(1, max_len + 1))
    assert total == pytest.approx(1.0)
    with pytest.raises(ValueError, match="longer than the model's maximum 128"):
        likelihood.length_nll(histogram, Dataset(["x"], [[0] * 129]), max_len)


# ---- unigram floor -------------------------------------------------------------------------------------
def test_unigram_nll():
    uniform = as_dataset([PROTEIN.residues * 3])
    assert likelihood.unigram_nll(uniform, uniform, V) == pytest.approx(math.log(20))
    data, reference = as_dataset(["AAAC"]), as_dataset(["AC"])
    q_a = q_c = 2 / 22                                         # (count + 1) / (2 + 20)
    assert likelihood.unigram_nll(data, reference, V) == pytest.approx(-(3 * math.log(q_a) + math.log(q_c)) / 4)
    skewed = as_dataset(["AAAAAAAACD"])
    assert likelihood.unigram_nll(skewed, skewed, V) < likelihood.unigram_nll(skewed, uniform, V)   # Gibbs


# ---- what the estimators cannot score -------------------------------------------------------------------
def elbo(model, tokens: list[list[int]], **kw) -> dict:
    data = Dataset([f"s{i}" for i in range(len(tokens))], tokens)
    return estimate_elbo(model, data, LogLinearSchedule(), MASK, **{"t_samples": 2, "seed": 0, **kw})


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


def test_the_elbo_of_no_sequences_is_refused_not_zero(tiny_checkpoint):
    """Before, an empty set scored 0.000 ± 0.000 nats/residue, a perfect model's figure."""
    model = checkpoint.load(tiny_checkpoint)
    empty = Dataset(ids=[], tokens=[])
    with pytest.raises(ValueError, match="no sequences to score"):
        estimate_elbo(model.model, empty, model.schedule, model.alphabet.mask_id)
