"""Files are checked where they are opened: under a workspace's file access (what the app runs its
jobs with), no loader opens a file outside the workspace, whatever a spec, an edit file or a default
file name says, and downloads stay in the app's home."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import vizneuron as vz
from vizneuron.files import FileAccess, using
from vizneuron.models.cifar_resnet import CifarResNet
from vizneuron.models.default import WEIGHTS_DIR
from vizneuron.sae import SAE, SAEConfig, find_saes
from vizneuron.samples import SAMPLE_DIR
from vizneuron.workspace import PathNotAllowed, Workspace

from tflite_writer import small_classifier


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A workspace (ROOT read, HOME written), a folder OUT beside it, and a working folder CWD."""
    root, out, cwd = tmp_path / "root", tmp_path / "out", tmp_path / "cwd"
    for folder in (root, out, cwd):
        folder.mkdir()
    monkeypatch.chdir(cwd)
    return Workspace.create([root], tmp_path / "home"), root, out, cwd


def _default_weights(path: Path) -> Path:
    save_file(vz.load_model("default").module.state_dict(), str(path))
    return path


def test_an_edits_replaced_weights_and_direction_files_outside_are_refused(place):
    ws, root, out, _ = place
    good = vz.edit("default", ["layer3:1"]).with_weights(
        {"fc": {"weight": torch.zeros(10, 128), "bias": torch.zeros(10)}}).save(root / "e.json")
    content = json.loads(good.read_text())
    weights = root / content["weights"]["file"]
    (out / "w.safetensors").write_bytes(weights.read_bytes())
    content["weights"]["file"] = "../out/w.safetensors"  # 1: the head's weights, named outside
    (root / "escape.json").write_text(json.dumps(content))
    (root / "edits").mkdir()
    (root / "edits" / "linked.weights.safetensors").symlink_to(out / "w.safetensors")
    linked = {**content, "weights": {**content["weights"], "file": "linked.weights.safetensors"}}
    (root / "edits" / "linked.json").write_text(json.dumps(linked))  # 1: the same through a symlink
    np.save(out / "v.npy", np.ones(128, np.float32))
    direction = {**json.loads(good.read_text()), "ablate": [{"unit": f"layer3:dir={out / 'v.npy'}", "value": 0}]}
    direction.pop("weights")
    (root / "direction.json").write_text(json.dumps(direction))  # 3: a direction file outside
    with using(ws.access()):
        assert vz.load_model(f"edit:{good}").edits[-1] == {"weights": "fc"}  # inside: loads
        for name, words in (("escape.json", "replaced weights"), ("edits/linked.json", "replaced weights"),
                            ("direction.json", "direction file")):
            with pytest.raises(PathNotAllowed, match=words + ".*outside the folders"):
                vz.load_model(f"edit:{root / name}")
    for name in ("escape.json", "edits/linked.json"):
        with pytest.raises(PathNotAllowed):
            ws.check_spec(f"edit:{root / name}")  # the app's check ahead of time agrees


def test_relative_files_are_found_in_the_root_never_in_the_working_folder(place):
    ws, root, _, cwd = place
    _default_weights(root / "w.safetensors")
    (cwd / "w.safetensors").write_bytes(b"not weights")  # 2: what a loader would open relative to CWD
    edit = vz.edit("default", ["layer3:1"], values=[0.0])
    content = {**edit.to_dict(), "model": "default?weights=w.safetensors"}
    (root / "e.json").write_text(json.dumps(content))
    with using(ws.access()):
        assert vz.load_model("default?weights=w.safetensors").name == "default"
        assert vz.load_model(f"edit:{root / 'e.json'}").ablations[0].unit == "layer3:1"
    with pytest.raises(vz.WeightsUnavailable, match="could not read"):  # outside the app: as given, the CWD's
        vz.load_model("default?weights=w.safetensors")


