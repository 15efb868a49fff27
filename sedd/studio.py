"""The studio's work without the UI: checked requests, a streamed run, folding, ranking, downloads.

``app.py`` turns these objects into Gradio components; everything here is plain Python, so the
tests drive it without a browser. One ``Run`` is one user request: it owns its seeded sampler
(one ``torch.Generator`` per request, docs/design.md §7), so concurrent users never share state.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import os
import secrets
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import render, score
from .alphabet import Alphabet, Template, TemplateSpec
from .checkpoint import Checkpoint, atomic_write_text, shown
from .cli import whole_number
from .data import fasta_spans
from .design import Request, decode_rows, design_name, plan_for_spec, stream, to_fasta
from .sampler import STRATEGIES, particles_condition
from .fold import FoldError, FoldResult, check_foldable, finished_unless_stopped
from .spans import SPAN_LENGTH_MODES, TOP

FOLD_BACKENDS = ("ESMFold (local)", "ESM Atlas API", "off")
log = logging.getLogger("sedd.studio")


class Cancelled(Exception):
    """The user stopped the run (raised from a ``check`` callback between two units of work)."""


@dataclass(frozen=True)
class Limits:
    """Per-request caps; a request over a cap is refused with the cap named."""

    max_designs: int = 8
    min_steps: int = 16
    max_steps: int = 1024
    min_temperature: float = 0.1
    max_temperature: float = 2.0
    max_seed: int = 2**31 - 1
    min_top_p: float = 0.05
    # particles per design (``sedd.sampler``): each costs a network row per step, so a request runs
    # up to max_designs × max_particles rows at once
    max_particles: int = 64
    max_chars: int = 100_000        # of a template or sequence as typed, read at most (see ``_check_size``)


@dataclass
class Settings:
    """Everything that reproduces a run (the seed actually used included)."""

    template: str           # normalised: residues, ``_`` at designed positions, brackets as typed (``exclude`` apart)
    num_samples: int
    steps: int
    temperature: float
    seed: int
    fold: str
    checkpoint: str
    notices: list[str] = field(default_factory=list)
    exclude: str = ""                      # residues no designed position may take
    span_mode: str = "sample"              # how [a-b] span lengths are chosen: sample or map
    span_lengths: list[list[int]] | None = None      # chosen per design (filled by the run)
    span_posterior: list[dict] | None = None         # top combinations with their probabilities
    sampler: str = "tau-leaping"                     # one of sampler.STRATEGIES
    top_p: float = 1.0                               # nucleus filtering; 1 = off
    particles: int = 1                               # > 1: allowed sets as exact conditioning (sedd.sampler)

    def departures(self) -> str:
        """The choices that differ from the defaults, as the run's status says them after its seed
        (", temperature 0.1, sampler remask"); a cleared Temperature box becomes its minimum, which
        the status said nowhere."""
        chosen = [(f"temperature {self.temperature:g}", self.temperature != 1.0),
                  (f"sampler {self.sampler}", self.sampler != "tau-leaping"),
                  (f"top-p {self.top_p:g}", self.top_p != 1.0),
                  (f"{self.particles} particles", self.particles > 1)]
        return "".join(f", {words}" for words, differs in chosen if differs)

    def command(self) -> str:
        """The ``python -m sedd.sample`` command that draws the same designs."""
        extra = (["--omit", self.exclude] if self.exclude else []) + \
            (["--span-lengths", self.span_mode] if self.span_mode != "sample" else [])
        extra += ["--sampler", self.sampler] if self.sampler != "tau-leaping" else []
        extra += ["--top-p", repr(self.top_p)] if self.top_p != 1.0 else []
        extra += ["--particles", str(self.particles)] if self.particles != 1 else []
        return shlex.join(["python", "-m", "sedd.sample", "--checkpoint", self.checkpoint,
                           "--template", self.template, "--num-samples", str(self.num_samples),
                           "--steps", str(self.steps), "--temperature", repr(self.temperature),
                           "--seed", str(self.seed), *extra])

    def to_dict(self) -> dict:
        return {**asdict(self), "command": self.command()}


def _sent(value) -> str:
    """What a request sent, for a refusal: its ``repr``, cut to its start and its length when long, so
    that a pasted page of digits is named, not echoed back under the input (and into the log)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}… ({len(text):,} characters)"


