"""The motif-rate benchmark: intervals, paired differences over common random numbers, and its output."""
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sedd import checkpoint
from sedd.alphabet import PROTEIN
from sedd.model import preset
from sedd.schedule import LogLinearSchedule

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
    # rounding left -7e-18 at 0 hits for 447 of n = 1 … 2999, printed "-0.000" by the report
    assert all(0.0 <= motif_rate.wilson_interval(k, n)[0] and motif_rate.wilson_interval(k, n)[1] <= 1.0
               for n in range(1, 3000) for k in (0, n))


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
    devices = []

    def load(path, causal, device):
        devices.append(device)
        return SimpleNamespace(name=path, model=SimpleNamespace(config=SimpleNamespace(causal=kinds[path])))
    monkeypatch.setattr(motif_rate.ckpt, "load", load)
    monkeypatch.setattr(motif_rate.ckpt, "check_device", lambda device: device)    # "cuda" on a machine without one
    monkeypatch.setattr(motif_rate.ckpt, "resolve", lambda path: Path(path))        # checked before sampling
    monkeypatch.setattr(motif_rate, "draw_samples", lambda model, n, seed, progress: drawn[model.name][:n])
    monkeypatch.setattr(motif_rate.autoregressive, "draw_samples", lambda model, n, seed, progress: drawn[model.name][:n])
    assert motif_rate.main(["good", "bad", "--samples", "4", "--device", "cuda", "--json", str(tmp_path / "m.json")]) == 0
    assert devices == ["cuda", "cuda"]                    # every model on --device, and the JSON says where
    run = json.loads((tmp_path / "m.json").read_text())
    rows = run["rows"]
    assert run["device"] == "cuda"
    assert [(r["name"], r["hits"], r["rate"]) for r in rows] == [("good", 3, 0.75), ("bad", 1, 0.25)]
    assert [r["sampler"] for r in rows] == ["τ-leaping, 128 steps", "left to right (autoregressive)"]
    assert rows[1]["vs_first"]["difference"] == -0.5 and rows[1]["vs_first"]["only_reference"] == 2
    assert all(isinstance(r["seconds"], float) and r["seconds"] >= 0 for r in rows)     # the sampling time, stored
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


def test_a_device_this_machine_lacks_is_refused_before_any_checkpoint_is_sampled(tiny_checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(motif_rate, "measure", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(SystemExit) as stop:
        motif_rate.main([str(tiny_checkpoint), "--samples", "3", "--device", "cuda:9"])
    assert stop.value.code == 2 and "error: cuda:9 is not available on this machine" in capsys.readouterr().err


class NextResidue(torch.nn.Module):
    """A stand-in network: position i is certain to be (residue at i − 1) + 1, or residue 0 with nothing revealed
    before it. Only a sampler that reveals positions in order, each conditioned on the last, spells 0, 1, 2, …"""

    def __init__(self):
        super().__init__()
        self.config = preset("tiny", vocab_size=PROTEIN.size)

    def forward(self, x):
        previous = torch.cat([torch.full_like(x[:, :1], -1), x[:, :-1]], dim=1)
        target = torch.where(previous < PROTEIN.size, (previous + 1) % PROTEIN.size, 0)
        return torch.nn.functional.one_hot(target, PROTEIN.size).float() * 50.0


def test_left_to_right_reveals_one_position_at_a_time_each_given_those_before():
    model = checkpoint.Checkpoint(NextResidue(), PROTEIN, LogLinearSchedule(), {6: 1, 9: 1})
    samples = motif_rate.draw_left_to_right(model, 5, seed=0, batch_size=2)
    assert {len(s) for s in samples} <= {6, 9} and len(samples) == 5
    assert all(s == PROTEIN.residues[:len(s)] for s in samples), samples


def test_left_to_right_draws_the_first_residue_from_the_models_own_distribution_and_the_usual_lengths(tiny_model, tmp_path):
    model = checkpoint.load(checkpoint.save(tmp_path / "c", tiny_model, PROTEIN, LogLinearSchedule(), {12: 1}))
    expected = model.model(torch.full((1, 12), PROTEIN.mask_id))[0, 0].softmax(-1)
    samples = motif_rate.draw_left_to_right(model, 3000, seed=1, batch_size=1000)
    counts = torch.bincount(torch.tensor([PROTEIN.residues.index(s[0]) for s in samples]), minlength=PROTEIN.size)
    assert torch.allclose(counts.double() / 3000, expected.double(), atol=0.025)

    varied = checkpoint.load(checkpoint.save(tmp_path / "v", tiny_model, PROTEIN, LogLinearSchedule(), {7: 1, 11: 2}))
    ours = motif_rate.draw_left_to_right(varied, 6, seed=3)
    assert [len(s) for s in ours] == [len(s) for s in motif_rate.draw_samples(varied, 6, seed=3)]
