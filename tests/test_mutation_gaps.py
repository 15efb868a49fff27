"""Behaviours a mutation review found untested: each test pins one behaviour a user depends on that a
small edit of the library (a mutant) could break without any other test failing."""
from __future__ import annotations

import dataclasses
import os
import stat
import warnings

import pytest
import torch
from safetensors.torch import load_file

from conftest import as_dataset, profile_family
from sedd import checkpoint, likelihood, score, studio
from sedd.alphabet import PROTEIN
from sedd.schedule import LogLinearSchedule
from sedd.spans import span_posterior

S = LogLinearSchedule()


# ---- checkpoint ---------------------------------------------------------------------------------------
def test_sampled_lengths_follow_the_length_histogram(tiny_model):
    ckpt = checkpoint.Checkpoint(tiny_model, PROTEIN, S, {10: 99, 50: 1})
    lengths = ckpt.sample_lengths(1000, torch.Generator().manual_seed(0))
    assert len(lengths) == 1000 and set(lengths) <= {10, 50}
    assert lengths.count(10) >= 900


@pytest.mark.parametrize("key", ["format", "model", "alphabet", "schedule"])
def test_update_config_refuses_the_blocks_that_define_the_model(tiny_checkpoint, key):
    config = tiny_checkpoint / checkpoint.CONFIG_NAME
    before = config.read_bytes()
    with pytest.raises(ValueError, match="defines the model"):
        checkpoint.update_config(tiny_checkpoint, key, {"replaced": True})
    assert config.read_bytes() == before


