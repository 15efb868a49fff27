"""Likelihood and sample-quality metrics, and ``python -m sedd.evaluate``.

ELBO estimator. For a sequence x_0 of length n the bound (``loss.py``) is
    −log p(x_0 | n) ≤ E_{t~U[ε,1]} [ (1/t) Σ_{i masked in x_t} −log p_θ(x_0^i | x_t) ] =: E_t[f(t)].
Each sequence gets K stratified times t_k = ε + (1−ε)(k + u_k)/K, k = 0…K−1, and one x_t per time.
The reported value is Σ_seq Σ_k f / (K Σ_seq n) in nats/residue. Its standard error is the Monte
Carlo error of that number for this fixed set of sequences: sqrt(Σ_seq Var_k(f)/K) / Σ_seq n, with
Var_k the sample variance over the K times (conservative under stratification).
"""
from __future__ import annotations

import math

import torch

from .data import Dataset, bucketed_batches, collate
from .loss import diffusion_loss
from .schedule import LogLinearSchedule


@torch.no_grad()
def estimate_elbo(model, data: Dataset, schedule: LogLinearSchedule, mask_id: int, t_samples: int = 4,
                  seed: int = 0, tokens_per_batch: int = 16384, device=None, progress: bool = False) -> dict:
    """Per-residue ELBO (nats) of ``data`` under ``model`` with its Monte Carlo standard error."""
    from tqdm.auto import tqdm

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    K = t_samples
    per_seq = torch.zeros(len(data), K, dtype=torch.float64)
    batches = bucketed_batches([len(t) for t in data.tokens], max(1, tokens_per_batch // K), seed)
    for batch in tqdm(batches, desc="ELBO", disable=not progress, leave=False):
        x0, lengths = collate([data.tokens[i] for i in batch], pad_id=mask_id + 1)
        B = len(batch)
        strata = (torch.arange(K).repeat(B) + torch.rand(B * K, generator=gen)) / K          # [B·K]
        t = schedule.eps + (1 - schedule.eps) * strata
        # one forward per (sequence, time): repeat each sequence K times
        nats = diffusion_loss(model, x0.repeat_interleave(K, 0).to(device), lengths.repeat_interleave(K).to(device),
                              schedule, mask_id, t=t.to(device), generator=None if device != torch.device("cpu") else gen)
        per_seq[batch] = nats.double().cpu().view(B, K)
    model.train(was_training)
    n_res = data.num_residues()
    elbo = per_seq.sum().item() / (K * n_res)
    var = per_seq.var(dim=1, unbiased=True).sum().item() / K if K > 1 else float("nan")
    return {"elbo_nats_per_residue": elbo, "elbo_stderr": math.sqrt(var) / n_res,
            "num_sequences": len(data), "num_residues": n_res, "t_samples": K}


def length_nll(length_histogram: dict[int, int], data: Dataset) -> float:
    """−log p(length) per residue under the (add-one smoothed) training length histogram."""
    lo, hi = min(length_histogram), max(length_histogram)
    support = range(min(lo, *(len(t) for t in data.tokens)), max(hi, *(len(t) for t in data.tokens)) + 1)
    total = sum(length_histogram.values()) + len(support)
    nll = sum(-math.log((length_histogram.get(len(t), 0) + 1) / total) for t in data.tokens)
    return nll / data.num_residues()
