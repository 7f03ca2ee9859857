"""End to end in real Chromium: `streamlit run app.py` headless on localhost, driven with Playwright.

It walks the pages in order, generates and clusters, selects a point in the map, trains the
classifier, picks a class, generates guided samples (checking that sample and neighbour images
appear), runs the report and a sweep, and saves a screenshot of each page.

By default it runs the tiny test model from scratch and saves the screenshots in pytest's temporary
folder, so that a test run never overwrites the README's. To re-take the README's screenshots
(docs/screenshots/) with the bundled model and its precomputed store:

    SIDE_SCREENSHOT_MODEL=default python -m pytest tests/app/test_browser.py -s

SIDE_SCREENSHOT_DATA and SIDE_SCREENSHOT_N_DATA set the training set (default 'default', all images);
SIDE_SCREENSHOT_DIR saves the screenshots elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
PROJECT = Path(__file__).resolve().parents[2]
README_SHOTS = PROJECT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT_S = 90  # server up and first page painted, on 2 loaded cores
STEP_TIMEOUT_MS = 180_000  # any single wait inside the app (a generation, a training)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium; CI installs it)",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout_s} s")


@pytest.fixture
def server(tiny_model_dir, tiny_data_dir, tmp_path):
    """(url, tiny): the app served headless on a free localhost port."""
    screenshot_model = os.environ.get("SIDE_SCREENSHOT_MODEL")
    env = {**os.environ, "SIDE_RUNS": str(tmp_path / "runs")}
    if screenshot_model:
        env.update(
            SIDE_MODEL=screenshot_model,
            SIDE_DATA=os.environ.get("SIDE_SCREENSHOT_DATA", "default"),
            SIDE_N_DATA=os.environ.get("SIDE_SCREENSHOT_N_DATA", ""),
        )
        env.pop("SIDE_STORE", None)  # the shipped assets/store
    else:
        env.update(
            SIDE_MODEL=str(tiny_model_dir),
            SIDE_DATA=str(tiny_data_dir),
            SIDE_N_DATA="",
            SIDE_STORE=str(tmp_path / "empty-store"),  # everything is computed from the buttons
        )
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless=true",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--server.fileWatcherType=none",
            "--browser.gatherUsageStats=false",
        ],
        cwd=PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, START_TIMEOUT_S)
        yield url, not screenshot_model
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        print((tmp_path / "streamlit.log").read_text()[-3000:])


def settle(page, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
    """Wait until the script run has finished. Streamlit shows its running indicator only after about
    half a second, so a quick run may never show it: give it a moment to appear, then wait it out.
    Tests still wait for the content they expect; this only keeps screenshots from catching a run."""
    indicator = page.locator('[data-testid="stStatusWidget"]')
    with contextlib.suppress(PlaywrightTimeout):
        indicator.wait_for(state="attached", timeout=1500)
    indicator.wait_for(state="detached", timeout=timeout_ms)


def go_to(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, level=1).wait_for()
    settle(page)


def screenshot(page, folder: Path, name: str) -> None:
    """The whole page: the viewport is stretched to the main column's height (it scrolls inside)."""
    settle(page)
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 1000; }"
    )
    page.set_viewport_size({"width": 1400, "height": min(max(height, 900), 6000)})
    page.wait_for_timeout(500)  # charts re-layout to the new size
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name))
    page.set_viewport_size({"width": 1400, "height": 1000})


def set_number(page, label: str, value: int | float) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")  # commit without submitting the form


