"""A real browser: Playwright drives Debian's Chromium against the studio.

Needs Chromium (``apt-get install chromium``; another binary via ``$SEDD_CHROMIUM``) and, for the
3D view offline, the npm package ``3dmol`` (``npm ci``). Both are installed by ``.ci/run``; in CI
(``CI=true``) a missing one is a failure, locally a skip that says what to install. No test
sleeps and then asserts: each waits for the condition it needs, with a timeout.
"""
from __future__ import annotations

import functools
import threading
import time

import pytest
from browser_helpers import SEED, SEED_USED, fold_off, open_page, require, set_steps, wait_until_done
from gradio_client import Client
from studio_helpers import RUN_TAG, fasta_sequences, launch_app, tiny_esmfold, wait_for_stable

import app
from sedd import render
from sedd.fold import ESMFoldBackend

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_generate_streams_frames_then_designs_and_3d_view(page, tmp_path):
    assert page.input_value(SEED_USED) == ""          # no run yet: no seed, not a made-up 0
    page.fill("#template textarea", ">demo\nMKV__GF_R____LLAGW__KDE" + "_" * 60)
    page.fill(SEED, "7")
    page.click("#generate")
    page.wait_for_selector("#structure iframe", timeout=120_000)
    steps = page.evaluate("window.__steps")
    assert len(steps) >= 3 and steps[-1] == "128", f"frames seen: {steps}"
    assert [int(s) for s in steps] == sorted(int(s) for s in steps)
    fasta = page.input_value("#fasta textarea")
    assert fasta.count(">design_") == 4 and "(step" not in fasta
    table = page.locator("#designs").inner_text()
    assert all(f"design_{i}" in table for i in range(1, 5))
    assert page.input_value(SEED_USED) == "7"
    canvas = page.frame_locator("#structure iframe").locator("canvas")
    canvas.wait_for(timeout=30_000)
    assert canvas.bounding_box()["height"] > 200
    assert page.locator("#plddt-plot img, #plddt-plot svg, #plddt-plot canvas").count() >= 1
    shot = tmp_path / "studio.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000

    # the toggle recolours by designed vs fixed; a click on a row shows that design
    page.get_by_label("designed vs fixed").check()
    page.wait_for_function("document.querySelector('#structure').innerText.includes('designed vs fixed')")
    assert "#e4572e" in page.locator("#structure iframe").get_attribute("srcdoc")
    last = page.locator("#designs").get_by_text("design_", exact=False).last
    name = last.inner_text().strip()
    last.click()
    page.wait_for_function(f"document.querySelector('#structure .structure-title').innerText.startsWith('{name}:')")


# The two ways the 3D view went blank, made to happen every time (scripts run before the page's own):
# the viewer's box gets its width a second after the viewer starts, and no resize notification comes
# (what a sandboxed iframe not yet laid out did, one page load in ten); and no WebGL at all.
UNSIZED_AT_START = """() => {
    window.ResizeObserver = window.IntersectionObserver = undefined;
    const width = Object.getOwnPropertyDescriptor(HTMLElement.prototype, "offsetWidth").get;
    const start = performance.now();           // the box is laid out a second late
    Object.defineProperty(HTMLElement.prototype, "offsetWidth", {get() {
        return this.id.startsWith("3dmolviewer") && performance.now() - start < 1000 ? 0 : width.call(this);
    }});
}"""
NO_WEBGL = """() => {
    for (const C of [HTMLCanvasElement, self.OffscreenCanvas].filter(Boolean)) {
        const getContext = C.prototype.getContext;
        C.prototype.getContext = function (kind, ...rest) {
            return /webgl/.test(kind) ? null : getContext.call(this, kind, ...rest);
        };
    }
}"""
PDB = "".join(f"ATOM  {i:5d}  CA  ALA A{i:4d}    {i * 3.8:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00 90.00           C\n"
              for i in range(1, 9))


