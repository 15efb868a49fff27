#!/usr/bin/env bash
# Is the bundled model's motif rate bound by its training compute or by its size? On one GPU, train
# models within the bundled checkpoint's 25 MB with the bundled recipe, at the CPU run's batch and at
# larger ones, side by side for the same minutes (small models leave a GPU mostly idle, so the arms run
# as concurrent processes), then measure each as checkpoints/acyp was measured: held-out ELBO and
# infill by sedd.evaluate on the same cluster split, and the motif rate of 2,048 unconditional samples
# at 128 τ-leaping steps by benchmarks/motif_rate.py, paired with checkpoints/acyp (and acyp-base).
#
#   bash benchmarks/gpu_budget_probe.sh OUT [MINUTES]       # MINUTES of training per arm [5.5]
#
# Writes OUT/budget_probe.json (every arm's training record, evaluation and motif rate, or what failed)
# and the logs; exits 1 when an arm failed. It takes about MINUTES + 5 minutes (the evaluations' infill
# runs share the GPU for 3-4 of them). What a call finished is not done again by the same command: an
# arm trained to the end leaves OUT/trained-ARM, an evaluated one OUT/evaluate-ARM.json, and
# OUT/motif_rate.json is kept as long as no arm is trained again (new weights: their old results go).
# So a call cut short is finished by running it again (on a borrowed machine, whose $OUT starts empty,
# keep OUT under runs/ and copy OUT/budget_probe.json into $OUT at the end).
# Environment: DATA [runs/gpu-data/acyp.fasta], CLUSTERS [runs/gpu-data/acyp_clusters50.tsv],
# DEVICE [cuda], ARMS ["mini:8192 mini:32768 mini:65536 small:32768": preset:tokens-per-batch],
# SAMPLES [2048], MAX_SEQS [all; a subset only for a dry run], RUNS [runs/budget-probe], COMPARE
# ["acyp=checkpoints/acyp acyp-base=checkpoints/acyp-base": name=checkpoint pairs sampled first; the
# motif rates are paired with the first]. Relative paths are from the repository's root.
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
for arm in "${arms[@]}"; do
    [[ "$arm" =~ ^[a-z]+:[0-9]+$ ]] || { echo "gpu_budget_probe: arm '$arm' is not PRESET:TOKENS_PER_BATCH (mini:8192)" >&2; exit 2; }
done
for f in "$data" "$clusters"; do
    [[ -f "$f" ]] || { echo "gpu_budget_probe: $f not found (set DATA and CLUSTERS)" >&2; exit 2; }
done
export PYTHONUNBUFFERED=1
status=0
trained() { [[ -f "$out/trained-$1" ]]; }
evaluated() { [[ -s "$out/evaluate-$1.json" ]]; }

# 1. train every arm at once, the recipe of checkpoints/acyp (its config.json), the same split (seed 0)
names=() pids=()
for arm in "${arms[@]}"; do
    preset="${arm%%:*}" tokens="${arm##*:}" name="${arm/:/-}"
    trained "$name" && continue
    rm -rf "${runs:?}/$name" "$out/evaluate-$name.json" "$out/motif_rate.json"
    "$PYTHON" -m sedd.train --data "$data" --clusters "$clusters" --out "$runs/$name" --preset "$preset" \
        --minutes "$minutes" --device "$device" --tokens-per-batch "$tokens" --dropout 0 --mlp swiglu \
        --time-sampling importance > "$out/train-$name.log" 2>&1 &
    names+=("$name") pids+=($!)
done
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
        touch "$out/trained-${names[$i]}"
    else
        status=1; echo "gpu_budget_probe: training ${names[$i]} failed (its log: $out/train-${names[$i]}.log)" >&2
    fi
done
echo "gpu_budget_probe: ${#pids[@]} arm(s) trained for $minutes minutes in this call"

# 2. ELBO and infill of each, as the card measures them (no samples here: the motif rate is step 3)
names=() pids=()
for arm in "${arms[@]}"; do
    name="${arm/:/-}"
    if ! trained "$name" || evaluated "$name"; then continue; fi
    "$PYTHON" -m sedd.evaluate --checkpoint "$runs/$name" --data "$data" --clusters "$clusters" --val-fraction 0.05 \
        --split-seed 0 ${MAX_SEQS:+--max-seqs "$MAX_SEQS"} --device "$device" --json \
        > "$out/evaluate-$name.json" 2> "$out/evaluate-$name.log" &
    names+=("$name") pids+=($!)
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { status=1; rm -f "$out/evaluate-${names[$i]}.json"
                            echo "gpu_budget_probe: evaluating ${names[$i]} failed (its log: $out/evaluate-${names[$i]}.log)" >&2; }
done

# 3. motif rate of every trained arm, paired with the shipped models on the same seeds
if [[ ! -s "$out/motif_rate.json" ]]; then
    read -r -a models <<< "${COMPARE-acyp=checkpoints/acyp acyp-base=checkpoints/acyp-base}"
    for arm in "${arms[@]}"; do
        name="${arm/:/-}"
        if trained "$name"; then models+=("$name=$runs/$name"); fi
    done
    "$PYTHON" benchmarks/motif_rate.py "${models[@]}" --samples "${SAMPLES:-2048}" --device "$device" \
        --json "$out/motif_rate.json" 2>&1 | tee "$out/motif_rate.log" || { status=1; rm -f "$out/motif_rate.json"; }
fi

# 4. one record of it all
"$PYTHON" - "$out" "$runs" "$minutes" "${arms[@]}" <<'PY' || status=1
import json, sys
from pathlib import Path

out, runs, minutes, arms = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
motif_file = out / "motif_rate.json"
motif = json.loads(motif_file.read_text()) if motif_file.is_file() else None
rates = {row["name"]: row for row in motif["rows"]} if motif else {}
record = {"what": "models within the bundled checkpoint's 25 MB trained side by side on one GPU with the bundled recipe",
          "minutes": minutes, "motif": motif, "arms": []}
for arm in arms:
    name = arm.replace(":", "-")
    evaluation = out / f"evaluate-{name}.json"
    error = ("training failed" if not (out / f"trained-{name}").is_file() else
             "evaluation failed" if not evaluation.is_file() else
             "no motif rate" if name not in rates else None)
    if error:
        record["arms"].append({"arm": name, "error": f"{error} (see the logs in {out})"})
        continue
    training = json.loads((runs / name / "config.json").read_text())["training"]
    evaluation = json.loads(evaluation.read_text())
    record["arms"].append({"arm": name, "preset": training["preset"], "parameters": training["parameters"],
                           "tokens_per_batch": training["config"]["tokens_per_batch"], "steps": training["steps"],
                           "residues": training["tokens_seen"], "wall_seconds": training["wall_seconds"],
                           "elbo": evaluation["elbo_nats_per_residue"], "elbo_stderr": evaluation["elbo_stderr"],
                           "infill_recovery": evaluation["infill_recovery"], "motif": rates[name]})
part = out / "budget_probe.json.part"           # written whole, then renamed: never half a record
part.write_text(json.dumps(record, indent=1))
part.replace(out / "budget_probe.json")
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
