"""The studio's callbacks with a tiny score model and a tiny random ESMFold: no server, no browser."""
from __future__ import annotations

import inspect
import json
import re
import time
from pathlib import Path

import gradio as gr
import pytest
from studio_helpers import download, download_kinds, fasta_sequences

import app
from sedd import sample as sample_cli
from sedd import studio
from sedd.fold import ESMFoldBackend, pdb_ca_bfactors

TEMPLATE = ">test\nMKV__GF_R____LLAGW__KDE"
SHORT_TEMPLATE = "MKV__GF_R"
ESMFOLD = "ESMFold (local)"



@pytest.fixture
def cb(model, esmfold, tmp_path):
    return app.StudioCallbacks(model, {ESMFOLD: esmfold, "off": None}, min_interval=0.0, output_root=tmp_path)


def fixed_positions(template: str) -> dict[int, str]:
    body = template.split("\n", 1)[1]
    return {i: c for i, c in enumerate(body) if c != "_"}


def test_frames_stream_then_designs_keep_fixed_residues(cb):
    outputs = list(cb.generate(TEMPLATE, 3, 16, 5, 1.0, ESMFOLD))
    # the final output repeats the last frame (the API's result holds it); the stream before it does not
    frames = [o[1] for o in outputs[:-1] if isinstance(o[1], str) and "frame-counters" in o[1]]
    assert outputs[-1][1] == frames[-1]
    steps = [int(re.search(r'data-step="(\d+)"', f).group(1)) for f in frames]
    assert len(frames) >= 3 and steps == sorted(steps) and steps[0] == 0 and steps[-1] == 16
    assert len(set(frames)) == len(frames), "a frame is only sent when something changed"
    rows = [f.split('class="frame-legend"')[0] for f in frames]       # the legend shows every state
    assert "res-masked" in rows[0] and "res-masked" not in rows[-1] and "res-new" in rows[1]
    fasta, *_rest = outputs[-1]
    designs = fasta_sequences(fasta)
    assert len(designs) == 3
    for seq in designs:
        assert all(seq[i] == c for i, c in fixed_positions(TEMPLATE).items())
        assert "_" not in seq and len(seq) == 23


def test_final_outputs_rank_fold_and_download(cb):
    *_, final = cb.generate(TEMPLATE, 2, 16, 11, 1.0, ESMFOLD)
    fasta, _frames, status, seed_used, table, structure, plot, files, ranked = final
    assert seed_used == 11 and "seed 11" in status
    assert [row[0] for row in table] == [1, 2]
    plddts = [float(row[2]) for row in table]
    assert plddts == sorted(plddts, reverse=True)
    assert "<iframe" in structure and "srcdoc=" in structure and "very high" in structure
    assert plot is not None
    assert download_kinds(files) == ["design_1.pdb", "design_2.pdb", "designs.fasta", "settings.json", "trajectory.json"]
    pdb = download(files, "design_1.pdb").read_text()
    bf = pdb_ca_bfactors(pdb)
    assert len(bf) == 23 and all(0 <= b <= 100 for b in bf) and max(bf) > 1.0
    traj = json.loads(download(files, "trajectory.json").read_text())
    assert traj["frames"][0]["step"] == 0 and traj["frames"][-1]["sequences"] == fasta_sequences(fasta)


def test_two_runs_downloads_never_share_a_name(cb, monkeypatch):
    """Each run's files are named for its seed and start time (UTC): downloads of two runs, of one seed
    or started in the same second, neither collide ("designs (1).fasta") nor get mixed up."""
    real_gmtime, started = time.gmtime, 1796286612                 # 2026-12-03 08:30:12 UTC

    def names(seed: int, when: int) -> set[str]:
        monkeypatch.setattr(time, "gmtime", lambda *_: real_gmtime(when))
        *_, final = cb.generate(TEMPLATE, 2, 16, seed, 1.0, ESMFOLD)
        return {Path(f).name for f in final[7]}

    first = names(42, started)
    assert sorted(first) == [f"{kind}_seed42_20261203-083012.{ext}" for kind, ext in (
        ("design_1", "pdb"), ("design_2", "pdb"), ("designs", "fasta"), ("settings", "json"), ("trajectory", "json"))]
    assert not first & names(42, started + 1) and not first & names(7, started)


def test_settings_reproduce_the_run_with_the_cli(cb, model, capsys):
    *_, final = cb.generate(TEMPLATE, 2, 20, None, 0.9, "off")
    files = final[7]
    settings = json.loads(download(files, "settings.json").read_text())
    assert settings["seed"] == final[3] and settings["steps"] == 20 and settings["temperature"] == 0.9
    argv = settings["command"].split()[3:]          # after "python -m sedd.sample"
    assert sample_cli.main(argv) == 0
    assert fasta_sequences(capsys.readouterr().out) == fasta_sequences(final[0])


