"""The studio's sampler choice: check, settings.json, the CLI command, remasked frames, the API."""
from __future__ import annotations

import itertools
import json
import types

import pytest
from gradio_client import Client
from studio_helpers import download, launch_app

import app
from sedd import sample as sample_cli
from sedd import studio
from sedd.sampler import STRATEGIES

TEMPLATE = "MKV__GF_R____LLAGW__KDE______________"


def fasta_sequences(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(">")]


@pytest.fixture
def cb(model, tmp_path):
    return app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)


@pytest.mark.parametrize("sampler", STRATEGIES)
def test_settings_record_the_sampler_and_the_cli_command_reproduces_the_run(cb, capsys, sampler):
    *_, final = cb.generate(TEMPLATE, 2, 16, 3, 1.0, "off", sampler=sampler, top_p=0.9)
    settings = json.loads(download(final[7], "settings.json").read_text())
    assert settings["sampler"] == sampler and settings["top_p"] == 0.9
    argv = settings["command"].split()[3:]                      # after "python -m sedd.sample"
    assert "--top-p" in argv and ("--sampler" in argv) == (sampler != "tau-leaping")
    assert sample_cli.main(argv) == 0
    assert fasta_sequences(capsys.readouterr().out) == fasta_sequences(final[0])


def test_defaults_are_todays_behaviour(cb):
    *_, default = cb.generate(TEMPLATE, 2, 16, 3, 1.0, "off")
    *_, explicit = cb.generate(TEMPLATE, 2, 16, 3, 1.0, "off", sampler="tau-leaping", top_p=1.0)
    assert default[0] == explicit[0]
    settings = json.loads(download(default[7], "settings.json").read_text())
    assert settings["sampler"] == "tau-leaping" and settings["top_p"] == 1.0
    assert "--sampler" not in settings["command"] and "--top-p" not in settings["command"]


def test_remasked_positions_show_as_masked_again(model):
    template, settings = studio.check_request(model, "_" * 40, 4, 32, 1.0, 0, sampler="remask")
    run = studio.Run(model, template, settings)
    views = list(run.denoise(min_interval=0.0))
    remasked_seen = 0
    for prev, cur in itertools.pairwise(views):
        for p_seq, c_seq, c_states in zip(prev.sequences, cur.sequences, cur.states):
            for i, (a, b) in enumerate(zip(p_seq, c_seq)):
                if a != "_" and b == "_":
                    remasked_seen += 1
                    assert c_states[i] == studio.render.MASKED
    assert remasked_seen > 0, "the remask sampler revised some residue in this run"
    assert "_" not in "".join(views[-1].sequences)


def test_a_shown_frame_marks_new_everything_revealed_since_the_last_shown_frame(model, monkeypatch):
    """Frames are throttled (``min_interval``); the page's "just revealed" colour must still cover the
    residues revealed in the skipped frames, and only since the previous shown frame: with a clock that
    skips frames deterministically, a position is NEW in a shown frame exactly when it was masked in the
    previous shown frame and is not now; so each designed position is NEW in exactly one shown frame and a
    fixed template position never is."""
    template, settings = studio.check_request(model, TEMPLATE, 3, 32, 1.0, 5)
    run = studio.Run(model, template, settings)
    ticks = itertools.count()          # one second per reading: a frame is shown at most every third reading
    monkeypatch.setattr(studio, "time", types.SimpleNamespace(monotonic=lambda: float(next(ticks))))
    views = list(run.denoise(min_interval=3.0))
    assert len(run.trajectory) > len(views) > 3, "some frames in which residues were revealed were skipped"
    assert not any(studio.render.NEW in state for state in views[0].states)
    for prev, cur in itertools.pairwise(views):
        for p_state, c_state in zip(prev.states, cur.states):
            assert [c == studio.render.NEW for c in c_state] == \
                   [p == studio.render.MASKED and c != studio.render.MASKED for p, c in zip(p_state, c_state)]
    for row, tpl in enumerate(run.plan.templates):
        times_new = [sum(view.states[row][i] == studio.render.NEW for view in views) for i in range(len(tpl))]
        assert times_new == [1 if d else 0 for d in tpl.designed]


@pytest.mark.parametrize("kwargs, message", [
    ({"sampler": "greedy"}, "sampler must be one of tau-leaping, confidence, remask; got 'greedy'"),
    ({"top_p": 0}, r"top-p must be a number from 0.05 to 1 \(1 = off\); got 0"),
    ({"top_p": "most"}, "top-p must be a number"),
])
def test_bad_sampler_settings_say_what_is_allowed(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        studio.check_request(model, TEMPLATE, 2, 16, 1.0, 1, **kwargs)


def test_api_generate_takes_sampler_and_top_p_by_name(model, tmp_path):
    demo, url = launch_app(model, {"off": None})
    try:
        client = Client(url, verbose=False)
        params = [p["parameter_name"] for p in
                  client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]]
        assert params[-4:] == ["sampler", "top_p", "stop_epoch", "particles"]
        fasta = client.predict(template=TEMPLATE, num_samples=2, steps=16, seed=4, sampler="confidence", top_p=0.8,
                               api_name="/generate")[0]
        cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)
        *_, solo = cb.generate(TEMPLATE, 2, 16, 4, 1.0, "off", sampler="confidence", top_p=0.8)
        assert fasta == solo[0]
        with pytest.raises(Exception, match="sampler must be one of"):
            client.predict(template=TEMPLATE, seed=1, sampler="greedy", api_name="/generate")
    finally:
        demo.close()