def _number(value) -> float:
    """``float(value)`` for a request's number; True and False are refused (``TypeError``): a JSON
    ``true`` is a mistake, not the number 1 (the seed says the same of them)."""
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is not a number")
    return float(value.strip() if isinstance(value, str) else value)


def _whole_number(value, what: str, allowed: str) -> int:
    """An int from an API or slider value: an int (NumPy's too), a float with no fractional part (JSON
    clients send 7.0) or a typed whole number (``cli.whole_number``, as the command-line tools read
    one). Anything else (True, 4.5, ``"1e3"``, NaN, ±inf) is refused with the allowed range: a value
    that only looks like a count is a mistake."""
    if isinstance(value, bool):
        pass                                # a JSON true is a mistake, not the number 1
    elif isinstance(value, numbers.Integral):
        return int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    elif isinstance(value, str):
        try:
            return whole_number(value)
        except ValueError:
            pass
    raise ValueError(f"{what} must be a whole number, {allowed}; got {_sent(value)}")


def _in_range(value, what: str, low: int, high: int) -> int:
    allowed = f"{low} to {high}"
    number = _whole_number(value, what, allowed)
    if not low <= number <= high:
        raise ValueError(f"{what} must be {allowed}; got {_sent(number)}")
    return number


def checked_seed(value, limits: Limits = Limits()) -> int:
    """The seed of a request: a whole number in range (``_whole_number``), or a fresh random one when
    blank (``None`` or an empty string). A seed names a run, so nothing else is read as one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return secrets.randbelow(limits.max_seed + 1)
    allowed = f"a whole number from 0 to {limits.max_seed}, or blank for a random seed"
    try:
        seed = _whole_number(value, "seed", allowed)
    except ValueError:
        seed = None
    if seed is None or not 0 <= seed <= limits.max_seed:
        raise ValueError(f"seed must be {allowed}; got {_sent(value)}")
    return seed


def checked_stop_epoch(value) -> int:
    """``generate``'s ``stop_epoch``, the page's count of Stop presses: a whole number (blank is 0);
    below 0 counts as 0, since a count below 0 would stop every run. A ``RequestError`` otherwise."""
    with _checking("stop_epoch"):
        count = _whole_number(0 if value is None else value, "stop_epoch",
                              "the page's count of Stop presses (API callers leave it at 0)")
    return max(0, count)


def _checked_top_p(value, limits: Limits) -> float:
    try:
        top_p = _number(value)
    except (TypeError, ValueError):
        top_p = float("nan")
    if not limits.min_top_p <= top_p <= 1.0:
        raise ValueError(f"top-p must be a number from {limits.min_top_p} to 1 (1 = off); got {_sent(value)}")
    return top_p


def _checked_particles(value, sampler: str, top_p: float, limits: Limits) -> int:
    particles = _in_range(value, "particles per design", 1, limits.max_particles)
    if particles > 1 and not particles_condition(sampler, top_p):
        raise ValueError(f"particles per design above 1 (exact allowed sets) need the tau-leaping sampler and "
                         f"top-p 1, the only settings with a law to condition; got sampler {_sent(sampler)}, top-p "
                         f"{top_p:g}. Set particles to 1, or choose tau-leaping with top-p 1")
    return particles


def _check_size(text, what: str, limits: Limits, max_len: int) -> None:
    """Refuse a paste far longer than any template before parsing it: parsing a megabyte takes
    seconds, and the check runs in the validator, on the server's event loop, where every page waits."""
    if isinstance(text, str) and len(text) > limits.max_chars:
        raise ValueError(f"{what} is {len(text):,} characters long; at most {limits.max_chars:,} are read "
                         f"(one FASTA record of up to {max_len} positions)")


