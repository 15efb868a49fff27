"""Retake the README's two screenshots: mid-denoising, and the final page with the 3D view.

    python assets/take_screenshots.py --esmfold DIR_OR_HUB_ID [--checkpoint checkpoints/acyp]

Starts ``python app.py`` on a free port and drives Debian's Chromium with Playwright. Where the
real ESMFold weights cannot be downloaded, pass a directory holding a stand-in
``EsmForProteinFolding`` (its structures are then meaningless; the README says so).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = "#seed :is(input, textarea)"
TEMPLATE = "_" * 15 + "GKVQGVFFR" + "_" * 74          # the catalytic motif kept, all else designed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "acyp"))
    p.add_argument("--esmfold", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--seed", default="7")
    a = p.parse_args()
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py", "--checkpoint", a.checkpoint, "--esmfold", a.esmfold,
                               "--fold", "ESMFold (local)"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=a.chromium, args=["--no-sandbox"])   # WebGL (software) needs the GPU process
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url)
            page.wait_for_selector("#template textarea", timeout=60_000)
            page.fill("#template textarea", TEMPLATE)
            page.fill(SEED, a.seed)
            page.locator("input[aria-label='number input for Number of designs']").fill("6")
            page.locator("input[aria-label='number input for Steps']").fill("512")
            page.click("#generate")
            page.wait_for_function("(() => { const f = document.querySelector('#frames .frame');"
                                   " return f && +f.dataset.step >= 200; })()", timeout=120_000)
            page.screenshot(path=str(ROOT / "assets" / "screenshot-denoising.png"), full_page=True)
            page.wait_for_selector("#structure iframe", timeout=300_000)
            page.frame_locator("#structure iframe").locator("canvas").wait_for(timeout=60_000)
            page.locator("#structure iframe").scroll_into_view_if_needed()   # 3Dmol draws only when visible
            time.sleep(4)
            # the viewport, not the full page: a full-page capture resizes the page and the
            # WebGL canvas comes back blank
            page.screenshot(path=str(ROOT / "assets" / "screenshot-final.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("wrote assets/screenshot-denoising.png and assets/screenshot-final.png")


if __name__ == "__main__":
    main()
