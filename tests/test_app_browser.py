"""End to end in a real browser: `streamlit run streamlit_app.py`, driven by Playwright in Debian's
chromium (never a downloaded browser). Mine a small folder, pick a unit, render, probe; images and
the verdict must appear and the page must show no exception. Set VIZNEURON_SCREENSHOT=PATH to keep
the screenshot (the docs' picture comes from `VIZNEURON_SCREENSHOT=docs/assets/app.png`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import CHROMIUM, PER_CLASS, first_unit
from helpers import CHROMIUM_FLAGS as FLAGS

pytest.importorskip("streamlit")
playwright = pytest.importorskip("playwright.sync_api")
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(tmp_path, cifar_folder):
    port = free_port()
    log = (tmp_path / "streamlit.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--", "--root", str(cifar_folder.parent), "--home", str(tmp_path / "home")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"streamlit did not start: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def idle(page) -> None:
    """Wait for the script run that the last interaction started to finish."""
    page.wait_for_timeout(500)
    page.locator('[data-testid="stApp"]:not([data-test-script-state="running"])').wait_for(timeout=300_000)


def drive(page, app_url: str, cifar_folder: Path, tmp_path: Path) -> Path:
    """Mine, pick channel 5, render, probe; returns the screenshot's path."""
    page.goto(app_url)
    page.get_by_role("heading", name=first_unit()).wait_for(timeout=120_000)
    # the first screen answers the question: the unit's verdict and driving concepts are in view
    verdict = page.get_by_text(re.compile("^Polysemantic on the bundled sample")).first
    verdict.wait_for(timeout=120_000)
    box = verdict.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 900, box  # above the fold of a 1400x900 screen

    # Data view: mine the small labelled folder
    page.locator('[data-testid="stRadio"] label').filter(has_text=re.compile("^Data$")).click()
    page.get_by_role("heading", name="Mine a folder for dataset examples").wait_for(timeout=120_000)
    idle(page)
    folder = page.get_by_label("Image folder (class subfolders become labels), list file, or hf-dataset:PATH "
                               "(a Hub dataset on disk)")
    folder.fill(str(cifar_folder))
    folder.press("Enter")
    idle(page)
    page.get_by_role("button", name="Mine").click()
    page.get_by_text(f"Mined {10 * PER_CLASS} images").wait_for(timeout=300_000)

    # back to the neuron view; pick channel 5 with the searchable picker
    page.locator('[data-testid="stRadio"] label').filter(has_text=re.compile("^Neuron$")).click()
    page.get_by_role("heading", name="Renders").wait_for(timeout=120_000)
    idle(page)
    picker = page.get_by_role("combobox", name=re.compile("^Channel"))
    picker.click()
    picker.fill("5")
    page.get_by_role("option", name=re.compile(r"^5\b")).first.click()
    page.get_by_role("heading", name="layer3:5").wait_for(timeout=60_000)
    idle(page)

    # render with the default settings: four diverse samples appear
    page.get_by_role("button", name="Render", exact=True).click()
    page.get_by_text(re.compile(r"^activation -?\d")).first.wait_for(timeout=300_000)
    idle(page)
    assert page.get_by_text(re.compile(r"^activation -?\d")).count() == 4

    # probe against the folder's ten classes: the verdict and its evidence appear
    data = page.get_by_label("Labelled folder (class subfolders)")
    data.fill(str(cifar_folder))
    data.press("Enter")
    idle(page)
    page.get_by_role("button", name="Probe", exact=True).click()
    page.get_by_text(re.compile("^Verdict:")).wait_for(timeout=300_000)
    idle(page)

    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stImage"] img').count() >= 4 + 16  # renders + dataset examples
    shot = Path(os.environ.get("VIZNEURON_SCREENSHOT", tmp_path / "app.png"))
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))

    # a second model: the layer box follows it (no stale layer3), and the examples say the 32 px
    # sample says little about a 224 px model
    page.get_by_text("spec", exact=True).click()
    idle(page)
    spec = page.get_by_role("textbox", name="Model spec")
    spec.fill("torchvision:resnet18?weights=none")
    spec.press("Enter")
    page.get_by_role("heading", name=re.compile("^layer4:")).wait_for(timeout=300_000)
    idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    layer_box = sidebar.get_by_role("combobox", name=re.compile("^Layer"))
    assert layer_box.input_value() == "layer4 (512 channels, 7x7)", layer_box.input_value()
    assert page.get_by_text(re.compile("^Cannot")).count() == 0  # nothing kept from the last model misleads
    page.get_by_text(re.compile("upsampled to this model's 224x224")).wait_for(timeout=60_000)
    assert sidebar.get_by_text("300 images, 512 units, 0 skipped").count() == 1  # layer4 alone was mined
    assert page.locator('[data-testid="stException"]').count() == 0
    return shot


def test_browser_mine_pick_render_probe(app_url, tmp_path, cifar_folder):
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium package (apt-get install chromium; .ci/run installs it)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2600})
        try:
            shot = drive(page, app_url, cifar_folder, tmp_path)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))  # what the page showed, for the report
            print(f"page at failure: {tmp_path / 'failure.png'}")
            raise
        browser.close()
    assert shot.stat().st_size > 10_000
