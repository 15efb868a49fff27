"""Tweedie τ-leaping sampler (SEDD Alg. 2) for the absorbing process, as a generator of frames.

The loop runs t from 1 down to 0 on a uniform grid of ``steps`` steps. At each step every still
masked position stays masked with probability (1 − e^{−σ̄(s)})/(1 − e^{−σ̄(t)}) and otherwise
becomes residue b with probability p_θ(b | x_t) (``process.py``). At s = 0 that probability is
0, so the last step unmasks everything. Given residues are never masked and never resampled
(exact conditioning, docs/design.md §8). Only residues are ever drawn: the network has no logit
for MASK or PAD (docs/design.md §4).

Caching (docs/design.md §6): the network is time-independent, so a row whose tokens did not change since
its last evaluation reuses that output exactly; rows are recomputed individually. Draws are in
float64 and in two stages — a Bernoulli "unmask now?", then an inverse-CDF categorical — with a
fixed number of uniforms per step from one seeded generator, so caching never changes the
random stream (docs/design.md §7).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from .process import stay_masked_prob
from .schedule import LogLinearSchedule


@dataclass
class Frame:
    """One denoising state. tokens: [B, L] (MASK where still masked, PAD beyond each row's length)."""

    step: int                 # 0 = the initial state, ``steps`` = the final one
    t: float
    tokens: torch.LongTensor
    changed: torch.BoolTensor  # [B, L] positions revealed in this step
    nfe: int                  # network evaluations so far, counted per row

    @property
    def done(self) -> bool:
        return self.t == 0.0


def pad_templates(templates: Sequence[Sequence[int]], pad_id: int) -> torch.LongTensor:
    """Right-pad token lists of different lengths into [B, L_max]."""
    L = max(len(t) for t in templates)
    out = torch.full((len(templates), L), pad_id, dtype=torch.long)
    for i, tpl in enumerate(templates):
        out[i, :len(tpl)] = torch.as_tensor(list(tpl), dtype=torch.long)
    return out


def _categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.LongTensor:
    """Inverse-CDF draw: probs [N, V] float64, u [N] uniforms → indices [N]."""
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).squeeze(-1)
    return idx.clamp(max=probs.shape[-1] - 1)


@torch.no_grad()
def sample(model: torch.nn.Module, templates: Sequence[Sequence[int]] | torch.LongTensor, *,
           mask_id: int, steps: int = 128, temperature: float = 1.0, seed: int = 0,
           schedule: LogLinearSchedule = LogLinearSchedule(), use_cache: bool = True,
           device: torch.device | str | None = None, allowed: torch.BoolTensor | None = None) -> Iterator[Frame]:
    """Fill the MASK positions of ``templates`` by reverse-time τ-leaping; yields a ``Frame`` per step.

    templates: token-id lists (MASK = ``mask_id`` at designed positions), lengths may differ.
    Frames hold CPU tensors whatever ``device`` the network runs on.
    The last yielded frame has t = 0 and no MASK left. PAD (= mask_id + 1) pads short rows.
    allowed: optional [B, L, V] bool, the residues each position may take (exact conditioning:
    p_θ is renormalised over them before the temperature, docs/design.md §12); every designed
    position needs at least one.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be between 0 and 2**63 - 1, got {seed}")
    pad_id = mask_id + 1
    device = torch.device(device) if device is not None else next(model.parameters()).device
    # Tokens, cached probabilities and draws live on the CPU in float64 (MPS has no float64, and
    # B×L×V numbers per evaluation are cheap to move); only the network runs on ``device``.
    x = templates.clone().cpu() if isinstance(templates, torch.Tensor) else pad_templates(templates, pad_id)
    B, L = x.shape
    if allowed is not None:
        allowed = allowed.cpu()
        if allowed.shape != (B, L, mask_id):
            raise ValueError(f"allowed must have shape {(B, L, mask_id)}, got {tuple(allowed.shape)}")
        if not allowed[x == mask_id].any(-1).all():
            raise ValueError("a designed position allows no residue at all")
    was_training = model.training
    model.eval()

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    probs = torch.zeros(B, L, mask_id, dtype=torch.float64)
    stale = torch.ones(B, dtype=torch.bool)     # rows whose cached output is out of date
    nfe = 0
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
    yield Frame(0, 1.0, x.clone(), torch.zeros_like(x, dtype=torch.bool), 0)

    try:
        for k in range(steps):
            t, s = grid[k], grid[k + 1]
            masked = x == mask_id                                            # [B, L]
            # 1. evaluate the network on the rows that need it (every row, every step, without cache)
            need = masked.any(-1) & stale if use_cache else torch.ones_like(stale)
            if need.any():
                logits = model(x[need].to(device)).cpu().double()
                if allowed is not None:
                    logits = logits.masked_fill(~allowed[need], float("-inf"))
                logits = logits / temperature
                probs[need] = torch.softmax(logits, dim=-1)
                nfe += int(need.sum())
                stale[need] = False
            # 2. two-stage Tweedie draw, a fixed number of float64 uniforms per step
            u_move = torch.rand(B, L, dtype=torch.float64, generator=gen)
            u_pick = torch.rand(B, L, dtype=torch.float64, generator=gen)
            stay = stay_masked_prob(schedule, t, s)
            reveal = masked & (u_move >= stay)
            if reveal.any():
                x[reveal] = _categorical(probs[reveal], u_pick[reveal])
                stale |= reveal.any(-1)
            yield Frame(k + 1, s, x.clone(), reveal, nfe)
    finally:
        model.train(was_training)


def last_frame(frames: Iterator[Frame]) -> Frame:
    """Consume a stream of frames (possibly wrapped in a progress bar); return the final one."""
    frame = None
    for frame in frames:
        pass
    return frame


def run(model, templates, **kwargs) -> Frame:
    """Run the sampler to the end and return the final frame."""
    return last_frame(sample(model, templates, **kwargs))
