"""The GPU model's card is written from its config.json, beside the model it must beat."""
import importlib.util
import json
from pathlib import Path

import pytest

from sedd import checkpoint

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "model_card.py"
spec = importlib.util.spec_from_file_location("model_card", SCRIPT)
model_card = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_card)


def _evaluated(directory: Path, elbo: float, motif: float) -> Path:
    config = json.loads((directory / "config.json").read_text())
    config["training"] = {"data": "family.fasta", "clusters": "clusters.tsv", "preset": "tiny", "parameters": 104_000,
                          "steps": 1234, "tokens_seen": 5_000_000, "wall_seconds": 480.0, "device": "cuda:0",
                          "num_train_sequences": 900, "num_val_sequences": 100,
                          "config": {"tokens_per_batch": 32768, "lr": 1e-3, "optimizer": "adamw",
                                     "time_sampling": "importance"}}
    config["evaluation"] = {"elbo_nats_per_residue": elbo, "infill_recovery": 0.4, "num_sequences": 100,
                            "samples": {"motif_rate": motif, "family_hmm": {"hit_rate": 0.99}}}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_card_sets_every_figure_beside_the_reference(tiny_checkpoint, tmp_path):
    base = _evaluated(checkpoint.convert(tiny_checkpoint, tmp_path / "acyp-base", "bfloat16"), 1.5321, 0.875)
    ref = _evaluated(checkpoint.convert(tiny_checkpoint, tmp_path / "acyp", "float32"), 1.6639, 0.824)
    model_card.main([str(base), "--compare", str(ref), "--hardware", "one test GPU", "--reproduce", "bash x.sh 8"])
    text = (base / "README.md").read_text()
    assert "| **ELBO, nats/residue** (lower is better) | 1.664 | 1.532 |" in text
    assert "| catalytic motif `G.VQG[VI].[FY]R` in the samples, 128 steps | 82.4% | 87.5% |" in text
    assert "| median identity to the nearest training sequence | – | – |" in text       # absent: a dash, no crash
    assert "(bf16)" in text and "1,234 steps" in text and "one test GPU" in text and "bash x.sh 8" in text


def test_card_names_the_motif_the_evaluation_measured(tiny_checkpoint, tmp_path):
    """An evaluation with another family's --motif was labelled as ACYP's catalytic motif."""
    base = _evaluated(checkpoint.convert(tiny_checkpoint, tmp_path / "own", "bfloat16"), 1.5, 0.5)
    config = json.loads((base / "config.json").read_text())
    config["evaluation"]["samples"]["motif"] = "C..C"
    (base / "config.json").write_text(json.dumps(config))
    model_card.main([str(base), "--compare", str(base), "--hardware", "x", "--reproduce", "y"])
    assert "| motif `C..C` in the samples, 128 steps | 50.0% | 50.0% |" in (base / "README.md").read_text()


