"""Training end to end on synthetic data: CLI, learning, resume after kill -9, DDP on gloo, NaN guard; the
learning-rate schedule and the EMA step by step, validation, the run's summary, the seeds and budgets a run
accepts, and DDP steps that equal one process seeing every rank's batch (resume: ``test_train_resume.py``)."""
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
from sedd.cli import MAX_SEED
from sedd.model import ScoreNetwork, preset
from sedd.sampler import run
from sedd.train import RESUME_NAME, TrainConfig, Trainer, ema_decay_at, lr_at, main, read_resume, train
from train_helpers import assert_same_tensors, dropout_config, importance_config, trainer, two_step_config

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
    assert result.stderr.count("is not below --max-steps 20") == 1       # the 200 warm-up steps: said once, not per rank
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


def test_the_best_step_is_null_until_a_validation_has_run(tmp_path, family):
    """A checkpoint saved before the first validation (a stop signal) said best_step 0 beside a null ELBO,
    while it shipped the EMA weights of a later step."""
    data, _ = family
    with pytest.warns(UserWarning):
        trainer = Trainer(fast_config(data, tmp_path / "early", max_steps=3, eval_every=100))
    assert trainer._summary()["best_step"] is None and trainer._summary()["best_val_elbo_probe"] is None
    trainer.run()                       # the last step is validated
    assert trainer._summary()["best_step"] == 3


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


