"""Page 4, guided extraction: pick a class, generate, see guided and unguided samples next to their
nearest training images, and scrub through the captured timesteps without recomputing."""

from dataclasses import replace

import app_support
from app_support import GUIDED_PAGE

from .helpers import TINY, button, captions_of_images


def test_generate_guided_samples_toward_a_class(open_app, app_env):
    at = open_app(GUIDED_PAGE)
    assert not at.exception
    assert "Press **Generate**" in at.info[0].value
    assert len(at.image[0].value) == 3  # one thumbnail mosaic per class

    at.pills(key="target_pills").set_value(1).run()
    at.slider[0].set_value(4.0)  # guidance scale
    at.number_input[0].set_value(10)  # sampler steps
    at.number_input[1].set_value(4)  # samples
    button(at, "Generate").click().run()
    assert not at.exception
    assert not at.error
    assert at.session_state[app_support.GUIDED]["cls"] == 1
    captions = captions_of_images(at)
    assert sum(c.startswith("guided #") for c in captions) == 4
    assert sum(c.startswith("unguided #") for c in captions) == 4
    assert sum(c.startswith("train #") for c in captions) == 4 * 3
    assert at.subheader[-1].value.startswith("3. Class 1")

    # Scrubbing reads the captured frames from the store: no new stage appears.
    stages = sorted(p.name for p in app_env.iterdir())
    scrub = at.select_slider[0]
    assert scrub.options[0] == "t = 90" and scrub.value == 0  # 10 DDIM steps over 100 timesteps; shows the end
    scrub.set_value(90).run()
    assert not at.exception
    assert any("predicted x0 at t = 90" in c for c in captions_of_images(at))
    assert sorted(p.name for p in app_env.iterdir()) == stages


def test_guidance_window_and_reopening_reuse_the_store(open_app, app_env):
    at = open_app(GUIDED_PAGE)
    at.slider[1].set_value((0, 50))  # guide only in the second half of sampling
    at.number_input[0].set_value(5)
    at.number_input[1].set_value(2)
    button(at, "Generate").click().run()
    assert not at.exception
    assert at.session_state[app_support.GUIDED]["window"] == (0, 50)
    n_stages = len(list(app_env.iterdir()))

    again = open_app(GUIDED_PAGE)  # a second tab: its own session, the same store
    again.session_state[app_support.GUIDED] = at.session_state[app_support.GUIDED]
    again.run()
    assert not again.exception
    assert sum(c.startswith("guided #") for c in captions_of_images(again)) == 2
    assert len(list(app_env.iterdir())) == n_stages


def test_asks_for_a_classifier_first(open_app):
    at = open_app(GUIDED_PAGE, settings=replace(TINY, classifier_steps=7))  # no such classifier stored
    assert not at.exception
    assert "trained SIDE classifier" in at.info[0].value


def test_a_second_generation_uses_the_new_settings(open_app):
    """The form keeps its widgets across generations, so a changed seed is what the next run uses."""
    at = open_app(GUIDED_PAGE)
    at.number_input(key="num_steps").set_value(5)
    at.number_input(key="n").set_value(2)
    button(at, "Generate").click().run()
    at.number_input(key="seed").set_value(7)
    button(at, "Generate").click().run()
    assert not at.exception
    assert at.session_state[app_support.GUIDED]["seed"] == 7
    assert at.session_state[app_support.GUIDED]["n"] == 2
