"""The README's Data-page screenshot, on the CIFAR-10 zip (digits has no near-duplicates to show):

    classlab check ../shared/data/cifar10/cifar10-images.zip --runs-dir /tmp/shots-runs
    python docs/cifar_screenshots.py /tmp/shots-runs/<the check run>
"""

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

run = Path(sys.argv[1]).resolve()
server = subprocess.Popen([sys.executable, "-m", "classlab", "serve", "--port", "0", "--runs-dir", str(run.parent)],
                          stdout=subprocess.PIPE, text=True)
url = re.search(r"(http://\S+)/", server.stdout.readline()).group(1)
try:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/runs/{run.name}")
        page.locator("h2:has-text('across splits')").evaluate("h => { h.scrollIntoView(); window.scrollBy(0, -330); }")
        page.wait_for_load_state("networkidle")
        page.screenshot(path="/tmp/workbench-data.png")
        browser.close()
finally:
    server.terminate()
Image.open("/tmp/workbench-data.png").convert("RGB").quantize(128).save(
    Path(__file__).parent / "workbench-data.png", optimize=True)
