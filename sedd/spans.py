"""Choosing the lengths of a template's variable spans ``[a-b]`` (docs/design.md §11).

A combination k = (k_1, …, k_m) of span lengths fixes the layout: the total length n_k and the
positions of the given residues. The model's posterior over combinations is
    p(k | given residues) ∝ p(n_k) · p_θ(given residues at their positions | n_k),
with p(n) the checkpoint's training length histogram (add-one smoothed, as ``likelihood.length_nll``)
and the second factor the likelihood of the observed positions only, every designed position masked
at every t: log p_θ(…) ≈ −ELBO, the bound of ``likelihood.estimate_elbo(..., observed=...)`` (a
bound, as everywhere in this project; the posterior uses it as the log-likelihood).

Common random numbers: every candidate is scored with the same K stratified times and the same
masks of the given residues (``observed_log_likelihoods``), so the differences between candidates
are not swamped by the Monte Carlo noise of each estimate. (Measured on 100 held-out ACYP
sequences, ``benchmarks/span_lengths.py``, docs/benchmarks.md: with 8 times per candidate the
posterior's mode is the true length for 84 % of them with common masks and 73 % with masks drawn
per candidate; with 32 times, 84 % and 77 %. Common masks make a few times enough.)

Several spans: when the combinations number at most ``MAX_ENUMERATED`` they are all scored
(``method = "enumeration"``, exact up to the ELBO). Beyond that the spans are chosen one at a time
(``method = "span by span"``): span j is scored over its whole range with the spans before it at
their most probable length and the spans after it at their midpoint, and the posterior is taken
as the product of these conditionals (an approximation that ignores interactions between spans).
"""
from __future__ import annotations

import heapq
import itertools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .alphabet import TemplateSpec
from .loss import masked_cross_entropy
from .model import device_of, eval_mode

MAX_ENUMERATED = 200        # combinations scored jointly; more are chosen span by span
TOP = 10                    # combinations reported in ``top``
SPAN_T_SAMPLES = 32         # times per candidate in the posterior's bounds
SPAN_LENGTH_MODES = ("sample", "map")


def log_length_prior(histogram: dict[int, int], lengths: list[int], max_len: int) -> list[float]:
    """log p(n) for each n in ``lengths``: the training histogram, add-one smoothed over 1 … max_len,
        p(n) = (count(n) + 1) / (Σ_m count(m) + max_len)        (as ``likelihood.length_nll``).

    An empty histogram gives the uniform prior 1/max_len.
    """
    total = sum(histogram.values()) + max_len
    return [math.log((histogram.get(n, 0) + 1) / total) for n in lengths]


def check_span_mode(mode: str) -> None:
    """Refuse a way of choosing span lengths other than ``SPAN_LENGTH_MODES``."""
    if mode not in SPAN_LENGTH_MODES:
        raise ValueError(f"span lengths must be chosen by one of {', '.join(SPAN_LENGTH_MODES)}; got {mode!r}")


def check_t_samples(t_samples) -> None:
    """Refuse a count of times that is not a whole number ≥ 1: 0 averaged no term into NaN and a
    negative or fractional count failed inside torch, neither saying what was wrong."""
    if isinstance(t_samples, bool) or not isinstance(t_samples, numbers.Integral) or t_samples < 1:
        raise ValueError(f"t_samples (times per candidate span length) must be a whole number ≥ 1, got {t_samples!r}")


def _given(tpl) -> torch.LongTensor:
    """The positions of a layout's given residues: the ones its likelihood scores (none: no network call)."""
    return torch.tensor([i for i, d in enumerate(tpl.designed) if not d], dtype=torch.long)


