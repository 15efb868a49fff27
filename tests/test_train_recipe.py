"""Recipe options of training survive the checkpoint and --resume, and a changed recipe is refused."""
import json
import warnings

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd import checkpoint
from sedd.alphabet import PROTEIN, Alphabet
from sedd.autoregressive import autoregressive_config
from sedd.model import ScoreNetwork, preset, weights_from_causal_twin
from sedd.optim import Optimizers
from sedd.schedule import LogLinearSchedule
from sedd.time_sampling import ImportanceTimes
from sedd.train import RESUME_NAME, TrainConfig, Trainer, main

RECIPE = ["--optimizer", "muon", "--time-sampling", "importance", "--mlp", "swiglu", "--tie-embeddings",
          "--warmup-steps", "3", "--clock", "cpu"]


@pytest.fixture
def data(tmp_path):
    seqs, _ = profile_family(200, 24, seed=0)
    path = tmp_path / "family.fasta"
    write_fasta(path, seqs)
    return path


def cli(data, out, *extra) -> None:
    argv = ["--data", str(data), "--out", str(out), "--preset", "tiny", "--tokens-per-batch", "512",
            "--dropout", "0", "--eval-every", "5", "--checkpoint-minutes", "60", *extra]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # the by-sequence split warning
        main(argv)


def resume_trainer(data, out, **overrides) -> Trainer:
    recipe = dict(preset="tiny", tokens_per_batch=512, dropout=0.0, resume=True, max_steps=30, warmup_steps=3,
                  optimizer="muon", time_sampling="importance", clock="cpu",
                  model_overrides={"mlp": "swiglu", "tie_embeddings": True})
    cfg = TrainConfig(data=str(data), out=str(out), **{**recipe, **overrides})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Trainer(cfg)


def test_recipe_options_round_trip_through_the_checkpoint_and_resume(tmp_path, data):
    out = tmp_path / "run"
    cli(data, out, "--max-steps", "12", *RECIPE)
    config = json.loads((out / "config.json").read_text())
    saved = config["training"]["config"]
    assert (saved["optimizer"], saved["time_sampling"], saved["clock"], saved["warmup_steps"]) == ("muon", "importance", "cpu", 3)
    assert saved["model_overrides"] == {"mlp": "swiglu", "tie_embeddings": True}
    loaded = checkpoint.load(out)
    assert loaded.model.config.mlp == "swiglu" and loaded.model.config.tie_embeddings

    state = torch.load(out / RESUME_NAME, weights_only=True)
    trainer = resume_trainer(data, out)
    assert isinstance(trainer.opt, Optimizers) and trainer.step == 12
    saved_buffer = state["opt"]["muon"]["state"][0]["momentum_buffer"]
    assert torch.equal(trainer.opt.optimizers["muon"].state_dict()["state"][0]["momentum_buffer"], saved_buffer)
    assert isinstance(trainer.times, ImportanceTimes) and int(trainer.times.count.sum()) > 0
    assert torch.equal(trainer.times.second_moment, state["times"]["second_moment"])

    cli(data, out, "--max-steps", "20", "--resume", *RECIPE)          # the CLI continues with the same recipe
    summary = json.loads((out / "config.json").read_text())["training"]
    assert summary["steps"] == 20 and summary["config"]["optimizer"] == "muon"
    assert int(torch.load(out / RESUME_NAME, weights_only=True)["times"]["count"].sum()) > int(trainer.times.count.sum())


