"""Reliability of the studio: bad input, caps and the queue, concurrent users, failing folds, no leaks."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest
import requests
from gradio_client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from studio_helpers import (
    download,
    download_kinds,
    fasta_sequences,
    launch_app,
    refused_inputs,
    tiny_checkpoint_dir,
    wait_for_stable,
)

import app
from sedd import render
from sedd.fold import ESMAtlasBackend, ESMFoldBackend, FoldError

ROOT = Path(__file__).resolve().parent.parent
OK = "MKV__GF_R____LLAGW__KDE"


@pytest.fixture(scope="module")
def cb(model, tmp_path_factory):
    return app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path_factory.mktemp("out"))


def final_of(cb, template, num_samples=2, steps=16, seed=0, temperature=1.0, fold="off"):
    *_, final = cb.generate(template, num_samples, steps, seed, temperature, fold)
    return final


# ---- bad input: a specific message, in the page and as the API error --------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(template=""), "template is empty: type residues and designed positions (_ ? # X), 1 to 128 in all"),
    (dict(template="  \n\t  "), "template is empty"),
    (dict(template="A" * 129), "template has 129 positions; the model's maximum is 128"),
    (dict(template="MKV!L__"), "invalid character '!' at position 4; allowed: residues ACDEFGHIKLMNPQRSTVWY"),
    (dict(template=">only a header"), "FASTA header line but no sequence"),
    (dict(template=OK, steps=0), "steps must be 16 to 1024; got 0"),
    (dict(template=OK, steps=5000), "steps must be 16 to 1024; got 5000"),
    (dict(template=OK, num_samples=10**6), "number of designs must be 1 to 8; got 1000000"),
    (dict(template=OK, num_samples=0), "number of designs must be 1 to 8; got 0"),
    (dict(template=OK, num_samples=2.5), "number of designs must be a whole number, 1 to 8; got 2.5"),
    (dict(template=OK, seed=-1), "seed must be a whole number from 0 to 2147483647, or blank for a random seed; got -1"),
    (dict(template=OK, seed=10**30), "seed must be a whole number from 0 to 2147483647, or blank for a random seed; got 1" + "0" * 30),
    (dict(template=OK, seed="abc"), "seed must be a whole number from 0 to 2147483647, or blank for a random seed; got 'abc'"),
    (dict(template="MKА__"), "invalid character 'А' (U+0410, CYRILLIC CAPITAL LETTER A) at position 3"),
    (dict(template=OK, temperature=0), "temperature must be a number from 0.1 to 2.0; got 0.0"),
    (dict(template=OK, fold="AlphaFold"), "folding backend must be one of ESMFold (local), ESM Atlas API, off"),
])
def test_bad_input_gets_a_specific_message(cb, kwargs, message):
    with pytest.raises(gr.Error) as e:
        final_of(cb, **kwargs)
    assert message.replace("<", "&lt;") in e.value.message


@pytest.mark.parametrize("template, expected", [
    ("mkv__gf", "MKV??GF"),                                        # lowercase
    (">sp|P07311|ACYP1 test\nMKV__GF", "MKV??GF"),                 # a FASTA header
    ("        1 mkv__gfrkh tq\n       11 aegk*", "MKV??GFRKHTQAEGK"),   # GenBank style
    ("____", "????"),                                              # all masks
    ("MKVLAG", "MKVLAG"),                                          # no masks: unchanged
])
def test_accepted_inputs(cb, template, expected):
    for seq in fasta_sequences(final_of(cb, template)[0]):
        assert len(seq) == len(expected) and all(e in ("?", s) for s, e in zip(seq, expected))


def test_multi_fasta_uses_the_first_record_and_says_so(cb):
    final = final_of(cb, ">a\nMKV__\n>b\nGGGGGGGG\n>c\nAA")
    assert all(len(s) == 5 and s.startswith("MKV") for s in fasta_sequences(final[0]))
    assert "the input holds 3 FASTA records; using the first one only" in final[2]


@given(text=st.one_of(st.text(max_size=160),
                      st.text(alphabet="ACDEFGHIKLMNPQRSTVWYacdwy_?#Xx \n\t>*0123456789<&|-.", max_size=160)))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_gives_designs_or_a_clear_error(cb, model, text):
    try:
        parsed = model.alphabet.parse_template(text, model.max_len)
    except ValueError as e:
        with pytest.raises(gr.Error) as err:
            final_of(cb, text, num_samples=1)
        assert err.value.message == render.error_text(str(e))
        return
    [seq] = fasta_sequences(final_of(cb, text, num_samples=1)[0])
    assert len(seq) == len(parsed)
    assert all(d or model.alphabet.encode(c)[0] == tok for c, tok, d in zip(seq, parsed.tokens, parsed.designed))


# ---- limits: caps, the queue, concurrency --------------------------------------------------------------

def test_queue_and_concurrency_limits_are_set(model):
    cb = app.StudioCallbacks(model, {"off": None})
    demo = app.build_demo(cb, concurrency=3, max_queue=7)
    [generate] = [d for d in demo.fns.values() if d.api_name == "generate"]
    assert generate.concurrency_limit == 3
    # Gradio's bound is a backstop above the studio's own refusal, which says what to do (below)
    assert demo._queue.max_size == 14


def test_a_full_queue_refuses_and_the_app_recovers(model):
    demo, url = launch_app(model, {"off": None}, concurrency=1, max_queue=1)
    try:
        client = Client(url, verbose=False)
        jobs = [client.submit("_" * 64, 4, 512, i, api_name="/generate") for i in range(5)]
        errors = []
        for job in jobs:
            try:
                job.result()
            except Exception as e:          # gradio_client raises a plain Exception subclass
                errors.append(str(e))
        assert errors and all("queue is full" in e.lower() for e in errors), errors
        assert 1 <= len(jobs) - len(errors) <= 2        # one running and one waiting at most, even in a burst
        assert fasta_sequences(client.predict(OK, 1, 16, 0, api_name="/generate")[0])
    finally:
        demo.close()


# ---- load: concurrent users, no cross-talk ------------------------------------------------------------

def test_eight_concurrent_requests_equal_their_solo_runs(model, cb):
    seeds = list(range(100, 108))
    template = "MKV____GF_R" + "_" * 40
    solo = {s: final_of(cb, template, 3, 64, s)[0] for s in seeds}
    demo, url = launch_app(model, {"off": None}, concurrency=4)
    try:
        clients = [Client(url, verbose=False) for _ in seeds]
        with ThreadPoolExecutor(len(seeds)) as pool:
            results = list(pool.map(lambda cs: cs[0].predict(template, 3, 64, cs[1], api_name="/generate")[0],
                                    zip(clients, seeds)))
    finally:
        demo.close()
    assert len(set(results)) == len(seeds)
    assert results == [solo[s] for s in seeds]


# ---- failing folds: which and why, designs still returned, next request works ---------------------------

class BrokenBackend:
    def __init__(self, error: FoldError):
        self.error, self.calls = error, 0

    def fold(self, sequences, check=None):
        self.calls += 1
        raise self.error


class NoNetwork:
    def post(self, url, data, timeout):
        raise requests.exceptions.ConnectionError("Name or service not known")


@pytest.mark.parametrize("name, backend, words", [
    ("ESMFold (local)", ESMFoldBackend("/nonexistent/esmfold_v1", device="cpu"),
     "ESMFold (local): the weights of '/nonexistent/esmfold_v1' are not available"),
    ("ESM Atlas API", ESMAtlasBackend(session=NoNetwork()), "ESM Atlas API: the service cannot be reached"),
    ("ESMFold (local)", BrokenBackend(FoldError("ESMFold (local): the GPU ran out of memory folding 23 residues.",
                                                "out_of_memory")), "the GPU ran out of memory"),
    ("ESMFold (local)", BrokenBackend(FoldError("ESMFold (local) folds 1 to 10 residues; this design has 23.",
                                                "too_long")), "folds 1 to 10 residues; this design has 23"),
])
def test_failing_folds_say_which_and_why_and_designs_still_come(model, tmp_path, name, backend, words):
    cb = app.StudioCallbacks(model, {name: backend, "off": None}, min_interval=0.0, output_root=tmp_path)
    fasta, _f, status, _s, table, structure, plot, files, _r = final_of(cb, OK, 3, fold=name)
    assert len(fasta_sequences(fasta)) == 3
    assert "Folding failed" in status and words.replace("'", "&#x27;") in status
    assert "fold later" not in status and "Use ESMFold" not in status     # one piece of advice: the page's
    assert "No structure for" in structure and plot is None
    assert [row[6] for row in table] == ["failed"] * 3
    assert "designs.fasta" in download_kinds(files)
    assert len(fasta_sequences(final_of(cb, OK, 2, fold="off")[0])) == 2      # the next request works


def test_a_request_wide_failure_is_not_retried_for_every_design(model, tmp_path):
    broken = BrokenBackend(FoldError("no weights", "no_weights"))
    cb = app.StudioCallbacks(model, {"ESMFold (local)": broken}, min_interval=0.0, output_root=tmp_path)
    status = final_of(cb, OK, 4, fold="ESMFold (local)")[2]
    assert broken.calls == 1
    assert "no weights Choose another folding backend, or off." in status     # the page has others to offer


def test_a_failing_fold_through_the_api_still_returns_the_designs(model):
    demo, url = launch_app(model, {"ESM Atlas API": ESMAtlasBackend(session=NoNetwork()), "off": None})
    try:
        client = Client(url, verbose=False)
        out = client.predict(OK, 2, 16, 5, 1.0, "ESM Atlas API", api_name="/generate")
        assert len(fasta_sequences(out[0])) == 2 and "cannot be reached" in out[2]
        assert len(fasta_sequences(client.predict(OK, 1, 16, 5, api_name="/generate")[0])) == 1
    finally:
        demo.close()


# ---- no leaks: only our own files are served, user text is escaped ------------------------------------------

def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def test_serves_no_file_outside_its_output_and_escapes_user_text(model, tmp_path):
    demo, url = launch_app(model, {"off": None})
    try:
        assert demo.allowed_paths == []
        secret = tmp_path / "secret.txt"
        secret.write_text("do not serve")
        for path in ("/etc/passwd", ROOT / "app.py", Path(model.source) / "model.safetensors", secret):
            assert _status(f"{url}gradio_api/file={path}") in (403, 404), path
        if render.LOCAL_3DMOL.is_file():      # the one static file the page needs
            assert _status(f"{url}gradio_api/file={render.LOCAL_3DMOL}") == 200
            assert _status(f"{url}gradio_api/file={render.LOCAL_3DMOL.with_name('3Dmol.js')}") in (403, 404)
        client = Client(url, verbose=False)
        out = client.predict(">x <script>alert(1)</script>\nMKV__", 1, 16, 0, api_name="/generate")
        files = out[7]
        assert download(files, "designs.fasta").read_text().startswith(">design_1")     # our own output is served
        assert all("<script" not in str(part) for part in out[:3])
        with pytest.raises(Exception) as e:
            client.predict("<script>alert(1)</script>MKV__", 1, 16, 0, api_name="/generate")
        # refused before it is queued: the message is plain text (the page shows it as text, test_browser.py)
        assert "invalid character '<' at position 1" in str(e.value) and "<script" not in str(e.value)
    finally:
        demo.close()


# ---- Stop: Gradio's cancel ends the sampler itself ------------------------------------------------------

def test_cancel_stops_the_network_calls(model):
    calls = []
    real_forward = model.model.forward
    model.model.forward = lambda x: calls.append(len(x)) or real_forward(x)
    demo, url = launch_app(model, {"off": None})
    try:
        job = Client(url, verbose=False).submit("_" * 120, 4, 1024, 1, api_name="/generate")
        deadline = time.monotonic() + 60
        while len(job.outputs()) < 3:
            assert time.monotonic() < deadline, "no frames streamed"
            time.sleep(0.05)
        job.cancel()
        stopped_at = wait_for_stable(lambda: len(calls))
        # a full run calls the network once per step in which something changed: hundreds of times
        assert 0 < stopped_at < 200, f"{stopped_at} network calls: the cancel did not end the sampling"
        assert wait_for_stable(lambda: len(calls), settle_s=1.0) == stopped_at
    finally:
        demo.close()
        del model.model.forward


# ---- downloads: bounded, and gone when the server stops ------------------------------------------------

def test_downloads_are_capped_in_size(model, tmp_path):
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path / "out", max_output_bytes=1)
    finals = [final_of(cb, OK, seed=seed) for seed in range(3)]
    [kept] = list((tmp_path / "out").iterdir())                   # over the cap: only the newest run stays
    assert all(Path(f).parent == kept and Path(f).is_file() for f in finals[-1][7])


def test_a_new_studio_removes_the_downloads_of_dead_ones(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    orphan = tmp_path / f"sedd-studio-{dead.stdout.strip()}-abc"           # a killed studio's folder
    alive = tmp_path / f"sedd-studio-{os.getpid()}-def"                    # a running one's
    for folder in (orphan, alive):
        (folder / "run").mkdir(parents=True)
    cb = app.StudioCallbacks(model, {"off": None})
    assert not orphan.exists() and alive.exists() and cb.output_root.parent == tmp_path
    cb.close()
    assert not cb.output_root.exists()


@pytest.mark.slow
def test_python_app_py_removes_its_downloads_at_exit(tmp_path):
    ckpt = tiny_checkpoint_dir(tmp_path / "ckpt")
    proc, url = app.spawn(["--checkpoint", str(ckpt)], log=tmp_path / "app.log",
                          env={"GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "OMP_NUM_THREADS": "1"})
    try:
        Client(url, verbose=False, download_files=False).predict(OK, 1, 16, 0, api_name="/generate")
        [outputs] = list((tmp_path / "gradio").glob("sedd-studio-*"))
        assert list(outputs.rglob("designs_seed0_*.fasta"))
    finally:
        proc.terminate()                  # what stopping a Space or a service does, here twice (an impatient one)
        time.sleep(0.05)
        proc.terminate()
        proc.wait(timeout=60)
    log = (tmp_path / "app.log").read_text()
    assert not list((tmp_path / "gradio").glob("sedd-studio-*")) and "Traceback" not in log, log[-2000:]


def test_a_second_sigterm_while_the_studio_exits_does_not_interrupt_its_clean_up():
    """A supervisor that sent SIGTERM twice interrupted the ``atexit`` clean-up (the downloads' removal)
    with a second ``SystemExit`` and its traceback: the first SIGTERM now ignores the ones after it."""
    previous = signal.signal(signal.SIGTERM, app.exit_on_sigterm)
    try:
        with pytest.raises(SystemExit) as e:
            app.exit_on_sigterm(signal.SIGTERM, None)
        assert e.value.code == 0 and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- the browser tests without a browser: a skip with the hint locally, a failure in CI ------------------

def run_browser_tests(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_browser.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_browser_tests_skip_locally_and_fail_in_ci_without_chromium(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["SEDD_CHROMIUM"] = str(tmp_path / "no-chromium")
    local = run_browser_tests(env)
    summary = local.stdout.strip().splitlines()[-1]
    assert local.returncode == 0 and "skipped" in summary and "error" not in summary, local.stdout[-2000:]
    assert "Chromium (apt-get install chromium) is missing" in local.stdout
    ci = run_browser_tests({**env, "CI": "true"})
    assert ci.returncode == 1 and "is missing; .ci/run must install it" in ci.stdout, ci.stdout[-2000:]


def click_handler(demo, elem_id: str) -> int:
    """The index of the function a click on the page's button ``elem_id`` runs."""
    [button] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    [index] = [i for i, d in demo.fns.items() if d.fn is not None and (button._id, "click") in d.targets]
    return index


def stop_function_index(demo) -> int:
    return click_handler(demo, "stop")


def press_stop(url, demo, session: str, presses: int = 1) -> str:
    """What the page's Stop sends, its ``presses``-th time: straight to the handler, past the queue.
    Returns the status it answers, as JSON text."""
    r = requests.post(f"{url}gradio_api/run/predict", timeout=30,
                      json={"fn_index": stop_function_index(demo), "data": [presses], "session_hash": session})
    assert r.status_code == 200, r.text[:300]
    return json.dumps(r.json()["data"][0])


def test_the_page_and_the_api_share_one_concurrency_limit(model):
    """Two events run generate (the page's, and the API's without the State output): one group, so
    --concurrency bounds the runs of both together."""
    import app
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0)
    demo = app.build_demo(cb, "off", concurrency=2)
    page, api = demo.fns[generate_fn_index(demo)], next(fn for fn in demo.fns.values() if fn.api_name == "generate")
    assert page is not api
    assert (page.concurrency_id, page.concurrency_limit) == (api.concurrency_id, api.concurrency_limit) == ("generate", 2)


