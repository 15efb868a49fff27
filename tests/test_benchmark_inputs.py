"""Rerunning the benchmarks on one's own, small data: refusals before the work, no crash after it."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import profile_family, write_fasta

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused(monkeypatch, capsys, name: str, argv: list[str]) -> str:
    """The script's one-line argparse error (exit code 2) for ``argv``; scripts whose main() takes no
    argv read it from sys.argv."""
    import subprocess

    from sedd import checkpoint, model, sampler, train

    def work_started(*args, **kwargs):
        raise AssertionError("the work started: the value was not refused first")
    for owner, attribute in ((checkpoint, "load"), (train.Trainer, "__init__"), (subprocess, "run"),
                             (model.ScoreNetwork, "__init__"), (sampler, "run")):
        monkeypatch.setattr(owner, attribute, work_started)
    module = load(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    with pytest.raises(SystemExit) as stop:
        module.main(argv) if module.main.__code__.co_argcount else module.main()
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# Each value used to get past argparse and fail with a traceback, most after the model was loaded or
# part of the run was done (statistics.median of no repeats, torch.set_num_threads(-1), a seed the
# sampler refuses, a ThreadPoolExecutor of 0 clients ...).
BAD_ARGUMENTS = [
    ("design_speed", ["--presets", "tiny", "--repeats", "0"], "--repeats"),
    ("design_speed", ["--presets", "tiny", "--designs", "0"], "--designs"),
    ("sampler", ["--preset", "tiny", "--repeats", "0"], "--repeats"),
    ("sampler", ["--preset", "tiny", "--steps", "0"], "--steps"),
    ("score_speed", ["--repeats", "0"], "--repeats"),
    ("motif_rate", ["x", "--threads", "-1"], "--threads"),
    ("motif_rate", ["x", "--seed", "-1"], "--seed"),
    ("particles", ["--batch", "0"], "--batch"),
    ("particles", ["--particles", "0"], "--particles"),
    ("sampler_quality", ["--reference", "r", "--naturals", "n", "--num-samples", "0"], "--num-samples"),
    ("score_validation", ["--data", "d", "--max-seqs", "0"], "--max-seqs"),
    ("span_lengths", ["--data", "d", "--num-seqs", "0"], "--num-seqs"),
    ("span_lengths", ["--data", "d", "--threads", "0"], "--threads"),
    ("train_speed", ["--max-steps", "0"], "--max-steps"),
    ("train_speed", ["--seconds", "-1"], "--seconds"),
    ("app_load", ["--clients", "0"], "--clients"),
    ("cpu_ranks", ["--data", "d", "--minutes", "0"], "--minutes"),
    ("nearest_search", ["--samples", "s", "--data", "d", "--clusters", "c", "--val-fraction", "1.5"], "--val-fraction"),
    ("split_copies", ["--stderr", "0"], "--stderr"),
    # one time per sequence, or one sample: a standard error of NaN written into the table and the JSON
    ("ablate_recipe", ["--data", "d", "--out", "o", "--t-samples", "1"], "--t-samples"),
    ("ar_baseline", ["--data", "d", "--out", "o", "--t-samples", "1"], "--t-samples"),
    ("ar_init", ["--data", "d", "--ar", "a", "--out", "o", "--t-samples", "1"], "--t-samples"),
    ("ar_init", ["--data", "d", "--ar", "a", "--out", "o", "--samples", "1"], "--samples"),
    ("sampler_quality", ["--reference", "r", "--naturals", "n", "--num-samples", "1"], "--num-samples"),
]


@pytest.mark.parametrize("name, argv, flag", BAD_ARGUMENTS, ids=[f"{n} {' '.join(a[-2:])}" for n, a, _ in BAD_ARGUMENTS])
def test_an_out_of_range_value_is_refused_naming_its_flag(monkeypatch, capsys, name, argv, flag):
    message = refused(monkeypatch, capsys, name, argv)
    assert f"argument {flag}:" in message and "is not" in message


def test_a_bad_batch_size_in_the_list_is_refused_before_any_preset_is_measured(monkeypatch, capsys):
    """It was parsed inside the measuring loop: ``512,abc`` measured every preset at 512 first, then crashed."""
    message = refused(monkeypatch, capsys, "train_speed", ["--presets", "tiny", "--tokens-per-batch", "512,abc"])
    assert "argument --tokens-per-batch: 'abc' is not a batch size from 1 to 1,048,576 residues" in message


@pytest.mark.parametrize("config", ["remask@8,x", "remask@0", "remask:eta=high", "foo@8", "remask:beta=1"])
def test_a_malformed_sampler_configuration_is_refused_naming_configs(monkeypatch, capsys, config):
    """It ended with a bare message and exit code 1, not argparse's error line and code 2."""
    message = refused(monkeypatch, capsys, "sampler_quality", ["--reference", "r", "--naturals", "n", "--configs", config])
    assert message.startswith(f"sampler_quality.py: error: argument --configs: {config.split('@')[0]}")


