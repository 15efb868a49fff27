"""Scores, masked marginals, scans and variant tables (``sedd/score.py``): library and CLI."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sys

import pytest
import torch
from conftest import profile_family, run_main, write_fasta

from sedd import checkpoint, score
from sedd.alphabet import PROTEIN
from sedd.cli import run
from sedd.data import Dataset, fasta_records
from sedd.likelihood import elbo_to_precision, estimate_elbo
from sedd.sample import main as sample_main
from sedd.schedule import LogLinearSchedule

SEQ = "MSTARPLKSVDYEVFGRVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQG"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from studio_helpers import tiny_checkpoint_dir
    directory = tiny_checkpoint_dir(tmp_path_factory.mktemp("ckpt"))
    return directory, checkpoint.load(directory)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """Another tiny random checkpoint, its directory only."""
    from studio_helpers import tiny_checkpoint_dir
    return tiny_checkpoint_dir(tmp_path_factory.mktemp("ckpt"))


class Spy(torch.nn.Module):
    """The network, recording every input batch."""

    def __init__(self, net):
        super().__init__()
        self.net, self.config, self.inputs = net, net.config, []

    def forward(self, x_t):
        self.inputs.append(x_t.clone())
        return self.net(x_t)


# ---- masked marginals and the scan ------------------------------------------------------------------------
def test_marginals_are_normalised_and_the_wild_type_column_is_exactly_zero(tiny):
    _, model = tiny
    tokens = PROTEIN.encode(SEQ)
    marginals = score.masked_marginals(model, tokens)
    assert marginals.shape == (len(SEQ), 20)
    assert torch.allclose(marginals.logsumexp(-1), torch.zeros(len(SEQ), dtype=torch.float64), atol=1e-9)
    scan = score.scan_from_marginals(marginals, tokens)
    assert all(scan[i, t].item() == 0.0 for i, t in enumerate(tokens))
    assert (scan != 0).sum() == len(SEQ) * 19


def test_scores_run_the_network_in_eval_mode_and_leave_its_mode(tmp_path):
    """A Checkpoint built by hand around a training-mode network with dropout: the scan and the
    variant scores must still be deterministic, and the network comes back in training mode."""
    from sedd.model import ScoreNetwork, preset
    torch.manual_seed(0)
    net = ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, dropout=0.3))
    model = checkpoint.Checkpoint(net, PROTEIN, LogLinearSchedule(), {20: 1}, {})
    tokens = PROTEIN.encode("MKVLAGWKKSTAHHCDE")
    first = score.masked_marginals(model, tokens)
    assert torch.equal(first, score.masked_marginals(model, tokens))
    assert net.training


def test_the_scan_masks_exactly_one_position_per_row_in_one_pass(tiny):
    _, model = tiny
    spy = Spy(model.model)
    score.masked_marginals(dataclasses.replace(model, model=spy), PROTEIN.encode(SEQ))
    assert len(spy.inputs) == 1 and spy.inputs[0].shape == (len(SEQ), len(SEQ))
    masked = spy.inputs[0] == PROTEIN.mask_id
    assert torch.equal(masked, torch.eye(len(SEQ), dtype=torch.bool))


def test_multi_mutant_masks_all_listed_sites_at_once(tiny):
    _, model = tiny
    tokens = PROTEIN.encode(SEQ)
    mutants = [score.parse_mutant(m, SEQ, PROTEIN.residues) for m in ("M1A", "S2C:V10W:G20K")]
    spy = Spy(model.model)
    scores = score.mutant_scores(dataclasses.replace(model, model=spy), tokens, mutants)
    rows = spy.inputs[0]
    assert (rows == PROTEIN.mask_id).nonzero()[:, 1].tolist() == [0, 1, 9, 19]
    assert (rows[1] == PROTEIN.mask_id).nonzero().squeeze(1).tolist() == [1, 9, 19]
    # the score is the sum over the sites of the doubly-masked marginal differences
    log_p = torch.log_softmax(model.model(rows[1:2]).double(), -1)[0]
    expected = sum(log_p[i, PROTEIN.residues.index(mt)] - log_p[i, tokens[i]] for i, mt in ((1, "C"), (9, "W"), (19, "K")))
    assert scores[1] == pytest.approx(expected.item(), abs=1e-9)


def test_per_residue_log_prob_and_pll_come_from_the_marginals(tiny):
    _, model = tiny
    tokens = PROTEIN.encode(SEQ)
    entry = score.score_sequence(model, tokens, "x", seed=0, scan=True)
    marginals = score.masked_marginals(model, tokens)
    assert entry["per_residue_log_prob"] == pytest.approx([marginals[i, t].item() for i, t in enumerate(tokens)])
    assert entry["pll_nats_per_residue"] == pytest.approx(-sum(entry["per_residue_log_prob"]) / len(SEQ))


# ---- whole-sequence score ---------------------------------------------------------------------------------
def test_elbo_is_the_likelihood_estimator_and_reproducible_for_a_seed(tiny):
    _, model = tiny
    tokens = PROTEIN.encode(SEQ)
    a, b, c = (score.elbo_score(model, tokens, seed=s) for s in (3, 3, 4))
    assert a == b and a[0] != c[0]
    direct = elbo_to_precision(model.model, Dataset(["s"], [tokens]), model.schedule, PROTEIN.mask_id,
                               t_samples=score.ELBO_T_SAMPLES, target_stderr=score.ELBO_TARGET_STDERR,
                               max_t_samples=score.ELBO_MAX_T_SAMPLES, seed=3,
                               pilot_t_samples=score.ELBO_PILOT_T_SAMPLES)
    assert a == (direct["elbo_nats_per_residue"], direct["elbo_stderr"])
    assert 0 < a[1] < 0.2


def test_family_percentile_interpolates_the_stored_quantiles(tiny):
    _, model = tiny
    assert score.family_percentile(model, 2.0) is None
    quantiles = [1.0 + 0.01 * k for k in range(101)]          # uniform on [1, 2]
    meta = {**model.meta, "evaluation": {score.DISTRIBUTION_KEY: {"elbo_nats_per_residue_quantiles": quantiles}}}
    stored = dataclasses.replace(model, meta=meta)
    assert score.family_percentile(stored, 1.25) == pytest.approx(75.0)
    assert score.family_percentile(stored, 0.5) == 100.0 and score.family_percentile(stored, 3.0) == 0.0


@pytest.mark.parametrize("distribution", ["x", {"num_sequences": 3}] + [{"elbo_nats_per_residue_quantiles": q}
                                                                        for q in (["a", "b"], [2.0, 1.0], [1.0])])
def test_a_stored_distribution_of_another_shape_is_refused_in_words(tiny, distribution):
    """A hand-edited config gave sedd.score a TypeError, KeyError or ValueError traceback."""
    _, model = tiny
    stored = dataclasses.replace(model, meta={**model.meta, "evaluation": {score.DISTRIBUTION_KEY: distribution}})
    with pytest.raises(ValueError, match=r"config.json has an evaluation.score_distribution without "
                                         r"'elbo_nats_per_residue_quantiles', a list of at least 2 numbers in "
                                         r"increasing order: rerun sedd.evaluate --update-config"):
        score.family_percentile(stored, 1.5)


def test_family_distribution_holds_sorted_quantiles(tiny):
    _, model = tiny
    seqs, _ = profile_family(12, 30, seed=1)
    dist = score.family_distribution(model, Dataset([f"s{i}" for i in range(12)], [PROTEIN.encode(s) for s in seqs]),
                                     max_seqs=10, t_samples=4)
    q = dist["elbo_nats_per_residue_quantiles"]
    assert len(q) == 101 and q == sorted(q) and q[0] < q[-1] and dist["num_sequences"] == 10


def test_family_distribution_is_of_each_sequences_elbo_per_residue(tiny):
    """The percentile compares a score in nats per residue with these quantiles: they must be in the
    same unit (of totals per sequence, every real score would sit near 0 %)."""
    _, model = tiny
    seqs = [s[:n] for s, n in zip(profile_family(6, 40, seed=1)[0], (12, 20, 25, 31, 36, 40))]
    data = Dataset([f"s{i}" for i in range(6)], [PROTEIN.encode(s) for s in seqs])
    dist = score.family_distribution(model, data, seed=3, t_samples=4)
    elbo = estimate_elbo(model.model, data, model.schedule, model.alphabet.mask_id, t_samples=4, seed=3,
                         pad_id=model.alphabet.pad_id)
    per_residue = sorted(total / len(s) for total, s in zip(elbo["per_sequence"], seqs))
    q = dist["elbo_nats_per_residue_quantiles"]
    assert q[0] == pytest.approx(per_residue[0], abs=1e-4) and q[100] == pytest.approx(per_residue[-1], abs=1e-4)
    assert q[50] == pytest.approx((per_residue[2] + per_residue[3]) / 2, abs=1e-4)


# ---- a model that learned a conserved position ------------------------------------------------------------
@pytest.fixture(scope="module")
def conserved_family():
    """A tiny model trained briefly on a synthetic family whose position 8 (1-based) is always W.

    The other positions follow a profile mixed half-and-half with the uniform distribution, so no
    other position is nearly as conserved, but the context still tells the network where it is.
    """
    from sedd.loss import diffusion_loss
    from sedd.model import ScoreNetwork, preset

    gen = torch.Generator().manual_seed(2)
    profile = 0.5 * torch.softmax(3 * torch.randn(24, 20, generator=gen), -1) + 0.5 / 20
    profile[7] = torch.nn.functional.one_hot(torch.tensor(PROTEIN.residues.index("W")), 20)
    family = torch.multinomial(profile, 400, replacement=True, generator=gen).T             # [400, 24]
    torch.manual_seed(0)
    net = ScoreNetwork(preset("tiny", vocab_size=20, dropout=0.0, max_len=24))
    opt = torch.optim.AdamW(net.parameters(), lr=5e-3)
    model = checkpoint.Checkpoint(net, PROTEIN, LogLinearSchedule())
    for _ in range(300):
        batch = family[torch.randint(0, len(family), (64,), generator=gen)]
        loss = diffusion_loss(net, batch, torch.full((64,), 24), model.schedule, PROTEIN.mask_id, generator=gen,
                              pad_id=PROTEIN.pad_id).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return model, family


def test_a_strongly_conserved_position_has_the_most_negative_scan_row(conserved_family):
    model, seqs = conserved_family
    for tokens in seqs[:8].tolist():
        scan = score.scan_from_marginals(score.masked_marginals(model, tokens), tokens)
        row_means = scan.sum(1) / 19
        assert row_means.argmin().item() == 7, row_means


# ---- command line -----------------------------------------------------------------------------------------
def test_json_has_exactly_the_contract_fields(tiny, capsys, tmp_path):
    directory, _ = tiny
    write_fasta(tmp_path / "two.fasta", [SEQ, SEQ[:30]])
    code, out, _ = run_main(capsys, score.main, "--checkpoint", directory, "--fasta", tmp_path / "two.fasta", "--scan",
                            "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"checkpoint", "sequences"}
    first, second = result["sequences"]
    assert set(first) == {"name", "sequence", "length", "elbo_nats_per_residue", "elbo_stderr",
                          "pll_nats_per_residue", "per_residue_log_prob", "scan"}
    assert (first["name"], second["name"], second["length"]) == ("seq0", "seq1", 30)
    assert first["scan"]["residues"] == "ACDEFGHIKLMNPQRSTVWY"
    assert len(first["scan"]["scores"]) == len(SEQ) and all(len(r) == 20 for r in first["scan"]["scores"])
    code, out, _ = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--json")
    assert "scan" not in json.loads(out)["sequences"][0]


def test_the_template_rules_apply_and_masks_are_refused(tiny, capsys):
    directory, _ = tiny
    code, out, _ = run_main(capsys, score.main, "--checkpoint", directory, "--sequence",
                            f">my protein\n{SEQ[:20]} 21 {SEQ[20:]}*", "--json")
    entry = json.loads(out)["sequences"][0]
    assert code == 0 and entry["name"] == "my" and entry["sequence"] == SEQ
    code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", "MKV_GFX")
    assert code == 2 and "scoring needs a full sequence, but 2 residues (4, 7) are designed or masked" in err
    code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", "MK VX GF")
    # residue 4, the fifth character: the text's positions would say 5, so the message names residues
    assert code == 2 and "but residue 4 is designed or masked" in err and "in place of _ ? # X" in err
    for bracket in ("[2-3]", "[KR]", "[0]", "[0-0]"):        # [0] was dropped and the rest scored
        code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", f"MKV{bracket}GF")
        assert code == 2 and (f"scoring needs a full sequence, but the bracket {bracket} at position 4 stands for "
                              "designed positions; write the residues themselves") in err
    code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", "MKVBGF")
    assert code == 2 and "'B' at position 4" in err
    assert "allowed: residues" in err and "designed positions" not in err and "brackets" not in err  # not for a score
    code, out, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", ">a\nMKV\n>b\nGFW", "--json")
    assert code == 0 and [e["sequence"] for e in json.loads(out)["sequences"]] == ["MKV"]
    assert "holds 2 FASTA records; scoring the first one only" in err
    code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", " \n")
    assert code == 2 and "the sequence is empty" in err
    with pytest.raises(SystemExit) as refused:       # an int64 overflow inside torch before
        score.main(["--checkpoint", str(directory), "--sequence", SEQ, "--seed", str(2**64)])
    assert refused.value.code == 2 and "--seed: '18446744073709551616' is not a whole number" in capsys.readouterr().err


def test_readable_table(tiny, capsys):
    directory, _ = tiny
    code, out, _ = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--scan")
    lines = out.splitlines()
    assert code == 0 and "ELBO (nats/res)" in lines[0] and lines[1].startswith("sequence")
    assert sum(1 for line in lines if line[:4].strip().isdigit()) == len(SEQ)


def write_variants(path, rows, fields) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_mutations_csv_round_trip_and_scan_agreement(tiny, capsys, tmp_path):
    directory, _ = tiny
    code, out, _ = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--scan", "--json")
    scan = json.loads(out)["sequences"][0]["scan"]["scores"]
    variants = ["M1A", "S2C", "V10W", "G20K", "S2C:V10W"]
    fields = ["mutant", "mutated_sequence", "DMS_score", "note, with comma"]
    rows = [{"mutant": m, "mutated_sequence": "x", "DMS_score": str(k % 3), "note, with comma": f'say "{k}", ok'}
            for k, m in enumerate(variants)]
    write_variants(tmp_path / "in.csv", rows, fields)
    code, out, _ = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--mutations",
                            tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 0
    with open(tmp_path / "out.csv", newline="") as f:
        reader = csv.DictReader(f)
        back = list(reader)
    assert reader.fieldnames == fields + ["sedd_score"]
    assert [{k: r[k] for k in fields} for r in back] == rows
    singles = {m: float(r["sedd_score"]) for m, r in zip(variants, back)}
    for m in variants[:4]:
        i, b = int(m[1:-1]) - 1, PROTEIN.residues.index(m[-1])
        assert singles[m] == pytest.approx(scan[i][b], abs=1e-5)
    assert "Spearman ρ vs DMS_score" in out and "over 5 variants" in out


def test_spearman_is_printed_against_dms_score(tiny, capsys, tmp_path):
    directory, model = tiny
    variants = ["M1A", "S2C", "V10W", "G20K", "A4L", "R5E"]
    exact = score.mutant_scores(model, PROTEIN.encode(SEQ), [score.parse_mutant(m, SEQ, PROTEIN.residues) for m in variants])
    rows = [{"mutant": m, "DMS_score": str(2 * s + 1)} for m, s in zip(variants, exact)] + [{"mutant": "T3S", "DMS_score": ""}]
    write_variants(tmp_path / "in.csv", rows, ["mutant", "DMS_score"])
    code, out, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--mutations",
                              tmp_path / "in.csv", "--out", tmp_path / "out.csv", "--json")
    assert code == 0 and "Spearman ρ vs DMS_score = 1.000 over 6 variants" in err
    assert json.loads(out)["sequences"][0]["name"] == "sequence"


def test_out_dash_writes_the_scored_table_to_stdout_and_the_rest_to_stderr(tiny, capsys, tmp_path, monkeypatch):
    """--out - made a file named '-'; now stdout holds the scored CSV alone, to pipe into another tool."""
    directory, _ = tiny
    write_variants(tmp_path / "in.csv", [{"mutant": m, "DMS_score": str(k)} for k, m in enumerate(["M1A", "S2C", "V10W"])],
                   ["mutant", "DMS_score"])
    common = ["--checkpoint", directory, "--sequence", SEQ, "--mutations", tmp_path / "in.csv"]
    code, _, _ = run_main(capsys, score.main, *common, "--out", tmp_path / "file.csv")
    assert code == 0
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, score.main, *common, "--out", "-")
    assert code == 0 and out == (tmp_path / "file.csv").read_text() and not (tmp_path / "-").exists()
    assert "ELBO (nats/res)" in err and "3 variants scored → standard output; Spearman ρ vs DMS_score" in err
    code, out, err = run_main(capsys, score.main, *common, "--out", "-", "--json")
    assert code == 2 and out == "" and "--out - writes the scored table to standard output, where --json prints" in err


def test_out_dash_into_a_reader_that_stops_early_ends_quietly(tiny_dir, tmp_path, monkeypatch, capsys):
    """`--out - | head -1` printed 'error: [Errno 32] Broken pipe' and exited 2 (BrokenPipeError is an OSError):
    the pipe error now reaches cli.run, which ends the tool quietly with status 1, as for `sedd.sample | head`."""
    write_variants(tmp_path / "in.csv", [{"mutant": "M1A"}, {"mutant": "S2C"}], ["mutant"])

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            return 1
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    argv = ["--checkpoint", str(tiny_dir), "--sequence", SEQ, "--mutations", str(tmp_path / "in.csv"), "--out", "-"]
    with pytest.raises(BrokenPipeError):
        score.main(argv)
    assert "error:" not in capsys.readouterr().err
    monkeypatch.setattr(os, "dup2", lambda *a: None)                 # cli.run points the real stdout at /dev/null
    assert run(lambda: score.main(argv)) == 1


def test_too_few_dms_scores_for_a_spearman_say_so(tiny, capsys, tmp_path):
    directory, _ = tiny
    write_variants(tmp_path / "in.csv", [{"mutant": "S2C", "DMS_score": "0.4"}], ["mutant", "DMS_score"])
    code, out, _ = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--mutations",
                            tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 0 and "no Spearman ρ: it needs at least 2 variants with a DMS_score, and scores that differ (got 1)" in out
    assert "nan" not in out
    write_variants(tmp_path / "in.csv", [{"mutant": "S2C", "DMS_score": ""}], ["mutant", "DMS_score"])
    code, out, _ = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--mutations",
                            tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 0 and "(got 0)" in out and "no DMS_score column" not in out


@pytest.mark.parametrize("mutant, message", [
    ("A1V", r"line 3 \(mutant 'A1V'\): mutation 'A1V': position 1 is 'M' in the sequence, not 'A'"),
    ("M99V", "position 99 is outside the sequence"),
    ("M1B", "'B' is not a residue"),
    ("M1", "not of the form A23V"),
    ("S12", r"mutation 'S12' is not of the form A23V"),        # was read as S1 → '2', 'position 1 is M'
    ("12G", r"mutation '12G' is not of the form A23V"),
    ("M1A:M1C", "position 1 is mutated twice"),
])
def test_bad_mutations_name_the_row(tiny, capsys, tmp_path, mutant, message):
    directory, _ = tiny
    write_variants(tmp_path / "in.csv", [{"mutant": "S2C"}, {"mutant": mutant}], ["mutant"])
    code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--mutations",
                            tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 2
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "out.csv").exists()


def test_a_table_scores_each_distinct_set_of_sites_once_and_gives_each_variant_its_own_score(tiny):
    """A table of every substitution at a few sites (a scan's layout) cost one network row per variant."""
    _, model = tiny
    tokens = PROTEIN.encode(SEQ)
    names = ["M1A", "M1C", "S2C", "S2D", "M1A:S2C", "S2D:M1C", "S2W:M1Y"]
    mutants = [score.parse_mutant(m, SEQ, PROTEIN.residues) for m in names]
    spy = Spy(model.model)
    scores = score.mutant_scores(dataclasses.replace(model, model=spy), tokens, mutants)
    assert sum(len(rows) for rows in spy.inputs) == 3                  # {1}, {2}, {1, 2}
    alone = [score.mutant_scores(model, tokens, [m])[0] for m in mutants]
    assert scores == pytest.approx(alone, abs=1e-9)
    assert len(set(scores)) == len(names)                              # no variant got another's score


def test_a_table_that_already_has_scores_is_refused_and_left_as_it_was(tiny, capsys, tmp_path):
    directory, _ = tiny
    table = tmp_path / "scored.csv"
    table.write_text("mutant,DMS_score,sedd_score\nS2C,1,-0.5\n")
    code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--mutations", table,
                            "--out", tmp_path / "again.csv")
    assert code == 2 and "already has a sedd_score column" in err, err
    assert not (tmp_path / "again.csv").exists()


