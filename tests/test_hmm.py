"""Family profile HMM (pyhmmer) on a synthetic family, what it refuses, and the low-complexity measure."""
import pytest
from conftest import profile_family, write_dna_hmm, write_fasta

from sedd import hmm
from sedd.metrics import longest_run, low_complexity

SEQ = "MSTARPLKSVDYEVFGRVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQG"


@pytest.fixture(scope="module")
def family():
    train, _ = profile_family(150, 60, seed=4, sharpness=3.0)
    held_out = profile_family(190, 60, seed=4, sharpness=3.0)[0][150:]     # same profile, other draws
    return train, held_out


@pytest.fixture(scope="module")
def family_hmm(family, tmp_path_factory):
    path = tmp_path_factory.mktemp("hmm") / hmm.HMM_NAME
    return hmm.load(hmm.save(hmm.build(family[0], iterations=2), path))


def test_family_members_hit_and_their_shuffles_do_not(family, family_hmm):
    train, held_out = family
    other_family, _ = profile_family(40, 60, seed=99, sharpness=3.0)
    m = hmm.family_metrics(family_hmm, held_out, train)
    assert m["hit_rate"] == 1.0 and m["natural_hit_rate"] == 1.0
    assert 0.8 < m["bits_ratio"] < 1.2
    assert m["shuffled"]["hit_rate"] == 0.0 and abs(m["shuffled"]["bits_ratio"]) < 0.15
    unrelated = hmm.family_metrics(family_hmm, other_family, train)
    assert unrelated["hit_rate"] == 0.0 and unrelated["bits_ratio"] < 0.15


def test_bit_scores_keep_input_order(family, family_hmm):
    train, _ = family
    shuffled = hmm.shuffled(train[:5], seed=1)
    bits, evalues = hmm.bit_scores(family_hmm, [train[0], shuffled[0], train[1]])
    assert bits[0] > 30 and bits[2] > 30 and bits[1] < 10
    assert evalues[0] < hmm.HIT_EVALUE < evalues[1]
    assert sorted(shuffled[0]) == sorted(train[0]) and shuffled[0] != train[0]


@pytest.mark.parametrize("option, text, allowed", [
    ("--iterations", "0", "a whole number above 0"),
    ("--iterations", "\u0662", "a whole number above 0"),          # int() reads an Arabic-Indic 2
    ("--iterations", "1_0", "a whole number above 0"),
    ("--seed", "-7", "a whole number from 0 to 2**63 - 1"),
    ("--seed", str(10**23), "a whole number from 0 to 2**63 - 1")])
