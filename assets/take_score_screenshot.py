"""Retake the README's screenshot of the Score tab: human ACYP1 scored by the bundled model.

    python assets/take_score_screenshot.py [--checkpoint checkpoints/acyp]

Starts ``python app.py`` (folding off) on a free port, opens the Score tab with Debian's Chromium
through Playwright, picks the first example sequence, scores it and saves
``assets/screenshot-score.png``.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "acyp"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--out", default=str(ROOT / "assets" / "screenshot-score.png"))
    a = p.parse_args()
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py", "--checkpoint", a.checkpoint, "--fold", "off"], cwd=ROOT, env=env)
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
            browser = pw.chromium.launch(executable_path=a.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#template textarea", timeout=60_000)
            page.get_by_role("tab", name="Score").click()
            page.get_by_text("ACYP1 (human, UniProt P07311)").click()
            page.wait_for_function("document.querySelector('#score-sequence textarea').value.includes('MAEG')")
            page.click("#score")
            page.wait_for_function("document.querySelector('#score-summary').innerText.includes('ELBO')",
                                   timeout=120_000)
            page.locator("#score-heatmap img").first.wait_for(timeout=60_000)
            time.sleep(1)
            page.screenshot(path=a.out, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
