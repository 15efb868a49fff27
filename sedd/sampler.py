"""Samplers for the absorbing process, as generators of frames: τ-leaping, confidence, remasking.

All three run t from 1 down to 0 on a uniform grid of ``steps`` steps, share one cached network
(below) and one way to draw residues, and differ only in *which* masked positions they reveal:

- ``tau-leaping`` (default; SEDD Alg. 2, exact Tweedie step, ``_tau_leaping_step``): every still masked
  position stays masked with probability (1 − e^{−σ̄(s)})/(1 − e^{−σ̄(t)}), independently, and
  otherwise becomes residue b with probability p̃(b | x_t). At s = 0 that probability is 0.
- ``confidence`` (MaskGIT, Chang et al. 2022; ESM3's ordered unmasking): the number of positions
  left masked after the step is what τ-leaping leaves on average,
  m(s) = round(n · (1 − e^{−σ̄(s)})/(1 − e^{−σ̄(1)})) for n designed positions; the n − m(s)
  positions kept revealed are the most confident ones, confidence = log max_b p̃(b | x_t), plus
  ``order_noise`` · Gumbel noise (Gumbel-top-k: 0 = strictly most confident first, larger = closer
  to a random order). A revealed position gets a residue ŷ ~ p̃(· | x_t), with the temperature.
- ``remask`` (path planning, P2: Peng et al. 2025; confidence-based remasking, ReMDM: Wang et al.
  2025): the same top-(n − m(s)) choice, but among *all* designed positions: a revealed designed
  residue competes, on noise-free scores, with score η · log p̃(residue | context when it was drawn)
  against the masked positions' confidences, so a residue drawn early with little context and low
  probability may lose its place to a position the model is now surer of and go back to MASK, to
  be redrawn later; the Gumbel noise only chooses which masked positions fill the room left.
  η = 0 never remasks (= ``confidence``); larger η remasks more. At most
  floor(``remask_budget`` · n) remasks per row in the whole run (the lowest-scored revealed
  residues stay eligible, the rest are protected), and m(0) = 0, so the run ends after ``steps``
  steps with no MASK left.

p̃ is p_θ renormalised over the position's allowed residues, tempered, then nucleus-filtered
(``top_p``; docs/design.md §12). Renormalising each prediction is not conditioning the joint on the
allowed sets: a free position revealed before a constrained one does not see the constraint, so even
with many steps the samples do not follow p_θ(x | xⁱ ∈ Aᵢ for all i). Given residues are never
masked, resampled or remasked (exact conditioning, §8). Only residues are ever drawn: the network
has no logit for MASK or PAD (§4).

``particles`` = K > 1 makes allowed sets exact conditioning of the τ-leaping sampler's own law
(sequential Monte Carlo, docs/design.md §12): each design runs K particles whose revealed residues
are drawn from the renormalised p̃, as above. A path drawn that way has probability p(path) / Π Z
under this proposal, where p(path) is its probability under the unconstrained sampler and
Z = Σ_{b ∈ Aᵢ} p_T(b | x_t) is the allowed mass of each restricted position at the step it is
revealed (p_T: tempered, not renormalised); so each particle carries the weight p/q = Π Z.
Between steps the weight also carries a look-ahead (a twist of the intermediate targets):
ψ(x_t) = Π Z over the restricted positions still masked, each at the network's current outputs,
the model's own guess of how likely the restrictions left are to be met. It is replaced at every
step, so it telescopes: at t = 0 nothing is masked, ψ = 1 and the weight is exactly Π Z again.
What it changes is when particles are resampled: a particle whose free residues just made a barred
residue likely loses weight at once, while its restricted position is still masked, instead of
when that position is finally revealed, after the design has been built around it. When a design's
effective sample size (Σw)²/Σw² falls below K/2 its particles are resampled (systematic
resampling, with one uniform per design per step whatever happens), and at t = 0 one particle per
design is drawn ∝ its weight. As K grows the designs follow the unconstrained sampler's law
conditioned on every xⁱ ∈ Aᵢ, and the mean weight estimates that event's probability
(``Frame.constraint_log_prob``; mid-run, with the look-ahead, the current estimate). Frames show
each design's heaviest particle, which may be another particle than the step before: a frame's
``changed`` and ``remasked`` then say how the *shown* row differs from the last frame's (a residue
that differs counts as changed, one shown masked again as remasked), not what one particle did.
The cost is K network rows per design; a request with no constrained position runs one particle
per design.

Caching (docs/design.md §6): the network is time-independent, so a row whose tokens did not change
since its last evaluation reuses that output exactly; rows are recomputed individually. Draws are
in float64 inverse-CDF form (τ-leaping in two stages: a Bernoulli "unmask now?", then the residue),
with the same number of uniforms per step from one seeded generator whatever is cached, so caching
never changes the random stream (§7).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from .model import device_of, eval_mode
from .process import stay_masked_prob
from .schedule import LogLinearSchedule

STRATEGIES = ("tau-leaping", "confidence", "remask")
MAX_SEED = 2**63 - 1          # torch.Generator.manual_seed takes a 64-bit signed integer
MAX_PARTICLES = 256
MAX_STEPS = 100_000          # far beyond any sequence's positions; more only builds a huge time grid


@dataclass
class Frame:
    """One denoising state. tokens: [B, L] (MASK where still masked, PAD beyond each row's length)."""

    step: int                 # 0 = the initial state, ``steps`` = the final one
    t: float
    tokens: torch.LongTensor
    changed: torch.BoolTensor  # [B, L] positions revealed in this step (particles: whose shown residue changed)
    nfe: int                  # network evaluations so far, counted per row
    # [B, L] revealed residues sent back to MASK (particles: shown masked again, another particle shown)
    remasked: torch.BoolTensor | None = field(default=None)
    # particles > 1 (module docstring): [B] effective sample size of each design's particles, and the
    # log of their mean weight, an estimate of log P(every residue in its allowed set)
    ess: torch.Tensor | None = None
    constraint_log_prob: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.remasked is None:
            self.remasked = torch.zeros_like(self.changed)

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


def _template_tokens(templates, mask_id: int) -> torch.LongTensor:
    """``sample``'s templates as a new [B, L] long tensor on the CPU; refused, saying what is allowed, unless
    they are at least one row of integer token ids 0 … mask_id + 1 (residues, MASK, PAD)."""
    pad_id = mask_id + 1
    what = "templates must be token-id lists (one per design) or an integer tensor [B, L]"
    if isinstance(templates, torch.Tensor):
        if templates.dim() != 2:
            raise ValueError(f"{what}; got a {templates.dim()}-d tensor")
        rows = [templates]
    else:
        try:
            rows = [torch.as_tensor(list(tpl)) for tpl in templates]
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{what}; got {type(templates).__name__} {str(templates)[:60]!r}") from None
    for row in rows:
        if row.numel() and (row.dtype.is_floating_point or row.dtype.is_complex or row.dtype == torch.bool):
            raise ValueError(f"{what}; got {row.dtype} values")
    if isinstance(templates, torch.Tensor):
        x = templates.to("cpu", torch.long, copy=True)
    else:
        x = pad_templates(rows, pad_id) if rows else torch.zeros(0, 0, dtype=torch.long)
    if x.shape[0] == 0:
        raise ValueError("templates is empty: give at least one template (a list of token ids)")
    outside = (x < 0) | (x > pad_id)
    if outside.any():
        b, i = outside.nonzero()[0].tolist()
        raise ValueError(f"template {b + 1} has token id {int(x[b, i])} at position {i + 1}; token ids are residues "
                         f"0 … {mask_id - 1}, MASK {mask_id} (a designed position) and PAD {pad_id}")
    return x


def _checked_allowed(allowed, x: torch.LongTensor, mask_id: int) -> torch.BoolTensor | None:
    """``sample``'s ``allowed`` (None, or bool [B, L, V] for templates x [B, L]) on the CPU; refused
    unless it has that shape and every designed position allows some residue."""
    if allowed is None:
        return None
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool:
        raise ValueError(f"allowed must be a bool tensor [B, L, V] (True = the residue may be placed), got "
                         f"{allowed.dtype if isinstance(allowed, torch.Tensor) else type(allowed).__name__}")
    allowed = allowed.cpu()
    if allowed.shape != (*x.shape, mask_id):
        raise ValueError(f"allowed must have shape {(*x.shape, mask_id)}, got {tuple(allowed.shape)}")
    if not allowed[x == mask_id].any(-1).all():
        raise ValueError("a designed position allows no residue at all")
    return allowed


def _categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.LongTensor:
    """Inverse-CDF draw: probs [N, V] float64, u [N] uniforms → indices [N]."""
    cdf = probs.cumsum(-1)
    # right=True: the first index whose CDF exceeds u·total, so a zero-probability residue is never drawn
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return idx.clamp(max=probs.shape[-1] - 1)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p filtering (Holtzman et al. 2020): keep the most probable residues, in order, until
    their mass reaches ``top_p`` (the most probable always), zero the rest, renormalise.

    probs: [..., V] float64, normalised. top_p = 1 returns ``probs`` untouched.
    """
    if top_p >= 1.0:
        return probs
    ranked, order = probs.sort(dim=-1, descending=True, stable=True)
    mass_before = ranked.cumsum(-1) - ranked                  # mass of the residues ranked above
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, mass_before < top_p)
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def _tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(logits − max) / T, [..., V] float64: the same softmax as logits / T, but the top residue sits at 0,
    so no temperature, however small, overflows to inf (inf − inf would give NaN probabilities, drawn as
    the last residue, barred or not); the others go to −inf, i.e. the argmax, as T → 0."""
    return (logits - logits.amax(-1, keepdim=True)) / temperature


class _CachedNetwork:
    """p̃(· | x) for every row: network → allowed residues → temperature → top-p, in float64 on the CPU.

    A row is re-evaluated only when it has a masked position and its tokens changed since its last
    evaluation (``invalidate``); with ``use_cache=False`` every row at every step (the speed reference). ``nfe`` counts evaluated rows.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, shape: tuple[int, int, int],
                 allowed: torch.BoolTensor | None, temperature: float, top_p: float, use_cache: bool):
        self.model, self.device, self.allowed = model, device, allowed
        self.temperature, self.top_p, self.use_cache = temperature, top_p, use_cache
        self.probs = torch.zeros(*shape, dtype=torch.float64)
        self.log_mass = torch.zeros(shape[:2], dtype=torch.float64)   # log Z: allowed mass under p_T
        self.stale = torch.ones(shape[0], dtype=torch.bool)
        self.nfe = 0

    def update(self, x: torch.LongTensor, masked: torch.BoolTensor) -> torch.Tensor:
        """Refresh the rows that need it; returns probs [B, L, V] (and keeps ``log_mass`` [B, L])."""
        need = masked.any(-1) & self.stale if self.use_cache else torch.ones_like(self.stale)
        if need.any():
            logits = self.model(x[need].to(self.device)).cpu().double()
            if self.allowed is not None:
                barred = ~self.allowed[need]
                tempered = _tempered(logits, self.temperature)
                self.log_mass[need] = tempered.masked_fill(barred, float("-inf")).logsumexp(-1) - tempered.logsumexp(-1)
                logits = logits.masked_fill(barred, float("-inf"))
            self.probs[need] = nucleus(torch.softmax(_tempered(logits, self.temperature), dim=-1), self.top_p)
            self.nfe += int(need.sum())
            self.stale[need] = False
        return self.probs

    def invalidate(self, rows: torch.BoolTensor) -> None:
        self.stale |= rows

    def reorder(self, rows: torch.LongTensor) -> None:
        """Row i now holds what row ``rows[i]`` held (resampled particles keep their cached outputs)."""
        self.probs, self.log_mass, self.stale = self.probs[rows], self.log_mass[rows], self.stale[rows]


class _Particles:
    """The weights of K particles for each of B designs (rows b·K … b·K + K − 1), module docstring.

    ``log_w`` is the log weight p/q of each particle's path so far, times its look-ahead ψ (1 when
    there is none, and at t = 0, when no restricted position is left masked)."""

    def __init__(self, designs: int, k: int):
        self.B, self.K = designs, k
        self.log_w = torch.zeros(designs, k, dtype=torch.float64)
        self.log_psi = torch.zeros(designs, k, dtype=torch.float64)
        self.log_mean = torch.zeros(designs, dtype=torch.float64)   # log of the mean weight so far

    def _mean(self) -> None:
        self.log_mean = self.log_w.logsumexp(-1) - torch.log(torch.tensor(float(self.K), dtype=torch.float64))

    def reweight(self, log_mass: torch.Tensor, revealed: torch.BoolTensor) -> None:
        """Multiply in Z of every position revealed this step."""
        self.log_w += torch.where(revealed, log_mass, 0.0).sum(-1).view(self.B, self.K)
        self._mean()

    def look_ahead(self, log_mass: torch.Tensor, masked: torch.BoolTensor) -> None:
        """Replace each particle's ψ by Π Z over its still masked positions (Z = 1 where nothing is
        barred), from the network's outputs at its current tokens."""
        log_psi = torch.where(masked, log_mass, 0.0).sum(-1).view(self.B, self.K)
        # a particle whose ψ was 0 already weighs 0 and stays so (ψ/ψ_old would be NaN = −inf − −inf)
        self.log_w += torch.where(self.log_psi > -torch.inf, log_psi - self.log_psi, 0.0)
        self.log_psi = log_psi
        self._mean()

    def _normalised(self) -> torch.Tensor:
        """[B, K] weights summing to one per design; equal where every particle of a design weighs 0 (the
        allowed sets' probability underflowed), instead of softmax's NaN."""
        dead = (self.log_w == -torch.inf).all(-1, keepdim=True)
        return torch.softmax(torch.where(dead, 0.0, self.log_w), -1)

    def ess(self) -> torch.Tensor:
        w = self._normalised()
        return 1.0 / (w * w).sum(-1)

    def resample(self, u: torch.Tensor) -> torch.LongTensor:
        """Systematic resampling of the designs whose ESS is below K/2 (u: [B] uniforms); returns the
        row each row copies. Resampled designs restart from equal weights at their mean weight, so
        the mean still estimates P(allowed sets); each copy keeps its ancestor's ψ."""
        k = torch.arange(self.K)
        cdf = self._normalised().cumsum(-1)
        points = (u.unsqueeze(-1) + k) / self.K
        ancestors = torch.searchsorted(cdf, points, right=True).clamp(max=self.K - 1)
        low = self.ess() < self.K / 2
        ancestors = torch.where(low.unsqueeze(-1), ancestors, k)
        self.log_w = torch.where(low.unsqueeze(-1), self.log_mean.unsqueeze(-1).expand(-1, self.K), self.log_w)
        self.log_psi = self.log_psi.gather(-1, ancestors)
        return (ancestors + self.K * torch.arange(self.B).unsqueeze(-1)).flatten()

    def heaviest(self) -> torch.LongTensor:
        return self.log_w.argmax(-1) + self.K * torch.arange(self.B)

    def draw(self, u: torch.Tensor) -> torch.LongTensor:
        """One row per design, drawn ∝ weight (u: [B] uniforms)."""
        return _categorical(self._normalised(), u) + self.K * torch.arange(self.B)


