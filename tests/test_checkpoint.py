import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from sedd import checkpoint
from sedd.alphabet import PROTEIN


def test_round_trip_gives_identical_logits(tiny_model, tiny_checkpoint):
    loaded = checkpoint.load(tiny_checkpoint)
    x = torch.randint(0, 22, (3, 40))
    torch.testing.assert_close(loaded.model(x), tiny_model(x), rtol=0, atol=0)
    assert loaded.alphabet == PROTEIN
    assert loaded.length_histogram == {40: 3, 50: 2}
    assert loaded.meta["training"]["note"].startswith("random")
    assert not loaded.model.training and next(loaded.model.parameters()).dtype == torch.float32


def test_files_are_config_json_and_safetensors_only(tiny_checkpoint):
    assert sorted(p.name for p in tiny_checkpoint.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert {"model", "alphabet", "schedule", "length_histogram"} <= set(config)


def test_missing_and_unexpected_keys_are_listed(tiny_checkpoint):
    path = tiny_checkpoint / "model.safetensors"
    state = load_file(path)
    state["extra.weight"] = torch.zeros(2)
    del state["head.bias"]
    save_file(state, path)
    with pytest.raises(ValueError, match=r"missing keys \['head.bias'\].*unexpected keys \['extra.weight'\]"):
        checkpoint.load(tiny_checkpoint)


def test_mismatched_config_names_the_shape(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["model"]["d_ff"] = 128
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"shape mismatches \[.*mlp.0.weight"):
        checkpoint.load(tiny_checkpoint)


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "model.safetensors").write_bytes(b"not a safetensors file"), "not a readable safetensors"),
    (lambda d: (d / "model.safetensors").unlink(), "holds no model.safetensors"),
    (lambda d: (d / "config.json").write_text("{broken"), "not valid JSON"),
    (lambda d: (d / "config.json").write_text('{"format": "other"}'), "is not a sedd-protein/1 config"),
    (lambda d: (d / "config.json").unlink(), "holds no config.json"),
])
def test_tampered_checkpoint_gives_a_clear_error(tiny_checkpoint, damage, message):
    damage(tiny_checkpoint)
    with pytest.raises(ValueError, match=message):
        checkpoint.load(tiny_checkpoint)


def test_a_home_relative_checkpoint_is_found(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tiny_checkpoint.parent))
    assert checkpoint.resolve(f"~/{tiny_checkpoint.name}") == tiny_checkpoint