class RequestError(ValueError):
    """A refused request; ``field`` names the input at fault, as ``generate``'s parameter is called."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@contextmanager
def _checking(field: str):
    """Turn a ``ValueError`` raised while checking one input into a ``RequestError`` that names it."""
    try:
        yield
    except ValueError as e:
        raise RequestError(str(e), field) from None


def _checked_temperature(temperature, limits: Limits) -> float:
    try:
        temperature = got = _number(temperature)
    except (TypeError, ValueError):
        temperature, got = float("nan"), temperature       # say what was sent, not "nan"
    if not limits.min_temperature <= temperature <= limits.max_temperature:
        raise ValueError(f"temperature must be a number from {limits.min_temperature} to "
                         f"{limits.max_temperature}; got {_sent(got)}")
    return temperature


def _checked_exclude(exclude, alphabet: Alphabet, limits: Limits) -> str:
    """The residues banned everywhere, in alphabet order, each once ("" for none)."""
    exclude = "" if exclude is None else exclude
    if not isinstance(exclude, str):
        raise ValueError(f"excluded residues must be text such as 'C' or 'CM'; got {_sent(exclude)}")
    if len(exclude) > limits.max_chars:      # read on the event loop, as the template is (``_check_size``)
        raise ValueError(f"excluded residues are {len(exclude):,} characters long; at most {limits.max_chars:,} "
                         "are read (each residue once is enough, such as 'C' or 'CM')")
    exclude = "".join(alphabet.residues[i] for i in sorted(alphabet.residue_ids(exclude)))
    if len(exclude) == len(alphabet.residues):     # the exclusion's fault, whatever the template
        raise ValueError(f"excluded residues {exclude} are every residue of the alphabet: nothing is left "
                         "to design with; leave at least one residue out")
    return exclude


def check_request(model: Checkpoint, template: str, num_samples, steps, temperature, seed, fold: str = "off",
                  limits: Limits = Limits(), exclude: str = "", span_mode: str = "sample",
                  sampler: str = "tau-leaping", top_p=1.0, particles=1) -> tuple[TemplateSpec, Settings]:
    """Parse and check one request; a ``RequestError`` says which input was wrong, how, and what is allowed."""
    with _checking("num_samples"):
        num_samples = _in_range(num_samples, "number of designs", 1, limits.max_designs)
    with _checking("steps"):
        steps = _in_range(steps, "steps", limits.min_steps, limits.max_steps)
    with _checking("temperature"):
        temperature = _checked_temperature(temperature, limits)
    with _checking("seed"):
        seed = checked_seed(seed, limits)
    with _checking("sampler"):
        if sampler not in STRATEGIES:
            raise ValueError(f"sampler must be one of {', '.join(STRATEGIES)}; got {_sent(sampler)}")
    with _checking("top_p"):
        top_p = _checked_top_p(top_p, limits)
    with _checking("particles"):
        particles = _checked_particles(particles, sampler, top_p, limits)
    with _checking("fold"):
        if fold not in FOLD_BACKENDS:
            raise ValueError(f"folding backend must be one of {', '.join(FOLD_BACKENDS)}; got {_sent(fold)}")
        if fold != "off":
            check_foldable(model.alphabet)
    with _checking("span_lengths"):
        if span_mode not in SPAN_LENGTH_MODES:
            raise ValueError(f"span lengths must be chosen by one of {', '.join(SPAN_LENGTH_MODES)}; "
                             f"got {_sent(span_mode)}")
    with _checking("exclude"):
        exclude = _checked_exclude(exclude, model.alphabet, limits)
    with _checking("template"):
        written = _parsed_template(model, template, "", limits)      # the settings show it without the exclusion
        parsed = written.excluding(model.alphabet.residue_ids(exclude), model.alphabet.residues)
    notices = list(parsed.notices)
    settings = Settings(written.text(model.alphabet.residues), num_samples, steps, temperature, seed, fold,
                        shown(model.source), notices, exclude, span_mode, sampler=sampler, top_p=top_p,
                        particles=particles)
    return parsed, settings


def _parsed_template(model: Checkpoint, template, exclude: str, limits: Limits) -> TemplateSpec:
    _check_size(template, "the template", limits, model.max_len)
    return model.alphabet.parse_spec(template, model.max_len, exclude)


def template_refusal(model: Checkpoint, template, exclude, limits: Limits = Limits()) -> str | None:
    """Why ``check_request`` would refuse the template with these excluded residues, or None: what the
    page shows under the template when Exclude is edited. None too for a blank template (one not typed
    yet) and for an exclusion that is itself refused (Generate says why, under Exclude)."""
    if not isinstance(template, str) or not template.strip():
        return None
    try:
        exclude = _checked_exclude(exclude, model.alphabet, limits)
    except ValueError:
        return None
    try:
        _parsed_template(model, template, exclude, limits)
    except ValueError as e:
        return str(e)
    return None


@dataclass
class View:
    """What the page shows at one moment of the denoising."""

    sequences: list[str]     # ``_`` at masked positions
    states: list[str]        # per position: render.FIXED / DESIGNED / NEW / MASKED
    step: int
    steps: int
    nfe: int
    done: bool

    def fasta(self) -> str:
        """The designs as they stand, ``_`` where still masked: ``>design_1 (step 12)`` …"""
        return to_fasta(self.sequences, note=f" (step {self.step})")


@dataclass
class Design:
    index: int                  # 1-based, in the order the sampler drew it
    sequence: str
    designed: list[bool]
    nearest_identity: float | None = None   # see ``nearest_identities``; among designs of the same span lengths
    span_lengths: list[int] = field(default_factory=list)    # its [a-b] spans' lengths
    fold: FoldResult | None = None
    fold_error: str | None = None
    score: float | None = None          # model score: ELBO, nats/residue (lower = more likely)
    score_stderr: float | None = None
    awaiting_fold: bool = False         # its run is folding and has not come to it (still so after a Stop)

    @property
    def name(self) -> str:
        return design_name(self.index)


def probability_text(p: float) -> str:
    """A probability for a reader: 3 %, 0.42 %, or 2.1e-05 below 0.1 %."""
    if p >= 0.995:
        return "100 %"
    if p >= 0.1:
        return f"{100 * p:.0f} %"
    if p >= 1e-3:
        return f"{100 * p:.2g} %"
    return f"{p:.1e}"


def _particle_fields(frame) -> dict:
    """A frame's particle statistics for the trajectory (none with one particle per design)."""
    if frame.constraint_log_prob is None:
        return {}
    log_p = [v if math.isfinite(v) else None for v in frame.constraint_log_prob.tolist()]   # JSON has no -inf
    return {"ess": [round(v, 3) for v in frame.ess.tolist()], "constraint_log_prob": log_p}


