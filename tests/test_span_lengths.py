"""benchmarks/span_lengths.py: its figure is written atomically (an interrupted write keeps the old one)."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "span_lengths.py"
spec = importlib.util.spec_from_file_location("span_lengths", SCRIPT)
span_lengths = importlib.util.module_from_spec(spec)
spec.loader.exec_module(span_lengths)

RESULT = {"recovery": {"rows": [{"mode": 4, "true": 4}, {"mode": 6, "true": 5}, {"mode": 8, "true": 8}]}}


def test_the_figure_is_a_png_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "figures" / "span_lengths.png"
    span_lengths.figure(RESULT, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["span_lengths.png"]


def test_a_failed_write_keeps_the_previous_figure(tmp_path, monkeypatch):
    import matplotlib.figure

    path = tmp_path / "span_lengths.png"
    path.write_bytes(b"the previous figure")

    def interrupted(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a PNG")
        raise KeyboardInterrupt
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        span_lengths.figure(RESULT, path)
    assert path.read_bytes() == b"the previous figure"
    assert [p.name for p in tmp_path.iterdir()] == ["span_lengths.png"]


@pytest.mark.parametrize("masks", ["common", "independent"])
def test_both_estimators_run_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, capsys, masks):
    import json

    from conftest import profile_family, write_fasta
    from studio_helpers import tiny_checkpoint_dir

    from sedd import spans

    # --masks independent swaps the library's estimator for the run; undo it after the test
    monkeypatch.setattr(spans, "observed_log_likelihoods", spans.observed_log_likelihoods)
    fasta = tmp_path / "val.fasta"
    write_fasta(fasta, profile_family(4, 60)[0])
    out = tmp_path / "spans.json"
    span_lengths.main(["--checkpoint", str(tiny_checkpoint_dir(tmp_path / "ckpt")), "--data", str(fasta),
                       "--num-seqs", "2", "--stability-seqs", "1", "--two-span-seqs", "1", "--t-samples", "2",
                       "--designs", "1", "--masks", masks, "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["masks"] == masks and result["recovery"]["num_sequences"] == 2
    assert result["cost"]["num_sequences"] == 1
    assert json.loads(capsys.readouterr().out)["recovery"]["stability_sequences"] == 1
    # each sequence's p(true length) with its error: estimated by the library's estimator only
    assert all((row["p_true_stderr"] is not None) == (masks == "common") for row in result["recovery"]["rows"])
