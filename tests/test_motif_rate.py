"""The motif-rate benchmark: intervals, paired differences over common random numbers, and its output."""
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "motif_rate.py"
spec = importlib.util.spec_from_file_location("motif_rate", SCRIPT)
motif_rate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(motif_rate)

WITH, WITHOUT = "MKAGRVQGVAFRAAL", "MKAGRAAAAAAAAAL"      # G.VQG[VI].[FY]R present / absent


def test_wilson_interval_matches_the_textbook_value_and_stays_in_range():
    low, high = motif_rate.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert motif_rate.wilson_interval(0, 50)[0] == pytest.approx(0.0, abs=1e-12)
    assert motif_rate.wilson_interval(50, 50)[1] == pytest.approx(1.0, abs=1e-12)


def test_paired_difference_counts_discordant_samples():
    d = motif_rate.paired_difference([True, True, False, False], [True, False, False, True])
    assert d["difference"] == 0 and d["only_this"] == 1 and d["only_reference"] == 1
    assert d["stderr"] == pytest.approx((2 / 3) ** 0.5 / 2)
    same = motif_rate.paired_difference([True, False, True], [True, False, True])
    assert same["difference"] == 0 and same["stderr"] == 0


def test_checkpoint_names_come_from_the_folder_or_the_user_and_must_differ():
    assert motif_rate.parse_checkpoints(["checkpoints/acyp", "old=/x/acyp"]) == [("acyp", "checkpoints/acyp"),
                                                                                 ("old", "/x/acyp")]
    with pytest.raises(ValueError, match="must differ"):
        motif_rate.parse_checkpoints(["a/acyp", "b/acyp"])


def test_rates_and_paired_differences_are_counted_from_each_checkpoints_samples(monkeypatch, tmp_path, capsys):
    drawn = {"good": [WITH, WITH, WITH, WITHOUT], "bad": [WITH, WITHOUT, WITHOUT, WITHOUT]}
    kinds = {"good": False, "bad": True}                  # "bad" stands for an autoregressive baseline
    monkeypatch.setattr(motif_rate.ckpt, "load", lambda path, causal: SimpleNamespace(
        name=path, model=SimpleNamespace(config=SimpleNamespace(causal=kinds[path]))))
    monkeypatch.setattr(motif_rate, "draw_samples", lambda model, n, seed, progress: drawn[model.name][:n])
    monkeypatch.setattr(motif_rate.autoregressive, "draw_samples", lambda model, n, seed, progress: drawn[model.name][:n])
    assert motif_rate.main(["good", "bad", "--samples", "4", "--json", str(tmp_path / "m.json")]) == 0
    rows = json.loads((tmp_path / "m.json").read_text())["rows"]
    assert [(r["name"], r["hits"], r["rate"]) for r in rows] == [("good", 3, 0.75), ("bad", 1, 0.25)]
    assert [r["sampler"] for r in rows] == ["τ-leaping, 128 steps", "left to right (autoregressive)"]
    assert rows[1]["vs_first"]["difference"] == -0.5 and rows[1]["vs_first"]["only_reference"] == 2
    assert "| bad | left to right (autoregressive) | 25.0% (1/4) |" in capsys.readouterr().out


def test_every_checkpoint_is_sampled_with_the_same_random_numbers(tiny_checkpoint, monkeypatch):
    """The paired SE assumes common random numbers: the same model under two names draws the same samples."""
    drawn, real = [], motif_rate.draw_samples

    def spy(model, n, seed, progress):
        drawn.append(real(model, n, seed=seed, progress=progress))
        return drawn[-1]

    monkeypatch.setattr(motif_rate, "draw_samples", spy)
    rows = motif_rate.measure([("a", str(tiny_checkpoint)), ("b", str(tiny_checkpoint))], samples=6, seed=3,
                              progress=False)
    assert len(drawn[0]) == 6 and drawn[0] == drawn[1] and len(set(drawn[0])) > 1
    assert rows[1]["vs_first"]["only_this"] == rows[1]["vs_first"]["only_reference"] == 0