def test_card_refuses_an_unevaluated_checkpoint(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        model_card.main([str(tiny_checkpoint), "--compare", str(tiny_checkpoint), "--hardware", "x", "--reproduce", "y"])
    assert "has no evaluation block in config.json" in capsys.readouterr().err


def test_an_evaluation_without_a_sequence_count_gets_a_dash(tiny_checkpoint, tmp_path):
    """The '?' fallback was formatted with ',' and raised "Cannot specify ',' with 's'"."""
    base = _evaluated(checkpoint.convert(tiny_checkpoint, tmp_path / "acyp-base", "bfloat16"), 1.5321, 0.875)
    config = json.loads((base / "config.json").read_text())
    del config["evaluation"]["num_sequences"]
    (base / "config.json").write_text(json.dumps(config))
    ref = _evaluated(checkpoint.convert(tiny_checkpoint, tmp_path / "acyp", "float32"), 1.6639, 0.824)
    model_card.main([str(base), "--compare", str(ref), "--hardware", "x", "--reproduce", "y"])
    assert "on the same held-out clusters (– sequences)" in (base / "README.md").read_text()


# ---- a model beside the bundled one, run from any folder; a run without clusters; a missing checkpoint ----
def _evaluated_with_clusters(directory: Path, clusters: str | None) -> Path:
    """``directory``'s checkpoint with the training and evaluation blocks that model_card.py reads."""
    config = json.loads((directory / "config.json").read_text())
    config["training"] = {"data": "family.fasta", "clusters": clusters, "preset": "tiny", "parameters": 104_000,
                          "steps": 12, "tokens_seen": 5_000, "wall_seconds": 60.0, "device": "cpu",
                          "num_train_sequences": 114, "num_val_sequences": 6,
                          "config": {"tokens_per_batch": 256, "lr": 1e-3, "optimizer": "adamw",
                                     "time_sampling": "stratified"}}
    config["evaluation"] = {"elbo_nats_per_residue": 2.9, "infill_recovery": 0.1, "num_sequences": 6}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def _checkpoint_copy(source: Path, destination: Path) -> Path:
    import shutil
    return Path(shutil.copytree(source, destination))


def test_model_card_sets_a_model_beside_the_bundled_one_from_any_folder(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """The default --compare was the relative path checkpoints/acyp: run from anywhere but the repository
    root, the card was refused with "checkpoints/acyp has no training or evaluation block", which it has."""
    run = _evaluated_with_clusters(tiny_checkpoint, clusters="clusters.tsv")
    monkeypatch.chdir(tmp_path)
    model_card.main([str(run), "--hardware", "a laptop", "--reproduce", "python -m sedd.train ..."])
    card = (run / "README.md").read_text()
    assert "## Evaluation, beside `acyp`" in card
    assert "| **ELBO, nats/residue** (lower is better) | 1.664 | 2.900 |" in card
    assert "held out: whole clusters of `clusters.tsv` (6 sequences), 114 to train" in card


def test_model_card_of_a_run_without_clusters_says_so(tiny_checkpoint, tmp_path, capsys):
    """Not "held out: whole clusters of `None`"."""
    run = _evaluated_with_clusters(tiny_checkpoint, clusters=None)
    reference = _evaluated_with_clusters(_checkpoint_copy(tiny_checkpoint, tmp_path / "reference"),
                                         clusters="clusters.tsv")
    model_card.main([str(run), "--compare", str(reference), "--hardware", "x", "--reproduce", "y"])
    card = (run / "README.md").read_text()
    assert "`None`" not in card
    assert "held out: 6 sequences at random, no clusters (near-duplicates of training sequences may flatter" in card


def test_model_card_names_a_missing_checkpoint_as_missing(tiny_checkpoint, tmp_path, capsys):
    run = _evaluated_with_clusters(tiny_checkpoint, clusters="clusters.tsv")
    with pytest.raises(SystemExit):
        model_card.main([str(run), "--compare", str(tmp_path / "nope"), "--hardware", "x", "--reproduce", "y"])
    assert f"{tmp_path / 'nope'} is not a checkpoint directory: it holds no config.json" in capsys.readouterr().err


# ---- what the checkpoint's eval/ folder adds: the motif on many samples, the GPU's speed ------------------
def test_card_quotes_the_motif_run_and_the_gpu_check_stored_beside_the_model(tiny_checkpoint, tmp_path, monkeypatch):
    base = _evaluated(checkpoint.convert(tiny_checkpoint, tmp_path / "acyp-base", "bfloat16"), 1.5321, 0.875)
    ref = _evaluated(checkpoint.convert(tiny_checkpoint, tmp_path / "acyp", "float32"), 1.6639, 0.824)
    (base / "eval").mkdir()
    row = {"sampler": "τ-leaping, 128 steps", "samples": 2048}
    (base / "eval" / "motif_rate.json").write_text(json.dumps({"samples": 2048, "seed": 0, "device": "cuda", "rows": [
        {"samples": 2048, "name": "acyp", "rate": 0.7744, "stderr": 0.0092, "hits": 1586},   # from before --sampler
        {**row, "name": "acyp-base", "rate": 0.8345, "stderr": 0.0082, "hits": 1709,
         "vs_first": {"difference": 0.06, "stderr": 0.0101}}]}))
    (base / "eval" / "gpu_check.json").write_text(json.dumps({
        "gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "gpu_tests": {"tests": 4, "failures": 0, "errors": 0, "skipped": 0},
        "training": [{"preset": "base", "parameters": 25_241_620, "tokens_per_batch": 8192, "tokens_per_second": 193881.6}],
        "sampling": [{"preset": "base", "designs": 8, "length": 128, "steps": 1024, "nfe_per_design": 118.875,
                      "seconds_per_design": 0.36877}]}))
    monkeypatch.setattr(model_card, "GPU_CHECKPOINT", base)        # the folder the studio serves on a GPU
    model_card.main([str(base), "--compare", str(ref), "--hardware", "x", "--reproduce", "y"])
    text = (base / "README.md").read_text()
    assert "**The motif on 2,048 samples per model** (`eval/motif_rate.json`" in text and "on cuda;" in text
    assert "| `acyp` | τ-leaping, 128 steps | 77.4% ± 0.9% (1,586/2,048) | — |" in text
    assert "| `acyp-base` | τ-leaping, 128 steps | 83.5% ± 0.8% (1,709/2,048) | +6.0% ± 1.0% |" in text
    assert "## Speed on NVIDIA H200" in text and "4 GPU tests: 4 passed, 0 skipped" in text
    assert "| base | 25.2 M | 8,192 | 193,882 |" in text and "| base | 8 × 128 | 1,024 | 118.9 | 0.369 |" in text
    assert "stored as bf16 and loaded as float32" in text and "On a GPU the studio serves it when no model is named" in text


def test_card_without_the_eval_files_has_neither_section_and_no_default_claim(tiny_checkpoint, tmp_path):
    """Named acyp-base but not the folder the studio serves (a copy, or a model that did not ship): no claim."""
    own = _evaluated(checkpoint.convert(tiny_checkpoint, tmp_path / "acyp-base", "float32"), 1.5, 0.5)
    model_card.main([str(own), "--compare", str(own), "--hardware", "x", "--reproduce", "y"])
    text = (own / "README.md").read_text()
    assert "samples per model" not in text and "## Speed on" not in text and "studio serves it" not in text
    assert f"`python -m sedd.sample --checkpoint {own} ...`" in text and "stored as f32" in text