@pytest.mark.parametrize("breakage", [UNSIZED_AT_START, NO_WEBGL], ids=["unsized-at-start", "no-webgl"])
def test_the_3d_view_is_never_a_silent_blank_box(browser, breakage):
    require(render.LOCAL_3DMOL.is_file(), "the npm package 3dmol (npm ci)")
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.add_init_script(f"({breakage})()")
    viewer = render.viewer_page(PDB, [90.0] * 8, [True] * 8, js_url="3Dmol-min.js")
    page.route("http://studio.test/", lambda route: route.fulfill(body=viewer, content_type="text/html"))
    page.route("http://studio.test/3Dmol-min.js", lambda route: route.fulfill(path=render.LOCAL_3DMOL))
    page.goto("http://studio.test/")
    if breakage is UNSIZED_AT_START:        # a retry starts WebGL once the box has a size
        page.locator("canvas").wait_for(state="visible", timeout=30_000)
        assert page.locator("canvas").bounding_box()["height"] > 200
    else:                                   # a message, not a blank box
        page.get_by_text("could not start WebGL").wait_for(timeout=30_000)
        assert "PDB" in page.locator(".no-webgl").inner_text()
    page.close()


def test_a_new_run_is_drawn_in_the_colouring_the_page_shows(page):
    page.get_by_label("designed vs fixed").check()            # before any run: nothing to recolour
    page.fill("#template textarea", "MKV__GF_R____LLAGW__KDE")
    set_steps(page, 16)
    page.click("#generate")
    wait_until_done(page)
    page.wait_for_function("document.querySelector('#structure').innerText.includes('designed vs fixed')")
    assert "#e4572e" in page.locator("#structure iframe").get_attribute("srcdoc")


def test_a_blank_seed_draws_a_new_seed_every_run(page):
    assert page.input_value(SEED) == "", "the seed box starts blank"
    reuse = page.get_by_role("button", name="Reuse this seed")
    reuse.click()                                            # nothing has run: nothing to reuse
    page.wait_for_timeout(500)
    assert page.input_value(SEED) == ""
    page.fill("#template textarea", "MKV" + "_" * 40)
    set_steps(page, 16)
    fold_off(page)
    page.click("#generate")
    first_seed, first = wait_until_done(page)
    page.click("#generate")                                  # the box untouched: still blank
    second_seed, second = wait_until_done(page, first_seed)
    assert page.input_value(SEED) == ""
    assert first_seed != second_seed and first != second
    reuse.click()
    page.wait_for_function("s => document.querySelector('#seed :is(input, textarea)').value === s", arg=second_seed)


def test_every_residue_of_a_long_design_is_visible(page):
    page.set_viewport_size({"width": 1000, "height": 900})      # narrower than 128 monospace residues
    page.fill("#template textarea", "_" * 128)
    set_steps(page, 16)
    fold_off(page)
    page.click("#generate")
    wait_until_done(page)
    outside = page.evaluate("""() => {
        const box = document.querySelector('#frames').getBoundingClientRect();
        const out = [];
        for (const seq of document.querySelectorAll('#frames .frame-seq')) {
            const range = document.createRange();
            const last = seq.lastChild.firstChild;              // the text of the last run of residues
            range.setStart(last, last.length - 1);
            range.setEnd(last, last.length);
            const r = range.getBoundingClientRect();
            if (r.right > box.right + 0.5 || r.left < box.left - 0.5) out.push([r.left, r.right, box.right]);
        }
        return out;
    }""")
    assert page.locator("#frames .frame-seq").count() == 4
    assert outside == [], f"residues drawn outside the panel: {outside}"


def test_script_in_a_template_shows_as_text_and_runs_nothing(page):
    page.fill("#template textarea", "<script>window.__pwned = 1</script>MKV__")
    page.click("#generate")
    page.locator("#template").get_by_text("invalid character '<' at position 1").wait_for(timeout=30_000)
    assert page.evaluate("window.__pwned") is None
    # a refusal that quotes the input shows the markup as text
    page.fill("#template textarea", "MKV__GF_R")
    page.fill(SEED, '<b id="injected">x</b>')
    page.click("#generate")
    page.locator("#seed").get_by_text("""got '<b id="injected">x</b>'""").wait_for()
    assert page.locator("#injected").count() == 0
    # and the page still works
    page.fill(SEED, "")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#fasta textarea').value.includes('>design_4')",
                           timeout=60_000)


