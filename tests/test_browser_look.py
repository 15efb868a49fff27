"""How the studio looks: readable in dark and light mode, usable on a phone (Playwright + Debian's Chromium).

Contrast is WCAG's ratio of the computed text colour to the background actually under it (every
ancestor's background composited, so colours mixed with transparency count as they are drawn).
"""
from __future__ import annotations

import pytest
from browser_helpers import fold_off, set_steps, wait_until_done

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SEQUENCE = "MAEGNTLISVDYEIFGKVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQGPISKV"

# For each selector: (the lowest contrast ratio of an element's text, the largest ratio of its background
# to the one around it). 4.5 is WCAG AA for body text; a masked position's "_" is a placeholder (3).
# A background that differs from its surroundings by more than 1.6 was a pastel box made for a white page,
# a glaring block on a dark one.
READABLE = """(checks) => {
    const ctx = Object.assign(document.createElement('canvas'), {width: 1, height: 1})
        .getContext('2d', {willReadFrequently: true});
    const rgba = c => {          // any CSS colour (rgb(), color(srgb …), color-mix results) as drawn
        ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = '#000'; ctx.fillStyle = c; ctx.fillRect(0, 0, 1, 1);
        const d = ctx.getImageData(0, 0, 1, 1).data;
        return [d[0], d[1], d[2], d[3] / 255];
    };
    const over = (top, under) => top.slice(0, 3).map((v, i) => v * top[3] + under[i] * (1 - top[3]));
    const background = el => {
        const chain = [];
        for (let e = el; e; e = e.parentElement) chain.unshift(e);
        return chain.reduce((bg, e) => over(rgba(getComputedStyle(e).backgroundColor), bg), [255, 255, 255]);
    };
    const lum = c => c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
        .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
    const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
    const bad = [];
    for (const [sel, minText, maxBox] of checks) {
        const els = [...document.querySelectorAll(sel)];
        if (!els.length) { bad.push([sel, 'missing']); continue; }
        for (const el of els.slice(0, 20)) {
            const bg = background(el), text = ratio(over(rgba(getComputedStyle(el).color), bg), bg);
            const box = ratio(bg, background(el.parentElement));
            if (text < minText || box > maxBox) {         // the first failure of each selector
                bad.push([sel, el.innerText.slice(0, 30), 'text ' + text.toFixed(2), 'box ' + box.toFixed(2)]);
                break;
            }
        }
    }
    return bad;
}"""
GENERATE_CHECKS = [["#frames .frame-counters", 4.5, 1.6], ["#frames .frame-label", 4.5, 1.6],
                   ["#frames .res-fixed", 4.5, 1.6], ["#frames .res-designed", 4.5, 1.6],
                   ["#frames .res-new", 4.5, 99], ["#frames .res-masked", 3.0, 1.6],
                   ["#frames .frame-legend", 4.5, 1.6], ["#status .studio-msg", 4.5, 1.6],
                   ["#status .span-title", 4.5, 1.6], ["#status .span-label", 4.5, 1.6],
                   ["#status .span-prob", 4.5, 1.6], ["#structure .studio-msg", 4.5, 1.6]]
SCORE_CHECKS = [["#score-summary .score-name", 4.5, 1.6], ["#score-summary .score-main", 4.5, 1.6],
                ["#score-summary .score-family", 4.5, 1.6]]


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_every_custom_element_is_readable(browser, server, scheme):
    """In dark mode the fixed residues, the posterior chart's labels and the family percentile were grey on
    near-black (contrast 1.5 to 2.6), and the status box and masked positions glared as white blocks."""
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(server)
    page.wait_for_selector("#template textarea", timeout=60_000)
    assert page.evaluate("document.body.classList.contains('dark')") == (scheme == "dark")
    page.fill("#template textarea", "MKV[2-4]GF____LLAGW__KDE")        # a span: the posterior chart
    page.fill("#seed :is(input, textarea)", "3")
    set_steps(page, 16)
    fold_off(page)
    page.click("#generate")
    wait_until_done(page)
    assert page.evaluate(READABLE, GENERATE_CHECKS) == []
    page.click("#score-design")
    page.wait_for_function("document.querySelector('#score-summary')?.innerText.includes('ELBO')", timeout=60_000)
    assert page.evaluate(READABLE, SCORE_CHECKS) == []
    context.close()


def test_a_phone_scrolls_only_vertically_and_keeps_the_scores_legible(browser, server):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.set_default_timeout(90_000)
    page.goto(server)
    page.wait_for_selector("#template textarea", timeout=60_000)
    page.fill("#template textarea", "_" * 128)
    set_steps(page, 16)
    fold_off(page)
    page.click("#generate")
    wait_until_done(page)
    width = "[document.documentElement.scrollWidth, window.innerWidth]"
    scroll, inner = page.evaluate(width)
    assert scroll <= inner, "the page scrolls sideways on a phone"
    frames = page.locator("#frames").bounding_box()
    for seq in page.locator("#frames .frame-seq").all():      # a 128-residue design wraps inside its panel
        box = seq.bounding_box()
        assert box["x"] + box["width"] <= frames["x"] + frames["width"] + 0.5
    # a download's name wraps, whole and in order: it was cut to "designs_se….fasta", losing the seed
    # and time, and then, wrapped, read "designs_seed .fasta 1891624811_…", the extension beside its first line
    assert page.locator("#downloads .filename").count() >= 3 and page.evaluate("""
        [...document.querySelectorAll('#downloads .filename')].every(name => {
            const text = document.createRange();
            text.selectNodeContents(name.querySelector('.stem'));
            const lines = text.getClientRects(), last = lines[lines.length - 1];
            const ext = name.querySelector('.ext').getBoundingClientRect();
            const follows = Math.abs(ext.top - last.top) < 2 ? ext.left >= last.right - 1 : ext.top >= last.bottom - 1;
            return lines.length > 1 && follows && name.scrollWidth <= name.clientWidth;
        })""")

    page.get_by_role("tab", name="Score").click()
    page.fill("#score-sequence textarea", SEQUENCE)
    page.click("#score")
    page.locator("#score-heatmap img").first.wait_for(timeout=60_000)
    scroll, inner = page.evaluate(width)
    assert scroll <= inner, "the page scrolls sideways on a phone"
    # The plots keep a legible width, scrolling sideways inside their own panel (shrunk to the screen,
    # the scan's letters were 3 px high); the top substitutions take the full width (they had 160 px).
    for plot in ("#score-track", "#score-heatmap"):
        image, panel = page.locator(f"{plot} img").bounding_box(), page.locator(f"{plot} .matplotlib").bounding_box()
        assert image["width"] >= 600
        assert image["x"] >= panel["x"] - 0.5, "the plot's left part is cut off, out of reach of the scroll"
        assert page.evaluate(f"(p => p.scrollWidth > p.clientWidth)(document.querySelector('{plot} .matplotlib'))")
        hint = page.evaluate(f"getComputedStyle(document.querySelector('{plot}'), '::after').content")
        assert "scroll sideways" in hint, "nothing says that the plot scrolls"
    assert page.locator("#score-top").bounding_box()["width"] >= 0.8 * inner
    page.close()
