"""Page 3, surrogate classifier: accuracy per timestep quartile, and training from the button."""

from dataclasses import replace

import app_support
from app_support import CLASSIFIER_PAGE

from .helpers import TINY, button


def test_shows_the_stored_classifiers(open_app):
    at = open_app(CLASSIFIER_PAGE)
    assert not at.exception
    assert not at.error
    assert "Clean accuracy (t = 0)" in [m.label for m in at.metric]
    assert len(at.get("plotly_chart")) == 2  # accuracy per quartile, training loss
    assert at.checkbox[0].value  # the tiny store holds the Cond classifier too


def test_train_from_the_button(open_app, app_env):
    at = open_app(CLASSIFIER_PAGE)
    at.number_input[0].set_value(12)
    at.checkbox[0].set_value(False)
    button(at, "Train").click().run()
    assert not at.exception
    assert not at.error
    assert at.session_state[app_support.SETTINGS]["classifier_steps"] == 12
    assert len(at.get("plotly_chart")) == 2
    assert len(list(app_env.glob("classifier-*"))) == 1  # only SIDE's: the Cond box was unticked


def test_asks_for_clusters_first(open_app):
    at = open_app(CLASSIFIER_PAGE, settings=replace(TINY, k=4))  # no such clusters stored
    assert not at.exception
    assert "generate and cluster first" in at.info[0].value
