"""The repeated-images benchmark world's duplication profile (benchmarks.datasets)."""

import math

import numpy as np
import pytest
from PIL import Image

from benchmarks.datasets import MAX_COPIES, TAIL, export, repeat_counts
from side_core.errors import SideError


def test_repeat_counts_follow_the_heavy_tail():
    copies = repeat_counts(1000, 300)
    assert len(copies) == 300 and all(0 <= i < 1000 for i in copies)
    counts = np.array(list(copies.values()))
    assert counts.min() == 2 and counts.max() == MAX_COPIES
    for c in range(2, MAX_COPIES + 1):
        assert (counts >= c).sum() == math.floor(300 * (c / 2) ** -TAIL)
    assert repeat_counts(1000, 300) == copies  # a fixed seed: anyone rebuilds the same world


def test_flat_repeat_counts_give_every_image_the_same_copies_of_the_same_draw():
    copies = repeat_counts(1000, 300, copies=16)
    assert set(copies.values()) == {16}
    assert copies.keys() == repeat_counts(1000, 300).keys()  # the same images as the heavy tail's


def test_repeat_counts_refuse_more_images_than_there_are():
    with pytest.raises(SideError, match="between 0 and"):
        repeat_counts(10, 11)


@pytest.mark.parametrize("copies", [1, MAX_COPIES + 1])
def test_repeat_counts_refuse_copies_out_of_range(copies):
    with pytest.raises(SideError, match="--copies"):
        repeat_counts(10, 5, copies=copies)


def test_export_writes_each_copy(tmp_path):
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    assert export(images, tmp_path, {1: 3}) == 5
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["00000.png", "00001-02.png", "00001-03.png", "00001.png", "00002.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "00001-03.png")), images[1])
