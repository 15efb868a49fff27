"""Train a SEDD score network on a FASTA file: ``train(TrainConfig(...))`` or ``python -m sedd.train``.

One process on CPU / one GPU / MPS, or several under ``torchrun`` (DDP, NCCL on GPUs, gloo on CPU):
each rank takes its own shard of batches and only rank 0 writes. Budgets: ``--minutes`` and
``--max-steps``. Every few minutes rank 0 writes, atomically, the checkpoint directory (the EMA
weights of the step with the best validation ELBO) and ``resume.pt`` (raw + EMA weights, optimizer,
step, data position, RNG), which ``--resume`` continues from, with every option of the saved run
(only budgets and how the run is watched may change; ``RESUME_MAY_CHANGE``). Ctrl-C or SIGTERM ends
the run after its step, saved (``Interrupted``); the command then ends by that signal (status 128 + its number).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import errno
import fcntl
import gc
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint as ckpt
from .alphabet import PROTEIN, Alphabet
from .cli import (ALPHABET, BATCH_TOKENS, COUNT, COUNT_OR_ZERO, FILE, FOLDER, FRACTION, MODEL_LENGTH, POSITIVE, POSITIVE_OR_ZERO,
                  SEED, RankZeroParser, checked, die_by, is_out_of_memory, one_line_warnings, run)
from .data import MAX_LEN, bucketed_batches, collate, describe_dropped, longer_than, read_clusters, read_fasta, split
from .hmm import HMM_NAME
from .likelihood import estimate_elbo, unigram_nll
from .loss import diffusion_loss
from .model import MLP_KINDS, PRESETS, ModelConfig, ScoreNetwork, preset, weights_from_causal_twin
from .optim import OPTIMIZERS, make_optimizer
from .schedule import LogLinearSchedule
from .time_sampling import TIME_SAMPLINGS, time_sampler

RESUME_NAME = ckpt.RESUME_NAME


@dataclass
class TrainConfig:
    data: str
    out: str
    preset: str = "small"
    minutes: float | None = None
    max_steps: int | None = None
    resume: bool = False
    clusters: str | None = None
    val_fraction: float = 0.05
    tokens_per_batch: int = 8192
    lr: float = 1e-3
    min_lr_fraction: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    dropout: float = 0.1
    ema_decay: float = 0.999
    max_len: int = MAX_LEN
    eval_every: int = 250
    patience: int = 10            # stop after this many evaluations without a better validation ELBO
    eval_max_seqs: int = 512
    checkpoint_minutes: float = 3.0
    max_bad_steps: int = 5
    seed: int = 0
    device: str | None = None
    alphabet: dict = field(default_factory=PROTEIN.to_dict)
    model_overrides: dict = field(default_factory=dict)   # ModelConfig fields: mlp, tie_embeddings, d_model, …
    optimizer: str = "adamw"            # adamw | muon (sedd/optim.py)
    time_sampling: str = "stratified"   # stratified | antithetic | importance (sedd/time_sampling.py)
    compile: bool = False               # torch.compile the network for the training forward/backward
    clock: str = "wall"                 # what --minutes counts: wall seconds, or this process's CPU seconds
    init_from: str | None = None        # an autoregressive baseline checkpoint whose weights start the network


# What a resumed run may set anew: its budgets and how it is watched, saved and placed. These do
# not change what a step computes (the validation probe draws from its own seeded generators), so
# the run stays the run it was; a new budget only refits the cosine decay to the new end.
RESUME_MAY_CHANGE = ("out", "resume", "minutes", "max_steps", "eval_every", "patience", "checkpoint_minutes",
                     "max_bad_steps", "device")
# Where a new run's first weights come from; a resumed run's come from resume.pt, so it is not needed.
RESUME_UNUSED = ("init_from",)
# Everything else defines the run (data and split, network, optimizer and LR schedule, random
# streams): the saved weights, optimizer moments, data position and generators are only meaningful
# for the same values, so a resumed run must share them. New fields land here unless listed above.
RESUME_MUST_MATCH = tuple(f.name for f in fields(TrainConfig) if f.name not in RESUME_MAY_CHANGE + RESUME_UNUSED)
PATH_FIELDS = ("data", "clusters")     # the same file under another spelling is the same
# What resume.pt must hold for a run to continue from it.
RESUME_KEYS = ("model", "ema", "opt", "step", "epoch", "batch_in_epoch", "tokens_seen", "seconds", "gen",
               "history", "best_elbo", "best_step", "best_weights", "config")
CLOCKS = {"wall": time.time, "cpu": time.process_time}
# Signals that stop a run at the end of its step, saved (Ctrl-C; kill, torchrun's agent, a scheduler's preemption).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# a learning rate of 1e308 overflowed inside the optimizer, with a traceback
LEARNING_RATE = checked(float, lambda v: 0 < v <= 10, "a learning rate above 0 and at most 10")


def no_better_for_patience(cfg: TrainConfig, step: int, best_step: int) -> bool:
    """Early stopping's test at a validation of ``step``: ``patience`` evaluations (never, when it is 0)
    without a better validation ELBO than the one of ``best_step``."""
    return bool(cfg.patience) and step - best_step >= cfg.patience * cfg.eval_every


class Diverged(FloatingPointError, ValueError):
    """Training produced only non-finite losses for ``max_bad_steps`` steps in a row (a ValueError too:
    the command line reports it in one line)."""


class OutOfMemory(ValueError):
    """A step that did not fit in memory. The weights were not touched, so the run up to the step
    before can be saved (``saved``: one process; under torchrun a save is collective and the other
    ranks cannot join it). A ValueError: the command line reports it in one line, as any setting it
    cannot carry out."""

    def __init__(self, step: int, residues: int, out: Path, saved: bool = False):
        self.step, self.residues, self.out, self.saved = step, residues, out, saved
        kept = (f"the run up to step {step} is saved in {out}: --resume continues it where more memory is free, "
                f"and --init-from {out} starts a run with a smaller batch" if saved else "nothing more was saved")
        super().__init__(f"out of memory at step {step + 1}, a batch of {residues:,} residues; lower "
                         f"--tokens-per-batch (or --max-len); {kept}")


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal of STOP_SIGNALS: it finished its step and saved, so ``--resume`` continues it
    exactly. A KeyboardInterrupt, so a caller that catches ``Exception`` does not carry on as if the run had ended."""

    def __init__(self, signum: int, step: int, out: Path):
        self.signum, self.step, self.out = signum, step, out
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}, saved in {out / RESUME_NAME}; "
                         f"python -m sedd.train --out {out} --resume continues the run")

    def __reduce__(self):             # pickled whole (a run in a worker process of a benchmark)
        return type(self), (self.signum, self.step, self.out)


