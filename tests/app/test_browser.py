"""End to end in real Chromium: `streamlit run app.py` headless on localhost, driven with Playwright,
on the bundled model and its precomputed store (assets/store), as a teacher first meets the app.

It walks the pages in order and fails on any exception element on any page: the training images and
the band histogram; the map, where a single click and a lasso each select samples; the classifier's
per-class evidence; the default guided demo (8 samples toward the class the engine ranks first),
which must give more copies guided than unguided; the precomputed comparison and sweep. It prints
the first paint of a fresh server and the time from Generate to the guided results.

Screenshots go to pytest's temporary folder; to re-take the README's:

    SIDE_SCREENSHOT_DIR=docs/screenshots python -m pytest tests/app/test_browser.py -s
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect, sync_playwright

from benchmarks.app_server import PROJECT, app_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT_S = 90  # server up and first page painted, on 2 loaded cores
STEP_TIMEOUT_MS = 120_000  # any single wait inside the app: nothing heavy runs, everything is precomputed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium; CI installs it)",
    ),
]


def assert_precomputed() -> None:
    """Fail early, with the fix, if the bundled store lacks what the first screens show (the test
    would otherwise wait for minutes of sampling behind the buttons)."""
    from app_support import jobs, state
    from side_core.data import load_training_set
    from side_core.models import load_model
    from side_core.pipeline import BUNDLED_STORE, SWEEP_SCALES, Run

    model = load_model("default", "cpu")
    run = Run(BUNDLED_STORE, model, load_training_set("default", model.channels, model.size))
    compare = state.CompareRequest().config(state.DEFAULT)
    for name, work in [
        ("the surrogate stages", jobs.clusters_with_scores(state.DEFAULT)),
        ("the comparison", jobs.compare(compare)),
        ("the sweep", jobs.sweep(compare, SWEEP_SCALES)),
    ]:
        assert work.stored(run) is not None, (
            f"assets/store lacks {name} of the default configuration: run "
            "`python -m side_core prepare --model default --store assets/store`"
        )


@pytest.fixture
def server(tmp_path):
    """The app on the bundled model, served headless on a free localhost port, with an empty
    writable run store beside the precomputed one."""
    assert_precomputed()
    log = tmp_path / "streamlit.log"
    try:
        with app_server(
            {"SIDE_RUNS": str(tmp_path / "runs"), "SIDE_MODEL": "default", "SIDE_DATA": "default"},
            log_path=log,
            start_timeout_s=START_TIMEOUT_S,
        ) as app:
            yield app.url
    finally:
        print(log.read_text()[-3000:])


def settle(page, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
    """Wait until the script run has finished. Streamlit shows its running indicator only after about
    half a second, so a quick run may never show it: give it a moment to appear, then wait it out."""
    indicator = page.locator('[data-testid="stStatusWidget"]')
    with contextlib.suppress(PlaywrightTimeout):
        indicator.wait_for(state="attached", timeout=1500)
    indicator.wait_for(state="detached", timeout=timeout_ms)


def no_exception(page) -> None:
    """No page may show a traceback."""
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


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
    page.set_viewport_size({"width": 1400, "height": min(max(height, 1000), 6000)})
    page.wait_for_timeout(500)  # charts re-layout to the new size
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name))
    page.set_viewport_size({"width": 1400, "height": 1000})


def metric(page, label: str) -> str:
    card = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return card.locator('[data-testid="stMetricValue"]').inner_text()


def test_a_teacher_walks_through_the_app(server, tmp_path):
    url = server
    shots = Path(os.environ.get("SIDE_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots = shots if shots.is_absolute() else PROJECT / shots
    print(f"\nscreenshots: {shots}", end="")
    expect.set_options(timeout=STEP_TIMEOUT_MS)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_default_timeout(STEP_TIMEOUT_MS)
            started = time.perf_counter()
            page.goto(url, timeout=START_TIMEOUT_S * 1000)

            # 1. Model and data: facts, the training images and the similarity histogram.
            expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(1)
            expect(page.get_by_text("Image size")).to_be_visible()
            print(f"\nfirst paint of a fresh server: {time.perf_counter() - started:.1f} s", end="")
            no_exception(page)
            screenshot(page, shots, "1_model_data.png")

            # 2. Generate and cluster: a single click selects a sample, and so does a lasso.
            go_to(page, "Generate and cluster")
            chart = page.locator('[data-testid="stPlotlyChart"]')
            expect(chart).to_have_count(1)
            no_exception(page)
            point = chart.locator(".scatterlayer .trace:last-child .points path").nth(5)
            point.scroll_into_view_if_needed()
            box = point.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.click(x, y)
            expect(page.get_by_text(re.compile(r"^Selected in the map: 1 "))).to_be_visible()
            captions = page.locator('[data-testid="stImageCaption"]')
            expect(captions.filter(has_text=re.compile(r"^sample #"))).to_have_count(1)
            settle(page)
            page.mouse.move(x, y)  # the modebar shows while the pointer is over the chart
            chart.locator('.modebar-btn[data-title="Lasso Select"]').click()
            page.mouse.move(x - 25, y - 25)
            page.mouse.down()
            for dx, dy in ((25, -25), (25, 25), (-25, 25), (-25, -25)):
                page.mouse.move(x + dx, y + dy, steps=5)
            page.mouse.up()
            expect(page.get_by_text(re.compile(r"^Selected in the map: ([2-9]|\d\d+) "))).to_be_visible()
            expect(page.get_by_role("button", name=re.compile(r"^Guide toward class \d+"))).to_be_visible()
            no_exception(page)
            screenshot(page, shots, "2_generate_cluster.png")

            # 3. Surrogate classifier: per-class evidence from the stored comparison, accuracy vs chance.
            go_to(page, "Surrogate classifier")
            expect(page.get_by_text("How well guidance toward each class extracts")).to_be_visible()
            expect(page.get_by_text("Copies, SIDE-guided")).to_be_visible()
            no_exception(page)
            screenshot(page, shots, "3_classifier.png")

            # 4. The default guided demo: the class the engine ranks first, 8 samples, default settings.
            go_to(page, "Guided extraction")
            no_exception(page)
            started = time.perf_counter()
            page.get_by_role("button", name="Generate").click()
            results = page.get_by_role("heading", name=re.compile(r"^Class \d+ at λ = 4"), level=3)
            results.wait_for()
            print(
                f"\ndefault guided run (8 samples), Generate -> results: {time.perf_counter() - started:.1f} s", end=""
            )
            assert results.bounding_box()["y"] < 1000  # results where the eye is: above the fold
            guided, unguided = metric(page, "Copies, guided"), metric(page, "Copies, unguided")
            print(f"\ncopies guided {guided}, unguided {unguided}", end="")
            assert int(guided.split("/")[0]) > int(unguided.split("/")[0])
            settle(page)
            expect(captions.filter(has_text=re.compile(r"^guided #\d+ · "))).to_have_count(8)
            expect(captions.filter(has_text=re.compile(r"^unguided #\d+ · "))).to_have_count(8)
            expect(captions.filter(has_text=re.compile(r"^train #"))).to_have_count(8 * 3)
            images = page.locator('[data-testid="stImage"] img')
            assert images.evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")  # all loaded
            no_exception(page)
            screenshot(page, shots, "4_guided_extraction.png")

            # 5. Report: the comparison, the whole run and the sweep are precomputed for the bundled model.
            go_to(page, "Report")
            expect(page.get_by_role("table").first).to_be_visible()
            expect(page.get_by_text("Best extractions")).to_be_visible()
            # the whole SIDE run against UnCond, and the sweep, with no click
            expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(2)
            expect(page.get_by_text("The whole SIDE run against UnCond")).to_be_visible()
            expect(page.get_by_text(re.compile(r"AMS high goes from"))).to_be_visible()
            no_exception(page)
            screenshot(page, shots, "5_report.png")

            # 6. A shared link to a page opens that page, with no "Page not found" dialog.
            page.goto(f"{url}/guided_extraction")
            page.get_by_role("heading", name="Guided extraction", level=1).wait_for()
            settle(page)
            expect(page.get_by_text("Page not found")).to_have_count(0)
            no_exception(page)
        finally:
            page.screenshot(path=str(tmp_path / "last_state.png"))  # for a failing run
            browser.close()