def test_a_refused_request_keeps_the_results_and_shows_why_at_the_input(page):
    """Bad input is refused before a run starts: the last designs stay, and the reason stays under
    the input at fault (not in a toast that fades) until that input is edited."""
    page.fill("#template textarea", "MKV" + "_" * 20)
    set_steps(page, 16)
    fold_off(page)
    page.click("#generate")
    _, fasta = wait_until_done(page)
    page.fill("#exclude input", "Z")
    page.click("#generate")
    reason = page.locator("#exclude").get_by_text("excluded residues: 'Z' at position 1 is not a residue")
    reason.wait_for()
    assert page.input_value("#fasta textarea") == fasta
    assert "Error" not in page.inner_text("#fasta") + page.inner_text("#status") + page.inner_text("#designs")
    page.fill("#exclude input", "C")
    reason.wait_for(state="detached")
    # a clash refused at the template that Exclude can fix: editing Exclude clears it too (it stayed)
    page.fill("#template textarea", "MKV[KR]" + "_" * 20)
    page.fill("#exclude input", "KR")
    page.click("#generate")
    clash = page.locator("#template").get_by_text("allows only KR, all of which are excluded")
    clash.wait_for()
    page.fill("#exclude input", "C")
    clash.wait_for(state="detached", timeout=10_000)
    # any other refusal under the template stays when Exclude is edited (the round trip cleared it too)
    page.fill("#template textarea", "MKVB" + "_" * 20)
    page.click("#generate")
    invalid = page.locator("#template").get_by_text("invalid character 'B' at position 4")
    invalid.wait_for()
    page.fill("#exclude input", "W")
    page.wait_for_timeout(2_000)                       # the edit's round trip has come back
    assert invalid.is_visible()
    page.fill("#template textarea", "MKV[KR]" + "_" * 20)
    page.click("#generate")
    page.wait_for_function("f => document.querySelector('#fasta textarea').value !== f "
                           "&& document.querySelector('#status').innerText.includes('in 16 steps')", arg=fasta)


IN_VIEW = """sel => { const r = document.querySelector(sel).getBoundingClientRect();
                     return r.top >= 0 && r.bottom <= window.innerHeight; }"""


def test_a_refusal_above_the_pressed_button_is_scrolled_into_view(page):
    """On a laptop-height window the template is out of sight when Generate is pressed, and a
    refusal under it looked like a press that did nothing. A refusal left in the Score tab, hidden
    with it, must not be taken for the one to show."""
    page.set_viewport_size({"width": 1400, "height": 600})
    page.get_by_role("tab", name="Score").click()
    page.fill("#score-sequence textarea", "MKV\nGGB")
    page.click("#score")
    page.locator("#score-sequence div.validation-error").wait_for()
    page.get_by_role("tab", name="Generate").click()
    page.fill("#template textarea", "MKV\nGGB__")
    page.locator("#generate").scroll_into_view_if_needed()
    assert not page.evaluate(IN_VIEW, "#template textarea")        # the premise: the template is out of sight
    page.click("#generate")
    page.locator("#template div.validation-error").get_by_text("line 2, column 3").wait_for(state="attached")
    page.wait_for_function(IN_VIEW, arg="#template div.validation-error")


