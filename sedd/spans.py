"""Choosing the lengths of a template's variable spans ``[a-b]`` (docs/design.md §11).

A combination k = (k_1, …, k_m) of span lengths fixes the layout: the total length n_k and the
positions of the given residues. The model's posterior over combinations is
    p(k | given residues) ∝ p(n_k) · p_θ(given residues at their positions | n_k),
with p(n) the checkpoint's training length histogram (add-one smoothed, as ``likelihood.length_nll``)
and the second factor the likelihood of the observed positions only, every designed position masked
at every t: log p_θ(…) ≈ −ELBO, the bound of ``likelihood.estimate_elbo(..., observed=...)`` (a
bound, as everywhere in this project; the posterior uses it as the log-likelihood).

Common random numbers: every candidate is scored with the same K draws of masks of the given
residues (``observed_log_likelihoods``, which also does the integral over t exactly), so the
differences between candidates are not swamped by the Monte Carlo noise of each estimate. (Measured
on 100 held-out ACYP sequences, ``benchmarks/span_lengths.py``, docs/benchmarks.md: masks drawn per
candidate put the posterior's mode on the true length for 73 % of them with 8 draws per candidate
and 77 % with 32; common masks, for 83 % with either.)

Each probability comes with its Monte Carlo standard error (``joint_stderr``, ``factor_stderr``,
``top(with_stderr=True)``), by the delta method: the K terms of every candidate give the covariance
Σ of the candidates' estimates (``stratified_covariance``), and p = softmax(log w) has covariance
J Σ Jᵀ with J = diag(p) − p pᵀ (a marginal sums rows of it; span by span, the factors' errors are
combined as if independent, though each span is scored with the same seed), the error at most
√(p(1 − p)). A template that gives few residues has little to go on: "GKVQGVFFR[3-8]LQGP" (13
given) has errors of 0.1–0.2 at K = 32, and its most probable length can change with the seed; the
studio and ``sedd.sample`` show the errors.

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
SPAN_T_SAMPLES = 32         # draws (masks) per candidate in the posterior's bounds; "t" from when they were times
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
    """Refuse a count of draws that is not a whole number ≥ 1: 0 averaged no term into NaN and a
    negative or fractional count failed inside torch, neither saying what was wrong."""
    if isinstance(t_samples, bool) or not isinstance(t_samples, numbers.Integral) or t_samples < 1:
        raise ValueError(f"t_samples (draws per candidate span length) must be a whole number ≥ 1, got {t_samples!r}")


def _given(tpl) -> torch.LongTensor:
    """The positions of a layout's given residues: the ones its likelihood scores (none: no network call)."""
    return torch.tensor([i for i, d in enumerate(tpl.designed) if not d], dtype=torch.long)


