"""The studio's work without the UI: checked requests, a streamed run, folding, ranking, downloads.

``app.py`` turns these objects into Gradio components; everything here is plain Python, so the
tests drive it without a browser. One ``Run`` is one user request: it owns its seeded sampler
(one ``torch.Generator`` per request, docs/design.md §7), so concurrent users never share state.
"""
from __future__ import annotations

import json
import math
import secrets
import shlex
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import render
from .alphabet import Template
from .checkpoint import Checkpoint, atomic_write_text
from .design import Request, decode_rows, stream, to_fasta
from .sampler import STRATEGIES
from .fold import FoldError, FoldResult

FOLD_BACKENDS = ("ESMFold (local)", "ESM Atlas API", "off")
# A failure that will repeat for every design of the request: stop asking the backend.
_REQUEST_WIDE_FAILURES = ("no_weights", "no_network")


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


@dataclass
class Settings:
    """Everything that reproduces a run (the seed actually used included)."""

    template: str           # normalised: residues, with ``_`` at designed positions
    num_samples: int
    steps: int
    temperature: float
    seed: int
    fold: str
    checkpoint: str
    notices: list[str] = field(default_factory=list)
    sampler: str = "tau-leaping"
    top_p: float = 1.0

    def command(self) -> str:
        """The ``python -m sedd.sample`` command that draws the same designs."""
        extra = ["--sampler", self.sampler] if self.sampler != "tau-leaping" else []
        extra += ["--top-p", repr(self.top_p)] if self.top_p != 1.0 else []
        return shlex.join(["python", "-m", "sedd.sample", "--checkpoint", self.checkpoint,
                           "--template", self.template, "--num-samples", str(self.num_samples),
                           "--steps", str(self.steps), "--temperature", repr(self.temperature),
                           "--seed", str(self.seed), *extra])

    def to_dict(self) -> dict:
        return {**asdict(self), "command": self.command()}


def _whole_number(value, what: str, allowed: str) -> int:
    """An int from an API or slider value (3, 3.0, "3"); anything else is refused with the allowed range."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        number = math.nan
    if not number.is_integer():      # nan and ±inf are not integers either
        raise ValueError(f"{what} must be a whole number, {allowed}; got {value!r}")
    return int(number)


def _in_range(value, what: str, low: int, high: int) -> int:
    allowed = f"{low} to {high}"
    number = _whole_number(value, what, allowed)
    if not low <= number <= high:
        raise ValueError(f"{what} must be {allowed}; got {number}")
    return number


def checked_seed(value, limits: Limits = Limits()) -> int:
    """The seed of a request: a whole number in range, or a fresh random one when blank.

    Accepted: an int, a float with no fractional part (JSON clients send 7.0), a string of digits;
    blank (``None`` or an empty string) means "random". Anything else (``"1e3"``, 4.5, NaN, ±inf,
    True) is refused: a seed names a run, so a value that only looks like one is a mistake.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return secrets.randbelow(limits.max_seed + 1)
    allowed = f"a whole number from 0 to {limits.max_seed}, or blank for a random seed"
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"seed must be {allowed}; got {value!r}")
    if not 0 <= value <= limits.max_seed:
        raise ValueError(f"seed must be {allowed}; got {value}")
    return value


def _checked_top_p(value, limits: Limits) -> float:
    try:
        top_p = float(value)
    except (TypeError, ValueError):
        top_p = float("nan")
    if not limits.min_top_p <= top_p <= 1.0:
        raise ValueError(f"top-p must be a number from {limits.min_top_p} to 1 (1 = off); got {value!r}")
    return top_p


def check_request(model: Checkpoint, template: str, num_samples, steps, temperature, seed, fold: str = "off",
                  limits: Limits = Limits(), sampler: str = "tau-leaping", top_p=1.0) -> tuple[Template, Settings]:
    """Parse and check one request; a ``ValueError`` says what was wrong and what is allowed."""
    num_samples = _in_range(num_samples, "number of designs", 1, limits.max_designs)
    steps = _in_range(steps, "steps", limits.min_steps, limits.max_steps)
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        temperature = float("nan")
    if not limits.min_temperature <= temperature <= limits.max_temperature:
        raise ValueError(f"temperature must be a number from {limits.min_temperature} to "
                         f"{limits.max_temperature}; got {temperature!r}")
    seed = checked_seed(seed, limits)
    if sampler not in STRATEGIES:
        raise ValueError(f"sampler must be one of {', '.join(STRATEGIES)}; got {sampler!r}")
    top_p = _checked_top_p(top_p, limits)
    if fold not in FOLD_BACKENDS:
        raise ValueError(f"folding backend must be one of {', '.join(FOLD_BACKENDS)}; got {fold!r}")
    parsed = model.alphabet.parse_template(template, model.max_len)
    settings = Settings(model.alphabet.decode(parsed.tokens, mask_char="_"), num_samples, steps, temperature,
                        seed, fold, model.source, list(parsed.notices), sampler, top_p)
    return parsed, settings


