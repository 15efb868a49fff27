"""Review of training, data and evaluation as a user meets them: a run stopped by Ctrl-C or kill saves and
resumes exactly, a cluster file that does not name the FASTA's sequences is caught, budgets that cannot
end a run are refused, and the benchmark scripts refuse what they cannot use."""
import json
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd.train import RESUME_NAME, TrainConfig, Trainer

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """120 synthetic sequences of lengths 12–40 and a cluster<TAB>member TSV of them (four per cluster)."""
    folder = tmp_path_factory.mktemp("family")
    seqs, _ = profile_family(120, 40, seed=0)
    write_fasta(folder / "family.fasta", [s[:12 + (7 * i) % 29] for i, s in enumerate(seqs)])
    (folder / "clusters.tsv").write_text("".join(f"c{i // 4}\tseq{i}\n" for i in range(len(seqs))))
    return folder / "family.fasta", folder / "clusters.tsv"


def config(data, out, **kw) -> TrainConfig:
    defaults = dict(preset="tiny", tokens_per_batch=256, warmup_steps=4, eval_every=5, eval_max_seqs=16, lr=3e-3,
                    dropout=0.1, checkpoint_minutes=60, patience=0)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def trainer(cfg: TrainConfig) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # the by-sequence split warning
        return Trainer(cfg)


