"""The `vizneuron` command: galleries on disk, reproducible bytes, readable errors."""

from __future__ import annotations

import argparse
import json

import pytest

from vizneuron.cli import build_parser, main, parsers
from vizneuron.models import MODEL_PRESETS

from helpers import fresh_python

TINY = "python:helpers:Tiny?size=16"


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_render_writes_gallery_and_is_reproducible(tmp_path, capsys):
    args = ["render", TINY, "--units", "conv2:0-2", "--samples", "2", "--steps", "8", "--seed", "1", "--quiet"]
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


def test_mine_top_merge_and_render_with_examples(tmp_path, capsys):
    from helpers import write_problem_images

    data = tmp_path / "data"
    write_problem_images(data)
    index = tmp_path / "ex.sqlite"
    mine = ["mine", TINY, "--layers", "conv2", "--units", "logit:1", "--data", str(data), "--k", "3",
            "--batch", "4", "--quiet"]
    assert main(mine + ["--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert "mined 6 of 10 images for 17 units" in out and "skipped:" in out and "bomb.png: too large" in out

    assert main(["top", TINY, "conv2:3", "--index", str(index), "--json", "--out", str(tmp_path / "g")]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 3 and listed[0]["activation"] >= listed[1]["activation"] >= listed[2]["activation"]
    assert {"path", "activation", "position"} == set(listed[0]) and len(listed[0]["position"]) == 2
    assert (tmp_path / "g" / "conv2_3_top.html").exists()
    assert main(["top", TINY, "conv2:3", "--index", str(index), "--bottom", "--out", str(tmp_path / "g")]) == 0
    assert "gallery:" in capsys.readouterr().out

    shards = [str(tmp_path / f"s{i}.sqlite") for i in range(2)]
    for i, shard in enumerate(shards):
        assert main(mine + ["--index", shard, "--shard", f"{i}/2"]) == 0
    assert main(["merge", str(tmp_path / "merged.sqlite"), *shards]) == 0
    assert "6 images, 17 units" in capsys.readouterr().out

    args = ["render", TINY, "--units", "conv2:3", "--steps", "4", "--quiet", "--index", str(index),
            "--out", str(tmp_path / "r")]
    assert main(args) == 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert len(manifest["units"][0]["examples"]) == 3
    assert "top dataset examples" in (tmp_path / "r" / "index.html").read_text()

    assert main(["top", TINY, "conv2:99", "--index", str(index)]) == 2
    assert "channel 99 out of range" in capsys.readouterr().err
    assert main(["mine", TINY, "--data", str(data), "--index", str(index)]) == 2
    assert "give --layers" in capsys.readouterr().err


def test_probe_command_writes_report(tmp_path, capsys):
    from PIL import Image

    rng = __import__("numpy").random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200)), ("green", (30, 200, 30))):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i in range(4):
            noise = rng.integers(0, 40, (16, 16, 3))
            Image.fromarray((noise + colour).clip(0, 255).astype("uint8")).save(folder / f"{i}.png")
    out = tmp_path / "probe"
    args = ["probe", TINY, "conv2:3", "--data", str(tmp_path / "data"), "--concepts", "red,blue",
            "--concept", f"greenish={tmp_path / 'data' / 'green'}", "--renders", "2", "--steps", "4", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("conv2:3: ") and "renders read as" in printed and "report:" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] in ("monosemantic", "polysemantic", "unclear")
    assert {e["name"] for e in report["evidence"]} == {"red", "blue", "greenish"} and (out / "index.html").exists()
    assert main(["probe", TINY, "conv2:3", "--concepts", "red"]) == 2
    assert "give --data" in capsys.readouterr().err


