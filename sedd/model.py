"""The score network: a pre-LN transformer encoder over residue tokens.

It knows nothing about diffusion. It maps a partially masked sequence x_t to logits of
p(x_0^i = b | x_t) over the V residues at every position (docs/design.md §2: for the absorbing
process the score factorises, so no time/σ input is needed). Positions are encoded with rotary
embeddings (RoPE, Su et al. 2021), which generalise across the 64–127 residue range without a
learned table. Padding is excluded from attention with a key mask.

Recipe options (``ModelConfig``; the defaults are the network every checkpoint so far was trained
with, so old ``config.json`` files load unchanged): ``mlp="swiglu"`` (Shazeer 2020, GLU variants),
``tie_embeddings`` (the output layer reuses the residue rows of the input embedding, Press & Wolf
2017) and ``causal`` (each position attends only to itself and earlier positions: the same network
as a left-to-right model, used by ``sedd.autoregressive`` as the baseline). ``weights_from_causal_twin``
starts a diffusion network from such a baseline's weights (``sedd.train --init-from``).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


MLP_KINDS = ("gelu", "swiglu")


@dataclass
class ModelConfig:
    vocab_size: int = 20          # V: residues predicted; inputs add MASK (V) and PAD (V+1)
    max_len: int = 128
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    d_ff: int = 1024
    dropout: float = 0.1
    mlp: str = "gelu"             # "gelu": Linear-GELU-Linear; "swiglu": gated, hidden ⌊2·d_ff/3⌋ (same parameters)
    tie_embeddings: bool = False  # output weights = the residue rows of the input embedding
    causal: bool = False          # left-to-right attention (the autoregressive baseline)

    def __post_init__(self) -> None:
        # ValueErrors, not asserts: ``python -O`` strips asserts, and n_heads = 0 was a ZeroDivisionError
        # (a checkpoint's config.json is read into it: every field is checked, not only the arithmetic's)
        for name in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        for name in ("tie_embeddings", "causal"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={self.d_model} and "
                             f"n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"the head dimension d_model/n_heads must be even for RoPE, got "
                             f"{self.d_model}/{self.n_heads} = {self.d_model // self.n_heads}")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"unknown mlp {self.mlp!r}; choose one of {', '.join(MLP_KINDS)}")

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

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x: [B, L, D]; attn_mask: bool, True = may attend, broadcastable to [B, nh, L, L]."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 × (B, nh, L, hs)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))                                         # (B, L, D)


class SwiGLU(nn.Module):
    """down(SiLU(x W_gate) ⊙ x W_up) (Shazeer 2020). Hidden width ⌊2·d_ff/3⌋ keeps the parameter
    count of the two-matrix GELU MLP of width d_ff."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        hidden = 2 * d_ff // 3
        self.gate_up = nn.Linear(d_model, 2 * hidden)
        self.down = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


def make_mlp(cfg: ModelConfig) -> nn.Module:
    if cfg.mlp == "swiglu":
        return SwiGLU(cfg.d_model, cfg.d_ff)
    # a plain Sequential: its parameter names (mlp.0, mlp.2) are those of every existing checkpoint
    return nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = make_mlp(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, attn_mask, rope):
        x = x + self.drop(self.attn(self.ln1(x), attn_mask, rope))
        return x + self.drop(self.mlp(self.ln2(x)))


RESIDUAL_PROJECTIONS = ("proj.weight", "mlp.2.weight", "mlp.down.weight")


class ScoreNetwork(nn.Module):
    """x_t: LongTensor [B, L] of token ids (residues, MASK, PAD) → logits [B, L, V] (float32).

    With ``causal`` the logits at position i see only tokens 0…i, so the caller shifts its inputs
    (``sedd.autoregressive``).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size + 2, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        if cfg.tie_embeddings:   # logits = h · E[:V]ᵀ + b: only the bias is the head's own
            self.head_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        else:
            self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():   # GPT-2 style scaling of residual projections
            if name.endswith(RESIDUAL_PROJECTIONS):
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
        if x_t.dim() != 2:
            raise ValueError(f"x_t must be token ids of shape [B, L], got shape {tuple(x_t.shape)}")
        B, L = x_t.shape
        if L > self.config.max_len:   # RoPE would extrapolate to positions never trained on
            raise ValueError(f"sequence length {L} exceeds the model's maximum {self.config.max_len} "
                             f"(lengths 1 … {self.config.max_len} are allowed)")
        attn_mask = (x_t != self.pad_id).view(B, 1, 1, L)                 # True = attend
        if self.config.causal:
            attn_mask = attn_mask & torch.ones(L, L, dtype=torch.bool, device=x_t.device).tril()   # (B, 1, L, L)
        rope = rotary_tables(L, self.config.d_model // self.config.n_heads, x_t.device)
        h = self.drop(self.embed(x_t))
        for block in self.blocks:
            h = block(h, attn_mask, rope)
        h = self.ln_f(h)
        if self.config.tie_embeddings:
            return F.linear(h, self.embed.weight[:self.config.vocab_size], self.head_bias).float()
        return self.head(h).float()                                        # (B, L, V)


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[None]:
    """The network in eval mode for the block, its own mode back however the block ends (an error,
    a Stop, or a sampler generator closed by a consumer that stops reading frames)."""
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def device_of(net: nn.Module) -> torch.device:
    """The device a network's parameters live on (the CPU for one without parameters): where its
    inputs go when the caller does not say."""
    return next((p.device for p in net.parameters()), torch.device("cpu"))


def weights_from_causal_twin(twin: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor],
                             num_residues: int) -> dict[str, torch.Tensor]:
    """A diffusion network's state dict that starts from its causal twin's trained weights.

    ``twin``: the state dict of an autoregressive baseline (``sedd.autoregressive``: the same network
    with a causal mask, one more output, END, and the inputs BOS and PAD after it); ``fresh``: a newly
    initialised diffusion network of the same size. The transformer blocks and the final norm are
    copied; of the embedding and the output layer only the residue rows, because MASK, and the END
    output, have no counterpart in the other model and keep their fresh initialisation. Attention
    turns bidirectional, and each position now predicts its own residue rather than the next one:
    fine-tuning adapts both (Gong et al. 2024 adapt left-to-right models to diffusion the same way).
    """
    V = num_residues
    out, problems = dict(fresh), []
    for name, value in fresh.items():
        if name not in twin:
            problems.append(f"{name} is missing")
        elif name in ("embed.weight", "head.weight", "head.bias", "head_bias"):
            if twin[name].shape[1:] != value.shape[1:] or twin[name].shape[0] < V:
                problems.append(f"{name}: {tuple(twin[name].shape)} vs {tuple(value.shape)}")
            else:
                out[name] = torch.cat([twin[name][:V].to(value.dtype), value[V:]])
        elif twin[name].shape != value.shape:
            problems.append(f"{name}: {tuple(twin[name].shape)} vs {tuple(value.shape)}")
        else:
            out[name] = twin[name].to(value.dtype).clone()
    if problems:
        raise ValueError("the autoregressive baseline's network does not match this one "
                         f"({'; '.join(problems[:4])}{'; …' if len(problems) > 4 else ''}); "
                         "train it with the same preset and model options")
    return out
