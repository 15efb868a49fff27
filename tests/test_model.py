"""The network: its recipe options (defaults unchanged, SwiGLU, tied embeddings, causal attention), and
bad sizes and inputs refused with a ValueError that holds under ``python -O``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sedd import checkpoint
from sedd.alphabet import PROTEIN
from sedd.model import ModelConfig, ScoreNetwork, preset
from sedd.schedule import LogLinearSchedule

ROOT = Path(__file__).resolve().parent.parent


def tiny(**overrides) -> ScoreNetwork:
    torch.manual_seed(0)
    return ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, dropout=0.0, **overrides)).eval()


def test_a_config_written_before_the_options_loads_as_the_network_it_was(tmp_path):
    """config.json files from before mlp / tie_embeddings / causal existed load as GELU, untied, bidirectional."""
    net = tiny()
    directory = checkpoint.save(tmp_path / "old", net, PROTEIN, LogLinearSchedule(), {30: 1})
    config = json.loads((directory / "config.json").read_text())
    for key in ("mlp", "tie_embeddings", "causal"):
        del config["model"][key]
    (directory / "config.json").write_text(json.dumps(config))
    loaded = checkpoint.load(directory).model
    assert (loaded.config.mlp, loaded.config.tie_embeddings, loaded.config.causal) == ("gelu", False, False)
    x = torch.randint(0, 21, (2, 30))
    assert torch.equal(loaded(x), net(x))


def test_the_bundled_checkpoint_records_its_network_options():
    config = json.loads((checkpoint.DEFAULT_CHECKPOINT / "config.json").read_text())["model"]
    assert (config["mlp"], config["tie_embeddings"], config["causal"]) == ("swiglu", False, False)


def test_swiglu_keeps_the_parameter_count_and_its_names():
    gelu, swiglu = tiny(), tiny(mlp="swiglu")
    assert abs(swiglu.num_parameters() - gelu.num_parameters()) / gelu.num_parameters() < 0.01
    assert "blocks.0.mlp.gate_up.weight" in swiglu.state_dict() and "blocks.0.mlp.0.weight" not in swiglu.state_dict()
    x = torch.randint(0, 22, (2, 30))
    assert swiglu(x).shape == (2, 30, PROTEIN.size)
    with pytest.raises(ValueError, match="unknown mlp 'relu'; choose one of gelu, swiglu"):
        preset("tiny", mlp="relu")


def test_tied_embeddings_share_the_residue_rows():
    model = tiny(tie_embeddings=True)
    untied = tiny()
    assert "head.weight" not in model.state_dict() and "head_bias" in model.state_dict()
    assert untied.num_parameters() - model.num_parameters() == PROTEIN.size * model.config.d_model
    x = torch.randint(0, 20, (1, 12))
    before = model(x)
    with torch.no_grad():
        model.embed.weight[3] += 1.0          # residue D's input vector is also its output vector
    after = model(x)
    changed = (after - before).abs().amax(dim=(0, 1))
    assert changed[3] > 0
    loss = model(x).logsumexp(-1).sum()
    loss.backward()
    assert model.embed.weight.grad[:20].abs().sum() > 0


def test_causal_attention_never_looks_ahead():
    x = torch.randint(0, 20, (2, 24))
    y = x.clone()
    y[:, 15] = (y[:, 15] + 1) % 20          # change one token
    causal, bidirectional = tiny(causal=True), tiny()
    a, b = causal(x), causal(y)
    torch.testing.assert_close(a[:, :15], b[:, :15], rtol=0, atol=0)
    assert (a[:, 15:] - b[:, 15:]).abs().amax() > 1e-4
    assert (bidirectional(x)[:, :15] - bidirectional(y)[:, :15]).abs().amax() > 1e-4


def test_causal_padding_does_not_change_the_valid_positions():
    model = tiny(causal=True)
    x = torch.randint(0, 20, (1, 20))
    padded = torch.cat([x, torch.full((1, 7), model.pad_id)], dim=1)
    torch.testing.assert_close(model(padded)[:, :20], model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", [dict(mlp="swiglu"), dict(tie_embeddings=True),
                                     dict(causal=True, vocab_size=PROTEIN.size + 1),     # the baseline predicts END too
                                     dict(mlp="swiglu", tie_embeddings=True, d_model=32, n_layers=3)])
def test_options_round_trip_through_the_checkpoint(tmp_path, options):
    torch.manual_seed(0)
    model = ScoreNetwork(preset("tiny", **{"vocab_size": PROTEIN.size, "dropout": 0.0, **options})).eval()
    directory = checkpoint.save(tmp_path / "ckpt", model, PROTEIN, LogLinearSchedule(), {30: 1})
    loaded = checkpoint.load(directory, causal=model.config.causal)
    assert loaded.model.config == model.config
    x = torch.randint(0, 22, (2, 30))
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


# ---- bad sizes and inputs: ValueErrors, not asserts (an AssertionError, a ZeroDivisionError for n_heads 0,
# nothing at all under ``python -O``) ---------------------------------------------------------------------
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
