#!/usr/bin/env bash
# The GPU check, on one CUDA GPU (104 s on one H200: checkpoints/acyp-base/eval/gpu_check.json):
#   1. the tests marked `gpu` (tests/test_gpu.py): sampler on the GPU = CPU for the same seed; bf16
#      autocast training then --resume on the GPU; ESMFold's fp16 path with a tiny random model;
#      the app's `generate` through gradio_client with the score model on the GPU;
#   2. training tokens/s of the real training step, presets small and base (benchmarks/train_speed.py);
#   3. sampling time per design, presets small and base, 8 designs × 128 residues, 128 and 1024 steps
#      (benchmarks/design_speed.py).
# Prints both tables and writes the figures as one JSON file. A machine without biotite, pyhmmer or
# gradio takes them from .gpu-site.tar.gz (benchmarks/gpu_packages.sh, benchmarks/gpu_env.sh).
#
#   bash benchmarks/gpu_check.sh [OUT.json]          # default: gpu_check.json
#   DEVICE=cpu bash benchmarks/gpu_check.sh OUT.json # a dry run of this script on a CPU (short timings):
#                                                    # it checks the script, not a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check.json}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

device="${DEVICE:-cuda}"
source benchmarks/gpu_env.sh
if [[ "$device" == cuda* ]]; then
    "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "gpu_check: torch sees no CUDA GPU; nothing to check")'
    train_budget=(--seconds 20 --warmup 5 --max-steps 2000)
    design_budget=(--designs 8 --length 128 --steps 128 1024 --repeats 3)
else
    export SEDD_GPU_TEST_DEVICE="$device"
    train_budget=(--seconds 2 --warmup 1 --max-steps 5)
    design_budget=(--designs 2 --length 32 --steps 8 --repeats 1)
fi
"$PYTHON" -c 'import sys, torch; d = sys.argv[1]; print(f"torch {torch.__version__}, " + (torch.cuda.get_device_name(0) if d.startswith("cuda") else f"{d} (a dry run)"))' "$device"
start=$SECONDS

# -m gpu with a GPU present: a skip would mean the check did not run, so it counts as a failure
"$PYTHON" -m pytest -q -m gpu tests/test_gpu.py -rs --junitxml "$tmp/tests.xml"
"$PYTHON" - "$tmp/tests.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root.find("testsuite") if root.tag == "testsuites" else root
if int(suite.get("skipped", 0)) or not int(suite.get("tests", 0)):
    sys.exit(f"gpu_check: {suite.get('skipped')} gpu test(s) skipped on a GPU machine")
PY

"$PYTHON" benchmarks/train_speed.py --device "$device" --presets small,base "${train_budget[@]}" --json "$tmp/train.json"
"$PYTHON" benchmarks/design_speed.py --device "$device" --presets small,base "${design_budget[@]}" --json "$tmp/design.json"

"$PYTHON" - "$tmp" "$out" "$((SECONDS - start))" "$device" <<'PY'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
import torch
sys.path.insert(0, ".")
from sedd.checkpoint import atomic_write_text

tmp, out, seconds, device = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
root = ET.parse(tmp / "tests.xml").getroot()
suite = root.find("testsuite") if root.tag == "testsuites" else root
figures = {
    "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else f"none: a dry run on {device}",
    "torch": torch.__version__, "seconds": seconds,
    "gpu_tests": {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")},
    "training": json.loads((tmp / "train.json").read_text()),
    "sampling": json.loads((tmp / "design.json").read_text()),
}
atomic_write_text(out, json.dumps(figures, indent=2) + "\n")
print(f"wrote {out} ({seconds} s)")
PY
