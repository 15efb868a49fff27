"""``sedd.score`` and the library face of ``sedd.sample`` as a demanding user meets them: FASTA comment
lines, what --help says, a bad variant table found before the slow work, and lengths that are not
whole numbers."""
from __future__ import annotations

import json

import pytest

from sedd import checkpoint, score

SEQ = "MSTARPLKSVDYEVFGRVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQG"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from studio_helpers import tiny_checkpoint_dir
    return tiny_checkpoint_dir(tmp_path_factory.mktemp("ckpt"))


def run_score(capsys, *argv) -> tuple[int, str, str]:
    code = score.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- FASTA comment lines ----------------------------------------------------------------------------------
def test_score_fasta_skips_comment_lines_as_training_does(tiny, capsys, tmp_path):
    path = tmp_path / "commented.fasta"
    path.write_text(f";file written by hand\n>a first\n{SEQ[:20]}\n;a note inside the record\n{SEQ[20:]}\n"
                    f">b\r\n;windows line ends\r\nMKVLL\r\n")
    code, out, err = run_score(capsys, "--checkpoint", tiny, "--fasta", path, "--json")
    assert code == 0, err
    entries = json.loads(out)["sequences"]
    assert [(e["name"], e["sequence"]) for e in entries] == [("a", SEQ), ("b", "MKVLL")]


def test_comment_lines_of_pasted_text_are_skipped_and_a_semicolon_elsewhere_is_refused(tiny, capsys, tmp_path):
    assert score.fasta_records(f";pasted\n{SEQ}") == [("sequence", SEQ)]
    code, out, _ = run_score(capsys, "--checkpoint", tiny, "--sequence", f">x\n;c\n{SEQ}", "--json")
    assert code == 0 and json.loads(out)["sequences"][0]["sequence"] == SEQ
    code, _, err = run_score(capsys, "--checkpoint", tiny, "--sequence", "MKV;GG")
    assert code == 2 and "invalid character ';' at position 4" in err
    code, _, err = run_score(capsys, "--checkpoint", tiny, "--sequence", ";only a comment")
    assert code == 2 and "--sequence holds only comment lines (lines that start with ;) and no sequence" in err
    path = tmp_path / "comments.fasta"
    path.write_text(";one\n;two\n")
    code, _, err = run_score(capsys, "--checkpoint", tiny, "--fasta", path)
    assert code == 2 and f"FASTA file {path} holds only comment lines" in err


# ---- sedd.score: what --help says, and a bad variant table found before the slow work ---------------------
def test_score_help_names_the_environment_variable_its_default_checkpoint_reads(tiny, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        score.main(["--help"])
    assert "$SEDD_CHECKPOINT" in " ".join(capsys.readouterr().out.split())
    monkeypatch.setenv("SEDD_CHECKPOINT", str(tiny))          # and the default does read it
    code, out, _ = run_score(capsys, "--sequence", "MKVLL", "--json")
    assert code == 0 and json.loads(out)["checkpoint"] == str(tiny)


def test_a_bad_variant_table_is_refused_before_the_sequence_is_scored(tiny, capsys, tmp_path, monkeypatch):
    scored = []
    real = score.score_sequence
    monkeypatch.setattr(score, "score_sequence", lambda *a, **k: scored.append(a) or real(*a, **k))
    table = tmp_path / "variants.csv"
    table.write_text("mutant,DMS_score\nM1A,0.5\nS2C,0.1\nQ3W,0.2\n")            # SEQ[2] is T, not Q
    code, _, err = run_score(capsys, "--checkpoint", tiny, "--sequence", SEQ, "--mutations", table,
                             "--out", tmp_path / "scored.csv")
    assert code == 2 and f"{table}, line 4 (mutant 'Q3W'): mutation 'Q3W': position 3 is 'T'" in err
    assert scored == [] and not (tmp_path / "scored.csv").exists()
    table.write_text("mutant,DMS_score\nM1A,0.5\nS2C,0.1\nT3W,0.2\n")
    code, out, err = run_score(capsys, "--checkpoint", tiny, "--sequence", SEQ, "--mutations", table,
                               "--out", tmp_path / "scored.csv")
    assert code == 0 and len(scored) == 1 and "3 variants scored" in out
    assert (tmp_path / "scored.csv").read_text().splitlines()[0] == "mutant,DMS_score,sedd_score"


# ---- the library face: plan_designs -----------------------------------------------------------------------
@pytest.mark.parametrize("length", [2.5, float("inf"), float("nan"), True, "١٢", "0x10", -3.0])
def test_plan_designs_refuses_a_length_that_is_not_a_whole_number_instead_of_rounding_it(tiny, length):
    from sedd.design import plan_designs
    with pytest.raises(ValueError, match=r"give a template, or a length from 1 to 128 or 'auto'|between 1 and 128"):
        plan_designs(checkpoint.load(tiny), length=length)


def test_plan_designs_takes_whole_lengths_as_numbers_or_digits(tiny):
    from sedd.design import plan_designs
    model = checkpoint.load(tiny)
    assert [len(plan_designs(model, length=n).templates[0]) for n in (7, 7.0, " 7 ", "007")] == [7, 7, 7, 7]


def test_plan_designs_refuses_a_template_and_a_length_together_and_an_unknown_span_mode(tiny):
    from sedd.design import plan_designs
    model = checkpoint.load(tiny)
    with pytest.raises(ValueError, match=r"give a template or a length, not both; got template 'MK__' and length 5"):
        plan_designs(model, template="MK__", length=5)
    for what in ({"length": "auto", "num_samples": 3}, {"length": 5}, {"template": "MK__"}):
        with pytest.raises(ValueError, match=r"span lengths must be chosen by one of sample, map; got 'mode'"):
            plan_designs(model, span_lengths="mode", **what)
