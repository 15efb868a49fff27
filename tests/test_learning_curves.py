"""benchmarks/learning_curves.py reads real training runs and compares them at the steps they share."""
import importlib.util
import json
from pathlib import Path

import pytest

from conftest import profile_family, write_fasta
from sedd.train import TrainConfig, train

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "learning_curves.py"
spec = importlib.util.spec_from_file_location("learning_curves", SCRIPT)
learning_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learning_curves)


def test_two_real_runs_are_compared_at_the_steps_both_reached(tmp_path, capsys):
    data = tmp_path / "family.fasta"
    write_fasta(data, profile_family(200, 24, seed=0)[0])
    for name, steps in (("short", 40), ("long", 60)):
        train(TrainConfig(data=str(data), out=str(tmp_path / name), preset="tiny", tokens_per_batch=512,
                          warmup_steps=5, eval_every=20, eval_max_seqs=16, max_steps=steps, dropout=0.0))
    png, out = tmp_path / "curves.png", tmp_path / "curves.json"

    assert learning_curves.main([f"short={tmp_path / 'short'}", f"long={tmp_path / 'long'}", "--every", "20",
                                 "--png", str(png), "--json", str(out)]) == 0

    rows = {r["label"]: r for r in json.loads(out.read_text())}
    history = json.loads((tmp_path / "long" / "history.json").read_text())
    at_40 = next(h["val_elbo_ema"] for h in history if h.get("step") == 40 and "val_elbo_ema" in h)
    assert rows["long"]["curve"]["40"]["ema"] == at_40 and rows["long"]["steps"] == 60
    table = capsys.readouterr().out
    header, _, short_row, long_row = table.splitlines()
    assert "step 20" in header and "step 40" in header and "step 60" not in header   # short never reached 60
    assert long_row.endswith(f"| {at_40:.3f} | {rows['long']['curve']['60']['ema']:.3f} (60) |")
    assert png.stat().st_size > 0


def test_shared_steps_are_the_multiples_and_the_last_step_all_reached():
    runs = [{"curve": dict.fromkeys([250, 500, 750, 1000, 1250])}, {"curve": dict.fromkeys([250, 500, 750, 1000, 1200])}]
    assert learning_curves.shared_steps(runs, 500) == [500, 1000]
    runs[1]["curve"] = dict.fromkeys([250, 500, 750])
    assert learning_curves.shared_steps(runs, 500) == [500, 750]


def test_a_folder_that_is_not_a_finished_run_is_named_in_the_error(tmp_path):
    with pytest.raises(SystemExit, match="not a finished sedd.train run"):
        learning_curves.main([f"x={tmp_path}"])
    with pytest.raises(SystemExit):
        learning_curves.main(["no-label"])


def test_learning_curves_refuses_every_0_instead_of_dividing_by_it(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(json.dumps([{"step": 10, "val_elbo_raw": 2.9, "val_elbo_ema": 2.9}]))
    training = {"preset": "tiny", "parameters": 1, "steps": 10, "tokens_seen": 100, "wall_seconds": 6.0,
                "config": {"tokens_per_batch": 256}}
    (run / "config.json").write_text(json.dumps({"training": training}))
    with pytest.raises(SystemExit) as stop:
        learning_curves.main([f"a={run}", "--every", "0"])
    assert stop.value.code == 2 and "argument --every: '0' is not a whole number above 0" in capsys.readouterr().err
