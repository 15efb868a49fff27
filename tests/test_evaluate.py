"""Evaluation metrics, ``python -m sedd.evaluate`` and its Markdown report: tiny random models, synthetic
families, no network."""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch
from conftest import as_dataset, profile_family, run_main, write_dna_hmm
from conftest import write_fasta as write_synthetic_fasta

from sedd import checkpoint
from sedd import evaluate as ev
from sedd import data, fold, hmm, metrics
from sedd.alphabet import PROTEIN
from sedd.data import read_fasta
from sedd.model import ScoreNetwork, preset
from sedd.report import summary, write_report
from sedd.schedule import LogLinearSchedule

REPO = Path(__file__).resolve().parent.parent
MOTIF_SITE = "GAVQGVAFR"


def profile_sequences(n: int, lengths: tuple[int, int], seed: int = 0) -> list[str]:
    """Sequences from a random position-specific profile (a toy family), the motif planted in the middle."""
    gen = torch.Generator().manual_seed(seed)
    profile = torch.softmax(2.0 * torch.randn(lengths[1], PROTEIN.size, generator=gen), dim=-1)
    rows = torch.multinomial(profile, n, replacement=True, generator=gen).T.tolist()     # [n, L_max]
    rng = random.Random(seed)
    out = []
    for row in rows:
        length = rng.randint(*lengths)
        seq = "".join(PROTEIN.residues[i] for i in row[:length])
        mid = length // 2 - len(MOTIF_SITE) // 2
        out.append(seq[:mid] + MOTIF_SITE + seq[mid + len(MOTIF_SITE):])
    return out


def write_fasta(path: Path, sequences: list[str]) -> Path:
    return data.write_fasta(path, sequences, ids=[f"s{i}" for i in range(len(sequences))])


@pytest.fixture
def ckpt_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    net = ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size))
    return checkpoint.save(tmp_path / "ckpt", net, PROTEIN, LogLinearSchedule(), {40: 3, 50: 2})


@pytest.fixture
def family_fasta(tmp_path) -> Path:
    return write_fasta(tmp_path / "family.fasta", profile_sequences(24, (40, 50)))


# ---- identity, composition, motif -----------------------------------------------------------------
def test_alignment_identity_definition():
    seq = profile_sequences(1, (60, 60), seed=3)[0]
    assert metrics.alignment_identity(seq, seq) == 1.0
    mutant = seq[:10] + ("A" if seq[10] != "A" else "C") + seq[11:]
    assert metrics.alignment_identity(seq, mutant) == pytest.approx(59 / 60)
    assert metrics.alignment_identity(seq[5:35], seq) == 1.0            # divided by the shorter; end gaps are free
    unrelated = profile_sequences(1, (60, 60), seed=4)[0]
    assert metrics.alignment_identity(seq, unrelated) < 0.5


def test_nearest_reference_finds_a_planted_relative_among_many():
    rng = random.Random(5)
    references = ["".join(rng.choice(PROTEIN.residues) for _ in range(rng.randint(64, 127))) for _ in range(600)]
    query = references[417]
    relative = "".join(c if rng.random() > 0.2 else rng.choice(PROTEIN.residues) for c in query)
    search = metrics.NearestReference(references, PROTEIN.residues)
    assert 417 in search.candidates_for(relative)[:3].tolist()
    identity, index = search.nearest(relative)
    assert index == 417 and identity == pytest.approx(metrics.alignment_identity(relative, query))
    assert search.nearest(query) == (1.0, 417)


def test_composition_kl():
    data = ["ACDEFGHIKL", "MNPQRSTVWY"]
    assert metrics.composition_kl(data, list(data), PROTEIN.residues) == pytest.approx(0.0, abs=1e-12)
    assert metrics.composition_kl(data, ["".join(data)], PROTEIN.residues) == pytest.approx(0.0, abs=1e-12)
    # KL(data ‖ samples) with add-one smoothing, by hand: data uniform, samples 10×A
    p = torch.full((20,), 1 / 20, dtype=torch.float64)
    q = torch.ones(20, dtype=torch.float64)
    q[0] += 10
    q /= q.sum()
    expected = float((p * (p / q).log()).sum())
    assert metrics.composition_kl(["".join(PROTEIN.residues)], ["A" * 10], PROTEIN.residues) == pytest.approx(expected)