def test_cli_counts_and_seeds_follow_the_tools_rule(option, text, allowed, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        hmm.main(["--train", str(tmp_path / "train.fasta"), "--out", str(tmp_path / "x.hmm"), option, text])
    assert stop.value.code == 2
    assert f"argument {option}: {text!r} is not {allowed}" in capsys.readouterr().err


def test_cli_writes_a_loadable_hmm(family, tmp_path):
    write_fasta(tmp_path / "train.fasta", family[0])
    out = tmp_path / "ckpt" / hmm.HMM_NAME
    assert hmm.main(["--train", str(tmp_path / "train.fasta"), "--out", str(out), "--iterations", "1"]) == 0
    loaded = hmm.load(out)
    assert loaded.M > 40 and b"python -m sedd.hmm --train train.fasta" in loaded.command_line.encode()
    assert hmm.main(["--train", str(tmp_path / "missing.fasta"), "--out", str(out)]) == 2
    with pytest.raises(ValueError, match="python -m sedd.hmm"):
        hmm.load(tmp_path / "nothing.hmm")


def test_cli_refuses_an_unwritable_out_before_jackhmmer(family, tmp_path, monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("jackhmmer ran before --out was checked")
    monkeypatch.setattr(hmm, "build", forbidden)
    write_fasta(tmp_path / "train.fasta", family[0][:10])
    (tmp_path / "ckpt").write_text("a file where the folder should be")
    out = tmp_path / "ckpt" / hmm.HMM_NAME
    assert hmm.main(["--train", str(tmp_path / "train.fasta"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --out {out} cannot be written: {tmp_path / 'ckpt'} is a file, not a folder"]


def test_cli_reports_a_write_that_fails_after_jackhmmer_in_one_line(family, family_hmm, tmp_path, monkeypatch, capsys):
    """The folder becomes a file while jackhmmer runs: the save fails late, and says so in one line."""
    out = tmp_path / "ckpt" / hmm.HMM_NAME

    def build_then_block(*args, **kwargs):
        (tmp_path / "ckpt").write_text("a file where the folder should be")
        return family_hmm.copy()
    monkeypatch.setattr(hmm, "build", build_then_block)
    write_fasta(tmp_path / "train.fasta", family[0][:10])
    assert hmm.main(["--train", str(tmp_path / "train.fasta"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write --out {out}: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize("text, why", [("not an HMM\n", "format not recognized by HMMER"), ("", "HMM file is empty")])
def test_a_file_that_is_not_an_hmm_is_named(tmp_path, text, why):
    path = tmp_path / hmm.HMM_NAME
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        hmm.load(path)
    assert str(error.value) == f"{path} is not a HMMER3 profile HMM ({why}); build one with python -m sedd.hmm"


def test_a_file_of_several_hmms_is_refused_not_read_as_its_first(family_hmm, tmp_path):
    """A database such as Pfam-A.hmm used to be read as its first profile and scored against it alone."""
    one = hmm.save(family_hmm, tmp_path / "one.hmm")
    two = tmp_path / "two.hmm"
    two.write_text(one.read_text() * 2)
    assert hmm.load(one).M == family_hmm.M
    with pytest.raises(ValueError, match=r"two.hmm holds more than one profile HMM .*give that family's HMM alone"):
        hmm.load(two)


def test_naturals_outside_the_family_are_refused(family_hmm):
    other, _ = profile_family(10, 60, seed=7, sharpness=3.0)
    with pytest.raises(ValueError, match="not their family"):
        hmm.family_metrics(family_hmm, other, other)


def test_longest_run_and_repeat_rate():
    assert longest_run("") == 0 and longest_run("A") == 1
    assert longest_run("MKAAAGGGGGLR") == 5 and longest_run("ACDEFG") == 1
    m = low_complexity(["MKAAAAAL", "MKVL", "QQQQ"])
    assert m["max_longest_run"] == 5 and m["repeat_rate"] == pytest.approx(1 / 3)
    assert m["mean_longest_run"] == pytest.approx((5 + 1 + 4) / 3)


def test_evaluate_reports_the_family_hmm_beside_the_checkpoint(family, tiny_checkpoint, tmp_path, capsys):
    import json

    from sedd import evaluate

    train, held_out = family
    write_fasta(tmp_path / "held_out.fasta", held_out)
    write_fasta(tmp_path / "train.fasta", train)
    args = ["--checkpoint", str(tiny_checkpoint), "--data", str(tmp_path / "held_out.fasta"), "--max-seqs", "6",
            "--target-stderr", "0.3", "--samples", "4", "--reference", str(tmp_path / "train.fasta"), "--json"]
    assert evaluate.main(args) == 0
    assert "family_hmm" not in json.loads(capsys.readouterr().out)["samples"]       # no family.hmm there yet
    hmm.save(hmm.build(train, iterations=1), tiny_checkpoint / hmm.HMM_NAME)
    assert evaluate.main(args) == 0
    samples = json.loads(capsys.readouterr().out)["samples"]
    family_hmm = samples["family_hmm"]
    assert family_hmm["natural_hit_rate"] == 1.0 and family_hmm["shuffled"]["hit_rate"] == 0.0
    assert family_hmm["hit_rate"] == 0.0            # an untrained model's designs are not family members
    assert 0 <= samples["repeat_rate"] <= 1 and samples["max_longest_run"] >= 1
    assert evaluate.main(args + ["--hmm", str(tmp_path / "missing.hmm")]) == 2
    assert "python -m sedd.hmm" in capsys.readouterr().err


def test_a_dna_hmm_is_refused_when_read(tmp_path):
    path = write_dna_hmm(tmp_path / "dna.hmm")
    with pytest.raises(ValueError, match=r"dna.hmm is a DNA profile HMM; the family metric scores proteins"):
        hmm.load(path)


def test_building_an_hmm_notes_dropped_sequences(tmp_path, capsys):
    path = tmp_path / "train.fasta"
    path.write_text(f">a\n{SEQ}\n>b\n{SEQ[:-3]}\n>c\nMK-VG\n")
    assert hmm.main(["--train", str(path), "--out", str(tmp_path / "family.hmm"), "--iterations", "1"]) == 0
    assert "note: " in (err := capsys.readouterr().err) and "dropped 1 of 3 sequences: 1 contain '-'" in err
