"""Every variant of the recipe ablation is a runnable training recipe (a typo there costs an hour of CPU)."""
import importlib.util
import warnings
from pathlib import Path

import pytest

from conftest import profile_family, write_fasta
from sedd.train import Trainer

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ablate_recipe.py"
spec = importlib.util.spec_from_file_location("ablate_recipe", SCRIPT)
ablate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablate)


@pytest.mark.parametrize("name", list(ablate.VARIANTS))
def test_each_variant_builds_a_trainer_with_its_change(name, tmp_path):
    seqs, _ = profile_family(60, 24, seed=0)
    write_fasta(tmp_path / "family.fasta", seqs)
    change, overrides = ablate.VARIANTS[name]
    cfg = ablate.short_run_config(str(tmp_path / "family.fasta"), None, tmp_path / "run", "tiny", 0.01, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # the by-sequence split warning
        trainer = Trainer(cfg)
    for field, value in overrides.items():
        if field == "model_overrides":
            for key, v in value.items():
                assert getattr(trainer.model.config, key) == v, (name, key)
        else:
            assert getattr(trainer.cfg, field) == value, (name, field)
    assert trainer.cfg.clock == "cpu" and trainer.cfg.minutes == 0.01


def test_the_combined_variant_is_exactly_the_three_single_changes():
    singles = {}
    for name in ("dropout-0", "swiglu", "importance"):
        for field, value in ablate.VARIANTS[name][1].items():
            singles[field] = {**singles.get(field, {}), **value} if isinstance(value, dict) else value
    assert ablate.VARIANTS["combined"][1] == singles


def test_a_second_round_variant_keeps_the_base_recipe_and_adds_its_change(tmp_path):
    seqs, _ = profile_family(60, 24, seed=0)
    write_fasta(tmp_path / "family.fasta", seqs)
    overrides = ablate.stacked(ablate.VARIANTS["combined"][1], ablate.VARIANTS["small"][1], {"lr": 2e-3})
    cfg = ablate.short_run_config(str(tmp_path / "family.fasta"), None, tmp_path / "run", "tiny", 0.01, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer = Trainer(cfg)
    config = trainer.model.config
    assert (config.mlp, config.d_model, config.n_heads, config.d_ff) == ("swiglu", 256, 8, 1024)   # both model changes
    assert (trainer.cfg.dropout, trainer.cfg.time_sampling, trainer.cfg.lr) == (0.0, "importance", 2e-3)
    assert ablate.row_name("small", "combined") == "combined+small" and ablate.row_name("combined", "combined") == "combined"


def test_a_second_round_table_names_each_rows_one_change_and_compares_with_its_base():
    row = dict(parameters=1.79e6, steps=1000, tokens_per_cpu_second=6900.0, elbo_ema_stderr=0.02, elbo_raw=2.0)
    rows = [{**row, "variant": "combined", "change": ablate.VARIANTS["combined"][0], "elbo_ema": 1.974},
            {**row, "variant": "combined+lr-2e-3", "change": "(stored text)", "elbo_ema": 2.026}]
    text = ablate.table(rows, "combined")
    assert "EMA vs combined |" in text
    assert "| + learning rate 2e-3 | 1.79 M | 1000 | 6,900 | 2.026 ± 0.020 | 2.000 | +0.052 |" in text


def test_a_second_round_compares_with_its_bases_own_row(tmp_path, monkeypatch, capsys):
    """`--on combined --variants lr-2e-3,small` (the docstring's command) printed "—" in every row of the
    "EMA vs combined" column: the base's own row was never among the rows compared."""
    row = dict(parameters=1.79e6, steps=1000, tokens_per_cpu_second=6900.0, elbo_ema_stderr=0.02, elbo_raw=2.0,
               preset="tiny", cpu_minutes_budget=0.1, val_sequences=4, val_residues=200, change="(stored)")
    elbo = {"combined": 1.974, "combined+lr-2e-3": 2.026, "combined+small": 1.950}
    trained = []

    def run_variant(name, a):
        trained.append(ablate.row_name(name, a.on))
        return {**row, "variant": trained[-1], "elbo_ema": elbo[trained[-1]]}

    monkeypatch.setattr(ablate, "run_variant", run_variant)
    argv = ["--data", "x.fasta", "--out", str(tmp_path), "--preset", "tiny", "--cpu-minutes", "0.1", "--on", "combined",
            "--variants", "lr-2e-3,small"]
    ablate.main(argv)
    assert trained == ["combined", "combined+lr-2e-3", "combined+small"]
    out = capsys.readouterr().out
    assert "| 2.026 ± 0.020 | 2.000 | +0.052 |" in out and "| 1.950 ± 0.020 | 2.000 | -0.024 |" in out
    ablate.main(argv)                                   # a rerun trains nothing: every row is saved
    assert len(trained) == 3 and "+0.052" in capsys.readouterr().out
