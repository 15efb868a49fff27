"""Audit of what training computes and saves: exact resume past warm-up, the LR schedule on the clock,
one validation per step, DDP steps that equal one process seeing every rank's batch, splits that
never put one sequence on both sides."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd.alphabet import PROTEIN
from sedd.data import Dataset, split
from sedd.model import ScoreNetwork, preset
from sedd.train import RESUME_NAME, TrainConfig, Trainer, lr_at, read_resume, saved_config

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


@pytest.fixture
def family(tmp_path):
    """120 sequences of lengths 12–40 from one profile: a few batches per epoch, of unequal sizes."""
    seqs, _ = profile_family(120, 40, seed=0)
    seqs = [s[:12 + (7 * i) % 29] for i, s in enumerate(seqs)]
    path = tmp_path / "family.fasta"
    write_fasta(path, seqs)
    return path


def config(data, out, **kw) -> TrainConfig:
    defaults = dict(preset="tiny", tokens_per_batch=256, warmup_steps=4, eval_every=7, eval_max_seqs=16, lr=3e-3,
                    dropout=0.1, time_sampling="importance", checkpoint_minutes=60, patience=0)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def trainer(cfg: TrainConfig) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # the by-sequence split warning
        return Trainer(cfg)


class Killed(Exception):
    pass


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ---- resume --------------------------------------------------------------------------------------------
def test_a_run_killed_past_warm_up_resumes_to_the_uninterrupted_run_bit_for_bit(tmp_path, family, monkeypatch):
    """30 steps in one go vs the same run killed after its step-16 save and resumed: past warm-up (the
    cosine decay fitted to the same budget), across epochs, with dropout and importance-sampled t
    (whose statistics adapt the proposal after 200 draws), the two end equal in everything: weights,
    EMA, optimizer, best weights, history (losses and LRs), time-sampler statistics, data position."""
    straight = trainer(config(family, tmp_path / "straight", max_steps=30, tokens_per_batch=512))
    straight.run()

    killed = trainer(config(family, tmp_path / "split", max_steps=30, tokens_per_batch=512, checkpoint_minutes=0))
    save = Trainer.save

    def save_then_die_at_16(self):
        save(self)
        if self.step == 16:
            raise Killed
    monkeypatch.setattr(Trainer, "save", save_then_die_at_16)
    with pytest.raises(Killed):
        killed.run()
    monkeypatch.setattr(Trainer, "save", save)
    resumed = trainer(config(family, tmp_path / "split", max_steps=30, tokens_per_batch=512, resume=True))
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


def test_every_training_option_round_trips_through_resume_pt(tmp_path, family):
    """Every TrainConfig field, each set off its default, is read back from resume.pt as written."""
    cfg = config(family, tmp_path / "run", max_steps=2, minutes=5.0, val_fraction=0.1, min_lr_fraction=0.2,
                 weight_decay=0.01, grad_clip=0.5, ema_decay=0.99, max_len=64, patience=3, max_bad_steps=2, seed=4,
                 device="cpu", dropout=0.2, alphabet={"residues": PROTEIN.residues, "mask_chars": "_"},
                 model_overrides={"mlp": "swiglu"}, optimizer="muon", time_sampling="antithetic", clock="cpu")
    defaults = TrainConfig(data="", out="")
    unchanged = [f for f in vars(defaults) if getattr(cfg, f) == getattr(defaults, f)]
    assert unchanged == ["resume", "clusters", "compile", "init_from"]       # the ones a plain run cannot set
    trainer(cfg).run()
    assert saved_config(read_resume(tmp_path / "run" / RESUME_NAME)) == cfg


def test_a_run_saved_on_another_device_type_resumes_reseeded_and_reproducibly(tmp_path, family, capsys):
    """A GPU run continued on a CPU: the saved generator state is a CUDA one (16 bytes, no Mersenne
    Twister state), so the generators are reseeded from (seed, step), said on stderr, and two
    resumes of the same file train the same weights."""
    trainer(config(family, tmp_path / "gpu", max_steps=6)).run()
    state = read_resume(tmp_path / "gpu" / RESUME_NAME)
    state.update(device_type="cuda", gen=torch.zeros(16, dtype=torch.uint8), cuda_rng=torch.zeros(16, dtype=torch.uint8))
    weights = []
    for copy in ("a", "b"):
        (tmp_path / copy).mkdir()
        torch.save(state, tmp_path / copy / RESUME_NAME)
        resumed = trainer(config(family, tmp_path / copy, max_steps=10, resume=True))
        assert "saved on cuda and continues on cpu" in capsys.readouterr().err
        resumed.run()
        assert resumed.step == 10
        weights.append(resumed.model.state_dict())
    assert_same_tensors(*weights)


def test_a_resumed_command_line_run_reads_its_resume_file_once(tmp_path, family, monkeypatch):
    """main checks the options against resume.pt and hands what it read to the trainer."""
    import sedd.train as T
    T.main(["--data", str(family), "--out", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "3",
            "--tokens-per-batch", "256", "--eval-every", "1000"])
    reads = []
    real = T.read_resume
    monkeypatch.setattr(T, "read_resume", lambda path: reads.append(path) or real(path))
    T.main(["--out", str(tmp_path / "run"), "--resume", "--max-steps", "5"])
    assert len(reads) == 1
    assert read_resume(tmp_path / "run" / RESUME_NAME)["step"] == 5


# ---- the learning-rate schedule ---------------------------------------------------------------------------
class FakeClock:
    """A clock that moves ``tick`` seconds at every reading: a run's seconds are a function of its calls."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def lrs(history: list[dict]) -> list[float]:
    return [h["lr"] for h in history if "lr" in h]


