"""A real browser: Playwright drives Debian's Chromium against ``python app.py`` on a free port.

Needs Chromium (``apt-get install chromium``) and, for the 3D view offline, the npm package
``3dmol`` (``npm ci``). Both are installed by ``.ci/run``; in CI a missing one is a failure, locally
a skip that says what to install.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sedd import render
from studio_helpers import free_port, save_tiny_esmfold, tiny_checkpoint_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _require(ok: bool, what: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing; .ci/run must install it")
        pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require(Path(CHROMIUM).exists(), "Chromium (apt-get install chromium)")
    _require(render.LOCAL_3DMOL.is_file(), "the npm package 3dmol (npm ci)")
    tmp = tmp_path_factory.mktemp("browser")
    ckpt, esmfold = tiny_checkpoint_dir(tmp / "ckpt"), save_tiny_esmfold(tmp / "esmfold")
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    log = open(tmp / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--checkpoint", str(ckpt), "--esmfold", str(esmfold),
                             "--fold", "ESMFold (local)"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"python app.py did not serve {url}:\n{(tmp / 'app.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#template textarea", timeout=60_000)
    # Record every denoising step the page shows, as it shows it.
    page.evaluate("""() => {
        window.__steps = [];
        new MutationObserver(() => {
            const f = document.querySelector('#frames .frame');
            if (f && window.__steps.at(-1) !== f.dataset.step) window.__steps.push(f.dataset.step);
        }).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")
    yield page
    page.close()


def test_generate_streams_frames_then_designs_and_3d_view(page, tmp_path):
    page.fill("#template textarea", ">demo\nMKV__GF_R____LLAGW__KDE" + "_" * 60)
    page.fill("#seed input", "7")
    page.click("#generate")
    page.wait_for_selector("#structure iframe", timeout=120_000)
    steps = page.evaluate("window.__steps")
    assert len(steps) >= 3 and steps[-1] == "128", f"frames seen: {steps}"
    assert [int(s) for s in steps] == sorted(int(s) for s in steps)
    fasta = page.input_value("#fasta textarea")
    assert fasta.count(">design_") == 4 and "(step" not in fasta
    table = page.locator("#designs").inner_text()
    assert all(f"design_{i}" in table for i in range(1, 5))
    assert page.input_value("#seed-used input") == "7"
    canvas = page.frame_locator("#structure iframe").locator("canvas")
    canvas.wait_for(timeout=30_000)
    assert canvas.bounding_box()["height"] > 200
    assert page.locator("#plddt-plot img, #plddt-plot svg, #plddt-plot canvas").count() >= 1
    time.sleep(1)   # let 3Dmol draw
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


def test_script_in_a_template_shows_as_text_and_runs_nothing(page):
    page.fill("#template textarea", "<script>window.__pwned = 1</script>MKV__")
    page.click("#generate")
    toast = page.get_by_text("invalid character '<' at position 1")
    toast.first.wait_for(timeout=30_000)
    assert page.evaluate("window.__pwned") is None
    # and the page still works
    page.fill("#template textarea", "MKV__GF_R")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#fasta textarea').value.includes('>design_4')",
                           timeout=60_000)


def test_stop_halts_the_stream(page):
    page.fill("#template textarea", "_" * 120)
    page.fill("#seed input", "1")
    # 1024 steps over 4 designs takes long enough to stop midway
    steps_box = page.locator("input[aria-label='number input for Steps']")
    steps_box.fill("1024")
    steps_box.press("Enter")
    page.click("#generate")
    page.wait_for_function("window.__steps.length >= 3", timeout=60_000)
    page.click("#stop")
    time.sleep(1.0)
    seen = page.evaluate("window.__steps.length")
    time.sleep(2.0)
    after = page.evaluate("window.__steps")
    assert len(after) == seen and int(after[-1]) < 1024, f"frames kept coming after Stop: {after}"
    assert "Stopped" in page.inner_text("#status")