# ---- the learning-rate schedule ---------------------------------------------------------------------------
class FakeClock:
    """A clock that moves ``tick`` seconds at every reading: a run's seconds are a function of its calls."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_under_minutes_the_lr_warms_up_by_steps_then_ends_on_its_floor_with_the_budget(
        tmp_path, uneven_family, monkeypatch):
    """--minutes alone: warm-up over the first steps, then the cosine decay follows the clock and the
    last step's LR is within a tick of the floor; a resume with a larger budget refits the decay to
    the new end and ends on the floor again."""
    import sedd.train as T
    monkeypatch.setitem(T.CLOCKS, "cpu", FakeClock(0.5))
    cfg = importance_config(uneven_family, tmp_path / "run", minutes=0.5, warmup_steps=10, lr=1e-2, min_lr_fraction=0.1,
                            clock="cpu", eval_every=1000)
    calls = []
    real = T.lr_at
    monkeypatch.setattr(T, "lr_at", lambda step, c, progress: calls.append((step, progress)) or real(step, c, progress))
    first = trainer(cfg)
    first.run()
    seen = sorted(set(calls))                       # (step, progress), once per step (lr_at runs per param group)
    assert [real(s, cfg, p) for s, p in seen[:10]] == pytest.approx([1e-3 * (s + 1) for s in range(10)])
    assert first.warmup_seconds > 0 and first.seconds >= 30
    last_step, last_progress = seen[-1]
    assert last_progress == pytest.approx(1.0, abs=0.05) and last_step == first.step - 1
    assert real(last_step, cfg, last_progress) == pytest.approx(1e-3, rel=0.02)
    progress = [p for _, p in seen[10:]]
    assert progress == sorted(progress)                                 # the decay only goes one way

    calls.clear()
    again = trainer(importance_config(uneven_family, tmp_path / "run", minutes=1.0, warmup_steps=10, lr=1e-2,
                                      min_lr_fraction=0.1, clock="cpu", eval_every=1000, resume=True))
    assert again.warmup_seconds == first.warmup_seconds
    again.run()
    seen = sorted(set(calls))
    assert seen[0][1] == pytest.approx((first.seconds - first.warmup_seconds) / (60 - first.warmup_seconds), abs=0.05)
    assert seen[-1][1] == pytest.approx(1.0, abs=0.05) and again.seconds >= 60


def test_under_max_steps_the_lr_warms_up_then_decays_to_the_floor_on_the_last_step(tmp_path, uneven_family):
    """Warm-up over steps 0–4 to the peak, then the cosine decay from the peak at step 5 to the floor
    at step 39, the last one of --max-steps 40."""
    cfg = importance_config(uneven_family, tmp_path / "run", max_steps=40, warmup_steps=5, lr=1e-2, min_lr_fraction=0.1,
                            eval_every=1000)
    run = trainer(cfg)
    seen = []                                      # the LR each optimizer step takes
    opt_step = run.opt.step
    run.opt.step = lambda: seen.append(run.opt.param_groups[0]["lr"]) or opt_step()
    run.run()
    assert len(seen) == 40
    assert seen[:6] == pytest.approx([2e-3, 4e-3, 6e-3, 8e-3, 1e-2, 1e-2])
    assert seen[22] == pytest.approx(lr_at(22, cfg, 0.5)) == pytest.approx(5.5e-3)
    assert seen[-1] == pytest.approx(1e-3, rel=1e-12)
    assert seen[5:] == sorted(seen[5:], reverse=True)


def test_a_warm_up_as_long_as_the_run_is_named_with_what_to_give_instead(tmp_path, short_family, capsys):
    """--max-steps 40 with the default 200 warm-up steps trained at a fifth of --lr at most, with no
    cosine decay, and said nothing."""
    base = ["--data", str(short_family), "--preset", "tiny", "--tokens-per-batch", "256", "--eval-every", "1000"]
    main([*base, "--out", str(tmp_path / "short"), "--max-steps", "3", "--warmup-steps", "3"])
    assert ("warning: --warmup-steps 3 is not below --max-steps 3: the learning rate rises for the whole run and "
            "never reaches --lr 0.001 nor decays; give fewer warm-up steps (a tenth of the run: --warmup-steps 1)"
            in capsys.readouterr().err)
    main([*base, "--out", str(tmp_path / "ok"), "--max-steps", "3", "--warmup-steps", "2"])
    assert "warm-up" not in capsys.readouterr().err


def test_a_resumed_run_too_short_for_its_warm_up_is_told_what_resume_allows(tmp_path, short_family, capsys):
    """The warning told a resumed run to give --warmup-steps, which --resume then refused."""
    out = str(tmp_path / "run")
    main(["--data", str(short_family), "--preset", "tiny", "--tokens-per-batch", "256", "--eval-every", "1000",
          "--out", out, "--max-steps", "2", "--warmup-steps", "5"])
    capsys.readouterr()
    main(["--out", out, "--resume", "--max-steps", "4"])
    err = capsys.readouterr().err
    assert ("--warmup-steps 5 is not below --max-steps 4: the learning rate rises for the whole run and never "
            "reaches --lr 0.001 nor decays; resume with --max-steps above 5, or start a new run with fewer "
            "warm-up steps") in err and "give fewer" not in err
    main(["--out", out, "--resume", "--max-steps", "6"])            # what it said to do works, and says nothing
    assert "warm-up" not in capsys.readouterr().err


# ---- the EMA, validation and the run's summary --------------------------------------------------------------
def test_the_ema_after_n_steps_follows_the_warm_up_decay(tmp_path, uneven_family):
    """After each step n (0, 1, 2, …), ema ← d·ema + (1 − d)·weights with d = min(0.999, (1+n)/(10+n))."""
    run = trainer(importance_config(uneven_family, tmp_path / "run", max_steps=3, eval_every=1000))
    expected = {k: v.clone() for k, v in run.ema.state_dict().items()}
    for n in range(3):
        run.train_step(run._next_batch())
        run.step += 1
        d = min(0.999, (1 + n) / (10 + n))
        expected = {k: d * v + (1 - d) * run.model.state_dict()[k] for k, v in expected.items()}
    for name, value in run.ema.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-6, atol=1e-7, msg=name)


def test_each_step_is_validated_at_most_once(tmp_path, uneven_family):
    """A budget that ends on a validation step: one validation record there, not two."""
    run = trainer(importance_config(uneven_family, tmp_path / "run", max_steps=14, eval_every=7))
    run.run()
    steps = [h["step"] for h in run.history if "val_elbo_ema" in h]
    assert steps == [7, 14]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["step"] for h in history if "val_elbo_ema" in h] == [7, 14]


def test_under_the_cpu_clock_the_summary_keeps_wall_and_clock_seconds_apart(tmp_path, uneven_family, monkeypatch):
    """--clock cpu: the budget counts the clock's seconds (``clock_seconds``), while ``wall_seconds``
    stays the wall time the loop took; both survive a resume and keep counting from there."""
    import time

    import sedd.train as T
    monkeypatch.setitem(T.CLOCKS, "cpu", FakeClock(0.5))        # 0.5 "CPU seconds" per reading
    started = time.time()
    trainer(importance_config(uneven_family, tmp_path / "run", minutes=0.5, clock="cpu", eval_every=1000)).run()
    elapsed = time.time() - started
    summary = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert summary["clock_seconds"] >= 30
    assert 0 < summary["wall_seconds"] <= elapsed < summary["clock_seconds"]
    again = trainer(importance_config(uneven_family, tmp_path / "run", minutes=1.0, clock="cpu", eval_every=1000,
                                      resume=True))
    assert (round(again.wall_seconds, 1), round(again.seconds, 1)) == (summary["wall_seconds"], summary["clock_seconds"])
    again.run()
    assert again.wall_seconds > summary["wall_seconds"] and again.seconds >= 60


def test_the_summary_counts_what_the_run_did(tmp_path, uneven_family):
    """config.json's steps and residues are the run's own: the sum over the batches it trained on."""
    run = trainer(importance_config(uneven_family, tmp_path / "run", max_steps=9, time_sampling="antithetic"))
    residues = []
    next_batch = run._next_batch
    run._next_batch = lambda: (lambda b: residues.append(sum(map(len, b))) or b)(next_batch())
    run.run()
    summary = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert summary["steps"] == 9 and summary["tokens_seen"] == sum(residues)     # antithetic copies not counted
    assert summary["best_step"] in (7, 9)


# ---- seeds and budgets -----------------------------------------------------------------------------------
def test_the_largest_seed_the_command_line_accepts_trains(tmp_path, short_family, capsys):
    """--seed takes 0 … 2**63 − 1, but the generator of times and masks was seeded with seed · 1000 + rank,
    past torch's 2**64 for any seed above about 1.8e16: `--seed 9223372036854775807` ended with
    "error: Overflow when unpacking long long" before the first step."""
    main(["--data", str(short_family), "--out", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "2",
          "--tokens-per-batch", "256", "--eval-every", "1000", "--seed", str(MAX_SEED)])
    assert "wrote" in capsys.readouterr().err
    assert read_resume(tmp_path / "run" / RESUME_NAME)["step"] == 2


def test_seeds_that_worked_before_draw_what_they_drew(tmp_path, short_family):
    """The fix reduces only seeds past 2**64: published runs' generators are seeded as they were."""
    run = trainer(two_step_config(short_family, tmp_path / "run", seed=4))
    assert run.gen.initial_seed() == 4000
    big = trainer(two_step_config(short_family, tmp_path / "big", seed=MAX_SEED))
    assert big.gen.initial_seed() == (MAX_SEED * 1000) % 2**64


