"""The command lines as a newcomer meets them: FASTA files as they come, bad output paths found before
the slow work, and splits that cannot train (``sedd.data``, ``sedd.train``, ``sedd.score``,
``sedd.evaluate``, ``sedd.hmm``)."""
from __future__ import annotations

import argparse

import pytest

from sedd import checkpoint, data, evaluate, hmm, score, train
from sedd.alphabet import PROTEIN
from sedd.data import Dataset, read_fasta, split

SEQ = "MSTARPLKSVDYEVFGRVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQG"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from studio_helpers import tiny_checkpoint_dir
    return tiny_checkpoint_dir(tmp_path_factory.mktemp("ckpt"))


# ---- FASTA as it comes ----------------------------------------------------------------------------------
def test_fasta_records_with_one_header_or_an_empty_header_are_all_read(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_text(">\nMKV\n>a\nMKVL\n>a\nMKVLL\n>a other words\nGG\n")
    got = read_fasta(path, PROTEIN)
    assert got.ids == ["record_1", "a", "a", "a"]
    assert [PROTEIN.decode(t) for t in got.tokens] == ["MKV", "MKVL", "MKVLL", "GG"]


def test_fasta_sequence_lines_may_hold_spaces_and_windows_line_ends(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_bytes(b"\n>a\r\nmkv LLA\r\n;a comment\r\nGG*\r\n>b\r\nAC DE\r\n")
    got = read_fasta(path, PROTEIN)
    assert got.ids == ["a", "b"] and [PROTEIN.decode(t) for t in got.tokens] == ["MKVLLAGG", "ACDE"]


def test_a_fasta_with_nothing_usable_says_why(tmp_path):
    path = tmp_path / "aligned.fasta"
    path.write_text(">a\nMK-VG*\n>b\nMK--G\n")
    with pytest.raises(ValueError, match=r"holds no usable sequence .*: dropped 2 of 2 sequences: 2 contain '-' "
                                         r"\(an alignment\? remove its gap characters\)"):
        read_fasta(path, PROTEIN)
    with pytest.raises(ValueError, match=r"is a folder, not a FASTA file"):
        read_fasta(tmp_path, PROTEIN)


def test_a_split_that_leaves_nothing_to_train_on_is_refused():
    with pytest.raises(ValueError, match=r"holding out 1 of 1 sequence\(s\) for validation leaves none to train on"):
        with pytest.warns(UserWarning):
            split(Dataset(["a"], [[0, 1]]), 0.05, 0)
    one_cluster = Dataset(["a", "b"], [[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=r"leaves none to train on \(1 cluster\(s\)\)"):
        split(one_cluster, 0.05, 0, {"a": "a", "b": "a"})


# ---- sedd.data --------------------------------------------------------------------------------------------
def test_the_split_cli_notes_dropped_sequences_and_warns_in_one_line(tmp_path, capsys):
    path = tmp_path / "all.fasta"
    path.write_text("".join(f">s{i}\n{SEQ}\n" for i in range(10)) + ">gap\nMK-V\n")
    assert data.main(["--data", str(path), "--out", str(tmp_path / "split")]) == 0
    err = capsys.readouterr().err
    assert "note: dropped 1 of 11 sequences: 1 contain '-'" in err
    assert "warning: validation split is random by sequence" in err and "UserWarning" not in err


def test_the_split_cli_refuses_an_unwritable_out_and_a_max_len_below_one(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setattr(data, "read_fasta", lambda *a, **k: pytest.fail("read the FASTA before checking --out"))
    assert data.main(["--data", "x.fasta", "--out", str(tmp_path / "afile" / "split")]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        data.main(["--data", "x.fasta", "--out", str(tmp_path / "split"), "--max-len", "0"])
    assert e.value.code == 2 and "argument --max-len: '0' is not a whole number above 0" in capsys.readouterr().err


# ---- sedd.train -------------------------------------------------------------------------------------------
def test_training_refuses_an_unwritable_out_before_it_trains(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setattr(train, "train", lambda cfg: pytest.fail("trained before checking --out"))
    with pytest.raises(SystemExit) as e:
        train.main(["--data", "x.fasta", "--out", str(tmp_path / "afile" / "run"), "--preset", "tiny",
                    "--max-steps", "1"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --out {tmp_path / 'afile' / 'run' / 'config.json'} cannot be written: "
        f"{tmp_path / 'afile'} is a file, not a folder")


# ---- sedd.score -------------------------------------------------------------------------------------------
def test_scoring_an_empty_fasta_or_a_folder_says_so(tiny, tmp_path, capsys):
    (tmp_path / "empty.fasta").write_text("\n")
    assert score.main(["--checkpoint", str(tiny), "--fasta", str(tmp_path / "empty.fasta")]) == 2
    assert "error: FASTA file" in (err := capsys.readouterr().err) and "is empty" in err
    assert score.main(["--checkpoint", str(tiny), "--fasta", str(tmp_path)]) == 2
    assert "is a folder, not a FASTA file" in capsys.readouterr().err


def test_mutations_paths_are_checked_before_scoring(tiny, tmp_path, capsys, monkeypatch):
    (tmp_path / "in.csv").write_text("mutant\nS2C\n")
    monkeypatch.setattr(score, "score_sequence", lambda *a, **k: pytest.fail("scored before checking the paths"))
    common = ["--checkpoint", str(tiny), "--sequence", SEQ]
    assert score.main(common + ["--mutations", str(tmp_path / "in.csv"), "--out", str(tmp_path)]) == 2
    assert "--out" in (err := capsys.readouterr().err) and "is a directory" in err
    assert score.main(common + ["--mutations", str(tmp_path / "no.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "--mutations" in (err := capsys.readouterr().err) and "is not a file" in err


def test_a_spreadsheet_csv_with_a_byte_order_mark_is_read(tiny, tmp_path):
    (tmp_path / "in.csv").write_bytes("\ufeffmutant,DMS_score\nS2C,1\nM1A,2\n".encode())
    model = checkpoint.load(tiny)
    got = score.score_mutations_csv(model, model.alphabet.encode(SEQ), tmp_path / "in.csv", tmp_path / "out.csv")
    assert got["num_variants"] == 2 and got["num_with_dms"] == 2
    assert (tmp_path / "out.csv").read_text().startswith("mutant,DMS_score,sedd_score\n")


# ---- sedd.evaluate ----------------------------------------------------------------------------------------
def test_evaluate_warns_when_its_split_is_not_the_one_training_made():
    class Model:
        meta = {"training": {"config": {"clusters": None, "seed": 4, "val_fraction": 0.1}}}
    asked = argparse.Namespace(split_seed=0, val_fraction=0.05)
    assert evaluate._unlike_training(asked, Model()) == [
        "training split at random by sequence, without --clusters", "--split-seed 0, training's --seed 4",
        "--val-fraction 0.05, training's 0.1"]
    Model.meta = {"training": {"config": {"clusters": "c.tsv", "seed": 0, "val_fraction": 0.05}}}
    assert evaluate._unlike_training(asked, Model()) == []
    Model.meta = {}                                                     # a checkpoint that records no training
    assert evaluate._unlike_training(asked, Model()) == []


# ---- sedd.hmm ---------------------------------------------------------------------------------------------
def test_building_an_hmm_notes_dropped_sequences(tmp_path, capsys):
    path = tmp_path / "train.fasta"
    path.write_text(f">a\n{SEQ}\n>b\n{SEQ[:-3]}\n>c\nMK-VG\n")
    assert hmm.main(["--train", str(path), "--out", str(tmp_path / "family.hmm"), "--iterations", "1"]) == 0
    assert "note: " in (err := capsys.readouterr().err) and "dropped 1 of 3 sequences: 1 contain '-'" in err
