"""Settings and look-ups shared by the app's tests."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from app_support import SurrogateSettings

APP = Path(__file__).resolve().parents[2] / "app.py"
# Tiny budgets: 32 samples in 3 classes (tau 0 keeps every cluster of an untrained model), 20 classifier steps.
TINY = SurrogateSettings(n_syn=32, feature="unet", k=3, tau=0.0, classifier_steps=20)
TIMEOUT = 60  # seconds per AppTest run: generous for 2 loaded cores; tiny runs take about a second


def button(at: AppTest, label: str):
    """The (form submit) button with this label."""
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    return matches[0]


def captions_of_images(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]
