"""DESIGN.md's contracts, clause by clause, through the entry points a user calls (the command lines,
the checkpoint loader, the app's callbacks and server). Each test names the clause it pins; the
clauses other test files already pin are not repeated here."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from conftest import write_fasta

from sedd import checkpoint, evaluate, sample, score
from sedd.alphabet import PROTEIN

SEQ = "MSTARPLKSVDYEVFGRVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQG"


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    from studio_helpers import tiny_checkpoint_dir
    return tiny_checkpoint_dir(tmp_path_factory.mktemp("ckpt"))


def run(main, capsys, *argv) -> tuple[int, str, str]:
    """A command's ``main`` as the shell runs it: (exit code, stdout, stderr); argparse's refusals included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# ---- sedd.score: --fasta FILE, --mutations CSV ---------------------------------------------------------------
def test_score_fasta_scores_every_record_when_the_first_has_no_header(ckpt_dir, tmp_path, capsys):
    """``--fasta FILE`` scores every sequence of the file: a first record without a ``>`` line is one
    of them, not a record that silently swallows the others."""
    path = tmp_path / "designs.fasta"
    path.write_text(f"{SEQ[:20]}\n>second\n{SEQ[20:40]}\n>third\n{SEQ[:30]}\n")
    code, out, _ = run(score.main, capsys, "--checkpoint", ckpt_dir, "--fasta", path, "--json")
    assert code == 0
    entries = json.loads(out)["sequences"]
    assert [(e["name"], e["sequence"]) for e in entries] == [("sequence", SEQ[:20]), ("second", SEQ[20:40]),
                                                             ("third", SEQ[:30])]
    code, out, err = run(score.main, capsys, "--checkpoint", ckpt_dir, "--sequence", f"{SEQ[:20]}\n>b\n{SEQ[20:40]}",
                         "--json")
    assert code == 0 and [e["sequence"] for e in json.loads(out)["sequences"]] == [SEQ[:20]]
    assert "holds 2 FASTA records; scoring the first one only" in err


def test_a_mutant_whose_position_is_not_ascii_digits_says_what_a_mutant_looks_like(ckpt_dir, tmp_path, capsys):
    """Bad input says what was wrong and what is allowed (``A23V``), never int()'s "invalid literal"."""
    (tmp_path / "variants.csv").write_text("mutant\nM1A\nS\u00b2A\n")
    code, _, err = run(score.main, capsys, "--checkpoint", ckpt_dir, "--sequence", SEQ,
                       "--mutations", tmp_path / "variants.csv", "--out", tmp_path / "scored.csv")
    assert code == 2 and "invalid literal" not in err
    assert "line 3" in err and "is not of the form A23V" in err


# ---- sedd.sample: (--template T | --length N | --length auto) ------------------------------------------------
@pytest.mark.parametrize("length, message", [
    ("\u00b2", "argument --length: '\u00b2' is not a whole number of residues, 1 or more, or 'auto'"),
    ("3\u00b2", "argument --length: '3\u00b2' is not a whole number of residues, 1 or more, or 'auto'"),
    ("4.0", "argument --length: '4.0' is not a whole number of residues, 1 or more, or 'auto'"),
    ("-4", "argument --length: '-4' is not a whole number of residues, 1 or more, or 'auto'")])
def test_a_length_that_is_not_n_or_auto_says_what_is_allowed(ckpt_dir, capsys, length, message):
    code, out, err = run(sample.main, capsys, "--checkpoint", ckpt_dir, "--length", length)
    assert code == 2 and out == ""
    assert message in err and "invalid literal" not in err


@pytest.mark.parametrize("length", [None, "ten", 2.5j])
def test_plan_designs_without_a_template_or_a_usable_length_says_what_to_give(ckpt_dir, length):
    from sedd.design import plan_designs
    with pytest.raises(ValueError, match="give a template, or a length from 1 to 128 or 'auto'"):
        plan_designs(checkpoint.load(ckpt_dir), length=length)


def test_a_template_without_a_mask_comes_back_unchanged_from_the_command_line(ckpt_dir, capsys):
    """"No mask at all is allowed: the sequence is returned unchanged" (header, digits, case and * as ever)."""
    for sampler in ("tau-leaping", "confidence", "remask"):
        code, out, _ = run(sample.main, capsys, "--checkpoint", ckpt_dir, "--template", ">wt\nmkv 4 aGF*",
                           "--num-samples", 3, "--steps", 16, "--seed", 1, "--sampler", sampler, "--omit", "M")
        assert code == 0 and out == ">design_1\nMKVAGF\n>design_2\nMKVAGF\n>design_3\nMKVAGF\n"