def test_atomically_written_files_are_readable_by_everyone(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "out.txt"
        checkpoint.atomic_write_text(path, "hello\n")
    finally:
        os.umask(old)
    assert path.read_text() == "hello\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_checkpoint_saved_from_a_bf16_model_stores_float32_weights(tiny_model, tmp_path):
    directory = checkpoint.save(tmp_path / "ckpt", tiny_model.to(torch.bfloat16), PROTEIN, S, {40: 1})
    state = load_file(str(directory / checkpoint.WEIGHTS_NAME))
    assert state and all(v.dtype == torch.float32 for v in state.values())


def test_a_checkpoint_loaded_as_bf16_has_bf16_parameters(tiny_checkpoint):
    loaded = checkpoint.load(tiny_checkpoint, dtype=torch.bfloat16)
    params = list(loaded.model.parameters())
    assert params and all(p.dtype == torch.bfloat16 for p in params)


# ---- span lengths -------------------------------------------------------------------------------------
def test_the_span_length_posterior_includes_the_length_prior(tiny_checkpoint):
    # one given residue: the likelihood barely tells the layouts apart; the peaked histogram must
    model = dataclasses.replace(checkpoint.load(tiny_checkpoint), length_histogram={9: 1000})
    spec = PROTEIN.parse_spec("M[3-12]", model.max_len)
    post = span_posterior(model, spec, t_samples=4, seed=0)
    assert post.mode() == (8,)                           # 1 given + 8 designed = length 9
    assert post.top(1)[0]["prob"] > 0.9


# ---- ELBO ---------------------------------------------------------------------------------------------
def test_each_precision_round_uses_fresh_random_draws(tiny_model, monkeypatch):
    seeds = []
    real = likelihood.estimate_elbo

    def recording(*args, **kwargs):
        seeds.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(likelihood, "estimate_elbo", recording)
    sequences, _ = profile_family(2, 12, seed=1)
    result = likelihood.elbo_to_precision(tiny_model, as_dataset(sequences), S, PROTEIN.mask_id, t_samples=4,
                                          target_stderr=1e-9, max_t_samples=8, seed=3)
    assert result["t_samples"] == 8 and len(seeds) >= 2
    assert len(set(seeds)) == len(seeds)


def test_every_sequence_gets_one_time_in_each_stratum(tiny_model, monkeypatch):
    K, calls = 4, []
    real = likelihood.diffusion_loss

    def recording(*args, t, **kwargs):
        calls.append(t.detach().double().cpu())
        return real(*args, t=t, **kwargs)

    monkeypatch.setattr(likelihood, "diffusion_loss", recording)
    sequences, _ = profile_family(3, 12, seed=2)
    likelihood.estimate_elbo(tiny_model, as_dataset(sequences), S, PROTEIN.mask_id, t_samples=K, seed=0)
    assert any(len(t) > K for t in calls)                 # a batch of several sequences
    for t in calls:
        strata = ((t - S.eps) / (1 - S.eps) * K).floor().long().view(-1, K)     # [B, K]
        assert strata.tolist() == [list(range(K))] * len(strata)


def test_a_sequences_stderr_is_the_standard_error_of_its_mean_over_times(tiny_model):
    seq = "MSTARPLKSVDYEVFGRVQG"
    result = likelihood.estimate_elbo(tiny_model, as_dataset([seq]), S, PROTEIN.mask_id, t_samples=8, seed=0)
    n = result["num_residues"]
    assert n == len(seq)
    assert result["elbo_stderr"] > 0
    assert result["per_sequence_stderr"][0] == pytest.approx(result["elbo_stderr"] * n, rel=1e-9)


# ---- scores -------------------------------------------------------------------------------------------
def test_top_substitutions_never_list_the_wild_type():
    wild, residues = "MSTAK", PROTEIN.residues
    gen = torch.Generator().manual_seed(0)
    scores = [[0.0 if r == w else -1.0 - torch.rand(1, generator=gen).item() for r in residues] for w in wild]
    entry = {"sequence": wild, "scan": {"residues": residues, "scores": scores}}
    subs = score.top_substitutions(entry, n=len(wild) * (len(residues) - 1))
    assert len(subs) == len(wild) * (len(residues) - 1)
    assert all(name[0] != name[-1] for name, _ in subs)
    assert all(value < 0 for _, value in subs)


def test_a_mutation_at_the_last_residue_is_accepted():
    residues = PROTEIN.residues
    assert score.parse_mutant("K5A", "MSTAK", residues) == [(4, residues.index("K"), residues.index("A"))]


def test_mutations_are_read_in_the_case_of_the_alphabet():
    """Protein letters in either case ('k5a' is K5A); an alphabet with lower-case letters (any alphabet
    trains, docs/design.md §10) keeps the case, so its 'h1w' is not refused as 'H1W'."""
    assert score.parse_mutant("k5a", "MSTAK", PROTEIN.residues) == score.parse_mutant("K5A", "MSTAK", PROTEIN.residues)
    letters = "dehlorw "
    assert score.parse_mutant("h1w:o5r", "hello", letters) == [(0, 2, 6), (4, 4, 5)]
    with pytest.raises(ValueError, match="position 1 is 'h' in the sequence, not 'H'"):
        score.parse_mutant("H1W", "hello", letters)


def test_a_dms_score_that_is_not_a_number_is_refused_naming_its_line(tmp_path):
    """'abc' was dropped without a word, and the summary then said too few variants had a DMS_score."""
    table = tmp_path / "variants.csv"
    table.write_text("mutant,DMS_score\nM1A,0.5\nS2C,\nT3A,NA\nA4G,nan\nK5A,abc\n")
    with pytest.raises(ValueError, match=f"{table}, line 6: DMS_score 'abc' is not a finite number; leave it blank "
                                         "\\(or NA, N/A, nan\\) where the variant was not measured"):
        score.read_variants(table, "MSTAK", PROTEIN.residues)
    table.write_text("mutant,DMS_score\nM1A,0.5\nS2C,\nT3A,NA\nA4G,nan\nK5A,1e-1\n")
    variants = score.read_variants(table, "MSTAK", PROTEIN.residues)      # unmeasured variants are still scored
    assert len(variants.mutants) == 5
    assert [score.measurement(row["DMS_score"]) for row in variants.rows] == [0.5, None, None, None, 0.1]
    for cell in ("1_5", "\u0663", "1,5", "inf", "1e400", "-"):          # float() reads the first two
        table.write_text(f"mutant,DMS_score\nM1A,{cell if cell != '1,5' else chr(34) + cell + chr(34)}\n")
        with pytest.raises(ValueError, match="line 2: DMS_score .* is not a finite number"):
            score.read_variants(table, "MSTAK", PROTEIN.residues)


@pytest.mark.parametrize("text, where", [
    ('mutant,DMS_score,notes\nM1A,1,"oops\nS2C,2,x\nT3A,3,y\n', "from line 2: unexpected end of data"),
    ('mutant,DMS_score,notes\nM1A,"1\nS2C,2",x\nT3A,3,y\n', "line 2: the DMS_score cell holds a line break"),
    ('mutant,DMS_score\nM1A,' + "9" * 200_000 + '\n', "from line 2: field larger than field limit")])
def test_a_quote_left_open_in_a_variant_table_is_refused_naming_where_not_a_swallowed_table(tmp_path, text, where):
    """A stray '"' made one cell of every line after it: 1 variant scored, exit 0. Past csv's field
    limit (about 128 kB) the same ended in a _csv.Error traceback."""
    table = tmp_path / "variants.csv"
    table.write_text(text)
    with pytest.raises(ValueError, match=f"{table}, {where}"):
        score.read_variants(table, "MSTAK", PROTEIN.residues)


def test_a_variant_table_separated_by_tabs_or_semicolons_or_with_spaced_names_is_read(tmp_path):
    table = tmp_path / "variants.tsv"
    for text in ("mutant\tDMS_score\nM1A\t0.5\nS2C\t0.1\n", "mutant;DMS_score;notes\nM1A;0.5;x\nS2C;0.1;a, b\n",
                 "mutant, DMS_score\nM1A, 0.5\nS2C, 0.1\n"):
        table.write_text(text)
        variants = score.read_variants(table, "MSTAK", PROTEIN.residues)
        assert variants.fields[:2] == ["mutant", "DMS_score"], text
        assert variants.mutants == [[(0, 10, 0)], [(1, 15, 1)]], text
        assert [score.measurement(row["DMS_score"]) for row in variants.rows] == [0.5, 0.1], text
    table.write_text("variant;score\nM1A;0.5\n")
    with pytest.raises(ValueError, match=r"has no 'mutant' column \(columns: 'variant;score'\)"):
        score.read_variants(table, "MSTAK", PROTEIN.residues)


def test_a_semicolon_table_may_write_decimal_commas_and_names_its_separator_in_refusals(tmp_path):
    """A European spreadsheet's export, 'A2C;-0,5', was refused as 'not a finite number'; and a refusal of
    a semicolon table advised quoting a value that holds a comma."""
    table = tmp_path / "variants.csv"
    table.write_text("mutant;DMS_score\nM1A;-0,5\nS2C;1,25e1\nT3A;,5\n")
    variants = score.read_variants(table, "MSTAK", PROTEIN.residues)
    assert [score.measurement(row["DMS_score"]) for row in variants.rows] == [-0.5, 12.5, 0.5]
    table.write_text("mutant;DMS_score\nM1A;0.5;x\n")
    with pytest.raises(ValueError, match="quote a value that holds a semicolon"):
        score.read_variants(table, "MSTAK", PROTEIN.residues)
    table.write_text("mutant,DMS_score\nM1A,\"1,5\"\n")          # in a comma table, a decimal comma is no number
    with pytest.raises(ValueError, match="is not a finite number"):
        score.read_variants(table, "MSTAK", PROTEIN.residues)


def test_a_header_naming_a_column_twice_is_refused_not_merged(tmp_path):
    table = tmp_path / "variants.csv"
    table.write_text("mutant,mutant ,DMS_score\nM1A,S2C,0.5\n")
    with pytest.raises(ValueError, match="the header names 'mutant' more than once"):
        score.read_variants(table, "MSTAK", PROTEIN.residues)


def test_spearman_of_scores_that_do_not_differ_is_none_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert score._spearman([{"DMS_score": "1"}] * 3, [1.0, 2.0, 3.0])["spearman"] is None


def test_spearman_skips_a_nan_dms_score():
    rows = [{"DMS_score": v} for v in ("0.1", "0.5", "nan", "0.9", "1.2")]
    result = score._spearman(rows, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert result["num_with_dms"] == 4
    assert result["spearman"] == pytest.approx(1.0)


# ---- studio request checks at their edges --------------------------------------------------------------
def _refused(model, **changes) -> studio.RequestError:
    request = {**dict(template="MKV__GF_R", num_samples=1, steps=16, temperature=1.0, seed=1), **changes}
    with pytest.raises(studio.RequestError) as e:
        studio.check_request(model, **request)
    return e.value


def test_a_top_p_just_above_one_is_refused(model):
    assert _refused(model, top_p=1.01).field == "top_p"


def test_a_temperature_just_below_the_minimum_is_refused(model):
    assert _refused(model, temperature=studio.Limits().min_temperature * 0.9).field == "temperature"


def test_one_design_more_than_the_maximum_is_refused(model):
    assert _refused(model, num_samples=studio.Limits().max_designs + 1).field == "num_samples"


def test_the_largest_seed_is_accepted():
    top = studio.Limits().max_seed
    assert studio.checked_seed(top) == top
    assert studio.checked_seed(str(top)) == top