def test_motif_rate():
    assert metrics.motif_rate(["MKGAVQGVTFRLL", "GSVQGIAYR", "GAVQGLAFR", "AAAA"]) == 0.5   # L is not V/I
    assert metrics.motif_rate(["gavqgvafr"]) == 0.0                                        # residues are upper case


def test_sample_metrics_of_copies_of_the_references():
    references = profile_sequences(30, (60, 80), seed=6)
    m = metrics.sample_metrics(references[:10], references, PROTEIN.residues)
    assert m["validity"] == 1.0 and m["novelty"] == 0.0
    assert m["median_nearest_identity"] == 1.0 and m["nearest_identities"] == [1.0] * 10
    assert m["motif_rate"] == 1.0 and m["reference_motif_rate"] == 1.0
    assert 0.0 < m["mean_pairwise_identity"] < 1.0 and m["pairs"] == 45
    assert metrics.sample_metrics(references, references, PROTEIN.residues)["composition_kl"] == pytest.approx(0.0, abs=1e-12)


def test_sample_metrics_count_invalid_and_novel_samples():
    references = profile_sequences(20, (60, 70), seed=7)
    novel = references[0][:-1] + ("W" if references[0][-1] != "W" else "Y")
    m = metrics.sample_metrics([references[1], novel, "ACD_EF", "ACDBEF"], references, PROTEIN.residues)
    assert m["validity"] == 0.5                      # the mask and B are not residues
    assert m["novelty"] == 0.5                       # of the valid ones, one is a copy
    assert sorted(m["nearest_identities"]) == pytest.approx([(len(novel) - 1) / len(novel), 1.0])


# ---- infill recovery -------------------------------------------------------------------------------
class Oracle(torch.nn.Module):
    """A perfect denoiser for a known set of sequences: it finds the one consistent with the unmasked
    residues of each row and puts all probability on its residues."""

    def __init__(self, sequences: list[list[int]], mask_id: int, wrong: int | None = None):
        super().__init__()
        self.mask_id, self.pad_id, self.wrong = mask_id, PROTEIN.pad_id, wrong
        L = max(len(s) for s in sequences)
        self.truth = torch.full((len(sequences), L), self.pad_id)
        for i, s in enumerate(sequences):
            self.truth[i, :len(s)] = torch.tensor(s)
        self.dummy = torch.nn.Parameter(torch.zeros(1))          # the sampler reads the device from here

    def forward(self, x_t: torch.LongTensor) -> torch.Tensor:
        B, L = x_t.shape
        if self.wrong is not None:     # always the same residue: no matching (its own outputs match nothing)
            return 50.0 * torch.nn.functional.one_hot(torch.full_like(x_t, self.wrong), self.mask_id).float()
        truth = torch.full((len(self.truth), max(L, self.truth.shape[1])), self.pad_id)
        truth[:, :self.truth.shape[1]] = self.truth
        known = x_t != self.mask_id                                                      # [B, L]
        agree = ((truth[None, :, :L] == x_t[:, None]) | ~known[:, None]).all(-1)         # [B, N]
        agree &= (truth[:, L:] == self.pad_id).all(-1)[None]
        assert (agree.sum(-1) == 1).all(), "each row must match exactly one sequence"
        target = truth[agree.int().argmax(-1), :L].clamp(max=self.mask_id - 1)           # [B, L]
        return 50.0 * torch.nn.functional.one_hot(target, self.mask_id).float()


def test_infill_recovery_is_one_for_a_perfect_denoiser_and_zero_for_a_wrong_one(ckpt_dir):
    sequences = [s.replace("W", "Y") for s in profile_sequences(20, (40, 50), seed=8)]
    data = as_dataset(sequences)
    model = checkpoint.load(ckpt_dir)
    expected_masked = sum(max(1, round(0.3 * len(s))) for s in sequences)

    model.model = Oracle(data.tokens, PROTEIN.mask_id)
    perfect = metrics.infill_recovery(model, data, batch_size=8)
    assert perfect == {"infill_recovery": 1.0, "infill_masked_residues": expected_masked,
                       "infill_fraction": 0.3, "infill_steps": 128}

    model.model = Oracle(data.tokens, PROTEIN.mask_id, wrong=PROTEIN.encode("W")[0])   # W never occurs
    assert metrics.infill_recovery(model, data, batch_size=8)["infill_recovery"] == 0.0


