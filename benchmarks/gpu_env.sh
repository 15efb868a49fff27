# Sourced by gpu_check.sh and gpu_base_model.sh (from the repository root): sets PYTHON ($PYTHON, else
# python3, else python) and, where that Python lacks the packages the GPU runs import (the borrowed
# GPU machine's image has no biotite, pyhmmer or gradio), unpacks .gpu-site.tar.gz
# (benchmarks/gpu_packages.sh; another archive: GPU_SITE=PATH) into a folder under $TMPDIR and puts it
# first on PYTHONPATH.
# The GPU machine reaches nothing outside: nothing should wait on a hub or on gradio's analytics.
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
gpu_site="${GPU_SITE:-.gpu-site.tar.gz}"
gpu_needs='import biotite, pyhmmer, gradio, gradio_client, mcp, py3Dmol'
if ! "$PYTHON" -c "$gpu_needs" 2>/dev/null; then
    if [[ ! -f "$gpu_site" ]]; then
        echo "$(basename "$0"): $PYTHON lacks biotite, pyhmmer or gradio and there is no $gpu_site;" \
             "build it with 'bash benchmarks/gpu_packages.sh' where pip can reach a package index, and carry it" >&2
        exit 2
    fi
    gpu_site_root="${TMPDIR:-/tmp}/sedd-gpu-site-$(cksum < "$gpu_site" | cut -d' ' -f1)"    # unpacked once
    if [[ ! -f "$gpu_site_root/gpu-site/GPU_SITE_PYTHON" ]]; then
        rm -rf "$gpu_site_root" "$gpu_site_root.part" && mkdir -p "$gpu_site_root.part"
        tar -xzf "$gpu_site" -C "$gpu_site_root.part" && mv "$gpu_site_root.part" "$gpu_site_root"
    fi
    gpu_site_python="$(cut -d' ' -f2 "$gpu_site_root/gpu-site/GPU_SITE_PYTHON")"
    this_python="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    if [[ "$gpu_site_python" != "$this_python" ]]; then
        echo "$(basename "$0"): $gpu_site was built for Python $gpu_site_python, this is $this_python;" \
             "rebuild it with PYTHON_VERSION=$this_python bash benchmarks/gpu_packages.sh" >&2
        exit 2
    fi
    export PYTHONPATH="$gpu_site_root/gpu-site${PYTHONPATH:+:$PYTHONPATH}"
    "$PYTHON" -c "$gpu_needs" || { echo "$(basename "$0"): the packages of $gpu_site do not import" >&2; exit 2; }
    echo "$(basename "$0"): using the packages of $gpu_site ($gpu_site_root)"
fi
