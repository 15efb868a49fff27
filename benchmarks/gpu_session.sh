#!/usr/bin/env bash
# A whole GPU session's work in one call of at most SECONDS: the GPU check (gpu_check.sh), then the
# GPU model (gpu_base_model.sh, at most 8 training minutes) with the time that is left after keeping
# RESERVE seconds for its evaluation. Everything it made lands in OUT as at most 8 files of at most
# 15 MiB each, what a borrowed machine sends back: gpu_check.json, the two logs, and the evaluated
# model (shipped or not) as a tar split into parts.
#
#   bash benchmarks/gpu_session.sh OUT [SECONDS]        # SECONDS: the call's limit [570]
#   then here:  cat OUT/model.tar.part-* | tar -x -C checkpoints/     # acyp-base/ (or acyp-base-not-shipped/)
#
# Carry .gpu-site.tar.gz (benchmarks/gpu_packages.sh) and the training data; DATA and CLUSTERS
# default to runs/gpu-data/ (mkdir -p runs/gpu-data && cp -L data/acyp.fasta data/acyp_clusters50.tsv runs/gpu-data/).
# Environment: RESERVE [150]; MINUTES [what is left, at most 8; set, it fixes the training time];
# and those of gpu_check.sh and gpu_base_model.sh (DEVICE, PRESET, SAMPLES, ...).
# A dry run on a CPU: DEVICE=cpu PRESET=tiny SAMPLES=16 MAX_SEQS=32 DEST=runs/dry-base RUN=runs/dry-run MINUTES=0.3 \
#     bash benchmarks/gpu_session.sh runs/dry-session
set -uo pipefail
mkdir -p "${1:?usage: gpu_session.sh OUT [SECONDS]}" && out="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
limit="${2:-570}"
reserve="${RESERVE:-150}"
export DATA="${DATA:-runs/gpu-data/acyp.fasta}" CLUSTERS="${CLUSTERS:-runs/gpu-data/acyp_clusters50.tsv}"
export DEST="${DEST:-checkpoints/acyp-base}" RUN="${RUN:-runs/acyp-base}"
status=0

bash benchmarks/gpu_check.sh "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log" || status=1

minutes="${MINUTES:-}"
if [[ -z "$minutes" ]]; then
    minutes="$(awk -v left="$((limit - SECONDS - reserve))" 'BEGIN { m = left / 60; if (m > 8) m = 8; printf "%.2f", m }')"
    if awk -v m="$minutes" 'BEGIN { exit !(m < 0.25) }'; then
        echo "gpu_session: $((limit - SECONDS)) s left, too little to train the GPU model" | tee "$out/gpu_base_model.log"
        exit 1
    fi
fi
echo "gpu_session: $SECONDS s used; training the GPU model for $minutes minutes"
bash benchmarks/gpu_base_model.sh "$minutes" 2>&1 | tee "$out/gpu_base_model.log" || status=1

# the evaluated model, shipped or not, in parts that fit what comes back
if [[ -f "$DEST/config.json" ]] && grep -q "^shipped" "$out/gpu_base_model.log"; then
    model="$DEST" name="$(basename "$DEST")"
elif [[ -d "$RUN/not-shipped" ]] && grep -q "^not shipped" "$out/gpu_base_model.log"; then
    model="$RUN/not-shipped" name="$(basename "$DEST")-not-shipped"
else
    echo "gpu_session: no evaluated model to send back" >&2
    exit 1
fi
tar -c -C "$(dirname "$model")" --transform "s|^$(basename "$model")|$name|" "$(basename "$model")" \
    | split -b 15M -d -a 2 - "$out/model.tar.part-"
ls -l "$out"
exit "$status"
