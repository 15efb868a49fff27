"""Checkpoints: save and load round trips, 16-bit copies, names resolved locally or on the Hub, atomic
writes, and what a damaged checkpoint, or one from another version of sedd, is refused with."""
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import BUNDLED
from safetensors.torch import load_file, save_file

from sedd import checkpoint
from sedd.alphabet import PROTEIN
from sedd.model import ScoreNetwork, preset
from sedd.schedule import LogLinearSchedule


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


def without_tied_metadata(directory):
    """The weights as saved before their metadata repeated config.json's blocks (the bundled model's)."""
    weights = directory / "model.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={"format": checkpoint.FORMAT})


def test_mismatched_config_names_the_shape(tiny_checkpoint):
    without_tied_metadata(tiny_checkpoint)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["model"]["d_ff"] = 128
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"shape mismatches \[.*mlp.0.weight"):
        checkpoint.load(tiny_checkpoint)


@pytest.mark.parametrize("edit, named", [
    (lambda c: c["model"].update(d_ff=128), r"model.d_ff: \d+ in the weights, 128 in config.json"),
    # a same-size alphabet loaded silently: every residue read as another
    (lambda c: c["alphabet"].update(residues=c["alphabet"]["residues"][::-1]), r"alphabet.residues: 'ACDE"),
    (lambda c: c["model"].update(n_heads=1), r"model.n_heads"),
])
def test_a_config_json_of_other_weights_is_refused(tiny_checkpoint, edit, named):
    """A save stopped between its weights and its config.json (or an edited config.json) left a pair
    that loaded, or failed on shapes with nothing said of why."""
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    edit(config)
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"does not describe the model.safetensors beside it \({named}.*different saves"):
        checkpoint.load(tiny_checkpoint)


def test_a_setting_a_later_version_adds_or_a_damaged_tie_does_not_refuse_the_checkpoint(tiny_checkpoint):
    """Weights saved before a model setting existed lack it in their tie, where config.json, read by the
    newer version, has its default: that is no difference (every checkpoint would have been refused)."""
    weights = tiny_checkpoint / "model.safetensors"
    tied = json.loads(checkpoint._weights_metadata(weights)[checkpoint.TIED_KEY])
    del tied["model"]["causal"]                                  # as if saved before 'causal' existed
    save_file(load_file(str(weights)), str(weights), metadata={checkpoint.TIED_KEY: json.dumps(tied)})
    assert checkpoint.load(tiny_checkpoint)
    save_file(load_file(str(weights)), str(weights), metadata={checkpoint.TIED_KEY: "{not json"})
    assert checkpoint.load(tiny_checkpoint)


def test_a_converted_checkpoint_keeps_the_tie_to_its_config(tiny_checkpoint, tmp_path):
    converted = checkpoint.convert(tiny_checkpoint, tmp_path / "half", "bfloat16")
    config = json.loads((converted / "config.json").read_text())
    config["alphabet"]["residues"] = config["alphabet"]["residues"][::-1]
    (converted / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="different saves"):
        checkpoint.load(converted)


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


def _edit_config(directory, section, key, value):
    config = json.loads((directory / "config.json").read_text())
    if key is None:
        config[section] = value
    elif value is None:
        del config[section][key]
    else:
        config[section][key] = value
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("section,key,value,message", [
    ("model", "n_layers", 2.0, "n_layers must be a whole number ≥ 1, got 2.0"),
    ("model", "n_layers", "2", "n_layers must be a whole number ≥ 1"),
    ("model", "vocab_size", "20", "vocab_size must be a whole number ≥ 1"),
    ("model", "d_ff", -5, "d_ff must be a whole number ≥ 1, got -5"),
    ("model", "dropout", "x", r"dropout must be a number in \[0, 1\)"),
    ("model", "causal", "false", "causal must be true or false, got 'false'"),
    ("model", None, None, "the 'model' section must be a JSON object, got None"),
    ("schedule", None, [1], "the 'schedule' section must be a JSON object"),
    ("alphabet", None, ["A"], "the 'alphabet' section must be a JSON object"),
    ("alphabet", "mask_chars", None, "a section lacks the setting 'mask_chars'"),
    ("schedule", "eps", None, "a section lacks the setting 'eps'"),
    ("alphabet", "residues", 5, "residues and mask characters must be strings"),
])
def test_a_malformed_config_value_is_refused_by_name(tiny_checkpoint, section, key, value, message):
    """A hand-edited config.json: one line naming the setting, not a TypeError from deep in torch."""
    _edit_config(tiny_checkpoint, section, key, value)
    with pytest.raises(ValueError, match=message):
        checkpoint.load(tiny_checkpoint)


