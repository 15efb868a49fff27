"""SEDD started from the autoregressive baseline's weights vs SEDD from scratch, at equal total CPU time.

    python benchmarks/ar_init.py --data acyp.fasta --clusters acyp_clusters50.tsv --ar runs/ar15/ar \\
        --cpu-minutes 15 --out runs/ar-init [--samples 512] [--jobs 2] [--json result.json]

The autoregressive model learns far faster per CPU-second than SEDD (``benchmarks/ar_baseline.py``),
and the two networks differ only in the attention mask and a few embedding rows. Adapting a trained
left-to-right model into a diffusion model (Gong et al. 2024, "Scaling diffusion language models via
adaptation from autoregressive models") might therefore be a cheaper way to a good diffusion model
than training one from scratch. Two arms, the bundled recipe (``ablate_recipe.VARIANTS["combined"]``)
and the short-run settings (``ablate_recipe.SHORT_RUN``) in both, one torch thread each:

- ``from-ar``: ``sedd.train`` with ``init_from`` = the baseline ``--ar`` for ``--cpu-minutes``;
- ``scratch``: the same from a random start for ``--cpu-minutes`` + the baseline's own budget (read
  from its ``config.json``), so both arms have had the same CPU time in all.

Each is scored with its EMA weights: the ELBO on the whole validation split (``--t-samples``
times per sequence, seed 0) and the catalytic-motif rate of ``--samples`` unconditional samples
(``benchmarks/motif_rate.py``: 128-step τ-leaping, the same random numbers for both arms, paired
difference). ``--jobs 2`` trains the arms side by side; the budget is CPU time, so they stay equal.
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))           # ablate_recipe, ar_baseline, motif_rate
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))    # run from a checkout without installing

from ablate_recipe import VARIANTS, run_summary, short_run_config, train_quietly  # noqa: E402
from ar_baseline import sedd_elbo  # noqa: E402
from motif_rate import measure  # noqa: E402
from sedd import checkpoint as ckpt  # noqa: E402
from sedd.cli import OUTPUT_FILE, POSITIVE, TWO_OR_MORE, script  # noqa: E402
from sedd.model import PRESETS, preset  # noqa: E402

RECIPE = VARIANTS["combined"][1]


def baseline_cpu_minutes(path: str, preset_name: str) -> float:
    """The CPU budget an autoregressive baseline was trained with (``ar_baseline.py`` uses the CPU clock),
    once it is known to be the network this script's arms train: ``preset_name`` with the combined
    recipe's MLP. Another one would be refused by ``--init-from`` only inside the training process, after
    the other arm had trained for its whole budget."""
    baseline = ckpt.load(path, causal=True)
    config = baseline.meta.get("training", {}).get("config", {})
    if config.get("clock") != "cpu" or not config.get("minutes"):
        raise ValueError(f"{path} was not trained on a CPU-time budget (clock {config.get('clock')!r}, "
                         f"minutes {config.get('minutes')!r}); train it with benchmarks/ar_baseline.py")
    net, want = baseline.model.config, preset(preset_name, **RECIPE["model_overrides"])
    differ = [f"{k} {getattr(net, k)!r} there, {getattr(want, k)!r} here"
              for k in ("d_model", "n_layers", "n_heads", "d_ff", "mlp") if getattr(net, k) != getattr(want, k)]
    if differ:
        raise ValueError(f"{path} is not the network these arms train ({'; '.join(differ)}): train the baseline "
                         f"with benchmarks/ar_baseline.py --recipe combined --preset {preset_name}")
    return float(config["minutes"])


def train_arm(name: str, out: str, data: str, clusters: str | None, preset: str, minutes: float,
              init_from: str | None, t_samples: int) -> dict:
    """One arm, in its own process: train, then the ELBO of the EMA weights on the whole split."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = short_run_config(data, clusters, Path(out) / name, preset, minutes, **RECIPE, init_from=init_from)
    trainer = train_quietly(cfg)
    elbo = sedd_elbo(trainer.ema, trainer, t_samples)
    return {"arm": name, "init_from": init_from, "cpu_minutes_budget": minutes, **run_summary(trainer),
            "checkpoint": str(Path(out) / name), "val_sequences": len(trainer.val_set),
            "elbo_nats_per_residue": elbo["elbo_nats_per_residue"], "elbo_stderr": elbo["elbo_stderr"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FASTA file")
    p.add_argument("--clusters", help="cluster<TAB>member TSV: validate on whole held-out clusters")
    p.add_argument("--ar", required=True, help="the autoregressive baseline (ar_baseline.py's OUT/ar)")
    p.add_argument("--out", required=True, help="directory for the two runs")
    p.add_argument("--preset", default="mini", choices=list(PRESETS), help="must be the baseline's")
    p.add_argument("--cpu-minutes", type=POSITIVE, default=15.0, help="diffusion training after the baseline, CPU minutes")
    p.add_argument("--t-samples", type=TWO_OR_MORE, default=4, help="times per validation sequence for the ELBO")
    p.add_argument("--samples", type=TWO_OR_MORE, default=512, help="unconditional samples per arm for the motif rate")
    p.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="train the two arms side by side")
    p.add_argument("--json", type=OUTPUT_FILE, help="write the results here")
    a = p.parse_args(argv)
    try:
        ar_minutes = baseline_cpu_minutes(a.ar, a.preset)
    except ValueError as e:
        p.error(str(e))

    arms = {"from-ar": (a.cpu_minutes, a.ar), "scratch": (a.cpu_minutes + ar_minutes, None)}
    common = (a.out, a.data, a.clusters, a.preset)
    print(f"training {', '.join(f'{n} ({m:g} CPU-min)' for n, (m, _) in arms.items())}", file=sys.stderr)
    if a.jobs == 1:
        rows = {n: train_arm(n, *common, m, init, a.t_samples) for n, (m, init) in arms.items()}
    else:
        with ProcessPoolExecutor(a.jobs, mp_context=get_context("spawn")) as pool:
            futures = {n: pool.submit(train_arm, n, *common, m, init, a.t_samples) for n, (m, init) in arms.items()}
            rows = {n: f.result() for n, f in futures.items()}
    motif = measure([(n, rows[n]["checkpoint"]) for n in arms], a.samples, seed=0)
    for m in motif:
        rows[m["name"]]["motif"] = {k: v for k, v in m.items() if k not in ("name", "checkpoint")}
    result = {"preset": a.preset, "recipe": "combined", "ar": a.ar, "ar_cpu_minutes": ar_minutes,
              "cpu_minutes": a.cpu_minutes, "t_samples": a.t_samples, "samples": a.samples,
              "command": " ".join(sys.argv), "arms": list(rows.values())}
    if a.json:
        ckpt.atomic_write_text(Path(a.json), json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


def table(r: dict) -> str:
    head = [f"{r['preset']}, recipe {r['recipe']}; the baseline `{r['ar']}` trained for {r['ar_cpu_minutes']:g} CPU-min; "
            f"ELBO on {r['arms'][0]['val_sequences']:,} held-out sequences, motif in {r['samples']:,} samples",
            "| arm | CPU-min, in all | diffusion steps | ELBO, nats/residue | motif rate | vs from-ar (paired) |",
            "|---|---:|---:|---:|---:|---:|"]
    body = []
    for arm in r["arms"]:
        m, total = arm["motif"], r["ar_cpu_minutes"] + r["cpu_minutes"]
        vs = f"{m['vs_first']['difference']:+.1%} ± {m['vs_first']['stderr']:.1%}" if "vs_first" in m else "—"
        body.append(f"| {arm['arm']} | {total:g} | {arm['steps']:,} | {arm['elbo_nats_per_residue']:.3f} ± "
                    f"{arm['elbo_stderr']:.3f} | {m['rate']:.1%} ± {m['stderr']:.1%} | {vs} |")
    return "\n".join(head + body)


if __name__ == "__main__":
    sys.exit(script(main))