@torch.no_grad()
def observed_log_likelihoods(model, spec: TemplateSpec, combos: list[tuple[int, ...]], *, t_samples: int,
                             seed: int, progress: bool = False,
                             check: Callable[[], None] | None = None) -> torch.Tensor:
    """−ELBO (nats, summed) of the given residues of ``spec`` laid out by each combination, draw by
    draw: a [K, C] float64 tensor whose column c holds candidate c's K terms; their mean over the
    draws is the estimate, their spread its error.

    The bound of ``likelihood.estimate_elbo(..., observed=...)`` (docs/design.md §11), designed
    positions masked throughout, with the integral over t done exactly. Given m of the G given
    residues masked, a uniformly random set S, the time integral of f(t) = (1/t) Σ_{i ∈ S} −log p_θ(x_i | x_t)
    weighs that set by ∫₀¹ (1/t) C(G, m) tᵐ (1−t)^(G−m) dt = 1/m (a Beta integral), so
        −log p_θ(given) ≤ Σ_{m=1}^{G} (1/m) E_{|S|=m} Σ_{i∈S} −log p_θ(x_i | x_{∖S})
                       = G · E_{m ~ U{1…G}} [ (1/m) Σ_{i∈S} −log p_θ(x_i | x_{∖S}) ]
    (the ε → 0 limit of the bound with times, which differs from it by O(ε)). Draw k takes a
    stratified level m_k (stratum k of K over 1…G) and masks the first m_k given residues of a
    random order. Each term is then at most G times a mean cross-entropy, where sampling t gave the
    few residues masked at a small t the weight 1/t: a heavy tail whose rare large terms made the
    error estimated from K times unreliable (too small for one model, too large for another).

    Common random numbers: the levels and the orders are drawn once and used for every layout (all
    have the same G), so residues far from a span contribute the same terms to every candidate,
    and the differences between candidates keep little noise (with masks drawn per layout, as
    separate ``estimate_elbo`` calls give, they would differ per layout).
    """
    from tqdm.auto import tqdm

    check_t_samples(t_samples)
    net, mask_id = model.model, model.alphabet.mask_id
    device = device_of(net)
    gen = torch.Generator().manual_seed(int(seed))
    K = t_samples
    levels = hidden = None              # [K]: m_k, how many given residues draw k masks; [K, G]: which
    out = []
    with eval_mode(net):                             # also when a Stop (``check``) abandons the estimate
        for combo in tqdm(combos, desc="span lengths", disable=not progress, leave=False):
            if check is not None:
                check()                                  # may raise: the caller abandons the estimate (Stop)
            tpl = spec.expand(combo)
            given = _given(tpl)
            G = len(given)
            if G == 0:                                   # nothing given: every layout is equally likely
                out.append(torch.zeros(K, dtype=torch.float64))
                continue
            if hidden is None:                           # the same count of given residues in every layout
                strata = (torch.arange(K, dtype=torch.float64) + torch.rand(K, generator=gen, dtype=torch.float64)) / K
                levels = (strata * G).long().clamp(max=G - 1) + 1                                     # [K], 1 … G
                order = torch.rand(K, G, generator=gen).argsort(1).argsort(1)          # each draw's random order
                hidden = order < levels.unsqueeze(1)
            x0 = torch.tensor(tpl.tokens, dtype=torch.long)
            x_t = torch.full((K, len(tpl)), mask_id, dtype=torch.long)                                  # [K, n]
            x_t[:, given] = torch.where(hidden, mask_id, x0[given].expand(K, -1))
            scored = torch.zeros(K, len(tpl), dtype=torch.bool)
            scored[:, given] = hidden
            logits = net(x_t.to(device))
            nats = masked_cross_entropy(logits, x0.clamp(max=mask_id - 1).expand(K, -1).to(device),
                                        scored.to(device)).double().cpu() * G / levels               # [K]
            out.append(-nats)
    return torch.stack(out, 1)


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
    # Monte Carlo standard errors, in the order of ``joint`` (``joint_stderr``) and of each factor's
    # probabilities (``factor_stderr``); None where not estimated (from a single draw)
    joint_stderr: list[float] | None = None
    factor_stderr: list[list[float]] | None = None

    def top(self, n: int = TOP, with_stderr: bool = False) -> list[dict]:
        """The ``n`` most probable combinations: ``[{"lengths": [k, …], "prob": p}, …]``, each with
        ``"stderr"`` too if ``with_stderr`` (None where not estimated)."""
        if self.joint:
            errors = self.joint_stderr or [None] * len(self.joint)
            best = heapq.nlargest(n, ((c, p, e) for (c, p), e in zip(self.joint, errors)), key=lambda cpe: cpe[1])
        else:   # beam over independent factors: exact for the top n of a product
            best = [((), 1.0, 0.0)]
            errors = self.factor_stderr or [[None] * len(lengths) for lengths, _ in self.factors]
            for (lengths, probs), factor_errors in zip(self.factors, errors):
                best = heapq.nlargest(n, ((c + (k,), p * q, _product_stderr(p, e, q, f)) for c, p, e in best
                                          for k, q, f in zip(lengths, probs, factor_errors)), key=lambda cpe: cpe[1])
        return [{"lengths": list(c), "prob": p} | ({"stderr": e} if with_stderr else {}) for c, p, e in best]

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


def _product_stderr(p: float, p_err: float | None, q: float, q_err: float | None) -> float | None:
    """The error of p·q for independent estimates p and q (delta method)."""
    if p_err is None or q_err is None:
        return None
    return math.sqrt((q * p_err) ** 2 + (p * q_err) ** 2)


