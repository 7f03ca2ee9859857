"""Page 1, model and data: facts, training images, the train-vs-train histogram, and bad input
(form fields and environment variables) shown as messages while the app keeps running."""

from app_support import state

from .helpers import button, metrics


def test_shows_model_facts_training_images_and_bands(open_app):
    at = open_app()
    assert not at.exception
    assert at.title[0].value == "Model and data"
    assert metrics(at)["Image size"] == "1 x 8 x 8"
    assert metrics(at)["Training timesteps"] == "100"
    assert any("training images" in c for c in (cap for im in at.image for cap in im.captions))
    assert len(at.get("plotly_chart")) == 1  # the similarity histogram with the band thresholds
    assert not at.error


def test_bad_model_or_data_shows_the_engine_message_and_keeps_the_last_good_one(open_app, tmp_path):
    at = open_app()
    at.text_input[0].set_value(str(tmp_path / "no-such-model"))  # inputs: model, then training set
    button(at, "Open").click().run()
    assert not at.exception
    assert "is not a bundled model" in at.error[0].value
    assert metrics(at)["Image size"] == "1 x 8 x 8"  # still the tiny model

    at.text_input[0].set_value(at.session_state[state.MODEL.name])
    at.text_input[1].set_value(str(tmp_path / "no-such-folder"))
    button(at, "Open").click().run()
    assert not at.exception
    assert "does not exist" in at.error[0].value

    at.text_input[1].set_value(at.session_state[state.DATA.name])
    at.number_input[0].set_value(-3)
    button(at, "Open").click().run()
    assert not at.exception
    assert "First N images = -3 is out of range" in at.error[0].value


def test_missing_model_is_an_error_not_a_crash(open_app, monkeypatch, tmp_path):
    monkeypatch.setenv("SIDE_MODEL", str(tmp_path / "missing"))
    at = open_app()
    assert not at.exception
    assert "is not a bundled model" in at.error[0].value
    assert at.text_input[0].value.endswith("missing")  # the form is there to switch models


def test_bad_environment_values_are_named_and_the_app_runs_on(open_app, monkeypatch):
    monkeypatch.setenv("SIDE_N_DATA", "abc")
    monkeypatch.setenv("SIDE_THREADS", "-2")
    at = open_app()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith("SIDE_N_DATA='abc' is not a positive whole number") for e in errors), errors
    assert any(e.startswith("SIDE_THREADS='-2' is not a positive whole number") for e in errors), errors
    assert metrics(at)["Image size"] == "1 x 8 x 8"  # all 12 training images, default threads
    assert any(c.value.startswith("12 images") for c in at.caption)


def test_the_sidebar_glossary_defines_every_term_the_readme_names(open_app):
    """One glossary (docs/glossary.md), shown in the sidebar on every page, defining each term the
    README's pointer to it names, and each term once."""
    import re

    from app_support import views

    at = open_app()
    (expander,) = [e for e in at.sidebar.expander if e.label == "Glossary"]
    text = expander.markdown[0].value
    assert text == views.glossary().strip()
    readme = (views.GLOSSARY.parents[1] / "README.md").read_text(encoding="utf-8")
    named = re.search(r"Every term \(([^)]*)\)", readme.replace("\n", " ")).group(1)
    defined = re.findall(r"\*\*([^*]+)\*\*", text)
    for term in [t.strip() for t in named.split(",") if t.strip() != "..."]:
        assert defined.count(term) == 1, term