def test_fold_cache_spares_the_second_run(cb, esmfold, monkeypatch):
    list(cb.generate(TEMPLATE, 2, 16, 3, 1.0, ESMFOLD))
    calls = []
    real = esmfold._model.infer
    monkeypatch.setattr(esmfold._model, "infer", lambda s: calls.append(s) or real(s))
    *_, final = cb.generate(TEMPLATE, 2, 16, 3, 1.0, ESMFOLD)
    assert calls == [] and all(row[6] == "ok" for row in final[4])


def test_without_weights_the_designs_still_come(model, tmp_path):
    missing = ESMFoldBackend(str(tmp_path / "no-weights"), device="cpu")
    cb = app.StudioCallbacks(model, {ESMFOLD: missing}, min_interval=0.0, output_root=tmp_path / "out")
    *_, final = cb.generate(TEMPLATE, 2, 16, 1, 1.0, ESMFOLD)
    fasta, _f, status, _s, table, structure, plot, files, ranked = final
    assert len(fasta_sequences(fasta)) == 2
    assert "no-weights" in status and "not available" in status
    assert f"No structure for {ranked[0].name}" in structure and "still in the FASTA box" in structure and plot is None
    assert [row[6] for row in table] == ["failed", "failed"]
    assert download_kinds(files) == ["designs.fasta", "settings.json", "trajectory.json"]


class BrokenBackend:
    """A folding backend failing in a way nobody foresaw (not a FoldError)."""
    name = "broken"

    def fold(self, sequences, check=None):
        raise KeyError("plddt")


def test_an_unforeseen_fold_failure_keeps_the_designs(model, tmp_path):
    cb = app.StudioCallbacks(model, {"ESM Atlas API": BrokenBackend()}, min_interval=0.0, output_root=tmp_path)
    outputs = list(cb.generate(TEMPLATE, 2, 16, 1, 1.0, "ESM Atlas API"))
    folding = [o[2] for o in outputs if isinstance(o[2], str) and "Folding design" in o[2]]
    assert ["Folding design 1 of 2" in folding[0], "Folding design 2 of 2" in folding[1]] == [True, True]
    fasta, _f, status, _s, table, _structure, _plot, files, _ranked = outputs[-1]
    assert len(fasta_sequences(fasta)) == 2 and [row[6] for row in table] == ["failed", "failed"]
    assert "Folding failed: broken: folding failed unexpectedly (KeyError" in status
    assert "designs.fasta" in download_kinds(files)


def test_a_new_run_is_shown_in_the_chosen_colouring(cb):
    *_, final = cb.generate(TEMPLATE, 2, 16, 4, 1.0, ESMFOLD)
    assert cb.recolor_first(final[8], "pLDDT") == (gr.skip(), gr.skip())      # already drawn so
    structure, _plot = cb.recolor_first(final[8], "designed vs fixed")
    assert final[8][0].name in structure and "designed positions" in structure


def test_while_a_run_draws_the_structure_panel_says_what_comes(cb):
    """While designs that will be folded were drawn, the panel asked the user to choose a folding
    backend, one being chosen."""
    folded = next(cb.generate(TEMPLATE, 2, 16, 4, 1.0, ESMFOLD))[5]
    unfolded = next(cb.generate(TEMPLATE, 2, 16, 4, 1.0, "off"))[5]
    assert "once the designs are folded" in folded and "choose a folding backend" not in folded
    assert "choose a folding backend" in unfolded


def test_selecting_a_row_and_recolouring(cb):
    *_, final = cb.generate(TEMPLATE, 2, 16, 4, 1.0, ESMFOLD)
    ranked = final[8]
    evt = gr.SelectData(None, {"index": [1, 0], "value": 2})
    structure, plot, row = cb.select(ranked, "pLDDT", evt)
    assert row == 1 and ranked[1].name in structure and plot is not None
    designed, _ = cb.recolor(ranked, 1, "designed vs fixed")
    assert "designed positions" in designed and "#e4572e" in designed


def test_no_mask_returns_the_sequence_unchanged(cb):
    *_, final = cb.generate("MKVLAGW", 1, 16, 0, 1.0, "off")
    assert fasta_sequences(final[0]) == ["MKVLAGW"]
    assert "Folding is off" in final[5]


def test_a_missing_model_stops_the_app_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        app.main(["--checkpoint", str(tmp_path / "missing")])
    assert e.value.code == 2
    assert "cannot load the score model" in capsys.readouterr().err


