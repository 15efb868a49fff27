"""benchmarks/particles.py: its template, its rejection reference and its output, on a tiny model."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "particles.py"
spec = importlib.util.spec_from_file_location("particles_benchmark", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_the_template_designs_the_motif_window_and_bars_its_aromatic_position():
    plain, barred = bench.template(False), bench.template(True)
    start, end = bench.WINDOW
    assert bench.NATURAL[10:19] == "GIVQGVGFR" and bench.NATURAL[bench.BARRED[0]] == "F"
    assert plain == bench.NATURAL[:start] + "_" * (end - start) + bench.NATURAL[end:]
    assert barred == plain[:bench.BARRED[0]] + "[^FY]" + plain[bench.BARRED[0] + 1:]


def test_position_tv_is_the_mean_total_variation_over_positions():
    assert bench.position_tv(["AA", "AC"], ["AA", "AC"], range(2), "AC") == 0
    # position 0: same; position 1: {A: 1/2, C: 1/2} against {C: 1} → 1/2
    assert bench.position_tv(["AA", "AC"], ["AC", "AC"], range(2), "AC") == pytest.approx(0.25)


def test_a_small_run_writes_every_row_and_keeps_the_set(tmp_path, tiny_checkpoint, monkeypatch):
    """A random tiny model meets [^FY] with probability about 18/20: the plain runs' acceptance and
    the particles' own estimate must both say so; every design with the set obeys it."""
    out = tmp_path / "particles.json"
    assert bench.main(["--checkpoint", str(tiny_checkpoint), "--designs", "8", "--plain", "64", "--particles", "1", "4",
                       "--without-look-ahead", "4", "--steps", "8", "--batch", "32", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rejection, one, four, plain_four = result["rows"]
    assert rejection["particles"] is None and 0.7 < rejection["p_set"] <= 1
    assert one["particles"] == 1 and one["p_set"] is None
    assert four["particles"] == 4 and 0.7 < four["p_set"] <= 1
    assert four["nfe_per_design"] > 3 * one["nfe_per_design"]
    assert (four["look_ahead"], plain_four["look_ahead"]) == (True, False) and "no look-ahead" in plain_four["sampler"]
    assert 0.7 < plain_four["p_set"] <= 1
    assert result["template"] == bench.template(True) and result["steps"] == 8


def test_too_few_accepted_plain_designs_is_an_error_naming_plain_not_a_division_by_zero(tiny_checkpoint,
                                                                                         monkeypatch):
    """No plain design met the set: ZeroDivisionError; one met it: NaN in the table and the JSON."""
    monkeypatch.setattr(bench, "template", lambda barred: "MK" + "F" * 30)     # every plain design is barred
    with pytest.raises(ValueError, match=r"^only 0 of 2 plain designs meet the set, .* raise --plain$"):
        bench.main(["--checkpoint", str(tiny_checkpoint), "--designs", "2", "--plain", "2", "--particles", "1",
                    "--steps", "4"])
