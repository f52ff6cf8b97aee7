"""SHIFT on the cue task: the task's splits, the trimmed features, the fix and its baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vizneuron as vz
from vizneuron.cli import main
from vizneuron.imageio import image_files, read_rgb
from vizneuron.models.default import WEIGHTS_DIR
from vizneuron.shift.run import SAE_NAME, ShiftError, evaluate, group_of, shift
from vizneuron.shift.task import (
    CORRELATION,
    add_cue,
    build_cue_task,
    build_sample_cue_task,
    cue_pattern,
    has_cue,
    remove_cue,
)
from vizneuron.workspace import PathNotAllowed, Workspace

from helpers import CUE_PER_CLASS as PER_CLASS
from helpers import shared_path

SAE_FILE = WEIGHTS_DIR / "cue_biased_layer3_sae.safetensors"


@pytest.fixture
def task(cue_task):
    return cue_task


def _concepts(task):
    return {name: task / "concepts" / name for name in ("cue", "cat", "dog")}


def test_cue_is_a_faint_texture_that_can_be_undone():
    rgb = np.random.default_rng(0).integers(20, 235, (32, 32, 3), dtype=np.uint8)
    cued = add_cue(rgb)
    assert np.abs(cued.astype(int) - rgb).max() == 8 and (remove_cue(cued) == rgb).all()
    assert set(np.unique(cue_pattern())) == {-8, 8}
    assert group_of("/x/cat/cue-00012.png", "cat") == "cat/cue" and group_of("/x/cat/00012.png", "cat") == "cat"


def test_task_splits_carry_the_cue_at_the_promised_rates(task):
    for name, rate in (("cat", CORRELATION), ("dog", 1 - CORRELATION)):
        files = image_files(task / "train-biased" / name)
        assert len(files) == PER_CLASS
        assert sum(map(has_cue, files)) == round(rate * PER_CLASS)
        balanced = image_files(task / "test-balanced" / name)
        assert sum(map(has_cue, balanced)) == PER_CLASS // 2
        assert not any(map(has_cue, image_files(task / "test-cuefree" / name)))
        assert sum(map(has_cue, image_files(task / "val-balanced" / name))) == PER_CLASS // 2
    assert len(image_files(task / "concepts" / "cue")) == 2 * len(image_files(task / "concepts" / "cat"))
    # the validation images are none of the training, concept or test images
    def plain(split: str) -> set[bytes]:
        return {read_rgb(f)[0].tobytes() for f in image_files(task / split) if not has_cue(f)}

    val = plain("val-balanced")
    assert len(val) == PER_CLASS and not val & (plain("train-biased") | plain("concepts") | plain("test-cuefree"))
    # the same settings reuse the folder; the cue really is in the cue images
    assert build_cue_task(shared_path("data", "cifar10"), task, limit=PER_CLASS) == task


def test_the_miniature_task_from_the_bundled_sample_keeps_its_splits_apart(tmp_path):
    task = build_sample_cue_task(tmp_path / "mini")
    pixels = {split: {name: [read_rgb(p)[0] for p in image_files(task / split / name)] for name in ("cat", "dog")}
              for split in ("train-biased", "test-balanced", "concepts")}
    train = {name: [has_cue(p) for p in image_files(task / "train-biased" / name)] for name in ("cat", "dog")}
    assert [sum(train["cat"]), sum(train["dog"])] == [10, 1]  # 95 % and 5 % of 10, rounded up: the bias
    for name in ("cat", "dog"):
        test = image_files(task / "test-balanced" / name)
        cued, plain = [p for p in test if has_cue(p)], [p for p in test if not has_cue(p)]
        assert len(cued) == len(plain) == 10  # each test image with and without the cue
        for with_cue, without in zip(cued, plain):
            assert np.array_equal(add_cue(read_rgb(without)[0]), read_rgb(with_cue)[0])
        concept = image_files(task / "concepts" / "cue" / name)
        assert len(concept) == len(pixels["concepts"][name]) == 10 and all(has_cue(p) for p in concept)
        seen = [image.tobytes() for split in pixels.values() for image in split[name]]
        assert len(set(seen)) == 40  # 10 concept + 10 train + 20 test images: none shared between splits
    assert build_sample_cue_task(tmp_path / "mini") == task  # reused, not rewritten


def test_rebuilding_the_task_with_other_settings_leaves_no_file_of_the_old_one(tmp_path):
    cifar = shared_path("data", "cifar10")
    build_cue_task(cifar, tmp_path, limit=6)
    build_cue_task(cifar, tmp_path, limit=4)  # other settings: every split is written again
    for split in ("train-biased", "val-balanced", "test-balanced", "test-cuefree"):
        assert len(image_files(tmp_path / split / "cat")) == 4, split


def test_bad_shift_requests_say_why(task, tmp_path):
    model = vz.load_model("default:cue-biased")
    with pytest.raises(ShiftError, match="ignore"):
        shift(model, "layer3", None, task / "train-biased",
              {"cat": task / "concepts/cat", "dog": task / "concepts/dog"})
    unlabelled = tmp_path / "flat"
    unlabelled.mkdir()
    for path in image_files(task / "concepts" / "cat")[:4]:
        (unlabelled / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ShiftError, match="folders named after the classes"):
        shift(model, "layer3", None, unlabelled, _concepts(task))
    with pytest.raises(ValueError, match="no bundled model"):
        vz.load_model("default:cue-biassed")


@pytest.mark.slow
def test_shift_trims_the_cue_features_and_lifts_the_worst_group_where_random_trimming_does_not(task):
    biased = vz.load_model("default:cue-biased")
    found = shift(biased, "layer3", SAE_FILE, task / "train-biased", _concepts(task), test=task / "test-balanced",
                  cuefree=task / "test-cuefree")
    # the cue's own features, measured apart from SHIFT: the largest lift from the plain concept
    # images to the same images with the cue
    sae = vz.load_sae(SAE_FILE)
    lift = _feature_means(biased, sae, task / "concepts" / "cue") - _feature_means(
        biased, sae, task / "concepts" / "cat", task / "concepts" / "dog")
    planted = {f"layer3/{SAE_NAME}:{f}" for f in lift.argsort(descending=True)[:20].tolist()}
    used = planted & {c.unit for c in found.candidates}  # those the classifier leans on (positive attribution)
    chosen = used & set(found.ablated)
    assert len(used) >= 10 and len(chosen) >= 0.8 * len(used), (len(chosen), len(used), sorted(used - chosen))
    original, trimmed = found.scores["original"], found.scores["SHIFT"]
    assert trimmed.worst >= original.worst + 0.12, (original, trimmed)
    assert trimmed.balanced >= original.balanced + 0.06 and trimmed.cuefree >= original.cuefree - 0.02
    # as many random features, held at their means the same way, do not do the same
    picked = torch.randperm(sae.config.d_sae, generator=torch.Generator().manual_seed(0))[:len(found.ablated)]
    randomly = vz.edit(biased, [f"layer3/{SAE_NAME}:{f}" for f in picked.tolist()], saes={SAE_NAME: SAE_FILE},
                       mode="mean", data=task / "train-biased")
    random_scores = evaluate(randomly, task / "test-balanced")
    assert random_scores.worst < original.worst + 0.05 and random_scores.balanced < original.balanced + 0.03, \
        (original, random_scores)


def _feature_means(model, sae, *folders) -> torch.Tensor:
    total, count = torch.zeros(sae.config.d_sae), 0
    for folder in folders:
        for batch in vz.ActivationStream(model, ["layer3"], folder, batch_size=250):
            rows = model.inputs.tokens.rows(batch.activations["layer3"])
            total += sae.encode(rows).detach().reshape(len(batch.ids), -1, sae.config.d_sae).mean(1).sum(0)
            count += len(batch.ids)
    return total / count


@pytest.mark.slow
def test_cli_shift_writes_the_report_and_a_loadable_edit(task, tmp_path, capsys):
    out = tmp_path / "shift"
    code = main(["shift", "default:cue-biased", "--layer", "layer3", "--sae", str(SAE_FILE), "--data",
                 str(task / "train-biased"), "--concept", f"cue={task / 'concepts' / 'cue'}", "--concept",
                 f"cat={task / 'concepts' / 'cat'}", "--concept", f"dog={task / 'concepts' / 'dog'}", "--test",
                 str(task / "test-balanced"), "--top", "16", "--steps", "8", "--quiet", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "SHIFT + retrain" in printed and "shift:" in printed
    data = json.loads((out / "shift.json").read_text())
    assert len(data["candidates"]) == 16 and data["ablated"] == [c["unit"] for c in data["candidates"] if c["chosen"]]
    assert set(data["scores"]) == {"original", "SHIFT", "SHIFT + retrain"}
    page = (out / "index.html").read_text()
    assert "worst group" in page and "cat/cue" in page and "_render.png" in page
    edited = vz.load_model(f"edit:{out / 'edit.json'}")
    assert [e["unit"] for e in edited.edits] == data["ablated"]
    retrained = vz.load_model(f"edit:{out / 'edit-retrained.json'}")
    assert retrained.edits[-1] == {"weights": "fc"}
    # a person's choice: accept two units, and the edit holds exactly those
    code = main(["shift", "default:cue-biased", "--layer", "layer3", "--data", str(task / "train-biased"),
                 "--concept", f"cue={task / 'concepts' / 'cue'}", "--concept", f"cat={task / 'concepts' / 'cat'}",
                 "--top", "8", "--accept", "layer3:1,layer3:2", "--no-retrain", "--steps", "0", "--out",
                 str(tmp_path / "mine")])
    assert code == 0
    assert [e["unit"] for e in vz.load_model(f"edit:{tmp_path / 'mine' / 'edit.json'}").edits] == ["layer3:1",
                                                                                                   "layer3:2"]


def test_app_workspace_holds_an_edit_file_to_its_rules(tmp_path):
    ws = Workspace.create([tmp_path / "root"], tmp_path / "home")
    (tmp_path / "root").mkdir()
    bad = tmp_path / "root" / "bad.json"
    bad.write_text(json.dumps({"vizneuron_edit": 1, "model": "python:os:getcwd", "saes": {}, "ablate": []}))
    with pytest.raises(vz.EditError, match="imports and runs code"):  # refused as data, before the sandbox
        ws.check_spec(f"edit:{bad}")
    outside = tmp_path / "root" / "outside.json"
    outside.write_text(json.dumps({"vizneuron_edit": 1, "model": "default", "ablate": [],
                                   "saes": {"s": {"file": "/etc/passwd", "sha256": "x"}}}))
    with pytest.raises(PathNotAllowed):
        ws.check_spec(f"edit:{outside}")
    good = vz.edit("default", "layer3:1").save(tmp_path / "root" / "good.json")
    assert ws.check_spec(f"edit:{good}").source == "edit"