def test_an_unreadable_model_file_stops_the_app_with_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    def unreadable(*_, **__):
        raise PermissionError(13, "Permission denied", str(tmp_path / "config.json"))
    monkeypatch.setattr(app.ckpt, "load", unreadable)
    with pytest.raises(SystemExit) as e:
        app.main(["--checkpoint", str(tmp_path)])
    assert e.value.code == 2
    assert "cannot load the score model: [Errno 13] Permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("argv, env, said", [
    (["--concurrency", "0"], None, "--concurrency: '0' is not a whole number above 0"),
    (["--max-per-session", "0"], None, "--max-per-session: '0' is not a whole number above 0"),
    (["--max-queue", "-1"], None, "--max-queue: '-1' is not a whole number above 0"),
    ([], "esmfold", "SEDD_FOLD='esmfold' is not a folding backend; choose one of 'ESMFold (local)'"),
])
def test_start_up_settings_that_would_break_every_run_are_refused_at_start(argv, env, said, monkeypatch, capsys):
    """--concurrency 0 left every run waiting in the queue for good, --max-per-session 0 refused every
    run, and an unknown SEDD_FOLD (argparse checks only a typed --fold) refused every API call that
    left fold at its default; all three started without a word."""
    monkeypatch.setattr(app.ckpt, "load", lambda *a, **k: pytest.fail("the model loaded before the check"))
    if env:
        monkeypatch.setenv("SEDD_FOLD", env)
    with pytest.raises(SystemExit) as e:
        app.main(argv)
    assert e.value.code == 2 and said in capsys.readouterr().err


def test_3dmol_comes_from_the_npm_package_when_installed_else_the_cdn(tmp_path, monkeypatch):
    from gradio.data_classes import _StaticFiles
    monkeypatch.setattr(_StaticFiles, "all_paths", list(_StaticFiles.all_paths))   # Gradio keeps them globally
    local = tmp_path / "node_modules" / "3dmol" / "build" / "3Dmol-min.js"
    monkeypatch.setattr(app.render, "LOCAL_3DMOL", local)
    assert app.js_url_for_3dmol() == app.render.CDN_3DMOL
    local.parent.mkdir(parents=True)
    local.write_text("/* 3Dmol */")
    assert app.js_url_for_3dmol() == f"gradio_api/file={local}"
    assert local in _StaticFiles.all_paths               # served: that one file and nothing else of ours


def test_header_names_the_model_not_its_path(model):
    summary = app.model_summary(model)
    assert f"Model `{Path(model.source).name}` ·" in summary and str(Path(model.source).parent) not in summary
    assert app.model_name("someone/acyp-sedd") == "someone/acyp-sedd"        # a Hub id as given


def test_nearest_identity_counts_designed_positions_only():
    designed = [False, True, True, True, True]
    assert studio.nearest_identities(["MAAAA", "KAAAC", "MGGGG"], designed) == [0.75, 0.75, 0.0]
    assert studio.nearest_identities(["MAAAA"], designed) == [None]                 # no other design
    assert studio.nearest_identities(["MA", "MC"], [False, False]) == [None, None]  # nothing designed


def test_the_table_tells_designs_apart(cb):
    *_, final = cb.generate(TEMPLATE, 4, 16, 2, 1.0, "off")
    table, ranked = final[4], final[8]
    column = app.TABLE_HEADERS.index("nearest other design (% identity, designed positions)")
    expected = studio.nearest_identities([d.sequence for d in ranked], ranked[0].designed)
    assert [row[column] for row in table] == [round(100 * e, 1) for e in expected]      # numbers: they sort as such


def test_one_design_is_one_design(cb):
    *_, final = cb.generate(TEMPLATE, 1, 16, 2, 1.0, "off")
    assert "1 design in 16 steps" in final[2]


def test_a_template_with_nothing_to_design_says_so(cb):
    """A full sequence pasted as the template came back unchanged as "4 designs" with no word why."""
    *_, final = cb.generate(">P1\nmkvlgf", num_samples=2, steps=16, seed=1)
    assert final[0] == ">design_1\nMKVLGF\n>design_2\nMKVLGF\n"
    assert "Note: the template has no position to design (mark positions with _ ? # X or a bracket such as [3])" \
        in final[2]
    assert "Score tab" in final[2]
    *_, designed = cb.generate("MKV_GF", num_samples=2, steps=16, seed=1)
    assert "Note:" not in designed[2]
    *_, empty_span = cb.generate("MKV[0-0]GF", num_samples=2, steps=16, seed=1)     # a span of no positions
    # it told the user, who wrote a bracket, to mark positions with a bracket
    assert "Note: the template has no position to design (its [0-0] spans design none" in empty_span[2]
    *_, short_span = cb.generate("MKV[0-2]GF", num_samples=2, steps=16, seed=1)
    assert "no position to design" not in short_span[2]