def ranking_basis(designs: list[Design]) -> str:
    """What the designs are ranked by: mean pLDDT when any was folded, else the model score, or,
    for a run stopped before any design was folded or scored, the order they were drawn in."""
    if any(d.fold is not None for d in designs):
        return "mean pLDDT"
    if designs and all(d.score is None for d in designs):
        return "drawing order"
    return "model score"


def ranking_coverage(designs: list[Design]) -> int:
    """How many designs hold the value ``ranking_basis`` ranks them by (all of them in drawing order);
    fewer than all after a run stopped while folding or scoring."""
    basis = ranking_basis(designs)
    if basis == "mean pLDDT":
        return sum(d.fold is not None for d in designs)
    if basis == "model score":
        return sum(d.score is not None for d in designs)
    return len(designs)


def nearest_identities(sequences: list[str], designed: list[bool]) -> list[float | None]:
    """For each design, its identity to the most similar other design of the run, at designed positions.

    identity(a, b) = |{i designed : a_i = b_i}| / |{i designed}|, in 0–1; nearest(a) = max over the
    other designs b. Fixed positions agree by construction, so only designed ones tell designs
    apart: 1.0 flags a duplicate, low values a diverse set. ``None`` without another design or
    without a designed position.
    """
    positions = [i for i, d in enumerate(designed) if d]
    if len(sequences) < 2 or not positions:
        return [None] * len(sequences)
    infills = [[s[i] for i in positions] for s in sequences]

    def identity(a: list[str], b: list[str]) -> float:
        return sum(x == y for x, y in zip(a, b)) / len(positions)

    return [max(identity(a, b) for j, b in enumerate(infills) if j != i) for i, a in enumerate(infills)]


