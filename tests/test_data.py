"""Training sets: the bundled faces, image folders, conversion and bad folders."""

import numpy as np
import pytest
from conftest import write_images
from PIL import Image

from side_core.data import load_training_set
from side_core.errors import SideError


def test_bundled_faces_offline():
    data = load_training_set("default", channels=1, size=24)
    assert data.images.shape == (100, 1, 24, 24)
    assert data.images.min() >= -1 and data.images.max() <= 1
    assert any("center-cropped 25x25 to 24x24" in step for step in data.preprocessing)


def test_folder_is_converted_to_model_channels_and_size(tmp_path):
    folder = write_images(tmp_path / "rgb", 5, size=32, mode="RGB")
    data = load_training_set(folder, channels=1, size=16)
    assert data.images.shape == (5, 1, 16, 16)
    assert any("grayscale" in s for s in data.preprocessing)
    assert any("resized 32x32 to 16x16 (Lanczos) (5 images)" in s for s in data.preprocessing)
    rgb = load_training_set(write_images(tmp_path / "gray", 3, size=8), channels=3, size=8)
    assert rgb.images.shape == (3, 3, 8, 8)


def test_unreadable_files_are_skipped_with_a_warning(tmp_path, caplog):
    folder = write_images(tmp_path / "mixed", 3)
    (folder / "broken.png").write_bytes(b"not a png")
    data = load_training_set(folder, 1, 8)
    assert len(data) == 3
    assert "skipping unreadable image broken.png" in caplog.text


def test_folder_without_readable_images(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SideError, match="No readable image"):
        load_training_set(tmp_path, 1, 8)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(SideError, match="No readable image"):
        load_training_set(tmp_path, 1, 8)
    with pytest.raises(SideError, match="does not exist"):
        load_training_set(tmp_path / "missing", 1, 8)


def test_images_smaller_than_the_model_are_refused(tmp_path):
    folder = write_images(tmp_path / "small", 2, size=8)
    with pytest.raises(SideError, match="upscaling"):
        load_training_set(folder, 1, 16)


def test_unconvertible_channels(tmp_path):
    folder = write_images(tmp_path / "x", 2)
    with pytest.raises(SideError, match="Cannot convert"):
        load_training_set(folder, channels=2, size=8)


def test_non_square_images_are_center_cropped(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "wide.png")
    data = load_training_set(tmp_path, 1, 8)
    assert data.images.shape == (1, 1, 8, 8)
