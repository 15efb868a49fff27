"""benchmarks/ar_init.py: a diffusion run started from the autoregressive baseline against one from
scratch, with the baseline's CPU time added to the scratch arm."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import profile_family, write_fasta
from sedd import checkpoint
from sedd.autoregressive import AutoregressiveTrainer
from sedd.train import TrainConfig

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ar_init.py"


def baseline(tmp_path, clock: str = "cpu", mlp: str = "swiglu") -> Path:
    write_fasta(tmp_path / "family.fasta", profile_family(200, 24, seed=0)[0])
    cfg = TrainConfig(data=str(tmp_path / "family.fasta"), out=str(tmp_path / "ar"), preset="tiny", minutes=0.02,
                      clock=clock, tokens_per_batch=1024, warmup_steps=2, eval_every=10**6, eval_max_seqs=8,
                      patience=0, dropout=0.0, model_overrides={"mlp": mlp})        # the combined recipe's MLP
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        AutoregressiveTrainer(cfg).run()
    return tmp_path / "ar"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_both_arms_train_side_by_side_with_equal_cpu_time_in_all(tmp_path):
    ar = baseline(tmp_path)
    out = tmp_path / "result.json"
    done = run("--data", str(tmp_path / "family.fasta"), "--ar", str(ar), "--out", str(tmp_path / "arms"),
               "--preset", "tiny", "--cpu-minutes", "0.03", "--samples", "4", "--t-samples", "2", "--jobs", "2",
               "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    arms = {arm["arm"]: arm for arm in result["arms"]}
    assert result["ar_cpu_minutes"] == 0.02
    assert arms["from-ar"]["cpu_minutes_budget"] == 0.03 and arms["scratch"]["cpu_minutes_budget"] == pytest.approx(0.05)
    started = json.loads((tmp_path / "arms" / "from-ar" / "config.json").read_text())["training"]["config"]
    assert started["init_from"] == str(ar) and arms["scratch"]["init_from"] is None
    assert all(arm["elbo_nats_per_residue"] > 0 and arm["motif"]["samples"] == 4 for arm in arms.values())
    assert "vs_first" in arms["scratch"]["motif"]                     # paired against from-ar
    assert "| scratch | 0.05 |" in done.stdout
    assert not checkpoint.load(tmp_path / "arms" / "scratch").model.config.causal


def test_a_baseline_without_a_cpu_budget_is_refused(tmp_path):
    ar = baseline(tmp_path, clock="wall")
    done = run("--data", str(tmp_path / "family.fasta"), "--ar", str(ar), "--out", str(tmp_path / "arms"))
    assert done.returncode == 2 and "was not trained on a CPU-time budget (clock 'wall'" in done.stderr


def test_a_baseline_of_another_network_is_refused_before_either_arm_trains(tmp_path):
    """A baseline of ar_baseline.py's default recipe (GELU) failed inside the from-ar arm's process, as
    a traceback, and with --jobs 2 only after the scratch arm had trained for its whole budget."""
    ar = baseline(tmp_path, mlp="gelu")
    done = run("--data", str(tmp_path / "family.fasta"), "--ar", str(ar), "--out", str(tmp_path / "arms"),
               "--preset", "tiny")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is not the network these arms train (mlp 'gelu' there, 'swiglu' here): train the baseline with " \
           "benchmarks/ar_baseline.py --recipe combined --preset tiny" in done.stderr
    assert not (tmp_path / "arms").exists()
