#!/usr/bin/env bash
# The GPU model: train the `base` preset (25 M parameters, bf16 autocast) with the bundled model's
# recipe for a few minutes, store it as bf16 safetensors, evaluate it on the same cluster-held-out
# split as checkpoints/acyp, and keep it as checkpoints/acyp-base only if its ELBO is better (a model
# already there is set aside meanwhile and put back if the new one loses or a step fails).
#
#   bash benchmarks/gpu_base_model.sh [MINUTES]          # default 8; run benchmarks/gpu_check.sh first
#
# Environment (defaults in brackets): DATA [data/acyp.fasta], CLUSTERS [data/acyp_clusters50.tsv],
# DEVICE [cuda], PRESET [base], TOKENS_PER_BATCH [32768: a 25 M model leaves most of a GPU idle at
# the CPU recipe's 8192], SAMPLES [256], DEST [checkpoints/acyp-base], RUN [runs/acyp-base], HMM
# [checkpoints/acyp/family.hmm; empty: no family-HMM metric, for data of another family] and
# MAX_SEQS [all] (evaluate a subset: only for a dry run, the comparison needs the whole split).
# Where data/ is a link that does not travel to the GPU machine, copy the two files into the
# checkout first (mkdir -p runs/gpu-data && cp -L data/acyp.fasta data/acyp_clusters50.tsv runs/gpu-data/)
# and point DATA and CLUSTERS there. A machine without biotite or pyhmmer takes them from
# .gpu-site.tar.gz (benchmarks/gpu_packages.sh, benchmarks/gpu_env.sh).
# A dry run of the whole pipeline on a CPU, which will not beat the bundled model and says so:
#   DEVICE=cpu PRESET=tiny DEST=runs/dry-base RUN=runs/dry-run SAMPLES=16 MAX_SEQS=32 \
#       bash benchmarks/gpu_base_model.sh 0.3
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
minutes="${1:-8}"
data="${DATA:-data/acyp.fasta}"
clusters="${CLUSTERS:-data/acyp_clusters50.tsv}"
device="${DEVICE:-cuda}"
preset="${PRESET:-base}"
dest="${DEST:-checkpoints/acyp-base}"
hmm="${HMM-checkpoints/acyp/family.hmm}"
run="${RUN:-runs/acyp-base}"
for f in "$data" "$clusters"; do
    [[ -f "$f" ]] || { echo "gpu_base_model: $f not found (set DATA and CLUSTERS)" >&2; exit 2; }
done
[[ "$device" != cuda* ]] || "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "gpu_base_model: torch sees no CUDA GPU (DEVICE=cpu for a dry run)")'
start=$SECONDS

# 1. train: the recipe of checkpoints/acyp (its config.json records it), on the same split (seed 0)
"$PYTHON" -m sedd.train --data "$data" --clusters "$clusters" --out "$run" --overwrite --preset "$preset" --minutes "$minutes" \
    --device "$device" --tokens-per-batch "${TOKENS_PER_BATCH:-32768}" --dropout 0 --mlp swiglu --time-sampling importance

# 2. what ships is what is evaluated: bf16 weights (load() serves them in float32 or on the GPU as asked).
#    A model already at DEST is set aside, and put back unless the new one wins.
previous="$run/replaced-$(basename "$dest")"
rm -rf "$previous"
[[ ! -e "$dest" ]] || mv "$dest" "$previous"
trap '[[ ! -e "$previous" ]] || { rm -rf "$dest"; mv "$previous" "$dest"; echo "gpu_base_model: failed; $dest put back" >&2; }' ERR
"$PYTHON" -c 'import sys; from sedd.checkpoint import convert; convert(sys.argv[1], sys.argv[2], "bfloat16")' "$run" "$dest"
[[ -z "$hmm" ]] || cp "$hmm" "$dest/family.hmm"

# 3. evaluate exactly as the bundled model's card does, on the device
"$PYTHON" -m sedd.evaluate --checkpoint "$dest" --data "$data" --clusters "$clusters" --val-fraction 0.05 --split-seed 0 \
    --samples "${SAMPLES:-256}" ${MAX_SEQS:+--max-seqs "$MAX_SEQS"} --report "$dest/eval/report.md" --update-config --device "$device" --json > "$run/evaluation.json"

# 4. the card, from config.json; then ship only a better model
hardware="$("$PYTHON" -c 'import torch, sys; d = sys.argv[1]; print(torch.cuda.get_device_name(0) if d.startswith("cuda") else "CPU (a dry run)")' "$device")"
card() {    # the card of the model in $1, written where it lies
    "$PYTHON" benchmarks/model_card.py "$1" --compare checkpoints/acyp --hardware "$hardware" \
        --reproduce "bash benchmarks/gpu_base_model.sh $minutes   # TOKENS_PER_BATCH=${TOKENS_PER_BATCH:-32768}"
}
card "$dest"
trap - ERR
if "$PYTHON" - "$dest" "$((SECONDS - start))" <<'PY'
import json, sys
from pathlib import Path

dest, seconds = Path(sys.argv[1]), int(sys.argv[2])
new = json.loads((dest / "config.json").read_text())["evaluation"]
old = json.loads(Path("checkpoints/acyp/config.json").read_text())["evaluation"]
for label, block in (("ELBO", lambda e: e["elbo_nats_per_residue"]), ("infill recovery", lambda e: e["infill_recovery"]),
                     ("motif rate", lambda e: e["samples"]["motif_rate"])):
    print(f"{label:16s} acyp {block(old):.4f}   {dest.name} {block(new):.4f}")
print(f"{dest}: {(dest / 'model.safetensors').stat().st_size / 1e6:.1f} MB, {seconds} s in all")
sys.exit(0 if new["elbo_nats_per_residue"] < old["elbo_nats_per_residue"] else 1)
PY
then
    echo "shipped: $dest"
    [[ ! -e "$previous" ]] || echo "the model it replaced is in $previous"
else
    rm -rf "$run/not-shipped"
    mv "$dest" "$run/not-shipped"
    [[ ! -e "$previous" ]] || mv "$previous" "$dest"
    card "$run/not-shipped" > /dev/null      # again: it is not the model the studio serves on a GPU
    echo "not shipped: its ELBO does not beat checkpoints/acyp; it is in $run/not-shipped"
fi
