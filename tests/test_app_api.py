"""The ``generate`` API endpoint through gradio_client, against the app served on a free local port."""
from __future__ import annotations

import pytest
from gradio_client import Client

import app
from studio_helpers import launch_app

TEMPLATE = "MKV__GF_R____LLAGW__KDE"


@pytest.fixture(scope="module")
def served(model):
    demo, url = launch_app(model, {"off": None})
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(served):
    return Client(served, verbose=False)


def solo_fasta(model, tmp_path, **kwargs) -> str:
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)
    *_, final = cb.generate(**kwargs)
    return final[0]


def test_generate_is_documented_with_the_contract_parameters(client):
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(info) == {"/generate", "/score"}, "only generate and score are part of the API"
    params = [p["parameter_name"] for p in info["/generate"]["parameters"]]
    assert params[:4] == ["template", "num_samples", "steps", "seed"]
    assert all(p["parameter_has_default"] for p in info["/generate"]["parameters"][1:])


def test_generate_streams_and_ends_with_the_fasta(client, model, tmp_path):
    job = client.submit(TEMPLATE, 3, 16, 42, api_name="/generate")
    final = job.result()
    outputs = job.outputs()
    assert len(outputs) >= 3, "intermediate frames are streamed"
    assert "(step " in outputs[1][0] and "_" in outputs[1][0]
    fasta = final[0]
    sequences = fasta.splitlines()[1::2]
    assert fasta.count(">design_") == 3 and len(sequences) == 3 and not any("_" in s for s in sequences)
    assert fasta == solo_fasta(model, tmp_path, template=TEMPLATE, num_samples=3, steps=16, seed=42)
    assert final[3] == 42


def test_generate_defaults_and_named_arguments(client):
    fasta = client.predict(template="_" * 12, seed=1, api_name="/generate")[0]
    assert fasta.count(">design_") == 4      # the page's default number of designs


@pytest.mark.parametrize("args, message", [
    ((TEMPLATE, 2, 0, 1), "steps must be 16 to 1024; got 0"),
    ((TEMPLATE, 10**6, 16, 1), "number of designs must be 1 to 8; got 1000000"),
    ((TEMPLATE, 2, 16, -5), r"seed must be 0 to 2147483647 \(or blank for a random seed\); got -5"),
    (("A" * 200, 2, 16, 1), "template has 200 positions; the model's maximum is 128"),
])
def test_bad_request_is_an_api_error_that_says_what_is_allowed(client, args, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name="/generate")
    # the app keeps serving
    assert client.predict(TEMPLATE, 1, 16, 1, api_name="/generate")[0].startswith(">design_1")