def test_sample_prints_fasta_on_stdout_progress_on_stderr_and_json_of_the_contract_types(ckpt_dir, capsys):
    code, out, err = run(sample.main, capsys, "--checkpoint", ckpt_dir, "--template", "MKV__GF_R",
                         "--num-samples", 2, "--steps", 16, "--seed", 4)
    assert code == 0 and out.splitlines()[0::2] == [">design_1", ">design_2"]
    assert all(len(s) == 9 and PROTEIN.is_valid(s) for s in out.splitlines()[1::2])
    assert "denoising" in err and "denoising" not in out
    code, out, _ = run(sample.main, capsys, "--checkpoint", ckpt_dir, "--template", "MKV__GF_R",
                       "--num-samples", 2, "--steps", 16, "--seed", 4, "--json")
    assert code == 0 and len(out.strip().splitlines()) == 1         # one object, nothing else on stdout
    result = json.loads(out)
    types = {"sequences": list, "nfe_per_sample": float, "seconds": float, "steps": int, "seed": int, "checkpoint": str}
    assert {k: type(result[k]) for k in types} == types
    assert result["steps"] == 16 and result["seed"] == 4 and result["checkpoint"] == str(ckpt_dir)


# ---- sedd.evaluate: infill_recovery ------------------------------------------------------------------------------
def test_evaluate_infills_30_percent_of_every_sequence_once_with_the_default_sampler(ckpt_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    """``infill_recovery``: round(0.3 n) positions of every sequence masked uniformly at random with a seed,
    infilled once by the default sampler (``design.Request``'s defaults); the same masks on every run."""
    from sedd import metrics
    from sedd.design import Request

    requests = []
    real_stream = metrics.stream
    monkeypatch.setattr(metrics, "stream", lambda model, req: requests.append(req) or real_stream(model, req))
    sequences = [SEQ[:30], SEQ[:40], SEQ[10:20]]
    write_fasta(tmp_path / "heldout.fasta", sequences)
    argv = ["--checkpoint", ckpt_dir, "--data", tmp_path / "heldout.fasta", "--t-samples", 2, "--max-t-samples", 2,
            "--json"]
    code, out, _ = run(evaluate.main, capsys, *argv)
    result = json.loads(out)
    assert code == 0 and result["infill_masked_residues"] == 9 + 12 + 3 and result["infill_fraction"] == 0.3
    assert {"elbo_nats_per_residue", "elbo_stderr", "length_nats_per_residue", "num_sequences", "num_residues",
            "infill_recovery"} <= set(result) and (result["num_sequences"], result["num_residues"]) == (3, 80)
    [request] = requests                                             # once: one batch of three sequences
    default = Request(templates=[])
    assert (request.steps, request.temperature, request.use_cache, request.sampler, request.top_p) == \
        (default.steps, default.temperature, default.use_cache, default.sampler, default.top_p)
    mask_id = PROTEIN.mask_id
    for template in request.templates:
        truth = next(s for s in sequences if len(s) == len(template))
        assert all(tok == mask_id or tok == PROTEIN.encode(truth)[i] for i, tok in enumerate(template.tokens))
        assert template.num_designed == round(0.3 * len(truth))
    run(evaluate.main, capsys, *argv)
    assert [t.tokens for t in requests[1].templates] == [t.tokens for t in request.templates]     # seeded


# ---- Checkpoint: a Hub repo id wherever a directory; no unpickling; resume state never read ----------------------
@pytest.fixture
def hub(ckpt_dir, monkeypatch, tmp_path):
    """``someone/sedd-tiny`` on a Hub whose download gives the tiny checkpoint; returns the calls made."""
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(ckpt_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.chdir(tmp_path)                 # no local folder named "someone"
    return calls


def test_a_hub_repo_id_works_in_every_command(hub, tmp_path, capsys):
    repo = "someone/sedd-tiny"
    code, out, _ = run(sample.main, capsys, "--checkpoint", repo, "--template", "MKV__", "--steps", 16, "--seed", 1,
                       "--json")
    assert code == 0 and json.loads(out)["checkpoint"] == repo
    code, out, _ = run(score.main, capsys, "--checkpoint", repo, "--sequence", SEQ[:20], "--json")
    assert code == 0 and json.loads(out)["checkpoint"] == repo
    write_fasta(tmp_path / "heldout.fasta", [SEQ[:30], SEQ[:20]])
    code, out, _ = run(evaluate.main, capsys, "--checkpoint", repo, "--data", tmp_path / "heldout.fasta",
                       "--t-samples", 2, "--max-t-samples", 2, "--json")
    assert code == 0 and json.loads(out)["checkpoint"] == repo
    assert hub and {r for r, _ in hub} == {repo}
    assert all(checkpoint.RESUME_NAME not in patterns and checkpoint.WEIGHTS_NAME in patterns for _, patterns in hub)


def test_inference_never_unpickles_and_never_reads_the_resume_state(ckpt_dir, tmp_path, monkeypatch, capsys):
    """Sampling, scoring and the app's two endpoints run with every unpickler disabled, beside a resume
    file that would fail to load if anything read it."""
    import shutil

    import app

    directory = shutil.copytree(ckpt_dir, tmp_path / "ckpt")
    (directory / checkpoint.RESUME_NAME).write_bytes(b"not a pickle: reading this file fails")

    def forbidden(*args, **kwargs):
        raise AssertionError("something was unpickled on the inference path")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, forbidden)
    code, out, err = run(sample.main, capsys, "--checkpoint", directory, "--template", "MKV__GF", "--steps", 16,
                         "--seed", 2)
    assert code == 0, err
    code, _, err = run(score.main, capsys, "--checkpoint", directory, "--sequence", SEQ[:20], "--scan")
    assert code == 0, err
    cb = app.StudioCallbacks(checkpoint.load(directory), {"off": None}, min_interval=0.0, output_root=tmp_path / "out")
    *_, final = cb.generate("MKV__GF", 1, 16, 3)
    assert final[0].startswith(">design_1\n")
    assert cb.score(SEQ[:20])["sequence"] == SEQ[:20]


# ---- the app's generate endpoint: parameters added later keep today's behaviour as their default --------------
def test_generate_parameters_beyond_the_first_four_default_to_the_original_behaviour(model, tmp_path):
    """temperature 1 and, from the extensions, no exclusion, spans drawn per design, the exact τ-leaping
    sampler, no nucleus filtering, no Stop: a caller that sends only the four contract parameters gets
    what it got before they existed. (``fold`` was there from the start: off on a CPU server.)"""
    import app

    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)
    info = app.build_demo(cb, "off").get_api_info()["named_endpoints"]["/generate"]["parameters"]
    defaults = {p["parameter_name"]: p["parameter_default"] for p in info[4:]}
    assert defaults == {"temperature": 1.0, "fold": "off", "exclude": "", "span_lengths": "sample",
                        "sampler": "tau-leaping", "top_p": 1.0, "stop_epoch": 0, "particles": 1}
    assert all(p["parameter_has_default"] for p in info[1:])