def test_a_full_queue_is_said_in_the_tabs_notice_not_under_an_input(browser, model, gate):
    """A full queue is no fault of the template or the sequence: the reason shows in the tab's notice,
    the inputs show none, nothing is marked "Error", and the next admitted request clears it."""
    real_forward, running = model.model.forward, threading.Event()
    model.model.forward = lambda x: (running.set(), gate.wait(timeout=120))[1] and real_forward(x)
    demo, url = launch_app(model, {"off": None}, concurrency=1, max_queue=1)
    page = open_page(browser, url)
    try:
        gate.clear()                             # the first run holds the one place to run, the second waits
        client = Client(url, verbose=False)
        jobs = [client.submit("_" * 20, 1, 16, 0, api_name="/generate")]
        # the second only once the first runs: sent together, the second could take the one place in the
        # queue first, and the first was then refused for a full queue
        assert running.wait(timeout=120), "the first run never started"
        jobs.append(client.submit("_" * 20, 1, 16, 1, api_name="/generate"))
        deadline = time.monotonic() + 120        # a loaded machine takes a while to start a run
        while len(demo._queue) < 1:
            assert time.monotonic() < deadline, "the queue never filled"
            time.sleep(0.05)
        full = "the queue is full (1 run waiting); try again in a minute"
        page.fill("#template textarea", "MKV" + "_" * 20)
        set_steps(page, 16)
        page.click("#generate")
        notice = page.locator("#generate-refusal").get_by_text(full)
        notice.wait_for()
        assert notice.is_visible()
        below = page.locator("#generate-refusal").bounding_box()["y"] - page.locator("#generate").bounding_box()["y"]
        assert 0 < below < 100, "the notice is right under the button just pressed"
        assert full not in page.inner_text("#template") and "Error" not in page.inner_text("#fasta")
        page.get_by_role("tab", name="Score").click()
        page.fill("#score-sequence textarea", "MKVLAGWKKSTAHHCDEGKVQGVFFR")
        page.click("#score")
        page.locator("#score-refusal").get_by_text(full).wait_for()
        assert full not in page.inner_text("#score-sequence")
        gate.set()
        for job in jobs:
            job.result(timeout=120)
        page.get_by_role("tab", name="Generate").click()
        page.click("#generate")                  # admitted: the notice goes, the run runs
        notice.wait_for(state="detached")
        page.wait_for_function("document.querySelector('#status').innerText.includes('in 16 steps')")
    finally:
        gate.set()
        page.close()
        demo.close()
        del model.model.forward


# ---- Stop: the sampler itself stops, and the next Generate always runs ------------------------------

@pytest.fixture
def gate():
    """The network's gate (see ``counted``): while it is cleared, the next forward call waits."""
    opened = threading.Event()
    opened.set()
    yield opened
    opened.set()


@pytest.fixture
def runs(monkeypatch):
    """The last output of each ``generate`` run the studio has ended, in order (None: it yielded nothing)."""
    ended = []
    real = app.StudioCallbacks.generate

    @functools.wraps(real)                   # the signature Gradio reads (the gr.Request it passes)
    def generate(self, *args, **kwargs):
        last, run = None, real(self, *args, **kwargs)
        try:
            for last in run:
                yield last
        finally:
            run.close()                      # as Gradio's close of the run would
            ended.append(last)

    monkeypatch.setattr(app.StudioCallbacks, "generate", generate)
    return ended


@pytest.fixture
def counted(browser, model, gate, runs):
    """The studio served from this process over a model whose forward calls are counted (each
    waits while ``gate`` is cleared); ``runs`` records how each run ended."""
    calls = []
    real_forward = model.model.forward

    def forward(x):
        gate.wait(timeout=120)               # never hangs a broken test for good
        calls.append(len(x))
        return real_forward(x)

    model.model.forward = forward
    demo, url = launch_app(model, {"off": None})
    page = open_page(browser, url)
    yield page, calls
    gate.set()
    page.close()
    demo.close()
    del model.model.forward


def test_stop_halts_the_sampler_not_just_the_display(counted):
    page, calls = counted
    page.fill("#template textarea", "_" * 120)
    set_steps(page, 1024)                 # 1024 steps over 4 designs: long enough to stop midway
    page.click("#generate")
    page.wait_for_function("window.__steps.length >= 3", timeout=60_000)
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')", timeout=30_000)
    stopped_at = wait_for_stable(lambda: len(calls))
    shown = page.evaluate("window.__steps")
    assert int(shown[-1]) < 1024, f"the run finished before Stop took effect: {shown}"
    # a full run calls the network once per step in which something changed: hundreds of times
    assert stopped_at < 200, f"{stopped_at} network calls: Stop did not end the sampling"
    assert wait_for_stable(lambda: len(calls), settle_s=1.0) == stopped_at
    assert page.evaluate("window.__steps") == shown


