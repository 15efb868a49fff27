"""``python -m sedd.evaluate`` refuses bad arguments before any slow work, and prints its result before
writing the report and the config, so a late failure loses nothing. Tiny checkpoint, no network."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import profile_family, write_fasta

from sedd import checkpoint
from sedd import evaluate as ev

REPO = Path(__file__).resolve().parent.parent


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        code = ev.main([str(a) for a in args])
    except SystemExit as stop:          # argument mistakes exit through argparse's p.error
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "family.fasta"
    write_fasta(path, profile_family(6, 40)[0])
    return path


@pytest.fixture
def no_work(monkeypatch) -> list[str]:
    """Every slow step (and loading the model) fails the test if it runs."""
    ran: list[str] = []

    def forbidden(name):
        def run_(*args, **kwargs):
            ran.append(name)
            raise AssertionError(f"{name} ran before the arguments were checked")
        return run_
    for name in ("elbo_to_precision", "family_distribution", "infill_recovery", "draw_samples"):
        monkeypatch.setattr(ev, name, forbidden(name))
    monkeypatch.setattr(checkpoint, "load", forbidden("checkpoint.load"))
    return ran


@pytest.mark.parametrize("extra, message", [
    (["--infill-fraction", 2], "--infill-fraction is the share of residues masked: more than 0 and at most 1, got 2.0"),
    (["--infill-fraction", 0], "--infill-fraction is the share of residues masked"),
    (["--target-stderr", 0], "--target-stderr must be more than 0"),
    (["--target-stderr", -0.1], "--target-stderr must be more than 0"),
    (["--hmm", "{tmp}/missing.hmm", "--samples", 4, "--reference", "{fasta}"],
     "no profile HMM at {tmp}/missing.hmm; build one with python -m sedd.hmm"),
    (["--hmm", "{fasta}"], "--hmm scores the samples: give --samples N"),
    (["--report", "{fasta}/eval/report.md"], "--report {fasta}/eval/report.md cannot be written: {fasta} is a file"),
    (["--report", "{tmp}"], "--report {tmp} is a directory"),
    (["--checkpoint", "someone/sedd-acyp", "--update-config"],
     "--update-config rewrites the checkpoint's config.json: give a local checkpoint directory, not 'someone/sedd-acyp'"),
    (["--device", "foo"], "unknown device 'foo'; use --device cpu"),
    (["--t-samples", 8, "--max-t-samples", 4], "--max-t-samples (4) is below --t-samples (8)"),
    # options that would do nothing: they were accepted and ignored
    (["--val-fraction", 0.5, "--split-seed", 9], "--val-fraction and --split-seed choose the held-out clusters of "
                                                "--data with --clusters; without --clusters all of --data is evaluated"),
    (["--split-seed", 9], "--split-seed chooses the held-out clusters"),
    (["--motif", ""], "argument --motif: '' matches the empty text: a motif must need at least one residue"),
    (["--motif", "^$"], "argument --motif: '^$' matches the empty text"),
    (["--motif", "A*"], "argument --motif: 'A*' matches the empty text"),
])
def test_bad_arguments_are_refused_before_any_work(extra, message, tiny_checkpoint, fasta, tmp_path, no_work, capsys):
    fill = {"tmp": tmp_path, "fasta": fasta}
    args = ["--checkpoint", tiny_checkpoint, "--data", fasta, *[str(x).format(**fill) for x in extra], "--json"]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and no_work == []
    last = err.strip().splitlines()[-1]        # argparse's usage lines come before its error line
    assert last.startswith(("error: ", "python -m sedd.evaluate: error: ")) and message.format(**fill) in last
    assert "Traceback" not in err


def test_a_missing_hmm_is_refused_from_the_shell_in_one_line(tiny_checkpoint, fasta, tmp_path):
    """The reviewer's case: it used to fail only after the ELBO, infill and sampling work."""
    proc = subprocess.run([sys.executable, "-m", "sedd.evaluate", "--checkpoint", str(tiny_checkpoint), "--data",
                           str(fasta), "--samples", "4", "--reference", str(fasta), "--hmm", "/nonexistent.hmm"],
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["error: no profile HMM at /nonexistent.hmm; build one with python -m sedd.hmm "
                                        "--train FASTA --out /nonexistent.hmm"]


def test_a_broken_hmm_file_is_refused_before_the_elbo(tiny_checkpoint, fasta, tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(ev, "elbo_to_precision", lambda *a, **k: ran.append("elbo"))
    broken = tmp_path / "family.hmm"
    broken.write_text("not an HMM\n")
    code, out, err = run(capsys, "--checkpoint", tiny_checkpoint, "--data", fasta, "--samples", 2, "--reference", fasta,
                         "--hmm", broken, "--json")
    assert code == 2 and out == "" and ran == []
    assert err.strip() == f"error: {broken} is not a HMMER3 profile HMM (format not recognized by HMMER); " \
                          "build one with python -m sedd.hmm"


def test_samples_from_a_checkpoint_without_a_length_histogram_are_refused_before_the_elbo(
        tiny_model, fasta, tmp_path, monkeypatch, capsys):
    """The refusal came after the ELBO, the family distribution and the infill, and told the user to
    give --length, which evaluate does not have; without --samples the summary read "None nats/residue"."""
    from sedd.alphabet import PROTEIN
    from sedd.schedule import LogLinearSchedule
    bare = checkpoint.save(tmp_path / "bare", tiny_model, PROTEIN, LogLinearSchedule(), {}, meta={})
    ran = []
    monkeypatch.setattr(ev, "elbo_to_precision", lambda *a, **k: ran.append("elbo"))
    code, out, err = run(capsys, "--checkpoint", bare, "--data", fasta, "--samples", 2, "--reference", fasta)
    assert code == 2 and out == "" and ran == []
    assert err.strip() == ("error: --samples: this checkpoint stores no length histogram, so unconditional samples "
                           "have no lengths to draw; evaluate without --samples")
    monkeypatch.undo()
    code, out, err = run(capsys, "--checkpoint", bare, "--data", fasta, "--target-stderr", 1, "--max-seqs", 2)
    assert code == 0 and "−log p(length)   not known (the checkpoint stores no length histogram)" in out


def test_the_result_is_printed_before_a_late_write_fails(tiny_checkpoint, fasta, tmp_path, monkeypatch, capsys):
    """A config write that fails after all the work: the JSON (listing the report's files) is already out."""
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint, "update_config", full_disk)
    report = tmp_path / "eval" / "report.md"
    code, out, err = run(capsys, "--checkpoint", tiny_checkpoint, "--data", fasta, "--max-seqs", 4, "--target-stderr",
                         0.5, "--samples", 2, "--reference", fasta, "--batch-size", 4, "--report", report,
                         "--update-config", "--json")
    assert code == 2
    printed = json.loads(out)
    assert printed["num_sequences"] == 4 and printed["samples"]["num_samples"] == 2
    assert printed["files"] == {"samples_fasta": str(report.with_name("report_samples.fasta")),
                                "identity_histogram": str(report.with_name("report_identity.png")),
                                "report": str(report)}
    assert all(Path(f).is_file() for f in printed["files"].values())        # the names printed are the files written
    assert err.strip().splitlines()[-1] == "error: [Errno 28] No space left on device (the result is on stdout)"


def test_the_help_names_the_checkpoint_evaluate_uses_by_default():
    """It said "default: the bundled model" while $SEDD_CHECKPOINT, when set, is what it evaluates."""
    assert "(default: $SEDD_CHECKPOINT, else the bundled ACYP model)" in " ".join(ev._parser().format_help().split())