def test_stop_answers_while_the_queue_is_full(model):
    demo, url = launch_app(model, {"off": None}, concurrency=1, max_queue=1)
    try:
        client = Client(url, verbose=False)
        running = client.submit("_" * 64, 4, 1024, 0, api_name="/generate")
        deadline = time.monotonic() + 60
        while not running.outputs():
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.05)
        jobs = [running, client.submit("_" * 64, 4, 1024, 1, api_name="/generate")]     # running + waiting
        while len(demo._queue) < 1:
            assert time.monotonic() < deadline, "the queue never filled"
            time.sleep(0.05)
        # the studio's refusal, not Gradio's "Queue is full!", which would mark every output of the page "Error"
        full = "the queue is full (1 run waiting); try again in a minute"
        with pytest.raises(Exception, match=re.escape(full)):
            client.predict(OK, 1, 16, 0, api_name="/generate")
        # on the page, in the notice: no input is at fault (tests/test_browser.py shows it)
        assert refused_inputs(join_response(url, demo, "page", OK, 1, 16)) == [("notice", full)]
        # The page sends a queued handler through the queue (refused now) and an unqueued one straight here.
        assert demo.fns[stop_function_index(demo)].queue is False
        press_stop(url, demo, "stopper")
        for job in jobs:
            job.cancel()
    finally:
        demo.close()