def why_nearest_is_blank(designs: list[Design]) -> list[str]:
    """Why designs of a run of several have no nearest other design (``nearest_identities``), as the
    words that end "blank for a design …"; empty when every design has one."""
    blank = [d for d in designs if d.nearest_identity is None] if len(designs) > 1 else []
    reasons = []
    if any(any(d.designed) for d in blank):
        reasons.append("whose span lengths no other design drew")
    if any(not any(d.designed) for d in blank):            # e.g. a [0-3] span drawn at length 0
        reasons.append("with no designed position")
    return reasons


def _nearest_by_layout(sequences: list[str], templates: list[Template]) -> list[float | None]:
    """``nearest_identities`` within each group of designs that share a layout (the same span lengths)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, tpl in enumerate(templates):
        groups.setdefault(tpl.span_lengths, []).append(i)
    nearest: list[float | None] = [None] * len(sequences)
    for members in groups.values():
        values = nearest_identities([sequences[i] for i in members], templates[members[0]].designed)
        for i, value in zip(members, values):
            nearest[i] = value
    return nearest


class Run:
    """One request: sample with streaming, record the trajectory, fold, rank and write the downloads."""

    def __init__(self, model: Checkpoint, template: TemplateSpec, settings: Settings):
        self.model, self.template, self.settings = model, template, settings
        self.trajectory: list[dict] = []
        self.designs: list[Design] = []
        self.plan = None
        # particles > 1 on a constrained request (``sedd.sampler``), from the final frame, one per design:
        # the estimated log P(every residue in its allowed set) under the model, and the effective sample size
        self.constraint_log_prob: list[float] | None = None
        self.ess: list[float] | None = None
        self.started = time.strftime("%Y%m%d-%H%M%S", time.gmtime())        # UTC: the downloads' names

    def choose_span_lengths(self, check: Callable[[], None] | None = None):
        """The designs' templates: span lengths chosen by the model (a no-op without spans).

        Returns the posterior (or None) and records the lengths in the settings. ``check`` is called
        between candidate layouts and may raise to abandon the choice (``Cancelled``, the page's Stop).
        """
        s = self.settings
        self.plan = plan_for_spec(self.model, self.template, s.num_samples, s.seed, s.span_mode, check=check)
        if self.plan.posterior is not None:
            s.span_lengths, s.span_posterior = self.plan.span_lengths, self.plan.posterior.top(TOP)
        return self.plan.posterior

    def _states(self, tokens: torch.Tensor, new: torch.Tensor) -> list[str]:
        masked = (tokens == self.model.alphabet.mask_id).tolist()
        return ["".join(render.FIXED if not d else render.MASKED if m else render.NEW if n else render.DESIGNED
                        for d, m, n in zip(tpl.designed, row_masked, row_new))
                for tpl, row_masked, row_new in zip(self.plan.templates, masked, new.tolist())]

    def denoise(self, min_interval: float = 0.1) -> Iterator[View]:
        """Stream the sampler's states, at most one per ``min_interval`` seconds (the last always).

        Every state in which something changed goes into the trajectory, shown or not; positions
        revealed in skipped states count as new in the next state shown.
        """
        s = self.settings
        if self.plan is None:
            self.choose_span_lengths()
        templates = self.plan.templates
        request = Request(templates, s.steps, s.temperature, s.seed, sampler=s.sampler, top_p=s.top_p,
                          particles=s.particles)
        lengths = [len(t) for t in templates]
        new, last_shown = None, -math.inf
        self.constraint_log_prob = self.ess = None
        for frame in stream(self.model, request):
            new = frame.changed.cpu() if new is None else new | frame.changed.cpu()
            # a remasked position shows as masked again (its token is MASK in the frame)
            if frame.step > 0 and not (frame.changed.any() or frame.remasked.any()) and not frame.done:
                continue
            sequences = decode_rows(self.model, frame, lengths)
            self.trajectory.append({"step": frame.step, "t": frame.t, "nfe": frame.nfe, "sequences": sequences,
                                    **_particle_fields(frame)})
            if frame.done and frame.constraint_log_prob is not None:
                self.constraint_log_prob = frame.constraint_log_prob.tolist()
                self.ess = frame.ess.tolist()
            if frame.done or time.monotonic() - last_shown >= min_interval:
                yield View(sequences, self._states(frame.tokens.cpu(), new), frame.step, s.steps, frame.nfe, frame.done)
                new, last_shown = torch.zeros_like(new), time.monotonic()
        final = self.trajectory[-1]["sequences"]
        nearest = _nearest_by_layout(final, templates)
        self.designs = [Design(i + 1, seq, tpl.designed, near, list(tpl.span_lengths))
                        for i, (seq, tpl, near) in enumerate(zip(final, templates, nearest))]

    def particles_summary(self) -> str | None:
        """What the particles did, for the status line (None with one particle per design).

        With constrained positions: the chance that the model alone, sampled without the allowed
        sets, would have met them all, exp(``constraint_log_prob``) averaged over the designs."""
        k = self.settings.particles
        if k == 1:
            return None
        if self.constraint_log_prob is None:
            return ("Particles had no effect: no designed position is restricted to a set of residues ([KR], [^C] "
                    "or excluded residues), so one particle ran per design.")
        p = sum(math.exp(v) for v in self.constraint_log_prob) / len(self.constraint_log_prob)
        return (f"{k} particles per design conditioned the designs on the allowed sets; the model alone meets them "
                f"with probability ≈ {probability_text(p)} (estimate, mean over designs).")

    def fold(self, backend, check: Callable[[], None] | None = None) -> Iterator[Design]:
        """Fold each design in turn, yielding it just *before* its fold, so that a caller can say which
        design is folding.

        ``check`` (raises ``Cancelled``) is polled while a design folds (between ESMFold's layers, or
        while the Atlas API is awaited), so a Stop ends the run within a layer, not when the fold ends.
        The first fold may load the weights first, for minutes: ``check`` is polled while they load too,
        and a Stop ends the run at once (the load goes on in the background, for the next run).

        A failure is recorded on the design, never raised: the designs are worth keeping without a
        structure. An error the backend did not foresee is logged with its traceback. A design not
        yet folded is ``awaiting_fold``, and stays so if the caller stops here.
        """
        shared_error = None
        for design in self.designs:
            design.awaiting_fold = True
        for design in self.designs:
            yield design
            if shared_error:
                design.awaiting_fold, design.fold_error = False, shared_error
                continue
            try:
                if check is not None and not getattr(backend, "loaded", True):
                    finished_unless_stopped(backend.load, check)
                design.fold = backend.fold([design.sequence], check=check)[0]
            except FoldError as e:
                # nothing will fold with this backend: the page offers others (the CLI tools do not)
                design.fold_error = str(e) + (" Choose another folding backend, or off." if e.fails_every_sequence else "")
                shared_error = design.fold_error if e.fails_every_sequence else None
            except Cancelled:
                raise
            except Exception as e:
                name = getattr(backend, "name", type(backend).__name__)
                log.exception("folding %s with %s failed", design.name, name)
                design.fold_error = f"{name}: folding failed unexpectedly ({type(e).__name__}: {str(e)[:200]})."
            design.awaiting_fold = False

    def score(self) -> Iterator[Design]:
        """Give each design its model score (``sedd.score.elbo_score``), yielding it just *before* it is
        scored, as ``fold`` does: a caller says which design is being scored and can stop.

        Seed 0, as the Score tab, the API and ``sedd.score`` use by default, so one sequence has one
        score everywhere (with the run's seed, a design's score in the table and in the Score tab
        differed by more than the gaps that ranked it), and the designs share their random times."""
        for design in self.designs:
            yield design
            tokens = self.model.alphabet.encode(design.sequence)
            design.score, design.score_stderr = score.elbo_score(self.model, tokens, seed=0)

    def ranked(self) -> list[Design]:
        """By mean pLDDT when anything was folded (unfolded designs after), else by model score; best first.

        Ties, designs without the value ranked by, and a run with neither (stopped) keep sampling order.
        """
        if ranking_basis(self.designs) == "mean pLDDT":
            return sorted(self.designs, key=lambda d: (d.fold is None, -(d.fold.mean_plddt if d.fold else 0.0), d.index))
        return sorted(self.designs, key=lambda d: (d.score is None, d.score if d.score is not None else 0.0, d.index))

    def fasta(self) -> str:
        return to_fasta([d.sequence for d in self.designs])

    def write_files(self, directory: Path) -> list[Path]:
        """FASTA of all designs, a PDB per folded design, the trajectory and the settings.

        Each name ends with the run's seed and start time, UTC (``designs_seed42_20261203-083012.fasta``,
        ``design_3_seed42_20261203-083012.pdb``): the seed reproduces the run and the time, to the second,
        tells apart runs of one seed, so two runs' downloads neither collide in the browser's folder
        ("designs (1).fasta") nor get mixed up. The FASTA's records stay design_1, … as ``sedd.sample`` names them.
        """
        directory.mkdir(parents=True, exist_ok=True)
        settings = self.settings.to_dict()
        run = f"seed{self.settings.seed}_{self.started}"
        paths = [directory / f"{name}_{run}.{ext}" for name, ext in
                 (("designs", "fasta"), ("settings", "json"), ("trajectory", "json"))]
        atomic_write_text(paths[0], self.fasta())
        atomic_write_text(paths[1], json.dumps(settings, indent=2) + "\n")
        atomic_write_text(paths[2], json.dumps({"settings": settings, "frames": self.trajectory}) + "\n")
        for d in self.designs:
            if d.fold is not None:
                paths.append(directory / f"{d.name}_{run}.pdb")
                atomic_write_text(paths[-1], d.fold.pdb)
        return paths


# ---- the Score tab ------------------------------------------------------------------------------------

@dataclass
class Scored:
    """One scored sequence: the ``sedd.score`` JSON entry (with the scan) and what the page adds."""

    entry: dict
    percentile: float | None          # share (%) of held-out naturals with a worse ELBO
    designed: list[bool] | None       # positions a design filled in, when it came from the Generate tab

    def write_files(self, directory: Path) -> list[Path]:
        """The scan as CSV and the scores (entry + percentile) as JSON, named after the record and the
        first 8 hex digits of its sequence's SHA-1: a mutant scored under the same header (or none, which
        names it "sequence") downloads under a name of its own, not as "sequence_scan (1).csv"."""
        directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(self.entry["sequence"].encode()).hexdigest()[:8]
        stem = f"{file_stem(self.entry['name'])}_{digest}"
        paths = [directory / f"{stem}_scan.csv", directory / f"{stem}_scores.json"]
        atomic_write_text(paths[0], score.scan_csv(self.entry))
        atomic_write_text(paths[1], json.dumps({**self.entry, "family_percentile": self.percentile}) + "\n")
        return paths


def file_stem(name: str) -> str:
    """A record's name as a file name: letters, digits, ``-_.`` kept, anything else ``_``, at most 64,
    never starting with a dot (a hidden file; ``._*`` is macOS metadata)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64].lstrip(".") or "sequence"


