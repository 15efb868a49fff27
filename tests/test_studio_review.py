"""What a newcomer ran into using the studio: each test asserts the behaviour they should see."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
import requests
from gradio_client import Client
from studio_helpers import refused_inputs

import app
from sedd import studio

TEMPLATE = "MKV__GF_R"
# every input of the raw ``generate`` call, in order (template … top_p, stop_epoch)
DATA = [TEMPLATE, 1, 16, 0, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0]


@pytest.fixture
def callbacks(model, tmp_path):
    return app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)


@pytest.mark.parametrize("index, field, message", [
    (5, "fold", "folding backend must be one of ESMFold (local), ESM Atlas API, off; got 'ESMFold'"),
    (7, "span_lengths", "span lengths must be chosen by one of sample, map; got 'longest'"),
])
def test_an_unknown_choice_is_refused_with_the_choices_named(served, index, field, message):
    """A misspelt backend or span mode was a bare "400 Bad Request" naming nothing."""
    data = list(DATA)
    data[index] = message.rsplit("'", 2)[1]
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(refused_field, reason)] = refused_inputs(r)
    assert refused_field == field and reason == message


def test_a_negative_stop_count_from_the_api_still_designs(served):
    """``stop_epoch`` is the page's count of Stop presses: below 0 it ended the run before it began,
    and the client crashed on the "Stopped" frame."""
    fasta = Client(served, verbose=False).predict(TEMPLATE, 1, 16, 3, stop_epoch=-5, api_name="/generate")[0]
    assert fasta.startswith(">design_1\nMKV") and "_" not in fasta.splitlines()[1]


def test_a_template_with_nothing_to_design_says_so(callbacks):
    """A full sequence pasted as the template came back unchanged as "4 designs" with no word why."""
    *_, final = callbacks.generate(">P1\nmkvlgf", num_samples=2, steps=16, seed=1)
    assert final[0] == ">design_1\nMKVLGF\n>design_2\nMKVLGF\n"
    assert "Note: the template has no position to design" in final[2]
    assert "Score tab" in final[2]
    *_, designed = callbacks.generate("MKV_GF", num_samples=2, steps=16, seed=1)
    assert "Note:" not in designed[2]
    *_, empty_span = callbacks.generate("MKV[0-0]GF", num_samples=2, steps=16, seed=1)     # a span of no positions
    assert "Note: the template has no position to design" in empty_span[2]
    *_, short_span = callbacks.generate("MKV[0-2]GF", num_samples=2, steps=16, seed=1)
    assert "no position to design" not in short_span[2]


@pytest.mark.parametrize("check", [
    lambda model, text: studio.check_request(model, text, 1, 16, 1.0, 1),
    lambda model, text: studio.check_score_request(model, text),
])
def test_a_huge_paste_is_refused_before_it_is_parsed(model, check, monkeypatch):
    """A megabyte of text took seconds to parse inside the validator, which runs on the server's event
    loop (every page froze meanwhile) and an API client timed out instead of reading the reason."""
    monkeypatch.setattr(type(model.alphabet), "parse_spec", lambda *_, **__: pytest.fail("the text was parsed"))
    with pytest.raises(ValueError, match="is 1,000,003 characters long; at most 100,000 are read"):
        check(model, ">x\n" + "A" * 1_000_000)


def test_score_this_design_before_any_run_logs_no_traceback(callbacks):
    """The toast says what to do; the server log is not a place for a user's early click."""
    with pytest.raises(gr.Error, match="Generate designs first") as e:
        callbacks.send_to_score([], 0)
    assert e.value.print_exception is False


def test_the_final_output_holds_the_last_frame(served):
    """The README's final output is (fasta, frame_html, …): the frame was Gradio's "no change" marker,
    ``{'__type__': 'update'}``, through the API and in the MCP tool's text."""
    final = Client(served, verbose=False).predict(TEMPLATE, 2, 16, 3, api_name="/generate")
    assert isinstance(final[1], str) and 'class="frame" data-step="16"' in final[1]
    assert final[1].count('class="frame-row"') == 2


def test_settings_name_the_checkpoint_as_the_user_can_use_it(model, monkeypatch, capsys, tmp_path):
    """settings.json's command names the checkpoint relative to the working directory (a Space's
    /home/user/app/... is nobody else's path), and it still draws the same designs from there."""
    from sedd import sample
    folder = Path(model.source).resolve()
    monkeypatch.chdir(folder.parent)
    _, settings = studio.check_request(model, TEMPLATE, 2, 16, 1.0, 7, "off")
    assert settings.checkpoint == folder.name and f"--checkpoint {folder.name} " in settings.command()
    assert sample.main(settings.command().split()[3:]) == 0
    monkeypatch.chdir(tmp_path)                                 # elsewhere: the path as loaded
    assert studio.check_request(model, TEMPLATE, 2, 16, 1.0, 7, "off")[1].checkpoint == model.source
