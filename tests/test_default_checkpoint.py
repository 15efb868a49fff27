"""Which model the app serves when none is named: acyp-base on a GPU when it exists, acyp otherwise."""
import pytest
import torch

import app
from sedd import checkpoint


@pytest.fixture
def fake_base(tmp_path, monkeypatch, tiny_checkpoint):
    """Point the GPU model's location at a tiny checkpoint (the real one is 25 M parameters)."""
    monkeypatch.setattr(checkpoint, "GPU_CHECKPOINT", tiny_checkpoint)
    monkeypatch.delenv("SEDD_CHECKPOINT", raising=False)
    return tiny_checkpoint


def test_gpu_serves_the_base_model_when_present_cpu_never(fake_base):
    assert checkpoint.default_for_device("cuda") == fake_base
    assert checkpoint.default_for_device("cuda:1") == fake_base
    assert checkpoint.default_for_device("cpu") == checkpoint.DEFAULT_CHECKPOINT


def test_gpu_falls_back_to_the_cpu_model_without_a_base_checkpoint(tmp_path, monkeypatch):
    monkeypatch.delenv("SEDD_CHECKPOINT", raising=False)
    monkeypatch.setattr(checkpoint, "GPU_CHECKPOINT", tmp_path / "acyp-base")          # absent
    assert checkpoint.default_for_device("cuda") == checkpoint.DEFAULT_CHECKPOINT
    (tmp_path / "acyp-base").mkdir()                                                 # present but empty
    assert checkpoint.default_for_device("cuda") == checkpoint.DEFAULT_CHECKPOINT


def test_environment_variable_wins_over_the_device_choice(fake_base, monkeypatch, tmp_path):
    monkeypatch.setenv("SEDD_CHECKPOINT", str(tmp_path / "mine"))
    assert checkpoint.default_for_device("cuda") is None           # load(None) reads it, and names it in errors


def test_the_app_refuses_a_blank_checkpoint_and_names_the_environments(monkeypatch, capsys, tmp_path):
    """``--checkpoint ''`` served the default model; a missing $SEDD_CHECKPOINT was not said to be its."""
    monkeypatch.setenv("SEDD_CHECKPOINT", str(tmp_path / "gone"))
    for argv, said in (([], f"no checkpoint directory {tmp_path / 'gone'} (from $SEDD_CHECKPOINT)"),
                       (["--checkpoint", ""], "the checkpoint named is blank")):
        with pytest.raises(SystemExit):
            app.main(argv)
        assert said in capsys.readouterr().err


@pytest.mark.parametrize("gpu,argv,expected", [
    (True, [], "base"), (False, [], "cpu"), (True, ["--checkpoint", "elsewhere"], "elsewhere"),
])
def test_the_app_loads_the_choice_for_its_device(fake_base, monkeypatch, gpu, argv, expected):
    loaded = []

    def fake_load(name, device="cpu", **kw):
        loaded.append((name, device))
        raise ValueError("stop here: the choice is all this test needs")

    monkeypatch.setattr(app.torch.cuda, "is_available", lambda: gpu)       # the fake device flag
    monkeypatch.setattr(app.ckpt, "load", fake_load)
    with pytest.raises(SystemExit):
        app.main(argv)
    want = {"base": fake_base, "cpu": checkpoint.DEFAULT_CHECKPOINT, "elsewhere": "elsewhere"}[expected]
    assert loaded == [(want, "cuda" if gpu else "cpu")]


def test_the_shipped_gpu_model_is_what_a_gpu_gets_and_it_loads_anywhere(monkeypatch):
    """checkpoints/acyp-base, trained on an H200, is the GPU default; its bf16 weights load as float32 on a
    CPU, and its evaluation beats the CPU model's, the condition it was shipped on."""
    monkeypatch.delenv("SEDD_CHECKPOINT", raising=False)
    assert checkpoint.default_for_device("cuda") == checkpoint.GPU_CHECKPOINT
    assert checkpoint.default_for_device("cpu") == checkpoint.DEFAULT_CHECKPOINT
    base, cpu = checkpoint.load(checkpoint.GPU_CHECKPOINT), checkpoint.load(checkpoint.DEFAULT_CHECKPOINT)
    assert {p.dtype for p in base.model.parameters()} == {torch.float32}
    assert sum(p.numel() for p in base.model.parameters()) == 25_242_980
    assert (checkpoint.GPU_CHECKPOINT / "model.safetensors").stat().st_size <= 60e6
    assert base.meta["evaluation"]["elbo_nats_per_residue"] < cpu.meta["evaluation"]["elbo_nats_per_residue"]
    assert base.alphabet.to_dict() == cpu.alphabet.to_dict()       # the same residues: templates carry over