def test_stop_right_after_generate_stops_both_runs(counted, gate, runs):
    """Generate while a run is going (Gradio holds the click until that run ends), then Stop at
    once: the Stop covers the run it interrupts and the one asked for before it.

    No step here depends on how fast the machine is. The sampler is held in its next network call
    until the server has the Stop, so the first run is still going when the Stop arrives, and every
    network call after that is one the Stop should have prevented. (This test once read the status
    after the call count had been still for 2 s: a server stalled for 2 s on a loaded machine, with
    the Stop not yet handled, showed "Denoising…".)"""
    page, calls = counted
    page.fill("#template textarea", "_" * 120)
    set_steps(page, 1024)
    page.click("#generate")
    page.wait_for_function("window.__steps.length >= 3", timeout=60_000)
    gate.clear()
    page.click("#generate")
    page.click("#stop")
    # the Stop's own answer: the server has recorded the press (the first run is held, still going)
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')", timeout=60_000)
    held = len(calls)                        # no call can start while the gate is closed
    gate.set()
    # both runs end: the held one at its next frame, the one asked for before the Stop at its start
    deadline = time.monotonic() + 120
    while len(runs) < 2 and len(calls) <= held + 1:
        assert time.monotonic() < deadline, f"{len(runs)} of the 2 runs ended; {len(calls) - held} calls since Stop"
        time.sleep(0.05)
    # after both have ended, nothing may call the network any more (no sampler left running)
    stopped_at = wait_for_stable(lambda: len(calls), settle_s=1.0)
    # at most the call the gate held: the run stops at the frame that call makes
    assert stopped_at <= held + 1, f"{stopped_at - held} network calls after the server had the Stop: a run went on"
    assert len(runs) == 2, f"{len(runs)} runs ended: the Generate clicked before Stop never ran"
    assert [out[2] for out in runs] == [app.STOPPED_HTML] * 2, "a run ended other than stopped"
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')")
    assert "(step" in page.input_value("#fasta textarea"), "a run finished after Stop"


# A new run: frames from a step below the one the stopped run reached, then two more. (The page may
# skip showing step 0 when frames come fast.)
NEW_RUN_STARTED = "stopped => { const s = window.__steps.map(Number), i = s.findIndex(x => x < stopped);" \
                  " return i >= 0 && s.length - i >= 3; }"


def test_generate_right_after_stop_always_starts_a_run(counted):
    page, _calls = counted
    page.fill("#template textarea", "_" * 120)
    set_steps(page, 1024)
    page.click("#generate")
    page.wait_for_function("window.__steps.length >= 3", timeout=60_000)
    for attempt in range(6):
        page.click("#stop")
        stopped_at = int(page.evaluate("window.__steps.at(-1)"))
        page.evaluate("window.__steps = []")
        page.click("#generate")
        page.wait_for_function(NEW_RUN_STARTED, arg=stopped_at, timeout=60_000)
    page.click("#stop")


def test_an_example_then_generate_at_once_runs_the_example(page):
    """The example fills the box in the page itself: Generate pressed straight after sends it, not
    the box's previous (here empty) text."""
    fold_off(page)
    example = app.EXAMPLES[1]                          # the catalytic motif kept, all else designed
    page.get_by_text(example["label"], exact=True).click()
    page.click("#generate")
    _seed, fasta = wait_until_done(page)
    assert page.input_value("#template textarea") == example["template"]
    designs = [line for line in fasta.splitlines() if line and not line.startswith(">")]
    assert len(designs) == 4 and all(len(d) == len(example["template"]) for d in designs)
    assert all(d[15:24] == "GKVQGVFFR" for d in designs), designs


# ---- Stop while folding: the page shows one run ----------------------------------------------------------
STOP_TEMPLATE = "MKV__GF_R____LLAGW__KDE"
FOLD = "ESMFold (local)"


