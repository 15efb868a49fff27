"""The absorbing ("mask") forward process and the reverse-step maths.

Forward: every residue jumps to MASK at rate σ(t), independently, so
    P(x_t^i = MASK | x_0) = 1 − e^{−σ̄(t)},  and MASK is never left (seed document, §setup).

Score: for the absorbing process the concrete score factorises (RADD, Ou et al. 2024, Thm 1):
    s(x_t)_{i,b} = p_t(x_t with i←b) / p_t(x_t) = p(x_0^i = b | x_t^{UM}) · e^{−σ̄}/(1 − e^{−σ̄})
for masked i, so a time-independent network giving p_θ(x_0^i = b | x_t) is all we need.

Tweedie τ-leaping (SEDD Alg. 2) from t to s < t for a masked position, using
exp(aQ) = [[e^{−a} I, 0], [(1−e^{−a})1ᵀ, 1]]:
    P(stay MASK)   = (1 − e^{−σ̄(s)}) / (1 − e^{−σ̄(t)})
    P(become b)    = (1 − P(stay MASK)) · p_θ(x_0^i = b | x_t)
"""
from __future__ import annotations

import torch

from .schedule import LogLinearSchedule


def corrupt(x0: torch.LongTensor, t: torch.Tensor, schedule: LogLinearSchedule, mask_id: int,
            maskable: torch.BoolTensor, generator: torch.Generator | None = None) -> torch.LongTensor:
    """Sample x_t ~ q(x_t | x_0).

    x0: [B, L] residue ids; t: [B] times in (0, 1]; maskable: [B, L], False for padding
    (padding is never masked). Returns x_t: [B, L].
    """
    p_mask = schedule.mask_prob(t).unsqueeze(-1)                       # [B, 1]
    u = torch.rand(x0.shape, generator=generator, device=x0.device)
    return torch.where((u < p_mask) & maskable, torch.full_like(x0, mask_id), x0)


def score_scale(sigma_bar: torch.Tensor) -> torch.Tensor:
    """e^{−σ̄}/(1 − e^{−σ̄}) = 1/(e^{σ̄} − 1): the factor turning p(x_0 | x_t) into the score."""
    return 1.0 / torch.expm1(sigma_bar)


def log_score(log_probs: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
    """log s_θ(x_t)_{i,b} = log p_θ(x_0^i = b | x_t) − log(e^{σ̄} − 1).

    log_probs: [B, L, V] (normalised over residues); sigma_bar: [B]. Returns [B, L, V].
    """
    return log_probs - torch.log(torch.expm1(sigma_bar)).view(-1, 1, 1)


def stay_masked_prob(schedule: LogLinearSchedule, t: float, s: float) -> float:
    """P(a masked position is still masked at s | masked at t) = (1 − e^{−σ̄(s)}) / (1 − e^{−σ̄(t)}).

    Exactly 0 at s = 0: the last step unmasks everything.
    """
    tt = torch.tensor([t, s], dtype=torch.float64)
    p = schedule.mask_prob(tt)
    return float(p[1] / p[0])


def tweedie_transition(probs: torch.Tensor, stay: float) -> torch.Tensor:
    """Transition probabilities of one masked position over [residues…, MASK].

    probs: [..., V] = p_θ(x_0^i = · | x_t); returns [..., V+1] summing to one. The law written out
    in one piece, as a reference (``tests/test_process.py``); the sampler draws the same law in two
    stages without building the [..., V+1] rows (``sampler._tau_leaping_step``: revealed with
    probability 1 − stay, then a residue ∝ probs).
    """
    move = (1.0 - stay) * probs
    return torch.cat([move, torch.full_like(probs[..., :1], stay)], dim=-1)