def _probabilities(log_w: torch.Tensor, cov: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """p = softmax(log w) and its covariance J Σ Jᵀ, J = diag(p) − p pᵀ (None without Σ)."""
    p = torch.softmax(log_w, 0)
    if cov is None:
        return p, None
    jacobian = torch.diag(p) - torch.outer(p, p)
    return p, jacobian @ cov @ jacobian.T


def _stderr(probs: torch.Tensor, cov: torch.Tensor | None) -> list[float] | None:
    """Each probability's error: the delta method's, at most √(p(1 − p)), the largest spread an
    estimate in [0, 1] with mean p can have (the linear term alone exceeds 1 when the log-weights are
    uncertain by several nats, as for two lengths the model cannot tell apart from a few draws)."""
    if cov is None:
        return None
    return torch.minimum(cov.diagonal().clamp(min=0).sqrt(), (probs * (1 - probs)).clamp(min=0).sqrt()).tolist()


def _combinations(spec: TemplateSpec) -> int:
    return math.prod(s.high - s.low + 1 for s in spec.spans)


def candidate_layouts(spec: TemplateSpec) -> int:
    """How many layouts ``span_posterior`` scores for ``spec`` (its ``check`` is called before each):
    every combination of lengths up to ``MAX_ENUMERATED`` (none when there is only one), else each
    span's lengths in turn."""
    combinations = _combinations(spec)
    if combinations <= MAX_ENUMERATED:
        return combinations if combinations > 1 else 0
    return sum(s.high - s.low + 1 for s in spec.spans)


def stratified_covariance(terms: torch.Tensor) -> torch.Tensor | None:
    """The covariance of the column means of ``terms`` ([K, C], row k drawn in stratum k of K), or None
    from a single row.

    The plain covariance of the rows / K counts the spread between strata, which stratifying removes:
    the terms grow with the share masked, and on the bundled model's span benchmark that made the
    errors four times their real size. Adjacent strata are paired instead ("collapsed strata"): each
    pair's difference d_j estimates the variance within both, and Σ_j d_j d_jᵀ / (2 · pairs · K) the
    covariance of the means (still a little large, by the trend between a pair's two strata).
    """
    K, pairs = len(terms), len(terms) // 2
    if pairs == 0:
        return None
    d = terms[0:2 * pairs:2] - terms[1:2 * pairs:2]                                      # [pairs, C]
    return d.T @ d / (2 * pairs * K)


def _score(model, spec: TemplateSpec, combos, t_samples, seed, progress,
           check) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """log w(k) = log p(n_k) + log p_θ(given | n_k) for each combination, the covariance of these
    estimates (None from a single draw), and the network rows it took (``t_samples`` per layout with
    a given residue, as ``observed_log_likelihoods`` evaluates them)."""
    fixed = spec.num_slots
    prior = log_length_prior(model.length_histogram, [fixed + sum(c) for c in combos], model.max_len)
    terms = observed_log_likelihoods(model, spec, combos, t_samples=t_samples, seed=seed, progress=progress,
                                     check=check)                                                # [K, C]
    cov = stratified_covariance(terms)
    given = len(_given(spec.expand(combos[0]))) > 0         # the same count in every layout
    rows = t_samples * len(combos) * given
    return torch.tensor(prior, dtype=torch.float64) + terms.mean(0), cov, rows


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
        if len(combos) > 1:
            log_w, cov, nfe = _score(model, spec, combos, t_samples, seed, progress, check)
        else:
            log_w, cov, nfe = torch.zeros(1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64), 0
        probs, probs_cov = _probabilities(log_w, cov)
        factors, factor_errors = [], []
        for j, lengths in enumerate(ranges):     # span j's marginal: sums of the joint, A p with A 0/1
            A = torch.tensor([[float(c[j] == k) for c in combos] for k in lengths], dtype=torch.float64)
            factors.append((lengths, (A @ probs).tolist()))
            factor_errors.append(_stderr(A @ probs, None if probs_cov is None else A @ probs_cov @ A.T))
        return SpanPosterior("enumeration", factors, list(zip(combos, probs.tolist())), nfe,
                             joint_stderr=_stderr(probs, probs_cov), factor_stderr=_all_known(factor_errors))
    current = [r[len(r) // 2] for r in ranges]
    factors, factor_errors, nfe = [], [], 0
    for j, lengths in enumerate(ranges):
        combos = [tuple(current[:j]) + (k,) + tuple(current[j + 1:]) for k in lengths]
        log_w, cov, rows = _score(model, spec, combos, t_samples, seed, progress, check)
        probs, probs_cov = _probabilities(log_w, cov)
        factors.append((lengths, probs.tolist()))
        factor_errors.append(_stderr(probs, probs_cov))
        nfe += rows
        current[j] = lengths[int(probs.argmax())]
    return SpanPosterior("span by span", factors, nfe=nfe, factor_stderr=_all_known(factor_errors))


def _all_known(errors: list[list[float] | None]) -> list[list[float]] | None:
    """Each factor's errors, or None unless every factor has them."""
    return None if any(e is None for e in errors) else errors


def choose_lengths(posterior: SpanPosterior, num_samples: int, mode: str, seed: int) -> list[tuple[int, ...]]:
    """Span lengths for each design: drawn from the posterior (``sample``) or its mode for all (``map``)."""
    check_span_mode(mode)
    if mode == "map":
        return [posterior.mode()] * num_samples
    return posterior.draw(num_samples, torch.Generator().manual_seed(int(seed)))
