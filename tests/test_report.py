"""Typed reports and the files made from them, class evidence for picking a target, and the run's
"is this stored?" look-up, on the tiny real model."""

import csv
import io
import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from side_core.cluster import Clustering, band_counts, rank_classes, representatives
from side_core.config import SampleConfig
from side_core.data import load_training_set
from side_core.errors import SideError
from side_core.inspection import best_pairs, class_copies, pair_image, pairs_zip, scored
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score
from side_core.metrics import Bands
from side_core.models import load_model
from side_core.pipeline import METHODS, extract, guidance_sweep
from side_core.report import Report
from side_core.report_files import markdown_table, report_csv
from side_core.run import Run

BANDS = Bands.from_thresholds(0.5, 0.7, 0.9)


def clustering(labels: list[int], kept: list[int], cohesion: list[float]) -> Clustering:
    labels = np.array(labels)
    k = len(cohesion)
    return Clustering(
        kmeans_labels=labels,
        centroids=np.eye(k, dtype=np.float32),
        cohesion=np.array(cohesion, np.float32),
        sizes=np.bincount(labels, minlength=k),
        kept=np.array(kept),
        labels=labels,
    )


def test_band_counts_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 2])
    similarity = np.array([0.95, 0.6, 0.75, 0.4, 0.99, 0.55])
    assert band_counts(labels, similarity, BANDS, 3).tolist() == [[1, 0, 1], [0, 1, 1], [1, 0, 0]]


def test_classes_rank_by_the_share_of_members_that_are_copies():
    c = clustering([0, 0, 0, 0, 1, 1, 2, 2], kept=[0, 1, 2], cohesion=[0.9, 0.95, 0.99])
    similarity = np.array([0.95, 0.95, 0.95, 0.1, 0.95, 0.95, 0.2, 0.3])
    nearest = np.array([3, 3, 4, 0, 7, 7, 1, 1])
    ranked = rank_classes(c, similarity, nearest, BANDS)
    assert [e.cls for e in ranked] == [1, 0, 2]  # 100% > 75% > 0%, whatever the cohesion
    assert [e.copy_rate for e in ranked] == [1.0, 0.75, 0.0]
    assert [e.faces for e in ranked] == [1, 2, 0]
    tie = rank_classes(c, np.full(8, 0.95), nearest, BANDS)
    assert [e.cls for e in tie] == [2, 1, 0]  # equal rates: the tighter cluster first


def test_representatives_are_closest_to_the_centroid():
    c = clustering([0, 0, 0, 1, 1], kept=[0, 1], cohesion=[0.9, 0.9])
    features = np.array([[1, 1], [1, 0.1], [1, 0.5], [0, 1], [0.2, 1]], np.float32)
    assert [r.tolist() for r in representatives(features, c, per_class=2)] == [[1, 2], [3, 4]]


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tiny_data_dir, tmp_path_factory):
    return Run(
        tmp_path_factory.mktemp("runs"), load_model(tiny_model_dir, "cpu"), load_training_set(tiny_data_dir, 1, 8)
    )


def test_stored_answers_without_computing(tiny_run):
    config = SampleConfig(num_steps=3, batch_size=4)

    def work(run: Run):
        return Score.make(run, Generation.make(run, 6, 3, config))

    assert tiny_run.stored(work) is None
    assert not list(tiny_run.root.glob("generate-*"))  # nothing was begun
    made = work(tiny_run)
    found = tiny_run.stored(work)
    assert found is not None and found.path == made.path
    # the read-only view is the same run with read-only stages, whatever attributes the run has
    tiny_run.added_later = object()
    try:
        view = tiny_run.reading_only()
        assert vars(view).keys() == vars(tiny_run).keys() and view.stages is not tiny_run.stages
        assert all(getattr(view, k) is v for k, v in vars(tiny_run).items() if k != "stages")
    finally:
        del tiny_run.added_later


def test_report_round_trip_rows_and_files(tiny_run, tiny_extraction):
    config = replace(tiny_extraction, n_samples=4)
    report = extract(tiny_run, config, METHODS)
    raw = json.loads(json.dumps(report.to_json()))  # report.json's shape, which scripts read
    assert Report.from_json(raw) == report
    assert list(report.methods) == list(METHODS) == list(raw["methods"])
    assert report.methods["side"].distinct == len(raw["methods"]["side"]["extracted"])
    assert raw["classifiers"]["side"]["quartiles"] == [[0, 24], [25, 49], [50, 74], [75, 99]]
    assert markdown_table(raw) == markdown_table(report)
    # the sweep at the report's own scale reuses its stages: the same point
    (point,) = guidance_sweep(tiny_run, config, (config.sample.guidance_scale,))
    assert (point.score, point.distinct, point.ams) == (
        report.methods["side"].score,
        report.methods["side"].distinct,
        report.methods["side"].ams,
    )
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert [r["method"] for r in rows] == [*METHODS, "filter"]  # the screen's table, Filter's row too
    assert float(rows[2]["ams_high"]) == report.methods["side"].ams["high"]
    assert int(rows[2]["drawn_in_all"]) == config.n_syn + 4 and int(rows[0]["drawn_in_all"]) == 4
    assert rows[0]["landed_in_target_percent"] == "" and rows[2]["landed_in_target_percent"] != ""
    assert int(rows[3]["flagged"]) == report.extra["filter"]["flagged"] and rows[3]["ams_high"] == ""

    pairs = best_pairs(tiny_run, report, n=3)
    for method, p in pairs.items():
        assert len(set(p.train_index.tolist())) == len(p)  # distinct training images
        assert list(p.similarity) == sorted(p.similarity, reverse=True)
        s = scored(tiny_run.find(report.methods[method].score, Score))
        assert p.similarity[0] == s.nearest.max()
    image = pair_image(pairs["side"].generated[0], pairs["side"].training[0], scale=2, pad=1)
    assert image.shape == (1 + 16 + 1, 1 + 2 * (16 + 1), 1)
    per_class = class_copies(tiny_run, report)
    assert per_class.aimed.sum() == 4 and (per_class.copies <= per_class.aimed).all()
    above, aimed_at = per_class.n_above(-1.0)
    assert above == aimed_at == int((per_class.aimed > 0).sum())
    with pytest.raises(SideError, match="uncond generation has no targets"):  # the app shows a SideError
        class_copies(tiny_run, report, "uncond")
    names = zipfile.ZipFile(io.BytesIO(pairs_zip(pairs))).namelist()
    assert len(names) == sum(len(p) for p in pairs.values())
    assert all(n.split("/")[0] in METHODS and n.endswith(".png") for n in names)
