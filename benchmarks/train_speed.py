"""Training throughput: residues (tokens) per second of the real training step, per model preset.

    python benchmarks/train_speed.py                       # small, mini, tiny; ~10 s each on a CPU
    python benchmarks/train_speed.py --presets small --seconds 60 --threads 2
    python benchmarks/train_speed.py --device cuda --presets small,base --json figures.json
    python benchmarks/train_speed.py --presets mini --recipe combined --compile both --threads 2
    python benchmarks/train_speed.py --presets mini --recipe combined --tokens-per-batch 2048,8192 --threads 2

Each preset gets a ``sedd.train.Trainer`` (AdamW, warm-up LR, grad clip, EMA update — exactly
``Trainer.train_step``) built on a throw-away synthetic FASTA, then is fed synthetic batches shaped
like the bucketed ACYP batches: a longest length L ~ N(97, 8²) clipped to 64–127 (ACYP lengths are
64–127, median 92, 10–90 % range 89–101), the others within 8 residues below it, and
⌊tokens_per_batch / L⌋ sequences (≈ 85 × 93 at 8,192 tokens; padding is not counted). The first ``--warmup``
steps (allocator, autograd graph caches) are not timed. tokens/s counts real residues, not padding,
as ``train.py``'s own ``tok_s`` does:
    tokens/s = Σ_timed steps Σ_seq length / wall seconds of the timed steps.
Numbers are only comparable on an otherwise idle machine; say so when they were not.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing

from sedd import checkpoint  # noqa: E402
from sedd.alphabet import PROTEIN  # noqa: E402
from sedd.cli import BATCH_TOKENS, COUNT, COUNT_OR_ZERO, OUTPUT_FILE, POSITIVE, PRESET_LIST, script  # noqa: E402
from sedd.data import write_fasta  # noqa: E402
from sedd.train import Trainer, TrainConfig  # noqa: E402


def synthetic_batch(rng: random.Random, tokens_per_batch: int, lengths: tuple[int, int] = (64, 127)) -> list[list[int]]:
    """One length-bucketed batch of random residue ids: ⌊tokens_per_batch / L⌋ sequences of length L−8…L."""
    longest = min(lengths[1], max(lengths[0], round(rng.gauss(97, 8))))
    count = max(1, tokens_per_batch // longest)
    return [[rng.randrange(PROTEIN.size) for _ in range(rng.randint(max(lengths[0], longest - 8), longest))]
            for _ in range(count)]


# The training options of each --recipe: "default" is TrainConfig's own, "combined" the bundled model's.
RECIPES = {"default": {},
           "combined": {"dropout": 0.0, "time_sampling": "importance", "model_overrides": {"mlp": "swiglu"}}}


def make_trainer(preset: str, workdir: Path, tokens_per_batch: int, device: str, recipe: str = "default",
                 compile: bool = False) -> Trainer:
    """A real Trainer on a small synthetic FASTA (it only needs one to build its splits)."""
    fasta = workdir / "synthetic.fasta"
    rng = random.Random(0)
    write_fasta(fasta, ["".join(rng.choice(PROTEIN.residues) for _ in range(100)) for _ in range(40)])
    cfg = TrainConfig(data=str(fasta), out=str(workdir / preset), preset=preset, device=device,
                      tokens_per_batch=tokens_per_batch, max_steps=10**9, compile=compile, **RECIPES[recipe])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the by-sequence split warning is irrelevant here
        return Trainer(cfg)


def measure(preset: str, *, seconds: float, warmup: int, max_steps: int, tokens_per_batch: int, workdir: Path,
            device: str = "cpu", recipe: str = "default", compile: bool = False) -> dict:
    """Time ``Trainer.train_step`` on synthetic batches until ``seconds`` or ``max_steps`` (warm-up excluded).

    ``train_step`` ends with ``loss.item()``, which waits for the device, so wall time is honest on a GPU.
    With ``compile`` the warm-up steps also pay for the compilations (``dynamic=True``: batch shapes vary),
    which are reported as ``warmup_seconds`` and not counted in tokens/s (a rerun compiles faster: inductor
    keeps compiled code in an on-disk cache).
    """
    trainer = make_trainer(preset, workdir, tokens_per_batch, device, recipe, compile)
    start = time.perf_counter()
    rng = random.Random(1)
    for _ in range(warmup):
        trainer.train_step(synthetic_batch(rng, tokens_per_batch))
    warmup_seconds = time.perf_counter() - start
    steps, tokens, sequences, start = 0, 0, 0, time.perf_counter()
    while steps < max_steps and time.perf_counter() - start < seconds:
        batch = synthetic_batch(rng, tokens_per_batch)
        if trainer.train_step(batch) is None:
            raise FloatingPointError(f"{preset}: a non-finite step in the benchmark")
        steps, tokens, sequences = steps + 1, tokens + sum(map(len, batch)), sequences + len(batch)
    elapsed = time.perf_counter() - start
    return {"preset": preset, "recipe": recipe, "compile": compile, "tokens_per_batch": tokens_per_batch,
            "warmup_seconds": warmup_seconds,
            "parameters": trainer.model.num_parameters(), "device": str(trainer.device), "steps": steps,
            "sequences_per_step": sequences / steps, "tokens_per_step": tokens / steps,
            "seconds_per_step": elapsed / steps, "tokens_per_second": tokens / elapsed}


def table(rows: list[dict]) -> str:
    head = ("| preset | recipe | compile | batch tokens | parameters | warm-up s | timed steps | seqs/step | tokens/step "
            "| s/step | tokens/s |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    body = [f"| {r['preset']} | {r['recipe']} | {'yes' if r['compile'] else 'no'} | {r['tokens_per_batch']:,} | "
            f"{r['parameters'] / 1e6:.2f} M | "
            f"{r['warmup_seconds']:.1f} | {r['steps']} | {r['sequences_per_step']:.0f} | "
            f"{r['tokens_per_step']:,.0f} | {r['seconds_per_step']:.2f} | {r['tokens_per_second']:,.0f} |" for r in rows]
    return "\n".join([head, *body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", type=PRESET_LIST, default="small,mini,tiny", help="comma-separated model presets")
    p.add_argument("--seconds", type=POSITIVE, default=10.0, help="timed wall-clock seconds per preset")
    p.add_argument("--warmup", type=COUNT_OR_ZERO, default=2, help="untimed steps first")
    p.add_argument("--max-steps", type=COUNT, default=200, help="timed steps at most per preset")
    p.add_argument("--tokens-per-batch", default=str(TrainConfig.tokens_per_batch),
                   help="batch size in residues; several, comma-separated, are measured one after another")
    p.add_argument("--threads", type=COUNT, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu / cuda / mps (on cuda the step runs under bf16 autocast)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                   help="training options: TrainConfig's defaults, or the bundled model's (dropout 0, SwiGLU, importance t)")
    p.add_argument("--compile", choices=("off", "on", "both"), default="off",
                   help="torch.compile the training step; 'both' measures each preset without, then with it")
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    try:                                  # now, not after the first presets have been measured
        batches = [BATCH_TOKENS(batch.strip()) for batch in a.tokens_per_batch.split(",")]
    except argparse.ArgumentTypeError as e:
        p.error(f"argument --tokens-per-batch: {e}")
    try:
        checkpoint.check_device(a.device)  # a missing GPU in our words, not torch's AssertionError
    except ValueError as e:
        p.error(f"argument --device: {e}")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    where = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"{a.device}, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, {a.warmup} warm-up steps excluded", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        compiles = {"off": [False], "on": [True], "both": [False, True]}[a.compile]
        rows = [measure(name, seconds=a.seconds, warmup=a.warmup, max_steps=a.max_steps,
                        tokens_per_batch=batch, workdir=Path(tmp), device=a.device,
                        recipe=a.recipe, compile=compiled)
                for name in a.presets for batch in batches for compiled in compiles]
    print(table(rows))
    if a.json:
        checkpoint.atomic_write_text(Path(a.json), json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
