"""Training end to end on synthetic data: CLI, learning, resume after kill -9, DDP on gloo, NaN guard."""
import json
import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd import checkpoint
from sedd.alphabet import PROTEIN, Alphabet
from sedd.sampler import run
from sedd.train import RESUME_NAME, TrainConfig, Trainer, ema_decay_at, train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
       "PYTHONFAULTHANDLER": "1"}     # a rank that aborts prints where it was


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


def test_resume_continues_the_run_exactly(tmp_path, family):
    """15 steps, save, resume to 30 = 30 steps in one go: same step count, same weights bit for bit
    (data order, times, masks and dropout all continue; a silent restart would fail every check).
    All 30 steps are warm-up steps, so the LR does not depend on the budget, which differs here."""
    data, _ = family
    kw = dict(dropout=0.1, eval_every=10, patience=0, warmup_steps=100)
    with pytest.warns(UserWarning):
        straight = Trainer(fast_config(data, tmp_path / "straight", max_steps=30, **kw))
        straight.run()
        first = Trainer(fast_config(data, tmp_path / "split", max_steps=15, **kw))
        first.run()
        resumed = Trainer(fast_config(data, tmp_path / "split", max_steps=30, resume=True, **kw))
    assert (resumed.step, resumed.tokens_seen, resumed.epoch) == (15, first.tokens_seen, first.epoch)
    for name, value in first.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    resumed.run()
    assert resumed.step == 30 and resumed.tokens_seen == straight.tokens_seen
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    for name, value in straight.ema.state_dict().items():
        assert torch.equal(resumed.ema.state_dict()[name], value), name


# A training run whose Nth atomic write of one file stops half-way: the temporary file holds half the
# bytes, the path of that file is printed, and the process waits on stdin until it is killed.
TORN_WRITE = """
import os, sys
from sedd import checkpoint, train
real, target, nth, seen = checkpoint.atomic_write, sys.argv[1], int(sys.argv[2]), [0]

def atomic_write(path, write):
    if os.path.basename(path) == target:
        seen[0] += 1
        if seen[0] == nth:
            def torn(tmp):
                write(tmp)
                os.truncate(tmp, os.path.getsize(tmp) // 2)
                print(tmp, flush=True)
                sys.stdin.readline()
            return real(path, torn)
    return real(path, write)

checkpoint.atomic_write = atomic_write
train.main(sys.argv[3:])
"""


