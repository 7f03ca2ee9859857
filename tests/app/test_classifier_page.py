"""Page 3, surrogate classifier: what matters for guidance (per-class extraction, accuracy against
chance), and training from the button."""

from dataclasses import replace

from app_support import state
from app_support.state import CLASSIFIER_PAGE, REPORT_PAGE

from .helpers import TINY, button, metrics, submit


def test_shows_the_stored_classifiers(open_app):
    at = open_app(CLASSIFIER_PAGE)
    assert not at.exception
    assert not at.error
    assert "Clean accuracy (t = 0)" in metrics(at)
    assert any("Core labels: only the" in c.value for c in at.caption)  # the default labels, said as they are
    assert "x chance" in at.metric[0].proto.delta
    # per-class extraction (expected rates only: no comparison stored yet), accuracy, loss
    assert len(at.get("plotly_chart")) == 3
    assert "Run the comparison on the Report page" in at.info[0].value
    assert at.checkbox[0].value  # the tiny store holds the Cond classifier too


def test_train_from_the_button(open_app, app_env):
    at = open_app(CLASSIFIER_PAGE)
    assert not at.exception
    at.number_input(key="steps").set_value(12)
    at.checkbox[0].set_value(False)
    button(at, "Train").click().run()
    assert not at.exception
    assert not at.error
    assert at.session_state[state.CONFIG.name].classifier_train.steps == 12
    assert len(at.get("plotly_chart")) == 3
    assert len(list(app_env.glob("classifier-*"))) == 1  # only SIDE's: the Cond box was unticked


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
    assert "Held-out accuracy at the sampler's timesteps" in [s.value for s in at.subheader]
    # per-class extraction, accuracy at the sampler's 5 timesteps, per quartile, loss
    assert len(at.get("plotly_chart")) == 4
    assert any(f"The {TINY.sample.num_steps} timesteps of the DDPM sampler" in c.value for c in at.caption)
    assert any(c.value.startswith("Guided samples that landed in the class") for c in at.caption)