@pytest.mark.parametrize("spoil", [lambda w: w.fill_(float("nan")), lambda w: w.fill_(float("inf")),
                                   lambda w: w.round().to(torch.int32)])
def test_weights_that_are_not_finite_floats_are_refused_by_name(tiny_checkpoint, spoil):
    """NaN weights used to load and sample all-Y sequences; whole-number weights to load silently."""
    path = tiny_checkpoint / "model.safetensors"
    state = load_file(path)
    spoilt = spoil(state["head.bias"])
    state["head.bias"] = spoilt if spoilt is not None else state["head.bias"]
    save_file(state, path)
    with pytest.raises(ValueError, match=r"not finite floating-point numbers: head\.bias$"):
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


def test_a_missing_checkpoint_from_the_environment_says_so_and_a_blank_one_is_refused(tmp_path, monkeypatch, no_hub):
    """``SEDD_CHECKPOINT=/nonexist`` gave "no checkpoint directory /nonexist" with no word of where that
    came from; ``--checkpoint ''`` served the bundled model."""
    monkeypatch.setenv("SEDD_CHECKPOINT", str(tmp_path / "gone"))
    with pytest.raises(ValueError, match=f"^no checkpoint directory {re.escape(str(tmp_path / 'gone'))} "
                                         r"\(from \$SEDD_CHECKPOINT\)$"):
        checkpoint.load()
    for blank in ("", "  "):
        with pytest.raises(ValueError, match="the checkpoint named is blank"):
            checkpoint.load(blank)


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


# ---- save: a failed save leaves the old checkpoint whole; a histogram counted by torch ---------------------
def test_a_save_whose_meta_is_not_json_leaves_the_old_checkpoint_whole(tiny_checkpoint):
    before = {p.name: p.read_bytes() for p in tiny_checkpoint.iterdir()}
    bigger = ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, n_layers=3, dropout=0.0))
    with pytest.raises(TypeError, match="not JSON serializable"):
        checkpoint.save(tiny_checkpoint, bigger, PROTEIN, LogLinearSchedule(), {40: 1},
                        meta={"training": {"data": Path("family.fasta")}})
    assert {p.name: p.read_bytes() for p in tiny_checkpoint.iterdir()} == before
    assert checkpoint.load(tiny_checkpoint).model.config.n_layers == 2


def test_a_histogram_counted_by_torch_is_saved_with_plain_length_keys(tmp_path, tiny_model):
    lengths = torch.tensor([40, 40, 50])
    histogram = dict(zip(*torch.unique(lengths, return_counts=True)))      # tensor keys and counts
    checkpoint.save(tmp_path / "ckpt", tiny_model, PROTEIN, LogLinearSchedule(), histogram)
    assert checkpoint.load(tmp_path / "ckpt").length_histogram == {40: 2, 50: 1}


# ---- convert: the card's eval/ folder comes along, float16 overflows and a used destination are refused ----
def test_convert_brings_the_eval_folder_the_card_links_to_but_not_training_state_or_other_folders(tiny_checkpoint):
    (tiny_checkpoint / "README.md").write_text("see [eval/metrics.json](eval/metrics.json)\n")
    (tiny_checkpoint / "eval" / "run").mkdir(parents=True)
    (tiny_checkpoint / "eval" / "metrics.json").write_text('{"elbo": 2.5}\n')
    (tiny_checkpoint / "eval" / "run" / "history.json").write_text("[]\n")
    (tiny_checkpoint / checkpoint.RESUME_NAME).write_bytes(b"optimizer state")
    (tiny_checkpoint / "not-shipped").mkdir()                # a training run's folder may hold another model
    (tiny_checkpoint / "not-shipped" / "model.safetensors").write_bytes(b"another model")
    out = checkpoint.convert(tiny_checkpoint, tiny_checkpoint / "bf16")        # inside its source, too
    copied = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert copied == ["README.md", "config.json", "eval/metrics.json", "eval/run/history.json",
                      "model.safetensors"]
    assert (out / "eval" / "metrics.json").read_text() == '{"elbo": 2.5}\n'
    assert next(checkpoint.load(out).model.parameters()).dtype == torch.float32


