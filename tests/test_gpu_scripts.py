"""The scripts a GPU session runs (benchmarks/gpu_*.sh), on the CPU: a machine that lacks biotite,
pyhmmer or gradio gets them from the carried archive or a clear error, and a whole GPU session runs
end to end as a dry run. A GPU session has a few minutes of device time; these catch what would waste them."""
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import profile_family, write_fasta
from sedd import checkpoint

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("biotite", "pyhmmer", "gradio", "gradio_client", "mcp", "py3Dmol")
THIS_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def bare_python(tmp_path: Path) -> Path:
    """This interpreter without site-packages: like a machine whose image lacks the studio's packages."""
    wrapper = tmp_path / "bare-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def archive(tmp_path: Path, python: str = THIS_PYTHON) -> Path:
    """A .gpu-site.tar.gz as benchmarks/gpu_packages.sh lays it out, holding stand-in packages."""
    site = tmp_path / "build" / "gpu-site"
    for name in NEEDED:
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(f"NAME = {name!r}\n")
    (site / "GPU_SITE_PYTHON").write_text(f"python {python}\n")
    path = tmp_path / "site.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(site, arcname="gpu-site")
    return path


def source_env(tmp_path: Path, gpu_site: Path, then: str = "true") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": str(bare_python(tmp_path)), "GPU_SITE": str(gpu_site), "TMPDIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    return subprocess.run(["bash", "-c", f"set -euo pipefail; source benchmarks/gpu_env.sh; {then}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_carried_packages_are_unpacked_and_put_on_the_path(tmp_path):
    done = source_env(tmp_path, archive(tmp_path), then='"$PYTHON" -c "import biotite, gradio; print(gradio.__file__)"')
    assert done.returncode == 0, done.stderr
    unpacked = Path(done.stdout.strip().splitlines()[-1])
    assert unpacked.parts[-3:] == ("gpu-site", "gradio", "__init__.py") and tmp_path in unpacked.parents


def test_without_the_packages_or_the_archive_the_error_says_how_to_build_it(tmp_path):
    done = source_env(tmp_path, tmp_path / "absent.tar.gz")
    assert done.returncode == 2
    assert "lacks biotite, pyhmmer or gradio" in done.stderr and "bash benchmarks/gpu_packages.sh" in done.stderr


def test_an_archive_for_another_python_is_refused_with_the_rebuild_command(tmp_path):
    done = source_env(tmp_path, archive(tmp_path, python="3.99"))
    assert done.returncode == 2
    assert "built for Python 3.99" in done.stderr
    assert f"PYTHON_VERSION={THIS_PYTHON} bash benchmarks/gpu_packages.sh" in done.stderr


def family_files(tmp_path: Path) -> dict[str, str]:
    """A small synthetic family and its clusters (three sequences each) as files: DATA and CLUSTERS."""
    sequences, _ = profile_family(300, 40, seed=0)
    write_fasta(tmp_path / "family.fasta", sequences)
    (tmp_path / "clusters.tsv").write_text("".join(f"seq{i - i % 3}\tseq{i}\n" for i in range(len(sequences))))
    return {"DATA": str(tmp_path / "family.fasta"), "CLUSTERS": str(tmp_path / "clusters.tsv")}


@pytest.mark.slow
def test_a_gpu_session_runs_end_to_end_as_a_dry_run_on_the_cpu(tmp_path):
    """gpu_session.sh: the GPU check, then a model trained in the time left, evaluated, and sent back in parts."""
    out = tmp_path / "out"
    env = {**os.environ, **family_files(tmp_path), "DEVICE": "cpu", "PYTHON": sys.executable, "TMPDIR": str(tmp_path),
           "PRESET": "tiny", "SAMPLES": "8", "MAX_SEQS": "16", "MINUTES": "0.1", "HMM": "",
           "DEST": str(tmp_path / "acyp-base"), "RUN": str(tmp_path / "run")}
    done = subprocess.run(["bash", "benchmarks/gpu_session.sh", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    figures = json.loads((out / "gpu_check.json").read_text())
    assert figures["gpu"] == "none: a dry run on cpu"
    assert figures["gpu_tests"] == {"tests": 4, "failures": 0, "errors": 0, "skipped": 0}
    assert {row["preset"] for row in figures["training"]} == {row["preset"] for row in figures["sampling"]} == {"small", "base"}

    assert "not shipped" in (out / "gpu_base_model.log").read_text()     # a tiny CPU model never beats acyp
    assert len(list(out.iterdir())) <= 8 and all(f.stat().st_size <= 15 * 2**20 for f in out.iterdir())
    parts = sorted(out.glob("model.tar.part-*"))
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as tar:
        tar.extractall(tmp_path / "back", filter="data")
    back = tmp_path / "back" / "acyp-base-not-shipped"
    config = json.loads((back / "config.json").read_text())
    assert config["evaluation"]["samples"]["num_samples"] == 8 and config["training"]["steps"] > 0
    assert checkpoint.load(back).model.config.d_model == config["model"]["d_model"]
    card = (back / "README.md").read_text()          # rewritten where it lies: not the one DEST would have served
    assert f"--checkpoint {tmp_path / 'run' / 'not-shipped'}`" in card and "studio serves it" not in card


def _probe_family(tmp_path: Path, **env) -> tuple[list[str], dict]:
    """The probe's command on a tiny synthetic family, and its environment for a CPU dry run."""
    env = {**os.environ, **family_files(tmp_path), "DEVICE": "cpu", "PYTHON": sys.executable,
           "COMPARE": "acyp=checkpoints/acyp", "SAMPLES": "8", "MAX_SEQS": "16", "RUNS": str(tmp_path / "runs"), **env}
    return ["bash", "benchmarks/gpu_budget_probe.sh", str(tmp_path / "out"), "0.05"], env


def _run(command, env) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_budget_probe_runs_as_a_dry_run_and_a_second_call_only_finishes_it(tmp_path):
    """gpu_budget_probe.sh trains its arms side by side, evaluates them and pairs their motif rates with
    the shipped model. Run again, it does only what is missing: an evaluation lost is redone on the same
    weights and the motif rates kept; an arm trained again has its motif rates measured again too."""
    probe, env = _probe_family(tmp_path, ARMS="tiny:1024 tiny:2048")
    out, runs = tmp_path / "out", tmp_path / "runs"
    done = _run(probe, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((out / "budget_probe.json").read_text())
    assert [a["arm"] for a in record["arms"]] == ["tiny-1024", "tiny-2048"]
    for arm in record["arms"]:
        assert arm["tokens_per_batch"] == int(arm["arm"].split("-")[1]) and arm["steps"] > 0
        assert 0 < arm["elbo"] < 5 and arm["motif"]["samples"] == 8 and "vs_first" in arm["motif"]
    assert record["motif"]["rows"][0]["name"] == "acyp"

    def stamps() -> dict:
        return {p.name if p.parent == out else p.parent.name: p.stat().st_mtime_ns
                for p in [*runs.glob("*/model.safetensors"), out / "motif_rate.json"]}

    before = stamps()
    (out / "evaluate-tiny-2048.json").unlink()          # cut short while evaluating: the rest is kept
    again = _run(probe, env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert len(before) == 3 and stamps() == before
    assert json.loads((out / "budget_probe.json").read_text()) == record

    (out / "trained-tiny-2048").unlink()                # cut short while training: new weights, new rates
    again = _run(probe, env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = stamps()
    assert after["tiny-1024"] == before["tiny-1024"]
    assert after["tiny-2048"] != before["tiny-2048"] and after["motif_rate.json"] != before["motif_rate.json"]
    rows = {r["name"] for r in json.loads((out / "motif_rate.json").read_text())["rows"]}
    assert rows == {"acyp", "tiny-1024", "tiny-2048"}


@pytest.mark.slow
def test_the_budget_probe_records_an_arm_that_failed_and_exits_1(tmp_path):
    probe, env = _probe_family(tmp_path, ARMS="nosuch:1024 tiny:1024")
    done = _run(probe, env)
    assert done.returncode == 1 and "training nosuch-1024 failed" in done.stderr
    record = json.loads((tmp_path / "out" / "budget_probe.json").read_text())
    failed, fine = record["arms"]
    assert failed["arm"] == "nosuch-1024" and failed["error"].startswith("training failed")
    assert fine["arm"] == "tiny-1024" and fine["steps"] > 0 and fine["motif"]["samples"] == 8


def test_the_budget_probe_refuses_an_arm_without_its_batch_before_training(tmp_path):
    probe, env = _probe_family(tmp_path, ARMS="mini")
    done = _run(probe, env)
    assert done.returncode == 2 and "arm 'mini' is not PRESET:TOKENS_PER_BATCH" in done.stderr
    assert not (tmp_path / "runs").exists()