class HeldFolds(ESMFoldBackend):
    """The tiny ESMFold; once ``hold(n)`` is called, the fold after the next ``n`` waits for ``release``."""

    def __init__(self):
        super().__init__(model=tiny_esmfold(), device="cpu")
        self.passes, self.gate = None, threading.Event()

    def hold(self, passes: int) -> None:
        self.passes = passes
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def fold(self, sequences, check=None):
        if self.passes is not None:
            if self.passes == 0:
                self.gate.wait(timeout=120)            # never hangs a broken test for good
            self.passes -= 1
        return super().fold(sequences)


# The stopped run has ended: its designs fill the table, or (as before the fix) the heading, redrawn
# after every run, says "model score" for a run that left no designs on the page.
RUN_SHOWN_OR_HEADING_RESET = """() => {
    const fasta = document.querySelector('#fasta textarea').value, table = document.querySelector('#designs').innerText;
    const sequences = fasta.split('\\n').filter(line => line && !line.startsWith('>'));
    return document.querySelector('#designs-heading').innerText.includes('ranked by model score')
        || (sequences.length === 4 && !fasta.includes('(step') && sequences.every(s => table.includes(s)));
}"""


def fold_stop_template(page, seed: int) -> None:
    """The page set for a short run of STOP_TEMPLATE that is folded."""
    page.get_by_label(FOLD, exact=True).check()
    page.fill("#template textarea", STOP_TEMPLATE)
    set_steps(page, 16)
    page.fill(SEED, str(seed))


def test_the_page_after_stop_while_folding_shows_one_run(browser, model):
    """A user's steps: a finished run, then Generate again and Stop while it folds. The FASTA box
    then held the new designs while the table was empty and the structure panel blank."""
    backend = HeldFolds()
    demo, url = launch_app(model, {FOLD: backend, "off": None})
    page = open_page(browser, url)
    try:
        fold_stop_template(page, seed=1)
        page.click("#generate")
        wait_until_done(page)
        backend.hold(1)                                # design 2 of the next run folds only after the Stop
        page.fill(SEED, "2")
        page.click("#generate")
        page.wait_for_function("document.querySelector('#status').innerText.includes('Folding design 2 of 4')")
        page.click("#stop")
        page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')")
        backend.release()
        page.wait_for_function(RUN_SHOWN_OR_HEADING_RESET)
        assert "ranked by mean pLDDT" in page.locator("#designs-heading").inner_text()
        assert "after drawing 4 designs" in page.locator("#status").inner_text()
        sequences = fasta_sequences(page.input_value("#fasta textarea"))
        table = page.locator("#designs").inner_text()
        assert len(sequences) == 4 and all(s in table for s in sequences), "the table is not the FASTA's run"
        # a name shows as "design_1_seed2_20261203-083012\n.pdb"
        downloads = RUN_TAG.sub("", page.locator("#downloads").inner_text().replace("\n.", "."))
        assert table.count("stopped") == 2 and "designs.fasta" in downloads
        assert "design_2.pdb" in downloads and "design_3.pdb" not in downloads
        assert "_seed2_" in page.locator("#downloads").inner_text()
        assert page.locator("#structure .structure-title").inner_text().startswith("design_")
    finally:
        backend.release()
        page.close()
        demo.close()


def test_a_generate_clicked_during_a_run_runs_the_page_as_it_was_at_the_click(browser, model):
    """It waits for the run on the page, and Gradio read its inputs only when it started: a template
    typed (or a seed changed) while it waited went into it instead of what was clicked."""
    backend = HeldFolds()
    demo, url = launch_app(model, {FOLD: backend, "off": None})
    page = open_page(browser, url)
    try:
        fold_stop_template(page, seed=1)
        backend.hold(0)                                # the run waits at its first fold
        page.click("#generate")
        page.wait_for_function("document.querySelector('#status').innerText.includes('Folding design 1 of 4')")
        page.fill("#template textarea", "AAAAA_____")
        page.fill(SEED, "2")
        page.click("#generate")                        # waits for the run on the page
        page.fill("#template textarea", "WWWWW_____")  # the next one's, typed while it waits
        page.fill(SEED, "3")
        backend.release()
        seed, fasta = wait_until_done(page, previous_seed="1")
        assert seed == "2" and [s[:5] for s in fasta_sequences(fasta)] == ["AAAAA"] * 4
        assert page.input_value("#template textarea") == "WWWWW_____"          # the edit itself is kept
    finally:
        backend.release()
        page.close()
        demo.close()


