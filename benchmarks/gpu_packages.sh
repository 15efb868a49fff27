#!/usr/bin/env bash
# The packages the GPU check and the GPU model need that the borrowed GPU machine lacks, as one
# archive that travels with the checkout. That machine cannot reach a package index; its image has
# torch and most of the scientific stack but not biotite (the evaluation's identities and ESMFold's
# PDB output), pyhmmer (the evaluation's family HMM) or gradio and mcp (the app test of the GPU
# check). benchmarks/gpu_packages.txt pins the missing ones.
#
#   bash benchmarks/gpu_packages.sh            # here, with pip and a package index: writes .gpu-site.tar.gz
#   then, on the GPU machine, with .gpu-site.tar.gz and runs/gpu-data/ carried along:
#     bash benchmarks/gpu_session.sh $OUT      (its scripts source benchmarks/gpu_env.sh, which unpacks the archive)
#
# The archive holds the installed files (not wheels), without the data the GPU runs never read,
# so that it fits beside the checkout and the training data in what one device call may carry
# (64 MiB): biotite's chemical component dictionary (needed only to infer bonds), pyhmmer's tests,
# gradio's server-side-rendering build (used only with node), its ffmpeg build and its demo media,
# and type stubs.
#
# Environment (defaults in brackets): PYTHON_VERSION [3.12: the GPU machine's], OUT [.gpu-site.tar.gz].
# PYTHON_VERSION=3.11 builds the same set for this machine's Python, for a dry run here (see gpu_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
version="${PYTHON_VERSION:-3.12}"
out="${OUT:-.gpu-site.tar.gz}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

platforms=()
for p in manylinux_2_{17,24,27,28}_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
python -m pip install --quiet --no-deps --no-compile --only-binary=:all: --target "$work/gpu-site" \
    --python-version "$version" --implementation cp "${platforms[@]}" -r benchmarks/gpu_packages.txt

site="$work/gpu-site"
rm -rf "$site/bin" "$site/pyhmmer/tests" \
       "$site/biotite/structure/info/components.bcif" \
       "$site/gradio/templates/node" "$site/gradio/templates/frontend/static/ffmpeg" "$site/gradio/media_assets"
find "$site" -name '*.pyi' -delete
echo "python $version" > "$site/GPU_SITE_PYTHON"
tar -czf "$work/site.tar.gz" -C "$work" gpu-site
mv "$work/site.tar.gz" "$out"
echo "wrote $out: $(du -m "$out" | cut -f1) MB for Python $version ($(du -sm "$site" | cut -f1) MB unpacked)"
