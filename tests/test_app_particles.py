"""The studio's particles per design (``sedd.sampler``'s sequential Monte Carlo): the check, the API,
the status line, settings.json and the CLI command."""
from __future__ import annotations

import json
import math
import shlex

import pytest
import requests
from studio_helpers import download, fasta_sequences, raw_call, refused_inputs

import app
from sedd import sample as sample_cli
from sedd import studio

# three restricted positions ([KR], [^C], [DE]) among free ones
CONSTRAINED = "MKV[KR]__GF[^C]_R[DE]___LLAGW____KDE"
FREE = "MKV__GF_R____LLAGW__KDE"
ALLOWED = {3: "KR", 8: "ADEFGHIKLMNPQRSTVWY", 11: "DE"}        # position in the design → its set


@pytest.fixture
def cb(model, tmp_path):
    return app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)


def downloaded(final, name: str) -> dict:
    return json.loads(download(final[7], name).read_text())


def test_particles_is_the_last_generate_parameter_and_defaults_to_one(client):
    """Appended after ``stop_epoch``: a caller that sends every earlier parameter by position keeps its meaning."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
    last = params[-1]
    assert [p["parameter_name"] for p in params[-2:]] == ["stop_epoch", "particles"]
    assert last["parameter_has_default"] and last["parameter_default"] == 1 and last["python_type"]["type"] == "int"


def test_a_call_without_particles_is_todays_run(client, cb):
    four = client.predict(CONSTRAINED, 2, 16, 5, api_name="/generate")[0]
    every_old_parameter = client.predict(CONSTRAINED, 2, 16, 5, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0,
                                         api_name="/generate")[0]
    one = client.predict(CONSTRAINED, 2, 16, 5, particles=1, api_name="/generate")[0]
    many = client.predict(CONSTRAINED, 2, 16, 5, particles=4, api_name="/generate")[0]
    assert four == every_old_parameter == one
    assert many != one, "particles reach the sampler"
    *_, direct = cb.generate(CONSTRAINED, 2, 16, 5)                      # a Python caller of the callback
    assert direct[0] == one and "particle" not in direct[2]
    assert "particles" not in downloaded(direct, "settings.json")["command"]


def test_a_raw_call_written_before_particles_still_runs(served, client):
    """A raw call sends every input by position; one with the inputs before ``particles`` gets its default
    (Gradio itself refuses a call with fewer values than inputs)."""
    old = raw_call(served, [CONSTRAINED, 2, 16, 5, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0])
    assert old[0] == client.predict(CONSTRAINED, 2, 16, 5, particles=1, api_name="/generate")[0]
    new = raw_call(served, [CONSTRAINED, 2, 16, 5, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0, 4])
    assert new[0] == client.predict(CONSTRAINED, 2, 16, 5, particles=4, api_name="/generate")[0] != old[0]


def test_a_raw_call_with_only_the_contracts_four_parameters_runs(served, client):
    """DESIGN's contract names template, num_samples, steps and seed, "others allowed with defaults";
    a raw call with just those four got Gradio's "didn't receive enough input values (needed: 12,
    got: 4)" and a list of Python object reprs."""
    assert raw_call(served, [CONSTRAINED, 2, 16, 5])[0] == client.predict(CONSTRAINED, 2, 16, 5, api_name="/generate")[0]
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": [CONSTRAINED, 2, 16]}, timeout=30)
    assert r.status_code == 400 and "event_id" not in r.json()
    assert r.json()["detail"] == "this call sends 3 input values; send at least template, num_samples, steps, seed, in that order"
    # score's one value left out: Gradio's words about its event handler and a list of object reprs
    r = requests.post(f"{served}gradio_api/call/score", json={"data": []}, timeout=30)
    assert r.status_code == 400 and r.json()["detail"] == "this call sends 0 input values; send sequence"


def test_particles_condition_the_allowed_sets_at_k_times_the_network_rows(client, cb, capsys):
    steps, k = 32, 4
    fasta = client.predict(CONSTRAINED, 3, steps, 7, particles=k, api_name="/generate")[0]
    *_, single = cb.generate(CONSTRAINED, 3, steps, 7, particles=1)
    *_, final = cb.generate(CONSTRAINED, 3, steps, 7, particles=k)
    assert final[0] == fasta
    designs = fasta_sequences(fasta)
    assert len(designs) == 3
    for seq in designs:
        assert len(seq) == 27 and "_" not in seq and seq[:3] == "MKV" and seq[15:20] == "LLAGW" and seq.endswith("KDE")
        assert all(seq[i] in allowed for i, allowed in ALLOWED.items()), seq
    # each design ran k particles: about k times the network rows (each evaluated when its tokens changed)
    nfe_one = downloaded(single, "trajectory.json")["frames"][-1]["nfe"]
    trajectory = downloaded(final, "trajectory.json")
    nfe = trajectory["frames"][-1]["nfe"]
    assert 3 * nfe_one <= nfe <= k * 3 * steps and nfe <= 5 * nfe_one, (nfe, nfe_one)
    assert f"network evaluations {nfe} " in final[1]
    # the estimate, per design, in the trajectory; the status gives its mean as a probability
    log_p = trajectory["frames"][-1]["constraint_log_prob"]
    assert len(log_p) == 3 and all(v < 0 for v in log_p) and len(trajectory["frames"][-1]["ess"]) == 3
    mean = sum(math.exp(v) for v in log_p) / 3
    assert (f"{k} particles per design conditioned the designs on the allowed sets; the model alone meets them "
            f"with probability ≈ {studio.probability_text(mean)} (estimate, mean over designs).") in final[2]
    assert "particles" not in single[2] and "constraint_log_prob" not in downloaded(single, "trajectory.json")["frames"][-1]
    # settings.json records the particles, and its command draws the same designs
    settings = downloaded(final, "settings.json")
    argv = shlex.split(settings["command"])[3:]                 # after "python -m sedd.sample"
    assert settings["particles"] == k and argv[argv.index("--particles") + 1] == str(k)
    assert sample_cli.main(argv) == 0
    assert fasta_sequences(capsys.readouterr().out) == designs