def test_convert_to_float16_refuses_weights_it_would_turn_into_infinity(tiny_checkpoint, tmp_path):
    path = tiny_checkpoint / "model.safetensors"
    state = load_file(path)
    state["head.bias"][3] = 1e6                     # finite in float32 and bfloat16, inf in float16
    save_file(state, path)
    with pytest.raises(ValueError, match=r"head.bias holds weights up to 1e\+06, beyond float16's largest "
                                         r"65,504; store it as bfloat16 or float32"):
        checkpoint.convert(tiny_checkpoint, tmp_path / "fp16", "float16")
    assert not (tmp_path / "fp16").exists()
    out = checkpoint.convert(tiny_checkpoint, tmp_path / "bf16", "bfloat16")
    assert torch.isfinite(load_file(out / "model.safetensors")["head.bias"]).all()


def test_convert_refuses_a_destination_that_holds_another_models_files(tiny_checkpoint, tmp_path):
    """Converting into an existing checkpoint folder left its old card and eval/ beside the new weights."""
    old = checkpoint.convert(tiny_checkpoint, tmp_path / "acyp-base")
    (old / "eval").mkdir()
    (old / "eval" / "report.md").write_text("the old model's report\n")
    with pytest.raises(ValueError, match=r"acyp-base already holds files \(config.json, eval, model.safetensors\); "
                                         r"convert writes a new checkpoint into a new or empty folder"):
        checkpoint.convert(tiny_checkpoint, old, "float32")
    assert (old / "eval" / "report.md").read_text() == "the old model's report\n"
    (tmp_path / "empty").mkdir()
    assert (checkpoint.convert(tiny_checkpoint, tmp_path / "empty") / "config.json").is_file()


# ---- the length histogram: nothing to draw from, or lengths the model cannot take -------------------------
def _with_histogram(directory: Path, histogram: dict) -> checkpoint.Checkpoint:
    config = json.loads((directory / "config.json").read_text())
    config["length_histogram"] = histogram
    (directory / "config.json").write_text(json.dumps(config))
    return checkpoint.load(directory)


def test_an_all_zero_length_histogram_is_refused_as_no_histogram(tiny_checkpoint):
    loaded = _with_histogram(tiny_checkpoint, {"40": 0, "50": 0})
    with pytest.raises(ValueError, match="stores no length histogram; give --length N"):
        loaded.sample_lengths(3, torch.Generator().manual_seed(0))


def test_a_histogram_with_lengths_beyond_max_len_is_not_drawn_from(tiny_checkpoint):
    loaded = _with_histogram(tiny_checkpoint, {"400": 3})
    with pytest.raises(ValueError, match=r"lengths the model cannot take \(400; its lengths are 1 … 128\)"):
        loaded.sample_lengths(2, torch.Generator().manual_seed(0))


# ---- a bad schedule, and a checkpoint from another version -----------------------------------------------
def test_a_checkpoint_with_a_bad_eps_is_refused_when_loaded(tmp_path):
    target = tmp_path / "bad"
    target.mkdir()
    for f in BUNDLED.iterdir():
        if f.is_file() and f.name != "config.json":
            (target / f.name).symlink_to(f)
    config = json.loads((BUNDLED / "config.json").read_text())
    config["schedule"]["eps"] = 1.0
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="invalid section.*eps must be a number from 0 up to"):
        checkpoint.load(target)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["model"].update(rope_base=500000), r"the 'model' section has settings this version of sedd does "
                                                    r"not know \('rope_base'\); a newer sedd wrote it"),
    (lambda c: c.update(format="sedd-protein/2"), r"is not a sedd-protein/1 config \(format = 'sedd-protein/2'\); "
                                                  r"this version of sedd reads only sedd-protein/1: a newer sedd"),
])
def test_a_checkpoint_from_a_newer_version_says_so(tiny_checkpoint, change, message):
    """Before: "has an invalid section: ModelConfig.__init__() got an unexpected keyword argument 'rope_base'",
    and a newer format was named without saying what this version reads."""
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    change(config)
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        checkpoint.load(tiny_checkpoint)