# ---- a run stopped by a signal -------------------------------------------------------------------------
def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt in this test, as SIGINT does: a signal the run does not catch stops the
    test, not the test session."""
    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_after_its_step_saved_and_the_resumed_run_is_the_uninterrupted_one(
        tmp_path, family, monkeypatch, sigterm_interrupts, signum):
    """Ctrl-C (or kill) at step 7 of 16, long before the first timed save: the step finishes, the run
    saves at step 7 and says so, and --resume ends bit for bit where the uninterrupted run ends
    (weights, EMA, history and the shipped checkpoint). Before, Ctrl-C killed the run mid-step with a
    traceback, and everything since the last timed save (here: all of it) was lost."""
    data, _ = family
    straight = trainer(config(data, tmp_path / "straight", max_steps=16))
    straight.run()

    count_step = Trainer._count_step

    def count_then_signal(self, loss, bar):
        count_step(self, loss, bar)
        if self.step == 7:
            signal.raise_signal(signum)        # arrives in the middle of the run, as from the keyboard

    monkeypatch.setattr(Trainer, "_count_step", count_then_signal)
    stopped = trainer(config(data, tmp_path / "split", max_steps=16))
    with pytest.raises(KeyboardInterrupt) as stop:
        stopped.run()
    assert "--resume continues the run" in str(stop.value) and stop.value.step == 7
    assert pickle.loads(pickle.dumps(stop.value)).step == 7          # from a benchmark's worker process too
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the handlers are back
    assert signal.getsignal(signal.SIGTERM) is interrupt
    monkeypatch.setattr(Trainer, "_count_step", count_step)
    assert torch.load(tmp_path / "split" / RESUME_NAME, weights_only=True)["step"] == 7

    resumed = trainer(config(data, tmp_path / "split", max_steps=16, resume=True))
    resumed.run()
    assert resumed.history == straight.history
    for name in ("model", "ema"):
        for key, value in getattr(straight, name).state_dict().items():
            assert torch.equal(getattr(resumed, name).state_dict()[key], value), (name, key)
    assert (tmp_path / "split/model.safetensors").read_bytes() == (tmp_path / "straight/model.safetensors").read_bytes()


def test_ctrl_c_on_the_command_line_saves_and_exits_130_without_a_traceback(tmp_path, family):
    """The user's view: `python -m sedd.train`, Ctrl-C after a validation, exit status 130 (the shell's
    for SIGINT), one line saying where the run was saved and how to continue, and --resume continues."""
    data, _ = family
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "sedd.train", "--data", str(data), "--out", str(out), "--preset", "tiny",
            "--tokens-per-batch", "256", "--eval-every", "3", "--max-steps", "100000"]
    proc = subprocess.Popen(argv, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not a background job's
    try:
        seen = ""
        while "step 3: val ELBO" not in seen:          # training has started: a validation line came
            line = proc.stderr.readline()
            assert line, seen[-2000:]
            seen += line
        proc.send_signal(signal.SIGINT)
        err = seen + proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert f"--out {out} --resume continues the run" in err.strip().splitlines()[-1]
    step = torch.load(out / RESUME_NAME, weights_only=True)["step"]
    assert step >= 3
    done = subprocess.run([sys.executable, "-m", "sedd.train", "--out", str(out), "--resume", "--max-steps",
                           str(step + 2)], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"at step {step} " in done.stderr
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == step + 2


# ---- a cluster file that does not go with the FASTA ----------------------------------------------------
def test_a_cluster_file_that_names_none_of_the_sequences_is_refused_not_a_silent_split_by_sequence(
        tmp_path, family, capsys):
    """Ids spelled otherwise than in the FASTA (here 'sp|seq0|X' for 'seq0'): every sequence would be a
    cluster of its own, a split by sequence without even the by-sequence warning. Before, sedd.data wrote
    that split, and sedd.train and sedd.evaluate used it, as if it held out whole clusters."""
    from sedd import data as sedd_data

    fasta, _ = family
    other = tmp_path / "other.tsv"
    other.write_text("".join(f"c{i // 4}\tsp|seq{i}|X\n" for i in range(120)))
    assert sedd_data.main(["--data", str(fasta), "--clusters", str(other), "--out", str(tmp_path / "split")]) == 2
    err = capsys.readouterr().err
    assert "the cluster file names none of the 120 sequences (FASTA ids such as 'seq0', cluster members such as " \
           "'sp|seq0|X')" in err
    assert not (tmp_path / "split").exists()
    with pytest.raises(ValueError, match="names none of the 120 sequences"):
        trainer(config(fasta, tmp_path / "run", max_steps=2, clusters=str(other)))


def test_a_cluster_file_that_names_some_of_the_sequences_still_splits(family):
    """The documented rule stays: sequences the file lacks are clusters of their own."""
    from sedd.alphabet import PROTEIN
    from sedd.data import read_clusters, read_fasta, split

    fasta, clusters = family
    some = {member: cluster for member, cluster in read_clusters(clusters).items() if member != "seq0"}
    train, val = split(read_fasta(fasta, PROTEIN), 0.2, 0, some)
    assert len(train) + len(val) == 120


# ---- budgets that cannot end a run ---------------------------------------------------------------------
@pytest.mark.parametrize("budget, message", [
    (dict(minutes=0), "--minutes must be a number above 0, got 0"),
    (dict(), "give a budget"),
    (dict(minutes=-1.0), "--minutes must be a number above 0, got -1.0"),
    (dict(minutes=float("nan"), max_steps=5), "--minutes must be a number above 0, got nan"),
    (dict(max_steps=0, minutes=1.0), "--max-steps must be a number above 0, got 0"),
])
def test_a_trainer_without_a_budget_that_ends_it_is_refused(tmp_path, family, budget, message):
    """TrainConfig(minutes=0), as `benchmarks/ablate_recipe.py --cpu-minutes 0` built it, trained for ever
    (0 is no budget); a negative budget trained no step and the benchmark reported ELBO 0.000 ± 0.000."""
    fasta, _ = family
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        trainer(config(fasta, tmp_path / "run", **budget))
    assert not (tmp_path / "run").exists()


# ---- the benchmark scripts -----------------------------------------------------------------------------
def benchmark(name: str):
    """A script of benchmarks/ as a module."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "benchmarks"))          # the scripts import each other
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script, option, value", [
    ("ablate_recipe", "--cpu-minutes", "0"),
    ("ablate_recipe", "--cpu-minutes", "-1"),
    ("ablate_recipe", "--val-seqs", "0"),
    ("ablate_recipe", "--t-samples", "0"),
    ("ar_baseline", "--cpu-minutes", "0"),
    ("ar_baseline", "--t-samples", "0"),
])
def test_a_benchmark_refuses_a_budget_or_count_it_cannot_use_before_it_trains(
        tmp_path, family, monkeypatch, capsys, script, option, value):
    """`ablate_recipe.py --cpu-minutes 0` trained its first variant for ever; `--cpu-minutes -1` or
    `--val-seqs 0` trained and then reported ELBO 0.000 ± 0.000; `--t-samples 0` divided by zero after training."""
    module = benchmark(script)

    def trains(*args, **kwargs):
        raise AssertionError(f"{script} started training with {option} {value}")

    monkeypatch.setattr(module, "train_quietly", trains)
    monkeypatch.setattr(module, "run_variant", trains, raising=False)
    with pytest.raises(SystemExit) as stop:
        module.main(["--data", str(family[0]), "--out", str(tmp_path / "out"), option, value])
    assert stop.value.code == 2
    assert f"argument {option}: '{value}' is not" in capsys.readouterr().err


