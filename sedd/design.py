"""Design requests: templates in, sampler frames out, sequences and FASTA back.

The library face of sampling. ``plan_designs`` builds the templates of a template string or a
length, with the lengths of any ``[a-b]`` spans chosen by the model (``sedd/spans.py``), and returns
their posterior beside them (the CLI ``sedd.sample`` calls it; the studio calls ``plan_for_spec`` on
the template it has already parsed; ``templates_for`` is the templates alone, for library callers).
``stream`` runs the sampler over a ``Request`` (the CLI, the studio and the evaluation all sample
through it); ``decode_rows`` and ``to_fasta`` turn the last frame into text.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import checkpoint as ckpt
from .alphabet import Slot, Template, TemplateSpec
from .cli import whole_number
from .data import format_fasta
from .sampler import MAX_SEED, Frame, is_whole, sample
from .spans import (
    SPAN_T_SAMPLES,
    SpanPosterior,
    check_span_mode,
    choose_lengths,
    span_posterior,
)


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
    particles: int = 1                  # > 1: allowed sets as exact conditioning (``sampler``, tau-leaping only)
    look_ahead: bool = True             # the particles' look-ahead weights (``sampler``); False only to compare


@dataclass
class Plan:
    """The templates of a request, one per design, and how their span lengths were chosen."""

    templates: list[Template]
    posterior: SpanPosterior | None = None      # None when the template has no [a-b] span

    @property
    def span_lengths(self) -> list[list[int]]:
        return [list(t.span_lengths) for t in self.templates]


def _spec_for(model: ckpt.Checkpoint, template: str | None, length: int | str | None, num_samples: int,
              seed: int, exclude: str) -> list[TemplateSpec]:
    """One spec per design: the parsed template, or all-designed specs of the requested lengths."""
    alphabet = model.alphabet
    if template is not None:
        return [alphabet.parse_spec(template, model.max_len, exclude)]
    if length == "auto":
        lengths = model.sample_lengths(num_samples, torch.Generator().manual_seed(stream_seed(seed, "lengths")))
    else:
        lengths = [design_length(length, model.max_len)] * num_samples
    banned = alphabet.residue_ids(exclude)
    return [TemplateSpec((Slot(None),) * n, alphabet.mask_id).excluding(banned, alphabet.residues) for n in lengths]


def design_length(length, max_len: int) -> int:
    """``length`` as a number of designed positions, 1 … ``max_len``: a whole number, or one typed
    (``cli.whole_number``, as ``sedd.sample --length`` takes it); 2.5, True or "١٢" are refused, not
    rounded or read."""
    try:
        n = whole_number(length) if isinstance(length, str) else int(length) if is_whole(length) else None
    except ValueError:
        n = None
    if n is None:                                        # None (neither a template nor a length) included
        raise ValueError(f"give a template, or a length from 1 to {max_len} or 'auto'; got length {length!r}")
    if not 1 <= n <= max_len:
        raise ValueError(f"length must be between 1 and {max_len}, got {n}")
    return n


def check_plan_options(num_samples, seed) -> tuple[int, int]:
    """``(num_samples, seed)`` as ints, or a ``ValueError`` saying what is allowed, by the sampler's rules
    and before the span posterior's minutes: the sampler would refuse seed 1.5 or −1 only after it, and
    torch reads a seed beyond 2**63 − 1 as "Overflow when unpacking long long"."""
    if not is_whole(num_samples) or num_samples < 1:
        raise ValueError(f"num_samples must be a whole number, at least 1; got {num_samples!r}")
    if not is_whole(seed) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be a whole number between 0 and 2**63 - 1, got {seed!r}")
    return int(num_samples), int(seed)


def plan_for_spec(model: ckpt.Checkpoint, spec: TemplateSpec, num_samples: int, seed: int = 0,
                  span_lengths: str = "sample", t_samples: int = SPAN_T_SAMPLES, progress: bool = False,
                  check: Callable[[], None] | None = None) -> Plan:
    """``num_samples`` templates from a parsed template, span lengths chosen by the model when it has spans
    (``check``: see ``spans.span_posterior``)."""
    num_samples, seed = check_plan_options(num_samples, seed)
    check_span_mode(span_lengths)
    if not spec.spans:
        return Plan([spec.fixed()] * num_samples)
    posterior = span_posterior(model, spec, t_samples=t_samples, seed=stream_seed(seed, "span times"),
                               progress=progress, check=check)
    chosen = choose_lengths(posterior, num_samples, span_lengths, stream_seed(seed, "span lengths"))
    return Plan([spec.expand(k) for k in chosen], posterior)


def plan_designs(model: ckpt.Checkpoint, *, template: str | None = None, length: int | str | None = None,
                 num_samples: int = 1, seed: int = 0, exclude: str = "", span_lengths: str = "sample",
                 t_samples: int = SPAN_T_SAMPLES, progress: bool = False) -> Plan:
    """Templates for ``num_samples`` designs, with the lengths of any ``[a-b]`` spans chosen by the model.

    ``exclude``: residues never placed at a designed position. ``span_lengths``: ``sample`` draws
    each design's lengths from the posterior (seeded by ``seed``), ``map`` gives all the mode.
    ``t_samples``: draws (random masks) per candidate in the posterior's ELBO estimates.
    """
    num_samples, seed = check_plan_options(num_samples, seed)
    if template is not None and length is not None:
        raise ValueError(f"give a template or a length, not both; got template {template!r} and length {length!r}")
    check_span_mode(span_lengths)
    specs = _spec_for(model, template, length, num_samples, seed, exclude)
    if len(specs) > 1:
        return Plan([spec.fixed() for spec in specs])
    return plan_for_spec(model, specs[0], num_samples, seed, span_lengths, t_samples, progress)


def templates_for(model: ckpt.Checkpoint, *, template: str | None = None, length: int | str | None = None,
                  num_samples: int = 1, seed: int = 0, exclude: str = "") -> list[Template]:
    """Build ``num_samples`` templates from a template string, a length, or ``"auto"`` lengths."""
    return plan_designs(model, template=template, length=length, num_samples=num_samples, seed=seed,
                        exclude=exclude).templates


def allowed_tensor(templates: list[Template], size: int) -> torch.BoolTensor | None:
    """[B, L_max, V] residues each position may take, or None when no template restricts any."""
    if not any(t.restricted for t in templates):
        return None
    allowed = torch.ones(len(templates), max(len(t) for t in templates), size, dtype=torch.bool)
    for b, tpl in enumerate(templates):
        for i, ids in enumerate(tpl.allowed):
            if ids is not None:
                allowed[b, i] = False
                allowed[b, i, list(ids)] = True
    return allowed


def stream(model: ckpt.Checkpoint, request: Request):
    """The sampler's frames for a request (device = the model's): given residues are exact conditioning;
    allowed sets renormalise each position's prediction, or with ``particles`` > 1 condition the
    sampler's law exactly (``sedd.sampler``)."""
    return sample(model.model, [t.tokens for t in request.templates], mask_id=model.alphabet.mask_id,
                  steps=request.steps, temperature=request.temperature, seed=request.seed,
                  schedule=model.schedule, use_cache=request.use_cache,
                  allowed=allowed_tensor(request.templates, model.alphabet.size),
                  strategy=request.sampler, top_p=request.top_p, particles=request.particles,
                  look_ahead=request.look_ahead)


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch ``index`` of a request run in batches: the request's own for the first, so a
    request that fits one batch draws what it always drew; for the others a hash of both, so that
    no batch of one seed repeats a batch of another (with seed + index, seed 1's second batch would
    be seed 2's first)."""
    return seed if index == 0 else _hashed_seed(f"sedd batch {seed} {index}")


def stream_seed(seed: int, purpose: str) -> int:
    """The seed of a request's other random draws (``purpose``: lengths, span times (the span
    posterior's draws, named when they were times), span lengths),
    a hash of both. The sampler starts from ``seed`` itself, so a draw seeded with it would reuse
    the sampler's random numbers: with ``--length auto``, design j's length would come from the
    very uniform that decides whether the sampler reveals position j of design 0 at the first step,
    and a span's length would be drawn with the uniforms that drew its posterior's masks."""
    return _hashed_seed(f"sedd {purpose} {seed}")


def _hashed_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & MAX_SEED


def decode_rows(model: ckpt.Checkpoint, frame: Frame, lengths: list[int]) -> list[str]:
    return [model.alphabet.decode(row[:n].tolist()) for row, n in zip(frame.tokens, lengths)]


def design_name(index: int, prefix: str = "design") -> str:
    """The name of the index-th design (from 1), in FASTA files, tables and downloads: ``design_3``."""
    return f"{prefix}_{index}"


def to_fasta(sequences: list[str], prefix: str = "design", first: int = 1, note: str = "") -> str:
    """``>design_1``, ``>design_2``, … records, numbered from ``first`` (``data.format_fasta``);
    ``note`` follows each name on its header line."""
    ids = [design_name(i, prefix) + note for i in range(first, first + len(sequences))]
    return format_fasta(sequences, ids=ids)