@pytest.mark.parametrize("text, message", [
    ("\n\nmutant\nS2C\nQ3W\n", r"line 5 \(mutant 'Q3W'\)"),     # the header below blank lines is found
    ("mutant,DMS_score,,\nS2C,1,,\n", "the header has 2 columns without a name; remove the empty columns"),
])
def test_a_spreadsheets_blank_lines_and_empty_columns_are_named_as_such(tiny, capsys, tmp_path, text, message):
    directory, _ = tiny
    (tmp_path / "in.csv").write_text(text)
    code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--mutations",
                            tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 2 and __import__("re").search(message, err), err


def test_out_is_refused_over_a_file_of_the_checkpoint_it_reads(tiny_dir, capsys, tmp_path):
    import shutil
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, copy)
    before = (copy / "config.json").read_bytes()
    (tmp_path / "in.csv").write_text("mutant\nS2C\n")
    code, _, err = run_main(capsys, score.main, "--checkpoint", copy, "--sequence", SEQ, "--mutations",
                            tmp_path / "in.csv", "--out", copy / "config.json")
    assert code == 2 and f"error: --out {copy / 'config.json'} is the file --checkpoint reads" in err, err
    assert (copy / "config.json").read_bytes() == before


def test_a_config_refused_after_scoring_leaves_no_output_table(tiny_dir, capsys, tmp_path):
    """The family percentiles of a hand-edited config were refused after the scored table was written."""
    import shutil
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config.setdefault("evaluation", {})[score.DISTRIBUTION_KEY] = {"elbo_nats_per_residue_quantiles": [2.0, 1.0]}
    (copy / "config.json").write_text(json.dumps(config))
    (tmp_path / "in.csv").write_text("mutant\nS2C\n")
    code, _, err = run_main(capsys, score.main, "--checkpoint", copy, "--sequence", SEQ, "--mutations",
                            tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 2 and "score_distribution" in err, err
    assert not (tmp_path / "out.csv").exists()


def test_mutations_need_out_and_a_mutant_column(tiny, capsys, tmp_path):
    directory, _ = tiny
    with pytest.raises(SystemExit) as e:
        score.main(["--checkpoint", str(directory), "--sequence", SEQ, "--mutations", "x.csv"])
    assert e.value.code == 2 and "--mutations and --out go together" in capsys.readouterr().err
    write_variants(tmp_path / "in.csv", [{"variant": "S2C"}], ["variant"])
    code, _, err = run_main(capsys, score.main, "--checkpoint", directory, "--sequence", SEQ, "--mutations",
                            tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 2 and "no 'mutant' column (columns: 'variant')" in err


def test_top_substitutions_and_scan_csv(tiny):
    _, model = tiny
    entry = score.score_sequence(model, PROTEIN.encode(SEQ[:12]), scan=True)
    top = score.top_substitutions(entry, 5)
    flat = sorted(((v, i, b) for i, row in enumerate(entry["scan"]["scores"]) for b, v in enumerate(row)
                   if PROTEIN.residues[b] != SEQ[i]), reverse=True)[:5]
    assert [(f"{SEQ[i]}{i + 1}{PROTEIN.residues[b]}", pytest.approx(v)) for v, i, b in flat] == top
    lines = score.scan_csv(entry).splitlines()
    assert lines[0] == "position,wild_type," + ",".join(PROTEIN.residues) and lines[1].startswith("1,M,")
    assert len(lines) == 13 and float(lines[1].split(",")[2 + PROTEIN.residues.index("M")]) == 0.0


def test_evaluate_stores_the_distribution_the_percentile_reads(tiny, capsys, tmp_path):
    from sedd import evaluate

    directory, _ = tiny
    seqs, _ = profile_family(12, 30, seed=3)
    write_fasta(tmp_path / "val.fasta", seqs)
    assert evaluate.main(["--checkpoint", str(directory), "--data", str(tmp_path / "val.fasta"), "--json",
                          "--max-t-samples", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    dist = result[score.DISTRIBUTION_KEY]
    assert dist["num_sequences"] == 12 and len(dist["elbo_nats_per_residue_quantiles"]) == 101
    config = json.loads((directory / "config.json").read_text())
    copy = tmp_path / "ckpt"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    (copy / "config.json").write_text(json.dumps({**config, "evaluation": result}))
    median = dist["elbo_nats_per_residue_quantiles"][50]
    assert score.family_percentile(checkpoint.load(copy), median) == pytest.approx(50.0, abs=1.0)


# ---- the command line: FASTA files as they come, comment lines, what --help says --------------------------
def test_scoring_an_empty_fasta_or_a_folder_says_so(tiny_dir, tmp_path, capsys):
    (tmp_path / "empty.fasta").write_text("\n")
    assert score.main(["--checkpoint", str(tiny_dir), "--fasta", str(tmp_path / "empty.fasta")]) == 2
    assert "error: FASTA file" in (err := capsys.readouterr().err) and "is empty" in err
    assert score.main(["--checkpoint", str(tiny_dir), "--fasta", str(tmp_path)]) == 2
    assert "is a folder, not a FASTA file" in capsys.readouterr().err


def test_score_fasta_skips_comment_lines_as_training_does(tiny_dir, capsys, tmp_path):
    path = tmp_path / "commented.fasta"
    path.write_text(f";file written by hand\n>a first\n{SEQ[:20]}\n;a note inside the record\n{SEQ[20:]}\n"
                    f">b\r\n;windows line ends\r\nMKVLL\r\n")
    code, out, err = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--fasta", path, "--json")
    assert code == 0, err
    entries = json.loads(out)["sequences"]
    assert [(e["name"], e["sequence"]) for e in entries] == [("a", SEQ), ("b", "MKVLL")]


def test_comment_lines_of_pasted_text_are_skipped_and_a_semicolon_elsewhere_is_refused(tiny_dir, capsys, tmp_path):
    # blanked, not removed: the sequence's characters keep their positions in the pasted text
    assert fasta_records(f";pasted\n{SEQ}") == [("sequence", " " * 7 + f"\n{SEQ}")]
    code, out, _ = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--sequence", f">x\n;c\n{SEQ}", "--json")
    assert code == 0 and json.loads(out)["sequences"][0]["sequence"] == SEQ
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--sequence", "MKV;GG")
    assert code == 2 and "invalid character ';' at position 4" in err
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--sequence", ";only a comment")
    assert code == 2 and "--sequence holds only comment lines (lines that start with ;) and no sequence" in err
    path = tmp_path / "comments.fasta"
    path.write_text(";one\n;two\n")
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--fasta", path)
    assert code == 2 and f"FASTA file {path} holds only comment lines" in err


def test_a_pasted_sequence_counts_an_error_from_the_start_of_the_text_as_a_template_does(tiny_dir, capsys):
    """``sedd.score --sequence`` counted from the line after the header: 15, where sedd.sample and the
    studio say 21. A comment line, which scoring skips (templates refuse it), keeps the count too."""
    text = ">seq2\nMAEGNTLISV\nDYEBFGKVQG\n"
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--sequence", text)
    assert code == 2 and "invalid character 'B' at position 21" in err
    code, _, err = run_main(capsys, sample_main, "--checkpoint", tiny_dir, "--template", text, "--steps", 16)
    assert code == 2 and "invalid character 'B' at position 21" in err
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--sequence", text.replace("\n", "\n;c\n", 1))
    assert code == 2 and "invalid character 'B' at position 24" in err


def test_score_help_names_the_environment_variable_its_default_checkpoint_reads(tiny_dir, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        score.main(["--help"])
    assert "$SEDD_CHECKPOINT" in " ".join(capsys.readouterr().out.split())
    monkeypatch.setenv("SEDD_CHECKPOINT", str(tiny_dir))          # and the default does read it
    code, out, _ = run_main(capsys, score.main, "--sequence", "MKVLL", "--json")
    assert code == 0 and json.loads(out)["checkpoint"] == str(tiny_dir)


# ---- variant tables: read as spreadsheets save them, checked before the slow work -------------------------
def test_mutations_paths_are_checked_before_scoring(tiny_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "in.csv").write_text("mutant\nS2C\n")
    monkeypatch.setattr(score, "score_sequence", lambda *a, **k: pytest.fail("scored before checking the paths"))
    common = ["--checkpoint", str(tiny_dir), "--sequence", SEQ]
    assert score.main(common + ["--mutations", str(tmp_path / "in.csv"), "--out", str(tmp_path)]) == 2
    assert "--out" in (err := capsys.readouterr().err) and "is a directory" in err
    assert score.main(common + ["--mutations", str(tmp_path / "no.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "--mutations" in (err := capsys.readouterr().err) and "is not a file" in err


def test_a_spreadsheet_csv_with_a_byte_order_mark_is_read(tiny_dir, tmp_path):
    (tmp_path / "in.csv").write_bytes("\ufeffmutant,DMS_score\nS2C,1\nM1A,2\n".encode())
    model = checkpoint.load(tiny_dir)
    got = score.score_mutations_csv(model, model.alphabet.encode(SEQ), tmp_path / "in.csv", tmp_path / "out.csv")
    assert got["num_variants"] == 2 and got["num_with_dms"] == 2
    assert (tmp_path / "out.csv").read_text().startswith("mutant,DMS_score,sedd_score\n")


def test_a_bad_variant_table_is_refused_before_the_sequence_is_scored(tiny_dir, capsys, tmp_path, monkeypatch):
    scored = []
    real = score.score_sequence
    monkeypatch.setattr(score, "score_sequence", lambda *a, **k: scored.append(a) or real(*a, **k))
    table = tmp_path / "variants.csv"
    table.write_text("mutant,DMS_score\nM1A,0.5\nS2C,0.1\nQ3W,0.2\n")            # SEQ[2] is T, not Q
    code, _, err = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--sequence", SEQ, "--mutations", table,
                            "--out", tmp_path / "scored.csv")
    assert code == 2 and f"{table}, line 4 (mutant 'Q3W'): mutation 'Q3W': position 3 is 'T'" in err
    assert scored == [] and not (tmp_path / "scored.csv").exists()
    table.write_text("mutant,DMS_score\nM1A,0.5\nS2C,0.1\nT3W,0.2\n")
    code, out, err = run_main(capsys, score.main, "--checkpoint", tiny_dir, "--sequence", SEQ, "--mutations", table,
                              "--out", tmp_path / "scored.csv")
    assert code == 0 and len(scored) == 1 and "3 variants scored" in out
    assert (tmp_path / "scored.csv").read_text().splitlines()[0] == "mutant,DMS_score,sedd_score"