def test_render_with_an_index_that_lacks_the_unit_fails_before_rendering(tmp_path, capsys):
    from helpers import write_problem_images

    write_problem_images(tmp_path / "data")
    index = tmp_path / "ex.sqlite"
    assert main(["mine", TINY, "--layers", "conv1", "--data", str(tmp_path / "data"), "--index", str(index),
                 "--quiet"]) == 0
    assert main(["render", TINY, "--units", "conv2:0", "--steps", "4", "--index", str(index), "--quiet",
                 "--out", str(tmp_path / "r")]) == 2
    assert "no examples for conv2:0" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_render_cache_is_shared_with_the_app(tmp_path, monkeypatch):
    args = ["render", TINY, "--units", "conv2:0-2", "--steps", "8", "--quiet", "--batch", "2",
            "--cache", str(tmp_path / "renders")]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert len(list((tmp_path / "renders").glob("*.safetensors"))) == 1  # one entry per render call

    def must_not_render(*a, **k):
        raise AssertionError("rendered again although cached")

    monkeypatch.setattr("vizneuron.optim.cache.render", must_not_render)
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_render_vocabulary_matches_the_library_and_old_spellings_warn(tmp_path, capsys):
    base = ["render", TINY, "--units", "conv2:0", "--steps", "4", "--quiet"]
    assert main(base + ["--samples", "2", "--diversity", "3", "--out", str(tmp_path / "a")]) == 0
    settings = json.loads((tmp_path / "a" / "manifest.json").read_text())["settings"]
    assert settings["samples"] == 2 and settings["diversity"] == 3.0 and settings["size"] == [16, 16]
    assert "warning" not in capsys.readouterr().err
    assert main(base + ["--samples", "2", "--diversity-weight", "3", "--out", str(tmp_path / "b")]) == 0
    assert "--diversity-weight is deprecated" in capsys.readouterr().err
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # the alias means the same
    assert main(base + ["--diversity", "2", "--out", str(tmp_path / "c")]) == 0  # the old "2 samples"
    assert "say --samples N" in capsys.readouterr().err
    for bad, message in [("--steps=0", "steps=0"), ("--size=1", "size=1"), ("--samples=0", "samples=0")]:
        assert main(base + [bad, "--out", str(tmp_path / "d")]) == 2
        assert message in capsys.readouterr().err
    assert main(base + ["--preset", "quick-start", "--out", str(tmp_path / "e")]) == 2  # tiny has no layer2
    assert "unknown layer 'layer2'" in capsys.readouterr().err


def test_models_command_lists_the_sources(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(source in out for source in ("default", "torchvision", "timm", "tflite", "cifar-resnet", "python"))
    assert all(preset.spec in out and preset.title in out for preset in MODEL_PRESETS)


def test_help_and_argument_errors_do_not_load_torch():
    """`vizneuron --help` and a wrong command line answer at once (bench/cli_start.py times them):
    neither the package, the parser, nor an argument error may import torch, numpy or the models."""
    code = ("import sys\nfrom vizneuron.cli import build_parser, main, parsers\n"
            "for argv in (['--help'], ['render', 'default'], ['render', 'default', '--units', 'x', '--param', 'fff'], "
            "['sae', 'train', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit as exit:\n        assert exit.code in (0, 2), "
            "exit.code\n"
            "print('LOADED', sorted(m for m in ('torch', 'numpy', 'torchvision', 'vizneuron.models') "
            "if m in sys.modules))")
    run = fresh_python(code, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("LOADED []"), run.stdout[-300:]
    assert "invalid choice: 'fff'" in run.stderr and "--units" in run.stderr



def test_render_flags_reach_the_config_and_the_manifest(tmp_path):
    out = tmp_path / "g"
    assert main(["render", TINY, "--units", "conv2:0", "--steps", "4", "--schedule", "cosine", "--lr", "0.2",
                 "--quiet", "--out", str(out)]) == 0
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["schedule"] == "cosine" and settings["lr"] == 0.2 and settings["steps"] == 4


@pytest.mark.slow
def test_cue_task_in_miniature_then_the_command_it_prints(tmp_path, capsys):
    """`vizneuron cue-task` with no data builds the miniature from the bundled sample and prints the
    `vizneuron shift` command that runs on it; that command works as printed and the edit helps."""
    assert main(["cue-task", str(tmp_path / "task")]) == 0
    out = capsys.readouterr().out
    assert "train-biased        20 images" in out and "test-balanced       40 images" in out
    command = out.strip().splitlines()[-1].removeprefix("next: vizneuron ").split()
    quick = ["--top", "256", "--steps", "0", "--no-retrain", "--quiet", "--out", str(tmp_path / "o")]
    assert main(command + quick) == 0
    scores = json.loads((tmp_path / "o" / "shift.json").read_text())["scores"]
    assert scores["SHIFT"]["worst"] > scores["original"]["worst"]


def test_every_flag_says_what_it_does_and_its_default():
    """Each flag and argument of every command has help, and each flag with a default names it in its
    help as `--help` prints it (e.g. `--k K  top and bottom images kept per unit (default: 32)`)."""
    for parser in parsers(build_parser()):
        blocks: dict[str, str] = {}
        for line in parser.format_help().splitlines():
            if line.startswith("  ") and line.strip().startswith("-"):
                current = line.strip().split()[0].rstrip(",")
                blocks[current] = ""
            if blocks:
                blocks[current] += " " + line.strip()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{name} has no help"
            if action.option_strings and action.default not in (None, False, "", [], argparse.SUPPRESS):
                shown = " ".join(blocks[action.option_strings[0]].split())
                assert "default" in shown and str(action.default) in shown.replace("\n", " "), (name, shown)
