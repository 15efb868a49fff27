"""The ``generate`` API endpoint through gradio_client, against the app served on a free local port."""
from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time

import pytest
import requests
from gradio_client import Client
from studio_helpers import download_kinds, launch_app, refused_inputs

import app

TEMPLATE = "MKV__GF_R____LLAGW__KDE"
SHORT_TEMPLATE = "MKV__GF_R"


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
    types = [p["python_type"]["type"] for p in info["/generate"]["parameters"][:4]]
    assert types == ["str", "int", "int", "int"]


def test_every_output_is_named_by_its_label(served):
    """The API (and MCP) description names each output by its component's label; an unlabelled one
    is listed as ``value_39``, which tells a caller nothing."""
    info = requests.get(f"{served}gradio_api/info", timeout=30).json()["named_endpoints"]
    labels = {endpoint: [r["label"] for r in info[endpoint]["returns"]] for endpoint in ("/generate", "/score")}
    assert labels["/generate"][:6] == ["FASTA", "Denoising", "Status", "Seed used", "Ranked designs", "Structure"]
    assert labels["/score"] == ["Scores"]
    assert not any(re.fullmatch(r"value_\d+", label or "") for names in labels.values() for label in names), labels


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
    ((TEMPLATE, 2, 16, -5), r"seed must be a whole number from 0 to 2147483647, or blank for a random seed; got -5"),
    (("A" * 200, 2, 16, 1), "template has 200 positions; the model's maximum is 128"),
])
def test_bad_request_is_an_api_error_that_says_what_is_allowed(client, args, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name="/generate")
    # the app keeps serving
    assert client.predict(TEMPLATE, 1, 16, 1, api_name="/generate")[0].startswith(">design_1")


# ---- the seed: the studio's own check, whatever the client sends -----------------------------------------

SEED_MESSAGE = "seed must be a whole number from 0 to 2147483647, or blank for a random seed; got"


@pytest.mark.parametrize("seed", ["1e3", 4.5, "-3", "seven", True, [4]])
def test_a_bad_seed_gets_the_studios_message(client, seed):
    with pytest.raises(Exception) as e:
        client.predict(TEMPLATE, 1, 16, seed, api_name="/generate")
    assert SEED_MESSAGE in str(e.value) and "upstream app has raised an exception" not in str(e.value)


@pytest.mark.parametrize("seed_json", ["NaN", "1e400", "-Infinity"])
def test_a_non_finite_seed_in_raw_json_gets_the_studios_message(served, seed_json):
    """gradio_client will not send NaN; a raw HTTP client will (Python's JSON reads 1e400 as inf).

    The request is refused before it is queued (422), with the message on the seed alone."""
    body = f'{{"data": ["{TEMPLATE}", 1, 16, {seed_json}, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0]}}'   # a raw call sends every input
    r = requests.post(f"{served}gradio_api/call/generate", data=body, headers={"Content-Type": "application/json"},
                      timeout=30)
    [(field, message)] = refused_inputs(r)
    assert field == "seed" and SEED_MESSAGE in message


@pytest.mark.parametrize("change, field, message", [
    ({0: ""}, "template", "template is empty"),
    ({2: 0}, "steps", "steps must be 16 to 1024; got 0"),
    ({6: "CZ"}, "exclude", "excluded residues: 'Z' at position 2 is not a residue"),
    ({8: "greedy"}, "sampler", "sampler must be one of tau-leaping, confidence, remask; got 'greedy'"),
])
def test_bad_input_is_refused_before_it_is_queued_with_the_reason_at_its_input(served, change, field, message):
    """The page shows a validator's reason under the input it names, until that input is edited."""
    data = [TEMPLATE, 1, 16, 0, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0]
    for i, value in change.items():
        data[i] = value
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(refused_field, reason)] = refused_inputs(r)
    assert refused_field == field and message in reason


def test_digits_are_that_seed_and_blank_is_a_new_random_seed(client):
    as_text = client.predict(TEMPLATE, 2, 16, " 4 ", api_name="/generate")
    assert as_text[0] == client.predict(TEMPLATE, 2, 16, 4, api_name="/generate")[0] and as_text[3] == 4
    blanks = [client.predict(TEMPLATE, 2, 16, blank, api_name="/generate")[3] for blank in ("", None, "")]
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in blanks) and len(set(blanks)) == 3


# ---- what the server accepts and logs ------------------------------------------------------------------

def test_uploads_are_refused(served):
    """The page has no file input: Gradio's upload route must not store anonymous files."""
    r = requests.post(f"{served}gradio_api/upload", files={"files": ("x.bin", b"0" * 100_000)}, timeout=30)
    assert r.status_code == 413, r.text[:200]