def test_cancelling_one_client_job_leaves_another_clients_job_running(model):
    """Gradio cancels by session and endpoint, so the README tells API users to give each job
    they may cancel its own Client; then a cancel ends only that job."""
    demo, url = launch_app(model, {"off": None})
    try:
        doomed = Client(url, verbose=False).submit("_" * 120, 4, 1024, 1, api_name="/generate")
        kept = Client(url, verbose=False).submit(OK, 2, 64, 2, api_name="/generate")
        deadline = time.monotonic() + 60
        while not doomed.outputs():
            assert time.monotonic() < deadline, "no frames streamed"
            time.sleep(0.05)
        doomed.cancel()
        assert len(fasta_sequences(kept.result(timeout=120)[0])) == 2
    finally:
        demo.close()


# ---- a client that goes: Gradio drops its waiting job and ends its running one -------------------------

def generate_fn_index(demo) -> int:
    return click_handler(demo, "generate")


def join_response(url, demo, session: str, template: str, num_samples: int, steps: int, stop_epoch: int = 0):
    """Ask for a generate job over raw HTTP as the page does (its inputs, then the notice); the response."""
    return requests.post(f"{url}gradio_api/queue/join", timeout=30, json={
        "fn_index": generate_fn_index(demo), "session_hash": session, "trigger_id": None,
        "data": [template, num_samples, steps, 0, 1.0, "off", "", "sample", "tau-leaping", 1.0, stop_epoch, 1, ""]})


