"""Inputs a user of the command-line tools types or saves: files from other tools and editors (a
byte-order mark, Latin-1), tables with mistakes, refusals that must come before the slow work, and
output read by ``head``. A bad input gets one ``error:`` line naming the file (and its line), exit
code 2, no traceback; a reader that stops early ends the tool quietly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import profile_family, run_main, write_fasta

from sedd import data, score
from sedd.alphabet import PROTEIN

WT = "MKVGFAKLMQ"
ROOT = Path(__file__).resolve().parents[1]


# ---- FASTA files ----------------------------------------------------------------------------------------
def test_score_reads_a_fasta_saved_with_a_byte_order_mark(capsys, tmp_path, tiny_checkpoint):
    fasta = tmp_path / "windows.fasta"
    fasta.write_bytes(b"\xef\xbb\xbf>first\r\nMKVGF\r\n>second\r\nMKKGG\r\n")     # UTF-8 with BOM, CRLF
    code, out, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--fasta", fasta, "--json")
    assert code == 0, err
    entries = json.loads(out)["sequences"]
    assert [(e["name"], e["sequence"]) for e in entries] == [("first", "MKVGF"), ("second", "MKKGG")]


def test_score_reads_a_gzipped_fasta_as_training_does(capsys, tmp_path, tiny_checkpoint):
    """UniProt and Pfam downloads come as .fasta.gz: sedd.train read them, sedd.score failed on byte 0x8b."""
    import gzip
    fasta = tmp_path / "family.fasta.gz"
    fasta.write_bytes(gzip.compress(b">first\nMKVGF\n>second\nMKKGG\n"))
    code, out, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--fasta", fasta, "--json")
    assert code == 0, err
    assert [(e["name"], e["sequence"]) for e in json.loads(out)["sequences"]] == [("first", "MKVGF"), ("second", "MKKGG")]


def test_score_refuses_a_fasta_that_is_not_utf8_naming_the_file(capsys, tmp_path, tiny_checkpoint):
    fasta = tmp_path / "latin1.fasta"
    fasta.write_bytes(">prot\xe9ine\nMKVGF\n".encode("latin-1"))
    code, out, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--fasta", fasta)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert str(fasta) in err and "not UTF-8" in err and "0xe9" in err


def test_training_fasta_saved_with_a_byte_order_mark_keeps_its_first_record(tmp_path):
    fasta = tmp_path / "family.fasta"
    fasta.write_bytes(b"\xef\xbb\xbf>a first\nMKVGF\n>b\nMKKGG\n")
    read = data.read_fasta(fasta, PROTEIN)          # sedd.train, sedd.evaluate and sedd.data read through it
    assert read.ids == ["a", "b"] and [PROTEIN.decode(t) for t in read.tokens] == ["MKVGF", "MKKGG"]


def test_cluster_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    tsv = tmp_path / "clusters.tsv"
    tsv.write_bytes("a\tb\nr\xe9p\tc\n".encode("latin-1"))
    with pytest.raises(ValueError) as e:
        data.read_clusters(tsv)
    assert str(tsv) in str(e.value) and "not UTF-8" in str(e.value)


def test_cluster_file_with_a_byte_order_mark_keeps_its_header_a_header(tmp_path):
    tsv = tmp_path / "clusters.tsv"
    tsv.write_bytes(b"\xef\xbb\xbfcluster\tmember\na\ta\na\tb\n")
    assert data.read_clusters(tsv) == {"a": "a", "b": "a"}


# ---- --mutations tables ---------------------------------------------------------------------------------
def test_mutations_table_that_is_not_utf8_is_refused_naming_the_file(capsys, tmp_path, tiny_checkpoint):
    table = tmp_path / "variants.csv"
    table.write_bytes("mutant,note\nM1A,caf\xe9\n".encode("latin-1"))
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--sequence", WT, "--mutations", table,
                            "--out", tmp_path / "scored.csv")
    assert code == 2 and err.count("\n") == 1
    assert str(table) in err and "not UTF-8" in err
    assert not (tmp_path / "scored.csv").exists()


def test_mutations_row_with_more_fields_than_the_header_names_its_line(capsys, tmp_path, tiny_checkpoint):
    table = tmp_path / "variants.csv"
    table.write_text("mutant,DMS_score\nM1A,0.5\nK2R,1,5\n")          # an unquoted decimal comma, say
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--sequence", WT, "--mutations", table,
                            "--out", tmp_path / "scored.csv")
    assert code == 2 and err.count("\n") == 1
    assert f"{table}, line 3" in err and "3 fields" in err and "header has 2" in err
    assert not (tmp_path / "scored.csv").exists()


def test_a_bad_mutant_after_blank_lines_is_reported_at_its_own_line(capsys, tmp_path, tiny_checkpoint):
    table = tmp_path / "variants.csv"
    table.write_text("mutant\nM1A\n\n\nK2R\nX5A\n")          # X5A is on line 6 of the file
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--sequence", WT, "--mutations", table,
                            "--out", tmp_path / "scored.csv")
    assert code == 2
    assert f"{table}, line 6 (mutant 'X5A')" in err


def test_blank_lines_in_a_mutations_table_do_not_change_the_output(capsys, tmp_path, tiny_checkpoint):
    table = tmp_path / "variants.csv"
    table.write_text("mutant,DMS_score\nM1A,0.5\n\nK2R,1\n")
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--sequence", WT, "--mutations", table,
                            "--out", tmp_path / "scored.csv")
    assert code == 0, err
    rows = (tmp_path / "scored.csv").read_text().splitlines()
    assert rows[0] == "mutant,DMS_score,sedd_score" and [r.split(",")[0] for r in rows[1:]] == ["M1A", "K2R"]


# ---- output read by head ----------------------------------------------------------------------------------
def test_score_whose_reader_stops_early_ends_without_a_traceback(tmp_path, tiny_checkpoint):
    proc = subprocess.Popen([sys.executable, "-m", "sedd.score", "--checkpoint", str(tiny_checkpoint),
                             "--sequence", WT, "--scan", "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    proc.stdout.close()                     # `| head` that has already exited: every write is EPIPE
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 1


def test_the_split_whose_reader_stops_early_ends_without_a_traceback(tmp_path):
    """``python -m sedd.data … | head -0`` ended with a BrokenPipeError traceback (the split is written)."""
    write_fasta(tmp_path / "family.fasta", profile_family(40, 30)[0])
    proc = subprocess.Popen([sys.executable, "-m", "sedd.data", "--data", str(tmp_path / "family.fasta"),
                             "--out", str(tmp_path / "split")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 1 and (tmp_path / "split" / "val.fasta").is_file()


def test_ctrl_c_ends_a_tool_with_one_line_and_by_the_signal(tiny_checkpoint):
    """Ctrl-C in ``sedd.sample`` (and every tool ``cli.run`` ends) printed a screenful of traceback; what
    it had printed stands. The process ends by SIGINT itself (a shell sees 130), so a shell loop running
    the tool stops too, as it does for any Unix tool; an exit with status 130 would let it go on."""
    proc = subprocess.Popen([sys.executable, "-m", "sedd.sample", "--checkpoint", str(tiny_checkpoint), "--length", "30",
                             "--num-samples", "100000", "--batch-size", "4", "--steps", "8", "--seed", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    first = proc.stdout.readline()          # designs are being printed: the run is well under way
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert first.startswith(b">design_1") and proc.returncode == -signal.SIGINT
    assert "Traceback" not in err.decode() and err.decode().strip().endswith("stopped by Ctrl-C")


def test_a_shell_loop_stops_at_a_tools_ctrl_c(tmp_path, tiny_checkpoint):
    """What the signal's own death is for: Ctrl-C reaches the shell and the tool together, and bash
    ends its loop only if the tool died of it."""
    sample = (f"{sys.executable} -m sedd.sample --checkpoint {tiny_checkpoint} --length 30 --num-samples 100000 "
              "--batch-size 4 --steps 8 --seed 1")
    loop = f"for i in 1 2; do echo round $i; {sample}; done; echo loop finished"
    proc = subprocess.Popen(["bash", "-c", loop], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                         "PYTHONUNBUFFERED": "1"})
    assert proc.stdout.readline() == b"round 1\n"
    assert proc.stdout.readline().startswith(b">design_1")      # the tool is under way
    os.killpg(proc.pid, signal.SIGINT)                # as a terminal's Ctrl-C: the whole foreground group
    out, err = proc.communicate(timeout=120)
    assert b"stopped by Ctrl-C" in err and b"round 2" not in out and b"loop finished" not in out


# ---- sedd.sample: refusals before the slow work ---------------------------------------------------------------
def test_particles_with_another_sampler_are_refused_before_the_span_lengths_are_chosen(capsys, monkeypatch,
                                                                                      tiny_checkpoint):
    from sedd import sample

    planned = []
    real_plan = sample.plan_designs
    monkeypatch.setattr(sample, "plan_designs", lambda *a, **k: planned.append(k) or real_plan(*a, **k))
    for extra in (["--sampler", "remask"], ["--top-p", "0.9"], ["--particles", "100000"]):
        code = sample.main(["--checkpoint", str(tiny_checkpoint), "--template", "MK[1-6]GF[KR]", "--particles", "4",
                            "--steps", "4", *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and "particles" in err
    assert planned == []                        # the span posterior (minutes for a few spans) was never started


def test_a_refusal_names_the_record_only_when_it_has_a_name(capsys, tiny_checkpoint):
    """Not "sequence: the sequence is empty" for a bare --sequence; a FASTA record keeps its name."""
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--sequence", " ")
    assert code == 2 and err.strip() == "error: the sequence is empty: give 1 to 128 residues"
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_checkpoint, "--sequence", ">mine\nMKV_G")
    assert code == 2 and err.startswith("error: mine: scoring needs a full sequence")


def test_a_whole_number_beyond_pythons_digit_limit_is_refused_in_the_tools_words():
    """int() refused it with "Exceeds the limit (4300 digits) for integer string conversion"."""
    from sedd.cli import whole_number
    with pytest.raises(ValueError, match="^a whole number of 5,000 digits is beyond any count or seed$"):
        whole_number("9" * 5000)
    assert whole_number("0" * 5000 + "7") == 7            # leading zeros do not count


def test_sample_whose_reader_stops_early_ends_without_an_error_line(tiny_checkpoint):
    """``sedd.sample … | head -1`` ended with "error: [Errno 32] Broken pipe" and exit code 2: the tool's
    own OSError clause caught the reader's departure as a failure."""
    proc = subprocess.Popen([sys.executable, "-m", "sedd.sample", "--checkpoint", str(tiny_checkpoint), "--length", "30",
                             "--num-samples", "40", "--batch-size", "2", "--steps", "4"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "error:" not in err and "Traceback" not in err, err
    assert proc.returncode == 1


# ---- outputs that are inputs ------------------------------------------------------------------------------
def test_no_tool_writes_its_output_over_one_of_its_inputs(capsys, tmp_path, tiny_checkpoint):
    """``sedd.hmm --out X.fa`` replaced the FASTA it read with the HMM; ``evaluate --report`` the data, or the
    reference beside it that its samples FASTA is named like; ``sedd.data --out`` the FASTA in that folder."""
    from sedd import evaluate, hmm

    family = tmp_path / "family.fasta"
    write_fasta(family, profile_family(40, 30)[0])
    before = family.read_bytes()
    mutations = tmp_path / "variants.csv"
    mutations.write_text("mutant\nM1A\n")
    reference = tmp_path / "r_samples.fasta"
    reference.write_bytes(before)
    refusals = [
        (hmm.main, ["--train", family, "--out", family], "--out", "--train"),
        (evaluate.main, ["--checkpoint", tiny_checkpoint, "--data", family, "--report", family],
         "--report", "--data"),
        (evaluate.main, ["--checkpoint", tiny_checkpoint, "--data", family, "--reference", reference, "--samples", 2,
                         "--report", tmp_path / "r.md"], "--report's samples FASTA", "--reference"),
        (data.main, ["--data", tmp_path / "train.fasta", "--out", tmp_path], "--out's train.fasta", "--data"),
        (score.main, ["--checkpoint", tiny_checkpoint, "--sequence", WT, "--mutations", mutations, "--out", mutations],
         "--out", "--mutations"),
    ]
    (tmp_path / "train.fasta").write_bytes(before)
    for main, args, output, read in refusals:
        code, _, err = run_main(capsys, main, *args)
        assert code == 2 and f"error: {output} " in err and f"is the file {read} reads" in err, err
    assert family.read_bytes() == reference.read_bytes() == (tmp_path / "train.fasta").read_bytes() == before
    assert mutations.read_text() == "mutant\nM1A\n" and not (tmp_path / "r.md").exists()


def test_the_split_refuses_a_blank_out_and_names_the_files_it_wrote(capsys, tmp_path, monkeypatch):
    """``--out ''`` wrote train.fasta into the working folder and said it wrote "/train.fasta"."""
    write_fasta(tmp_path / "family.fasta", profile_family(40, 30)[0])
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, data.main, "--data", "family.fasta", "--out", "")
    assert code == 2 and "argument --out: '' is not a folder (it is blank)" in err
    assert not (tmp_path / "train.fasta").exists()
    code, out, _ = run_main(capsys, data.main, "--data", "family.fasta", "--out", "split")
    assert code == 0 and out.startswith(f"wrote {Path('split') / 'train.fasta'} (")