def test_excluded_residues_are_a_constraint_too(cb):
    *_, final = cb.generate(FREE, 2, 16, 3, exclude="CW", particles=3)
    designed = [i for i, c in enumerate(FREE) if c == "_"]
    assert all(seq[i] not in "CW" for seq in fasta_sequences(final[0]) for i in designed)
    assert "3 particles per design conditioned the designs on the allowed sets" in final[2]


def test_particles_without_a_restricted_position_say_they_had_no_effect(cb):
    *_, one = cb.generate(FREE, 2, 16, 3, particles=1)
    *_, many = cb.generate(FREE, 2, 16, 3, particles=8)
    assert many[0] == one[0]
    assert "Particles had no effect" in many[2] and "one particle ran per design" in many[2]
    assert "Particles" not in one[2]
    assert downloaded(many, "trajectory.json")["frames"][-1]["nfe"] == downloaded(one, "trajectory.json")["frames"][-1]["nfe"]


SAMPLER_MESSAGE = "particles per design above 1 (exact allowed sets) need the tau-leaping sampler and top-p 1"


@pytest.mark.parametrize("kwargs, got", [
    ({"sampler": "remask"}, "got sampler 'remask', top-p 1"),
    ({"sampler": "confidence"}, "got sampler 'confidence', top-p 1"),
    ({"top_p": 0.9}, "got sampler 'tau-leaping', top-p 0.9"),
])
def test_particles_need_tau_leaping_without_nucleus_filtering(client, cb, kwargs, got):
    with pytest.raises(Exception) as e:
        client.predict(CONSTRAINED, 2, 16, 1, particles=4, api_name="/generate", **kwargs)
    assert SAMPLER_MESSAGE in str(e.value) and got in str(e.value)
    with pytest.raises(app.gr.Error, match="need the tau-leaping sampler") as raised:      # a direct call
        list(cb.generate(CONSTRAINED, 2, 16, 1, particles=4, **kwargs))
    assert raised.value.print_exception is False
    with pytest.raises(studio.RequestError) as refused:
        studio.check_request(cb.model, CONSTRAINED, 2, 16, 1.0, 1, particles=4, **kwargs)
    assert refused.value.field == "particles"
    *_, final = cb.generate(CONSTRAINED, 1, 16, 1, particles=1, **kwargs)        # one particle: any sampler
    assert len(fasta_sequences(final[0])) == 1


@pytest.mark.parametrize("particles, message", [
    (0, "particles per design must be 1 to 64; got 0"),
    (65, "particles per design must be 1 to 64; got 65"),
    (2.5, "particles per design must be a whole number, 1 to 64; got 2.5"),
    ("many", "particles per design must be a whole number, 1 to 64; got 'many'"),
])
def test_out_of_range_particles_say_what_is_allowed(client, particles, message):
    with pytest.raises(Exception) as e:
        client.predict(CONSTRAINED, 1, 16, 1, particles=particles, api_name="/generate")
    assert message in str(e.value) and "upstream app has raised an exception" not in str(e.value)


def test_a_bad_particle_count_is_refused_before_it_is_queued_at_its_input(served):
    """The page shows the reason under the particles slider (the raw call sends every input)."""
    data = [CONSTRAINED, 1, 16, 0, 1.0, "off", "", "sample", "remask", 1.0, 0, 4]
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(field, reason)] = refused_inputs(r)
    assert field == "particles" and SAMPLER_MESSAGE in reason
    data[8], data[-1] = "tau-leaping", 1000
    [(field, reason)] = refused_inputs(requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30))
    assert field == "particles" and reason == "particles per design must be 1 to 64; got 1000"


def test_the_particle_limit_is_the_studios(model, tmp_path):
    small = app.StudioCallbacks(model, {"off": None}, studio.Limits(max_particles=2), min_interval=0.0,
                                output_root=tmp_path)
    with pytest.raises(app.gr.Error, match="particles per design must be 1 to 2; got 3"):
        list(small.generate(CONSTRAINED, 1, 16, 1, particles=3))


@pytest.mark.parametrize("p, text", [(1.0, "100 %"), (0.5, "50 %"), (0.031, "3.1 %"), (0.0042, "0.42 %"),
                                     (2.1e-5, "2.1e-05")])
def test_probabilities_read_simply(p, text):
    assert studio.probability_text(p) == text