def test_settings_name_the_checkpoint_as_the_user_can_use_it(model, monkeypatch, capsys, tmp_path):
    """settings.json's command names the checkpoint relative to the working directory (a Space's
    /home/user/app/... is nobody else's path), and it still draws the same designs from there."""
    folder = Path(model.source).resolve()
    monkeypatch.chdir(folder.parent)
    _, settings = studio.check_request(model, SHORT_TEMPLATE, 2, 16, 1.0, 7, "off")
    assert settings.checkpoint == folder.name and f"--checkpoint {folder.name} " in settings.command()
    assert sample_cli.main(settings.command().split()[3:]) == 0
    monkeypatch.chdir(tmp_path)                                 # elsewhere: the path as loaded
    assert studio.check_request(model, SHORT_TEMPLATE, 2, 16, 1.0, 7, "off")[1].checkpoint == model.source


def test_the_template_checked_again_when_exclude_is_edited_is_what_generate_would_refuse(model):
    """What the page shows under the template after an edit of Exclude (``template_refusal``)."""
    clash = "MKV[KR]" + "_" * 10
    assert "allows only KR, all of which are excluded" in studio.template_refusal(model, clash, "KR")
    assert studio.template_refusal(model, clash, "C") is None                      # Exclude fixed it
    assert "invalid character 'B' at position 4" in studio.template_refusal(model, "MKVB__", "C")
    assert studio.template_refusal(model, "  ", "C") is None                       # nothing typed yet
    assert studio.template_refusal(model, clash, "Z") is None                      # Exclude's own refusal is Generate's


def test_the_notice_a_page_event_sends_is_dropped_wherever_the_request_stands():
    """The notice was put before the first gr.Request parameter (so a request first lost the template)
    and with a default, which a later parameter without one made an invalid signature."""
    def late(a, b, request: gr.Request):
        return a, b, request

    def early(request: gr.Request, a, b=2):
        return request, a, b

    def streamed(a, request: gr.Request = None):
        yield a, request

    assert list(inspect.signature(app.with_notice(late)).parameters) == ["a", "b", "notice", "request"]
    assert app.with_notice(late)(1, 2, "refused", "req") == (1, 2, "req")
    assert list(inspect.signature(app.with_notice(early)).parameters) == ["request", "a", "b", "notice"]
    assert app.with_notice(early)("req", 1, 2, "refused") == ("req", 1, 2)
    assert list(app.with_notice(streamed)(1, "refused", "req")) == [(1, "req")]


@pytest.fixture
def dna_model_dir(tmp_path):
    import torch

    from sedd import checkpoint
    from sedd.alphabet import Alphabet
    from sedd.model import ScoreNetwork, preset
    from sedd.schedule import LogLinearSchedule
    torch.manual_seed(0)
    dna = Alphabet("ACGT", mask_chars="_")
    network = ScoreNetwork(preset("tiny", vocab_size=dna.size, max_len=32, dropout=0.0))
    return checkpoint.save(tmp_path / "dna", network, dna, LogLinearSchedule(), {20: 1})


def test_a_model_of_another_alphabet_is_never_folded(dna_model_dir, tmp_path, monkeypatch, capsys):
    """ACGT are protein letters too: a DNA model's designs went to ESMFold as peptides (on a GPU by default),
    and sedd.evaluate --fold tried to load ESMFold after all its sampling."""
    from sedd import checkpoint, evaluate
    model = checkpoint.load(dna_model_dir)
    with pytest.raises(studio.RequestError, match="folding needs a protein model") as e:
        studio.check_request(model, "ACG__T", 1, 16, 1.0, 0, fold="ESMFold (local)")
    assert e.value.field == "fold"
    studio.check_request(model, "ACG__T", 1, 16, 1.0, 0, fold="off")
    captured = {}
    monkeypatch.setattr(app.torch.cuda, "is_available", lambda: True)      # a GPU: ESMFold by default for proteins
    monkeypatch.setattr(app.ckpt, "load", lambda *_, **__: model)
    monkeypatch.setattr(app, "launch", lambda demo: captured.update(demo=demo))
    monkeypatch.setattr(app.signal, "signal", lambda *args: None)
    app.main(["--checkpoint", str(dna_model_dir)])
    fold = next(c for c in captured["demo"].blocks.values() if getattr(c, "label", None) == "Folding backend")
    assert fold.value == "off"
    with pytest.raises(SystemExit):
        app.main(["--checkpoint", str(dna_model_dir), "--fold", "ESMFold (local)"])
    assert "--fold 'ESMFold (local)': folding needs a protein model" in capsys.readouterr().err
    monkeypatch.setattr(evaluate, "_load_data", lambda *_: pytest.fail("read the data before refusing --fold"))
    assert evaluate.main(["--checkpoint", str(dna_model_dir), "--data", str(tmp_path / "x.fasta"), "--samples", "4",
                          "--reference", str(tmp_path / "x.fasta"),
                          "--fold"]) == 2
    assert "folding needs a protein model" in capsys.readouterr().err