def check_budget(minutes: float | None, max_steps: int | None) -> None:
    """A budget that ends the run: --minutes and --max-steps, each above 0 and finite where given, one at
    least. Without this a TrainConfig built in code (a benchmark's) would train for ever with
    minutes=0, or train no step and report it with a negative budget; the command line asks it too."""
    for name, value in (("minutes", minutes), ("max_steps", max_steps)):
        if value is not None and not 0 < value < math.inf:
            raise ValueError(f"{_flag(name)} must be a number above 0, got {value}")
    if not minutes and not max_steps:
        raise ValueError("give a budget: --minutes M and/or --max-steps N")


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, or the best available; a device this machine lacks is a ValueError that
    says so (torch would fail later, deep in a tensor move, with a traceback).

    CUDA without an index is this process's GPU: torchrun's ``LOCAL_RANK``, else 0 (``--device cuda``
    failed at start: ``torch.cuda.set_device`` takes no device without an index). Under torchrun an
    index is refused, as it would put every process on that one GPU."""
    local_gpu = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if requested:
        device = ckpt.check_device(requested)
        if device.type != "cuda":
            return device
        if device.index is None:
            return local_gpu
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(f"--device {requested} under torchrun puts every process on one GPU; give "
                             "--device cuda (each process then takes the GPU of its LOCAL_RANK)")
        return device
    if torch.cuda.is_available():
        return local_gpu
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


DAMAGED = "truncated, damaged, or not written by sedd.train"


def read_resume(path: str | Path) -> dict:
    """The training state in ``path`` (weights only, onto the CPU), or a ValueError naming the file.

    torch's own message for a damaged file advises ``weights_only=False``, which would run any code
    the file holds; the reason is put in our words instead. Damaged bytes fail in whatever way the
    unpickler meets them (UnpicklingError, RuntimeError, struct.error, …), hence the broad except.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:            # torch reads a cut-off zip as EINVAL: no I/O fault, a damaged file
        reason = DAMAGED if e.errno == errno.EINVAL else e.strerror or type(e).__name__
    except EOFError:
        reason = "the file is empty"
    except Exception:       # noqa: BLE001 - any other failure to parse means: not a resume file
        reason = DAMAGED
    else:
        missing = [k for k in RESUME_KEYS if k not in state] if isinstance(state, dict) else RESUME_KEYS
        if not missing:
            return state
        reason = f"it holds no training state: {', '.join(missing[:3])}{', …' if len(missing) > 3 else ''} missing"
    raise ValueError(f"{path} is not a readable resume file ({reason}); start a new --out or pass --overwrite")


def saved_config(state: dict) -> TrainConfig:
    """The TrainConfig a resume state was written with; fields it predates take their defaults. Fields this
    version lacks (a newer sedd's options) are refused: continuing without them would be another run."""
    saved = json.loads(state["config"])
    unknown = sorted(set(saved) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ValueError(f"--resume: the run was saved by a newer sedd, with options this version does not know "
                         f"({', '.join(unknown)}); update sedd to continue it")
    overrides = sorted(set(saved.get("model_overrides") or {}) - {f.name for f in fields(ModelConfig)})
    if overrides:
        raise ValueError(f"--resume: the run was saved by a newer sedd, with network settings this version does not "
                         f"know ({', '.join(overrides)}); update sedd to continue it")
    cfg = TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved})
    for key, absolute in state.get("resolved_paths", {}).items():       # older files: paths as typed only
        typed = getattr(cfg, key)
        if typed and os.path.exists(absolute) and not _same_file(typed, absolute):
            cfg = replace(cfg, **{key: absolute})     # resumed from another directory: the file it trained on
    return cfg


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def same_setting(key: str, saved, now) -> bool:
    """Whether a resumed run's ``key`` equals the saved run's: paths by the file they name, so the
    same data under another spelling is the same data. A saved path is stored as typed; when it names
    nothing from here (another working directory, or the file moved) the path given now is taken."""
    if saved == now:
        return True
    if key in PATH_FIELDS and saved and now:
        return not os.path.exists(saved) or _same_file(saved, now)
    return False


def generator_seed(value: int) -> int:
    """``value`` as a seed torch takes (0 … 2**64 − 1): itself below 2**64, so every run seeded so far draws
    what it drew, else reduced modulo 2**64. The generator of times and masks is seeded with seed · 1000 + rank,
    which for a --seed above about 1.8e16 (the command line takes up to 2**63 − 1) overflowed torch's
    seed and stopped the run with "Overflow when unpacking long long"."""
    return value % 2**64


def split_digest(train_set, val_set) -> str:
    """A fingerprint of a run's training and validation sequences (SHA-256 of their residue ids, in
    order), saved in resume.pt so that a resume can tell when the data under its path changed."""
    digest = hashlib.sha256()
    for part in (train_set, val_set):
        for tokens in part.tokens:
            digest.update(",".join(map(str, tokens)).encode() + b";")
        digest.update(b"|")
    return digest.hexdigest()


def ema_decay_at(step: int, max_decay: float) -> float:
    """EMA decay that warms up with the step count: min(max, (1+n)/(10+n)).

    A fixed 0.999 average after a few hundred steps is still mostly the random initial weights.
    """
    return min(max_decay, (1 + step) / (10 + step))