@pytest.mark.parametrize("budget, message", [
    (dict(minutes=0), "--minutes must be a number above 0, got 0"),
    (dict(), "give a budget"),
    (dict(minutes=-1.0), "--minutes must be a number above 0, got -1.0"),
    (dict(minutes=float("nan"), max_steps=5), "--minutes must be a number above 0, got nan"),
    (dict(max_steps=0, minutes=1.0), "--max-steps must be a number above 0, got 0"),
])
def test_a_trainer_without_a_budget_that_ends_it_is_refused(tmp_path, family_and_clusters, budget, message):
    """TrainConfig(minutes=0), as `benchmarks/ablate_recipe.py --cpu-minutes 0` built it, trained for ever
    (0 is no budget); a negative budget trained no step and the benchmark reported ELBO 0.000 ± 0.000."""
    fasta, _ = family_and_clusters
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        trainer(dropout_config(fasta, tmp_path / "run", **budget))
    assert not (tmp_path / "run").exists()


# ---- a DDP step is the step of one process seeing every rank's batch -------------------------------------
# Rank r takes one step with a deterministic stand-in for the loss (per-sequence cross-entropy of the
# clean sequence, no times or masks), records the (DDP-averaged) gradient before the optimizer step,
# its batch, and the initial weights.
ONE_DDP_STEP = """
import json, sys
import torch, torch.distributed as dist
import torch.nn.functional as F
import sedd.train as T

def cross_entropy(model, x0, lengths, schedule, mask_id, t=None, generator=None, *, pad_id):
    valid = torch.arange(x0.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    logits = model(torch.where(valid, x0, torch.full_like(x0, pad_id)))
    nll = -F.log_softmax(logits.float(), -1).gather(-1, x0.clamp(max=logits.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
    return (nll * valid).sum(-1)

T.diffusion_loss = cross_entropy
out, data = sys.argv[1], sys.argv[2]
cfg = T.TrainConfig(data=data, out=out + "/run", preset="tiny", tokens_per_batch=256, dropout=0.0, grad_clip=1e9,
                    max_steps=1, eval_every=1000, eval_max_seqs=8, checkpoint_minutes=60, device="cpu")
trainer = T.Trainer(cfg)
rank = dist.get_rank()
init = {k: v.clone() for k, v in trainer.model.state_dict().items()}
tokens = trainer._next_batch()
grads = {}
trainer.opt.step = lambda: grads.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
loss = trainer.train_step(tokens)
torch.save({"init": init, "tokens": tokens, "grads": grads, "loss": loss, "residues": trainer.step_residues},
           f"{out}/rank{rank}.pt")
del trainer
dist.destroy_process_group()
"""