# ---- the app: a template without a mask can still be folded; host and port ---------------------------------------
def test_the_app_folds_a_template_without_a_mask(model, esmfold, tmp_path):
    import app

    cb = app.StudioCallbacks(model, {"ESMFold (local)": esmfold, "off": None}, min_interval=0.0, output_root=tmp_path)
    *_, final = cb.generate(">wt\nMKVLAGW", 1, 16, 0, 1.0, "ESMFold (local)")
    assert final[0] == ">design_1\nMKVLAGW\n"
    [design] = final[-1]
    assert design.fold is not None and len(design.fold.plddt) == 7 and design.fold_error is None
    assert final[4][0][app.TABLE_HEADERS.index("mean pLDDT")] is not None


def test_app_main_leaves_host_and_port_to_the_gradio_environment_variables(ckpt_dir, monkeypatch):
    """``python app.py`` names no host or port itself, so GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
    decide (Gradio's defaults: 127.0.0.1, 7860), and it runs the MCP server."""
    import signal

    import app

    launch, seen, captured = app.launch, {}, {}
    monkeypatch.setattr(signal, "signal", lambda *args: None)      # main's SIGTERM handler is for its own process
    monkeypatch.setattr(app, "launch", lambda demo, **kwargs: seen.update(kwargs, demo=demo))
    app.main(["--checkpoint", str(ckpt_dir)])
    assert "demo" in seen and not {"server_name", "server_port"} & set(seen)
    monkeypatch.setattr(type(seen["demo"]), "launch", lambda self, **kwargs: captured.update(kwargs))
    launch(seen["demo"])
    assert captured["mcp_server"] is True and not {"server_name", "server_port"} & set(captured)
    # Gradio kept 10,000 sessions' state by default, ~130 kB each: ~1.3 GB a public Space never gave back
    assert captured["state_session_capacity"] == app.STATE_SESSIONS <= 1000


@pytest.mark.slow
def test_python_app_py_serves_on_127_0_0_1_at_the_port_in_gradio_server_port(ckpt_dir, tmp_path, monkeypatch):
    import socket

    import requests

    import app

    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, url = app.spawn(["--checkpoint", str(ckpt_dir)], tmp_path / "app.log",
                          env={"GRADIO_SERVER_PORT": str(port), "OMP_NUM_THREADS": "1"})
    try:
        assert url == f"http://127.0.0.1:{port}/"
        info = requests.get(f"{url}gradio_api/info", timeout=60).json()
        assert {"/generate", "/score"} <= set(info["named_endpoints"])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
