"""The browser tests' shared pieces: Chromium, ``python app.py`` served with tiny models, a fresh page,
and the steps a user takes on it (registered as a plugin by conftest.py, so every test module gets the
fixtures; import the helpers from here).

Needs Chromium (``apt-get install chromium``; another binary via ``$SEDD_CHROMIUM``) and, for the
3D view offline, the npm package ``3dmol`` (``npm ci``). Both are installed by ``.ci/run``; in CI
(``CI=true``) a missing one is a failure, locally a skip that says what to install.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from studio_helpers import save_tiny_esmfold, tiny_checkpoint_dir

SEED = "#seed :is(input, textarea)"
SEED_USED = "#seed-used :is(input, textarea)"
CHROMIUM = os.environ.get("SEDD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def require(ok: bool, what: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing; .ci/run must install it")
        pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module")
def browser():
    require(Path(CHROMIUM).exists(), "Chromium (apt-get install chromium)")   # before launching it
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    """``python app.py`` itself, with a tiny score model and a tiny random ESMFold."""
    import app
    from sedd import render

    require(render.LOCAL_3DMOL.is_file(), "the npm package 3dmol (npm ci)")
    tmp = tmp_path_factory.mktemp("browser")
    ckpt, esmfold = tiny_checkpoint_dir(tmp / "ckpt"), save_tiny_esmfold(tmp / "esmfold")
    try:
        proc, url = app.spawn(["--checkpoint", str(ckpt), "--esmfold", str(esmfold), "--fold", "ESMFold (local)"],
                              log=tmp / "app.log", env={"GRADIO_SERVER_NAME": "127.0.0.1", "OMP_NUM_THREADS": "1"})
    except RuntimeError as e:
        pytest.fail(str(e))
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # Every wait is for a condition, so a long limit costs nothing when the page is quick; on a
    # loaded 2-core machine (the tiny ESMFold, 3Dmol's first render) Playwright's 30 s is too short.
    page.set_default_timeout(90_000)
    page.goto(url)
    page.wait_for_selector("#template textarea", timeout=60_000)
    # Record every denoising step the page shows, as it shows it.
    page.evaluate("""() => {
        window.__steps = [];
        new MutationObserver(() => {
            const f = document.querySelector('#frames .frame');
            if (f && window.__steps.at(-1) !== f.dataset.step) window.__steps.push(f.dataset.step);
        }).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")
    return page


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server)
    yield page
    page.close()


def fold_off(page) -> None:
    page.get_by_label("off", exact=True).check()


def set_steps(page, steps: int) -> None:
    box = page.locator("input[aria-label='number input for Steps']")
    box.fill(str(steps))
    box.press("Enter")


def wait_until_done(page, previous_seed: str = "") -> tuple[str, str]:
    """Wait for a run other than the one with ``previous_seed`` to finish (denoised and folded);
    return (seed used, FASTA)."""
    page.wait_for_function("""prev => {
        const m = document.querySelector('#status').innerText.match(/in \\d+ steps \\(seed (\\d+)[,)]/);
        return m && m[1] !== prev && !document.querySelector('#status').innerText.includes('…');
    }""", arg=previous_seed, timeout=120_000)
    return page.input_value(SEED_USED), page.input_value("#fasta textarea")
