"""The speed benchmarks' --json: what the docs' speed tables are read from."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_benchmark(script: str, *args) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)], check=True, env=ENV,
                   capture_output=True, text=True, timeout=300)


def test_the_sampler_benchmark_writes_each_batch_size_with_both_variants(tmp_path):
    """Without the cache every step is an evaluation; with it, a row is evaluated only after it changed."""
    out = tmp_path / "sampler.json"
    run_benchmark("sampler.py", "--preset", "tiny", "--steps", 64, "--batch-sizes", 1, 2, "--repeats", 1,
                  "--threads", 1, "--json", out)
    result = json.loads(out.read_text())
    assert (result["steps"], result["sampler"], result["threads"]) == (64, "tau-leaping", 1)
    assert [row["batch"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["nfe_per_sample_no_cache"] == 64
        assert row["nfe_per_sample_cached"] <= 64 and 100 <= row["mean_length"] < 128
        assert row["seconds_per_sample_cached"] > 0 and row["seconds_per_sample_no_cache"] > 0


def test_the_score_benchmark_writes_its_three_timings(tmp_path, tiny_checkpoint):
    out = tmp_path / "score.json"
    run_benchmark("score_speed.py", "--checkpoint", tiny_checkpoint, "--sequence", "MKVLLAGWKDE", "--repeats", 1,
                  "--threads", 1, "--json", out)
    result = json.loads(out.read_text())
    assert (result["length"], result["threads"], result["repeats"]) == (11, 1, 1)
    assert [row["what"] for row in result["rows"]] == ["scan (L rows, one pass)", "whole-sequence ELBO",
                                                       "score_sequence(scan=True)"]
    assert all(row["wall_seconds"] > 0 and row["cpu_seconds"] > 0 for row in result["rows"])
    assert result["elbo_pilot_t_samples"] == 16 and result["elbo_t_samples"] > 0      # what the ELBO cost


def test_the_load_benchmark_writes_the_report_it_prints(tmp_path, tiny_checkpoint, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("app_load", ROOT / "benchmarks" / "app_load.py")
    app_load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_load)
    out = tmp_path / "load.json"
    report = app_load.main(["--checkpoint", str(tiny_checkpoint), "--requests", "2", "--clients", "2",
                            "--designs", "1", "--steps", "16", "--template", "MKV__GF", "--json", str(out)])
    assert json.loads(out.read_text()) == report == json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["requests"], report["designs_per_request"], report["template_length"]) == (2, 1, 7)
    assert report["requests_per_minute"] > 0


def test_the_load_benchmark_refuses_a_request_the_app_would_refuse_before_it_serves(tiny_checkpoint, capsys,
                                                                                   monkeypatch):
    """--steps 2 passed argparse and every request then failed inside gradio_client, after the server
    was up; a [a-b] template ran the whole load test, then the report's length raised."""
    import importlib.util

    from sedd import checkpoint

    spec = importlib.util.spec_from_file_location("app_load", ROOT / "benchmarks" / "app_load.py")
    app_load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_load)
    monkeypatch.setattr(app_load.app, "serve", lambda demo: pytest.fail("the server started"))
    with pytest.raises(SystemExit) as stop:
        app_load.main(["--checkpoint", str(tiny_checkpoint), "--steps", "2"])
    assert stop.value.code == 2 and "steps must be 16 to 1024; got 2" in capsys.readouterr().err
    model = checkpoint.load(tiny_checkpoint)
    assert app_load.length_of(model.alphabet.parse_spec("MK[2-10]GF", model.max_len)) == [6, 14]