def test_under_minutes_the_lr_warms_up_by_steps_then_ends_on_its_floor_with_the_budget(tmp_path, family, monkeypatch):
    """--minutes alone: warm-up over the first steps, then the cosine decay follows the clock and the
    last step's LR is within a tick of the floor; a resume with a larger budget refits the decay to
    the new end and ends on the floor again."""
    import sedd.train as T
    monkeypatch.setitem(T.CLOCKS, "cpu", FakeClock(0.5))
    cfg = config(family, tmp_path / "run", minutes=0.5, warmup_steps=10, lr=1e-2, min_lr_fraction=0.1, clock="cpu",
                 eval_every=1000)
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
    again = trainer(config(family, tmp_path / "run", minutes=1.0, warmup_steps=10, lr=1e-2, min_lr_fraction=0.1,
                           clock="cpu", eval_every=1000, resume=True))
    assert again.warmup_seconds == first.warmup_seconds
    again.run()
    seen = sorted(set(calls))
    assert seen[0][1] == pytest.approx((first.seconds - first.warmup_seconds) / (60 - first.warmup_seconds), abs=0.05)
    assert seen[-1][1] == pytest.approx(1.0, abs=0.05) and again.seconds >= 60


def test_under_max_steps_the_lr_warms_up_then_decays_to_the_floor_on_the_last_step(tmp_path, family):
    """Warm-up over steps 0–4 to the peak, then the cosine decay from the peak at step 5 to the floor
    at step 39, the last one of --max-steps 40."""
    cfg = config(family, tmp_path / "run", max_steps=40, warmup_steps=5, lr=1e-2, min_lr_fraction=0.1, eval_every=1000)
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


# ---- validation and what ships -------------------------------------------------------------------------------
def test_the_ema_after_n_steps_follows_the_warm_up_decay(tmp_path, family):
    """After each step n (0, 1, 2, …), ema ← d·ema + (1 − d)·weights with d = min(0.999, (1+n)/(10+n))."""
    run = trainer(config(family, tmp_path / "run", max_steps=3, eval_every=1000))
    expected = {k: v.clone() for k, v in run.ema.state_dict().items()}
    for n in range(3):
        run.train_step(run._next_batch())
        run.step += 1
        d = min(0.999, (1 + n) / (10 + n))
        expected = {k: d * v + (1 - d) * run.model.state_dict()[k] for k, v in expected.items()}
    for name, value in run.ema.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-6, atol=1e-7, msg=name)


def test_each_step_is_validated_at_most_once(tmp_path, family):
    """A budget that ends on a validation step: one validation record there, not two."""
    run = trainer(config(family, tmp_path / "run", max_steps=14, eval_every=7))
    run.run()
    steps = [h["step"] for h in run.history if "val_elbo_ema" in h]
    assert steps == [7, 14]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["step"] for h in history if "val_elbo_ema" in h] == [7, 14]


def test_under_the_cpu_clock_the_summary_keeps_wall_and_clock_seconds_apart(tmp_path, family, monkeypatch):
    """--clock cpu: the budget counts the clock's seconds (``clock_seconds``), while ``wall_seconds``
    stays the wall time the loop took; both survive a resume and keep counting from there."""
    import time

    import sedd.train as T
    monkeypatch.setitem(T.CLOCKS, "cpu", FakeClock(0.5))        # 0.5 "CPU seconds" per reading
    started = time.time()
    trainer(config(family, tmp_path / "run", minutes=0.5, clock="cpu", eval_every=1000)).run()
    elapsed = time.time() - started
    summary = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert summary["clock_seconds"] >= 30
    assert 0 < summary["wall_seconds"] <= elapsed < summary["clock_seconds"]
    again = trainer(config(family, tmp_path / "run", minutes=1.0, clock="cpu", eval_every=1000, resume=True))
    assert (round(again.wall_seconds, 1), round(again.seconds, 1)) == (summary["wall_seconds"], summary["clock_seconds"])
    again.run()
    assert again.wall_seconds > summary["wall_seconds"] and again.seconds >= 60


