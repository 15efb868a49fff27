"""The score network: a pre-LN transformer encoder over residue tokens.

It knows nothing about diffusion. It maps a partially masked sequence x_t to logits of
p(x_0^i = b | x_t) over the V residues at every position (docs/design.md §2: for the absorbing
process the score factorises, so no time/σ input is needed). Positions are encoded with rotary
embeddings (RoPE, Su et al. 2021), which generalise across the 64–127 residue range without a
learned table. Padding is excluded from attention with a key mask.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab_size: int = 20          # V: residues predicted; inputs add MASK (V) and PAD (V+1)
    max_len: int = 128
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    d_ff: int = 1024
    dropout: float = 0.1

    def __post_init__(self) -> None:
        assert self.d_model % self.n_heads == 0, "d_model must be divisible by n_heads"
        assert (self.d_model // self.n_heads) % 2 == 0, "head dimension must be even for RoPE"

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, d_ff=256),      # ~0.1 M, tests
    "mini": dict(d_model=192, n_layers=4, n_heads=6, d_ff=768),     # ~1.8 M, most learned per CPU-hour
    "small": dict(d_model=256, n_layers=4, n_heads=8, d_ff=1024),   # ~3.2 M, the CPU default
    "base": dict(d_model=512, n_layers=8, n_heads=8, d_ff=2048),    # ~25 M, for a GPU
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


def rotary_tables(length: int, head_dim: int, device, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [L, head_dim/2] for rotary position embeddings."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the head dimension by position-dependent angles. x: [B, nh, L, hs]."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 × (B, nh, L, hs)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))                                         # (B, L, D)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                 nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, key_mask, rope):
        x = x + self.drop(self.attn(self.ln1(x), key_mask, rope))
        return x + self.drop(self.mlp(self.ln2(x)))


class ScoreNetwork(nn.Module):
    """x_t: LongTensor [B, L] of token ids (residues, MASK, PAD) → logits [B, L, V] (float32)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size + 2, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():   # GPT-2 style scaling of residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def pad_id(self) -> int:
        return self.config.vocab_size + 1

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x_t: torch.LongTensor) -> torch.Tensor:
        B, L = x_t.shape
        assert L <= self.config.max_len, f"sequence length {L} exceeds the model's maximum {self.config.max_len}"
        key_mask = (x_t != self.pad_id).view(B, 1, 1, L)                  # True = attend
        rope = rotary_tables(L, self.config.d_model // self.config.n_heads, x_t.device)
        h = self.drop(self.embed(x_t))
        for block in self.blocks:
            h = block(h, key_mask, rope)
        return self.head(self.ln_f(h)).float()                             # (B, L, V)