# An unknown preset was found after the data was read, or (a list) after the presets before it were
# measured; cpu_ranks handed it to its training runs and ended with their traceback.
BAD_PRESETS = [("ablate_recipe", ["--data", "d", "--out", "o"], "--preset"),
               ("ar_baseline", ["--data", "d", "--out", "o"], "--preset"),
               ("ar_init", ["--data", "d", "--ar", "a", "--out", "o"], "--preset"),
               ("cpu_ranks", ["--data", "d"], "--preset"), ("sampler", [], "--preset"),
               ("design_speed", [], "--presets"), ("train_speed", [], "--presets")]


@pytest.mark.parametrize("name, argv, flag", BAD_PRESETS, ids=[name for name, *_ in BAD_PRESETS])
def test_an_unknown_preset_is_refused_before_the_work(monkeypatch, capsys, name, argv, flag):
    value = "tiny,huge" if flag == "--presets" else "huge"
    message = refused(monkeypatch, capsys, name, [*argv, flag, value])
    assert message.endswith(f"argument {flag}: invalid choice: 'huge' (choose from 'tiny', 'mini', 'small', 'base')")


def test_a_failed_training_run_ends_cpu_ranks_with_one_error_line(monkeypatch, capsys, tmp_path):
    """The run's own error was followed by a CalledProcessError traceback and exit code 1."""
    import subprocess

    cpu_ranks = load("cpu_ranks")
    monkeypatch.setattr(cpu_ranks.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 2))
    code = cpu_ranks.script(lambda: cpu_ranks.main(["--data", str(tmp_path / "x.fasta"), "--minutes", "0.01",
                                                    "--cores", "2"]))
    assert code == 2 and capsys.readouterr().err == "error: the 1-process training run failed; ranks1 has no result\n"


def test_span_lengths_refuses_a_small_file_before_the_recovery_part_not_after(tmp_path, monkeypatch, capsys,
                                                                              tiny_checkpoint):
    """Four sequences with the default --num-seqs 100 and --two-span-seqs 5: the recovery part ran on all
    four, then the cost part had none left and statistics.median raised; no JSON was written."""
    span_lengths = load("span_lengths")
    fasta = tmp_path / "val.fasta"
    write_fasta(fasta, profile_family(4, 60)[0])
    monkeypatch.setattr(span_lengths, "recovery", lambda *a, **k: pytest.fail("refuse before the recovery part"))
    with pytest.raises(SystemExit) as stop:
        span_lengths.main(["--checkpoint", str(tiny_checkpoint), "--data", str(fasta)])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2
    assert "--data has 4 sequences of at least 38 residues" in message and "--num-seqs" in message


