"""benchmarks/split_copies.py: the held-out sequences an older split also trained on."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sedd.alphabet import PROTEIN
from sedd.data import Dataset, split

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import split_copies  # noqa: E402


@pytest.mark.filterwarnings("ignore:left")          # the split's own note about copies it leaves out
def test_finds_each_held_out_sequence_with_a_copy_in_another_cluster():
    seqs = {"a1": "MKVLA", "a2": "MKVLG", "b1": "GGKVQ", "c1": "MKVLA", "d1": "WWWWW", "e1": "GGKVQ"}
    clusters = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "d1": "D", "e1": "E"}
    data = Dataset(list(seqs), [PROTEIN.encode(s) for s in seqs.values()])
    found_any = False
    for seed in range(6):
        _, val = split(data, 0.3, seed, clusters)
        expected = sorted(i for i in val.ids if any(seqs[j] == seqs[i] for j in seqs if j not in val.ids))
        found = split_copies.held_out_copies(data, val)
        assert sorted(i for i, _ in found) == expected
        assert all(seqs[i] == seqs[j] and j not in val.ids for i, j in found)
        found_any |= bool(found)
    assert found_any, "no seed held out a sequence with a copy: the test data do not test anything"


def test_the_elbo_without_a_part_is_the_residue_weighted_rest():
    # 100 residues at 2.0 nats and 50 at 1.0: the whole is (200 + 50) / 150
    assert split_copies.elbo_without(250 / 150, 150, 1.0, 50) == pytest.approx(2.0)


def test_a_checkpoint_without_its_evaluation_is_refused_before_the_work(tiny_checkpoint, capsys):
    """A fresh sedd.train output has no evaluation block: KeyError: 'evaluation' with a traceback."""
    with pytest.raises(SystemExit) as stop:
        split_copies.main(["--checkpoint", str(tiny_checkpoint)])
    assert stop.value.code == 2
    assert "config.json has no evaluation block" in capsys.readouterr().err