def join(url, demo, session: str, template: str, num_samples: int, steps: int, stop_epoch: int = 0):
    """Queue a generate job as the page does; return its open SSE stream (a response with ``lines``:
    one line iterator for the whole stream, as each ``iter_lines()`` call buffers apart)."""
    r = join_response(url, demo, session, template, num_samples, steps, stop_epoch)
    assert r.status_code == 200, r.text[:300]
    stream = requests.get(f"{url}gradio_api/queue/data", params={"session_hash": session}, stream=True, timeout=120)
    stream.lines = stream.iter_lines()
    return stream


def read_until(stream, wanted: str) -> dict:
    """Read SSE messages until one whose ``msg`` is ``wanted`` (the requests timeout bounds each read)."""
    for line in stream.lines:
        if line.startswith(b"data: "):
            message = json.loads(line[6:])
            assert message["msg"] != "process_completed" or wanted == "process_completed", message
            if message["msg"] == wanted:
                return message
    raise AssertionError(f"the stream ended before a {wanted!r} message")


@pytest.fixture
def gated(model):
    """A one-worker studio whose network records each call's template length (which says whose
    call it is) and holds any call on a 120-long template until ``go`` is set."""
    lengths, go = [], threading.Event()
    real_forward = model.model.forward

    def forward(x):
        lengths.append(x.shape[-1])
        if x.shape[-1] == 120:
            go.wait(timeout=60)
        return real_forward(x)

    model.model.forward = forward
    demo, url = launch_app(model, {"off": None}, concurrency=1)
    yield demo, url, lengths, go
    go.set()
    demo.close()
    del model.model.forward