def test_the_heading_describes_the_table_under_it(browser, model):
    """While a run drew, its cleared table sat under the last run's ranking ("ranked by mean
    pLDDT"); and a fresh page stopped while folding listed the designs under "Designs (none yet)"
    until a later step redrew the heading. The heading now comes with the designs (``app.with_heading``)."""
    backend = HeldFolds()
    demo, url = launch_app(model, {FOLD: backend, "off": None})
    page = open_page(browser, url)
    heading = "document.querySelector('#designs-heading').innerText"
    try:
        page.get_by_label(FOLD, exact=True).check()
        page.fill("#template textarea", STOP_TEMPLATE)
        set_steps(page, 16)
        backend.hold(1)                                # design 2 folds only after the Stop
        page.click("#generate")
        page.wait_for_function("document.querySelector('#status').innerText.includes('Folding design 2 of 4')")
        page.click("#stop")
        page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')")
        backend.release()
        page.wait_for_function(f"{heading}.startsWith('Designs, ranked by mean pLDDT')")
        assert "only 2 of 4 folded" in page.locator("#designs-heading").inner_text()
        backend.hold(0)                                # the next run's first fold waits
        page.click("#generate")
        page.wait_for_function("document.querySelector('#status').innerText.includes('Folding design 1 of 4')")
        page.wait_for_function(f"{heading}.startsWith('Designs (none yet)')")
        assert page.locator("#designs .virtual-row").count() == 0
    finally:
        backend.release()
        page.close()
        demo.close()


def _visible_design(page, k: int):
    """The 'design' cell of the k-th row as the table shows it (sorted or not)."""
    return page.locator("#designs .virtual-row").nth(k).locator("[role=gridcell]").nth(1)


def test_a_row_of_a_sorted_table_shows_and_scores_the_design_it_shows(page):
    """Sorted by its column menu, the table's n-th row shown is not the n-th ranked: a click must show
    and score the design the row shows, also when "Score this design" follows the click at once. The
    downloads' "Remove this file" buttons lost files of the run, and are hidden."""
    fold_off(page)
    set_steps(page, 16)
    designs = page.locator("input[aria-label='number input for Number of designs']")
    designs.fill("4")
    designs.press("Enter")
    page.fill("#template textarea", "MKV______GF__________R")
    page.fill(SEED, "11")
    page.click("#generate")
    wait_until_done(page)
    page.wait_for_function("document.querySelectorAll('#designs .virtual-row').length === 4")
    removes = page.locator("#downloads .label-clear-button")
    assert removes.count() > 1 and not any(removes.nth(i).is_visible() for i in range(removes.count()))
    ranked = [_visible_design(page, k).inner_text().strip() for k in range(4)]
    page.locator("#designs th[data-heading='1']").hover()
    page.locator("#designs th[data-heading='1'] button[aria-label='Open cell menu']").click(force=True)
    page.get_by_text("Sort descending").first.click()
    page.wait_for_function("n => document.querySelector('#designs .virtual-row')"
                           ".querySelectorAll('[role=gridcell]')[1].innerText.trim() === n", arg=max(ranked))
    for k in (0, 2):
        shown = _visible_design(page, k).inner_text().strip()
        assert shown != ranked[k]                                # the sort moved it
        _visible_design(page, k).click()
        page.wait_for_function("n => document.querySelector('#structure').innerText.includes(`No structure for ${n}.`)",
                               arg=shown)
    shown = _visible_design(page, 1).inner_text().strip()
    _visible_design(page, 1).click()
    page.click("#score-design")                                   # at once
    page.wait_for_function("(document.querySelector('#score-summary') || {innerText: ''}).innerText.length > 0",
                           timeout=120_000)                      # the Score tab is drawn once it is opened
    assert page.input_value("#score-sequence textarea").split("\n")[0] == f">{shown}"