@pytest.mark.parametrize("target", [RESUME_NAME, checkpoint.WEIGHTS_NAME])
def test_kill_9_in_the_middle_of_a_write_then_resume(tmp_path, family, target):
    """Killed while a write of ``target`` is known to be half done: the previous complete files
    load, and --resume continues from the last complete resume state, not from step 0."""
    data, _ = family
    out = tmp_path / "killed"
    nth = 4          # --checkpoint-minutes 0: a save after every step, so the 4th write is step 4's
    proc = subprocess.Popen([sys.executable, "-c", TORN_WRITE, target, str(nth),
                             *_cli(data, out, "--max-steps", "1000", "--checkpoint-minutes", "0")[3:]],
                            env=ENV, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        assert ready, "the training subprocess never reached the torn write"
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.parent == out and tmp.name.startswith(f".{target}.") and tmp.stat().st_size > 0
        assert (out / target).is_file(), "a complete earlier version exists beside the torn write"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert tmp.exists()                                     # the kill really interrupted that write
    checkpoint.load(out)                                    # weights and config of a complete save
    state = torch.load(out / RESUME_NAME, weights_only=True)
    killed_at = nth - 1 if target == RESUME_NAME else nth   # the last resume.pt written in full
    assert state["step"] == killed_at

    done = subprocess.run(_cli(data, out, "--resume", "--max-steps", str(killed_at + 6)), env=ENV, cwd=ROOT,
                          check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert f"resumed from {out / RESUME_NAME} at step {killed_at} " in done.stderr
    summary = json.loads((out / "config.json").read_text())["training"]
    assert summary["steps"] == killed_at + 6
    resumed_state = torch.load(out / RESUME_NAME, weights_only=True)
    assert resumed_state["tokens_seen"] > state["tokens_seen"] and resumed_state["epoch"] >= state["epoch"]


def _torchrun(*args) -> list[str]:
    # --standalone: a rendezvous on a port the OS picks (no fixed port, nothing to race for)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


def test_torchrun_two_processes_on_gloo(tmp_path, family):
    data, _ = family
    out = tmp_path / "ddp"
    cmd = _torchrun("-m", "sedd.train", *_cli(data, out, "--max-steps", "20")[3:])
    result = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "config.json").read_text())["training"]
    assert summary["world_size"] == 2 and summary["steps"] == 20
    checkpoint.load(out)
    resumed = subprocess.run(_torchrun("-m", "sedd.train", *_cli(data, out, "--max-steps", "26", "--resume")[3:]),
                             env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 20 " in resumed.stderr
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == 26


# Each rank sees its own validation numbers: rank 0 never improves after the first evaluation, rank 1
# always does. Ranks that decide alone part ways (one stops, the other waits in an all-reduce).
DISAGREEING_RANKS = """
import gc
import sys
import torch
import torch.distributed as dist
import sedd.train as T
calls = [0]

def estimate_elbo(*args, **kwargs):
    calls[0] += 1
    return {"elbo_nats_per_residue": 3.0 if dist.get_rank() == 0 else 3.0 - 0.01 * calls[0]}

destroy = dist.destroy_process_group

def destroy_with_no_user_left(*args, **kwargs):
    users = [o for o in gc.get_objects() if isinstance(o, torch.nn.parallel.DistributedDataParallel)]
    assert not users, f"process group torn down while {len(users)} DDP module(s) still hold it"
    destroy(*args, **kwargs)

T.estimate_elbo = estimate_elbo
dist.destroy_process_group = destroy_with_no_user_left
T.main(sys.argv[1:])
"""


def test_torchrun_early_stopping_is_one_decision_for_every_rank(tmp_path, family):
    """Ranks that disagree stop together, and each frees its DDP module before the group goes."""
    data, _ = family
    out = tmp_path / "ddp_patience"
    script = tmp_path / "disagreeing_ranks.py"
    script.write_text(DISAGREEING_RANKS)
    cmd = _torchrun(str(script), *_cli(data, out, "--max-steps", "200", "--eval-every", "5", "--patience", "1")[3:])
    result = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "early stop: no better validation ELBO since step 5" in result.stderr
    summary = json.loads((out / "config.json").read_text())["training"]
    assert summary["steps"] == 10 and summary["world_size"] == 2


def test_early_stopping_when_validation_stops_improving(tmp_path, family):
    data, _ = family
    with pytest.warns(UserWarning):
        trainer = Trainer(fast_config(data, tmp_path / "early", max_steps=10_000, lr=0.0, warmup_steps=1,
                                      eval_every=5, patience=2))
    trainer.run()     # lr = 0: nothing improves after the first evaluation
    assert trainer.step == 15 and trainer.best["step"] == 5
    assert checkpoint.load(tmp_path / "early")


def test_the_checkpoint_holds_ema_weights_even_when_the_raw_weights_score_better(tmp_path, family, monkeypatch):
    import sedd.train as T
    data, _ = family
    with pytest.warns(UserWarning):
        trainer = Trainer(fast_config(data, tmp_path / "ema", max_steps=30, eval_every=10, patience=0))

    def raw_always_better(net, *args, **kwargs):      # both improve at every probe; the raw weights by a hair more
        return {"elbo_nats_per_residue": (2.0 if net is trainer.model else 2.001) - 0.01 * trainer.step}
    monkeypatch.setattr(T, "estimate_elbo", raw_always_better)
    trainer.run()
    assert trainer.best["step"] == 30
    saved = checkpoint.load(tmp_path / "ema").model.state_dict()
    for name, value in trainer.ema.state_dict().items():
        torch.testing.assert_close(saved[name], value, rtol=0, atol=0)
    assert any(not torch.equal(saved[n], v) for n, v in trainer.model.state_dict().items())


def test_learning_rate_warms_up_then_decays_to_its_floor_with_the_budget():
    from sedd.train import lr_at
    cfg = TrainConfig(data="-", out="-", lr=1e-3, warmup_steps=10, min_lr_fraction=0.1)
    assert lr_at(0, cfg, 0.0) == pytest.approx(1e-4)
    assert lr_at(10, cfg, 0.0) == pytest.approx(1e-3)
    assert lr_at(500, cfg, 0.5) == pytest.approx(0.55e-3)
    assert lr_at(900, cfg, 1.0) == lr_at(999, cfg, 3.0) == pytest.approx(1e-4)


def _last_bar(stderr: str) -> str:
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("train ")][-1]


def test_progress_bar_counts_steps_against_max_steps(tmp_path, family, capsys):
    data, _ = family
    with pytest.warns(UserWarning):
        Trainer(fast_config(data, tmp_path / "bar", max_steps=25, eval_every=1000)).run()
    bar = _last_bar(capsys.readouterr().err)
    assert re.fullmatch(r"train 100%\|█+\| \[\d\d:\d\d<00:00, step 25/25, loss \d\.\d{3}, [\d,]+ tok/s\]", bar), bar


def test_progress_bar_counts_time_against_minutes(tmp_path, family, capsys):
    data, _ = family
    with pytest.warns(UserWarning):
        trainer = Trainer(fast_config(data, tmp_path / "bar", minutes=0.02, eval_every=1000))
    trainer.run()
    bar = _last_bar(capsys.readouterr().err)
    assert re.fullmatch(rf"train 100%\|█+\| \[\d\d:\d\d<00:00, step {trainer.step}(, .*)?\]", bar), bar


def test_budget_used_is_the_larger_of_steps_and_time(tmp_path, family):
    data, _ = family
    with pytest.warns(UserWarning):
        trainer = Trainer(fast_config(data, tmp_path / "b", max_steps=100, minutes=1.0))
    trainer.step, trainer.seconds = 25, 45.0
    assert trainer.budget_used() == pytest.approx(0.75)
    trainer.step, trainer.seconds = 80, 6.0
    assert trainer.budget_used() == pytest.approx(0.8)
    trainer.cfg.minutes = None
    trainer.seconds = 1e6
    assert trainer.budget_used() == pytest.approx(0.8)
