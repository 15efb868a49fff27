"""Scores in the studio: the Score tab's callback, the model-score column and ranking, the API and MCP."""
from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import io
import json
import re
from pathlib import Path

import gradio as gr
import pytest
import requests
from gradio_client import Client
from studio_helpers import download_kinds, refused_inputs, tiny_esmfold

import app
from sedd import render, score, studio
from sedd.fold import ESMFoldBackend

TEMPLATE = ">test\nMKV__GF_R____LLAGW__KDE"
SEQUENCE = "MAEGNTLISVDYEIFGKVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQ"
ENTRY_KEYS = {"name", "sequence", "length", "elbo_nats_per_residue", "elbo_stderr", "pll_nats_per_residue",
              "per_residue_log_prob", "scan"}


@pytest.fixture
def cb(model, tmp_path):
    esmfold = ESMFoldBackend(model=tiny_esmfold(), device="cpu")
    return app.StudioCallbacks(model, {"ESMFold (local)": esmfold, "off": None}, min_interval=0.0, output_root=tmp_path)


def cli_entry(model, capsys, sequence: str) -> dict:
    assert score.main(["--checkpoint", model.source, "--sequence", sequence, "--scan", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["sequences"][0]


# ---- Generate: the model-score column and the ranking basis ------------------------------------------------
def test_unfolded_designs_are_ranked_by_model_score_and_the_heading_says_so(cb):
    *_, final = cb.generate(TEMPLATE, 4, 16, 3, 1.0, "off")
    table, ranked = final[4], final[8]
    column = app.TABLE_HEADERS.index("model score (nats/res)")
    assert [row[column] for row in table] == [round(d.score, 3) for d in ranked]
    scores = [d.score for d in ranked]
    assert scores == sorted(scores) and len(set(scores)) == 4
    assert [row[1] for row in table] == [d.name for d in ranked]
    for design in ranked:      # one sequence, one score: the table's is the Score tab's (it used the run's seed)
        entry = cb.score(design.sequence)
        assert (design.score, design.score_stderr) == (entry["elbo_nats_per_residue"], entry["elbo_stderr"])
    assert "ranked by model score" in cb.heading(ranked)


def test_folded_designs_are_ranked_by_plddt_and_keep_their_model_score(cb):
    *_, final = cb.generate(TEMPLATE, 3, 16, 4, 1.0, "ESMFold (local)")
    table, ranked = final[4], final[8]
    plddts = [float(row[2]) for row in table]
    assert plddts == sorted(plddts, reverse=True)
    assert all(row[app.TABLE_HEADERS.index("model score (nats/res)")] is not None for row in table)
    assert "ranked by mean pLDDT" in cb.heading(ranked) and studio.ranking_basis(ranked) == "mean pLDDT"


# ---- the Score tab ----------------------------------------------------------------------------------------
def test_score_tab_shows_the_cli_entry_with_figures_table_and_downloads(cb, model, capsys):
    entry = cb.score(f">ACYP1 fragment\n{SEQUENCE}")
    summary, track, heatmap, top, files = cb.show_score(entry)
    assert set(entry) == ENTRY_KEYS and entry["name"] == "ACYP1"
    assert entry == {**cli_entry(model, capsys, SEQUENCE), "name": "ACYP1"}
    assert f"{entry['elbo_nats_per_residue']:.3f}" in summary and "no score distribution" in summary
    assert track is not None and heatmap is not None
    assert len(top) == 20 and [v for _, v in top] == sorted((v for _, v in top), reverse=True)
    csv_file, json_file = (next(f for f in files if f.endswith(ext)) for ext in (".csv", ".json"))
    assert Path(csv_file).read_text() == score.scan_csv(entry)
    saved = json.loads(Path(json_file).read_text())
    assert saved["family_percentile"] is None and saved["scan"] == entry["scan"]


def test_score_tab_names_a_record_as_the_cli_does_and_its_files_safely(cb, model, capsys, tmp_path):
    """The entry is the CLI's, name included (a UniProt header keeps its bars); only the download
    files get a file-safe stem, inside the studio's own folder, and never a hidden one."""
    for header, stem in ((">sp|P07311|ACYP1_HUMAN Acylphosphatase-1", "sp_P07311_ACYP1_HUMAN"),
                         (">../../escape", "_.._escape"), (">..", "sequence")):
        text = f"{header}\n{SEQUENCE}"
        entry = cb.score(text)
        assert entry == cli_entry(model, capsys, text)
        files = [Path(f) for f in cb.show_score(entry)[-1]]
        digest = hashlib.sha1(SEQUENCE.encode()).hexdigest()[:8]
        assert sorted(f.name for f in files) == [f"{stem}_{digest}_scan.csv", f"{stem}_{digest}_scores.json"]
        assert all(f.resolve().is_relative_to(tmp_path.resolve()) for f in files)


def test_a_mutant_scored_under_the_same_header_downloads_under_its_own_names(cb):
    """Two sequences with one header (or none) would both download as NAME_scan.csv, the browser's
    "(1)" the only difference: each file name carries its sequence's fingerprint."""
    mutant = SEQUENCE[:10] + ("A" if SEQUENCE[10] != "A" else "G") + SEQUENCE[11:]
    for header in (">ACYP1\n", ""):
        names = [{Path(f).name for f in cb.show_score(cb.score(header + s))[-1]} for s in (SEQUENCE, mutant)]
        assert len(names[0]) == len(names[1]) == 2 and not names[0] & names[1], names


def test_a_pasted_multi_fasta_scores_its_first_record_with_a_note_as_the_cli_does(cb, model, capsys):
    """The tab refused several records while ``sedd.score --sequence`` and the Generate tab keep the
    first with a note; the note stands beside the score only while the box holds the text scored."""
    text = f">first\n{SEQUENCE}\n>second\nMKVLAGGW\n>third\nGGSA"
    entry = cb.score(text)
    assert entry == cli_entry(model, capsys, text) and entry["name"] == "first" and entry["sequence"] == SEQUENCE
    summary = cb.show_score(entry, None, text)[0]
    assert "Note: the input holds 3 FASTA records; using the first one only." in summary
    assert f"{entry['elbo_nats_per_residue']:.3f}" in summary
    assert "Note:" not in cb.show_score(entry, None, SEQUENCE)[0]                 # one record: nothing to say
    for edited in (">other\nMKV\n>more\nGG", f">first\n{SEQUENCE[:-1]}\n>more\nGG"):    # since the score
        assert "Note:" not in cb.show_score(entry, None, edited)[0]


def test_score_tab_shows_the_family_percentile_when_the_checkpoint_stores_one(cb, model):
    quantiles = [2.5 + 0.01 * k for k in range(101)]
    cb.model = type(model)(**{**vars(model), "meta": {"evaluation": {score.DISTRIBUTION_KEY: {
        "elbo_nats_per_residue_quantiles": quantiles}}}})
    entry = cb.score(SEQUENCE)
    summary, *_ = cb.show_score(entry)
    expected = score.family_percentile(cb.model, entry["elbo_nats_per_residue"])
    assert f"More family-like than <b>{expected:.0f} %</b>" in summary


def test_score_this_design_marks_its_designed_positions(cb):
    *_, final = cb.generate(TEMPLATE, 2, 16, 5, 1.0, "off")
    ranked = final[8]
    text, sent, tabs = cb.send_to_score(ranked, 1)
    assert text == f">{ranked[1].name}\n{ranked[1].sequence}" and tabs.selected == "score"
    entry = cb.score(text)
    assert studio.scored(cb.model, entry, sent).designed == ranked[1].designed and entry["name"] == ranked[1].name
    edited = cb.score("W" + ranked[1].sequence[1:])
    assert studio.scored(cb.model, edited, sent).designed is None, "an edited sequence is no longer that design"
    with pytest.raises(gr.Error, match="Generate designs first"):
        cb.send_to_score([], 0)


@pytest.mark.parametrize("text, message", [
    ("MKV_GF", "scoring needs a full sequence"),
    ("", "paste a protein sequence"),
    ("MKVBGF", "'B' at position 4"),
    ("A" * 200, "the model's maximum is 128"),
])
def test_score_tab_refuses_bad_input_with_the_reason(cb, text, message):
    with pytest.raises(gr.Error, match=message):
        cb.score(text)


# ---- the API and the MCP server ---------------------------------------------------------------------------
def test_score_endpoint_returns_the_cli_entry(served, model, capsys):
    client = Client(served, verbose=False)
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [p["parameter_name"] for p in info["/score"]["parameters"]] == ["sequence"]
    assert client.predict(SEQUENCE, api_name="/score") == cli_entry(model, capsys, SEQUENCE)
    with pytest.raises(Exception, match="scoring needs a full sequence"):
        client.predict("MKV_GF", api_name="/score")


def test_a_bad_sequence_is_refused_before_it_is_queued(served):
    r = requests.post(f"{served}gradio_api/call/score", json={"data": ["MKVBGF"]}, timeout=30)
    [(field, reason)] = refused_inputs(r)
    assert field == "sequence" and "'B' at position 4" in reason


@pytest.mark.parametrize("text, message", [
    ("*", "the sequence is empty: give 1 to"),
    ("A" * 200, "the sequence has 200 positions; the model's maximum is"),
    ("MKV[2-3]GF", "scoring needs a full sequence, but the bracket [2-3] at position 4 stands for designed positions"),
    ("MKV[0]GF", "scoring needs a full sequence, but the bracket [0] at position 4 stands for designed positions"),
    ("Met Lys Val Gly Phe", "the sequence is written in three-letter codes (Met Lys Val Gly …); write one-letter "
                            "codes: MKVGF"),
])
def test_the_score_tab_says_what_is_wrong_with_a_sequence(model, text, message):
    with pytest.raises(ValueError) as e:
        studio.check_score_request(model, text)
    assert message in str(e.value) and "template" not in str(e.value)


async def _mcp_session(url: str, sequence: str):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(f"{url}gradio_api/mcp/") as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        result = await session.call_tool("score", {"sequence": sequence})
        # an agent that asks for no progress updates (no progress token): the plain path
        designed = await session.call_tool("generate", {"template": TEMPLATE, "num_samples": 2, "steps": 16, "seed": 3})
        return tools, result, designed


def test_mcp_tools_are_documented_and_both_can_be_called(served, model, capsys):
    tools, result, designed = asyncio.run(_mcp_session(served, SEQUENCE))
    assert set(tools) == {"generate", "score"}
    generate = tools["generate"].inputSchema["properties"]
    assert "1 to 8" in generate["num_samples"]["description"] and "16 to 1024" in generate["steps"]["description"]
    assert "_ ? # or X" in generate["template"]["description"]
    assert "masked positions (_ ? # X) are refused" in tools["score"].inputSchema["properties"]["sequence"]["description"]
    assert not result.isError
    assert len(result.content) == 1
    # Gradio's MCP server sends str() of the value: the description said "a JSON object", and an agent's
    # json.loads failed on its quotes
    assert "a Python literal: read it with ast.literal_eval" in tools["score"].description
    entry = ast.literal_eval(result.content[0].text)
    assert entry == cli_entry(model, capsys, SEQUENCE)
    assert not designed.isError, designed.content
    outputs = ast.literal_eval(designed.content[0].text)   # str() of the outputs, as README reads them
    fasta = outputs[0]                                      # the first output: the designs' FASTA
    assert fasta.count(">design_") == 2 and all(line.startswith("MKV") for line in fasta.splitlines()[1::2])
    assert download_kinds(f["orig_name"] for f in outputs[-1]) == ["designs.fasta", "settings.json", "trajectory.json"]


def test_the_readmes_mcp_example_prints_the_designs_fasta(served):
    """README's example printed str() of every output, with ``content[0].text``, under "the designs' FASTA"."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    [example] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "call_tool" in block]
    example = example.replace("http://127.0.0.1:7860/", served).replace("MAEGNTLISV…", SEQUENCE)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "README.md", "exec"), {"__name__": "__main__"})
    tools, fasta = printed.getvalue().split("\n", 1)
    assert tools == "['generate', 'score']"
    assert re.fullmatch(r">design_1\nMKV[A-Z]{4}GF\n>design_2\nMKV[A-Z]{4}GF\n\n", fasta), fasta


def test_score_this_design_before_any_run_logs_no_traceback(cb):
    """The toast says what to do; the server log is not a place for a user's early click."""
    with pytest.raises(gr.Error, match="Generate designs first") as e:
        cb.send_to_score([], 0)
    assert e.value.print_exception is False


def test_a_one_residue_sequence_is_one_residue_not_one_residues(cb):
    summary = cb.show_score(cb.score("m"))[0]
    assert "sequence · 1 residue</div>" in summary
    assert "· 2 residues</div>" in render.score_summary_html(cb.score("MK"), None)


def test_a_score_error_counts_positions_through_comment_lines_and_sees_indented_headers(bundled):
    with pytest.raises(ValueError, match="'B' at position 17"):
        studio.check_score_request(bundled, ";comment line\nMKB")
    with pytest.raises(ValueError, match="the sequence is empty"):
        studio.check_score_request(bundled, ";c\n")
    text = ">a\nMKVLAGFRE\n  >b\nGGKV"                  # an indented header starts the second record
    name, tokens = studio.check_score_request(bundled, text)
    assert name == "a" and bundled.alphabet.decode(tokens) == "MKVLAGFRE"
    entry = {"name": name, "sequence": "MKVLAGFRE"}
    assert studio.score_notices(bundled, text, entry) == ["the input holds 2 FASTA records; using the first one only"]


def test_the_pseudo_log_likelihood_shown_positive_is_called_negative(cb):
    """"pseudo-log-likelihood 0.151" read as a log-likelihood above 0, against the log p track beneath
    it; the number is −(1/L) Σ log p, in nats per residue like the ELBO."""
    entry = cb.score("MKVLAAGG")
    summary = render.score_summary_html(entry, None)
    assert entry["pll_nats_per_residue"] > 0
    assert f"negative pseudo-log-likelihood {entry['pll_nats_per_residue']:.3f} nats/residue" in summary
