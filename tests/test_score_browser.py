"""The Score tab in a real browser (Playwright + Debian's Chromium against ``python app.py``)."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time

import pytest
from browser_helpers import fold_off, open_page

import app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SEQUENCE = "MAEGNTLISVDYEIFGKVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQGPISKV"


def wait_for_scores(page, name: str) -> None:
    page.wait_for_function(f"document.querySelector('#score-summary').innerText.includes('{name}')", timeout=60_000)
    page.locator("#score-heatmap img").first.wait_for(timeout=30_000)


def test_paste_a_sequence_and_score_it(page):
    page.get_by_role("tab", name="Score").click()
    page.fill("#score-sequence textarea", f">my_protein\n{SEQUENCE}")
    page.click("#score")
    wait_for_scores(page, "my_protein")
    summary = page.inner_text("#score-summary")
    assert f"{len(SEQUENCE)} residues" in summary and "ELBO" in summary and "nats/residue" in summary
    assert page.locator("#score-track img").count() >= 1
    top = page.inner_text("#score-top")
    assert "substitution" in top and top.count("\n") >= 10
    downloads = page.inner_text("#score-downloads")
    stem = f"my_protein_{hashlib.sha1(SEQUENCE.encode()).hexdigest()[:8]}"
    assert f"{stem}_scan\n.csv" in downloads and f"{stem}_scores\n.json" in downloads
    assert "Note:" not in summary
    # a pasted multi-FASTA: the first record is scored, and the page says so
    page.fill("#score-sequence textarea", f">first_of_two\n{SEQUENCE}\n>second\nMKVLAG")
    page.click("#score")
    wait_for_scores(page, "first_of_two")
    assert "Note: the input holds 2 FASTA records; using the first one only." in page.inner_text("#score-summary")


def test_a_long_record_name_wraps_inside_the_summary_card(page):
    """A 300-character FASTA header ran out of the summary card and off the page."""
    name = "ACYP1_" + "x" * 294
    page.get_by_role("tab", name="Score").click()
    page.fill("#score-sequence textarea", f">{name}\n{SEQUENCE}")
    page.click("#score")
    wait_for_scores(page, name[:40])
    fits = page.evaluate("""() => {
        const card = document.querySelector('#score-summary .score-summary'), line = card.querySelector('.score-name');
        const c = card.getBoundingClientRect(), l = line.getBoundingClientRect();
        return [line.scrollWidth <= line.clientWidth, l.right <= c.right + 0.5, c.right <= window.innerWidth,
                document.documentElement.scrollWidth <= window.innerWidth];
    }""")
    assert fits == [True, True, True, True], fits


def test_a_masked_sequence_is_refused_with_the_reason_at_the_input(page):
    """Refused before it is queued: the last scores stay, the reason stays under the sequence until it is edited."""
    page.get_by_role("tab", name="Score").click()
    page.fill("#score-sequence textarea", f">first\n{SEQUENCE}")
    page.click("#score")
    wait_for_scores(page, "first")
    summary = page.inner_text("#score-summary")
    page.fill("#score-sequence textarea", "MKV__GF")
    page.click("#score")
    reason = page.locator("#score-sequence").get_by_text("scoring needs a full sequence")
    reason.wait_for(timeout=30_000)
    assert page.inner_text("#score-summary") == summary and "Error" not in page.inner_text("#score-top")
    page.fill("#score-sequence textarea", SEQUENCE)
    reason.wait_for(state="detached")


def test_score_this_design_from_the_generate_table(page):
    fold_off(page)                                    # no folding: designs ranked by model score
    # nothing to send yet: a click raised an error that sat over the Score tab's sequence box
    assert page.locator("#score-design").is_disabled()
    page.fill("#template textarea", "MKV__GF_R____LLAGW__KDE")
    page.fill("#seed :is(input, textarea)", "3")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#designs-heading').innerText.includes('ranked by model score')",
                           timeout=120_000)
    assert "model score" in page.inner_text("#designs")
    page.locator("#designs").get_by_text("design_", exact=False).nth(1).click()
    page.click("#score-design")
    name = page.input_value("#score-sequence textarea").splitlines()[0][1:]
    wait_for_scores(page, name)
    assert page.locator("#score-heatmap").is_visible()


def test_an_example_then_score_at_once_scores_the_example(page):
    page.get_by_role("tab", name="Score").click()
    example = app.SCORE_EXAMPLES[1]
    page.get_by_text(example["label"], exact=True).click()
    page.click("#score")
    wait_for_scores(page, "ACYP1_HUMAN_R24A")
    assert page.input_value("#score-sequence textarea") == example["sequence"]


def held_first_call(fn):
    """``fn`` whose first call waits for ``.released`` (``.started`` says it has begun)."""
    started, released = threading.Event(), threading.Event()

    @functools.wraps(fn)              # its signature: Gradio reads it
    def call(*args):
        if not started.is_set():
            started.set()
            released.wait(timeout=60)
        return fn(*args)

    call.started, call.released = started, released
    return call


@contextlib.contextmanager
def first_score_held(browser, cb: app.StudioCallbacks, held):
    """The Score tab of the studio over ``cb``, a first sequence's Score pressed and ``held`` at its first call."""
    demo, page = app.build_demo(cb, "off"), None
    try:
        page = open_page(browser, app.serve(demo))
        page.get_by_role("tab", name="Score").click()
        page.fill("#score-sequence textarea", f">first\n{SEQUENCE}")
        page.click("#score")
        assert held.started.wait(timeout=60)
        yield page
    finally:
        held.released.set()
        if page is not None:
            page.close()
        demo.close()


def test_a_score_that_ends_while_the_last_ones_views_are_drawn_is_drawn_after_them(browser, model):
    """The views of a Score that ended while the previous Score's views were still being drawn (a long
    sequence's heatmap, then a short sequence scored at once) were dropped: the first sequence's
    results stayed under the second's box with nothing said. Held here so the order is certain."""
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, js_url=app.js_url_for_3dmol())
    score, scored = cb.score, []

    def counted_score(sequence):
        entry = score(sequence)
        scored.append(entry["name"])
        return entry

    cb.score = counted_score
    cb.show_score = held = held_first_call(cb.show_score)     # the first drawing waits for the second score
    with first_score_held(browser, cb, held) as page:
        page.fill("#score-sequence textarea", ">second\nMKVLAGGWKDE")
        page.click("#score")
        deadline = time.monotonic() + 60
        while scored != ["first", "second"]:
            assert time.monotonic() < deadline, f"the second Score never ran: {scored}"
            time.sleep(0.05)
        time.sleep(1.0)                             # the page has the second score's JSON
        held.released.set()
        wait_for_scores(page, "second")
        assert "second · 11 residues" in page.inner_text("#score-summary")


def test_a_score_clicked_during_a_score_scores_the_sequence_as_it_was_at_the_click(browser, model):
    """It waits for the Score on the page, and Gradio read the box only when it started: a sequence
    pasted while it waited was scored instead of the one clicked."""
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, js_url=app.js_url_for_3dmol())
    cb.score = held = held_first_call(cb.score)
    with first_score_held(browser, cb, held) as page:
        page.fill("#score-sequence textarea", ">clicked\nMKVLAGGWKDE")
        page.click("#score")                        # waits for the Score on the page
        page.fill("#score-sequence textarea", ">typed_after\nMKVLAGG")
        held.released.set()
        wait_for_scores(page, "clicked")
        assert "clicked · 11 residues" in page.inner_text("#score-summary")
