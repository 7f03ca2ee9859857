"""Page 5, report: UnCond vs Cond vs SIDE at equal N_G, best extractions, downloads, and the sweep."""

import io
import json
import zipfile

from app_support import REPORT_PAGE, AppRun, CompareRequest, report_downloads
from side_core.data import load_training_set
from side_core.models import load_model
from side_core.pipeline import METHODS, extract

from .helpers import TINY, button


def test_compare_sweep_and_downloads(open_app):
    at = open_app(REPORT_PAGE)
    assert not at.exception
    assert "press **Compare**" in at.info[0].value

    at.number_input[0].set_value(4)  # N_G
    at.number_input[2].set_value(5)  # sampler steps
    button(at, "Compare").click().run()
    assert not at.exception
    assert not at.error
    table = next(m.value for m in at.markdown if m.value.startswith("| method"))
    assert all(f"| {method} | 4 |" in table for method in ("uncond", "cond", "side"))
    assert len(at.tabs) == 3
    assert at.image  # best-extraction pairs

    at.text_input[0].set_value("0, 3")
    button(at, "Sweep").click().run()
    assert not at.exception
    assert not at.error
    assert len(at.get("plotly_chart")) == 1

    downloads = at.get("download_button")
    assert [d.proto.label for d in downloads] == ["Report (JSON)", "Table (CSV)", "Image pairs (ZIP)"]


def test_bad_scales_show_an_error(open_app):
    at = open_app(REPORT_PAGE)
    at.text_input[0].set_value("1, lots")
    button(at, "Sweep").click().run()
    assert not at.exception
    assert "Guidance scales must be numbers" in at.error[0].value


def test_download_contents(tiny_model_dir, tiny_data_dir, tiny_store, tmp_path):
    """The downloads hold the report, one CSV row per method, and PNG pairs per method."""
    run = AppRun(
        tmp_path,
        load_model(tiny_model_dir, "cpu"),
        load_training_set(tiny_data_dir, 1, 8),
        read_only_roots=(tiny_store,),
    )
    report = extract(run, CompareRequest(n_samples=4, num_steps=5).config(TINY), METHODS)
    report_json, report_csv, pairs = report_downloads(run, report)
    assert set(json.loads(report_json)["methods"]) == set(METHODS)
    assert "ratios" in json.loads(report_json)
    assert len(report_csv.strip().splitlines()) == 1 + len(METHODS)
    names = zipfile.ZipFile(io.BytesIO(pairs)).namelist()
    assert {n.split("/")[0] for n in names} == set(METHODS)
    assert all(n.endswith(".png") for n in names)
