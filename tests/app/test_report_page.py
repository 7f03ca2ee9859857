"""Page 5, report: UnCond vs Cond vs SIDE at equal N_G, best extractions as unbroken pairs,
downloads, and the sweep with a caption read from its own numbers."""

import csv
import io
import json
import zipfile

from streamlit.testing.v1 import AppTest

from app_support import jobs, resources
from app_support.state import REPORT_PAGE, CompareRequest
from side_core.data import load_training_set
from side_core.models import load_model
from side_core.pipeline import METHODS
from side_core.report_files import markdown_table
from side_core.run import Run

from .helpers import APP, TIMEOUT, TINY, button, submit


def test_compare_sweep_and_downloads(open_app):
    at = open_app(REPORT_PAGE)
    assert not at.exception
    assert "press **Compare**" in at.info[0].value

    submit(at, "Compare", n_g=4, compare_steps=5)
    assert not at.error
    table = next(m.value for m in at.markdown if m.value.startswith("| method"))
    assert all(f"| {method} | 4 |" in table for method in ("uncond", "cond", "side"))
    assert len(at.tabs) == 3
    pairs = [image for image in at.image if any(c.startswith("side ·") for c in image.captions)]
    assert pairs and all(c.startswith("side ·") and "train #" in c for c in pairs[0].captions)  # one image a pair

    at.text_input(key="scales").set_value("0, 3")
    button(at, "Sweep").click().run()
    assert not at.exception
    assert not at.error
    assert len(at.get("plotly_chart")) == 2  # the whole run's curves, then the sweep
    assert any(
        c.value.startswith("SIDE at each λ") and "From λ = 0 to 3, AMS high goes from" in c.value for c in at.caption
    ), [c.value[:60] for c in at.caption]

    downloads = at.get("download_button")
    assert [d.proto.label for d in downloads] == ["Report (JSON)", "Table (CSV)", "Copies, high band (ZIP)"]


def test_bad_scales_show_an_error(open_app):
    at = open_app(REPORT_PAGE)
    for text, message in (("1, lots", "Guidance scales must be numbers"), ("2, 500", "Guidance scale = 500 is out")):
        at.text_input(key="scales").set_value(text)
        button(at, "Sweep").click().run()
        assert not at.exception
        assert message in at.error[0].value


def test_download_contents(tiny_model_dir, tiny_data_dir, tiny_store, tmp_path):
    """The downloads hold what the screen shows: the report; the table as CSV, Filter's row and the
    drawn-in-all, per-1,000 and landed columns included, cell for cell; and PNG pairs per method,
    each of them a copy (the high band)."""
    run = Run(
        tmp_path,
        load_model(tiny_model_dir, "cpu"),
        load_training_set(tiny_data_dir, 1, 8),
        read_only_roots=(tiny_store,),
    )
    work = jobs.compare(CompareRequest(n_samples=4, num_steps=5).config(TINY))
    assert work.stored(run) is None
    report = work.make(run, None)
    assert work.stored(run) == report  # the same work, looked up: nothing computed twice
    report_json, report_csv, pairs = resources.report_files(run, report)
    assert set(json.loads(report_json)["methods"]) == set(METHODS)
    assert "ratios" in json.loads(report_json)
    rows = list(csv.DictReader(io.StringIO(report_csv)))
    assert [r["method"] for r in rows] == [*METHODS, "filter"]
    screen = [line.strip("| ").split(" | ") for line in markdown_table(report).splitlines()[2:]]
    for row, shown in zip(rows, screen, strict=True):
        assert shown[0] == row["method"]
        assert shown[-4:] == [
            row["distinct_high"],
            row["drawn_in_all"],
            f"{float(row['distinct_per_1000_drawn']):.1f}",
            f"{row['landed_in_target_percent']}%" if row["landed_in_target_percent"] else "-",
        ]
    names = zipfile.ZipFile(io.BytesIO(pairs)).namelist()
    assert all(n.endswith(".png") and n.split("/")[0] in METHODS for n in names)
    high = report.bands.high[0]
    assert all(float(n.split("_sim")[1].split("_")[0]) >= round(high, 3) for n in names)
    best = resources.report_pairs(run, report, n=16)
    for method, p in best.items():  # every copy among the best pairs, and nothing else
        assert sum(n.startswith(f"{method}/") for n in names) == int((p.similarity >= high).sum())


def test_opens_on_the_comparison_and_sweep_prepare_stored(monkeypatch, tmp_path):
    """On the bundled model the first screen is the comparison and sweep that `prepare` stored in
    assets/store, not a button: the page's default request must be the one prepare ran."""
    monkeypatch.setenv("SIDE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("SIDE_THREADS", "1")
    for name in ("SIDE_MODEL", "SIDE_DATA", "SIDE_STORE", "SIDE_N_DATA"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    at.switch_page(f"app_pages/{REPORT_PAGE}").run()
    assert not at.exception
    assert not at.info, [i.value for i in at.info]  # neither "press **Compare**" nor "press **Sweep**"
    table = next(m.value for m in at.markdown if m.value.startswith("| method"))
    assert all(f"| {method} | {CompareRequest().n_samples} |" in table for method in METHODS)
    assert any(c.value.startswith("SIDE at each λ") for c in at.caption)
    assert not (tmp_path / "runs").exists()  # all of it read from the store, nothing computed
