"""Training end to end on synthetic data: CLI, learning, resume after kill -9, DDP on gloo, NaN guard."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd import checkpoint
from sedd.alphabet import PROTEIN, Alphabet
from sedd.sampler import run
from sedd.train import RESUME_NAME, TrainConfig, Trainer, ema_decay_at, train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def fast_config(data, out, **kw) -> TrainConfig:
    defaults = dict(preset="tiny", tokens_per_batch=1024, warmup_steps=10, eval_every=20, eval_max_seqs=32,
                    lr=3e-3, dropout=0.0, checkpoint_minutes=60)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def profile_loglik(samples: torch.Tensor, profile: torch.Tensor) -> float:
    """Mean log-probability per residue of sampled rows [N, L] under the position-specific profile."""
    return profile.log().gather(1, samples.T).mean().item()


@pytest.fixture
def family(tmp_path):
    seqs, profile = profile_family(400, 32, seed=0)
    path = tmp_path / "family.fasta"
    write_fasta(path, seqs)
    return path, profile


def test_loss_falls_and_samples_move_toward_the_profile(tmp_path, family):
    data, profile = family
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="near-duplicates will leak"):
        out = train(fast_config(data, tmp_path / "run", max_steps=150))
    history = json.loads((out / "history.json").read_text())
    losses = [h["train_loss"] for h in history if "train_loss" in h]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    assert (out / "loss.png").stat().st_size > 1000

    trained = checkpoint.load(out)
    untrained = type(trained.model)(trained.model.config).eval()
    tpl = [[PROTEIN.mask_id] * 32] * 64
    after = run(trained.model, tpl, mask_id=PROTEIN.mask_id, steps=32, seed=0).tokens
    before = run(untrained, tpl, mask_id=PROTEIN.mask_id, steps=32, seed=0).tokens
    assert profile_loglik(after, profile) > profile_loglik(before, profile) + 0.3
    summary = json.loads((out / "config.json").read_text())["training"]
    assert summary["steps"] == 150 and summary["tokens_seen"] > 0
    assert trained.length_histogram == {32: summary["num_train_sequences"]}


def test_the_same_code_trains_on_english_text(tmp_path):
    lines = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
             "all that glitters is not gold", "the early bird catches the worm"] * 40
    alphabet = Alphabet.from_text(lines, mask_chars="_")
    path = tmp_path / "text.fasta"
    write_fasta(path, lines)
    with pytest.warns(UserWarning):
        out = train(fast_config(path, tmp_path / "text", max_steps=300, alphabet=alphabet.to_dict(), max_len=64))
    history = json.loads((out / "history.json").read_text())
    val = [h["val_elbo_ema"] for h in history if "val_elbo_ema" in h]
    assert val[-1] < val[0] - 0.5
    model = checkpoint.load(out)
    assert model.alphabet == alphabet
    tpl = model.alphabet.parse_template("the ____ brown fox", model.max_len)
    text = model.alphabet.decode(run(model.model, [tpl.tokens], mask_id=alphabet.mask_id, steps=16, seed=0).tokens[0])
    assert text.startswith("the ") and text.endswith(" brown fox") and "_" not in text


def test_ema_decay_warms_up():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(0.91)
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_non_finite_losses_are_skipped_then_stop(tmp_path, family, monkeypatch):
    data, _ = family
    with pytest.warns(UserWarning):
        trainer = Trainer(fast_config(data, tmp_path / "nan", max_steps=50, max_bad_steps=3))
    import sedd.train as train_module
    real = train_module.diffusion_loss
    calls = {"n": 0}

    def sometimes_nan(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] in (2, 5, 6, 7, 8) else out

    monkeypatch.setattr(train_module, "diffusion_loss", sometimes_nan)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.warns(UserWarning, match="non-finite"), pytest.raises(FloatingPointError, match="3 non-finite losses in a row"):
        trainer.run()
    assert trainer.step == 3      # calls 1, 3 and 4 applied; call 2 skipped; calls 5–7 in a row stopped it
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def _cli(data, out, *extra):
    return [sys.executable, "-m", "sedd.train", "--data", str(data), "--out", str(out), "--preset", "tiny",
            "--tokens-per-batch", "1024", "--dropout", "0", "--lr", "3e-3", "--eval-every", "1000", *extra]


def test_resume_after_kill_9_keeps_the_loss_falling(tmp_path, family):
    data, _ = family
    out = tmp_path / "killed"
    # --checkpoint-minutes 0 writes after every step, so the kill almost surely lands mid-write
    proc = subprocess.Popen(_cli(data, out, "--max-steps", "100000", "--checkpoint-minutes", "0"),
                            env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        step = 0
        while time.time() < deadline:
            time.sleep(0.5)
            if (out / RESUME_NAME).exists():
                step = torch.load(out / RESUME_NAME, weights_only=True)["step"]
                if step >= 40:
                    break
        assert step >= 40, "the training subprocess wrote no resume state in time"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = torch.load(out / RESUME_NAME, weights_only=True)
    checkpoint.load(out)                                   # the last good checkpoint is readable
    killed_at = state["step"]
    early = [h["train_loss"] for h in json.loads(state["history"]) if "train_loss" in h]

    subprocess.run(_cli(data, out, "--resume", "--max-steps", str(killed_at + 60)), env=ENV, cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = json.loads((out / "history.json").read_text())
    resumed = [h for h in history if "train_loss" in h and h["step"] > killed_at]
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == killed_at + 60
    assert resumed, "no training after the resume"
    assert sum(h["train_loss"] for h in resumed[-3:]) / 3 < sum(early[:3]) / 3 - 0.2


def test_kill_9_during_checkpoint_writes_leaves_a_readable_checkpoint(tmp_path, tiny_model):
    """A process rewriting the checkpoint in a loop is killed at random moments; every survivor loads."""
    ckpt_dir = tmp_path / "ckpt"
    script = ("import sys, torch; from sedd import checkpoint; from sedd.model import ScoreNetwork, preset;"
              "from sedd.alphabet import PROTEIN; from sedd.schedule import LogLinearSchedule\n"
              "m = ScoreNetwork(preset('small', vocab_size=20))\n"
              "while True:\n    checkpoint.save(sys.argv[1], m, PROTEIN, LogLinearSchedule(), {50: 1})\n")
    checkpoint.save(ckpt_dir, tiny_model, PROTEIN, checkpoint.LogLinearSchedule(), {50: 1})
    for delay in (0.6, 0.9, 1.3):
        proc = subprocess.Popen([sys.executable, "-c", script, str(ckpt_dir)], env=ENV, cwd=ROOT)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        checkpoint.load(ckpt_dir)      # each time: the last complete write, never a torn file


def test_torchrun_two_processes_on_gloo(tmp_path, family):
    data, _ = family
    out = tmp_path / "ddp"
    # --standalone: the rendezvous binds a port the kernel picks (no fixed port to collide on)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sedd.train", *_cli(data, out, "--max-steps", "20")[3:]]
    result = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "config.json").read_text())["training"]
    assert summary["world_size"] == 2 and summary["steps"] == 20
    checkpoint.load(out)


def test_fasta_reader_reports_dropped_sequences(tmp_path):
    from sedd.data import describe_dropped, read_fasta
    path = tmp_path / "mixed.fasta"
    write_fasta(path, ["MKVAG", "MKXAG", "MBXZ", "A" * 200, "GGG*"])
    data = read_fasta(path, PROTEIN, max_len=128)
    assert [PROTEIN.decode(t) for t in data.tokens] == ["MKVAG", "GGG"]
    message = describe_dropped(data)
    assert message.startswith("dropped 3 of 5 sequences")
    assert "2 contain 'X'" in message and "1 contain 'B'" in message and "1 longer than 128" in message


def test_early_stopping_when_validation_stops_improving(tmp_path, family):
    data, _ = family
    with pytest.warns(UserWarning):
        trainer = Trainer(fast_config(data, tmp_path / "early", max_steps=10_000, lr=0.0, warmup_steps=1,
                                      eval_every=5, patience=2))
    trainer.run()     # lr = 0: nothing improves after the first evaluation
    assert trainer.step == 15 and trainer.best["step"] == 5
    assert checkpoint.load(tmp_path / "early")


def test_learning_rate_warms_up_then_decays_to_its_floor_with_the_budget():
    from sedd.train import lr_at
    cfg = TrainConfig(data="-", out="-", lr=1e-3, warmup_steps=10, min_lr_fraction=0.1)
    assert lr_at(0, cfg, 0.0) == pytest.approx(1e-4)
    assert lr_at(10, cfg, 0.0) == pytest.approx(1e-3)
    assert lr_at(500, cfg, 0.5) == pytest.approx(0.55e-3)
    assert lr_at(900, cfg, 1.0) == lr_at(999, cfg, 3.0) == pytest.approx(1e-4)


def test_the_progress_bar_runs_against_the_time_budget(tmp_path, family, capsys):
    data, _ = family
    Trainer(fast_config(data, tmp_path / "bar", minutes=0.05, eval_every=10_000)).run()
    err = capsys.readouterr().err
    assert "100% of the budget" in err and "<" in err.rsplit("of the budget", 1)[1]    # an end and an ETA
