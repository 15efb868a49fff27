"""Which model the app serves when none is named: acyp-base on a GPU when it exists, acyp otherwise."""
import pytest

import app
from sedd import checkpoint


@pytest.fixture
def fake_base(tmp_path, monkeypatch, tiny_checkpoint):
    """Point the GPU model's location at a temporary checkpoint (the real one is not trained yet)."""
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
