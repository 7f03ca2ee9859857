"""Settings and look-ups shared by the app's tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streamlit.testing.v1 import AppTest

from side_core.config import ExtractionConfig

APP = Path(__file__).resolve().parents[2] / "app.py"
_D = ExtractionConfig()
# Tiny budgets: 32 samples in 3 classes (tau 0 keeps every cluster of an untrained model), 20 classifier steps.
TINY = replace(
    _D,
    n_syn=32,
    cluster=replace(_D.cluster, feature="unet", k=3, tau=0.0),
    classifier_train=replace(_D.classifier_train, steps=20),
)
TIMEOUT = 60  # seconds per AppTest run: generous for 2 loaded cores; tiny runs take about a second


def button(at: AppTest, label: str):
    """The (form submit) button with this label."""
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    return matches[0]


def captions_of_images(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def submit(at: AppTest, label: str, **numbers: float) -> AppTest:
    """Set number inputs (by key), press the button with this label, and check that no page raised."""
    for key, value in numbers.items():
        at.number_input(key=key).set_value(value)
    button(at, label).click().run()
    assert not at.exception
    return at