def test_a_run_started_from_an_autoregressive_baseline_records_it_and_resumes(tmp_path, data, capsys):
    torch.manual_seed(1)
    twin = ScoreNetwork(autoregressive_config(preset("tiny", vocab_size=PROTEIN.size, max_len=24)))
    baseline = checkpoint.save(tmp_path / "ar", twin, PROTEIN, LogLinearSchedule(), {24: 1})
    trainer = resume_trainer(data, tmp_path / "run", resume=False, init_from=str(baseline), model_overrides={},
                             optimizer="adamw")
    fresh = ScoreNetwork(trainer.model.config).state_dict()
    expected = weights_from_causal_twin(twin.state_dict(), fresh, PROTEIN.size)
    for name in ("blocks.0.attn.qkv.weight", "head.weight"):                        # step 0: the twin's weights
        assert name in expected and torch.equal(trainer.model.state_dict()[name], expected[name])
        assert torch.equal(trainer.ema.state_dict()[name], expected[name])

    out = tmp_path / "run2"
    cli(data, out, "--max-steps", "6", "--init-from", str(baseline))
    assert json.loads((out / "config.json").read_text())["training"]["config"]["init_from"] == str(baseline)
    cli(data, out, "--max-steps", "9", "--init-from", str(baseline), "--resume")
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == 9

    with pytest.raises(SystemExit) as stop:          # a baseline of another recipe: what differs, and the option
        cli(data, tmp_path / "run4", "--max-steps", "2", "--init-from", str(baseline), "--mlp", "swiglu",
            "--tie-embeddings")
    assert stop.value.code == 2
    assert (f"error: --init-from {baseline}: the autoregressive baseline's network is not this run's (mlp gelu there, "
            "swiglu here; tie_embeddings False there, True here): train with --mlp gelu and no --tie-embeddings") in \
        capsys.readouterr().err

    reversed_alphabet = Alphabet(PROTEIN.residues[::-1], mask_chars="_")      # rows are copied by residue id
    other = checkpoint.save(tmp_path / "ar-other", twin, reversed_alphabet, LogLinearSchedule(), {24: 1})
    with pytest.raises(SystemExit) as stop:
        cli(data, tmp_path / "run5", "--max-steps", "2", "--init-from", str(other))
    assert stop.value.code == 2
    assert (f"error: --init-from {other}: the autoregressive baseline's alphabet is {reversed_alphabet.residues!r}, "
            f"this run's {PROTEIN.residues!r}: train with the baseline's alphabet") in capsys.readouterr().err

    with pytest.raises(SystemExit) as stop:                               # the CLI says why, no traceback
        cli(data, tmp_path / "run3", "--max-steps", "2", "--init-from", str(out))
    assert stop.value.code == 2
    assert f"error: --init-from {out}: {out} holds a diffusion model; this needs an autoregressive baseline" in \
        capsys.readouterr().err


def test_resume_with_a_different_recipe_names_what_changed(tmp_path, data):
    out = tmp_path / "run"
    cli(data, out, "--max-steps", "6", *RECIPE)
    with pytest.raises(ValueError, match=r"different recipe \(optimizer: 'muon' there, 'adamw' now\)"):
        resume_trainer(data, out, optimizer="adamw")
    with pytest.raises(ValueError, match=r"model_overrides: \{'mlp': 'swiglu', 'tie_embeddings': True\} there, \{\} now"):
        resume_trainer(data, out, model_overrides={})


@pytest.mark.slow          # inductor compiles the forward and backward: about a CPU-minute
def test_compiled_training_matches_eager_training(tmp_path, data):
    """torch.compile changes how the step runs, not what it computes."""
    def run(compile_: bool):
        torch.manual_seed(0)
        cfg = TrainConfig(data=str(data), out=str(tmp_path / f"c{compile_}"), preset="tiny", tokens_per_batch=512,
                          dropout=0.0, max_steps=4, warmup_steps=2, eval_every=100, eval_max_seqs=8, compile=compile_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            trainer = Trainer(cfg)
        trainer.run()
        return trainer.model.state_dict()
    eager, compiled = run(False), run(True)
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)


def test_unknown_clock_is_refused(tmp_path, data):
    with pytest.raises(ValueError, match="unknown clock 'gpu'; choose one of wall, cpu"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        Trainer(TrainConfig(data=str(data), out=str(tmp_path / "x"), preset="tiny", clock="gpu"))
