"""One FASTA reading (``sedd.data.fasta_records``) for every tool: a file gives the same records to
training and evaluation (``read_fasta``) as to ``sedd.score --fasta``, which read it two ways before."""
from __future__ import annotations

import json
import re

import pytest
from conftest import run_main

from sedd import score
from sedd.alphabet import PROTEIN
from sedd.data import fasta_records, read_fasta


def both_readings(capsys, tiny_checkpoint, path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(id, sequence) of every record of ``path`` as ``read_fasta`` reads it, and as ``sedd.score`` does."""
    data = read_fasta(path, PROTEIN)
    code, out, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--fasta", path, "--json")
    assert code == 0, err
    return ([(name, PROTEIN.decode(t)) for name, t in zip(data.ids, data.tokens)],
            [(e["name"], e["sequence"]) for e in json.loads(out)["sequences"]])


@pytest.mark.parametrize("text, records", [
    # before: read_fasta refused the file ("File starts with 'M' instead of '>'")
    ("MKVL\n>a\nGGKV\n", [("sequence", "MKVL"), ("a", "GGKV")]),
    # before: read_fasta took '>b' for residues of a and dropped the record, b with it
    (">a\nMKVL\n   >b\nGGKV\n", [("a", "MKVL"), ("b", "GGKV")]),
    # before: both refused the indented comment (read_fasta dropped a for its ';')
    (";made by hand\n>a\nMK\n;a note\n  ; an indented note\nVL\n", [("a", "MKVL")]),
    (">\nMKVL\n>  \nGGKV\n", [("record_1", "MKVL"), ("record_2", "GGKV")]),
    (">a\nMKVL\n>a other words\nGGKV\n", [("a", "MKVL"), ("a", "GGKV")]),
    (">a\n1 MKV la 12\n13 GG *\n", [("a", "MKVLAGG")]),
])
def test_score_and_read_fasta_give_a_file_the_same_records(capsys, tiny_checkpoint, tmp_path, text, records):
    path = tmp_path / "x.fasta"
    path.write_text(text)
    assert both_readings(capsys, tiny_checkpoint, path) == (records, records)


def test_only_one_trailing_star_is_ignored_by_either(capsys, tiny_checkpoint, tmp_path):
    """read_fasta stripped every trailing '*' and kept 'GG**' as GG, which sedd.score refuses."""
    path = tmp_path / "x.fasta"
    for body in ("GG**", "GG*12"):
        path.write_text(f">a\nMKVL\n>b\n{body}\n")
        data = read_fasta(path, PROTEIN)
        assert data.ids == ["a"] and data.dropped == {"*": 1}
        code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--fasta", path)
        assert code == 2 and "b: invalid character '*' at position 14 (line 4, column 3)" in err


@pytest.mark.parametrize("text, message", [
    ("", "is empty"), (" \n\n", "is empty"), (";one\n  ;two\n", "holds only comment lines"),
    # bare sequences, one per line: read as one record they were joined into one sequence without a word
    # (one line before the first header is a header-less record, as in pasted text)
    ("MKVL\nGGKV\n", "has 2 lines before its first header line (from line 1: 'MKVL')"),
    (";note\n\nMKVL\nGGKV\nWW\n>a\nGGKV\n", "has 3 lines before its first header line (from line 3: 'MKVL')"),
])
def test_a_file_without_records_is_refused_alike(capsys, tiny_checkpoint, tmp_path, text, message):
    path = tmp_path / "x.fasta"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"FASTA file {path} {message}")):
        read_fasta(path, PROTEIN)
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--fasta", path)
    assert code == 2 and f"FASTA file {path} {message}" in err


def test_an_indented_header_line_starts_a_new_record():
    """An indented '>b' line was read as part of record a, and b was dropped without a word."""
    records = fasta_records(">a\nMKVLAGFRE\n  >b\nGGKV\n;note\n>c d\nAA\n")
    assert [(name, "".join(body.split())) for name, body in records] == [("a", "MKVLAGFRE"), ("b", "GGKV"), ("c", "AA")]
    assert [name for name, _ in fasta_records("MKV\n  >b\nGG")] == ["sequence", "b"]


def test_a_bad_residue_in_a_file_is_placed_by_the_files_own_line_and_column(capsys, tiny_checkpoint, tmp_path):
    """Records were parsed from their first residue line on: B on line 5 of the file was "line 2"."""
    path = tmp_path / "x.fasta"
    path.write_text(">a\nMKVLAG\n>b\nMKV\nGGB\n")
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--fasta", path)
    assert code == 2 and "b: invalid character 'B' at position 20 (line 5, column 3)" in err
