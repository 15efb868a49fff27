"""A run stopped and resumed: killed past warm-up, stopped by Ctrl-C or kill, saved on another device type
or number of processes, or by a newer sedd. A resume ends where the uninterrupted run ends, bit for bit,
or says why it cannot (resume after kill -9 and the command line's --resume: ``test_train.py``,
``test_train_cli.py``)."""
import json
import os
import pickle
import signal
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from sedd.alphabet import PROTEIN
from sedd.cli import MAX_SEED
from sedd.train import RESUME_NAME, TrainConfig, Trainer, main, read_resume, saved_config
from train_helpers import assert_same_tensors, dropout_config, importance_config, trainer, two_step_config

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


class Killed(Exception):
    pass


def test_a_run_killed_past_warm_up_resumes_to_the_uninterrupted_run_bit_for_bit(tmp_path, uneven_family, monkeypatch):
    """30 steps in one go vs the same run killed after its step-16 save and resumed: past warm-up (the
    cosine decay fitted to the same budget), across epochs, with dropout and importance-sampled t
    (whose statistics adapt the proposal after 200 draws), the two end equal in everything: weights,
    EMA, optimizer, best weights, history (losses and LRs), time-sampler statistics, data position."""
    straight = trainer(importance_config(uneven_family, tmp_path / "straight", max_steps=30, tokens_per_batch=512))
    straight.run()

    killed = trainer(importance_config(uneven_family, tmp_path / "split", max_steps=30, tokens_per_batch=512,
                                       checkpoint_minutes=0))
    save = Trainer.save

    def save_then_die_at_16(self):
        save(self)
        if self.step == 16:
            raise Killed
    monkeypatch.setattr(Trainer, "save", save_then_die_at_16)
    with pytest.raises(Killed):
        killed.run()
    monkeypatch.setattr(Trainer, "save", save)
    resumed = trainer(importance_config(uneven_family, tmp_path / "split", max_steps=30, tokens_per_batch=512,
                                        resume=True))
    assert resumed.step == 16 and resumed.epoch >= 1 and int(resumed.times.count.sum()) > 0
    resumed.run()

    assert straight.epoch >= 2 and int(straight.times.count.min()) >= 10       # the proposal adapted
    for a, b in ((straight.model, resumed.model), (straight.ema, resumed.ema)):
        assert_same_tensors(a.state_dict(), b.state_dict())
    assert_same_tensors(straight.best["weights"], resumed.best["weights"])
    assert straight.best["step"] == resumed.best["step"]
    assert straight.history == resumed.history
    assert_same_tensors(straight.times.state_dict(), resumed.times.state_dict())
    one, two = straight.opt.state_dict(), resumed.opt.state_dict()
    assert one["param_groups"] == two["param_groups"]
    for i in one["state"]:
        assert_same_tensors(one["state"][i], two["state"][i])
    assert (straight.tokens_seen, straight.epoch, straight.batch_in_epoch) == \
        (resumed.tokens_seen, resumed.epoch, resumed.batch_in_epoch)


def test_every_training_option_round_trips_through_resume_pt(tmp_path, uneven_family):
    """Every TrainConfig field, each set off its default, is read back from resume.pt as written."""
    cfg = importance_config(uneven_family, tmp_path / "run", max_steps=2, minutes=5.0, val_fraction=0.1,
                            min_lr_fraction=0.2, weight_decay=0.01, grad_clip=0.5, ema_decay=0.99, max_len=64,
                            patience=3, max_bad_steps=2, seed=4, device="cpu", dropout=0.2,
                            alphabet={"residues": PROTEIN.residues, "mask_chars": "_"},
                            model_overrides={"mlp": "swiglu"}, optimizer="muon", time_sampling="antithetic",
                            clock="cpu")
    defaults = TrainConfig(data="", out="")
    unchanged = [f for f in vars(defaults) if getattr(cfg, f) == getattr(defaults, f)]
    assert unchanged == ["resume", "clusters", "compile", "init_from"]       # the ones a plain run cannot set
    trainer(cfg).run()
    assert saved_config(read_resume(tmp_path / "run" / RESUME_NAME)) == cfg