def test_sae_discovery_and_implicit_tflite_labels_do_not_follow_symlinks_out(place):
    ws, root, out, _ = place
    sae = SAE(SAEConfig(d_in=128, d_sae=256, k=8, model="default", layer="layer3"))
    sae.save(out / "outside.safetensors")
    sae.save(root / "inside.safetensors")
    (root / "saes").mkdir()
    (root / "saes" / "linked.safetensors").symlink_to(out / "outside.safetensors")  # 4
    with using(ws.access()):
        assert sorted(find_saes(ws.sae_folders, "layer3", 128)) == ["inside"]
    assert sorted(find_saes(ws.sae_folders, "layer3", 128)) == ["inside", "linked"]  # the library alone: both
    (root / "m.tflite").write_bytes(small_classifier("float"))
    (out / "LABELS.txt").write_text("\n".join(f"secret{i}" for i in range(10)))
    (root / "imagenet_labels.txt").symlink_to(out / "LABELS.txt")  # 5: the labels read beside a model
    with using(ws.access()), pytest.raises(PathNotAllowed, match="labels file"):
        vz.load_model(f"tflite:{root / 'm.tflite'}")


def test_downloads_for_the_app_go_to_its_home(place, monkeypatch):
    """6: torchvision's weights, asked for without a file, are fetched into HOME/downloads (here the
    fetch fails offline: where it would have written is what counts)."""
    ws, *_ = place
    asked = []

    def offline(url, dst, *args, **kwargs):
        asked.append(Path(dst))
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    before = torch.hub.get_dir()
    with using(ws.access()), pytest.raises(vz.WeightsUnavailable):
        vz.load_model("torchvision:resnet18")
    assert asked and all(p.is_relative_to(ws.home / "downloads") for p in asked), asked
    assert torch.hub.get_dir() == before  # torch's own setting is put back


class Recording(FileAccess):
    """An access that records every file it is asked for and refuses anything outside `allowed`."""

    def __init__(self, allowed: list[Path]) -> None:
        self.allowed, self.asked = [p.resolve() for p in allowed], []

    def read(self, path: Path, what: str) -> Path:
        real = path.expanduser().resolve()
        self.asked.append((what, real))
        if not any(real.is_relative_to(place) for place in self.allowed):
            raise PathNotAllowed(f"{what} {path} is outside")
        return real


def test_every_model_source_opens_its_files_through_the_access(place):
    """The app's load paths for every model source that reads files, with an access that records what
    it is asked and refuses anything outside ROOT and the bundled weights: each loads, and each file
    its spec names was asked for."""
    ws, root, _, _ = place
    _default_weights(root / "w.safetensors")
    torch.save(CifarResNet(3).state_dict(), root / "r20.th")
    (root / "m.tflite").write_bytes(small_classifier("float"))
    (root / "labels.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    import torchvision  # torchvision's and timm's own architectures, weights from a file

    torch.save(torchvision.models.resnet18().state_dict(), root / "resnet18.pth")
    sae = SAE(SAEConfig(d_in=128, d_sae=256, k=8, model="default", layer="layer3"))
    sae.save(root / "s.safetensors")
    np.save(root / "d.npy", np.ones(128, np.float32))
    edit = vz.edit("default", ["layer3/s:1", f"layer3:dir={root / 'd.npy'}"],
                   saes={"s": root / "s.safetensors"}).save(root / "e.json")
    edit.write_text(json.dumps({**json.loads(edit.read_text()), "model": f"default?weights={root / 'w.safetensors'}"}))
    specs = {f"default?weights={root / 'w.safetensors'}": ["w.safetensors"], "default": [],
             f"cifar-resnet:{root / 'r20.th'}": ["r20.th"],
             f"tflite:{root / 'm.tflite'}?labels={root / 'labels.txt'}": ["m.tflite", "labels.txt"],
             f"torchvision:resnet18?weights={root / 'resnet18.pth'}": ["resnet18.pth"],
             f"edit:{edit}": ["e.json", "s.safetensors", "d.npy", "w.safetensors"]}
    for spec, names in specs.items():
        access = Recording([root, WEIGHTS_DIR, SAMPLE_DIR])
        with using(access):
            model = vz.load_model(spec)
        asked = {real.name for _, real in access.asked}
        assert set(names) <= asked, (spec, access.asked)
        assert model.layers  # loaded, and measured
    outside = Recording([WEIGHTS_DIR])  # the same specs with ROOT not allowed: every one is refused
    for spec in [s for s in specs if s != "default"]:
        with using(outside), pytest.raises(PathNotAllowed):
            vz.load_model(spec)
