"""Reading real images: crop and resize; every kind of bad file skipped or converted, with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vizneuron.imageio import ImageSkipped, image_files, load_images, read_rgb

from helpers import write_problem_images


def test_crop_resize_and_corrupt_files_are_reported(tmp_path):
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    wide.paste((0, 255, 0), (75, 25, 125, 75))  # a green 50x50 block in the middle
    wide.save(tmp_path / "a.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    files = image_files(tmp_path)
    assert [f.name for f in files] == ["a.png", "broken.jpg"]
    loaded = load_images(files, (32, 32), crop_fraction=1.0)
    assert loaded.images.shape == (1, 3, 32, 32) and [p.name for p in loaded.paths] == ["a.png"]
    assert loaded.skipped[0][0].name == "broken.jpg" and "not an image" in loaded.skipped[0][1]
    cropped = load_images(files[:1], (32, 32), crop_fraction=0.5).images[0]
    assert torch.all(cropped[1] > 0.99)  # the centre half-square is all green


def test_every_problem_file_is_skipped_or_converted_with_a_reason(tmp_path):
    expected = write_problem_images(tmp_path)
    for name, fate in expected.items():
        if fate.startswith("skipped"):
            with pytest.raises(ImageSkipped, match=fate.split(": ")[1]):
                read_rgb(tmp_path / name)
            continue
        rgb, note = read_rgb(tmp_path / name)
        assert rgb.dtype == np.uint8 and rgb.shape == (40, 48, 3), name
        if fate == "ok":
            assert note is None
        else:
            assert fate.split(": ")[1] in note, (name, note)
    # 16-bit values are scaled into 8 bits, not clipped to white
    sixteen, _ = read_rgb(tmp_path / "sixteen.png")
    assert 100 < sixteen.mean() < 155
    # RGBA keeps its colours where it is opaque
    assert np.array_equal(read_rgb(tmp_path / "rgba.png")[0], read_rgb(tmp_path / "good_a.png")[0])
