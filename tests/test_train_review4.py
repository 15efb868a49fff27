"""Review of the training maths and options: every --seed the command line accepts starts (and resumes) a run."""
import warnings

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd.cli import MAX_SEED
from sedd.train import RESUME_NAME, TrainConfig, Trainer, main, read_resume


@pytest.fixture
def family(tmp_path):
    seqs, _ = profile_family(60, 30, seed=0)
    seqs = [s[:12 + (7 * i) % 19] for i, s in enumerate(seqs)]
    path = tmp_path / "family.fasta"
    write_fasta(path, seqs)
    return path


def config(data, out, **kw) -> TrainConfig:
    defaults = dict(preset="tiny", tokens_per_batch=256, warmup_steps=2, eval_every=1000, eval_max_seqs=8,
                    checkpoint_minutes=60, patience=0, max_steps=2)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def trainer(cfg: TrainConfig) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # the by-sequence split warning
        return Trainer(cfg)


def test_the_largest_seed_the_command_line_accepts_trains(tmp_path, family, capsys):
    """--seed takes 0 … 2**63 − 1, but the generator of times and masks was seeded with seed · 1000 + rank,
    past torch's 2**64 for any seed above about 1.8e16: `--seed 9223372036854775807` ended with
    "error: Overflow when unpacking long long" before the first step."""
    main(["--data", str(family), "--out", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "2",
          "--tokens-per-batch", "256", "--eval-every", "1000", "--seed", str(MAX_SEED)])
    assert "wrote" in capsys.readouterr().err
    assert read_resume(tmp_path / "run" / RESUME_NAME)["step"] == 2


def test_seeds_that_worked_before_draw_what_they_drew(tmp_path, family):
    """The fix reduces only seeds past 2**64: published runs' generators are seeded as they were."""
    run = trainer(config(family, tmp_path / "run", seed=4))
    assert run.gen.initial_seed() == 4000
    big = trainer(config(family, tmp_path / "big", seed=MAX_SEED))
    assert big.gen.initial_seed() == (MAX_SEED * 1000) % 2**64


def test_a_run_with_a_huge_seed_resumed_on_another_device_type_reseeds(tmp_path, family, capsys):
    """The reseeding of a resume that cannot restore the saved generators (another device type, or DDP)
    used seed · 1000 + rank + 7919 · step, which overflowed the same way."""
    trainer(config(family, tmp_path / "gpu", seed=MAX_SEED)).run()
    state = read_resume(tmp_path / "gpu" / RESUME_NAME)
    state.update(device_type="cuda", gen=torch.zeros(16, dtype=torch.uint8), cuda_rng=torch.zeros(16, dtype=torch.uint8))
    (tmp_path / "cpu").mkdir()
    torch.save(state, tmp_path / "cpu" / RESUME_NAME)
    resumed = trainer(config(family, tmp_path / "cpu", seed=MAX_SEED, max_steps=4, resume=True))
    assert "saved on cuda and continues on cpu" in capsys.readouterr().err
    resumed.run()
    assert resumed.step == 4


def test_a_warm_up_as_long_as_the_run_is_named_with_what_to_give_instead(tmp_path, family, capsys):
    """--max-steps 40 with the default 200 warm-up steps trained at a fifth of --lr at most, with no
    cosine decay, and said nothing."""
    base = ["--data", str(family), "--preset", "tiny", "--tokens-per-batch", "256", "--eval-every", "1000"]
    main([*base, "--out", str(tmp_path / "short"), "--max-steps", "3", "--warmup-steps", "3"])
    assert ("warning: --warmup-steps 3 is not below --max-steps 3: the learning rate rises for the whole run and "
            "never reaches --lr 0.001 nor decays; give fewer warm-up steps (a tenth of the run: --warmup-steps 1)"
            in capsys.readouterr().err)
    main([*base, "--out", str(tmp_path / "ok"), "--max-steps", "3", "--warmup-steps", "2"])
    assert "warm-up" not in capsys.readouterr().err