@torch.no_grad()
def observed_log_likelihoods(model, spec: TemplateSpec, combos: list[tuple[int, ...]], *, t_samples: int,
                             seed: int, progress: bool = False, check: Callable[[], None] | None = None) -> list[float]:
    """−ELBO (nats, summed) of the given residues of ``spec`` laid out by each combination.

    The bound of ``likelihood.estimate_elbo(..., observed=...)`` (docs/design.md §11): designed
    positions masked at every t, a given residue masked with probability (1−ε)t, and
        f(t) = (1/t) Σ_{given i masked in x_t} −log p_θ(x_i | x_t)
    (the σ(t)-weighted score entropy of ``loss.py`` equals this for the log-linear schedule). It is
    written out here so that the random numbers are common to every candidate: one seeded draw of
    K stratified times t_k and of one uniform u_{k,j} per given residue j, and residue j is masked
    at t_k in every layout iff u_{k,j} < (1−ε)t_k. Residues far from a span then contribute the same
    terms to every candidate, and the differences between candidates keep little noise (with only
    the times in common, as separate ``estimate_elbo`` calls give, the masks differ per layout).
    """
    from tqdm.auto import tqdm

    check_t_samples(t_samples)
    net, schedule, mask_id = model.model, model.schedule, model.alphabet.mask_id
    device = device_of(net)
    gen = torch.Generator().manual_seed(int(seed))
    K = t_samples
    t = schedule.eps + (1 - schedule.eps) * (torch.arange(K, dtype=torch.float64)
                                             + torch.rand(K, generator=gen, dtype=torch.float64)) / K    # [K]
    hidden = None                                                   # [K, given]: masked at t_k
    out = []
    with eval_mode(net):                             # also when a Stop (``check``) abandons the estimate
        for combo in tqdm(combos, desc="span lengths", disable=not progress, leave=False):
            if check is not None:
                check()                                  # may raise: the caller abandons the estimate (Stop)
            tpl = spec.expand(combo)
            given = _given(tpl)
            if len(given) == 0:                          # nothing given: every layout is equally likely
                out.append(0.0)
                continue
            if hidden is None:                           # the same count of given residues in every layout
                hidden = torch.rand(K, len(given), generator=gen, dtype=torch.float64) < schedule.mask_prob(t).unsqueeze(1)
            x0 = torch.tensor(tpl.tokens, dtype=torch.long)
            x_t = torch.full((K, len(tpl)), mask_id, dtype=torch.long)                                  # [K, n]
            x_t[:, given] = torch.where(hidden, mask_id, x0[given].expand(K, -1))
            scored = torch.zeros(K, len(tpl), dtype=torch.bool)
            scored[:, given] = hidden
            logits = net(x_t.to(device))
            nats = masked_cross_entropy(logits, x0.clamp(max=mask_id - 1).expand(K, -1).to(device),
                                        scored.to(device)).double().cpu() / t                              # [K]
            out.append(-nats.mean().item())
    return out


def _softmax(log_w: list[float]) -> list[float]:
    return torch.softmax(torch.tensor(log_w, dtype=torch.float64), 0).tolist()


@dataclass
class SpanPosterior:
    """The model's distribution over span-length combinations.

    ``factors[j]``: span j's lengths and probabilities — its marginal (enumeration) or its
    conditional (span by span). ``joint``: every scored combination with its probability
    (enumeration only; span by span the joint is the product of the factors). ``nfe``: the network
    rows the estimate evaluated (``t_samples`` per scored layout that has a given residue), shared
    by every design drawn from the posterior.
    """

    method: str
    factors: list[tuple[list[int], list[float]]]
    joint: list[tuple[tuple[int, ...], float]] = field(default_factory=list)
    nfe: int = 0

    def top(self, n: int = TOP) -> list[dict]:
        """The ``n`` most probable combinations: ``[{"lengths": [k, …], "prob": p}, …]``."""
        if self.joint:
            best = heapq.nlargest(n, self.joint, key=lambda kp: kp[1])
        else:   # beam over independent factors: exact for the top n of a product
            best = [((), 1.0)]
            for lengths, probs in self.factors:
                best = heapq.nlargest(n, ((c + (k,), p * q) for c, p in best for k, q in zip(lengths, probs)),
                                      key=lambda kp: kp[1])
        return [{"lengths": list(c), "prob": p} for c, p in best]

    def mode(self) -> tuple[int, ...]:
        return tuple(self.top(1)[0]["lengths"])

    def draw(self, n: int, generator: torch.Generator) -> list[tuple[int, ...]]:
        """``n`` independent combinations drawn from the posterior."""
        if self.joint:
            probs = torch.tensor([p for _, p in self.joint], dtype=torch.float64)
            return [self.joint[i][0] for i in torch.multinomial(probs, n, replacement=True, generator=generator).tolist()]
        columns = [[lengths[i] for i in torch.multinomial(torch.tensor(probs, dtype=torch.float64), n, replacement=True,
                                                          generator=generator).tolist()]
                   for lengths, probs in self.factors]
        return [tuple(c) for c in zip(*columns)]


