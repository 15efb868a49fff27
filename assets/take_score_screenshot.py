"""Retake the README's screenshot of the Score tab: human ACYP1 scored by the bundled model.

    python assets/take_score_screenshot.py [--checkpoint checkpoints/acyp]

Starts ``python app.py`` with folding off (``app.spawn``: it binds the first free port from 7860
on), opens the Score tab with Debian's Chromium through Playwright, picks the first example
sequence, scores it and saves ``assets/screenshot-score.png`` (the full page).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))                    # run from a checkout without installing

import app  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "acyp"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--out", default=str(ROOT / "assets" / "screenshot-score.png"))
    a = p.parse_args()
    log = Path(tempfile.mkdtemp()) / "app.log"
    server, url = app.spawn(["--checkpoint", a.checkpoint, "--fold", "off"], log)
    try:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=a.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#template textarea", timeout=60_000)
            page.get_by_role("tab", name="Score").click()
            page.get_by_text(app.SCORE_EXAMPLES[0]["label"]).click()
            page.wait_for_function("document.querySelector('#score-sequence textarea').value.includes('MAEG')")
            page.click("#score")
            page.wait_for_function("document.querySelector('#score-summary').innerText.includes('ELBO')",
                                   timeout=120_000)
            page.locator("#score-heatmap img").first.wait_for(timeout=60_000)
            time.sleep(1)                        # let the figures finish painting
            page.screenshot(path=a.out, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