def test_a_job_whose_client_has_gone_does_not_run(gated):
    """One worker: A runs, B and C wait. B's client goes before its turn and A's client goes while A
    runs. The sampler must never run for B, must stop for A, and C must then run. A's network waits
    for ``go`` on its first call, so A is still running whatever the speed of the machine."""
    demo, url, lengths, go = gated
    a = join(url, demo, "client-a", "_" * 120, 4, 1024)
    read_until(a, "process_generating")
    b = join(url, demo, "client-b", "_" * 40, 3, 16)
    read_until(b, "estimation")
    c = join(url, demo, "client-c", OK, 2, 16)
    read_until(c, "estimation")
    b.close()                                         # B's client goes while B waits
    deadline = time.monotonic() + 30
    while any(e.session_hash == "client-b" for q in demo._queue.event_queue_per_concurrency_id.values()
              for e in q.queue):
        assert time.monotonic() < deadline, "B's job stayed in the queue after its client went"
        time.sleep(0.05)
    a.close()                                         # A's client goes while A runs
    go.set()
    final = read_until(c, "process_completed")
    assert final["success"] and len(fasta_sequences(final["output"]["data"][0])) == 2
    assert lengths.count(len(OK)) > 0 and lengths.count(40) == 0, "the sampler ran for B, whose client had gone"
    # a full run of A calls the network once per step in which something changed: hundreds of times
    a_calls = wait_for_stable(lambda: lengths.count(120), settle_s=1.0)
    assert 0 < a_calls < 50, f"{a_calls} network calls: A ran on after its client went"