def test_a_checkpoint_from_an_older_version_without_newer_settings_loads(tiny_checkpoint):
    """Settings a checkpoint predates (mlp, tie_embeddings, causal) take their defaults."""
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    for key in ("mlp", "tie_embeddings", "causal"):
        del config["model"][key]
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    assert checkpoint.load(tiny_checkpoint).model.config.mlp == "gelu"


def test_a_full_disk_inside_torch_or_safetensors_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    """A full disk reached torch.save as "[enforce fail at inline_container.cc:672] unexpected pos" (a
    RuntimeError) and safetensors as a SafetensorError: sedd.train printed a traceback. Other errors
    of those types, on a disk with room, stay what they are."""
    import shutil
    from collections import namedtuple

    from safetensors import SafetensorError

    usage = namedtuple("usage", "total used free")
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos 64")
    for error, free in ((torch_full, 1 << 20), (SafetensorError("No space left on device (os error 28)"), 1 << 40)):
        def write(tmp, error=error):
            Path(tmp).write_bytes(b"half")
            raise error
        monkeypatch.setattr(shutil, "disk_usage", lambda _, free=free: usage(1 << 41, 0, free))
        with pytest.raises(OSError, match=rf"could not write {re.escape(str(tmp_path / 'resume.pt'))}: the disk "
                                          r"is full \([0-9.,]+ MiB free\)"):
            checkpoint.atomic_write(tmp_path / "resume.pt", write)
        assert list(tmp_path.iterdir()) == []        # the half-written temporary is gone
    with pytest.raises(RuntimeError, match="unexpected pos"):       # a disk with room: not called full
        checkpoint.atomic_write(tmp_path / "resume.pt", lambda tmp: (_ for _ in ()).throw(torch_full))


def test_stale_temporaries_of_killed_saves_are_removed(tmp_path):
    (tmp_path / checkpoint.EVAL_DIR).mkdir()
    stale = [tmp_path / ".resume.pt.x1y2.tmp", tmp_path / checkpoint.EVAL_DIR / ".report.md.abc.tmp"]
    for p in stale + [tmp_path / "model.safetensors", tmp_path / "notes.tmp"]:
        p.write_text("x")
    assert sorted(checkpoint.remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "model.safetensors", "notes.tmp"]


@pytest.mark.parametrize("section, key", [("alphabet", "case_sensitive"), ("schedule", "sigma_max")])
def test_a_setting_a_newer_sedd_wrote_in_alphabet_or_schedule_is_refused_not_dropped(tiny_checkpoint, section, key):
    path = Path(tiny_checkpoint) / checkpoint.CONFIG_NAME
    config = json.loads(path.read_text())
    config[section][key] = 1
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"'{section}' section has settings this version of sedd does not know "
                                         rf"\('{key}'\); a newer sedd wrote it"):
        checkpoint.load(tiny_checkpoint)


def test_an_output_in_a_folder_that_takes_no_file_is_refused_before_the_work(tmp_path, monkeypatch):
    """``sedd.train --out /proc/x`` trained, then failed to save: the folder's permissions said yes."""
    real = checkpoint.tempfile.TemporaryFile

    def full_disk(*args, dir=None, **kwargs):
        if Path(dir) == tmp_path / "full":
            raise OSError(28, "No space left on device")
        return real(*args, dir=dir, **kwargs)

    (tmp_path / "full").mkdir()
    monkeypatch.setattr(checkpoint.tempfile, "TemporaryFile", full_disk)
    with pytest.raises(ValueError, match=rf"^--out {re.escape(str(tmp_path / 'full' / 'x' / 'a.json'))} cannot be "
                                         rf"written: {re.escape(str(tmp_path / 'full'))} takes no new file "
                                         r"\(No space left on device\)$"):
        checkpoint.check_writable(tmp_path / "full" / "x" / "a.json", "--out")
    assert checkpoint.check_writable(tmp_path / "ok" / "a.json", "--out") == tmp_path / "ok" / "a.json"
    assert list(tmp_path.iterdir()) == [tmp_path / "full"] and not any((tmp_path / "full").iterdir())
