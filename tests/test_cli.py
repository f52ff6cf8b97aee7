"""The `vizneuron` command: galleries on disk, reproducible bytes, readable errors."""

from __future__ import annotations

import json

from vizneuron.cli import main

TINY = "python:conftest:Tiny?size=16"


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_render_writes_gallery_and_is_reproducible(tmp_path, capsys):
    args = ["render", TINY, "--units", "conv2:0-2", "--diversity", "2", "--steps", "8", "--seed", "1", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--batch", "2"]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    expected = {f"conv2_{c}_{s}.png" for c in range(3) for s in range(2)} | {
        f"conv2_{c}_sheet.png" for c in range(3)} | {"index.html", "manifest.json"}
    assert set(a) == expected
    assert main(args + ["--out", str(tmp_path / "c")]) == 0
    assert _files(tmp_path / "c") == a, "same arguments must give the same files"
    manifest = json.loads(a["manifest.json"])
    assert manifest["settings"]["seed"] == 1 and manifest["versions"]["torch"]
    assert [u["unit"] for u in manifest["units"]] == ["conv2:0", "conv2:1", "conv2:2"]
    assert all(len(u["final_activation"]) == 2 for u in manifest["units"])
    html = a["index.html"].decode()
    assert 'src="conv2_1_0.png"' in html and "http" not in html  # relative links, nothing remote
    assert set(b) == expected
    assert "conv2:2: final activation" in capsys.readouterr().out


def test_layers_command_lists_shapes(capsys):
    assert main(["layers", TINY]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "16x8x8" in out and "(not a tensor)" in out and "logits" in out


def test_bad_unit_is_a_clear_error(capsys):
    assert main(["render", TINY, "--units", "conv9:0", "--steps", "1", "--quiet"]) == 2
    assert "unknown layer 'conv9'" in capsys.readouterr().err
    assert main(["render", TINY, "--units", "conv2:99", "--steps", "1", "--quiet"]) == 2
    assert "valid channels are 0-15" in capsys.readouterr().err


def test_contact_sheet_grid_layout():
    import torch

    from vizneuron.gallery import contact_sheet

    images = torch.zeros(3, 3, 4, 4)
    images[2] = 0.5
    sheet = contact_sheet(images, scale=2, gap=1, columns=2)
    assert sheet.size == (2 * 8 + 1, 2 * 8 + 1)
    assert sheet.getpixel((0, 9)) == (128, 128, 128) and sheet.getpixel((9, 9)) == (255, 255, 255)
    assert sheet.getpixel((0, 0)) == (0, 0, 0)