def test_a_refused_request_logs_one_line_and_no_traceback(client, caplog, capfd):
    with caplog.at_level(logging.WARNING, logger="sedd.studio"), pytest.raises(Exception, match="steps must be"):
        client.predict(TEMPLATE, 2, 0, 1, api_name="/generate")
    lines = [r.getMessage() for r in caplog.records if r.name == "sedd.studio"]
    assert lines == ["refused a generate request: steps must be 16 to 1024; got 0"]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("endpoint,inputs,noun", [
    ("/generate", lambda i: ("_" * 40, 1, 64, i), "runs"),
    # scores count against the same cap: 34 sent at once by one client used to fill the queue
    ("/score", lambda i: ("MKVLAGWKKSTAHHCDEGKVQGVFFR" * 3,), "requests"),
])
def test_one_session_cannot_fill_the_queue(model, endpoint, inputs, noun):
    """A client that sends many requests at once gets ``per_session`` places; other clients still get in."""
    demo, url = launch_app(model, {"off": None}, concurrency=1, max_queue=16, per_session=2)
    try:
        greedy = Client(url, verbose=False)
        jobs = [greedy.submit(*inputs(i), api_name=endpoint) for i in range(6)]
        outcomes = []
        for job in jobs:
            try:
                job.result()
                outcomes.append("ran")
            except Exception as e:                     # gradio_client's ValidationError
                assert (f"busy, not an input error: this session already has 2 {noun} waiting or running "
                        "(at most 2)") in str(e)
                outcomes.append("refused")
        assert outcomes.count("ran") >= 2 and outcomes.count("refused") >= 3, outcomes
        assert Client(url, verbose=False).predict(TEMPLATE, 1, 16, 0, api_name="/generate")[0].startswith(">design_1")
    finally:
        demo.close()


async def _mcp_agents_generate(url: str, agents: int) -> list:
    """One agent's call, then ``agents`` more, each in its own MCP session, calling ``generate`` at once
    (runs long enough to overlap). The first call makes Gradio's MCP server create its client: calls
    that race it may each get one of their own, which would hide the sharing."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def agent(seed: int):
        async with streamablehttp_client(f"{url}gradio_api/mcp/") as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("generate", {"template": "_" * 60, "num_samples": 2, "steps": 256,
                                                        "seed": seed})
    await agent(0)
    return await asyncio.gather(*(agent(seed) for seed in range(1, agents + 1)))


def test_mcp_agents_are_not_counted_as_one_session(model):
    """Gradio's MCP server sends every agent's calls through its one client, one session: the session
    cap counted all agents together, and at a cap of 1 refused two of three agents calling at once."""
    demo, url = launch_app(model, {"off": None}, concurrency=1, max_queue=16, per_session=1)
    try:
        results = asyncio.run(_mcp_agents_generate(url, 3))
    finally:
        demo.close()
    assert [r.isError for r in results] == [False] * 3, [r.content[0].text[:200] for r in results if r.isError]


async def _mcp_agent_gives_up(url: str, after_s: float, progress: bool) -> float:
    """An agent that calls ``generate`` for a long run (asking for progress notifications, or not) and
    stops waiting after ``after_s``, leaving the session; returns when it gave up (time.monotonic)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(f"{url}gradio_api/mcp/") as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()

        async def noted(*_):
            pass
        with pytest.raises(asyncio.TimeoutError):
            call = session.call_tool("generate", {"template": "_" * 120, "num_samples": 8, "steps": 1024, "seed": 1},
                                     progress_callback=noted if progress else None)
            await asyncio.wait_for(call, after_s)
        return time.monotonic()


@pytest.mark.parametrize("progress", [False, True], ids=["plain", "with progress"])
def test_a_run_whose_mcp_agent_gave_up_stops(model, monkeypatch, progress):
    """Gradio's MCP server never cancelled the run behind a tool call: an agent's 3-second timeout left
    the server drawing and scoring for 8 s more, holding a concurrency place
    (``app.cancel_runs_of_abandoned_mcp_calls``). Each network call is slowed so that the whole run
    takes far longer than the wait below on any machine."""
    calls, forward = [], model.model.forward

    def slowed(*args, **kwargs):
        calls.append(time.monotonic())
        time.sleep(0.02)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model.model, "forward", slowed)
    demo, url = launch_app(model, {"off": None})
    try:
        gave_up = asyncio.run(_mcp_agent_gives_up(url, 3.0, progress))
        time.sleep(5.0)
    finally:
        demo.close()
    assert calls and calls[0] < gave_up, "the run never started"
    assert calls[-1] < gave_up + 3.0, f"the run went on {calls[-1] - gave_up:.1f} s after its agent gave up"


def test_downloads_are_written_once(model, tmp_path, monkeypatch):
    """The run's files are written into Gradio's cache folder, which serves them without a copy."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))        # every temporary folder in tmp_path
    demo, url = launch_app(model, {"off": None})
    try:
        out = Client(url, verbose=False, download_files=False).predict(TEMPLATE, 2, 16, 3, api_name="/generate")
    finally:
        demo.close()
    assert download_kinds(f["path"] for f in out[7]) == ["designs.fasta", "settings.json", "trajectory.json"]
    assert len(list(tmp_path.rglob("trajectory_*.json"))) == 1


def test_the_final_output_holds_the_last_frame(served):
    """The README's final output is (fasta, frame_html, …): the frame was Gradio's "no change" marker,
    ``{'__type__': 'update'}``, through the API and in the MCP tool's text."""
    final = Client(served, verbose=False).predict(SHORT_TEMPLATE, 2, 16, 3, api_name="/generate")
    assert isinstance(final[1], str) and 'class="frame" data-step="16"' in final[1]
    assert final[1].count('class="frame-row"') == 2
