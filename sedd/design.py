"""Design requests: templates in, sampler frames out, sequences and FASTA back.

The library face of sampling (the CLI ``sedd.sample``, the studio and the evaluation all go
through it): ``templates_for`` builds templates, ``stream`` runs the sampler over a ``Request``,
``decode_rows`` and ``to_fasta`` turn the last frame into text.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import checkpoint as ckpt
from .alphabet import Template
from .data import format_fasta
from .sampler import Frame, sample


@dataclass
class Request:
    """What to design: one template per sample (templates may differ in length)."""

    templates: list[Template]
    steps: int = 128
    temperature: float = 1.0
    seed: int = 0
    use_cache: bool = True
    sampler: str = "tau-leaping"        # one of ``sampler.STRATEGIES``
    top_p: float = 1.0                  # nucleus filtering; 1 = off


def templates_for(model: ckpt.Checkpoint, *, template: str | None = None, length: int | str | None = None,
                  num_samples: int = 1, seed: int = 0) -> list[Template]:
    """Build ``num_samples`` templates from a template string, a length, or ``"auto"`` lengths."""
    alphabet = model.alphabet
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if template is not None:
        return [alphabet.parse_template(template, model.max_len)] * num_samples
    if length == "auto":
        lengths = model.sample_lengths(num_samples, torch.Generator().manual_seed(seed))
    else:
        n = int(length)
        if not 1 <= n <= model.max_len:
            raise ValueError(f"length must be between 1 and {model.max_len}, got {n}")
        lengths = [n] * num_samples
    return [Template((alphabet.mask_id,) * n, alphabet.mask_id) for n in lengths]


def stream(model: ckpt.Checkpoint, request: Request):
    """The sampler's frames for a request (device = the model's)."""
    return sample(model.model, [t.tokens for t in request.templates], mask_id=model.alphabet.mask_id,
                  steps=request.steps, temperature=request.temperature, seed=request.seed,
                  schedule=model.schedule, use_cache=request.use_cache,
                  strategy=request.sampler, top_p=request.top_p)


def decode_rows(model: ckpt.Checkpoint, frame: Frame, lengths: list[int]) -> list[str]:
    return [model.alphabet.decode(row[:n].tolist()) for row, n in zip(frame.tokens, lengths)]


def to_fasta(sequences: list[str], prefix: str = "design") -> str:
    """``>design_1``, ``>design_2``, … records (``data.format_fasta``)."""
    return format_fasta(sequences, prefix=prefix)
