"""benchmarks/cpu_ranks.py: one process with every thread against one torchrun rank per core, same global batch."""
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import profile_family, write_fasta

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "cpu_ranks.py"
spec = importlib.util.spec_from_file_location("cpu_ranks", SCRIPT)
cpu_ranks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cpu_ranks)


@pytest.mark.slow
def test_both_layouts_train_the_same_global_batch(tmp_path, capsys):
    fasta = tmp_path / "family.fasta"
    write_fasta(fasta, profile_family(120, 40)[0])
    out = tmp_path / "ranks.json"
    assert cpu_ranks.main(["--data", str(fasta), "--preset", "tiny", "--minutes", "0.1", "--cores", "2",
                           "--tokens-per-batch", "512", "--json", str(out)]) == 0
    one, two = json.loads(out.read_text())
    assert (one["ranks"], one["threads_per_rank"]) == (1, 2) and (two["ranks"], two["threads_per_rank"]) == (2, 1)
    assert one["global_tokens_per_batch"] == two["global_tokens_per_batch"] == 512
    assert two["tokens_per_batch_per_rank"] == 256
    assert all(r["steps"] > 0 and r["tokens_per_second"] > 0 for r in (one, two))
    assert "| 2 × 1 thread | 256 |" in capsys.readouterr().out


def test_the_cores_must_divide_the_batch():
    with pytest.raises(SystemExit):
        cpu_ranks.main(["--data", "x.fasta", "--cores", "3", "--tokens-per-batch", "512"])


def test_a_relative_data_path_is_the_callers_not_the_checkouts(tmp_path, monkeypatch):
    """The runs start in the checkout's root: a path relative to where the script was called must still hold."""
    (tmp_path / "family.fasta").write_text(">a\nACDE\n")
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        raise RuntimeError("stop")

    monkeypatch.setattr(cpu_ranks.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError):
        cpu_ranks.train("family.fasta", Path("out"), preset="tiny", minutes=0.1, ranks=1, threads=1,
                        tokens_per_batch=512)
    cmd = calls[0]
    assert Path(cmd[cmd.index("--data") + 1]) == tmp_path / "family.fasta"
    assert Path(cmd[cmd.index("--out") + 1]) == tmp_path / "out"