@dataclass
class View:
    """What the page shows at one moment of the denoising."""

    sequences: list[str]     # ``_`` at masked positions
    states: list[str]        # per position: render.FIXED / DESIGNED / NEW / MASKED
    step: int
    steps: int
    nfe: int
    done: bool


@dataclass
class Design:
    index: int                  # 1-based, in the order the sampler drew it
    sequence: str
    designed: list[bool]
    nearest_identity: float | None = None   # see ``nearest_identities``
    fold: FoldResult | None = None
    fold_error: str | None = None

    @property
    def name(self) -> str:
        return f"design_{self.index}"


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


class Run:
    """One request: sample with streaming, record the trajectory, fold, rank and write the downloads."""

    def __init__(self, model: Checkpoint, template: Template, settings: Settings):
        self.model, self.template, self.settings = model, template, settings
        self.trajectory: list[dict] = []
        self.designs: list[Design] = []
        self._fixed = [not d for d in template.designed]

    def _states(self, tokens: torch.Tensor, new: torch.Tensor) -> list[str]:
        masked = (tokens == self.template.mask_id).tolist()
        return ["".join(render.FIXED if f else render.MASKED if m else render.NEW if n else render.DESIGNED
                        for f, m, n in zip(self._fixed, row_masked, row_new))
                for row_masked, row_new in zip(masked, new.tolist())]

    def denoise(self, min_interval: float = 0.1) -> Iterator[View]:
        """Stream the sampler's states, at most one per ``min_interval`` seconds (the last always).

        Every state in which something changed goes into the trajectory, shown or not; positions
        revealed in skipped states count as new in the next state shown.
        """
        s = self.settings
        request = Request([self.template] * s.num_samples, s.steps, s.temperature, s.seed, sampler=s.sampler,
                          top_p=s.top_p)
        lengths = [len(self.template)] * s.num_samples
        new, last_shown = None, -math.inf
        for frame in stream(self.model, request):
            new = frame.changed.cpu() if new is None else new | frame.changed.cpu()
            # a remasked position shows as masked again (its token is MASK in the frame)
            if frame.step > 0 and not (frame.changed.any() or frame.remasked.any()) and not frame.done:
                continue
            sequences = decode_rows(self.model, frame, lengths)
            self.trajectory.append({"step": frame.step, "t": frame.t, "nfe": frame.nfe, "sequences": sequences})
            if frame.done or time.monotonic() - last_shown >= min_interval:
                yield View(sequences, self._states(frame.tokens.cpu(), new), frame.step, s.steps, frame.nfe, frame.done)
                new, last_shown = torch.zeros_like(new), time.monotonic()
        final = self.trajectory[-1]["sequences"]
        self.designs = [Design(i + 1, seq, self.template.designed, nearest)
                        for i, (seq, nearest) in enumerate(zip(final, nearest_identities(final, self.template.designed)))]

    def fold(self, backend) -> Iterator[Design]:
        """Fold each design in turn, yielding it; a failure is recorded on the design, never raised."""
        shared_error = None
        for design in self.designs:
            if shared_error:
                design.fold_error = shared_error
            else:
                try:
                    design.fold = backend.fold([design.sequence])[0]
                except FoldError as e:
                    design.fold_error = str(e)
                    shared_error = str(e) if e.reason in _REQUEST_WIDE_FAILURES else None
            yield design

    def ranked(self) -> list[Design]:
        """Folded designs by mean pLDDT, best first; unfolded ones after, in sampling order."""
        return sorted(self.designs, key=lambda d: (d.fold is None, -(d.fold.mean_plddt if d.fold else 0.0), d.index))

    def fasta(self) -> str:
        return to_fasta([d.sequence for d in self.designs])

    def write_files(self, directory: Path) -> list[Path]:
        """FASTA of all designs, a PDB per folded design, the trajectory and the settings."""
        directory.mkdir(parents=True, exist_ok=True)
        settings = self.settings.to_dict()
        paths = [directory / "designs.fasta", directory / "settings.json", directory / "trajectory.json"]
        atomic_write_text(paths[0], self.fasta())
        atomic_write_text(paths[1], json.dumps(settings, indent=2) + "\n")
        atomic_write_text(paths[2], json.dumps({"settings": settings, "frames": self.trajectory}) + "\n")
        for d in self.designs:
            if d.fold is not None:
                paths.append(directory / f"{d.name}.pdb")
                atomic_write_text(paths[-1], d.fold.pdb)
        return paths
