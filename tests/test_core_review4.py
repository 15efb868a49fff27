"""Review of the core library (model, checkpoint, data): each test pins a defect that was fixed.

- the network's length check and ModelConfig's checks were asserts (an AssertionError, a
  ZeroDivisionError for n_heads 0, nothing at all under ``python -O``): now ValueErrors;
- ``checkpoint.save`` wrote the new weights before it found that ``meta`` was not JSON, leaving
  the old config beside weights it does not describe;
- ``checkpoint.convert`` left out the card's ``eval/`` folder, and stored float16 overflows as inf;
- ``Checkpoint.sample_lengths`` crashed inside torch on an all-zero histogram and drew lengths the
  model cannot take;
- ``data.read_fasta`` could not read a gzip-compressed FASTA;
- ``data.bucketed_batches`` gave an empty shard, silently, to a rank outside 0 … world_size − 1.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sedd import checkpoint, data
from sedd.alphabet import PROTEIN
from sedd.model import ModelConfig, ScoreNetwork, preset
from sedd.schedule import LogLinearSchedule

ROOT = Path(__file__).resolve().parent.parent


# --- model ---------------------------------------------------------------------------------------

def test_a_too_long_input_is_a_value_error_naming_both_lengths(tiny_model):
    with pytest.raises(ValueError, match=r"sequence length 129 exceeds the model's maximum 128 \(lengths 1 … 128"):
        tiny_model(torch.zeros(1, 129, dtype=torch.long))


def test_an_input_without_a_batch_dimension_says_the_shape_it_needs(tiny_model):
    with pytest.raises(ValueError, match=r"shape \[B, L\], got shape \(40,\)"):
        tiny_model(torch.zeros(40, dtype=torch.long))


@pytest.mark.parametrize("settings,message", [
    (dict(d_model=64, n_heads=5), r"d_model must be divisible by n_heads, got d_model=64 and n_heads=5"),
    (dict(d_model=60, n_heads=20), r"head dimension d_model/n_heads must be even for RoPE, got 60/20 = 3"),
    (dict(d_model=64, n_heads=0), r"n_heads must be a whole number ≥ 1, got 0"),      # was ZeroDivisionError
    (dict(d_model=64, n_heads=-4), r"n_heads must be a whole number ≥ 1, got -4"),    # was accepted
    (dict(max_len=0), r"max_len must be a whole number ≥ 1, got 0"),                  # was accepted
])
def test_model_config_refuses_bad_sizes_with_a_value_error(settings, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**settings)


def test_the_checks_hold_under_python_dash_O():
    """``python -O`` strips asserts: a too-long input ran through the network unchecked."""
    script = ("import torch; torch.set_num_threads(1)\n"
              "from sedd.model import ModelConfig, ScoreNetwork, preset\n"
              "found = []\n"
              "for make in (lambda: ModelConfig(d_model=64, n_heads=5),\n"
              "             lambda: ScoreNetwork(preset('tiny', max_len=16))(torch.zeros(1, 17, dtype=torch.long))):\n"
              "    try:\n"
              "        make(); found.append('none')\n"
              "    except ValueError:\n"
              "        found.append('ValueError')\n"
              "print(found)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['ValueError', 'ValueError']"


def test_a_config_with_zero_heads_is_refused_by_load_as_an_invalid_section(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["model"]["n_heads"] = 0
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"has an invalid section: n_heads must be a whole number ≥ 1, got 0"):
        checkpoint.load(tiny_checkpoint)


# --- checkpoint: save ----------------------------------------------------------------------------

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


# --- checkpoint: convert -------------------------------------------------------------------------

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


# --- checkpoint: length histogram ----------------------------------------------------------------

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


# --- data ----------------------------------------------------------------------------------------

def test_a_gzip_compressed_fasta_reads_as_the_plain_one(tmp_path):
    text = b"\xef\xbb\xbf>a first\r\nMKV\r\nGF*\r\n>b\rmkkgg\r>c\n\n"
    (tmp_path / "plain.fasta").write_bytes(text)
    (tmp_path / "family.fasta.gz").write_bytes(gzip.compress(text))
    plain = data.read_fasta(tmp_path / "plain.fasta", PROTEIN)
    packed = data.read_fasta(tmp_path / "family.fasta.gz", PROTEIN)
    assert packed.ids == plain.ids == ["a", "b"]
    assert [PROTEIN.decode(t) for t in packed.tokens] == ["MKVGF", "MKKGG"]
    assert packed.dropped == plain.dropped == {"empty": 1}


def test_a_truncated_gzip_fasta_is_named_as_such(tmp_path):
    path = tmp_path / "cut.fasta.gz"
    path.write_bytes(gzip.compress(b">a\nMKVGF\n" * 100)[:30])
    with pytest.raises(ValueError, match=r"could not read .*cut.fasta.gz as gzip-compressed FASTA"):
        data.read_fasta(path, PROTEIN)


@pytest.mark.parametrize("rank,world_size,message", [
    (2, 2, r"rank must be 0 … 1 for world_size 2, got 2"),
    (-1, 2, r"rank must be 0 … 1 for world_size 2, got -1"),
    (0, 0, r"world_size must be a whole number ≥ 1, got 0"),
])
def test_bucketed_batches_refuses_a_rank_outside_the_world(rank, world_size, message):
    with pytest.raises(ValueError, match=message):
        data.bucketed_batches([30] * 10, 128, seed=0, rank=rank, world_size=world_size)


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
