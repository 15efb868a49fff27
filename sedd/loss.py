"""Score-entropy loss (SEDD, Lou et al. 2023, eq. 9 / DWDSE) and the per-residue ELBO.

For a masked position i with clean residue a = x_0^i the target ratios are
    r_b = p_t(x_t with i←b | x_0) / p_t(x_t | x_0) = 1[b = a] · e^{−σ̄}/(1 − e^{−σ̄}),
and the diffusion-weighted score entropy is
    L = ∫ σ(t) E_{x_t} Σ_{i masked} Σ_b [ s_b − r_b log s_b + K(r_b) ] dt,   K(r) = r(log r − 1).
With the factorised score s_b = p_θ(b | x_t)·e^{−σ̄}/(1 − e^{−σ̄}) (docs/design.md §2) the bracket
collapses to −r_a log p_θ(a | x_t), and for the log-linear schedule σ(t)·e^{−σ̄}/(1 − e^{−σ̄}) = 1/t,
so L = E_t[(1/t) Σ_{i masked} −log p_θ(x_0^i | x_t)] (RADD/MDLM form). ``tests/test_loss.py`` checks
the two forms agree.

The ends of the schedule. With m = (1−ε)t the masking probability and g(m) = (1/m) E[Σ_{i masked}
−log p_θ(x_0^i | x_t)] at that m, the mean of L over t ~ U[ε, 1] is
    E[L] = (1/(1−ε)) ∫_{ε(1−ε)}^{1−ε} g(m) dm,
whereas the bound on −log p_θ(x_0 | length) of the reverse process the sampler runs (from all-MASK,
m = 1, to m = 0) is ∫_0^1 g(m) dm, which is exactly −log p(x_0) for exact conditionals, whatever the
schedule (``tests/test_exact_laws.py``). The two differ by between −2ε and +ε times max_m g(m), in
either direction; E[L] − ∫_0^1 g ≈ ε (∫_0^1 g − g(0) − g(1)). g(0) is the cross-entropy with one
residue masked and g(1) with all masked, each a few nats per residue for a protein model, so with
ε = 1e-3 the estimate can sit a few thousandths of a nat per residue *below* the bound.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .process import corrupt, log_score, score_scale
from .schedule import LogLinearSchedule


def sample_times(batch: int, schedule: LogLinearSchedule, generator: torch.Generator | None = None,
                 device=None) -> torch.Tensor:
    """Stratified t ∈ [ε, 1]: one uniform draw in each of ``batch`` equal strata, shuffled.

    Same marginal as i.i.d. uniform t, but the batch covers [ε, 1] evenly, which lowers the
    variance of the loss (the low-discrepancy sampler of Kingma et al. 2021, VDM).
    """
    u = torch.rand(1, generator=generator, device=device)
    strata = (torch.arange(batch, device=device) + u) / batch
    strata = strata[torch.randperm(batch, generator=generator, device=device)]
    return schedule.eps + (1 - schedule.eps) * strata


def score_entropy(log_s: torch.Tensor, x0: torch.LongTensor, ratio: torch.Tensor) -> torch.Tensor:
    """Σ_b [s_b − r_b log s_b + K(r_b)] per position, with r_b = ratio·1[b = x0].

    log_s: [B, L, V] log scores; x0: [B, L]; ratio: [B] (the e^{−σ̄}/(1−e^{−σ̄}) of each row).
    Returns [B, L]. Computed in float32 whatever the autocast dtype.
    """
    log_s = log_s.float()
    r = ratio.float().view(-1, 1)
    log_s_true = log_s.gather(-1, x0.unsqueeze(-1)).squeeze(-1)           # [B, L]
    positive = log_s.exp().sum(-1)                                         # Σ_b s_b
    negative = r * log_s_true                                              # r log s_a
    constant = r * (torch.log(r) - 1)                                      # K(r)
    return positive - negative + constant


def diffusion_loss(model, x0: torch.LongTensor, lengths: torch.LongTensor, schedule: LogLinearSchedule,
                   mask_id: int, t: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   observed: torch.BoolTensor | None = None, *, pad_id: int) -> torch.Tensor:
    """The σ(t)-weighted score-entropy loss per sequence, in nats (sum over positions).

    x0: [B, L] residue ids, padding = any id at positions ≥ lengths; lengths: [B].
    pad_id: the id the network ignores (``Alphabet.pad_id``); padding is rewritten to it.
    t: [B] optional times (sampled stratified otherwise). generator: on x0's device; draws t and
    the masks. Returns [B].
    observed: [B, L] optional; positions outside it are masked at every t and not counted, which
    gives the bound on −log p(observed residues | length) (partial observations, docs/design.md §11).
    """
    B, L = x0.shape
    valid = torch.arange(L, device=x0.device).unsqueeze(0) < lengths.unsqueeze(1)      # [B, L]
    if t is None:
        t = sample_times(B, schedule, generator, x0.device)
    # With ε = 0, t = 1 (which a float32 draw can round to) has σ̄ = ∞, and the bracket is 0·∞ = NaN
    # although its weight σ·r is 1/t = 1: the number just below 1 in t's type gives the limit closely.
    t = t.clamp(max=torch.nextafter(torch.ones((), dtype=t.dtype), torch.zeros((), dtype=t.dtype)).item())
    x_t = corrupt(x0, t, schedule, mask_id, valid, generator)
    scored = valid
    if observed is not None:
        # unobserved positions stay MASK for the network (they are part of the sequence), unscored
        x_t = torch.where(valid & ~observed, torch.full_like(x_t, mask_id), x_t)
        scored = valid & observed
    # padding may hold any id, the mask id included: only scored (valid) positions count as masked
    masked = (x_t == mask_id) & scored
    logits = model(torch.where(valid, x_t, torch.full_like(x_t, pad_id)))
    sigma_bar = schedule.total_noise(t)
    log_s = log_score(F.log_softmax(logits.float(), dim=-1), sigma_bar)
    per_pos = score_entropy(log_s, x0.clamp(max=mask_id - 1), score_scale(sigma_bar))
    # where: at σ̄ = 0 (t = 0, ε = 0) the score entropy is inf − inf = NaN at unmasked positions too
    return schedule.rate(t) * torch.where(masked, per_pos, 0.0).sum(-1)


def masked_cross_entropy(logits: torch.Tensor, x0: torch.LongTensor, masked: torch.BoolTensor) -> torch.Tensor:
    """Σ_{i masked} −log p_θ(x_0^i | x_t) per sequence. logits: [B, L, V]. Returns [B]."""
    nll = F.cross_entropy(logits.float().transpose(1, 2), x0.clamp(max=logits.shape[-1] - 1), reduction="none")
    return (nll * masked).sum(-1)