# ---- one step of each strategy ---------------------------------------------------------------------
def _tau_leaping_step(x, probs, masked, stay: float, u_move, u_pick):
    """Exact Tweedie τ-leaping: each masked position is revealed with probability 1 − stay."""
    reveal = masked & (u_move >= stay)
    x[reveal] = _categorical(probs[reveal], u_pick[reveal])
    return reveal, torch.zeros_like(reveal)


def _rank_desc(score: torch.Tensor, u_tie: torch.Tensor) -> torch.LongTensor:
    """Rank (0 = best) of every entry of each row by score, descending; ties broken by u_tie ascending."""
    by_tie = u_tie.argsort(dim=-1, stable=True)
    order = by_tie.gather(-1, score.gather(-1, by_tie).argsort(dim=-1, descending=True, stable=True))
    return torch.empty_like(order).scatter_(-1, order, torch.arange(score.shape[-1]).expand_as(order))


def _planned_step(x, probs, masked, designed, keep: torch.LongTensor, conf, budget_left, eta: float, noise: float,
                  u_pick, u_tie, mask_id: int):
    """Keep ``keep[b]`` designed positions of row b revealed; mask the rest.

    Two decisions, as in P2 (Peng et al. 2025), where only the choice of new positions is random:

    1. *Which revealed residues go back* — on noise-free scores. A masked position scores its
       confidence log max_b p̃(b); a revealed designed residue scores η · conf (its log p̃ when it was
       drawn, ≤ 0), or +∞ once the row's remask budget cannot cover it (only the ``budget_left[b]``
       lowest-scored revealed residues are eligible; none when η = 0). The eligible residues outside
       the top ``keep[b]`` go back to MASK; on a tie a revealed residue keeps its place, so η = 0 is
       exactly ``confidence`` and a larger η remasks more.
    2. *Which masked positions are revealed* — as many as step 1 left room for, chosen by
       confidence + ``noise`` · Gumbel(u_tie) (Gumbel-top-k: drawn without replacement
       ∝ e^{confidence/noise}; 0 = strictly most confident first). Each gets ŷ ~ p̃.

    conf [B, L] and budget_left [B] are updated in place. Returns (revealed, remasked) [B, L] bool.
    """
    draft = torch.full_like(x, mask_id)
    draft[masked] = _categorical(probs[masked], u_pick[masked])
    draft_conf = torch.zeros_like(conf)
    draft_conf[masked] = probs[masked].gather(-1, draft[masked].unsqueeze(-1)).squeeze(-1).log()
    confidence = probs.max(-1).values.log()
    revealed = designed & ~masked

    held = torch.where(revealed, eta * conf, torch.inf)
    eligible = revealed & (_rank_desc(-held, u_tie) < budget_left.unsqueeze(-1)) & (eta > 0)   # the lowest few
    plain = torch.where(masked, confidence, torch.where(eligible, held, torch.inf)).masked_fill(~designed, -torch.inf)
    revealed_first = torch.where(revealed, -1.0, u_tie)                 # ties: the revealed residue stays
    remask = eligible & (_rank_desc(plain, revealed_first) >= keep.unsqueeze(-1))

    n_reveal = keep - (revealed.sum(-1) - remask.sum(-1))                # room left among the kept positions
    gumbel = noise * -torch.log(-torch.log(u_tie.clamp(min=1e-300))) if noise > 0 else 0.0
    pick = torch.where(masked, confidence + gumbel, -torch.inf)
    reveal = masked & (_rank_desc(pick, u_tie) < n_reveal.unsqueeze(-1))

    x[reveal], conf[reveal] = draft[reveal], draft_conf[reveal]
    x[remask] = mask_id
    budget_left -= remask.sum(-1)
    return reveal, remask