def check_score_request(model: Checkpoint, text: str, limits: Limits = Limits()) -> tuple[str, list[int]]:
    """Parse ``text`` by the template rules (no masks allowed; a pasted multi-FASTA gives its first
    record, as ``sedd.score --sequence`` does): (the record's name, as ``sedd.score`` gives it, and its
    residue ids)."""
    if text is not None and not isinstance(text, str):       # an API call's 42 or true, not read as text
        raise ValueError(f"the sequence must be text, got {type(text).__name__} {text!r:.40}")
    if not text or not text.strip():
        raise ValueError("paste a protein sequence to score (one-letter codes; a FASTA header line is fine)")
    _check_size(text, "the sequence", limits, model.max_len)
    # the whole text, not the record's body, so that an error's position counts from its start, as a
    # template's does (the parser drops the header line and any records after the first itself)
    return fasta_spans(text)[0][0], score.parse_sequence(model, text)


def score_notices(model: Checkpoint, text: str, entry: dict) -> list[str]:
    """What the Score tab says about ``text`` beside ``entry``, its score: the template parser's notices
    (of several pasted records, the first is used). Nothing once the text is no longer the one scored."""
    try:
        spec = model.alphabet.parse_spec(text, model.max_len, full=True)     # no Generate-tab notices
        sequence = model.alphabet.decode(spec.fixed().tokens)      # a designed position reads as a mask
    except ValueError:
        return []
    if (fasta_spans(text)[0][0], sequence) != (entry["name"], entry["sequence"]):
        return []
    return list(spec.notices)


