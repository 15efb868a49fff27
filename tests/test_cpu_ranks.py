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
