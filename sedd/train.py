"""Train a SEDD score network on a FASTA file: ``train(TrainConfig(...))`` or ``python -m sedd.train``.

One process on CPU / one GPU / MPS, or several under ``torchrun`` (DDP, NCCL on GPUs, gloo on CPU):
each rank takes its own shard of batches and only rank 0 writes. Budgets: ``--minutes`` and
``--max-steps``. Every few minutes rank 0 writes, atomically, the checkpoint directory (best of
raw/EMA weights by validation ELBO) and ``resume.pt`` (raw + EMA weights, optimizer, step, data
position, RNG), which ``--resume`` continues from.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint as ckpt
from .alphabet import PROTEIN, Alphabet
from .data import bucketed_batches, collate, describe_dropped, read_clusters, read_fasta, split
from .likelihood import estimate_elbo
from .loss import diffusion_loss
from .model import ScoreNetwork, preset
from .schedule import LogLinearSchedule

RESUME_NAME = "resume.pt"


BAR_TOTAL = 1000                 # the progress bar counts thousandths of the budget

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
    max_len: int = 128
    eval_every: int = 250
    patience: int = 10            # stop after this many evaluations without a better validation ELBO
    eval_max_seqs: int = 512
    checkpoint_minutes: float = 3.0
    max_bad_steps: int = 5
    seed: int = 0
    device: str | None = None
    alphabet: dict = field(default_factory=PROTEIN.to_dict)
    model_overrides: dict = field(default_factory=dict)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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


def plot_history(history: list[dict], path: Path) -> None:
    """Training loss and validation ELBO against steps, as a PNG."""
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
    ax.axhline(2.84, color="grey", ls="--", lw=0.8, label="unigram entropy (ACYP)")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / residue")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    ckpt.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
        self.device = pick_device(cfg.device)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        torch.manual_seed(cfg.seed)

        self.alphabet = Alphabet.from_dict(cfg.alphabet)
        self.schedule = LogLinearSchedule()
        data = read_fasta(cfg.data, self.alphabet, max_len=cfg.max_len)
        if self.is_main and data.num_dropped:
            print(f"{describe_dropped(data)} (alphabet {self.alphabet.residues!r}, maximum length {cfg.max_len})",
                  file=sys.stderr)
        clusters = read_clusters(cfg.clusters) if cfg.clusters else None
        with warnings.catch_warnings():
            if not self.is_main:
                warnings.simplefilter("ignore")
            self.train_set, self.val_set = split(data, cfg.val_fraction, cfg.seed, clusters)
        self.val_probe = self.val_set.subset(range(min(len(self.val_set), cfg.eval_max_seqs)))

        model_cfg = preset(cfg.preset, vocab_size=self.alphabet.size, max_len=cfg.max_len,
                           dropout=cfg.dropout, **cfg.model_overrides)
        self.model = ScoreNetwork(model_cfg).to(self.device)
        self.ema = ScoreNetwork(model_cfg).to(self.device).eval()
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
        self.ddp = (torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
                    if self.distributed else self.model)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + self.rank)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.tokens_seen, self.seconds, self.warmup_seconds = 0, 0.0, 0.0
        self.history: list[dict] = []
        self.best = {"elbo": float("inf"), "weights": None, "step": 0}
        self.out = Path(cfg.out)
        if cfg.resume:
            self._load_resume()

    # ---- resume state ---------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "tokens_seen": self.tokens_seen, "seconds": self.seconds, "warmup_seconds": self.warmup_seconds, "gen": self.gen.get_state(),
                "history": json.dumps(self.history), "best_elbo": self.best["elbo"], "best_step": self.best["step"],
                "best_weights": self.best["weights"], "config": json.dumps(asdict(self.cfg))}

    def _load_resume(self) -> None:
        path = self.out / RESUME_NAME
        if not path.is_file():
            raise FileNotFoundError(f"--resume: {path} does not exist; start without --resume")
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.tokens_seen, self.seconds = state["tokens_seen"], state["seconds"]
        self.warmup_seconds = state.get("warmup_seconds", 0.0)
        self.gen.set_state(state["gen"])
        self.history = json.loads(state["history"])
        self.best = {"elbo": state["best_elbo"], "weights": state["best_weights"], "step": state["best_step"]}
        if self.is_main:
            print(f"resumed from {path} at step {self.step} ({self.tokens_seen:,} tokens)", file=sys.stderr)

    def save(self) -> None:
        if not self.is_main:
            return
        ckpt.atomic_write(self.out / RESUME_NAME, lambda tmp: torch.save(self._state(), tmp))
        weights = self.best["weights"] or self.ema.state_dict()
        shipped = ScoreNetwork(self.model.config)
        shipped.load_state_dict(weights)
        val = [h for h in self.history if "val_elbo_raw" in h]
        meta = {"training": {
            "data": str(self.cfg.data), "clusters": self.cfg.clusters, "preset": self.cfg.preset,
            "parameters": self.model.num_parameters(), "steps": self.step, "tokens_seen": self.tokens_seen,
            "wall_seconds": round(self.seconds, 1), "device": str(self.device), "world_size": self.world,
            "num_train_sequences": len(self.train_set), "num_val_sequences": len(self.val_set),
            "best_step": self.best["step"], "best_val_elbo_probe": self.best["elbo"],
            "last_val": val[-1] if val else None, "config": asdict(self.cfg)}}
        ckpt.save(self.out, shipped, self.alphabet, self.schedule, self.train_set.length_histogram(), meta)
        ckpt.atomic_write_text(self.out / "history.json", json.dumps(self.history) + "\n")
        plot_history(self.history, self.out / "loss.png")

    # ---- training -------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Validation ELBO of raw and EMA weights on a fixed probe set; keep the better as 'best'."""
        record = {"step": self.step}
        for name, net in (("raw", self.model), ("ema", self.ema)):
            record[f"val_elbo_{name}"] = estimate_elbo(net, self.val_probe, self.schedule, self.alphabet.mask_id,
                                                       t_samples=2, seed=1234, device=self.device)["elbo_nats_per_residue"]
            if record[f"val_elbo_{name}"] < self.best["elbo"]:
                self.best = {"elbo": record[f"val_elbo_{name}"], "step": self.step,
                             "weights": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
        self.history.append(record)
        return record

    def _batches(self) -> list[list[int]]:
        lengths = [len(t) for t in self.train_set.tokens]
        return bucketed_batches(lengths, self.cfg.tokens_per_batch, self.cfg.seed + self.epoch, self.rank, self.world)

    def train_step(self, tokens: list[list[int]]) -> float | None:
        """One optimizer step; returns the loss in nats/residue, or None when it was skipped."""
        x0, lengths = collate(tokens, self.alphabet.pad_id)
        x0, lengths = x0.to(self.device), lengths.to(self.device)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.cfg, self.progress())
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            nats = diffusion_loss(self.ddp, x0, lengths, self.schedule, self.alphabet.mask_id,
                                  generator=self.gen if self.device.type == "cpu" else None)
        loss = nats.sum() / lengths.sum()
        # Always backward, then test the (all-reduced) gradient: every DDP rank skips together.
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if not (torch.isfinite(grad_norm) and torch.isfinite(loss)):
            self.opt.zero_grad(set_to_none=True)
            return None
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            d = ema_decay_at(self.step, self.cfg.ema_decay)
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm, 1 - d)
        return loss.item()

    def progress(self) -> float:
        """Fraction of the budget used: steps of --max-steps or wall time of --minutes, whichever ends first.

        Under a time budget the LR decay follows the clock, so it ends on its floor even when the
        speed changes mid-run (a busy machine, a resume with a new budget).
        """
        fractions = []
        if self.cfg.max_steps:
            fractions.append((self.step - self.cfg.warmup_steps) / max(1, self.cfg.max_steps - self.cfg.warmup_steps))
        if self.cfg.minutes:
            fractions.append((self.seconds - self.warmup_seconds) / max(1.0, self.cfg.minutes * 60 - self.warmup_seconds))
        return max(fractions, default=0.0)

    def budget_used(self) -> float:
        """Share of the budget spent, 0–1: steps of --max-steps or time of --minutes, whichever is further."""
        used = []
        if self.cfg.max_steps:
            used.append(self.step / self.cfg.max_steps)
        if self.cfg.minutes:
            used.append(self.seconds / (self.cfg.minutes * 60))
        return min(1.0, max(used, default=0.0))

    def _should_stop(self, start: float, budget: float) -> bool:
        stop = bool((self.cfg.max_steps and self.step >= self.cfg.max_steps) or time.time() - start >= budget)
        if self.distributed:   # ranks' clocks differ: stop together or the others hang in all-reduce
            flag = torch.tensor([float(stop)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def run(self) -> Path:
        from tqdm.auto import tqdm

        # Progress against the budget (time or steps), so the bar has an end and an ETA either way.
        bar = tqdm(total=BAR_TOTAL, initial=round(BAR_TOTAL * self.budget_used()), disable=not self.is_main,
                   desc="train", dynamic_ncols=True,
                   bar_format="{desc}: {percentage:3.0f}% of the budget |{bar}| [{elapsed}<{remaining}{postfix}]")
        try:
            self._train_until_done(bar)
        finally:
            bar.close()
        self.save()
        return self.out

    def _train_until_done(self, bar) -> None:
        """The training loop; returns when a budget is spent or the validation ELBO stopped improving."""
        cfg = self.cfg
        budget = cfg.minutes * 60 if cfg.minutes else float("inf")
        start, last_save = time.time() - self.seconds, time.time()
        bad_in_row, tokens_window = 0, (time.time(), self.tokens_seen)
        while True:
            batches = self._batches()
            while self.batch_in_epoch < len(batches):
                if self._should_stop(start, budget):
                    self.seconds = time.time() - start
                    self.evaluate()
                    return
                tokens = [self.train_set.tokens[i] for i in batches[self.batch_in_epoch]]
                loss = self.train_step(tokens)
                self.batch_in_epoch += 1
                if loss is None:
                    bad_in_row += 1
                    warnings.warn(f"step {self.step}: non-finite loss or gradient, step skipped")
                    if bad_in_row >= cfg.max_bad_steps:
                        raise FloatingPointError(f"{bad_in_row} non-finite losses in a row at step {self.step}; "
                                                 "lower --lr or check the data")
                    continue
                bad_in_row = 0
                self.step += 1
                self.tokens_seen += sum(len(t) for t in tokens) * self.world
                self.seconds = time.time() - start
                if self.step == cfg.warmup_steps:
                    self.warmup_seconds = self.seconds
                if self.step % 10 == 0:
                    self.history.append({"step": self.step, "train_loss": loss, "lr": self.opt.param_groups[0]["lr"]})
                    now = time.time()
                    tok_s = (self.tokens_seen - tokens_window[1]) / max(1e-6, now - tokens_window[0])
                    tokens_window = (now, self.tokens_seen)
                    bar.set_postfix(step=self.step, loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                bar.update(round(BAR_TOTAL * self.budget_used()) - bar.n)
                if self.step % cfg.eval_every == 0:
                    rec = self.evaluate()
                    if self.is_main:
                        bar.write(f"step {self.step}: val ELBO raw {rec['val_elbo_raw']:.3f}  ema {rec['val_elbo_ema']:.3f}")
                    if cfg.patience and self.step - self.best["step"] >= cfg.patience * cfg.eval_every:
                        # every rank evaluates the same probe, so all stop at the same step
                        if self.is_main:
                            bar.write(f"early stop: no better validation ELBO since step {self.best['step']}")
                        return
                if time.time() - last_save >= cfg.checkpoint_minutes * 60:
                    self.save()
                    last_save = time.time()
            self.epoch += 1
            self.batch_in_epoch = 0


def train(cfg: TrainConfig) -> Path:
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        if trainer.distributed and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sedd.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FASTA file of training sequences")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--preset", default="small", choices=["tiny", "mini", "small", "base"])
    p.add_argument("--minutes", type=float, help="wall-clock budget")
    p.add_argument("--max-steps", type=int, help="step budget")
    p.add_argument("--resume", action="store_true", help=f"continue from OUT/{RESUME_NAME}")
    p.add_argument("--clusters", help="cluster<TAB>member TSV: validate on whole held-out clusters")
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--tokens-per-batch", type=int, default=TrainConfig.tokens_per_batch)
    p.add_argument("--dropout", type=float, default=TrainConfig.dropout)
    p.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    p.add_argument("--patience", type=int, default=TrainConfig.patience,
                   help="early stop after this many evaluations without improvement (0 = never)")
    p.add_argument("--checkpoint-minutes", type=float, default=TrainConfig.checkpoint_minutes)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cuda / mps / cpu (default: the best available)")
    p.add_argument("--alphabet", help="residue characters (default: the 20 amino acids)")
    a = p.parse_args(argv)
    if not a.minutes and not a.max_steps:
        p.error("give a budget: --minutes M and/or --max-steps N")
    alphabet = Alphabet(a.alphabet, mask_chars="_") if a.alphabet else PROTEIN
    cfg = TrainConfig(data=a.data, out=a.out, preset=a.preset, minutes=a.minutes, max_steps=a.max_steps,
                      resume=a.resume, clusters=a.clusters, lr=a.lr, tokens_per_batch=a.tokens_per_batch,
                      dropout=a.dropout, eval_every=a.eval_every, patience=a.patience, checkpoint_minutes=a.checkpoint_minutes,
                      seed=a.seed, device=a.device, alphabet=alphabet.to_dict())
    out = train(cfg)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