def score_request(model: Checkpoint, text: str, seed: int = 0) -> dict:
    """The checked sequence's ``sedd.score`` entry, with the scan."""
    name, tokens = check_score_request(model, text)
    return score.score_sequence(model, tokens, name, seed=seed, scan=True)


def scored(model: Checkpoint, entry: dict, design: tuple[str, list[bool]] | None = None) -> Scored:
    """What the Score tab shows for an entry. ``design``: (sequence, designed flags) of a design sent from
    the Generate tab; its flags are kept only when the entry is still that sequence."""
    designed = list(design[1]) if design and design[0] == entry["sequence"] else None
    return Scored(entry, score.family_percentile(model, entry["elbo_nats_per_residue"]), designed)


# ---- downloads on disk --------------------------------------------------------------------------------
def remove_orphaned_outputs(cache: Path) -> None:
    """Remove the download folders of studios that ended without cleaning up (killed, crashed).

    Each studio's folder is named ``sedd-studio-<pid>-…``; one whose process no longer runs is an orphan.
    """
    for folder in cache.glob("sedd-studio-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)               # signal 0: only asks whether the process exists
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:                # it exists, under another user
            pass


def prune_outputs(root: Path, keep: Path, max_bytes: int, max_age_s: float) -> None:
    """Remove the run folders under ``root`` older than ``max_age_s``, then the oldest until all of
    them, ``keep`` included, fit in ``max_bytes``; ``keep`` itself stays.

    Another run's prune, or Gradio's own cache cleaning, may remove a folder or file while this
    one reads them: what has gone counts as gone, not as an error that would lose this run's results.
    """
    def mtime_and_size(folder: Path) -> tuple[float, int] | None:       # None: it has gone
        try:
            return folder.stat().st_mtime, sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        except FileNotFoundError:
            return None

    found = {p: mtime_and_size(p) for p in root.iterdir() if p != keep}
    runs = sorted((p for p, v in found.items() if v is not None), key=lambda p: found[p][0])
    total = sum(found[p][1] for p in runs) + (mtime_and_size(keep) or (0, 0))[1]
    for old in runs:
        mtime, size = found[old]
        if total <= max_bytes and time.time() - mtime <= max_age_s:
            break
        shutil.rmtree(old, ignore_errors=True)
        total -= size
