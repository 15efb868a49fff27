"""The page and the ``generate`` API accept bracket templates, excluded residues and span-length modes."""
from __future__ import annotations

import json
import re
import shlex
import time
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio_client import Client
from studio_helpers import download, launch_app

import app
from sedd import sample as sample_cli

SPANS = "MKV[2-5]GF[KR]R[0-2]W"


@pytest.fixture
def cb(model, tmp_path):
    return app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)


def final_of(cb, template, num_samples=4, seed=3, **kwargs):
    *_, final = cb.generate(template, num_samples, 16, seed, 1.0, "off", **kwargs)
    return final


def designs(fasta: str) -> list[str]:
    return fasta.splitlines()[1::2]


def test_spans_show_the_posterior_and_each_designs_lengths(cb):
    _fasta, _frames, status, _seed, table, _s, _p, files, ranked = final_of(cb, SPANS, exclude="c w")
    assert 'class="span-posterior"' in status and status.count('class="span-row"') == 10
    assert "No C, W at any designed position." in status          # the exclusion as it was read
    header = app.TABLE_HEADERS.index("span lengths")
    for row, design in zip(table, ranked):
        k1, k2 = design.span_lengths
        assert row[header] == f"{k1}, {k2}" and row[4] == len(design.sequence) == 8 + k1 + k2
        seq = design.sequence
        assert seq[:3] == "MKV" and seq[3 + k1:5 + k1] == "GF" and seq[5 + k1] in "KR" and seq[-1] == "W"
        assert not set("CW") & set(seq[:-1])
    settings = json.loads(download(files, "settings.json").read_text())
    trajectory = json.loads(download(files, "trajectory.json").read_text())
    assert settings["template"] == SPANS and settings["exclude"] == "CW" and settings["span_mode"] == "sample"
    assert settings["span_lengths"] == [d.span_lengths for d in sorted(ranked, key=lambda d: d.index)]
    assert len(settings["span_posterior"]) == 10 and trajectory["settings"]["span_lengths"] == settings["span_lengths"]
    assert "--omit CW" in settings["command"]


def test_the_settings_keep_the_template_as_written_and_the_exclusion_apart(cb, capsys):
    """The settings' template read MK[^CMW][^CMW]… beside --omit CMW: the exclusion baked in, twice."""
    fasta, *_rest, files, _r = final_of(cb, "MK__[^P]G[1-2]", seed=5, exclude="cmw")
    settings = json.loads(download(files, "settings.json").read_text())
    assert settings["template"] == "MK__[^P]G[1-2]" and settings["exclude"] == "CMW"
    assert sample_cli.main(shlex.split(settings["command"])[3:]) == 0
    assert designs(capsys.readouterr().out) == designs(fasta)