# ---- the sampler ------------------------------------------------------------------------------------
def _time_grid(steps: int) -> list[float]:
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()


def particles_condition(strategy: str, top_p: float) -> bool:
    """Whether particles can make allowed sets exact for these settings: only τ-leaping at top-p 1
    follows a law to condition (module docstring)."""
    return strategy == "tau-leaping" and top_p >= 1.0


def is_whole(value) -> bool:
    """An int, or a float such as 4.0 that is one; not a bool (True would otherwise count as 1)."""
    return ((isinstance(value, numbers.Integral) and not isinstance(value, bool))
            or (isinstance(value, float) and value.is_integer()))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_options(strategy: str, steps: int, temperature: float, top_p: float, seed: int, eta: float = 1.0,
                  budget: float = 0.5, noise: float = 2.0, particles: int = 1) -> None:
    """``sample``'s checks of its options, for a caller that wants them before expensive work.

    steps, seed and particles are whole numbers (an int, or a float such as 16.0 that is one; not a bool):
    2.5 steps would otherwise fail deep inside torch, and seed 1.5 quietly run as seed 1."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sampler {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    for name, value in (("steps", steps), ("seed", seed), ("particles", particles)):
        if not is_whole(value):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS:,}, got {steps}")
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if not _is_real(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
    # finite: at an infinite temperature a barred residue's logit, −inf / inf, is NaN, and the draw
    # ignored every restriction
    if not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and 2**63 - 1, got {seed}")
    # finite too: an infinite budget became a negative count (no remasking at all), and η or noise = inf
    # times a zero log-probability is NaN
    if not all(_is_real(v) and 0 <= v < math.inf for v in (eta, budget, noise)):
        raise ValueError(f"eta, remask_budget and order_noise must be finite numbers ≥ 0, got eta={eta}, "
                         f"remask_budget={budget}, order_noise={noise}")
    if not 1 <= particles <= MAX_PARTICLES:
        raise ValueError(f"particles must be between 1 and {MAX_PARTICLES}, got {particles}")
    if particles > 1 and not particles_condition(strategy, top_p):
        raise ValueError("particles > 1 (exact allowed sets) needs the tau-leaping sampler and top-p 1: the other "
                         f"samplers and nucleus filtering do not follow a law to condition; got {strategy}, top-p {top_p}")


@torch.no_grad()
def sample(model: torch.nn.Module, templates: Sequence[Sequence[int]] | torch.LongTensor, *,
           mask_id: int, steps: int = 128, temperature: float = 1.0, seed: int = 0,
           schedule: LogLinearSchedule = LogLinearSchedule(), use_cache: bool = True,
           device: torch.device | str | None = None, allowed: torch.BoolTensor | None = None,
           strategy: str = "tau-leaping", top_p: float = 1.0, eta: float = 1.0,
           remask_budget: float = 0.5, order_noise: float = 2.0, particles: int = 1,
           look_ahead: bool = True) -> Iterator[Frame]:
    """Fill the MASK positions of ``templates``; yields a ``Frame`` per step (strategies: module docstring).

    templates: token-id lists (MASK = ``mask_id`` at designed positions), lengths may differ.
    Frames hold CPU tensors whatever ``device`` the network runs on.
    The last yielded frame has t = 0 and no MASK left. PAD (= mask_id + 1) pads short rows.
    allowed: optional [B, L, V] bool, the residues each position may take: each prediction p_θ is
    renormalised over them before the temperature and top-p (docs/design.md §12; this conditions
    each position's draw, not the joint: module docstring); every designed position needs at least
    one. top_p ∈ (0, 1]: nucleus filtering for every strategy.
    eta, remask_budget: the ``remask`` knobs (ignored by the other strategies); a row remasks at
    most floor(remask_budget · designed positions) residues in the whole run. order_noise: Gumbel
    noise on the position scores of ``confidence`` and ``remask`` (0 = most confident first). The
    defaults of the three knobs come from ``benchmarks/sampler_quality.py`` (README, "Samplers").
    particles: K > 1 makes the allowed sets exact conditioning (sequential Monte Carlo, module
    docstring; tau-leaping and top_p = 1 only) at K network rows per design. look_ahead: False
    drops the particles' look-ahead ψ (the plain sequential importance weights; for comparison).
    """
    check_options(strategy, steps, temperature, top_p, seed, eta, remask_budget, order_noise, particles)
    steps, seed, particles = int(steps), int(seed), int(particles)
    device = torch.device(device) if device is not None else device_of(model)
    # Tokens, cached probabilities and draws live on the CPU in float64 (MPS has no float64, and
    # B×L×V numbers per evaluation are cheap to move); only the network runs on ``device``.
    x = _template_tokens(templates, mask_id)
    B, L = x.shape
    allowed = _checked_allowed(allowed, x, mask_id)
    if particles > 1 and allowed is not None and bool((~allowed[x == mask_id]).any()):     # something to condition on
        yield from _sample_particles(model, x, allowed, particles, mask_id=mask_id, steps=steps,
                                     temperature=temperature, seed=seed, schedule=schedule, use_cache=use_cache,
                                     device=device, look_ahead=look_ahead)
        return
    gen = torch.Generator(device="cpu").manual_seed(seed)
    net = _CachedNetwork(model, device, (B, L, mask_id), allowed, temperature, top_p, use_cache)
    designed = x == mask_id
    n_designed = designed.sum(-1)                                           # [B]
    conf = torch.zeros(B, L, dtype=torch.float64)                           # log p̃ of each residue when drawn
    budget_left = (remask_budget * n_designed).floor().long() if strategy == "remask" else torch.zeros(B, dtype=torch.long)
    grid = _time_grid(steps)
    with eval_mode(model):
        yield Frame(0, 1.0, x.clone(), torch.zeros_like(designed), 0)
        for k in range(steps):
            t, s = grid[k], grid[k + 1]
            masked = x == mask_id                                            # [B, L]
            probs = net.update(x, masked)
            u_a = torch.rand(B, L, dtype=torch.float64, generator=gen)      # a fixed number of uniforms per step
            u_b = torch.rand(B, L, dtype=torch.float64, generator=gen)
            if strategy == "tau-leaping":
                reveal, remask = _tau_leaping_step(x, probs, masked, stay_masked_prob(schedule, t, s), u_a, u_b)
            else:
                still_masked = (n_designed * stay_masked_prob(schedule, 1.0, s)).round().long()    # m(s)
                reveal, remask = _planned_step(x, probs, masked, designed, n_designed - still_masked, conf,
                                               budget_left, eta, order_noise, u_b, u_a, mask_id)
            net.invalidate((reveal | remask).any(-1))
            yield Frame(k + 1, s, x.clone(), reveal, net.nfe, remask)


def _sample_particles(model, x: torch.LongTensor, allowed: torch.BoolTensor, k: int, *, mask_id: int, steps: int,
                      temperature: float, seed: int, schedule: LogLinearSchedule, use_cache: bool,
                      device: torch.device, look_ahead: bool) -> Iterator[Frame]:
    """τ-leaping with K weighted particles per design (module docstring); frames as ``sample``'s.

    Each step draws from the network's outputs at the particles' tokens, reweights, evaluates the
    network at the new tokens (the next step's outputs, which also give the look-ahead), and only
    then resamples: the copies of a row carry its outputs, and a row the resampling drops was
    evaluated for nothing but its weight."""
    B, L = x.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    rows = x.repeat_interleave(k, 0)                                        # [B·K, L]
    net = _CachedNetwork(model, device, (B * k, L, mask_id), allowed.repeat_interleave(k, 0), temperature, 1.0,
                         use_cache)
    weights = _Particles(B, k)
    grid = _time_grid(steps)
    shown = x.clone()

    def evaluate() -> torch.BoolTensor:
        masked = rows == mask_id
        net.update(rows, masked)
        if look_ahead:
            weights.look_ahead(net.log_mass, masked)
        return masked

    with eval_mode(model):
        yield Frame(0, 1.0, shown.clone(), torch.zeros_like(shown, dtype=torch.bool), 0, ess=weights.ess(),
                    constraint_log_prob=weights.log_mean.clone())
        masked = evaluate()
        for step in range(steps):
            t, s = grid[step], grid[step + 1]
            u_a = torch.rand(B * k, L, dtype=torch.float64, generator=gen)
            u_b = torch.rand(B * k, L, dtype=torch.float64, generator=gen)
            u_c = torch.rand(B, dtype=torch.float64, generator=gen)         # resampling, or the final draw
            reveal, _ = _tau_leaping_step(rows, net.probs, masked, stay_masked_prob(schedule, t, s), u_a, u_b)
            weights.reweight(net.log_mass, reveal)
            net.invalidate(reveal.any(-1))
            masked = evaluate()                                             # none left at s = 0: ψ = 1, no cost
            ess = weights.ess()
            if s > 0:
                ancestors = weights.resample(u_c)
                rows, masked = rows[ancestors], masked[ancestors]
                net.reorder(ancestors)
                pick = weights.heaviest()
            else:
                pick = weights.draw(u_c)
            before, shown = shown, rows[pick].clone()
            yield Frame(step + 1, s, shown.clone(), (shown != before) & (shown != mask_id), net.nfe,
                        (before != mask_id) & (shown == mask_id), ess=ess, constraint_log_prob=weights.log_mean.clone())


def last_frame(frames: Iterator[Frame]) -> Frame:
    """Consume a stream of frames (possibly wrapped in a progress bar); return the final one."""
    frame = None
    for frame in frames:
        pass
    return frame


def run(model, templates, **kwargs) -> Frame:
    """Run the sampler to the end and return the final frame."""
    return last_frame(sample(model, templates, **kwargs))