def test_not_a_directory_or_repo_id(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        checkpoint.load(f)
    with pytest.raises(ValueError, match="neither a local directory nor a valid"):
        checkpoint.load("not a valid repo id")


def test_hub_repo_id_is_downloaded_through_huggingface_hub(tiny_checkpoint, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tiny_checkpoint)

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = checkpoint.load("someone/sedd-acyp")
    assert calls and calls[0][0] == "someone/sedd-acyp" and "model.safetensors" in calls[0][1]
    assert loaded.source == "someone/sedd-acyp"


def test_inference_path_never_unpickles(tiny_checkpoint, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("torch.load called on the inference path")
    monkeypatch.setattr(torch, "load", forbidden)
    checkpoint.load(tiny_checkpoint)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_16_bit_copy_is_half_the_size_and_serves_the_same_model(tiny_model, tiny_checkpoint, tmp_path, dtype):
    (tiny_checkpoint / "README.md").write_text("card")
    (tiny_checkpoint / "resume.pt").write_bytes(b"optimizer state")
    half = checkpoint.convert(tiny_checkpoint, tmp_path / "half", dtype)
    assert sorted(p.name for p in half.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (half / "config.json").read_text() == (tiny_checkpoint / "config.json").read_text()
    assert {v.dtype for v in load_file(half / "model.safetensors").values()} == {getattr(torch, dtype)}
    ratio = (half / "model.safetensors").stat().st_size / (tiny_checkpoint / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55
    loaded = checkpoint.load(half)                        # served in float32 unless asked otherwise
    assert next(loaded.model.parameters()).dtype == torch.float32
    x = torch.randint(0, 22, (3, 40))
    torch.testing.assert_close(loaded.model(x), tiny_model(x), rtol=0.05, atol=0.05)
    assert not torch.equal(loaded.model(x), tiny_model(x))      # the weights really were rounded


def test_convert_refuses_what_it_cannot_do(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="unknown weight dtype 'int8'; choose one of float32, bfloat16, float16"):
        checkpoint.convert(tiny_checkpoint, tmp_path / "out", "int8")
    with pytest.raises(ValueError, match="destination other than"):
        checkpoint.convert(tiny_checkpoint, tiny_checkpoint, "bfloat16")
    with pytest.raises(ValueError, match="holds no model.safetensors"):
        checkpoint.convert(tmp_path, tmp_path / "out", "bfloat16")


# ---- a mistyped local path is not a failed download --------------------------------------------------
@pytest.fixture
def no_hub(monkeypatch):
    """Records every Hub download; each one fails like an offline machine (messages span lines)."""
    asked = []

    def offline(repo_id, allow_patterns):
        asked.append(repo_id)
        raise OSError("offline:\ncannot reach the Hub")
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    return asked


def test_a_mistyped_local_path_is_reported_as_a_missing_directory(tmp_path, monkeypatch, no_hub):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "my-model").mkdir(parents=True)
    with pytest.raises(ValueError) as error:
        checkpoint.load("runs/my-modle")
    assert str(error.value) == ("no checkpoint directory runs/my-modle (did you mean runs/my-model?); runs is a local "
                                "folder, so the Hugging Face Hub was not asked")
    for name in (tmp_path / "runs" / "nothing-like-it", "./my-model", "~/checkpoints/acyp", "runs/a/b"):
        with pytest.raises(ValueError, match=f"^no checkpoint directory {re.escape(str(name))}$"):
            checkpoint.load(name)
    assert no_hub == []


def test_owner_name_is_looked_for_locally_and_on_the_hub(tmp_path, monkeypatch, no_hub):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as error:
        checkpoint.load("someone/no-such-model")
    assert str(error.value) == ("no checkpoint directory someone/no-such-model, and no Hugging Face Hub repo "
                                "someone/no-such-model could be downloaded: OSError: offline: cannot reach the Hub")
    assert no_hub == ["someone/no-such-model"]


# ---- atomic writes reach the disk -------------------------------------------------------------------
def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    import os
    import stat

    synced, real_fsync = [], os.fsync
    path = tmp_path / "out" / "weights.bin"

    def spy(fd):
        st = os.fstat(fd)
        synced.append((stat.S_ISDIR(st.st_mode), st.st_ino, path.exists()))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", spy)
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 1000)
    # a writer that neither flushes nor syncs: atomic_write must do it (here: a copy, as convert does)
    checkpoint.atomic_write(path, lambda tmp: __import__("shutil").copyfile(source, tmp))
    assert path.read_bytes() == b"x" * 1000
    assert synced == [(False, path.stat().st_ino, False),            # the data, before the rename
                      (True, path.parent.stat().st_ino, True)]        # the folder's entry, after it


def test_atomic_write_skips_the_folder_sync_where_a_folder_cannot_be_opened(tmp_path, monkeypatch):
    import os

    real_open = os.open

    def no_directories(path, flags, *args, **kwargs):      # as on Windows
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", no_directories)
    checkpoint.atomic_write_text(tmp_path / "config.json", "{}\n")
    assert (tmp_path / "config.json").read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]          # no temporary file left


# ---- a bad length histogram names the file and the field ---------------------------------------------
@pytest.mark.parametrize("histogram, message", [
    ({"40": 3, "abc": 2}, "'length_histogram' has the key 'abc'; keys are lengths (whole numbers ≥ 1)"),
    ({"0": 3}, "'length_histogram' has the key '0'"),
    ({"40": -1}, "'length_histogram' has the count -1 for length 40; counts are whole numbers ≥ 0"),
    ({"40": "x"}, "'length_histogram' has the count 'x' for length 40"),
    ({"40": 2.5}, "'length_histogram' has the count 2.5 for length 40"),
    ([40, 50], "'length_histogram' must map lengths to counts, got list"),
])
def test_a_bad_length_histogram_names_the_file_and_the_field(tiny_checkpoint, histogram, message):
    path = tiny_checkpoint / "config.json"
    config = json.loads(path.read_text())
    config["length_histogram"] = histogram
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        checkpoint.load(tiny_checkpoint)
    assert str(error.value).startswith(f"{path}: {message}")