def test_infill_recovery_of_an_untrained_model_is_near_chance(ckpt_dir):
    model = checkpoint.load(ckpt_dir)
    data = as_dataset(profile_sequences(30, (40, 50), seed=9))
    result = metrics.infill_recovery(model, data, seed=1)
    assert 0.0 <= result["infill_recovery"] < 0.2                  # 1/20 = 0.05 by chance
    assert result == metrics.infill_recovery(model, data, seed=1)        # seeded


# ---- ESMFold metrics ---------------------------------------------------------------------------------
def test_fold_metrics_average_and_per_sequence_failures(monkeypatch):
    from sedd import fold

    def fake_fold(self, sequences):
        if len(sequences[0]) > 5:
            raise fold.FoldError("too long for this test backend", "too_long")
        return [fold.FoldResult(s, "", [50.0] * len(s), 10.0 * len(s), 0.1 * len(s)) for s in sequences]

    monkeypatch.setattr(fold.ESMFoldBackend, "fold", fake_fold)
    result = metrics.fold_metrics(["AC", "ACDE", "ACDEFGH"])
    assert result["mean_plddt"] == pytest.approx(30.0) and result["mean_ptm"] == pytest.approx(0.3)
    assert result["folded"] == 2 and result["failures"][0]["sequence"] == "ACDEFGH"


