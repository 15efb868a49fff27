"""The optimizer of training: AdamW (the default), or Muon for the hidden weight matrices.

``adamw``: AdamW, betas (0.9, 0.98), weight decay on matrices only (not on embeddings, biases,
norms) — the recipe every checkpoint so far was trained with.
``muon``: Muon (Jordan et al. 2024; ``torch.optim.Muon``) for the 2-D weights inside the
transformer blocks — momentum, then an approximate orthogonalisation of the update by
Newton–Schulz iterations — and the same AdamW for everything else (embedding, output layer,
biases, norms), as Muon's authors recommend. Muon's update is rescaled to AdamW's RMS
(``adjust_lr_fn="match_rms_adamw"``, Liu et al. 2025, "Muon is scalable"), so both share one
learning rate and one schedule.
"""
from __future__ import annotations

import torch
import torch.nn as nn

OPTIMIZERS = ("adamw", "muon")
BETAS = (0.9, 0.98)


class Optimizers:
    """Several torch optimizers stepped as one: ``param_groups`` lists all their groups."""

    def __init__(self, **optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.optimizers):
            raise ValueError(f"optimizer state holds {sorted(state)} but this run uses {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


def _adamw(params: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for name, p in params if p.dim() >= 2 and "embed" not in name]
    no_decay = [p for name, p in params if not (p.dim() >= 2 and "embed" not in name)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=BETAS)


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float):
    """The training optimizer for ``model``'s parameters (see the module docstring)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    params = list(model.named_parameters())
    if name == "adamw":
        return _adamw(params, lr, weight_decay)
    hidden = [(n, p) for n, p in params if p.dim() == 2 and n.startswith("blocks.")]
    rest = [(n, p) for n, p in params if not (p.dim() == 2 and n.startswith("blocks."))]
    muon = torch.optim.Muon([p for _, p in hidden], lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
    return Optimizers(muon=muon, adamw=_adamw(rest, lr, weight_decay))