def test_learning_curves_refuses_every_0_instead_of_dividing_by_it(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(json.dumps([{"step": 10, "val_elbo_raw": 2.9, "val_elbo_ema": 2.9}]))
    training = {"preset": "tiny", "parameters": 1, "steps": 10, "tokens_seen": 100, "wall_seconds": 6.0,
                "config": {"tokens_per_batch": 256}}
    (run / "config.json").write_text(json.dumps({"training": training}))
    with pytest.raises(SystemExit) as stop:
        benchmark("learning_curves").main([f"a={run}", "--every", "0"])
    assert stop.value.code == 2 and "argument --every: '0' is not a whole number above 0" in capsys.readouterr().err


def evaluated(directory: Path, clusters: str | None) -> Path:
    """``directory``'s checkpoint with the training and evaluation blocks that model_card.py reads."""
    config = json.loads((directory / "config.json").read_text())
    config["training"] = {"data": "family.fasta", "clusters": clusters, "preset": "tiny", "parameters": 104_000,
                          "steps": 12, "tokens_seen": 5_000, "wall_seconds": 60.0, "device": "cpu",
                          "num_train_sequences": 114, "num_val_sequences": 6,
                          "config": {"tokens_per_batch": 256, "lr": 1e-3, "optimizer": "adamw",
                                     "time_sampling": "stratified"}}
    config["evaluation"] = {"elbo_nats_per_residue": 2.9, "infill_recovery": 0.1, "num_sequences": 6}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def checkpoint_copy(source: Path, destination: Path) -> Path:
    import shutil
    return Path(shutil.copytree(source, destination))


def test_model_card_sets_a_model_beside_the_bundled_one_from_any_folder(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """The default --compare was the relative path checkpoints/acyp: run from anywhere but the repository
    root, the card was refused with "checkpoints/acyp has no training or evaluation block", which it has."""
    run = evaluated(tiny_checkpoint, clusters="clusters.tsv")
    monkeypatch.chdir(tmp_path)
    benchmark("model_card").main([str(run), "--hardware", "a laptop", "--reproduce", "python -m sedd.train ..."])
    card = (run / "README.md").read_text()
    assert "## Evaluation, beside `acyp`" in card
    assert "| **ELBO, nats/residue** (lower is better) | 1.664 | 2.900 |" in card
    assert "held out: whole clusters of `clusters.tsv` (6 sequences), 114 to train" in card


def test_model_card_of_a_run_without_clusters_says_so(tiny_checkpoint, tmp_path, capsys):
    """Not "held out: whole clusters of `None`"."""
    run = evaluated(tiny_checkpoint, clusters=None)
    reference = evaluated(checkpoint_copy(tiny_checkpoint, tmp_path / "reference"), clusters="clusters.tsv")
    benchmark("model_card").main([str(run), "--compare", str(reference), "--hardware", "x", "--reproduce", "y"])
    card = (run / "README.md").read_text()
    assert "`None`" not in card
    assert "held out: 6 sequences at random, no clusters (near-duplicates of training sequences may flatter" in card


def test_model_card_names_a_missing_checkpoint_as_missing(tiny_checkpoint, tmp_path, capsys):
    run = evaluated(tiny_checkpoint, clusters="clusters.tsv")
    with pytest.raises(SystemExit):
        benchmark("model_card").main([str(run), "--compare", str(tmp_path / "nope"), "--hardware", "x",
                                      "--reproduce", "y"])
    assert f"{tmp_path / 'nope'} is not a checkpoint directory: it holds no config.json" in capsys.readouterr().err


# ---- a checkpoint from another version -----------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    (lambda c: c["model"].update(rope_base=500000), r"the 'model' section has settings this version of sedd does "
                                                    r"not know \('rope_base'\); a newer sedd wrote it"),
    (lambda c: c.update(format="sedd-protein/2"), r"is not a sedd-protein/1 config \(format = 'sedd-protein/2'\); "
                                                  r"this version of sedd reads only sedd-protein/1: a newer sedd"),
])
def test_a_checkpoint_from_a_newer_version_says_so(tiny_checkpoint, change, message):
    """Before: "has an invalid section: ModelConfig.__init__() got an unexpected keyword argument 'rope_base'",
    and a newer format was named without saying what this version reads."""
    from sedd import checkpoint

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    change(config)
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        checkpoint.load(tiny_checkpoint)