# ---- command line ----------------------------------------------------------------------------------
def test_cli_json_keys_and_types(ckpt_dir, family_fasta, capsys):
    code = ev.main(["--checkpoint", str(ckpt_dir), "--data", str(family_fasta), "--max-seqs", "10",
                    "--target-stderr", "0.1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key, kind in [("elbo_nats_per_residue", float), ("elbo_stderr", float), ("length_nats_per_residue", float),
                      ("num_sequences", int), ("num_residues", int), ("infill_recovery", float), ("t_samples", int)]:
        assert isinstance(out[key], kind), key
    assert out["num_sequences"] == 10 and 400 <= out["num_residues"] <= 500
    assert out["elbo_stderr"] < 0.1 and out["elbo_target_met"] is True and 0.0 <= out["infill_recovery"] <= 1.0
    assert out["seconds"]["total"] > 0 and "samples" not in out and "fold" not in out
    # lengths 40–50 under the histogram {40: 3, 50: 2}, add-one smoothed over 1…128: 3.3–4.9 nats per sequence
    assert 3.3 / 50 < out["length_nats_per_residue"] < 4.9 / 40


def test_cli_samples_report_and_fold_without_weights(ckpt_dir, family_fasta, tmp_path):
    """The real ESMFold backend, offline with an empty cache: the error is reported, the run succeeds."""
    report = tmp_path / "out" / "eval.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sedd.evaluate", "--checkpoint", str(ckpt_dir), "--data",
                           str(family_fasta), "--max-seqs", "6", "--target-stderr", "0.2", "--samples", "6",
                           "--reference", str(family_fasta), "--fold", "--report", str(report), "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "weights" in out["fold"]["error"] and set(out["fold"]) == {"error"}
    samples = out["samples"]
    assert samples["num_samples"] == 6 and samples["validity"] == 1.0 and samples["novelty"] == 1.0
    assert len(samples["nearest_identities"]) == 6 and 0.0 < samples["median_nearest_identity"] < 1.0
    assert samples["reference_motif_rate"] == 1.0
    assert report.is_file() and "ESMFold" in report.read_text() and "eval_identity.png" in report.read_text()
    assert (tmp_path / "out" / "eval_identity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = read_fasta(tmp_path / "out" / "eval_samples.fasta", PROTEIN)
    assert len(drawn) == 6 and {len(t) for t in drawn.tokens} <= {40, 50}       # lengths from the histogram


@pytest.mark.parametrize("case", ["missing_data", "empty_fasta", "not_a_checkpoint", "missing_checkpoint"])
def test_bad_input_is_one_line_and_exit_code_2(case, ckpt_dir, family_fasta, tmp_path, capsys):
    data, model = str(family_fasta), str(ckpt_dir)
    if case == "missing_data":
        data = str(tmp_path / "nope.fasta")
    elif case == "empty_fasta":
        data = str(write_fasta(tmp_path / "empty.fasta", []))
    elif case == "not_a_checkpoint":
        model = str(tmp_path)
    else:
        model = str(tmp_path / "no" / "such" / "dir")
    assert ev.main(["--checkpoint", model, "--data", data, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err


def test_bad_input_from_the_shell_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sedd.evaluate", "--checkpoint", str(tmp_path),
                           "--data", str(tmp_path / "x.fasta")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


def test_fold_needs_samples(ckpt_dir, family_fasta):
    with pytest.raises(SystemExit) as exit_info:
        ev.main(["--checkpoint", str(ckpt_dir), "--data", str(family_fasta), "--fold"])
    assert exit_info.value.code == 2


# ---- the held-out split rebuilt from the full FASTA, and the result recorded in the checkpoint -------
@pytest.fixture
def clustered_family(tmp_path) -> tuple[Path, Path]:
    """40 sequences in 10 clusters of 4 (members of a cluster share their first 30 residues)."""
    sequences = profile_sequences(40, (40, 50), seed=11)
    ids = [f"c{i // 4}_m{i % 4}" for i in range(40)]
    sequences = [sequences[i - i % 4][:30] + s[30:] for i, s in enumerate(sequences)]
    fasta = data.write_fasta(tmp_path / "family.fasta", sequences, ids)
    tsv = tmp_path / "clusters.tsv"
    tsv.write_text("cluster\tmember\n" + "".join(f"c{i // 4}_m0\t{name}\n" for i, name in enumerate(ids)))
    return fasta, tsv


def test_clusters_rebuild_the_split_training_held_out(ckpt_dir, clustered_family, capsys):
    from sedd.likelihood import unigram_nll
    from sedd.train import TrainConfig, Trainer

    fasta, tsv = clustered_family
    trainer = Trainer(TrainConfig(data=str(fasta), out=str(ckpt_dir.parent / "run"), clusters=str(tsv),
                                  val_fraction=0.2, seed=3, preset="tiny", max_steps=1))
    args = ev._parser().parse_args(["--checkpoint", str(ckpt_dir), "--data", str(fasta), "--clusters", str(tsv),
                                    "--val-fraction", "0.2", "--split-seed", "3"])
    held_out, reference, about = ev._load_data(args, checkpoint.load(ckpt_dir))
    assert held_out.ids == trainer.val_set.ids and reference.ids == trainer.train_set.ids
    assert about["split"]["held_out_sequences"] == 8 and about["split"]["held_out_clusters"] == 2

    assert ev.main([*map(str, ["--checkpoint", ckpt_dir, "--data", fasta, "--clusters", tsv, "--val-fraction", 0.2,
                               "--split-seed", 3, "--target-stderr", 0.2, "--json"])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_sequences"] == 8 and out["split"]["reference_sequences"] == 32
    assert out["unigram_nats_per_residue"] == pytest.approx(unigram_nll(held_out, reference, PROTEIN.size))
    assert out["unigram_reference"] == "the training part composition"


def test_the_splits_warning_prints_as_one_line(ckpt_dir, clustered_family, capsys):
    """A copy of a held-out sequence under another id in another cluster is left out of training
    with a warning, printed as ``warning: …`` like ``sedd.data`` prints it, not as Python's two lines."""
    fasta, tsv = clustered_family
    copy = Path(str(fasta)).with_name("with_copy.fasta")
    first = PROTEIN.decode(data.read_fasta(fasta, PROTEIN).tokens[0])
    copy.write_text(Path(str(fasta)).read_text() + f">copy\n{first}\n")
    copy_tsv = Path(str(tsv)).with_name("with_copy.tsv")
    copy_tsv.write_text(Path(str(tsv)).read_text() + "copy\tcopy\n")
    dataset, clusters = data.read_fasta(copy, PROTEIN), data.read_clusters(copy_tsv)
    for seed in range(50):                   # a split seed that holds out one of the two copies only
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data.split(dataset, 0.2, seed, clusters)
        if caught:
            break
    code, _, err = run_main(capsys, ev.main, "--checkpoint", ckpt_dir, "--data", copy, "--clusters", copy_tsv,
                            "--val-fraction", 0.2, "--split-seed", seed, "--target-stderr", 0.5, "--json")
    assert code == 0
    assert "warning: left 1 sequence(s) out of training" in err and "UserWarning" not in err


def test_update_config_of_a_subset_says_that_the_family_percentile_now_ranks_against_it(ckpt_dir, clustered_family,
                                                                                         capsys):
    """``--update-config --max-seqs 2`` replaced the stored score distribution with that of 2 sequences, unsaid."""
    fasta, tsv = clustered_family
    code, _, err = run_main(capsys, ev.main, "--checkpoint", ckpt_dir, "--data", fasta, "--clusters", tsv,
                            "--val-fraction", 0.2, "--target-stderr", 0.5, "--max-seqs", 2, "--update-config")
    assert code == 0 and ("note: it holds the evaluation of 2 sequences (--max-seqs), and sedd.score's family "
                          "percentile now ranks against their score_distribution") in err
    assert json.loads((ckpt_dir / "config.json").read_text())["evaluation"]["score_distribution"]["num_sequences"] == 2


def test_update_config_records_exactly_the_printed_result(ckpt_dir, clustered_family, tmp_path, capsys):
    fasta, tsv = clustered_family
    before = json.loads((ckpt_dir / "config.json").read_text())
    report = tmp_path / "eval" / "report.md"
    code = ev.main([*map(str, ["--checkpoint", ckpt_dir, "--data", fasta, "--clusters", tsv, "--val-fraction", 0.2,
                               "--target-stderr", 0.2, "--samples", 4, "--report", report, "--update-config",
                               "--json"])])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    after = json.loads((ckpt_dir / "config.json").read_text())
    assert after["evaluation"] == printed
    assert {k: v for k, v in after.items() if k != "evaluation"} == before
    assert printed["samples"]["num_samples"] == 4 and printed["files"]["report"] == str(report)
    text = report.read_text()
    assert "whole clusters of" in text and "8 sequences in 2 clusters" in text and "unigram floor" in text
    motif = printed["samples"]["motif_rate"]      # 4 samples: the rate comes with its (large) binomial SE
    assert f"| {motif:.3f} ± {(motif * (1 - motif) / 4) ** 0.5:.3f} (" in text if 0 < motif < 1 else \
        f"| {motif:.3f} (95 % interval " in text
    floor = printed["samples"]["composition_kl_floor"]        # the KL beside what sampling alone gives
    assert f"nats (≈ {floor:.4f} from sampling alone at this size) |" in text
    assert "± the Monte Carlo error of K = " in text               # the ELBO's ± is no spread over held-out sets
    assert checkpoint.load(ckpt_dir).meta["evaluation"] == printed


@pytest.mark.parametrize("extra, message", [
    (["--samples", "4"], "--samples needs reference sequences"),
    (["--clusters", "x.tsv", "--reference", "y.fasta"], "give one of --reference and --clusters"),
    (["--clusters", "x.tsv", "--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--seed", str(2**64)], "argument --seed: '18446744073709551616' is not a whole number from 0 to 2**63 - 1"),
    (["--split-seed", "-1"], "argument --split-seed: '-1' is not a whole number from 0"),
    (["--t-samples", "1"], "argument --t-samples: '1' is not a whole number, at least 2 (a standard error needs two)"),
    (["--max-t-samples", "1"], "argument --max-t-samples: '1' is not a whole number, at least 2"),
    (["--samples", "0"], "argument --samples: '0' is not a whole number above 0"),
    (["--max-seqs", "1e2"], "argument --max-seqs: '1e2' is not a whole number above 0"),
    (["--batch-size", "٣٢"], "argument --batch-size: '٣٢' is not a whole number above 0")])
def test_split_and_reference_options_are_checked(ckpt_dir, family_fasta, extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ev.main(["--checkpoint", str(ckpt_dir), "--data", str(family_fasta), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_update_config_refuses_what_is_not_a_local_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a local checkpoint directory"):
        checkpoint.update_config(tmp_path / "nope", "evaluation", {})


def test_the_bundled_report_is_what_evaluate_writes_from_the_recorded_result(tmp_path):
    """eval/report.md and the config's evaluation block come from one run of sedd.evaluate: rewriting
    the report from the recorded block gives the committed file, byte for byte (no hand edits)."""
    from sedd.report import write_report

    bundled = checkpoint.DEFAULT_CHECKPOINT
    evaluation = json.loads((bundled / "config.json").read_text())["evaluation"]
    samples = [PROTEIN.decode(t) for t in read_fasta(bundled / "eval" / "report_samples.fasta", PROTEIN).tokens]
    write_report(tmp_path / "report.md", evaluation, samples, evaluation["samples"]["nearest_identities"])
    assert (tmp_path / "report.md").read_text() == (bundled / "eval" / "report.md").read_text()
    assert "| 0.824 ± 0.024 (0.918) |" in (tmp_path / "report.md").read_text()   # 256 samples: the rate's binomial SE
    assert (tmp_path / "report_samples.fasta").read_text() == (bundled / "eval" / "report_samples.fasta").read_text()
    assert evaluation["files"]["report"].endswith("eval/report.md") and evaluation["split"]["held_out_clusters"] > 0


@pytest.fixture
def small_fasta(tmp_path):
    """6 sequences of length 40 from a random profile."""
    path = tmp_path / "family.fasta"
    write_synthetic_fasta(path, profile_family(6, 40)[0])
    return path


@pytest.fixture
def no_elbo(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the ELBO ran before a bad --hmm was refused")
    monkeypatch.setattr(ev, "elbo_to_precision", forbidden)


# ---- folding runs on the device evaluate was given --------------------------------------------------------
def test_folding_runs_on_the_device_evaluate_was_given(monkeypatch, tiny_checkpoint, small_fasta, capsys):
    made = []

    class Backend:
        def __init__(self, device=None, **kwargs):
            made.append(device)

        def fold(self, sequences, check=None):
            return [fold.FoldResult(s, "", [80.0] * len(s), 80.0, 0.5) for s in sequences]
    monkeypatch.setattr(fold, "ESMFoldBackend", Backend)
    assert metrics.fold_metrics(["MKV"], device="cuda:1")["folded"] == 1 and made == ["cuda:1"]

    # the command line hands --device to the fold (the score model itself stays on this CPU here)
    asked = []
    real_load = checkpoint.load
    monkeypatch.setattr(checkpoint, "check_device", lambda device: torch.device("cpu"))
    monkeypatch.setattr(checkpoint, "load", lambda name, device="cpu": real_load(name, device="cpu"))
    monkeypatch.setattr(ev, "fold_metrics", lambda seqs, progress=False, **kw: asked.append(kw) or {"error": "x"})
    for device in (["--device", "cuda:1"], ["--device", "cpu"], []):
        code, out, err = run_main(capsys, ev.main, "--checkpoint", tiny_checkpoint, "--data", small_fasta,
                                  "--max-seqs", 2, "--target-stderr", 0.5, "--samples", 2, "--reference", small_fasta,
                                  "--fold", *device, "--json")
        assert code == 0, err
    # given: there (on the CPU too, as a non-finite fold's advice asks); not given: the first GPU there is
    assert asked == [{"device": "cuda:1"}, {"device": "cpu"}, {"device": None}]


# ---- the family HMM: refused before the slow work -------------------------------------------------------
def test_evaluate_refuses_a_dna_hmm_before_the_elbo(tiny_checkpoint, small_fasta, tmp_path, no_elbo, capsys):
    path = write_dna_hmm(tmp_path / "dna.hmm")
    code, out, err = run_main(capsys, ev.main, "--checkpoint", tiny_checkpoint, "--data", small_fasta, "--samples", 2,
                              "--reference", small_fasta, "--hmm", path)
    assert code == 2 and out == "" and "is a DNA profile HMM" in err


def test_evaluate_refuses_an_hmm_of_another_family_before_the_elbo(tiny_checkpoint, small_fasta, no_elbo, capsys):
    bundled = checkpoint.DEFAULT_CHECKPOINT / hmm.HMM_NAME          # acylphosphatase; the data is random profiles
    code, out, err = run_main(capsys, ev.main, "--checkpoint", tiny_checkpoint, "--data", small_fasta, "--samples", 2,
                              "--reference", small_fasta, "--hmm", bundled)
    assert code == 2 and out == ""
    assert re.search(r"^error: --hmm .*family.hmm: held-out naturals score a median .* bits against this HMM: it is "
                     r"not their family$", err.strip())


def test_an_hmm_of_another_family_found_beside_the_checkpoint_is_left_out_with_a_warning(
        tiny_checkpoint, small_fasta, capsys):
    """One not asked for (``sedd.hmm --out`` wrote it there, from another family or one subfamily) ended the
    evaluation with an error that named no file and no way out."""
    shutil.copy(checkpoint.DEFAULT_CHECKPOINT / hmm.HMM_NAME, Path(tiny_checkpoint) / hmm.HMM_NAME)
    code, out, err = run_main(capsys, ev.main, "--checkpoint", tiny_checkpoint, "--data", small_fasta, "--max-seqs", 2,
                              "--target-stderr", 0.5, "--samples", 2, "--reference", small_fasta, "--json")
    assert code == 0 and "family_hmm" not in json.loads(out)["samples"]
    assert f"warning: {Path(tiny_checkpoint) / hmm.HMM_NAME} (found beside the checkpoint): held-out naturals" in err
    assert "the family-HMM metrics are left out (give --hmm FILE for another profile)" in err


# ---- the motif of another family ---------------------------------------------------------------------------
def test_the_motif_rate_is_of_the_motif_given_and_says_when_the_references_never_carry_it(
        tiny_checkpoint, small_fasta, tmp_path, capsys):
    """Another family's evaluation reported ACYP's motif, 0.000 in samples and references alike, as a figure."""
    common = ["--checkpoint", tiny_checkpoint, "--data", small_fasta, "--max-seqs", 2, "--target-stderr", 0.5,
              "--samples", 4, "--reference", small_fasta]
    code, out, err = run_main(capsys, ev.main, *common, "--json")
    acyp = json.loads(out)["samples"]
    assert code == 0 and acyp["motif"] == metrics.MOTIF and acyp["reference_motif_rate"] == 0
    code, out, err = run_main(capsys, ev.main, *common, "--report", tmp_path / "acyp.md")
    assert "the references never carry it: --motif REGEX sets this family's" in out
    assert "the references never carry it" in (tmp_path / "acyp.md").read_text()
    references = [PROTEIN.decode(t) for t in read_fasta(small_fasta, PROTEIN).tokens]
    motif = references[0][:2]                                            # two residues the family has
    code, out, err = run_main(capsys, ev.main, *common, "--motif", motif, "--json", "--report", tmp_path / "own.md")
    own = json.loads(out.split("\n")[0])["samples"]
    assert own["motif"] == motif and own["reference_motif_rate"] == metrics.motif_rate(references, motif) > 0
    assert f"| motif `{motif}` rate ± binomial SE (references) |" in (tmp_path / "own.md").read_text()
    assert "never carry" not in (tmp_path / "own.md").read_text()
    assert "is not a regular expression" in run_main(capsys, ev.main, *common, "--motif", "G[VI")[2]


# ---- a split unlike the one training made ----------------------------------------------------------------
def test_evaluate_warns_when_its_split_is_not_the_one_training_made():
    class Model:
        meta = {"training": {"config": {"clusters": None, "seed": 4, "val_fraction": 0.1}}}
    asked = argparse.Namespace(split_seed=0, val_fraction=0.05)
    assert ev._unlike_training(asked, Model()) == [
        "training split at random by sequence, without --clusters", "--split-seed 0, training's --seed 4",
        "--val-fraction 0.05, training's 0.1"]
    Model.meta = {"training": {"config": {"clusters": "c.tsv", "seed": 0, "val_fraction": 0.05}}}
    assert ev._unlike_training(asked, Model()) == []
    Model.meta = {}                                                     # a checkpoint that records no training
    assert ev._unlike_training(asked, Model()) == []


# ---- the Markdown report ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded():
    """The bundled model's recorded evaluation and its samples."""
    bundled = checkpoint.DEFAULT_CHECKPOINT
    evaluation = json.loads((bundled / "config.json").read_text())["evaluation"]
    samples = [PROTEIN.decode(t) for t in read_fasta(bundled / "eval" / "report_samples.fasta", PROTEIN).tokens]
    return evaluation, samples


def _links(markdown: str) -> list[str]:
    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark").enable("table").render(markdown)
    return re.findall(r'(?:href|src)="([^"]+)"', page)


def test_report_links_reach_their_files_whatever_the_report_is_named(recorded, tmp_path):
    evaluation, samples = recorded
    path = tmp_path / "eval run (v2).md"
    written = write_report(path, evaluation, samples[:8], evaluation["samples"]["nearest_identities"][:8])
    links = _links(path.read_text())
    assert sorted(links) == sorted(["eval%20run%20%28v2%29_samples.fasta", "eval%20run%20%28v2%29_identity.png"])
    for link in links:
        assert (tmp_path / unquote(link)).is_file()
    assert set(written) == {"samples_fasta", "identity_histogram", "report"}


def test_a_report_without_samples_or_a_length_histogram_says_only_what_was_measured(recorded, tmp_path):
    """It described the nearest-reference search (an old one) when no sample was drawn, and wrote
    "None nats/residue" where the summary says the length term is not known."""
    evaluation, _ = recorded
    result = {k: v for k, v in evaluation.items() if k != "samples"} | {"length_nats_per_residue": None}
    write_report(tmp_path / "r.md", result, None, None)
    text = (tmp_path / "r.md").read_text()
    assert "| −log p(length) | not known (the checkpoint stores no length histogram) |" in text
    assert "None" not in text and "nearest reference" not in text and "searched" not in text
    assert "−log p(length)   not known" in summary(result)


def test_report_and_summary_say_when_most_samples_have_no_domain(recorded, tmp_path):
    """Then the median bits, hence the ratio, are −inf: the JSON said null and the report "-inf"."""
    evaluation, samples = recorded
    family = {**evaluation["samples"]["family_hmm"], "bits_ratio": -math.inf}
    family["shuffled"] = {**family["shuffled"], "bits_ratio": -math.inf}
    result = {**evaluation, "samples": {**evaluation["samples"], "family_hmm": family}}
    write_report(tmp_path / "r.md", result, samples[:4], [0.5] * 4)
    for text in ((tmp_path / "r.md").read_text(), summary(result)):
        assert text.count("none (most without a domain)") == 2 and "-inf" not in text


def test_the_report_names_the_scoring_the_identities_were_aligned_with(recorded, tmp_path):
    """It said BLOSUM62 for every model, though a text or RNA model's samples are aligned by match/mismatch."""
    evaluation, samples = recorded
    write_report(tmp_path / "r.md", evaluation, samples[:4], [0.5] * 4)        # recorded before the field: BLOSUM62
    assert "(global alignment, BLOSUM62)" in (tmp_path / "r.md").read_text()
    result = {**evaluation, "samples": {**evaluation["samples"], "identity_scoring": "match +5, mismatch -4"}}
    write_report(tmp_path / "r.md", result, samples[:4], [0.5] * 4)
    assert "(global alignment, match +5, mismatch -4)" in (tmp_path / "r.md").read_text()


def test_report_and_summary_say_how_many_folds_failed_and_why(recorded, tmp_path):
    evaluation, samples = recorded
    why = "ESMFold (local): folding 300 residues failed (RuntimeError: a | b)."
    result = {**evaluation, "fold": {"mean_plddt": 71.5, "mean_ptm": 0.61, "folded": 2,
                                     "per_sample": [], "failures": [{"sequence": "MKV", "error": why}] * 3}}
    write_report(tmp_path / "r.md", result, samples[:4], [0.5] * 4)
    [row] = [line for line in (tmp_path / "r.md").read_text().splitlines() if "ESMFold" in line]
    assert "2 folded, 3 failed; first: ESMFold (local): folding 300 residues failed" in row
    assert row.count("|") - row.count("\\|") == 3                  # still two cells: the message's | is escaped
    assert "71.5 / 0.610" in row
    assert "2 folded, 3 failed; first: " + why in summary(result)

    none = {**result, "fold": {"mean_plddt": None, "mean_ptm": None, "folded": 0, "per_sample": [],
                               "failures": [{"sequence": "MKV", "error": "too long"}]}}
    assert "0 folded, 1 failed; first: too long" in summary(none)


@pytest.mark.parametrize("rate, interval", [(1.0, "0.985–1.000"), (0.0, "0.000–0.015")])
def test_a_motif_rate_of_all_or_none_comes_with_an_interval_not_a_standard_error_of_zero(recorded, tmp_path,
                                                                                          rate, interval):
    """256 of 256 samples with the motif printed "1.000 ± 0.000": as if the rate were known exactly."""
    evaluation, samples = recorded
    result = {**evaluation, "samples": {**evaluation["samples"], "num_samples": 256, "motif_rate": rate}}
    write_report(tmp_path / "r.md", result, samples[:4], [0.5] * 4)
    shown = f"{rate:.3f} (95 % interval {interval})"
    assert f"| {shown} (" in (tmp_path / "r.md").read_text() and f"rate {shown} (references" in summary(result)
    assert "± 0.000" not in (tmp_path / "r.md").read_text() + summary(result)
