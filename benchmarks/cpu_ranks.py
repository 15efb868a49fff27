"""Training on a multi-core CPU: one process with every thread, or one torchrun rank per core?

    python benchmarks/cpu_ranks.py --data data/acyp.fasta --minutes 2 --json checkpoints/acyp/eval/cpu_ranks.json

Both are real ``sedd.train`` runs of the bundled model's recipe (``--preset mini --dropout 0 --mlp
swiglu --time-sampling importance``) on the same data, for the same wall-clock budget, one after the
other on an otherwise idle machine: first one process with ``--cores`` torch threads, then ``--cores``
ranks of one thread each (``torchrun``, gloo), each rank taking ``--tokens-per-batch / cores``
residues, so an optimizer step sees the same global batch either way. Residues per second is the
run's own ``tokens_seen / wall_seconds`` (its training loop alone: start-up and the final validation
are not on that clock; no validation runs inside the budget).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # run from a checkout without installing

from sedd.checkpoint import CONFIG_NAME, atomic_write_text  # noqa: E402
from sedd.cli import BATCH_TOKENS, OUTPUT_FILE, POSITIVE, script  # noqa: E402
from sedd.model import PRESETS  # noqa: E402
from sedd.train import TrainConfig  # noqa: E402

RECIPE = ["--dropout", "0", "--mlp", "swiglu", "--time-sampling", "importance"]


def train(data: str, out: Path, *, preset: str, minutes: float, ranks: int, threads: int, tokens_per_batch: int) -> dict:
    """One ``sedd.train`` run; its summary with the layout and residues per second."""
    # absolute: the runs start in the checkout's root, not where the script was called from
    args = ["-m", "sedd.train", "--data", str(Path(data).resolve()), "--out", str(out.resolve()), "--overwrite",
            "--preset", preset, "--minutes", str(minutes), "--tokens-per-batch", str(tokens_per_batch),
            "--eval-every", str(10**9), "--device", "cpu", *RECIPE]
    launcher = [sys.executable] if ranks == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    if subprocess.run(launcher + args, env=env, cwd=ROOT).returncode:     # its own error is printed above
        raise ValueError(f"the {ranks}-process training run failed; {out.name} has no result")
    summary = json.loads((out / CONFIG_NAME).read_text())["training"]
    return {"ranks": summary["world_size"], "threads_per_rank": threads, "tokens_per_batch_per_rank": tokens_per_batch,
            "global_tokens_per_batch": tokens_per_batch * ranks, "steps": summary["steps"],
            "tokens_seen": summary["tokens_seen"], "wall_seconds": summary["wall_seconds"],
            "tokens_per_second": summary["tokens_seen"] / summary["wall_seconds"]}


def table(rows: list[dict]) -> str:
    base = rows[0]["tokens_per_second"]
    head = ("| layout | residues per rank-batch | steps | residues seen | s | residues/s | vs one process |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    body = [f"| {r['ranks']} × {r['threads_per_rank']} thread{'s' if r['threads_per_rank'] > 1 else ''} | "
            f"{r['tokens_per_batch_per_rank']:,} | {r['steps']} | {r['tokens_seen']:,} | {r['wall_seconds']:.0f} | "
            f"{r['tokens_per_second']:,.0f} | {r['tokens_per_second'] / base:.2f}× |" for r in rows]
    return "\n".join([head, *body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FASTA to train on")
    p.add_argument("--preset", default="mini", choices=list(PRESETS))
    p.add_argument("--minutes", type=POSITIVE, default=2.0, help="wall-clock budget of each run")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="threads of the one process; ranks of the other")
    p.add_argument("--tokens-per-batch", type=BATCH_TOKENS, default=TrainConfig.tokens_per_batch, help="global batch, residues")
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    if a.cores < 2 or a.tokens_per_batch % a.cores:
        p.error(f"--cores must be at least 2 and divide --tokens-per-batch; got {a.cores} and {a.tokens_per_batch}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [train(a.data, Path(tmp) / f"ranks{ranks}", preset=a.preset, minutes=a.minutes, ranks=ranks,
                      threads=threads, tokens_per_batch=a.tokens_per_batch // ranks)
                for ranks, threads in ((1, a.cores), (a.cores, 1))]
    print(table(rows))
    if a.json:
        atomic_write_text(Path(a.json), json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