def lr_at(step: int, cfg: TrainConfig, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_fraction`` as ``progress`` → 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def plot_history(history: list[dict], path: Path, unigram: float | None = None) -> None:
    """Training loss and validation ELBO against steps, as a PNG; ``unigram`` draws the floor line
    (validation residues under the training composition, ``likelihood.unigram_nll``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "train_loss" in h]
    val = [h for h in history if "val_elbo_raw" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot([h["step"] for h in train], [h["train_loss"] for h in train], lw=0.8, alpha=0.6, label="train loss (nats/residue)")
    for key, style in (("val_elbo_raw", "o-"), ("val_elbo_ema", "s-")):
        if val:
            ax.plot([h["step"] for h in val], [h[key] for h in val], style, ms=3, label=f"validation ELBO, {key[-3:]} weights")
    if unigram is not None:
        ax.axhline(unigram, color="grey", ls="--", lw=0.8, label=f"unigram floor {unigram:.2f} (validation residues)")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / residue")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    ckpt.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


class Trainer:
    """One training run. ``__init__`` builds it in named steps; ``run`` trains until a budget is spent.

    Attributes a caller may read: ``model`` (raw weights), ``ema``, ``step``, ``tokens_seen``,
    ``seconds`` (on the budget's --clock), ``wall_seconds``, ``history``, ``best`` ({"elbo", "step",
    "weights"}), ``train_set``, ``val_set``.

    A resumed run (``cfg.resume``) reads ``out/resume.pt`` unless the caller has read it already and
    passes its contents as ``resume_state`` (``main`` does, to check the options against it); the
    dict is emptied once loaded, so a large run's tensors are not held twice.
    """

    def __init__(self, cfg: TrainConfig, resume_state: dict | None = None):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self._join_processes()
        self.alphabet = Alphabet.from_dict(cfg.alphabet)
        self.schedule = LogLinearSchedule()
        self._load_data()
        self._build_networks()
        self._build_optimizer()
        self._reset_counters()
        if cfg.resume:
            self._load_resume(resume_state)

    # ---- construction, one step each --------------------------------------------------------------
    def _join_processes(self) -> None:
        """Device, DDP process group (under torchrun), rank, and the seeded random generators."""
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.device = pick_device(self.cfg.device)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        torch.manual_seed(self.cfg.seed)                     # weights init and dropout
        # Times and masks are drawn on the training device from this generator; its state is saved
        # in resume.pt so a resumed run draws what the uninterrupted run would have drawn.
        self.gen = torch.Generator(device=self.device).manual_seed(generator_seed(self.cfg.seed * 1000 + self.rank))

    def _load_data(self) -> None:
        """Read the FASTA, split off validation (whole clusters with --clusters), fix the probe set."""
        cfg = self.cfg
        data = read_fasta(cfg.data, self.alphabet, max_len=cfg.max_len)
        if self.is_main and data.num_dropped:
            longer = longer_than(cfg.max_len) in data.dropped
            print(f"{describe_dropped(data)} (alphabet {self.alphabet.residues!r}, maximum length {cfg.max_len}"
                  f"{'; --max-len N keeps longer ones' if longer else ''})", file=sys.stderr)
        clusters = read_clusters(cfg.clusters) if cfg.clusters else None
        with warnings.catch_warnings():
            if not self.is_main:
                warnings.simplefilter("ignore")
            self.train_set, self.val_set = split(data, cfg.val_fraction, cfg.seed, clusters)
        self.val_probe = self.val_set.subset(range(min(len(self.val_set), cfg.eval_max_seqs)))
        self.unigram_floor = unigram_nll(self.val_set, self.train_set, self.alphabet.size)
        self.split_digest = split_digest(self.train_set, self.val_set)

    def _model_config(self) -> ModelConfig:
        """The network's config: the preset, sized for this alphabet and length, with the run's overrides."""
        cfg = self.cfg
        return preset(cfg.preset, vocab_size=self.alphabet.size, max_len=cfg.max_len, dropout=cfg.dropout,
                      **cfg.model_overrides)

    def _build_networks(self) -> None:
        """The network, its EMA copy (starting equal, never trained directly) and the DDP wrapper."""
        cfg = self.cfg
        model_cfg = self._model_config()
        self.model = ScoreNetwork(model_cfg).to(self.device)
        if cfg.init_from and not cfg.resume:   # a resumed run's weights come from resume.pt
            try:
                baseline = ckpt.load(cfg.init_from, causal=True)
                twin = baseline.model
                if baseline.alphabet.residues != self.alphabet.residues:     # rows are copied by residue id
                    raise ValueError(f"the autoregressive baseline's alphabet is {baseline.alphabet.residues!r}, this "
                                     f"run's {self.alphabet.residues!r}: train with the baseline's alphabet")
                _check_twin(twin.config, model_cfg)
                self.model.load_state_dict(weights_from_causal_twin(twin.state_dict(), self.model.state_dict(),
                                                                    self.alphabet.size))
            except ValueError as e:
                raise ValueError(f"--init-from {cfg.init_from}: {e}") from e
        self.ema = ScoreNetwork(model_cfg).to(self.device).eval()
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        else:
            self.ddp = self.model
        # the compiled wrapper only runs the forward/backward; weights and state dicts stay self.model's
        self.net = torch.compile(self.ddp, dynamic=True) if cfg.compile else self.ddp
        if self.rank:      # dropout: every rank its own masks, not rank 0's (rank 0, and one process, as before);
            # a stream apart from the generator of times and masks, which is seeded with seed · 1000 + rank
            torch.manual_seed(generator_seed(cfg.seed * 1000 + self.rank + 2**62))

    def _build_optimizer(self) -> None:
        """The optimizer (``sedd/optim.py``; AdamW by default), the time sampler, the budget and its clock."""
        cfg = self.cfg
        self.opt = make_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay)
        self.times = time_sampler(cfg.time_sampling, self.schedule)
        if cfg.clock not in CLOCKS:
            raise ValueError(f"unknown clock {cfg.clock!r}; choose one of {', '.join(CLOCKS)}")
        self.clock = CLOCKS[cfg.clock]
        check_budget(cfg.minutes, cfg.max_steps)
        if cfg.max_steps and cfg.warmup_steps >= cfg.max_steps and self.is_main:     # said once, not per rank
            # a resumed run keeps the warm-up it started with (--resume refuses another): the only fix
            # then is a longer budget
            fix = (f"resume with --max-steps above {cfg.warmup_steps}, or start a new run with fewer warm-up steps"
                   if cfg.resume else f"give fewer warm-up steps (a tenth of the run: --warmup-steps "
                                      f"{max(1, cfg.max_steps // 10)})")
            warnings.warn(f"--warmup-steps {cfg.warmup_steps} is not below --max-steps {cfg.max_steps}: the learning "
                          f"rate rises for the whole run and never reaches --lr {cfg.lr:g} nor decays; {fix}")

    def _reset_counters(self) -> None:
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.tokens_seen, self.seconds, self.warmup_seconds = 0, 0.0, 0.0
        self.wall_seconds = 0.0                    # of the training loop; ``seconds`` is on the budget's --clock
        self.step_residues = 0                     # residues of the last step's batches, all ranks together
        self.history: list[dict] = []
        self.best = {"elbo": float("inf"), "weights": None, "step": 0}
        self._epoch_batches: list[list[int]] | None = None
        self._bad_in_row = 0
        self._signal = 0                           # a stop signal this rank received (set by the handler)
        self._agreed_signal = 0                    # any rank's, as the ranks last agreed (``_budget_spent``)
        self.stopped_by = 0                        # the signal that ended the run before its budget, if one did
        self._last_log = ""                        # loss and tokens/s of the last logged step, for the bar
        self._window = (time.time(), 0)            # (clock, tokens_seen) at the last tokens/s reading

    # ---- resume state -----------------------------------------------------------------------------
    def _random_state(self) -> dict:
        """This rank's generators — times and masks (``gen``), dropout (torch's), the GPU's — and its
        time sampler's statistics (importance-sampled t adapts to the losses of this rank's batches)."""
        state = {"gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(), "times": self.times.state_dict()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _state(self, rank_random: list[dict]) -> dict:
        """resume.pt's contents; ``rank_random``: every rank's ``_random_state``, in rank order (rank 0's
        also at the top level, where a file of one process always kept them)."""
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "tokens_seen": self.tokens_seen, "seconds": self.seconds, "warmup_seconds": self.warmup_seconds,
                "wall_seconds": self.wall_seconds, "device_type": self.device.type, "world_size": self.world,
                **rank_random[0], "rank_random": rank_random,
                "history": json.dumps(self.history), "best_elbo": self.best["elbo"], "best_step": self.best["step"],
                "best_weights": self.best["weights"], "bad_in_row": self._bad_in_row, "config": json.dumps(asdict(self.cfg)),
                "split_digest": self.split_digest,
                # the files as typed are relative to where the run started; these find them from anywhere
                "resolved_paths": {k: str(Path(getattr(self.cfg, k)).resolve()) for k in PATH_FIELDS
                                   if getattr(self.cfg, k)}}

    def _load_resume(self, state: dict | None = None) -> None:
        path = self.out / RESUME_NAME
        if state is None:
            if not path.is_file():
                raise FileNotFoundError(f"--resume: {path} does not exist; start without --resume")
            # Loaded onto the CPU: generator states must stay CPU ByteTensors; load_state_dict copies
            # weights and optimizer moments onto the parameters' device.
            state = read_resume(path)
        self._check_same_recipe(saved_config(state), path)
        self._check_same_split(state.get("split_digest"), path)      # older files: not known
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self._note_other_world_size(state.get("world_size", self.world))     # older files: not known
        self.tokens_seen, self.seconds = state["tokens_seen"], state["seconds"]
        self.warmup_seconds = state.get("warmup_seconds", 0.0)
        self.wall_seconds = state.get("wall_seconds", self.seconds)   # older files kept only the budget's clock
        self.times.load_state_dict(state.get("times", {}))      # rank 0's; each rank's own, where kept, next
        self._restore_random_state(state)
        self.history = json.loads(state["history"])
        self.best = {"elbo": state["best_elbo"], "weights": state["best_weights"], "step": state["best_step"]}
        self._bad_in_row = state.get("bad_in_row", 0)       # non-finite losses in a row; older files: not known
        self._window = (time.time(), self.tokens_seen)
        state.clear()
        if self.is_main:
            print(f"resumed from {path} at step {self.step} ({self.tokens_seen:,} tokens)", file=sys.stderr)

    def _check_same_recipe(self, saved: TrainConfig, path: Path) -> None:
        """Refuse to continue a run with any RESUME_MUST_MATCH field changed, naming each one."""
        now, then = asdict(self.cfg), asdict(saved)
        differ = [f"{k}: {then[k]!r} there, {now[k]!r} now" for k in RESUME_MUST_MATCH
                  if not same_setting(k, then[k], now[k])]
        if differ:
            raise ValueError(f"--resume: {path} was trained with a different recipe ({'; '.join(differ)}); "
                             "resume with the same options or start a new --out")

    def _check_same_split(self, saved: str | None, path: Path) -> None:
        """Refuse to continue a run whose --data (or --clusters) file now gives other training or
        validation sequences: the same path is not the same data. The split would change under the
        run, sequences it trained on could become validation, and the best step would be chosen by
        ELBOs of different validation sets."""
        if saved is not None and saved != self.split_digest:
            files = " and ".join(f"{f} {getattr(self.cfg, f)}" for f in PATH_FIELDS if getattr(self.cfg, f))
            raise ValueError(f"--resume: {path} was trained on other sequences than {files} now give (the file "
                             "changed since the run started); restore it, or start a new run with --overwrite")

    def _note_other_world_size(self, saved: int) -> None:
        """Say so when a run saved by ``saved`` processes continues on another number: each rank takes
        --tokens-per-batch residues a step and every world_size-th batch of the epoch's order, so the
        steps grow or shrink and the rest of the epoch is dealt out anew (some batches seen twice,
        some skipped); the run goes on, but it is not the one it continues."""
        if saved != self.world and self.is_main:
            print(f"resume: the run was saved by {saved} process(es) and continues on {self.world}: each step now "
                  f"takes {self.world} × {self.cfg.tokens_per_batch:,} residues instead of {saved} × "
                  f"{self.cfg.tokens_per_batch:,}, and the rest of epoch {self.epoch + 1} is dealt out anew",
                  file=sys.stderr)

    def _restore_random_state(self, state: dict) -> None:
        """The same number of processes on the device type the run was saved on: each rank's saved
        generator states, so the run continues exactly. Otherwise every rank reseeds from (seed, rank,
        step), so the resumed run is reproducible, though not identical to the uninterrupted one:
        - on another number of processes, ranks deal the batches out anew (``_note_other_world_size``),
          and must keep drawing different masks and dropout;
        - a state saved on another device type (a GPU run continued on a CPU) has another
          generator's format: a CUDA generator's 16 bytes are no CPU Mersenne Twister state;
        - an older resume.pt saved rank 0's generators only."""
        saved_on = state.get("device_type", self.device.type)        # older files: this device's
        ranks = state.get("rank_random", [state] if self.world == 1 else None)
        if ranks is None or len(ranks) != self.world or saved_on != self.device.type:
            if saved_on != self.device.type and self.is_main:
                print(f"resume: the run was saved on {saved_on} and continues on {self.device.type}; its random "
                      "generators are reseeded from (seed, step), so it will not draw what the saved run would have",
                      file=sys.stderr)
            seed = generator_seed(self.cfg.seed * 1000 + self.rank + 7919 * self.step)
            self.gen.manual_seed(seed)
            torch.manual_seed(seed)
            return
        mine = ranks[self.rank]
        self.gen.set_state(mine["gen"])
        if "times" in mine:
            self.times.load_state_dict(mine["times"])
        if "torch_rng" in mine:
            torch.set_rng_state(mine["torch_rng"])
        if "cuda_rng" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], self.device)

    def save(self) -> None:
        """Rank 0 writes resume.pt, the checkpoint (best weights), history.json and loss.png, each atomically.

        Under DDP every rank calls it at the same step (a collective step): resume.pt holds every
        rank's generators, so that each rank continues drawing its own times, masks and dropout."""
        rank_random = [self._random_state()]
        if self.distributed:
            rank_random = [None] * self.world
            dist.all_gather_object(rank_random, self._random_state())
        if not self.is_main:
            return
        state = self._state(rank_random)               # outside the write: its errors are not a disk's
        ckpt.atomic_write(self.out / RESUME_NAME, lambda tmp: torch.save(state, tmp))
        shipped = copy.deepcopy(self.ema)          # not a fresh network: its init would draw from the RNG
        shipped.load_state_dict(self.best["weights"] or self.ema.state_dict())
        ckpt.save(self.out, shipped, self.alphabet, self.schedule, self.train_set.length_histogram(),
                  {"training": self._summary()})
        ckpt.atomic_write_text(self.out / "history.json", json.dumps(self.history) + "\n")
        plot_history(self.history, self.out / "loss.png", self.unigram_floor)

    def _summary(self) -> dict:
        val = [h for h in self.history if "val_elbo_raw" in h]
        return {"data": str(self.cfg.data), "clusters": self.cfg.clusters, "preset": self.cfg.preset,
                "parameters": self.model.num_parameters(), "steps": self.step, "tokens_seen": self.tokens_seen,
                "wall_seconds": round(self.wall_seconds, 1), "clock_seconds": round(self.seconds, 1),
                "device": str(self.device), "world_size": self.world,
                "num_train_sequences": len(self.train_set), "num_val_sequences": len(self.val_set),
                "val_unigram_nats_per_residue": self.unigram_floor,
                "best_step": self.best["step"] if math.isfinite(self.best["elbo"]) else None,
                # null before the first validation: JSON has no Infinity (Python writes it, other readers fail)
                "best_val_elbo_probe": self.best["elbo"] if math.isfinite(self.best["elbo"]) else None,
                "last_val": val[-1] if val else None, "config": asdict(self.cfg)}

    # ---- one step of each kind ----------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Validation ELBO of the raw and the EMA weights on a fixed probe set; the EMA weights of the
        best step so far are kept as 'best' (what ships, and what early stopping watches).

        Only EMA weights ship, even when the raw weights score a hair better: on the probe the two
        differ by noise (0.00004 nats/residue when a resumed run picked raw weights), while the raw
        weights of any one step carry that step's SGD noise into sampling (that pick sampled the
        catalytic motif in 75 % of designs vs 80 % for the EMA weights, at a 10× larger composition
        KL). The raw ELBO is logged beside it. Seeded, so every rank scores the same probe with the
        same times and masks.
        """
        record = {"step": self.step}
        for name, net in (("raw", self.model), ("ema", self.ema)):
            record[f"val_elbo_{name}"] = estimate_elbo(net, self.val_probe, self.schedule, self.alphabet.mask_id,
                                                       pad_id=self.alphabet.pad_id, t_samples=2, seed=1234,
                                                       device=self.device)["elbo_nats_per_residue"]
        if record["val_elbo_ema"] < self.best["elbo"]:
            self.best = {"elbo": record["val_elbo_ema"], "step": self.step,
                         "weights": {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()}}
        self.history.append(record)
        return record

    def _batches(self) -> list[list[int]]:
        lengths = [len(t) for t in self.train_set.tokens]
        batches = bucketed_batches(lengths, self.cfg.tokens_per_batch, self.cfg.seed + self.epoch, self.rank, self.world)
        if not batches:
            raise ValueError(f"{len(self.train_set)} training sequences make no batch for each of {self.world} "
                             "processes; give more data or fewer processes")
        return batches

    def _next_batch(self) -> list[list[int]]:
        """This rank's next batch; a fresh shuffle (next epoch) once the current one is used up."""
        if self._epoch_batches is None:
            self._epoch_batches = self._batches()
        if self.batch_in_epoch >= len(self._epoch_batches):
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self._epoch_batches = self._batches()
        tokens = [self.train_set.tokens[i] for i in self._epoch_batches[self.batch_in_epoch]]
        self.batch_in_epoch += 1
        return tokens

    def train_step(self, tokens: list[list[int]]) -> float | None:
        """One optimizer step; returns the loss in nats/residue of every rank's batch, or None when it
        was skipped. ``self.step_residues``: the residues of every rank's batch."""
        x0, lengths = collate(tokens, self.alphabet.pad_id)
        x0, lengths = x0.to(self.device), lengths.to(self.device)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.cfg, self.progress())
        nats, scored = self._loss(x0, lengths)
        if self.distributed:
            # Per residue of the whole step, not of this rank's batch: DDP averages the gradients over
            # the ranks, so each rank's nats are scaled by world / (all ranks' residues), and the step
            # is the one a single process would take on every rank's batch at once.
            total = torch.stack([nats.detach().double(), scored.double(), lengths.sum().double()])
            dist.all_reduce(total)
            loss, reported = nats * (self.world / total[1]).to(nats.dtype), total[0] / total[1]
            self.step_residues = int(total[2].item())
        else:
            loss = reported = nats / scored
            self.step_residues = int(lengths.sum())
        # Always backward, then test the (all-reduced) gradient and loss: every DDP rank skips together.
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if not (torch.isfinite(grad_norm) and torch.isfinite(reported)):
            self.opt.zero_grad(set_to_none=True)
            return None
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._update_ema()
        return reported.item()

    def _loss(self, x0: torch.LongTensor, lengths: torch.LongTensor) -> tuple[torch.Tensor, torch.LongTensor]:
        """(Σ over the batch of p(t)/q(t)-weighted nats, the residues they cover): times from the time
        sampler, the weights keep the loss unbiased; the ratio is the loss in nats/residue."""
        x0, lengths, t, weight = self.times.prepare(x0, lengths, self.gen)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            nats = diffusion_loss(self.net, x0, lengths, self.schedule, self.alphabet.mask_id, t=t,
                                  pad_id=self.alphabet.pad_id, generator=self.gen)
        self.times.observe(t, nats.detach() / lengths)
        return (weight * nats).sum(), lengths.sum()

    def _update_ema(self) -> None:
        with torch.no_grad():
            d = ema_decay_at(self.step, self.cfg.ema_decay)
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm, 1 - d)

    # ---- budgets --------------------------------------------------------------------------------------
    def progress(self) -> float:
        """Fraction of the post-warm-up budget used (drives the LR decay): steps of --max-steps or
        seconds of --minutes, whichever ends first.

        Under --max-steps the first step after warm-up is at 0 (the peak LR) and the last one, step
        index max_steps − 1, at 1 (the floor). Under a time budget the decay follows the clock, so it
        ends on its floor even when the speed changes mid-run (a busy machine, a resume with a new
        budget); the last step starts a moment before the budget is spent, a hair above the floor.
        """
        fractions = []
        if self.cfg.max_steps:
            decay_steps = self.cfg.max_steps - 1 - self.cfg.warmup_steps
            fractions.append((self.step - self.cfg.warmup_steps) / max(1, decay_steps))
        if self.cfg.minutes:
            fractions.append((self.seconds - self.warmup_seconds) / max(1.0, self.cfg.minutes * 60 - self.warmup_seconds))
        return max(fractions, default=0.0)

    def budget_used(self) -> float:
        """Fraction of the whole budget spent, for the progress bar: max(step / max_steps, seconds / (60·minutes))."""
        fractions = []
        if self.cfg.max_steps:
            fractions.append(self.step / self.cfg.max_steps)
        if self.cfg.minutes:
            fractions.append(self.seconds / (self.cfg.minutes * 60))
        return min(1.0, max(fractions, default=0.0))

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank when it is True on any: ranks must take each stop decision together,
        or the others wait forever in the next all-reduce."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _budget_spent(self) -> bool:
        """Whether a budget is spent, on the clock every rank agrees on: the slowest rank's. Under
        --minutes the LR follows that clock, and ranks whose own clocks (their CPU time, say) gave
        them different LRs would step their replicas apart. The same exchange shares a stop signal
        that any rank received (``_signal``), so all ranks stop after the same step: the loop acts on
        the value agreed here (``_agreed_signal``), never on ``_signal`` itself, which a signal arriving
        after the exchange changes on one rank only."""
        seconds = self.clock() - self._start
        self.wall_seconds = time.time() - self._wall_start
        signal_now = self._signal
        if self.distributed:
            t = torch.tensor([seconds, signal_now], dtype=torch.float64, device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            seconds, signal_now = t[0].item(), int(t[1].item())
        self._agreed_signal = signal_now
        self.seconds = seconds
        if self.step == self.cfg.warmup_steps and self.step > 0 and not self.warmup_seconds:
            self.warmup_seconds = self.seconds
        spent = bool(self.cfg.max_steps and self.step >= self.cfg.max_steps)
        return spent or bool(self.cfg.minutes and self.seconds >= self.cfg.minutes * 60)

    # ---- the loop ---------------------------------------------------------------------------------------
    def run(self, second_signal_ends_process: bool = False) -> Path:
        """Train until --max-steps, --minutes or early stopping, then save; returns the output directory.
        A stop signal (STOP_SIGNALS) ends the run after its step: saved, then ``Interrupted`` is raised.
        ``second_signal_ends_process``: the command line's choice (``_signals_stop_after_the_step``)."""
        with self._signals_stop_after_the_step(second_signal_ends_process):
            bar = self._progress_bar()
            try:
                self._train_until_done(bar)
            except OutOfMemory as e:
                if self.distributed or not self.step:
                    raise
                self.save()                          # the last whole step
                raise OutOfMemory(e.step, e.residues, e.out, saved=True) from None
            finally:
                bar.close()
            self.save()
        if not self.step and not self.stopped_by and self.is_main:
            warnings.warn(f"the budget ended before the first step: {self.out} holds the network's initial, untrained "
                          "weights; give a larger --minutes or --max-steps")
        if self.stopped_by:
            raise Interrupted(self.stopped_by, self.step, self.out)
        return self.out

    @contextlib.contextmanager
    def _signals_stop_after_the_step(self, end_process: bool = False):
        """Within it, a stop signal does not kill the run mid-step (with everything since the last save
        lost): it is noted, and the loop ends after the step, on every rank together. A second signal
        acts at once, through the handler it had before: a SIGTERM left to the default ends the
        process, and Ctrl-C raises KeyboardInterrupt, or, with ``end_process`` (the command line),
        ends the process by the signal itself (exit status 130): a KeyboardInterrupt raised while a
        finaliser runs is swallowed, and the run went on. A library caller (a notebook) keeps its
        process and its own handlers. A signal the process ignores (a background job's SIGINT)
        stays ignored; outside the main thread, where Python delivers no signals, nothing changes."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        previous = {s: signal.SIG_DFL if h is None else h for s, h in previous.items() if h != signal.SIG_IGN}

        def note(signum, frame):
            self._signal = signum
            for s in previous:
                signal.signal(s, again)

        def again(signum, frame):
            handler = previous[signum]
            if handler == signal.SIG_DFL or (end_process and handler is signal.default_int_handler):
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)                   # exit status 128 + signum, as the shell expects
            else:
                handler(signum, frame)

        for s in previous:
            signal.signal(s, note)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _train_until_done(self, bar) -> None:
        """Returns when a budget is spent (after a last validation), validation stopped improving, or a
        stop signal came (``stopped_by``; no validation: the resumed run validates where the
        uninterrupted one would)."""
        self._start, last_save = self.clock() - self.seconds, time.time()
        self._wall_start = last_save - self.wall_seconds
        while not self._budget_spent():
            if self._agreed_signal:
                self.stopped_by = self._agreed_signal
                return
            loss = self._step_within_memory(self._next_batch())
            if loss is None:
                self._skip_bad_step()
                continue
            self._count_step(loss, bar)
            if self.step % self.cfg.eval_every == 0 and self._validate(bar):
                return
            if self._any_rank(time.time() - last_save >= self.cfg.checkpoint_minutes * 60):     # save: collective
                self.save()
                last_save = time.time()
        self._move_bar(bar)
        if not any(h["step"] == self.step and "val_elbo_ema" in h for h in self.history[-2:]):
            self.evaluate()            # the last step, unless it was a validation step

    def _step_within_memory(self, tokens: list[list[int]]) -> float | None:
        """``train_step``; one that runs out of memory raises ``OutOfMemory`` once the failed step's
        tensors are let go (outside the handler, which holds them), its gradients cleared."""
        try:
            return self.train_step(tokens)
        except RuntimeError as e:             # torch.OutOfMemoryError is one
            if not is_out_of_memory(e):
                raise
        self.opt.zero_grad(set_to_none=True)
        raise OutOfMemory(self.step, sum(map(len, tokens)), self.out)

    def _skip_bad_step(self) -> None:
        self._bad_in_row += 1
        warnings.warn(f"step {self.step}: non-finite loss or gradient, step skipped")
        if self._bad_in_row >= self.cfg.max_bad_steps:
            raise Diverged(f"{self._bad_in_row} non-finite losses in a row at step {self.step}: the run diverged, "
                           "and nothing since its last save (if any) is written; start a new run (another --out, or "
                           "--overwrite) with a lower --lr (a run's --lr cannot change on --resume), or check the data")

    def _count_step(self, loss: float, bar) -> None:
        """Advance the counters, log every 10th step, move the progress bar."""
        self._bad_in_row = 0
        self.step += 1
        self.tokens_seen += self.step_residues
        if self.step % 10 == 0:
            self.history.append({"step": self.step, "train_loss": loss, "lr": self.opt.param_groups[0]["lr"]})
            now = time.time()
            tok_s = (self.tokens_seen - self._window[1]) / max(1e-6, now - self._window[0])
            self._window = (now, self.tokens_seen)
            self._last_log = f", loss {loss:.3f}, {tok_s:,.0f} tok/s"
        self._move_bar(bar)

    def _validate(self, bar) -> bool:
        """Evaluate; True (on every rank) when no better validation ELBO came in ``patience`` evaluations."""
        rec = self.evaluate()
        if self.is_main:
            bar.write(f"step {self.step}: val ELBO raw {rec['val_elbo_raw']:.3f}  ema {rec['val_elbo_ema']:.3f}", file=sys.stderr)
        stale = no_better_for_patience(self.cfg, self.step, self.best["step"])
        stop = self._any_rank(stale)
        if stop and self.is_main:
            bar.write(f"early stop: no better validation ELBO since step {self.best['step']}", file=sys.stderr)
        return stop

    # ---- progress bar -------------------------------------------------------------------------------------
    BAR_UNITS = 1000

    def _progress_bar(self):
        """A bar over the budget (the larger of the step and time fractions), so its ETA is the time
        left whichever budget ends the run."""
        from tqdm.auto import tqdm

        bar = tqdm(total=self.BAR_UNITS, initial=round(self.budget_used() * self.BAR_UNITS), desc="train",
                   disable=not self.is_main, dynamic_ncols=True,
                   bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        self._move_bar(bar)
        return bar

    def _move_bar(self, bar) -> None:
        steps = f"{self.step}/{self.cfg.max_steps}" if self.cfg.max_steps else str(self.step)
        bar.set_postfix_str(f"step {steps}{self._last_log}", refresh=False)
        target = round(self.budget_used() * self.BAR_UNITS)
        bar.update(max(0, target - bar.n))


@contextlib.contextmanager
def training_into(out: Path, is_main: bool = True):
    """Hold ``out`` for this run: a second run into it (a job started twice, a requeue while the old
    one still saves, the workers of a torchrun whose agent was killed) wrote its saves over the
    first's, and each reported a save that the other had replaced. An advisory lock on the folder
    itself (no file left in the checkpoint), which the system lets go when the process ends, killed
    or not; under torchrun rank 0 holds it for all ranks."""
    if not is_main:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    folder = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another process is training into {out} (the same run started twice, or the workers "
                             "of a stopped torchrun still running?); wait for it to end or stop it, or choose "
                             "another --out") from None
        yield
    finally:
        os.close(folder)


def train(cfg: TrainConfig, resume_state: dict | None = None, replacing: bool = False,
          second_signal_ends_process: bool = False) -> Path:
    """Train one run (``Trainer``; ``resume_state``: resume.pt's contents when the caller read them;
    ``second_signal_ends_process``: ``Trainer.run``'s).

    ``replacing``: a new run in an OUT that may hold an earlier one (``--overwrite``). The earlier
    run's resume.pt goes once this run's data and network are ready, not before: a start refused for
    its options or data leaves the earlier run resumable, and a crash after it cannot continue that
    run. So do the files that described the earlier model — its card, family HMM and evaluation —
    which would otherwise stand beside the new weights (``sedd.evaluate`` reads the HMM it finds
    there); only where OUT held a run, so that a README of a folder that never did stays.
    """
    out = Path(cfg.out)
    held = held_run_files(out)
    trainer = Trainer(cfg, resume_state)
    distributed = trainer.distributed
    try:
        with training_into(out, trainer.is_main):
            if trainer.is_main and held:
                ckpt.remove_stale_temporaries(out)    # of saves a kill interrupted; the files themselves are whole
                if replacing:
                    for name in (RESUME_NAME, ckpt.CARD_NAME, HMM_NAME):
                        (out / name).unlink(missing_ok=True)
                    shutil.rmtree(out / ckpt.EVAL_DIR, ignore_errors=True)
            return _run_to_the_end(trainer, second_signal_ends_process)
    finally:
        # The DDP wrapper's reducer holds the process group: free it first, so the group is shut down
        # and destroyed here with no user left. Shut down under a live DDP module, a gloo rank once
        # aborted at exit in CI ("terminate called without an active exception").
        del trainer
        gc.collect()
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


def _run_to_the_end(trainer: Trainer, second_signal_ends_process: bool) -> Path:
    """``trainer.run``; a stop by a signal is raised once every rank has left the run."""
    try:
        out, interrupted = trainer.run(second_signal_ends_process), None
    except Interrupted as e:          # every rank stopped after the same step
        out, interrupted = None, e
    if trainer.distributed:
        # Rank 0 is still saving while the others are done: a gloo rank that tears its group
        # down while another is mid-exchange can abort at exit, so all ranks leave together.
        dist.barrier()
    if interrupted:
        raise interrupted
    return out


def _device_arg(text: str) -> str:
    try:
        ckpt.check_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _default(name: str) -> str:
    return f"default: {TrainConfig.__dataclass_fields__[name].default}"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser() -> argparse.ArgumentParser:
    """The options that set TrainConfig fields default to None, "not given": a --resume takes the
    saved run's value for each of them, and a fresh run TrainConfig's default."""
    p = RankZeroParser(prog="python -m sedd.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=FILE, help="FASTA file of training sequences (required, except with --resume)")
    p.add_argument("--out", required=True, type=FOLDER, help="checkpoint directory to write")
    p.add_argument("--preset", choices=list(PRESETS), help=_default("preset"))
    p.add_argument("--minutes", type=POSITIVE, help="time budget (wall clock, or CPU time with --clock cpu)")
    p.add_argument("--max-steps", type=COUNT, help="step budget")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help=f"continue the run in OUT from OUT/{RESUME_NAME} with every option it was started with; "
                            f"only {_resume_may_change()} may be given anew (a budget given replaces the saved one)")
    again.add_argument("--overwrite", action="store_true", help="start a new run in an OUT that already holds one, "
                                                                "replacing its files")
    p.add_argument("--clusters", type=FILE, help="cluster<TAB>member TSV: validate on whole held-out clusters")
    p.add_argument("--lr", type=LEARNING_RATE, help=_default("lr"))
    p.add_argument("--max-len", type=MODEL_LENGTH,
                   help=f"longest sequence kept, and the model's maximum length ({_default('max_len')}; longer "
                        "sequences are dropped with a note)")
    p.add_argument("--tokens-per-batch", type=BATCH_TOKENS, help=_default("tokens_per_batch"))
    p.add_argument("--dropout", type=FRACTION, help=_default("dropout"))
    p.add_argument("--warmup-steps", type=COUNT_OR_ZERO, help=_default("warmup_steps"))
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"muon: Muon for the transformer's weight matrices, AdamW for the rest ({_default('optimizer')})")
    p.add_argument("--time-sampling", choices=TIME_SAMPLINGS,
                   help=f"how each sequence's diffusion time is drawn, sedd/time_sampling.py ({_default('time_sampling')})")
    p.add_argument("--mlp", choices=MLP_KINDS, help="MLP of the transformer blocks (default: gelu)")
    p.add_argument("--tie-embeddings", action="store_true", default=None,
                   help="output layer = the input embedding's residue rows")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network for training")
    p.add_argument("--clock", choices=list(CLOCKS),
                   help=f"--minutes of wall time, or of this process's CPU time (fair on a shared machine; {_default('clock')})")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from an autoregressive baseline's weights (benchmarks/ar_baseline.py's RUN/ar)")
    p.add_argument("--eval-every", type=COUNT, help=f"validate every N steps ({_default('eval_every')})")
    p.add_argument("--patience", type=COUNT_OR_ZERO,
                   help=f"early stop after this many evaluations without improvement, 0 = never ({_default('patience')})")
    p.add_argument("--checkpoint-minutes", type=POSITIVE_OR_ZERO,
                   help=f"save every M minutes, 0 = every step ({_default('checkpoint_minutes')})")
    p.add_argument("--seed", type=SEED, help=_default("seed"))
    p.add_argument("--device", type=_device_arg, help="cuda, cuda:N, mps or cpu (default: the best available)")
    p.add_argument("--alphabet", type=ALPHABET, help="residue characters (default: the 20 amino acids)")
    return p


def _given(a: argparse.Namespace) -> dict:
    """The TrainConfig fields this command line sets; options left off are absent."""
    direct = {f.name for f in fields(TrainConfig)} - {"out", "resume", "alphabet", "model_overrides"}
    given = {k: v for k, v in vars(a).items() if k in direct and v is not None}
    if a.alphabet is not None:
        given["alphabet"] = a.alphabet.to_dict()
    return given


def _check_twin(twin: ModelConfig, this: ModelConfig) -> None:
    """Refuse an ``--init-from`` baseline whose network is not this run's, naming each difference and
    the option that gives it; ``weights_from_causal_twin`` could only name a tensor."""
    def option(name: str) -> str:
        if name == "mlp":
            return f"--mlp {twin.mlp}"
        if name == "tie_embeddings":
            return "--tie-embeddings" if twin.tie_embeddings else "no --tie-embeddings"
        return "the baseline's --preset"
    names = ("d_model", "n_layers", "n_heads", "d_ff", "mlp", "tie_embeddings")
    differ = [f"{name} {getattr(twin, name)} there, {getattr(this, name)} here" for name in names
              if getattr(twin, name) != getattr(this, name)]
    if differ:
        fixes = list(dict.fromkeys(option(n) for n in names if getattr(twin, n) != getattr(this, n)))
        raise ValueError(f"the autoregressive baseline's network is not this run's ({'; '.join(differ)}): "
                         f"train with {' and '.join(fixes)}")


def _model_options(a: argparse.Namespace) -> dict:
    """The ModelConfig fields this command line sets (--mlp, --tie-embeddings)."""
    return {k: v for k, v in (("mlp", a.mlp), ("tie_embeddings", a.tie_embeddings)) if v is not None}


def _refuse(p: argparse.ArgumentParser, message: str) -> None:
    """A well-formed command line that cannot be carried out (bad data, a run in --out held, spent or
    saved with other options): one ``error:`` line, not 19 lines of usage first as ``p.error`` gives."""
    p.exit(2, f"error: {message}\n")


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} seconds" if seconds < 60 else f"{seconds / 60:.1f} minutes"


def held_run_files(out: Path) -> list[str]:
    """The files that say ``out`` holds a run (a training state, a checkpoint), by name."""
    return [name for name in (RESUME_NAME, ckpt.CONFIG_NAME) if (Path(out) / name).exists()]


def _refuse_to_replace_a_run(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """A new run writes its checkpoint over whatever OUT holds: only with --overwrite, never by accident."""
    out = Path(a.out)
    held = held_run_files(out)
    if held and not (a.resume or a.overwrite):
        _refuse(p, f"--out {out} already holds a run ({', '.join(held)}); pass --resume to continue it, "
                   "--overwrite to replace it, or choose another --out")


def _resumed_config(p: argparse.ArgumentParser, a: argparse.Namespace) -> tuple[TrainConfig, dict]:
    """The saved run's TrainConfig, with what this command line may change on --resume, and the
    training state it was read from (so the Trainer does not read resume.pt again).

    Every option left off keeps the saved value (a default would silently change the run: a new
    seed, split or warm-up). An option given with a different value than the saved run's is refused,
    each difference named, unless it is in RESUME_MAY_CHANGE; a budget given replaces the saved one.
    """
    out = Path(a.out)
    path = out / RESUME_NAME
    if not path.exists():
        if (out / ckpt.CONFIG_NAME).exists():
            _refuse(p, f"--resume: {path} does not exist ({out} holds a checkpoint but no training state); "
                       "pass --overwrite instead of --resume to replace it, or choose another --out")
        _refuse(p, f"--resume: {path} does not exist; start without --resume")
    try:
        state = read_resume(path)
        saved = saved_config(state)
    except ValueError as e:
        _refuse(p, str(e))
    given = _given(a)
    differ = _changed_options(saved, given, _model_options(a))
    if differ:
        _refuse(p, f"--resume: {out} was trained with other values of options that define the run "
                   f"({'; '.join(differ)}); leave them off to keep the saved values, or start a new --out "
                   f"(a resumed run may change only {_resume_may_change()})")
    for k in PATH_FIELDS:
        if k not in given and getattr(saved, k) and not os.path.exists(getattr(saved, k)):
            _refuse(p, f"--resume: the run's {_flag(k)} {getattr(saved, k)} is not found from {Path.cwd()}; "
                       f"give {_flag(k)} with its path from here")
    changes = {k: v for k, v in given.items() if k in RESUME_MAY_CHANGE or k in PATH_FIELDS}
    if "minutes" in given or "max_steps" in given:          # a new budget, not half of the old one
        changes.update(minutes=given.get("minutes"), max_steps=given.get("max_steps"))
    changes["device"] = given.get("device")     # this machine's, not the saved run's: left off, the best here
    cfg = replace(saved, out=a.out, resume=True, **changes)
    _refuse_a_spent_budget(p, cfg, state)
    return cfg, state


def _changed_options(saved: TrainConfig, given: dict, model_options: dict) -> list[str]:
    """Each option given that defines the run and differs from the saved run: "--flag: saved there, given now"."""
    differ = []
    for k, v in given.items():
        then = getattr(saved, k)
        if k == "alphabet":               # the command line sets residues only; the mask characters are not the run
            then, v = then["residues"], v["residues"]
        if k in RESUME_MUST_MATCH and not same_setting(k, then, v):
            differ.append(f"{_flag(k)}: {then!r} there, {v!r} now")
    saved_model = preset(saved.preset, **saved.model_overrides)
    differ += [f"{_flag(k)}: {getattr(saved_model, k)!r} there, {v!r} now"
               for k, v in model_options.items() if getattr(saved_model, k) != v]
    return differ


def _resume_may_change() -> str:
    return ", ".join(_flag(k) for k in RESUME_MAY_CHANGE if k not in ("out", "resume", "max_bad_steps"))


def _refuse_a_spent_budget(p: argparse.ArgumentParser, cfg: TrainConfig, state: dict) -> None:
    """A resumed run whose budget is already spent would train no step and exit as if it had; unless
    its checkpoint is not of the saved step (the last save failed after resume.pt, on a full disk say,
    and left the previous save's checkpoint): then it only writes it."""
    if not _checkpoint_is_of_step(Path(cfg.out), state["step"]):
        return
    spent = []
    if cfg.max_steps and state["step"] >= cfg.max_steps:
        spent.append(f"--max-steps {cfg.max_steps}")
    if cfg.minutes and state["seconds"] >= cfg.minutes * 60:
        spent.append(f"--minutes {cfg.minutes:g}")
    if spent:
        _refuse(p, f"--resume: the run in {cfg.out} is at step {state['step']} after {_duration(state['seconds'])}, "
                   f"so its budget ({' and '.join(spent)}) is spent; give a larger --max-steps or --minutes")
    if _ended_by_early_stopping(cfg, state):
        # it would train to its next validation and stop there again, and again at every resume
        _refuse(p, f"--resume: the run in {cfg.out} is at step {state['step']} with no better validation ELBO since step "
                   f"{state['best_step']}, so early stopping (--patience {cfg.patience}, --eval-every {cfg.eval_every}) "
                   "ends it; give a larger --patience, or --patience 0 to train on without early stopping")


def _ended_by_early_stopping(cfg: TrainConfig, state: dict) -> bool:
    """Whether the saved run ended at a validation that early stopping (with ``cfg``'s patience, which
    a resume may change) stops at: the training loop's test, made where the loop makes it. A run
    stopped between validations, or before any, is not judged: its next validation decides."""
    validated = [h["step"] for h in json.loads(state["history"]) if "val_elbo_ema" in h]
    return (math.isfinite(state["best_elbo"]) and bool(validated) and validated[-1] == state["step"]
            and no_better_for_patience(cfg, state["step"], state["best_step"]))


def _checkpoint_is_of_step(out: Path, step: int) -> bool:
    """Whether ``out`` holds the checkpoint saved at ``step`` (its config.json, written after the
    weights, says so)."""
    try:
        config = json.loads((out / ckpt.CONFIG_NAME).read_text(encoding="utf-8"))
        return (out / ckpt.WEIGHTS_NAME).is_file() and config["training"]["steps"] == step
    except (OSError, ValueError, KeyError, TypeError):
        return False


def main(argv: list[str] | None = None) -> None:
    p = _parser()
    a = p.parse_args(argv)
    _refuse_to_replace_a_run(p, a)
    resume_state = None
    if a.resume:
        cfg, resume_state = _resumed_config(p, a)
    else:
        if a.data is None:
            p.error("--data is required: the FASTA file of training sequences (only --resume may leave it off)")
        try:
            check_budget(a.minutes, a.max_steps)
        except ValueError as e:
            p.error(str(e))
        cfg = TrainConfig(out=a.out, model_overrides=_model_options(a), **_given(a))
    try:
        ckpt.check_writable(Path(cfg.out) / ckpt.CONFIG_NAME, "--out")   # now, not at the first save
        with one_line_warnings():
            out = train(cfg, resume_state, replacing=a.overwrite, second_signal_ends_process=True)
    except (ValueError, OSError) as e:    # what the options asked for cannot be done: say what
        _refuse(p, str(e))                 # (under torchrun, from rank 0 only)
    except Interrupted as e:              # saved: one line, no traceback, then death by the signal itself
        if p.speaks():                     # (an exit with its status would let a shell loop go on)
            print(e, file=sys.stderr, flush=True)
        die_by(e.signum)
    if p.speaks():
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main))         # Ctrl-C before the run's own handler is in place (loading): one line, then SIGINT