def test_a_resumed_command_line_run_reads_its_resume_file_once(tmp_path, uneven_family, monkeypatch):
    """main checks the options against resume.pt and hands what it read to the trainer."""
    import sedd.train as T
    T.main(["--data", str(uneven_family), "--out", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "3",
            "--tokens-per-batch", "256", "--eval-every", "1000"])
    reads = []
    real = T.read_resume
    monkeypatch.setattr(T, "read_resume", lambda path: reads.append(path) or real(path))
    T.main(["--out", str(tmp_path / "run"), "--resume", "--max-steps", "5"])
    assert len(reads) == 1
    assert read_resume(tmp_path / "run" / RESUME_NAME)["step"] == 5


def test_a_step_out_of_memory_ends_in_one_line_with_the_steps_before_it_saved(tmp_path, uneven_family, monkeypatch,
                                                                             capsys):
    """A batch too large for memory (often a late one, of long sequences) ended the run with the
    allocator's traceback, and the steps since the last save were lost."""
    import sedd.train as T
    real = T.Trainer.train_step

    def step(self, tokens):
        if self.step == 3:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] . DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 536870912 bytes. Error code 12 (Cannot allocate memory)")
        return real(self, tokens)

    monkeypatch.setattr(T.Trainer, "train_step", step)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        T.main(["--data", str(uneven_family), "--out", str(out), "--preset", "tiny", "--max-steps", "6",
                "--tokens-per-batch", "256", "--eval-every", "1000", "--checkpoint-minutes", "60"])
    err = capsys.readouterr().err
    *_, line = err.strip().splitlines()                   # after the run's warnings (a random split, ...)
    assert stop.value.code == 2 and "Traceback" not in err and "alloc_cpu" not in err
    assert line.startswith("error: out of memory at step 4, a batch of ") and "lower --tokens-per-batch" in line
    assert f"the run up to step 3 is saved in {out}: --resume continues it" in line
    assert read_resume(out / RESUME_NAME)["step"] == 3
    monkeypatch.setattr(T.Trainer, "train_step", real)
    T.main(["--out", str(out), "--resume"])
    assert read_resume(out / RESUME_NAME)["step"] == 6


def test_an_error_that_is_not_memory_is_not_taken_for_it(tmp_path, uneven_family, monkeypatch):
    import sedd.train as T
    monkeypatch.setattr(T.Trainer, "train_step", lambda self, tokens: (_ for _ in ()).throw(RuntimeError("shape")))
    with pytest.raises(RuntimeError, match="shape"):
        T.main(["--data", str(uneven_family), "--out", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "2",
                "--tokens-per-batch", "256", "--eval-every", "1000"])


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
        tmp_path, family_and_clusters, monkeypatch, sigterm_interrupts, signum):
    """Ctrl-C (or kill) at step 7 of 16, long before the first timed save: the step finishes, the run
    saves at step 7 and says so, and --resume ends bit for bit where the uninterrupted run ends
    (weights, EMA, history and the shipped checkpoint). Before, Ctrl-C killed the run mid-step with a
    traceback, and everything since the last timed save (here: all of it) was lost."""
    data, _ = family_and_clusters
    straight = trainer(dropout_config(data, tmp_path / "straight", max_steps=16))
    straight.run()

    count_step = Trainer._count_step

    def count_then_signal(self, loss, bar):
        count_step(self, loss, bar)
        if self.step == 7:
            signal.raise_signal(signum)        # arrives in the middle of the run, as from the keyboard

    monkeypatch.setattr(Trainer, "_count_step", count_then_signal)
    stopped = trainer(dropout_config(data, tmp_path / "split", max_steps=16))
    with pytest.raises(KeyboardInterrupt) as stop:
        stopped.run()
    assert "--resume continues the run" in str(stop.value) and stop.value.step == 7
    assert pickle.loads(pickle.dumps(stop.value)).step == 7          # from a benchmark's worker process too
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the handlers are back
    assert signal.getsignal(signal.SIGTERM) is interrupt
    monkeypatch.setattr(Trainer, "_count_step", count_step)
    assert torch.load(tmp_path / "split" / RESUME_NAME, weights_only=True)["step"] == 7

    resumed = trainer(dropout_config(data, tmp_path / "split", max_steps=16, resume=True))
    resumed.run()
    assert resumed.history == straight.history
    for name in ("model", "ema"):
        for key, value in getattr(straight, name).state_dict().items():
            assert torch.equal(getattr(resumed, name).state_dict()[key], value), (name, key)
    assert (tmp_path / "split/model.safetensors").read_bytes() == (tmp_path / "straight/model.safetensors").read_bytes()