def _torchrun_script(script: Path, *args) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), *args]
    result = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_ddp_step_is_the_step_of_one_process_seeing_every_ranks_batch(tmp_path, uneven_family):
    """The loss is per residue of the whole step: ranks whose batches hold different numbers of
    residues average their gradients (DDP) to the gradient of Σ nats / Σ residues over both batches,
    and every rank reports that loss and counts both batches' residues."""
    import torch.nn.functional as F
    script = tmp_path / "one_ddp_step.py"
    script.write_text(ONE_DDP_STEP)
    _torchrun_script(script, str(tmp_path), str(uneven_family))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    sizes = [sum(map(len, r["tokens"])) for r in ranks]
    assert sizes[0] != sizes[1], "the test needs batches of different sizes"
    assert_same_tensors(ranks[0]["grads"], ranks[1]["grads"])

    model = ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, max_len=TrainConfig.max_len, dropout=0.0))
    model.load_state_dict(ranks[0]["init"])
    nats, residues = 0.0, 0
    for r in ranks:
        for seq in r["tokens"]:
            logits = model(torch.tensor([seq]))
            nats = nats + F.cross_entropy(logits[0].float(), torch.tensor(seq), reduction="sum")
            residues += len(seq)
    (nats / residues).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(ranks[0]["grads"][name], p.grad, rtol=1e-4, atol=1e-7, msg=name)
    assert ranks[0]["loss"] == ranks[1]["loss"] == pytest.approx((nats / residues).item(), rel=1e-5)
    assert ranks[0]["residues"] == ranks[1]["residues"] == residues           # what tokens_seen adds up


DROPOUT_PER_RANK = """
import sys
import torch, torch.distributed as dist
import sedd.train as T

out, data = sys.argv[1], sys.argv[2]
cfg = T.TrainConfig(data=data, out=out + "/run", preset="tiny", tokens_per_batch=256, dropout=0.5,
                    max_steps=1, eval_every=1000, eval_max_seqs=8, checkpoint_minutes=60, device="cpu")
trainer = T.Trainer(cfg)
rank = dist.get_rank()
x = torch.ones(4096)
torch.save({"model": trainer.model.state_dict(), "mask": torch.nn.functional.dropout(x, 0.5) > 0},
           f"{out}/rank{rank}.pt")
del trainer
dist.destroy_process_group()
"""


def test_every_ddp_rank_draws_its_own_dropout_masks(tmp_path, uneven_family):
    """Every rank seeded torch's generator alike, so the ranks drew the same dropout masks: correlated
    noise, not the independent masks of one process on the whole batch. Rank 0 draws as before, and
    the weights stay one model."""
    script = tmp_path / "dropout_per_rank.py"
    script.write_text(DROPOUT_PER_RANK)
    _torchrun_script(script, str(tmp_path), str(uneven_family))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert_same_tensors(ranks[0]["model"], ranks[1]["model"])
    assert (ranks[0]["mask"] != ranks[1]["mask"]).float().mean() > 0.4     # independent: about half differ
    torch.manual_seed(TrainConfig.seed)
    ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, max_len=TrainConfig.max_len, dropout=0.5))
    ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, max_len=TrainConfig.max_len, dropout=0.5))   # the EMA copy
    assert torch.equal(torch.nn.functional.dropout(torch.ones(4096), 0.5) > 0, ranks[0]["mask"])


# Each rank's clock runs at its own speed (rank 1's 30 % faster): the ranks must still agree on the
# time, hence on the LR of every step, so the replicas stay one model.
SKEWED_CLOCKS = """
import sys
import torch, torch.distributed as dist
import sedd.train as T

class Clock:
    def __init__(self, tick):
        self.now, self.tick = 0.0, tick
    def __call__(self):
        self.now += self.tick
        return self.now

out, data = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo")
rank = dist.get_rank()
T.CLOCKS["cpu"] = Clock(0.5 if rank == 0 else 0.65)
cfg = T.TrainConfig(data=data, out=out + "/run", preset="tiny", tokens_per_batch=256, dropout=0.0, minutes=0.25,
                    warmup_steps=2, clock="cpu", eval_every=1000, eval_max_seqs=8, checkpoint_minutes=60, device="cpu")
trainer = T.Trainer(cfg)
trainer.run()
torch.save({"model": trainer.model.state_dict(), "step": trainer.step, "tokens_seen": trainer.tokens_seen},
           f"{out}/rank{rank}.pt")
del trainer
dist.destroy_process_group()
"""


def test_ddp_ranks_with_clocks_that_disagree_stay_one_model_under_minutes(tmp_path, uneven_family):
    script = tmp_path / "skewed_clocks.py"
    script.write_text(SKEWED_CLOCKS)
    _torchrun_script(script, str(tmp_path), str(uneven_family))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["step"] == ranks[1]["step"] > 2
    assert ranks[0]["tokens_seen"] == ranks[1]["tokens_seen"]
    assert_same_tensors(ranks[0]["model"], ranks[1]["model"])
