"""Page 5, report: UnCond vs Cond vs SIDE at equal N_G, best extractions as unbroken pairs,
downloads, and the sweep with a caption read from its own numbers."""

import io
import json
import zipfile

from streamlit.testing.v1 import AppTest

from app_support import jobs, resources
from app_support.state import REPORT_PAGE, CompareRequest
from side_core.data import load_training_set
from side_core.models import load_model
from side_core.pipeline import METHODS, Run

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
    assert [d.proto.label for d in downloads] == ["Report (JSON)", "Table (CSV)", "Image pairs (ZIP)"]


def test_bad_scales_show_an_error(open_app):
    at = open_app(REPORT_PAGE)
    for text, message in (("1, lots", "Guidance scales must be numbers"), ("2, 500", "Guidance scale = 500 is out")):
        at.text_input(key="scales").set_value(text)
        button(at, "Sweep").click().run()
        assert not at.exception
        assert message in at.error[0].value


def test_download_contents(tiny_model_dir, tiny_data_dir, tiny_store, tmp_path):
    """The downloads hold the report, one CSV row per method, and PNG pairs per method."""
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
    assert len(report_csv.strip().splitlines()) == 1 + len(METHODS)
    names = zipfile.ZipFile(io.BytesIO(pairs)).namelist()
    assert {n.split("/")[0] for n in names} == set(METHODS)
    assert all(n.endswith(".png") for n in names)


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