SECOND_CTRL_C = """
import signal, sys, types
from sedd.train import Trainer

class Finalised:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)            # the second Ctrl-C, while a finaliser runs
        sum(range(10_000))                            # Python runs the handler here, inside it

noted = types.SimpleNamespace(_signal=None)
with Trainer._signals_stop_after_the_step(noted, end_process=True):     # as the command line runs it
    signal.raise_signal(signal.SIGINT)                # the first: noted, the step goes on
    sum(range(10_000))
    print("first noted" if noted._signal == signal.SIGINT else "first lost", flush=True)
    Finalised()
    print("the run went on", flush=True)
"""


def test_a_second_ctrl_c_ends_the_run_at_once_even_inside_a_finaliser(tmp_path):
    """The second Ctrl-C raised a KeyboardInterrupt; when it landed in a finaliser (a weakref callback
    of torch's), Python swallowed it and the run went on to the end of its step and saved."""
    proc = subprocess.run([sys.executable, "-c", SECOND_CTRL_C], env=ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout == "first noted\n" and proc.returncode == -signal.SIGINT, (proc.stdout, proc.stderr)


def test_a_second_ctrl_c_in_a_library_caller_is_a_keyboard_interrupt_not_the_end_of_its_process():
    """A notebook's kernel (Python's own Ctrl-C handler) must survive a double interrupt of ``train``."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    noted = types.SimpleNamespace(_signal=None)
    try:
        with pytest.raises(KeyboardInterrupt):
            with Trainer._signals_stop_after_the_step(noted):
                signal.raise_signal(signal.SIGINT)
                assert noted._signal == signal.SIGINT
                signal.raise_signal(signal.SIGINT)
                sum(range(10_000))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_the_data_load_ends_the_command_line_with_one_line(tmp_path, family_and_clusters):
    """Before the run's own handler is in place (the data still loading) Ctrl-C printed a traceback.
    The load is made to raise what Ctrl-C raises there, and the module is run as ``python -m`` runs it."""
    data, _ = family_and_clusters
    script = ("import runpy, sys, sedd.data\n"
              "def interrupted(*args, **kwargs):\n    raise KeyboardInterrupt\n"
              "sedd.data.read_fasta = interrupted\n"
              f"sys.argv = ['sedd.train', '--data', {str(data)!r}, '--out', {str(tmp_path / 'run')!r}, "
              "'--preset', 'tiny', '--max-steps', '5']\n"
              "runpy.run_module('sedd.train', run_name='__main__', alter_sys=True)\n")
    done = subprocess.run([sys.executable, "-c", script], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGINT and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == "stopped by Ctrl-C"


def test_ctrl_c_on_the_command_line_saves_and_ends_by_sigint_without_a_traceback(tmp_path, family_and_clusters):
    """The user's view: `python -m sedd.train`, Ctrl-C after a validation, one line saying where the run
    was saved and how to continue, and --resume continues. The process ends by SIGINT itself (the
    shell's 130): it exited with status 130, and a shell loop of training runs went on to the next."""
    data, _ = family_and_clusters
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
    assert proc.returncode == -signal.SIGINT, err[-2000:]
    assert "Traceback" not in err
    assert f"--out {out} --resume continues the run" in err.strip().splitlines()[-1]
    step = torch.load(out / RESUME_NAME, weights_only=True)["step"]
    assert step >= 3
    done = subprocess.run([sys.executable, "-m", "sedd.train", "--out", str(out), "--resume", "--max-steps",
                           str(step + 2)], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"at step {step} " in done.stderr
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == step + 2


# ---- a run saved on another device type, by another number of processes, or by a newer sedd -------------
def test_a_run_saved_on_another_device_type_resumes_reseeded_and_reproducibly(tmp_path, uneven_family, capsys):
    """A GPU run continued on a CPU: the saved generator state is a CUDA one (16 bytes, no Mersenne
    Twister state), so the generators are reseeded from (seed, step), said on stderr, and two
    resumes of the same file train the same weights."""
    trainer(importance_config(uneven_family, tmp_path / "gpu", max_steps=6)).run()
    state = read_resume(tmp_path / "gpu" / RESUME_NAME)
    state.update(device_type="cuda", gen=torch.zeros(16, dtype=torch.uint8), cuda_rng=torch.zeros(16, dtype=torch.uint8))
    weights = []
    for copy in ("a", "b"):
        (tmp_path / copy).mkdir()
        torch.save(state, tmp_path / copy / RESUME_NAME)
        resumed = trainer(importance_config(uneven_family, tmp_path / copy, max_steps=10, resume=True))
        assert "saved on cuda and continues on cpu" in capsys.readouterr().err
        resumed.run()
        assert resumed.step == 10
        weights.append(resumed.model.state_dict())
    assert_same_tensors(*weights)


def test_a_run_with_a_huge_seed_resumed_on_another_device_type_reseeds(tmp_path, short_family, capsys):
    """The reseeding of a resume that cannot restore the saved generators (another device type, or DDP)
    used seed · 1000 + rank + 7919 · step, which overflowed the same way."""
    trainer(two_step_config(short_family, tmp_path / "gpu", seed=MAX_SEED)).run()
    state = read_resume(tmp_path / "gpu" / RESUME_NAME)
    state.update(device_type="cuda", gen=torch.zeros(16, dtype=torch.uint8), cuda_rng=torch.zeros(16, dtype=torch.uint8))
    (tmp_path / "cpu").mkdir()
    torch.save(state, tmp_path / "cpu" / RESUME_NAME)
    resumed = trainer(two_step_config(short_family, tmp_path / "cpu", seed=MAX_SEED, max_steps=4, resume=True))
    assert "saved on cuda and continues on cpu" in capsys.readouterr().err
    resumed.run()
    assert resumed.step == 4


def test_a_run_resumed_on_another_number_of_processes_says_how_its_steps_change(tmp_path, family_and_clusters, capsys):
    """A run saved by 2 torchrun processes and continued by one (a resume.pt that says world_size 2): each
    rank takes --tokens-per-batch a step, so the steps halve and the epoch's batches are dealt out anew.
    It continues, and says so; the same number of processes says nothing."""
    fasta, _ = family_and_clusters
    out = tmp_path / "run"
    trainer(dropout_config(fasta, out, max_steps=2)).run()
    capsys.readouterr()
    trainer(dropout_config(fasta, out, max_steps=3, resume=True)).run()
    assert "process(es)" not in capsys.readouterr().err
    state = torch.load(out / RESUME_NAME, weights_only=True)
    torch.save({**state, "world_size": 2}, out / RESUME_NAME)
    trainer(dropout_config(fasta, out, max_steps=4, resume=True)).run()
    assert ("resume: the run was saved by 2 process(es) and continues on 1: each step now takes 1 × 256 residues "
            "instead of 2 × 256") in capsys.readouterr().err


def test_a_resumed_run_keeps_its_count_of_non_finite_losses_in_a_row(tmp_path, family_and_clusters):
    """resume.pt did not keep it: a run saved right after non-finite losses resumed with
    --max-bad-steps fresh tries, which the uninterrupted run did not have."""
    fasta, _ = family_and_clusters
    out = tmp_path / "run"
    saved = trainer(dropout_config(fasta, out, max_steps=2))
    saved.run()
    saved._bad_in_row = 1
    saved.save()
    assert trainer(dropout_config(fasta, out, max_steps=3, resume=True))._bad_in_row == 1


def test_a_run_saved_by_a_newer_version_is_not_resumed_without_its_new_options(tmp_path, family_and_clusters, capsys):
    """A resume.pt whose config holds an option this version lacks (here 'label_smoothing'): before, the
    option was dropped without a word and the run continued as another run; now --resume names it."""
    fasta, _ = family_and_clusters
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
        trainer(dropout_config(fasta, out, max_steps=4, resume=True))


# Two ranks: 24 steps in one go, and the same run killed after its step-13 save and resumed.
DDP_KILLED_AND_RESUMED = """
import sys
import torch, torch.distributed as dist
import sedd.train as T

out, data = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo")
rank = dist.get_rank()


def config(name, **kw):
    settings = dict(preset="tiny", tokens_per_batch=256, dropout=0.1, lr=3e-3, warmup_steps=4, eval_every=7,
                    eval_max_seqs=16, time_sampling="importance", max_steps=24, checkpoint_minutes=60, patience=0,
                    device="cpu")
    return T.TrainConfig(data=data, out=f"{out}/{name}", **(settings | kw))


class Killed(Exception):
    pass


straight = T.Trainer(config("straight"))
straight.run()
save = T.Trainer.save


def save_then_die_at_13(self):
    save(self)
    if self.step == 13:
        raise Killed


T.Trainer.save = save_then_die_at_13
try:
    T.Trainer(config("split", checkpoint_minutes=0)).run()
except Killed:
    pass
T.Trainer.save = save
resumed = T.Trainer(config("split", resume=True))
resumed.run()
torch.save({"straight": straight.model.state_dict(), "resumed": resumed.model.state_dict(),
            "times": (straight.times.state_dict(), resumed.times.state_dict()),
            "steps": (straight.step, resumed.step)}, f"{out}/rank{rank}.pt")
dist.destroy_process_group()
"""


def test_a_torchrun_run_killed_and_resumed_on_as_many_processes_is_the_uninterrupted_run(tmp_path, uneven_family):
    """Every rank draws its own times, masks and dropout, and its importance sampler adapts to its own
    losses; resume.pt holds every rank's generators and statistics, so each continues its own (rank 0's
    alone, given to every rank, ended 0.04 away after 600 steps)."""
    script = tmp_path / "ddp_killed_and_resumed.py"
    script.write_text(DDP_KILLED_AND_RESUMED)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script), str(tmp_path), str(uneven_family)],
                            env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert saved["steps"] == (24, 24)
        assert_same_tensors(saved["straight"], saved["resumed"])
        assert_same_tensors(*saved["times"])


def test_a_run_started_in_another_directory_resumes_on_the_file_it_trained_on(tmp_path, short_family, monkeypatch):
    """--data as typed ('family.fasta') is relative to where the run started; resumed from a folder
    holding another family.fasta, the run used to read that one (and was refused for changed data),
    and no --data could name the right file (refused as another setting)."""
    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    started.mkdir(), elsewhere.mkdir()
    (started / "family.fasta").write_text(short_family.read_text())
    (elsewhere / "family.fasta").write_text(">other\nMKVLAGWW\n")
    out = tmp_path / "run"
    monkeypatch.chdir(started)
    trainer(two_step_config("family.fasta", out)).run()
    monkeypatch.chdir(elsewhere)
    assert saved_config(read_resume(out / RESUME_NAME)).data == str(started / "family.fasta")
    for steps, data in ((3, []), (4, ["--data", "../started/family.fasta"])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            main(["--out", str(out), "--resume", "--max-steps", str(steps), *data])
        assert read_resume(out / RESUME_NAME)["step"] == steps


def test_a_run_saved_with_a_network_setting_this_version_lacks_is_refused_by_name(tmp_path, short_family):
    out = tmp_path / "run"
    trainer(two_step_config(short_family, out)).run()
    state = read_resume(out / RESUME_NAME)
    state["config"] = json.dumps({**json.loads(state["config"]), "model_overrides": {"rope_base": 10000}})
    torch.save(state, out / RESUME_NAME)
    with pytest.raises(ValueError, match=r"network settings this version does not know \(rope_base\)"):
        saved_config(read_resume(out / RESUME_NAME))