def test_the_settings_command_reproduces_a_span_run(cb, capsys):
    fasta, *_rest, files, _r = final_of(cb, SPANS, seed=12, exclude="C", span_lengths="map")
    settings = json.loads(download(files, "settings.json").read_text())
    argv = shlex.split(settings["command"])[3:]
    assert sample_cli.main(argv + ["--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["sequences"] == designs(fasta)
    assert cli["span_lengths"] == settings["span_lengths"] and cli["span_posterior"] == settings["span_posterior"]
    assert len({tuple(k) for k in cli["span_lengths"]}) == 1          # map: every design the same lengths


def test_stop_ends_the_span_length_choice_between_candidates(cb, monkeypatch):
    """A Stop pressed while the model weighs span lengths (hundreds of network calls for two wide
    spans) ends the run at the next candidate, not after the whole choice."""
    request = SimpleNamespace(session_hash="user")
    calls = []
    real = cb.model.model.forward

    def forward(x):
        calls.append(len(x))
        if len(calls) == 1:
            cb.stop(1, request)                          # pressed during the first candidate
        return real(x)

    monkeypatch.setattr(cb.model.model, "forward", forward)
    outputs = list(cb.generate("M[0-40]GVQG[0-40]", 2, 16, 0, 1.0, "off", stop_epoch=0, request=request))
    assert "Choosing span lengths" in outputs[0][2] and "Stopped" in outputs[-1][2]
    assert len(outputs) == 2 and len(calls) == 1, f"{len(calls)} network calls after the Stop"


def test_a_client_that_leaves_ends_the_span_length_choice_and_the_wait_shows_progress(cb, monkeypatch):
    """Gradio closes the generator of a client that has gone, at a yield: the choice, which runs in a
    thread while the status says how far it has got, then ends before its next candidate."""
    request = SimpleNamespace(session_hash="user")
    calls = []
    real = cb.model.model.forward

    def forward(x):
        calls.append(len(x))
        time.sleep(0.25)                                 # a slow candidate: the choice takes many seconds
        return real(x)

    monkeypatch.setattr(cb.model.model, "forward", forward)
    run = cb.generate("M[0-40]GVQG[0-40]", 2, 16, 0, 1.0, "off", stop_epoch=0, request=request)
    assert "Choosing span lengths…" in next(run)[2]
    assert re.search(r"\(\d+ of 82 candidate layouts scored\)", next(run)[2])     # a second later; 41 + 41 lengths
    run.close()                                          # the client has gone
    time.sleep(0.5)
    after_close = len(calls)
    time.sleep(1.0)
    assert len(calls) == after_close <= 8, f"{len(calls) - after_close} more network calls after the client left"


def test_a_template_without_spans_has_no_chart_and_dashes(cb):
    _f, _fr, status, _s, table, *_rest = final_of(cb, "MKV__GF")
    assert "span-posterior" not in status
    assert all(row[app.TABLE_HEADERS.index("span lengths")] == "–" for row in table)


def test_nearest_design_identity_compares_designs_of_one_layout_only(model):
    from sedd import studio
    spec = model.alphabet.parse_spec("MK[1-2]GW_", model.max_len)
    templates = [spec.expand((1,)), spec.expand((1,)), spec.expand((2,))]
    nearest = studio._nearest_by_layout(["MKAGWC", "MKAGWD", "MKAAGWC"], templates)
    assert nearest == [0.5, 0.5, None]          # 1 of 2 designed positions shared; the third has no peer


@pytest.mark.parametrize("kwargs, message", [
    ({"template": "MK[3-9G"}, "'[' at position 3 is never closed"),
    ({"template": "MK[C]G", "exclude": "C"}, "the bracket at position 3 allows only C"),
    ({"template": "MK_", "exclude": "J"}, "excluded residues: 'J' at position 1 is not a residue"),
    # 'Cys' read as C, Y and S barred two residues nobody meant to bar, without a word
    ({"template": "MK_", "exclude": "Cys"}, "'Cys' would read as C, Y, S; write C for Cys"),
    ({"template": "MK_", "span_lengths": "mean"}, "one of sample, map; got 'mean'"),
])
def test_bad_brackets_and_exclusions_are_refused_with_the_position(cb, kwargs, message):
    with pytest.raises(gr.Error) as e:
        list(cb.generate(**{"num_samples": 1, "steps": 16, "seed": 1, **kwargs}))
    assert message in e.value.message


@pytest.fixture(scope="module")
def client(model):
    demo, url = launch_app(model, {"off": None})
    yield Client(url, verbose=False)
    demo.close()


def test_the_api_takes_spans_exclusions_and_modes(client, model, tmp_path):
    params = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
              ["named_endpoints"]["/generate"]["parameters"]]
    assert params[6:8] == ["exclude", "span_lengths"]
    final = client.predict(template=SPANS, num_samples=3, steps=16, seed=4, exclude="C", span_lengths="map",
                           api_name="/generate")
    solo = final_of(app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path), SPANS,
                    num_samples=3, seed=4, exclude="C", span_lengths="map")
    assert final[0] == solo[0] and "span-posterior" in final[2]
    assert client.predict(template="MK[2]G", seed=4, api_name="/generate")[0].count(">design_") == 4
    with pytest.raises(Exception, match=r"bracket \[5-2\] at position 3"):
        client.predict(template="MK[5-2]G", api_name="/generate")
