"""Page 3, surrogate classifier: what matters for guidance (per-class extraction, accuracy against
chance), and training from the button."""

import json
from dataclasses import replace

from app_support import state
from app_support.state import CLASSIFIER_PAGE, REPORT_PAGE

from .helpers import TINY, button, metrics, submit


def accuracy_panel(at) -> dict:
    """The accuracy section's heading, metrics and chart, as the page draws them."""
    (heading,) = [s.value for s in at.subheader if s.value.startswith("Held-out accuracy")]
    return {"heading": heading, "metrics": metrics(at), "deltas": {m.label: m.proto.delta for m in at.metric}}


def test_shows_the_stored_classifiers(open_app):
    at = open_app(CLASSIFIER_PAGE)
    assert not at.exception
    assert not at.error
    assert any("Core labels: only the" in c.value for c in at.caption)  # the default labels, said as they are
    # per-class extraction (expected rates only: no comparison stored yet) and loss; accuracy is one click away
    assert len(at.get("plotly_chart")) == 2
    assert "Run the comparison on the Report page" in at.info[0].value
    assert "Measure accuracy at the sampler's timesteps" in [b.label for b in at.button]
    assert at.checkbox[0].value  # the tiny store holds the Cond classifier too
    button(at, "Measure accuracy at the sampler's timesteps").click().run()
    assert not at.exception
    # core labels leave the tiny pool's held-out samples all background: said, with no number
    assert any(i.value.startswith("No held-out sample carries a target class") for i in at.info)
    assert not [m for m in at.metric if "chance" in (m.proto.delta or "")]


def test_accuracy_is_among_the_target_classes_in_every_number(open_app):
    """One definition on the whole panel: the heading names the target classes, chance is 1 in their
    number, and each metric is the mean of the chart's points in the shaded window. Whole clusters as
    labels, so that held-out samples carry classes (under core labels the tiny pool has none)."""
    config = replace(TINY, labels="clusters")
    at = open_app(CLASSIFIER_PAGE, config=config)
    button(at, "Train").click().run()  # this labelling's classifiers, then their accuracy, in one click
    assert not at.exception
    n = TINY.cluster.k  # tau 0 keeps every cluster
    panel = accuracy_panel(at)
    assert panel["heading"] == f"Held-out accuracy among the {n} target classes"
    assert panel["metrics"]["Chance"] == f"{1 / n:.1%}"
    assert panel["deltas"]["Chance"] == f"1 in {n} classes"
    figure = json.loads(at.get("plotly_chart")[1].proto.spec)
    window, chance_line = figure["layout"]["shapes"]
    low, high = int(window["x0"]), int(window["x1"])
    for trace in figure["data"]:
        method = "SIDE" if trace["name"].startswith("SIDE") else "Cond"
        inside = [y for x, y in zip(trace["x"], trace["y"], strict=True) if low <= x <= high and y is not None]
        label = f"{method}, t {low}-{high}"
        assert panel["metrics"][label] == f"{sum(inside) / len(inside):.0%}"
    assert chance_line["y0"] == 1 / n


def test_train_from_the_button(open_app, app_env):
    at = open_app(CLASSIFIER_PAGE)
    assert not at.exception
    at.number_input(key="steps").set_value(12)
    at.checkbox[0].set_value(False)
    button(at, "Train").click().run()
    assert not at.exception
    assert not at.error
    assert at.session_state[state.CONFIG.name].classifier_train.steps == 12
    assert len(list(app_env.glob("classifier-*"))) == 1  # only SIDE's: the Cond box was unticked
    assert len(list(app_env.glob("evaluation-*"))) == 1  # measured with the training: no click
    assert "Measure accuracy at the sampler's timesteps" not in [b.label for b in at.button]


def test_out_of_range_steps_are_refused(open_app):
    at = open_app(CLASSIFIER_PAGE)
    assert not at.exception
    submit(at, "Train", steps=0)
    assert "Training steps = 0 is out of range" in at.error[0].value


def test_asks_for_clusters_first(open_app):
    at = open_app(CLASSIFIER_PAGE, config=replace(TINY, cluster=replace(TINY.cluster, k=4)))  # none stored
    assert not at.exception
    assert "generate and cluster first" in at.info[0].value


def test_after_a_comparison_shows_accuracy_at_the_samplers_timesteps_and_where_samples_landed(open_app):
    at = open_app(REPORT_PAGE)
    submit(at, "Compare", n_g=4, compare_steps=TINY.sample.num_steps)  # the classifiers' own sampler
    at.switch_page(f"app_pages/{CLASSIFIER_PAGE}").run()
    assert not at.exception
    assert not at.error
    # the comparison measured both classifiers at the sampler's timesteps: no button
    assert "Measure accuracy at the sampler's timesteps" not in [b.label for b in at.button]
    assert accuracy_panel(at)["heading"] == f"Held-out accuracy among the {TINY.cluster.k} target classes"
    assert any(c.value.startswith("Guided samples that landed in the class") for c in at.caption)
