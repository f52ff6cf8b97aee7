"""Reading real images: crop and resize, and corrupt files skipped with a reason."""

from __future__ import annotations

import torch
from PIL import Image

from vizneuron.imageio import image_files, load_images


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
    assert loaded.skipped[0][0].name == "broken.jpg" and "UnidentifiedImageError" in loaded.skipped[0][1]
    cropped = load_images(files[:1], (32, 32), crop_fraction=0.5).images[0]
    assert torch.all(cropped[1] > 0.99)  # the centre half-square is all green
