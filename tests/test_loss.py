import torch
import torch.nn.functional as F

from sedd.loss import diffusion_loss, masked_cross_entropy, sample_times, score_entropy
from sedd.process import corrupt, log_score, score_scale
from sedd.schedule import LogLinearSchedule

S = LogLinearSchedule()


def test_score_entropy_equals_one_over_t_weighted_masked_cross_entropy():
    """docs/design.md §2: σ(t)·score-entropy on the factorised score = (1/t)·masked CE."""
    gen = torch.Generator().manual_seed(0)
    B, L, V = 16, 30, 20
    x0 = torch.randint(0, V, (B, L), generator=gen)
    t = torch.linspace(S.eps, 1.0, B, dtype=torch.float64)
    x_t = corrupt(x0, t, S, V, torch.ones_like(x0, dtype=torch.bool), gen)
    logits = torch.randn(B, L, V, generator=gen, dtype=torch.float64)
    sigma_bar = S.total_noise(t)
    per_pos = score_entropy(log_score(F.log_softmax(logits, -1), sigma_bar).double(), x0, score_scale(sigma_bar))
    se = S.rate(t) * (per_pos.double() * (x_t == V)).sum(-1)
    ce = masked_cross_entropy(logits.double(), x0, x_t == V).double() / t
    torch.testing.assert_close(se, ce, rtol=1e-5, atol=1e-5)


def test_loss_finite_at_both_ends(tiny_model):
    x0 = torch.randint(0, 20, (4, 40))
    lengths = torch.tensor([40, 35, 30, 25])
    for t in (S.eps, 1.0):
        loss = diffusion_loss(tiny_model, x0, lengths, S, 20, pad_id=21, t=torch.full((4,), t))
        assert torch.isfinite(loss).all()


def test_loss_is_zero_at_t_zero_of_a_schedule_without_eps(tiny_model):
    """ε = 0 is allowed and a uniform draw can be exactly 0: nothing is masked then, so nothing is lost
    (the score entropy itself is inf − inf there, and must not leak a NaN into the sum)."""
    x0 = torch.randint(0, 20, (2, 30))
    loss = diffusion_loss(tiny_model, x0, torch.tensor([30, 20]), LogLinearSchedule(eps=0.0), 20, pad_id=21,
                          t=torch.tensor([0.0, 0.5]))
    assert loss[0].item() == 0.0 and torch.isfinite(loss[1])


def test_loss_at_t_one_of_a_schedule_without_eps_is_the_all_masked_cross_entropy(tiny_model):
    """ε = 0 and t = 1 (a float32 time draw can round to it): σ̄ = ∞, every position is masked and the
    weight σ·r is 1/t = 1, so the loss is Σ −log p_θ(x_0^i | all MASK), not 0·∞ = NaN."""
    x0 = torch.randint(0, 20, (2, 30))
    lengths = torch.tensor([30, 20])
    loss = diffusion_loss(tiny_model, x0, lengths, LogLinearSchedule(eps=0.0), 20, pad_id=21, t=torch.ones(2))
    for dtype in (torch.bfloat16, torch.float16, torch.float64):     # times in other precisions too
        assert torch.isfinite(diffusion_loss(tiny_model, x0, lengths, LogLinearSchedule(eps=0.0), 20, pad_id=21,
                                             t=torch.ones(2, dtype=dtype))).all(), dtype
    valid = torch.arange(30) < lengths.unsqueeze(1)
    with torch.no_grad():
        logits = tiny_model(torch.where(valid, 20, 21))
    torch.testing.assert_close(loss, masked_cross_entropy(logits, x0, valid), rtol=1e-5, atol=1e-4)


def test_loss_ignores_padding(tiny_model):
    torch.manual_seed(0)
    x0 = torch.randint(0, 20, (1, 30))
    padded = torch.cat([x0, torch.full((1, 10), 21)], 1)
    t = torch.full((1,), 0.5)
    a = diffusion_loss(tiny_model, x0, torch.tensor([30]), S, 20, pad_id=21, t=t, generator=torch.Generator().manual_seed(1))
    b = diffusion_loss(tiny_model, padded, torch.tensor([30]), S, 20, pad_id=21, t=t, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_padding_that_holds_the_mask_id_is_not_counted_as_masked(tiny_model):
    """Padding may be any id, the mask id included: the loss must be the unpadded sequence's."""
    torch.manual_seed(0)
    x0 = torch.randint(0, 20, (1, 30))
    padded = torch.cat([x0, torch.full((1, 10), 20)], 1)          # padded with MASK (= 20)
    t = torch.full((1,), 0.5)
    a = diffusion_loss(tiny_model, x0, torch.tensor([30]), S, 20, pad_id=21, t=t, generator=torch.Generator().manual_seed(1))
    b = diffusion_loss(tiny_model, padded, torch.tensor([30]), S, 20, pad_id=21, t=t, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_stratified_times_cover_the_interval():
    t = sample_times(64, S, torch.Generator().manual_seed(0))
    assert ((t >= S.eps) & (t <= 1)).all()
    hist = torch.histc(t, bins=8, min=S.eps, max=1.0)
    assert (hist == 8).all()
