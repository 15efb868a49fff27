#!/usr/bin/env bash
# Is the bundled model's motif rate bound by its training compute or by its size? On one GPU, train
# models that fit the bundled checkpoint's 25 MB with the bundled recipe, at the CPU run's batch and at
# larger ones, side by side for the same minutes (small models leave a GPU mostly idle, so the arms run
# as concurrent processes), then measure each as checkpoints/acyp was measured: held-out ELBO and
# infill by sedd.evaluate on the same cluster split, and the motif rate of 2,048 unconditional samples
# at 128 τ-leaping steps by benchmarks/motif_rate.py, paired with checkpoints/acyp (and acyp-base).
#
#   bash benchmarks/gpu_budget_probe.sh OUT [MINUTES]       # MINUTES of training per arm [5.5]
#
# Writes OUT/budget_probe.json (every arm's training record, evaluation and motif rate) and the logs.
# It takes about MINUTES + 5 minutes (the four evaluations' infill runs share the GPU for 3-4 of them).
# A stage whose results are already in OUT is not run again: an arm with OUT/evaluate-ARM.json is
# neither trained nor evaluated, and OUT/motif_rate.json is kept. So a call cut short is finished by
# the same command (on a borrowed machine, whose $OUT starts empty, keep OUT under runs/ and copy
# OUT/budget_probe.json into $OUT at the end).
# Environment: DATA [runs/gpu-data/acyp.fasta], CLUSTERS [runs/gpu-data/acyp_clusters50.tsv],
# DEVICE [cuda], ARMS ["mini:8192 mini:32768 mini:65536 small:32768": preset:tokens-per-batch],
# SAMPLES [2048], MAX_SEQS [all; a subset only for a dry run], RUNS [runs/budget-probe], COMPARE
# ["acyp=checkpoints/acyp acyp-base=checkpoints/acyp-base": name=checkpoint pairs sampled first; the
# motif rates are paired with the first].
# A dry run on a CPU:
#   DEVICE=cpu ARMS="tiny:2048 tiny:4096" COMPARE=acyp=checkpoints/acyp SAMPLES=16 MAX_SEQS=32 \
#       bash benchmarks/gpu_budget_probe.sh runs/dry-probe 0.2
set -uo pipefail
mkdir -p "${1:?usage: gpu_budget_probe.sh OUT [MINUTES]}" && out="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
minutes="${2:-5.5}"
data="${DATA:-runs/gpu-data/acyp.fasta}"
clusters="${CLUSTERS:-runs/gpu-data/acyp_clusters50.tsv}"
device="${DEVICE:-cuda}"
runs="${RUNS:-runs/budget-probe}"
read -r -a arms <<< "${ARMS:-mini:8192 mini:32768 mini:65536 small:32768}"
for f in "$data" "$clusters"; do
    [[ -f "$f" ]] || { echo "gpu_budget_probe: $f not found (set DATA and CLUSTERS)" >&2; exit 2; }
done
export PYTHONUNBUFFERED=1

# 1. train every arm at once, the recipe of checkpoints/acyp (its config.json), the same split (seed 0)
evaluated() { [[ -s "$out/evaluate-$1.json" ]]; }     # trained and evaluated by an earlier call
pids=()
for arm in "${arms[@]}"; do
    preset="${arm%%:*}" tokens="${arm##*:}" name="${arm/:/-}"
    evaluated "$name" && continue
    "$PYTHON" -m sedd.train --data "$data" --clusters "$clusters" --out "$runs/$name" --overwrite --preset "$preset" \
        --minutes "$minutes" --device "$device" --tokens-per-batch "$tokens" --dropout 0 --mlp swiglu \
        --time-sampling importance > "$out/train-$name.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "gpu_budget_probe: trained ${arms[*]} for $minutes minutes each, or in an earlier call (status $status)"

# 2. ELBO and infill of each, as the card measures them (no samples here: the motif rate is step 3)
pids=()
for arm in "${arms[@]}"; do
    name="${arm/:/-}"
    if evaluated "$name" || [[ ! -f "$runs/$name/config.json" ]]; then continue; fi
    "$PYTHON" -m sedd.evaluate --checkpoint "$runs/$name" --data "$data" --clusters "$clusters" --val-fraction 0.05 \
        --split-seed 0 ${MAX_SEQS:+--max-seqs "$MAX_SEQS"} --device "$device" --json \
        > "$out/evaluate-$name.json" 2> "$out/evaluate-$name.log" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

# 3. motif rate, paired with the shipped models on the same seeds
if [[ ! -s "$out/motif_rate.json" ]]; then
    read -r -a models <<< "${COMPARE-acyp=checkpoints/acyp acyp-base=checkpoints/acyp-base}"
    for arm in "${arms[@]}"; do
        name="${arm/:/-}"
        [[ ! -f "$runs/$name/config.json" ]] || models+=("$name=$runs/$name")
    done
    "$PYTHON" benchmarks/motif_rate.py "${models[@]}" --samples "${SAMPLES:-2048}" --device "$device" \
        --json "$out/motif_rate.json" 2>&1 | tee "$out/motif_rate.log" || status=1
fi

# 4. one record of it all
"$PYTHON" - "$out" "$runs" "$minutes" "${arms[@]}" <<'PY' || status=1
import json, sys
from pathlib import Path

out, runs, minutes, arms = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
motif = json.loads((out / "motif_rate.json").read_text())
rates = {row["name"]: row for row in motif["rows"]}
record = {"what": "models of the bundled size trained on one GPU with the bundled recipe, side by side",
          "minutes": minutes, "motif": motif, "arms": []}
for arm in arms:
    name = arm.replace(":", "-")
    config = runs / name / "config.json"
    if not config.is_file():
        record["arms"].append({"arm": name, "error": "training wrote no checkpoint"})
        continue
    training = json.loads(config.read_text())["training"]
    evaluation = json.loads((out / f"evaluate-{name}.json").read_text())
    record["arms"].append({"arm": name, "preset": training["preset"], "parameters": training["parameters"],
                           "tokens_per_batch": training["config"]["tokens_per_batch"], "steps": training["steps"],
                           "residues": training["tokens_seen"], "wall_seconds": training["wall_seconds"],
                           "elbo": evaluation["elbo_nats_per_residue"], "elbo_stderr": evaluation["elbo_stderr"],
                           "infill_recovery": evaluation["infill_recovery"], "motif": rates.get(name)})
(out / "budget_probe.json").write_text(json.dumps(record, indent=1))
for a in record["arms"]:
    if "error" in a:
        print(f"{a['arm']:14s} {a['error']}")
        continue
    print(f"{a['arm']:14s} {a['parameters'] / 1e6:5.2f} M  {a['steps']:6d} steps  {a['residues'] / 1e6:7.1f} M residues  "
          f"ELBO {a['elbo']:.3f} ± {a['elbo_stderr']:.3f}  infill {a['infill_recovery']:.3f}  "
          f"motif {a['motif']['rate']:.3f} ± {a['motif']['stderr']:.3f}")
arms_named = {a["arm"] for a in record["arms"]}
for name, row in rates.items():
    if name not in arms_named:
        print(f"{name:14s} motif {row['rate']:.3f} ± {row['stderr']:.3f}")
PY
exit "$status"