def test_walk_through_the_app_in_chromium(server, tmp_path):
    url, tiny = server
    target = int(os.environ.get("SIDE_SCREENSHOT_CLASS", "1"))  # the surrogate class to guide toward
    shots = Path(os.environ.get("SIDE_SCREENSHOT_DIR") or (tmp_path / "screenshots" if tiny else README_SHOTS))
    print(f"\nscreenshots: {shots}", end="")
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    clock = time.perf_counter()

    def lap(what: str) -> None:
        nonlocal clock
        print(f"\n{what}: {time.perf_counter() - clock:.1f} s", end="")
        clock = time.perf_counter()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(url, timeout=START_TIMEOUT_S * 1000)

            # 1. Model and data: facts, the training images and the similarity histogram.
            expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(1)
            expect(page.get_by_text("Image size")).to_be_visible()
            lap("first paint of the first page (a fresh server)")
            settle(page)
            screenshot(page, shots, "1_model_data.png")
            lap("model and data")

            # 2. Generate and cluster (tiny budgets for the tiny model; the bundled one is precomputed).
            go_to(page, "Generate and cluster")
            if tiny:
                set_number(page, "Samples N_syn", 32)
                set_number(page, "Clusters K", 3)
                page.locator('[data-testid="stSlider"]').filter(has_text="Cohesion tau").get_by_role("slider").focus()
                page.keyboard.press("Home")  # tau = 0: keep every cluster of the untrained model
                page.get_by_role("button", name="Generate and cluster").click()
                settle(page)
            expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(1)
            expect(page.get_by_text("train #").first).to_be_visible()
            # Lassoing a point in the map shows it next to its nearest training images.
            point = page.locator('[data-testid="stPlotlyChart"] .scatterlayer .points path').first
            point.scroll_into_view_if_needed()
            box = point.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x - 10, y - 10)
            page.mouse.down()
            for dx, dy in ((10, -10), (10, 10), (-10, 10), (-10, -10)):
                page.mouse.move(x + dx, y + dy, steps=4)
            page.mouse.up()
            expect(page.get_by_text(re.compile(r"^Selected in the map: \d+"))).to_be_visible()
            captions = page.locator('[data-testid="stImageCaption"]')
            expect(captions.filter(has_text=re.compile(r"^sample #")).first).to_be_visible()
            screenshot(page, shots, "2_generate_cluster.png")
            lap("generate and cluster")

            # 3. Surrogate classifier.
            go_to(page, "Surrogate classifier")
            if tiny:
                set_number(page, "Training steps", 30)
                page.get_by_role("button", name="Train", exact=True).click()
                settle(page)
            expect(page.get_by_text("Held-out accuracy per timestep quartile")).to_be_visible()
            screenshot(page, shots, "3_classifier.png")
            lap("classifier")

            # 4. Guided extraction: pick a class, generate 8 samples at the default steps.
            go_to(page, "Guided extraction")
            page.locator('[data-testid="stButtonGroup"]').get_by_text(f"class {target}", exact=True).click()
            settle(page)
            started = time.perf_counter()
            page.get_by_role("button", name="Generate").click()
            page.get_by_text("predicted x0 after step").first.wait_for()
            first_grid_s = time.perf_counter() - started
            page.get_by_role("heading", name=f"Class {target} at λ", level=3).wait_for()
            results_s = time.perf_counter() - started
            print(f"\nGenerate -> first live grid {first_grid_s:.1f} s, -> guided results {results_s:.1f} s")
            settle(page)
            captions = page.locator('[data-testid="stImageCaption"]')
            expect(captions.filter(has_text=re.compile(r"^guided #"))).to_have_count(8)
            expect(captions.filter(has_text=re.compile(r"^unguided #"))).to_have_count(8)
            expect(captions.filter(has_text=re.compile(r"^train #"))).to_have_count(8 * 3)
            images = page.locator('[data-testid="stImage"] img')
            assert images.count() >= 8 * 5  # each row: unguided, guided, three training images
            assert images.evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")  # all loaded
            screenshot(page, shots, "4_guided_extraction.png")
            lap("guided extraction")

            # 5. Report: the three methods at equal N_G, then a small sweep.
            go_to(page, "Report")
            set_number(page, "N_G (samples per method)", 64)
            page.get_by_role("button", name="Compare").click()
            page.get_by_text("Best extractions").wait_for()
            settle(page)
            expect(page.get_by_role("table").first).to_be_visible()
            page.get_by_label("Guidance scales").fill("0, 2, 8")
            page.get_by_role("button", name="Sweep").click()
            settle(page)
            expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(1)
            screenshot(page, shots, "5_report.png")
            lap("report")
            assert not page.locator('[data-testid="stException"]').count()
        finally:
            page.screenshot(path=str(tmp_path / "last_state.png"))  # for a failing run
            browser.close()