def test_span_lengths_runs_on_a_small_file_without_the_cost_part(tmp_path, capsys, tiny_checkpoint):
    span_lengths = load("span_lengths")
    fasta = tmp_path / "val.fasta"
    write_fasta(fasta, profile_family(3, 60)[0])
    out = tmp_path / "spans.json"
    span_lengths.main(["--checkpoint", str(tiny_checkpoint), "--data", str(fasta), "--num-seqs", "100",
                       "--stability-seqs", "0", "--two-span-seqs", "0", "--t-samples", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["recovery"]["num_sequences"] == 3 and result["cost"] == {}


def test_span_lengths_leaves_out_sequences_too_long_for_a_span_in_their_cut(tmp_path, tiny_checkpoint):
    """A held-out sequence of 122–127 residues with 3 of them written as [2-10] is a template of up to
    134 positions, which the model refuses: the benchmark stopped with a traceback (seed 1 of the
    bundled model's held-out split draws one)."""
    span_lengths = load("span_lengths")
    fasta = tmp_path / "val.fasta"
    write_fasta(fasta, profile_family(3, 126)[0] + profile_family(2, 60)[0])
    out = tmp_path / "spans.json"
    span_lengths.main(["--checkpoint", str(tiny_checkpoint), "--data", str(fasta), "--num-seqs", "5",
                       "--stability-seqs", "0", "--two-span-seqs", "0", "--t-samples", "2", "--json", str(out)])
    assert json.loads(out.read_text())["recovery"]["num_sequences"] == 2
    long, mid, short = "A" * 126, "C" * 118, "D" * 60            # no room for one span / for one, not two / both
    assert span_lengths.choose_sequences([long, mid, short, long, mid, short], 2, 5, 128) == ([mid, short], [short])


def _row(config: str, steps, motif: float) -> dict:
    return {"config": config, "steps": steps, "nfe_per_design": None if steps == "–" else float(steps),
            "seconds_per_design": 0.1, "hmm_hit_rate": 0.1, "hmm_bits_ratio": 0.5, "motif_rate": motif,
            "composition_kl": 0.01, "mean_pairwise_identity": 0.2 + motif / 10, "novelty": 1.0, "repeat_rate": 0.0}


def test_the_quality_plot_of_a_family_without_the_acyp_motif_is_drawn_not_a_crash(tmp_path):
    """The trade-off panel zoomed on motif rates ≥ 0.7; with none (another family, a weak model) min([])
    raised after every configuration had been sampled."""
    sampler_quality = load("sampler_quality")
    path = tmp_path / "quality.png"
    sampler_quality.plot([_row("tau-leaping", 8, 0.0), _row("tau-leaping", 16, 0.1)], _row("held-out naturals", "–", 0.05),
                         path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _quality_on_logged_rows(tmp_path, monkeypatch, tiny_checkpoint):
    """sampler_quality set to rebuild its table, JSON and plot from one logged row (``--rows``), with the
    scoring stubbed: the module and the JSON path it writes."""
    sampler_quality = load("sampler_quality")
    naturals = tmp_path / "naturals.fasta"
    write_fasta(naturals, profile_family(4, 40)[0])
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(_row("tau-leaping", 8, 0.1)) + "\n")
    quality = {k: v for k, v in _row("x", 8, 0.05).items() if k not in ("config", "steps", "nfe_per_design",
                                                                          "seconds_per_design")}
    monkeypatch.setattr(sampler_quality.hmm, "load", lambda path: None)
    monkeypatch.setattr(sampler_quality, "score", lambda designs, *a: quality)
    out = tmp_path / "quality.json"
    monkeypatch.setattr(sys, "argv", ["sampler_quality.py", "--checkpoint", str(tiny_checkpoint), "--reference",
                                      str(naturals), "--naturals", str(naturals), "--num-samples", "2", "--rows", str(rows),
                                      "--plot", str(tmp_path / "q.png"), "--out-json", str(out)])
    return sampler_quality, out


def test_the_quality_rows_are_written_before_the_plot(tmp_path, monkeypatch, tiny_checkpoint):
    """A failing plot must not lose the rows that took the sampling time."""
    sampler_quality, out = _quality_on_logged_rows(tmp_path, monkeypatch, tiny_checkpoint)

    def broken(*args):
        raise RuntimeError("the plot failed")
    monkeypatch.setattr(sampler_quality, "plot", broken)
    with pytest.raises(RuntimeError, match="the plot failed"):
        sampler_quality.main()
    assert json.loads(out.read_text())["rows"][0]["config"] == "tau-leaping"


def test_the_quality_json_is_strict_json_with_no_cost_for_the_naturals(tmp_path, monkeypatch, tiny_checkpoint, capsys):
    """The naturals' row held NaN network evaluations, which Python writes as a bare NaN that strict
    parsers (a browser's JSON.parse, jq) refuse."""
    sampler_quality, out = _quality_on_logged_rows(tmp_path, monkeypatch, tiny_checkpoint)
    sampler_quality.main()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    result = json.loads(out.read_text(), parse_constant=refuse)
    assert result["naturals"]["nfe_per_design"] is None and result["naturals"]["seconds_per_design"] is None
    assert "| held-out naturals | – | – | – |" in capsys.readouterr().out


def test_a_value_that_is_not_finite_is_written_as_null_not_lost(tmp_path, monkeypatch, tiny_checkpoint):
    """A shuffled control with no HMM hit has −inf bits: json.dumps(allow_nan=False) then raised after
    every configuration had been sampled, and no JSON was written."""
    sampler_quality, out = _quality_on_logged_rows(tmp_path, monkeypatch, tiny_checkpoint)
    quality = {k: v for k, v in _row("x", 8, 0.05).items() if k not in ("config", "steps", "nfe_per_design",
                                                                          "seconds_per_design")}
    monkeypatch.setattr(sampler_quality, "score", lambda designs, *a: {**quality, "shuffled_bits_ratio": float("-inf")})
    sampler_quality.main()
    assert json.loads(out.read_text())["naturals"]["shuffled_bits_ratio"] is None


def test_a_missing_checkpoint_is_refused_before_the_others_are_sampled(monkeypatch, capsys, tiny_checkpoint, tmp_path):
    """motif_rate sampled the first checkpoint for minutes, then stopped with a traceback at the second."""
    message = refused(monkeypatch, capsys, "motif_rate", [str(tiny_checkpoint), str(tmp_path / "missing")])
    assert message.endswith(f"error: no checkpoint directory {tmp_path / 'missing'}")


def test_ar_baselines_missing_checkpoint_is_refused_before_both_trainings(monkeypatch, capsys, tmp_path):
    """Both models trained and were scored, then the bundled model's path failed and nothing was written."""
    from sedd import train

    monkeypatch.setattr(train.Trainer, "__init__", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(SystemExit) as stop:
        load("ar_baseline").main(["--data", "d", "--out", str(tmp_path), "--checkpoint", str(tmp_path / "missing")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: --checkpoint: no checkpoint directory {tmp_path / 'missing'}")


@pytest.mark.parametrize("name", ["score_validation", "span_lengths"])
def test_an_empty_fasta_ends_a_benchmark_with_one_error_line(name, tmp_path, tiny_checkpoint):
    """read_fasta's clear ValueError reached the user as a traceback."""
    import subprocess

    empty = tmp_path / "empty.fasta"
    empty.write_text("")
    done = subprocess.run([sys.executable, BENCHMARKS / f"{name}.py", "--checkpoint", tiny_checkpoint, "--data", empty],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: FASTA file {empty} is empty: give one or more sequences"


def test_score_validation_of_a_family_without_the_motif_writes_null_not_nan_or_zeros(tmp_path, tiny_checkpoint, capsys,
                                                                                      monkeypatch):
    """With no sequence holding the motif the JSON had NaN means and a per-position row of zeros that
    read like real scores."""
    fasta, out = tmp_path / "other.fasta", tmp_path / "validation.json"
    write_fasta(fasta, profile_family(3, 40)[0])
    monkeypatch.setattr(sys, "argv", ["score_validation.py", "--checkpoint", str(tiny_checkpoint), "--data", str(fasta),
                                      "--max-seqs", "3", "--json", str(out)])
    load("score_validation").main()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    motif = json.loads(out.read_text(), parse_constant=refuse)["motif"]
    assert motif == {"num_sequences": 0, "mean_scan_at_motif": None, "mean_scan_elsewhere": None, "per_position": None}
    assert "no sequence has the catalytic motif" in capsys.readouterr().out


def test_train_speed_refuses_a_gpu_this_machine_lacks_in_one_line(monkeypatch, capsys):
    """It was torch's "AssertionError: Torch not compiled with CUDA enabled", with a traceback."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = refused(monkeypatch, capsys, "train_speed", ["--device", "cuda"])
    assert message.startswith("train_speed.py: error: argument --device: cuda is not available on this machine")


def test_a_scripts_exit_code_is_its_mains_or_0_or_2_for_what_its_inputs_cannot_give(capsys):
    from sedd.cli import script

    def refused():
        raise ValueError("no such file")
    assert (script(lambda: 3), script(lambda: None), script(lambda: {"report": 1})) == (3, 0, 0)   # app_load's report
    assert script(refused) == 2 and capsys.readouterr().err == "error: no such file\n"


# Each wrote its output only after the work: a folder given for a file failed with IsADirectoryError
# after minutes of training or sampling, and the results were lost.
OUTPUT_FLAGS = [
    ("app_load", [], "--json"),
    ("ar_baseline", ["--out", "o"], "--json"),
    ("ar_init", ["--out", "o"], "--json"),
    ("cpu_ranks", ["--data", "d"], "--json"),
    ("design_speed", [], "--json"),
    ("learning_curves", ["r"], "--png"),
    ("learning_curves", ["r"], "--json"),
    ("motif_rate", ["x"], "--json"),
    ("nearest_search", ["--samples", "s", "--data", "d", "--clusters", "c"], "--json"),
    ("particles", [], "--json"),
    ("sampler", [], "--json"),
    ("sampler_quality", ["--reference", "r", "--naturals", "n"], "--plot"),
    ("sampler_quality", ["--reference", "r", "--naturals", "n"], "--out-json"),
    ("score_speed", [], "--json"),
    ("score_validation", ["--data", "d"], "--json"),
    ("span_lengths", ["--data", "d"], "--figure"),
    ("span_lengths", ["--data", "d"], "--json"),
    ("split_copies", [], "--json"),
    ("train_speed", [], "--json"),
]


@pytest.mark.parametrize("name, argv, flag", OUTPUT_FLAGS, ids=[f"{n} {f}" for n, _, f in OUTPUT_FLAGS])
def test_an_output_path_that_cannot_be_written_is_refused_before_the_work(monkeypatch, capsys, tmp_path,
                                                                          name, argv, flag):
    message = refused(monkeypatch, capsys, name, [*argv, flag, str(tmp_path)])
    assert f"argument {flag}: file {tmp_path} is a directory; give a file path" in message
    (tmp_path / "a-file").write_text("")
    message = refused(monkeypatch, capsys, name, [*argv, flag, str(tmp_path / "a-file" / "out.json")])
    assert f"argument {flag}: file {tmp_path}/a-file/out.json cannot be written: {tmp_path}/a-file is a file" in message


@pytest.mark.parametrize("script, option, value", [
    ("ablate_recipe", "--cpu-minutes", "0"),
    ("ablate_recipe", "--cpu-minutes", "-1"),
    ("ablate_recipe", "--val-seqs", "0"),
    ("ablate_recipe", "--t-samples", "0"),
    ("ar_baseline", "--cpu-minutes", "0"),
    ("ar_baseline", "--t-samples", "0"),
])
def test_a_benchmark_refuses_a_budget_or_count_it_cannot_use_before_it_trains(
        tmp_path, family_and_clusters, monkeypatch, capsys, script, option, value):
    """`ablate_recipe.py --cpu-minutes 0` trained its first variant for ever; `--cpu-minutes -1` or
    `--val-seqs 0` trained and then reported ELBO 0.000 ± 0.000; `--t-samples 0` divided by zero after training."""
    module = load(script)

    def trains(*args, **kwargs):
        raise AssertionError(f"{script} started training with {option} {value}")

    monkeypatch.setattr(module, "train_quietly", trains)
    monkeypatch.setattr(module, "run_variant", trains, raising=False)
    with pytest.raises(SystemExit) as stop:
        module.main(["--data", str(family_and_clusters[0]), "--out", str(tmp_path / "out"), option, value])
    assert stop.value.code == 2
    assert f"argument {option}: '{value}' is not" in capsys.readouterr().err