def test_a_checkpoint_from_an_older_version_without_newer_settings_loads(tiny_checkpoint):
    """Settings a checkpoint predates (mlp, tie_embeddings, causal) take their defaults."""
    from sedd import checkpoint

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    for key in ("mlp", "tie_embeddings", "causal"):
        del config["model"][key]
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    assert checkpoint.load(tiny_checkpoint).model.config.mlp == "gelu"


def test_a_run_saved_by_a_newer_version_is_not_resumed_without_its_new_options(tmp_path, family, capsys):
    """A resume.pt whose config holds an option this version lacks (here 'label_smoothing'): before, the
    option was dropped without a word and the run continued as another run; now --resume names it."""
    from sedd.train import main

    fasta, _ = family
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        main(["--data", str(fasta), "--out", str(out), "--preset", "tiny", "--tokens-per-batch", "256",
              "--max-steps", "2"])
    state = torch.load(out / RESUME_NAME, weights_only=True)
    state["config"] = json.dumps({**json.loads(state["config"]), "label_smoothing": 0.1})
    torch.save(state, out / RESUME_NAME)
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(out), "--resume", "--max-steps", "4"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert ("--resume: the run was saved by a newer sedd, with options this version does not know "
            "(label_smoothing); update sedd to continue it") in err
    with pytest.raises(ValueError, match=r"does not know \(label_smoothing\)"):
        trainer(config(fasta, out, max_steps=4, resume=True))


def test_a_run_resumed_on_another_number_of_processes_says_how_its_steps_change(tmp_path, family, capsys):
    """A run saved by 2 torchrun processes and continued by one (a resume.pt that says world_size 2): each
    rank takes --tokens-per-batch a step, so the steps halve and the epoch's batches are dealt out anew.
    It continues, and says so; the same number of processes says nothing."""
    fasta, _ = family
    out = tmp_path / "run"
    trainer(config(fasta, out, max_steps=2)).run()
    capsys.readouterr()
    trainer(config(fasta, out, max_steps=3, resume=True)).run()
    assert "process(es)" not in capsys.readouterr().err
    state = torch.load(out / RESUME_NAME, weights_only=True)
    torch.save({**state, "world_size": 2}, out / RESUME_NAME)
    trainer(config(fasta, out, max_steps=4, resume=True)).run()
    assert ("resume: the run was saved by 2 process(es) and continues on 1: each step now takes 1 × 256 residues "
            "instead of 2 × 256") in capsys.readouterr().err


def test_the_elbo_of_no_sequences_is_refused_not_zero(tiny_checkpoint):
    """Before, an empty set scored 0.000 ± 0.000 nats/residue, a perfect model's figure."""
    from sedd import checkpoint
    from sedd.data import Dataset
    from sedd.likelihood import estimate_elbo

    model = checkpoint.load(tiny_checkpoint)
    empty = Dataset(ids=[], tokens=[])
    with pytest.raises(ValueError, match="no sequences to score"):
        estimate_elbo(model.model, empty, model.schedule, model.alphabet.mask_id)
