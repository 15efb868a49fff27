"""``python -m sedd.sample``: the CLI contract of DESIGN.md."""
import json

import pytest

from sedd.alphabet import PROTEIN
from sedd.sample import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_fasta_output_keeps_every_given_residue(capsys, tiny_checkpoint):
    code, out, _ = run_cli(capsys, "--checkpoint", tiny_checkpoint, "--template", "MKV__GF_R____",
                           "--num-samples", 4, "--seed", 1)
    assert code == 0
    lines = out.splitlines()
    assert [l for l in lines if l.startswith(">")] == [f">design_{i}" for i in range(1, 5)]
    for seq in lines[1::2]:
        assert len(seq) == 13 and PROTEIN.is_valid(seq)
        assert seq[:3] == "MKV" and seq[5:7] == "GF" and seq[8] == "R"


def test_json_fields_and_reproducibility(capsys, tiny_checkpoint):
    args = ["--checkpoint", tiny_checkpoint, "--length", 30, "--num-samples", 3, "--steps", 64, "--seed", 5, "--json"]
    code, out, _ = run_cli(capsys, *args)
    first = json.loads(out)
    assert code == 0
    assert set(first) == {"sequences", "nfe_per_sample", "seconds", "steps", "seed", "checkpoint", "sampler", "top_p"}
    assert first["steps"] == 64 and first["seed"] == 5 and len(first["sequences"]) == 3
    assert 1 <= first["nfe_per_sample"] <= 31
    _, out, _ = run_cli(capsys, *args)
    assert json.loads(out)["sequences"] == first["sequences"]
    _, out, _ = run_cli(capsys, *args, "--no-cache")
    uncached = json.loads(out)
    assert uncached["nfe_per_sample"] == 64


def test_length_auto_draws_from_the_training_histogram(capsys, tiny_checkpoint):
    code, out, _ = run_cli(capsys, "--checkpoint", tiny_checkpoint, "--length", "auto", "--num-samples", 12, "--json")
    assert code == 0
    assert {len(s) for s in json.loads(out)["sequences"]} <= {40, 50}


def test_random_seed_is_reported(capsys, tiny_checkpoint):
    _, out, _ = run_cli(capsys, "--checkpoint", tiny_checkpoint, "--length", 10, "--json", "--steps", 16)
    assert isinstance(json.loads(out)["seed"], int)


@pytest.mark.parametrize("args,message", [
    (["--template", "MKB__"], "'B' at position 3"),
    (["--template", ""], "empty"),
    (["--length", "0"], "between 1 and 128"),
    (["--length", "ten"], "positive integer or 'auto'"),
    (["--length", "500"], "between 1 and 128"),
    (["--template", "M__", "--steps", "0"], "steps must be at least 1"),
    (["--template", "M__", "--num-samples", "0"], "num_samples must be at least 1"),
    (["--template", "M__", "--temperature", "0"], "temperature must be > 0"),
    (["--template", "M__", "--seed", "-3"], "seed must be"),
])
def test_bad_input_exits_2_with_a_message(capsys, tiny_checkpoint, args, message):
    code, out, err = run_cli(capsys, "--checkpoint", tiny_checkpoint, *args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_bad_checkpoint_exits_2_with_a_message(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--checkpoint", tmp_path, "--length", 10)
    assert code == 2 and "holds no config.json" in err
