import math

import pytest
import torch

from sedd.process import corrupt, score_scale, stay_masked_prob, tweedie_transition
from sedd.schedule import LogLinearSchedule

S = LogLinearSchedule()


def test_schedule_rate_is_derivative_of_total_noise():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64).requires_grad_()
    (grad,) = torch.autograd.grad(S.total_noise(t).sum(), t)
    torch.testing.assert_close(grad, S.rate(t.detach()))
    torch.testing.assert_close(S.mask_prob(t.detach()), (1 - S.eps) * t.detach())


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 1.0])
def test_masked_fraction_is_one_minus_eps_times_t(t):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 20, (400, 100), generator=gen)
    maskable = torch.ones_like(x0, dtype=torch.bool)
    x_t = corrupt(x0, torch.full((400,), t), S, 20, maskable, gen)
    frac = (x_t == 20).double().mean().item()
    p = (1 - S.eps) * t
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / x0.numel()) + 1e-9
    assert torch.equal(x_t[x_t != 20], x0[x_t != 20])     # unmasked positions are untouched


def test_padding_is_never_masked():
    x0 = torch.zeros(8, 10, dtype=torch.long)
    maskable = torch.zeros_like(x0, dtype=torch.bool)
    maskable[:, :5] = True
    x_t = corrupt(x0, torch.ones(8), S, 20, maskable)
    assert not (x_t[:, 5:] == 20).any()


@pytest.mark.parametrize("t,s", [(1.0, 0.9), (0.5, 0.25), (0.1, 0.0), (1.0, 0.0)])
def test_transition_probabilities_sum_to_one(t, s):
    probs = torch.softmax(torch.randn(7, 20, dtype=torch.float64), -1)
    trans = tweedie_transition(probs, stay_masked_prob(S, t, s))
    torch.testing.assert_close(trans.sum(-1), torch.ones(7, dtype=torch.float64))
    assert (trans >= 0).all()


def test_last_step_unmasks_everything():
    assert stay_masked_prob(S, 0.01, 0.0) == 0.0


def test_closed_form_matches_the_seed_documents_matrix_exponential_tweedie_step():
    """[exp((σ̄_s−σ̄_t)Q) s]_y · [exp((σ̄_t−σ̄_s)Q)]_{MASK,y} with Q absorbing, normalised."""
    V, t, s = 20, 0.6, 0.45
    Q = torch.zeros(V + 1, V + 1, dtype=torch.float64)
    Q[range(V), range(V)] = -1.0
    Q[V, :V] = 1.0            # column convention of the seed document: Q[a, b] rate b → a
    sig_t, sig_s = S.total_noise(torch.tensor(t, dtype=torch.float64)), S.total_noise(torch.tensor(s, dtype=torch.float64))
    probs = torch.softmax(torch.randn(V, dtype=torch.float64), -1)
    score = torch.cat([probs * score_scale(sig_t), torch.ones(1, dtype=torch.float64)])   # ratio to MASK itself = 1
    left = torch.linalg.matrix_exp((sig_s - sig_t) * Q) @ score
    right = torch.linalg.matrix_exp((sig_t - sig_s) * Q)[V, :]
    seed_form = left * right
    seed_form = seed_form / seed_form.sum()
    torch.testing.assert_close(seed_form, tweedie_transition(probs, stay_masked_prob(S, t, s)))
