"""In a real browser: particles per design reach the run (the page sends every input, the Stop count
in its place), the status estimates the constraint's probability, and a sampler they cannot follow
is refused at the particles slider."""
from __future__ import annotations

import pytest
from browser_helpers import SEED, fold_off, set_steps, wait_until_done

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_particles_in_the_page(page):
    page.fill("#template textarea", "MKV[KR]__GF[^C]_R[DE]___LLAGW")
    set_steps(page, 16)
    fold_off(page)
    page.fill(SEED, "3")
    box = page.locator("#particles input[type='number']")
    box.fill("4")
    box.press("Enter")
    page.click("#generate")
    _seed, fasta = wait_until_done(page)
    assert "4 particles per design conditioned the designs on the allowed sets" in page.inner_text("#status")
    assert "network evaluations" in page.inner_text("#frames")
    designs = fasta.splitlines()[1::2]
    assert len(designs) == 4 and all(d[3] in "KR" and d[8] != "C" and d[11] in "DE" for d in designs), designs

    page.locator("#sampler input").click()
    page.get_by_role("option", name="remask").click()
    page.click("#generate")
    page.locator("#particles").get_by_text("need the tau-leaping sampler and top-p 1").wait_for()
    assert page.input_value("#fasta textarea") == fasta          # refused before it ran: the results stay
    assert "Error" not in page.inner_text("#status") + page.inner_text("#fasta")
    # choosing τ-leaping again, a fix the message names, clears it (it stayed, quoting "got sampler 'remask'")
    page.locator("#sampler input").click()
    page.get_by_role("option", name="tau-leaping").click()
    page.locator("#particles").get_by_text("need the tau-leaping sampler").wait_for(state="detached", timeout=10_000)
