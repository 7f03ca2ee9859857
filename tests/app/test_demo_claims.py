"""A demo button's claim is a test: on the bundled model and its store (assets/store), what the
guided page says its buttons show is what they show."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app_support import jobs, state, views
from app_support.state import GUIDED_PAGE
from side_core.data import load_training_set
from side_core.models import BUNDLED_STORE, load_model
from side_core.run import Run

from .helpers import APP, button, metrics

pytestmark = pytest.mark.slow  # two guided generations of 8 samples, 25 steps, guided and unguided


def fraction(value: str) -> tuple[int, int]:
    """'7 / 8' -> (7, 8)."""
    done, total = value.split("/")
    return int(done), int(total)


def pool_copied_faces() -> list[int]:
    """The training images the bundled pool's plain samples copy, most copied first."""
    model = load_model("default", "cpu")
    run = Run(BUNDLED_STORE, model, load_training_set("default", model.channels, model.size))
    _, scores = jobs.clusters_with_scores(state.DEFAULT).stored(run)
    return list(views.copied_faces(scores))


def test_the_weakest_class_button_shows_what_its_caption_says(monkeypatch, tmp_path):
    """The default request lands in its class; the weakest class's does not, and its samples become
    copies of the faces the pool itself copies most (the deepest memorized basins), as the caption
    beside the button says."""
    monkeypatch.setenv("SIDE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("SIDE_THREADS", "1")
    for name in ("SIDE_MODEL", "SIDE_DATA", "SIDE_STORE", "SIDE_N_DATA", "SIDE_LOCKED"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(str(APP), default_timeout=300).run()
    at.switch_page(f"app_pages/{GUIDED_PAGE}").run()
    assert not at.exception

    button(at, "Generate").click().run()
    assert not at.exception
    best = at.session_state[state.GUIDED.name].cls
    landed_best, n = fraction(metrics(at)[f"Landed in class {best}"])
    assert 4 * landed_best >= 3 * n  # the recommended class: the classifier places its samples

    weak_label = next(b.label for b in at.button if b.label.startswith("Try the weakest class"))
    promise = next(c.value for c in at.caption if "deepest memorized basins" in c.value)
    button(at, weak_label).click().run()
    button(at, "Generate").click().run()
    assert not at.exception
    weak = at.session_state[state.GUIDED.name].cls
    assert weak != best and f"({weak})" in weak_label and promise.startswith(f"Class {weak}:")
    found = metrics(at)
    landed_weak, _ = fraction(found[f"Landed in class {weak}"])
    copies_weak, _ = fraction(found["Copies, guided"])
    assert 4 * landed_weak <= n  # "few land in it"
    assert 2 * copies_weak >= n  # "they can still be copies"
    faces = int(found["Faces copied, guided"])
    assert faces <= copies_weak // 2  # "of a few faces"
    reading = next(c.value for c in at.caption if c.value.startswith(f"{landed_weak} of {n} guided samples"))
    assert "deepest memorized basins" in reading  # the page's own reading of the result says so too
    # "the faces it draws most often": every face its copies copy is among the pool's five most copied
    copied = [int(part.split("#")[1].split(" ")[0]) for part in found_help(at, "Faces copied, guided").split(", ")]
    assert set(copied) <= set(pool_copied_faces()[:5])


def found_help(at: AppTest, label: str) -> str:
    """A metric's help text after its lead-in ('... copy: train #91 (5x), ...')."""
    (metric,) = [m for m in at.metric if m.label == label]
    return metric.proto.help.split(": ", 1)[1]
