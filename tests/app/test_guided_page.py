"""Page 4, guided extraction: opens on the most promising class, generates guided and unguided
samples side by side with their nearest training images, scrubs through the captured timesteps
without recomputing, and refuses out-of-range input with a message."""

from dataclasses import replace

from app_support import state
from app_support.state import GUIDED_PAGE, MODEL_PAGE

from .helpers import TINY, button, captions_of_images, metrics, submit


def test_opens_on_the_most_promising_class_and_generates(open_app, app_env):
    at = open_app(GUIDED_PAGE)
    assert not at.exception
    assert "Press **Generate**" in at.info[0].value
    ranked = [int(o.split(" ")[1]) for o in at.selectbox(key=state.TARGET.name).options]
    assert sorted(ranked) == [0, 1, 2]
    assert at.selectbox(key=state.TARGET.name).value == ranked[0]  # the first of the engine's ranking
    assert at.session_state[state.TARGET.name] == ranked[0]

    at.selectbox(key=state.TARGET.name).select(1).run()
    at.slider(key="scale").set_value(4.0)
    submit(at, "Generate", num_steps=10, n=4)
    assert not at.error
    assert at.session_state[state.GUIDED.name].cls == 1
    shown = metrics(at)
    assert shown["Copies, guided"].endswith("/ 4")
    # what the run found that the pool had not, and how much the pool holds of what is reachable
    assert int(shown["Beyond the pool"]) <= int(shown["Faces copied, guided"])
    copied, reachable = shown["Pool copies"].split(" / ~")
    assert int(copied) <= float(reachable) and "Attacker sees" in shown
    captions = captions_of_images(at)
    # every sample, guided or not, carries its nearest similarity and band
    assert sum(c.startswith("guided #") and c.count("·") == 2 for c in captions) == 4
    assert sum(c.startswith("unguided #") and c.count("·") == 2 for c in captions) == 4
    assert sum(c.startswith("train #") for c in captions) == 4 * 3
    assert at.subheader[0].value.startswith("Class 1 at λ = 4")

    # Scrubbing reads the captured frames from the store: no new stage appears.
    stages = sorted(p.name for p in app_env.iterdir())
    scrub = at.select_slider[0]
    assert scrub.options[0] == "t = 90" and scrub.value == 0  # 10 steps over 100 timesteps; shows the end
    scrub.set_value(90).run()
    assert not at.exception
    assert any("predicted x0 at t = 90" in c for c in captions_of_images(at))
    assert sorted(p.name for p in app_env.iterdir()) == stages


def test_weak_class_button_and_reopening_reuse_the_store(open_app, app_env):
    at = open_app(GUIDED_PAGE)
    assert not at.exception
    weak = int(at.selectbox(key=state.TARGET.name).options[-1].split(" ")[1])
    button(at, next(b.label for b in at.button if b.label.startswith("Try the weakest class"))).click().run()
    assert at.selectbox(key=state.TARGET.name).value == weak
    at.slider(key="window").set_value((0, 50))  # guide only in the second half of sampling
    submit(at, "Generate", num_steps=5, n=2)
    assert at.session_state[state.GUIDED.name].sample.guidance_window == (0, 50)
    assert at.session_state[state.GUIDED.name].cls == weak
    n_stages = len(list(app_env.iterdir()))

    again = open_app(GUIDED_PAGE)  # a second tab: its own session, the same store
    again.session_state[state.GUIDED.name] = at.session_state[state.GUIDED.name]
    again.run()
    assert not again.exception
    assert sum(c.startswith("guided #") for c in captions_of_images(again)) == 2
    assert len(list(app_env.iterdir())) == n_stages


def test_the_chosen_class_stays_while_other_pages_are_open(open_app):
    """The picker is bound to the session's target: leaving the page and coming back keeps the choice."""
    at = open_app(GUIDED_PAGE)
    assert not at.exception
    options = at.selectbox(key=state.TARGET.name).options
    weak = int(options[-1].split(" ")[1])  # the last of the ranking: never the default
    at.selectbox(key=state.TARGET.name).select(weak).run()
    at.switch_page(f"app_pages/{MODEL_PAGE}").run()
    assert not at.exception
    at.switch_page(f"app_pages/{GUIDED_PAGE}").run()
    assert not at.exception
    assert at.selectbox(key=state.TARGET.name).value == weak
    assert at.session_state[state.TARGET.name] == weak


def test_out_of_range_and_few_steps(open_app):
    at = open_app(GUIDED_PAGE)
    assert not at.exception
    submit(at, "Generate", n=100_000)
    assert "Samples = 100000 is out of range: use 1 to 256" in at.error[0].value
    submit(at, "Generate", n=2, num_steps=1)
    assert not at.error
    assert "1 sampler step leaves the samples noisy" in at.warning[0].value


def test_asks_for_a_classifier_first(open_app):
    config = replace(TINY, classifier_train=replace(TINY.classifier_train, steps=7))  # no such classifier stored
    at = open_app(GUIDED_PAGE, config=config)
    assert not at.exception
    assert "trained SIDE classifier" in at.info[0].value


def test_a_second_generation_uses_the_new_settings(open_app):
    """The form keeps its widgets across generations, so a changed seed is what the next run uses."""
    at = open_app(GUIDED_PAGE)
    assert not at.exception
    submit(at, "Generate", num_steps=5, n=2)
    submit(at, "Generate", seed=7)
    assert at.session_state[state.GUIDED.name].seed == 7
    assert at.session_state[state.GUIDED.name].n == 2