def _combinations(spec: TemplateSpec) -> int:
    return math.prod(s.high - s.low + 1 for s in spec.spans)


def _score(model, spec: TemplateSpec, combos, t_samples, seed, progress, check) -> tuple[list[float], int]:
    """log w(k) = log p(n_k) + log p_θ(given | n_k) for each combination, and the network rows it took
    (``t_samples`` per layout with a given residue, as ``observed_log_likelihoods`` evaluates them)."""
    fixed = spec.num_slots
    prior = log_length_prior(model.length_histogram, [fixed + sum(c) for c in combos], model.max_len)
    like = observed_log_likelihoods(model, spec, combos, t_samples=t_samples, seed=seed, progress=progress, check=check)
    given = len(_given(spec.expand(combos[0]))) > 0         # the same count in every layout
    rows = t_samples * len(combos) * given
    return [a + b for a, b in zip(prior, like)], rows


def span_posterior(model, spec: TemplateSpec, *, t_samples: int = SPAN_T_SAMPLES, seed: int = 0,
                   progress: bool = False, check: Callable[[], None] | None = None) -> SpanPosterior:
    """The posterior over the lengths of ``spec``'s spans (see the module docstring for the method).

    ``check`` is called before each candidate layout is scored; an exception it raises abandons the
    estimate (the studio's Stop).
    """
    spans = spec.spans
    if not spans:
        raise ValueError("the template has no variable span [a-b] to choose a length for")
    check_t_samples(t_samples)
    ranges = [list(range(s.low, s.high + 1)) for s in spans]
    if _combinations(spec) <= MAX_ENUMERATED:
        combos = list(itertools.product(*ranges))
        log_w, nfe = _score(model, spec, combos, t_samples, seed, progress, check) if len(combos) > 1 else ([0.0], 0)
        probs = _softmax(log_w)
        factors = []
        for j, lengths in enumerate(ranges):
            marginal = {k: 0.0 for k in lengths}
            for c, p in zip(combos, probs):
                marginal[c[j]] += p
            factors.append((lengths, [marginal[k] for k in lengths]))
        return SpanPosterior("enumeration", factors, list(zip(combos, probs)), nfe)
    current = [r[len(r) // 2] for r in ranges]
    factors, nfe = [], 0
    for j, lengths in enumerate(ranges):
        combos = [tuple(current[:j]) + (k,) + tuple(current[j + 1:]) for k in lengths]
        log_w, rows = _score(model, spec, combos, t_samples, seed, progress, check)
        probs = _softmax(log_w)
        factors.append((lengths, probs))
        nfe += rows
        current[j] = lengths[max(range(len(probs)), key=probs.__getitem__)]
    return SpanPosterior("span by span", factors, nfe=nfe)


def choose_lengths(posterior: SpanPosterior, num_samples: int, mode: str, seed: int) -> list[tuple[int, ...]]:
    """Span lengths for each design: drawn from the posterior (``sample``) or its mode for all (``map``)."""
    check_span_mode(mode)
    if mode == "map":
        return [posterior.mode()] * num_samples
    return posterior.draw(num_samples, torch.Generator().manual_seed(int(seed)))