def test_the_summary_counts_what_the_run_did(tmp_path, family):
    """config.json's steps and residues are the run's own: the sum over the batches it trained on."""
    run = trainer(config(family, tmp_path / "run", max_steps=9, time_sampling="antithetic"))
    residues = []
    next_batch = run._next_batch
    run._next_batch = lambda: (lambda b: residues.append(sum(map(len, b))) or b)(next_batch())
    run.run()
    summary = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert summary["steps"] == 9 and summary["tokens_seen"] == sum(residues)     # antithetic copies not counted
    assert summary["best_step"] in (7, 9)


# ---- DDP ----------------------------------------------------------------------------------------------------
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


def _torchrun(script: Path, *args) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), *args]
    result = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_ddp_step_is_the_step_of_one_process_seeing_every_ranks_batch(tmp_path, family):
    """The loss is per residue of the whole step: ranks whose batches hold different numbers of
    residues average their gradients (DDP) to the gradient of Σ nats / Σ residues over both batches,
    and every rank reports that loss and counts both batches' residues."""
    import torch.nn.functional as F
    script = tmp_path / "one_ddp_step.py"
    script.write_text(ONE_DDP_STEP)
    _torchrun(script, str(tmp_path), str(family))
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


def test_ddp_ranks_with_clocks_that_disagree_stay_one_model_under_minutes(tmp_path, family):
    script = tmp_path / "skewed_clocks.py"
    script.write_text(SKEWED_CLOCKS)
    _torchrun(script, str(tmp_path), str(family))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["step"] == ranks[1]["step"] > 2
    assert ranks[0]["tokens_seen"] == ranks[1]["tokens_seen"]
    assert_same_tensors(ranks[0]["model"], ranks[1]["model"])


# ---- the split ----------------------------------------------------------------------------------------------
def dataset(sequences: list[str], ids: list[str] | None = None) -> Dataset:
    ids = ids or [f"s{i}" for i in range(len(sequences))]
    return Dataset(ids, [PROTEIN.encode(s) for s in sequences])


@pytest.mark.parametrize("seed", range(6))
def test_no_sequence_is_on_both_sides_of_a_cluster_split(seed):
    """The same sequence under two ids in different clusters (a cluster file made from other data,
    or one that lacks ids): validation keeps its whole clusters, training loses the copies of them."""
    seqs, _ = profile_family(60, 12, seed=1)
    data = dataset(seqs + seqs[:20], [f"a{i}" for i in range(60)] + [f"copy{i}" for i in range(20)])
    clusters = {f"a{i}": f"c{i // 3}" for i in range(60)}           # the copies are missing: their own clusters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, val = split(data, 0.2, seed, clusters)
    assert not set(map(tuple, train.tokens)) & set(map(tuple, val.tokens))
    cluster_of = lambda seq_id: clusters.get(seq_id, seq_id)          # noqa: E731
    assert not {cluster_of(i) for i in train.ids} & {cluster_of(i) for i in val.ids}
    assert len(val) >= 0.2 * len(data)
    left_out = sorted(set(data.ids) - set(train.ids) - set(val.ids))
    assert left_out and all(data.tokens[data.ids.index(i)] in val.tokens for i in left_out)
    first = next(i for i in data.ids if i in left_out)
    assert [str(w.message) for w in caught] == [f"left {len(left_out)} sequence(s) out of training, copies of "
                                                f"held-out sequences under other ids in other clusters (first: {first})"]


def test_a_split_without_duplicates_is_unchanged():
    """Where no sequence repeats, the split is the one published runs were trained on (pinned ids)."""
    seqs, _ = profile_family(40, 12, seed=3)
    data = dataset(seqs)
    clusters = {f"s{i}": f"c{i // 4}" for i in range(40)}
    assert split(data, 0.2, 0, clusters)[1].ids == PINNED_CLUSTER_VAL
    with pytest.warns(UserWarning):
        assert split(data, 0.2, 0)[1].ids == PINNED_SEQUENCE_VAL


PINNED_CLUSTER_VAL = ["s28", "s29", "s30", "s31", "s32", "s33", "s34", "s35"]
PINNED_SEQUENCE_VAL = ["s0", "s12", "s15", "s21", "s27", "s29", "s34", "s38"]
