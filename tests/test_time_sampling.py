"""Time samplers of training: unbiased weights, antithetic pairs, the adaptive proposal and its state."""
import pytest
import torch

from sedd.loss import sample_times
from sedd.schedule import LogLinearSchedule
from sedd.time_sampling import ImportanceTimes, time_sampler

SCHEDULE = LogLinearSchedule()
X0 = torch.randint(0, 20, (64, 30))
LENGTHS = torch.full((64,), 30)


def test_stratified_is_todays_sampler_draw_for_draw():
    t_new = time_sampler("stratified", SCHEDULE).prepare(X0, LENGTHS, torch.Generator().manual_seed(3))[2]
    t_old = sample_times(64, SCHEDULE, torch.Generator().manual_seed(3))
    assert torch.equal(t_new, t_old)


def test_antithetic_doubles_the_batch_with_mirrored_times():
    x0, lengths, t, w = time_sampler("antithetic", SCHEDULE).prepare(X0, LENGTHS, torch.Generator().manual_seed(0))
    assert torch.equal(x0, torch.cat([X0, X0])) and torch.equal(lengths, torch.cat([LENGTHS, LENGTHS]))
    torch.testing.assert_close(t[:64] + t[64:], torch.full((64,), 1 + SCHEDULE.eps))
    assert t.min() >= SCHEDULE.eps and t.max() <= 1 and torch.equal(w, torch.ones(128))


def feed(sampler: ImportanceTimes, f, rounds: int, gen: torch.Generator) -> None:
    for _ in range(rounds):
        _, _, t, _ = sampler.prepare(X0, LENGTHS, gen)
        sampler.observe(t, f(t))


def test_importance_weights_keep_the_expectation_and_the_proposal_follows_the_second_moment():
    gen = torch.Generator().manual_seed(0)
    sampler = ImportanceTimes(SCHEDULE)

    def f(t):                                         # large near t = 0, like the 1/t-weighted loss
        return 1.0 / t.sqrt()

    assert torch.allclose(sampler.proposal(), torch.full((20,), 0.05, dtype=torch.float64))
    feed(sampler, f, 40, gen)
    q = sampler.proposal()
    assert q[0] > 2 * q[-1] and q.sum().item() == pytest.approx(1.0)
    draws = [sampler.prepare(X0, LENGTHS, gen) for _ in range(400)]
    t = torch.cat([d[2] for d in draws])
    w = torch.cat([d[3] for d in draws])
    exact = 2 * (1 - SCHEDULE.eps ** 0.5) / (1 - SCHEDULE.eps)          # E_{U[ε,1]}[t^{-1/2}]
    assert (w * f(t)).mean().item() == pytest.approx(exact, rel=0.02)
    assert w.max() <= 10 + 1e-5
    assert (t < 0.05).float().mean() > 0.05 * 1.5          # small t drawn more often than under U[ε,1]


def test_importance_stays_uniform_while_every_observed_loss_is_zero():
    """f = 0 in every bin (a model already perfect on its data) gives no shape to follow: the proposal
    stays uniform with unit weights rather than 0/0 = NaN weights, which would skip every step."""
    sampler = ImportanceTimes(SCHEDULE, bins=4, min_count=2)
    for _ in range(3):
        sampler.observe(torch.tensor([0.1, 0.3, 0.6, 0.9]), torch.zeros(4))
    assert torch.equal(sampler.proposal(), torch.full((4,), 0.25, dtype=torch.float64))
    _, _, t, w = sampler.prepare(X0, LENGTHS, torch.Generator().manual_seed(0))
    assert torch.isfinite(t).all() and torch.equal(w, torch.ones_like(w))


def test_importance_state_round_trips():
    gen = torch.Generator().manual_seed(0)
    sampler = ImportanceTimes(SCHEDULE)
    feed(sampler, lambda t: 1 / t, 10, gen)
    restored = ImportanceTimes(SCHEDULE)
    restored.load_state_dict(sampler.state_dict())
    assert torch.equal(restored.proposal(), sampler.proposal())
    a = sampler.prepare(X0, LENGTHS, torch.Generator().manual_seed(1))
    b = restored.prepare(X0, LENGTHS, torch.Generator().manual_seed(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_unknown_time_sampling_names_the_choices():
    with pytest.raises(ValueError, match="unknown time sampling 'sobol'; choose one of stratified, antithetic, importance"):
        time_sampler("sobol", SCHEDULE)
