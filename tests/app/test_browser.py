"""End to end in real Chromium: `streamlit run app.py` headless on localhost, driven with Playwright,
on the bundled model and its precomputed store (assets/store), as a teacher first meets the app.

It walks the pages in order and checks what each page claims: no exception element anywhere, no
request to any host but the app's own, and no metric label, value or button label cut short at
1400 px. The map: a click rings the sample and moves the class picker to its class, and a lasso
selects several. The classifier page: the heading's target classes are chance's, and each accuracy
metric is the mean of the chart's points in the shaded window. The guided page: the default request
(8 samples toward the class the engine ranks first) lands in its class and copies more than the
unguided samples; the weakest-class button does what its caption says (few land; copies of the faces
the model draws most). The report: the comparison, the whole run and the sweep, and its downloads,
which hold the screen's table (Filter's row included) and only high-band pairs. It prints the first
paint of a fresh server and the time from Generate to the guided results.

Screenshots go to pytest's temporary folder; to re-take the README's:

    SIDE_SCREENSHOT_DIR=docs/screenshots python -m pytest tests/app/test_browser.py -s
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

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
    from side_core.models import BUNDLED_STORE, load_model
    from side_core.pipeline import SWEEP_SCALES
    from side_core.run import Run

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


def metric_card(page, label: str):
    """The metric whose label is exactly ``label``."""
    return page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]').get_by_text(label, exact=True)
    )


def metric(page, label: str) -> str:
    return metric_card(page, label).locator('[data-testid="stMetricValue"]').inner_text()


def fraction(value: str) -> tuple[int, int]:
    """'7 / 8' -> (7, 8)."""
    done, total = value.split("/")
    return int(done), int(total)


# Every element of a metric's label, value and delta, and every button label, whose text is wider
# than its box: Streamlit cuts such text with an ellipsis.
CUT_SHORT = """() => {
    const boxes = document.querySelectorAll(
        '[data-testid="stMetricLabel"], [data-testid="stMetricValue"], [data-testid="stMetricDelta"], button');
    const cut = [];
    for (const box of boxes) {
        for (const el of [box, ...box.querySelectorAll('*')]) {
            if (el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1 && el.innerText.trim()) {
                cut.push(el.innerText.trim());
                break;
            }
        }
    }
    return cut;
}"""


def nothing_cut_short(page) -> None:
    """No metric and no button shows its text cut short (at the test's 1400 px)."""
    settle(page)
    assert page.evaluate(CUT_SHORT) == []


def chart_data(page, index: int) -> list[dict]:
    """The traces of the page's index-th Plotly chart, as the browser holds them."""
    return page.evaluate(
        "(i) => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')[i]._fullData"
        ".map(t => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || []),"
        " customdata: t.customdata ? Array.from(t.customdata) : null}))",
        index,
    )


def download(page, label: str) -> bytes:
    with page.expect_download() as started:
        page.get_by_role("button", name=label).click()
    return Path(started.value.path()).read_bytes()


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def test_a_teacher_walks_through_the_app(server, tmp_path):
    url = server
    shots = Path(os.environ.get("SIDE_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots = shots if shots.is_absolute() else PROJECT / shots
    print(f"\nscreenshots: {shots}", end="")
    expect.set_options(timeout=STEP_TIMEOUT_MS)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        outside = []  # every request to a host other than this machine's
        context.on(
            "request",
            lambda r: (
                outside.append(r.url)
                if urlparse(r.url).scheme in ("http", "https", "ws", "wss")
                and urlparse(r.url).hostname not in LOCAL_HOSTS
                else None
            ),
        )
        page = context.new_page()
        try:
            page.set_default_timeout(STEP_TIMEOUT_MS)
            started = time.perf_counter()
            page.goto(url, timeout=START_TIMEOUT_S * 1000)

            # 1. Model and data: facts, the training images and the similarity histogram.
            expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(1)
            expect(page.get_by_text("Image size")).to_be_visible()
            print(f"\nfirst paint of a fresh server: {time.perf_counter() - started:.1f} s", end="")
            no_exception(page)
            nothing_cut_short(page)
            assert outside == [], outside  # first paint: nothing left the machine
            screenshot(page, shots, "1_model_data.png")

            # 2. Generate and cluster: a click rings a sample and moves the class picker to its class;
            # a lasso selects several.
            go_to(page, "Generate and cluster")
            chart = page.locator('[data-testid="stPlotlyChart"]')
            expect(chart).to_have_count(1)
            no_exception(page)
            nothing_cut_short(page)
            point = chart.locator(".scatterlayer .trace:last-child .points path").nth(5)
            point.scroll_into_view_if_needed()
            box = point.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.click(x, y)
            expect(page.get_by_text(re.compile(r"^Selected in the map: 1 "))).to_be_visible()
            captions = page.locator('[data-testid="stImageCaption"]')
            expect(captions.filter(has_text=re.compile(r"^sample #"))).to_have_count(1)
            settle(page)
            sample, label = re.match(
                r"sample #(\d+) · (.+)$", captions.filter(has_text=re.compile(r"^sample #")).inner_text()
            ).groups()
            ring = page.evaluate(
                "() => { const d = document.querySelector('.js-plotly-plot')._fullData; const t = d[d.length - 1];"
                " return {name: t.name, ids: Array.from(t.customdata).map(c => c[0])}; }"
            )
            assert ring == {"name": "selected", "ids": [int(sample)]}  # ringed on top of the map
            picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="outlined in the map")
            if label != "background":  # the class picker follows the click
                expect(picker.get_by_role("combobox")).to_have_value(re.compile(rf"^{label} · "))
                expect(page.get_by_role("button", name=f"Guide toward {label}")).to_be_visible()
            screenshot(page, shots, "2_generate_cluster.png")  # one sample ringed, its class picked
            ringed = chart.locator(".scatterlayer .trace:last-child .points path").first  # the same sample
            ringed.scroll_into_view_if_needed()
            box = ringed.bounding_box()  # found again: the screenshot resized the window
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
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

            # 3. Surrogate classifier: one definition of accuracy on the whole panel.
            go_to(page, "Surrogate classifier")
            expect(page.get_by_text("How well guidance toward each class extracts")).to_be_visible()
            expect(page.get_by_text("Copies, SIDE-guided")).to_be_visible()
            heading = page.get_by_role("heading", name=re.compile(r"^Held-out accuracy among the \d+ target classes"))
            n_targets = int(re.search(r"among the (\d+)", heading.inner_text()).group(1))
            assert metric(page, "Chance") == f"{1 / n_targets:.1%}"
            expect(metric_card(page, "Chance")).to_contain_text(f"1 in {n_targets} classes")
            traces = {t["name"]: t for t in chart_data(page, 1)}
            for method, name in (("SIDE", "SIDE (time-dependent)"), ("Cond", "Cond (time-blind)")):
                inside = [v for t, v in zip(traces[name]["x"], traces[name]["y"], strict=True) if t <= 249]
                assert metric(page, f"{method}, t 0-249") == f"{sum(inside) / len(inside):.0%}", method
            no_exception(page)
            nothing_cut_short(page)
            screenshot(page, shots, "3_classifier.png")

            # 4. The default guided demo (the class the engine ranks first, 8 samples), then the weakest
            # class: each shows what the page says it shows.
            go_to(page, "Guided extraction")
            no_exception(page)
            nothing_cut_short(page)
            started = time.perf_counter()
            page.get_by_role("button", name="Generate").click()
            results = page.get_by_role("heading", name=re.compile(r"^Class \d+ at λ = 4"), level=3)
            results.wait_for()
            print(
                f"\ndefault guided run (8 samples), Generate -> results: {time.perf_counter() - started:.1f} s", end=""
            )
            assert results.bounding_box()["y"] < 1000  # results where the eye is: above the fold
            best = int(re.match(r"Class (\d+)", results.inner_text()).group(1))
            guided, unguided = metric(page, "Copies, guided"), metric(page, "Copies, unguided")
            landed, n = fraction(metric(page, f"Landed in class {best}"))
            print(f"\nclass {best}: landed {landed}/{n}, copies guided {guided}, unguided {unguided}", end="")
            assert fraction(guided)[0] > fraction(unguided)[0]
            assert 4 * landed >= 3 * n
            settle(page)
            expect(captions.filter(has_text=re.compile(r"^guided #\d+ · "))).to_have_count(8)
            expect(captions.filter(has_text=re.compile(r"^unguided #\d+ · "))).to_have_count(8)
            expect(captions.filter(has_text=re.compile(r"^train #"))).to_have_count(8 * 3)
            images = page.locator('[data-testid="stImage"] img')
            assert images.evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")  # all loaded
            no_exception(page)
            nothing_cut_short(page)
            screenshot(page, shots, "4_guided_extraction.png")

            weak_button = page.get_by_role("button", name=re.compile(r"^Try the weakest class \(\d+\)"))
            weak = int(re.search(r"\((\d+)\)", weak_button.inner_text()).group(1))
            expect(page.get_by_text(re.compile(rf"^Class {weak}: .*deepest memorized basins"))).to_be_visible()
            weak_button.click()
            settle(page)
            page.get_by_role("button", name="Generate").click()
            page.get_by_role("heading", name=re.compile(rf"^Class {weak} at λ = 4"), level=3).wait_for()
            settle(page)
            landed, n = fraction(metric(page, f"Landed in class {weak}"))
            copies = fraction(metric(page, "Copies, guided"))[0]
            faces = int(metric(page, "Faces copied, guided"))
            print(f"\nweakest class {weak}: landed {landed}/{n}, copies {copies}, of {faces} faces", end="")
            assert 4 * landed <= n and 2 * copies >= n and faces <= copies // 2
            expect(
                page.get_by_text(re.compile(rf"^{landed} of {n} guided samples .*deepest memorized basins"))
            ).to_be_visible()
            no_exception(page)
            nothing_cut_short(page)

            # 5. Report: the comparison, the whole run and the sweep are precomputed for the bundled model;
            # the downloads hold what the screen shows.
            go_to(page, "Report")
            table = page.get_by_role("table").first
            expect(table).to_be_visible()
            expect(page.get_by_text("Best extractions")).to_be_visible()
            # the whole SIDE run against UnCond, and the sweep, with no click
            expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(2)
            expect(page.get_by_text("The whole SIDE run against UnCond")).to_be_visible()
            expect(page.get_by_text(re.compile(r"AMS high goes from"))).to_be_visible()
            no_exception(page)
            nothing_cut_short(page)
            screen = [
                [cell.strip() for cell in row.split("\t")]
                for row in table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.innerText)")
            ]
            rows = list(csv.DictReader(io.StringIO(download(page, "Table (CSV)").decode())))
            assert [r["method"] for r in rows] == [shown[0] for shown in screen] == ["uncond", "cond", "side", "filter"]
            for row, shown in zip(rows, screen, strict=True):
                assert shown[-4:] == [
                    row["distinct_high"],
                    row["drawn_in_all"],
                    f"{float(row['distinct_per_1000_drawn']):.1f}",
                    f"{row['landed_in_target_percent']}%" if row["landed_in_target_percent"] else "-",
                ]
            high = float(
                re.search(r"high ≥ (\d\.\d+)", page.get_by_text(re.compile("^AMS and UMS")).inner_text()).group(1)
            )
            names = zipfile.ZipFile(io.BytesIO(download(page, "Copies, high band (ZIP)"))).namelist()
            assert names and all(float(n.split("_sim")[1].split("_")[0]) >= high for n in names)
            screenshot(page, shots, "5_report.png")

            # 6. A shared link to a page opens that page, with no "Page not found" dialog.
            page.goto(f"{url}/guided_extraction")
            page.get_by_role("heading", name="Guided extraction", level=1).wait_for()
            settle(page)
            expect(page.get_by_text("Page not found")).to_have_count(0)
            no_exception(page)
            assert outside == [], outside  # the whole walk: nothing left the machine
        finally:
            page.screenshot(path=str(tmp_path / "last_state.png"))  # for a failing run
            browser.close()