def test_stop_ends_the_runs_clicked_before_it_whatever_reaches_the_server_first(gated):
    """The page counts its Stop presses and sends the count with each Stop and each Generate.
    A run asked for before the press never samples: one whose request reaches the server after
    the Stop does, and one waiting in the queue. A run asked for after the press runs.
    (One open stream per session at a time, so each case has its own session.)"""
    demo, url, lengths, go = gated

    def assert_stopped(stream):
        final = read_until(stream, "process_completed")
        assert final["success"] and "Stopped" in json.dumps(final["output"]["data"][2])

    # nothing of the session's runs yet: the press counts, and the status is left as it is
    assert "Stopped" not in press_stop(url, demo, "late", presses=1)
    assert_stopped(join(url, demo, "late", "_" * 40, 2, 16, stop_epoch=0))
    other = join(url, demo, "other", "_" * 120, 1, 16)
    read_until(other, "process_generating")              # holds the one worker until go
    waiting = join(url, demo, "queued", "_" * 40, 2, 16, stop_epoch=0)
    read_until(waiting, "estimation")
    assert "Stopped" in press_stop(url, demo, "queued", presses=1)
    go.set()
    assert_stopped(waiting)
    assert lengths.count(40) == 0, "a run asked for before the Stop sampled"
    read_until(other, "process_completed")
    after = read_until(join(url, demo, "late", OK, 2, 16, stop_epoch=1), "process_completed")
    assert after["success"] and len(fasta_sequences(after["output"]["data"][0])) == 2
    assert "Stopped" not in press_stop(url, demo, "late", presses=2)     # after the run: its status stays


def test_a_score_clicked_during_a_score_runs_and_the_tables_clicks_run_in_order(model):
    """A Score clicked while one ran was dropped (Gradio's trigger_mode "once"), and the page showed the
    first sequence's results under the second. A row click and "Score this design" right after it
    ran side by side, so the button could read the row selected before: the table's events are one
    group that runs one at a time, in click order."""
    demo = app.build_demo(app.StudioCallbacks(model, {"off": None}))
    page = demo.fns[click_handler(demo, "score")]
    assert page.trigger_mode == "always_last"
    # the page's Score and the API's are one concurrency group: --concurrency scores at most, whoever asks
    [api] = [d for d in demo.fns.values() if d.api_name == "score"]
    assert page is not api and (page.concurrency_id, page.concurrency_limit) == (api.concurrency_id, 2)
    by_name = {getattr(d.fn, "__name__", ""): d for d in demo.fns.values()}
    table = [by_name[name] for name in ("select", "send_to_score", "recolor")]
    assert {(d.concurrency_id, d.concurrency_limit) for d in table} == {("designs-table", 1)}
    assert by_name["select"].trigger_mode == "always_last"


def test_the_status_names_the_choices_that_differ_from_the_defaults(cb):
    """A cleared Temperature box becomes its minimum (Gradio's), and the status said only the seed."""
    status = final_of(cb, OK, temperature=0.1)[2]
    assert "in 16 steps (seed 0, temperature 0.1)." in status
    *_, final = cb.generate(OK, 2, 16, 0, 1.0, "off", "", "sample", "remask", 0.9)
    assert "in 16 steps (seed 0, sampler remask, top-p 0.9)." in final[2]
    assert "in 16 steps (seed 0)." in final_of(cb, OK)[2]
