"""In a real browser: a bracket template with an excluded residue gives the posterior chart and span lengths."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_spans_and_excluded_residues_in_the_page(page):
    page.fill("#template textarea", "MKV[2-5]GF[KR]R[0-2]W" + "_" * 20)
    page.fill("#exclude input, #exclude textarea", "C")
    page.get_by_label("most probable").check()
    page.fill("#seed input", "3")
    page.click("#generate")
    page.wait_for_selector("#status .span-posterior", timeout=120_000)
    page.wait_for_function("document.querySelector('#designs').innerText.includes('design_4')", timeout=120_000)
    assert page.locator("#status .span-row").count() == 10
    table = page.locator("#designs").inner_text()
    assert "span lengths" in table
    fasta = page.input_value("#fasta textarea")
    sequences = fasta.splitlines()[1::2]
    assert len(sequences) == 4 and len(set(map(len, sequences))) == 1       # most probable: one layout for all
    assert not any("C" in s for s in sequences)
