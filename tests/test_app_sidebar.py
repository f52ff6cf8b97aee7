"""The app's sidebar and sandbox: model specs, uploads, indexes, SAE files, paths outside the app's folders.

Driven through Streamlit's own testing API (AppTest), with a private home folder and real images."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from vizneuron.mine import ExampleIndex
from vizneuron.models import MODEL_PRESETS

from helpers import (
    captions,
    concept_data,
    errors,
    first_unit,
    index_picker,
    layer_picker,
    make_app,
    mine_in_app,
    shared_path,
)

pytest.importorskip("streamlit")


def test_bad_model_specs_are_messages(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    at = make_app(monkeypatch, tmp_path)
    at.sidebar.radio(key="model_source").set_value("model spec").run()
    cases = {
        "nonsense:thing": "unknown model source",
        "torchvision:resnt18": "closest: resnet18",
        "torchvision:resnet18": "weights=/path/to/resnet18.pth",  # offline: no download, a hint
        "python:os:getcwd": "runs arbitrary code",
        "cifar-resnet:/etc/passwd": "outside the folders",
        "default?weights=../../../etc/shadow": "outside the folders",
        "default?weights=missing.pt": "does not exist",
    }
    for spec, message in cases.items():
        at.sidebar.text_input(key="model_spec").input(spec).run()
        assert not at.exception, (spec, at.exception)
        assert any(message in e for e in errors(at)), (spec, errors(at))
    at.sidebar.text_input(key="model_spec").input("default").run()
    assert not errors(at) and at.title[0].value == first_unit()


def test_named_models_say_what_they_download_and_fail_clearly_offline(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    at = make_app(monkeypatch, tmp_path)
    picker = at.sidebar.selectbox(key="model_preset")
    assert picker.value == "Bundled CIFAR-10 classifier" and at.title[0].value == first_unit()
    assert picker.options == [preset.title for preset in MODEL_PRESETS]
    picker.set_value("InceptionV1 (lucid / lucent)").run()
    assert not at.exception
    note = next(c.value for c in at.sidebar.caption if "cat/car neuron" in c.value)
    assert "downloads lucent's weights file" in note and "Offline before that first download" in note
    assert any("could not download" in e and "lucent:inceptionv1?weights=" in e for e in errors(at)), errors(at)
    assert not (tmp_path / "home" / "downloads" / "checkpoints" / "inception5h.pth").exists()  # nothing half-written


@pytest.mark.slow
def test_model_files_in_the_app_folders_are_offered(monkeypatch, tmp_path):
    folder = shared_path("models")
    if not (folder / "coral" / "mobilenet_v1_0.25_128_quant.tflite").exists():
        pytest.skip(f"no Coral MobileNet under {folder}")
    at = make_app(monkeypatch, tmp_path, folder)
    at.sidebar.radio(key="model_source").set_value("model file").run()
    picker = at.sidebar.selectbox(key="model_file")
    assert {"cifar-resnet/resnet20-12fca82f.th", "coral/mobilenet_v1_0.25_128_quant.tflite"} <= set(picker.options)
    picker.set_value(str(folder / "coral" / "mobilenet_v1_0.25_128_quant.tflite")).run()
    assert not at.exception and not errors(at), errors(at)
    assert "model_arch" not in [box.key for box in at.sidebar.text_input]  # a TFLite graph needs no architecture
    assert layer_picker(at).value == "MobilenetV1_Conv2d_13_pointwise"  # MobileNet-v1's layers
    at.sidebar.selectbox(key="model_file").set_value(str(folder / "cifar-resnet" / "resnet20-12fca82f.th")).run()
    assert not errors(at) and at.sidebar.text_input(key="model_arch").value == "cifar-resnet"
    assert layer_picker(at).value == "layer3"  # ResNet-20 for CIFAR
    empty = make_app(monkeypatch, tmp_path / "empty-app", tmp_path / "empty-app")
    empty.sidebar.radio(key="model_source").set_value("model file").run()
    assert any("No model files" in i.value for i in empty.sidebar.info)


def test_uploaded_checkpoint_and_index_from_another_model(monkeypatch, tmp_path, cifar_folder):
    checkpoint = shared_path("models", "cifar-resnet")
    weights = sorted(checkpoint.glob("resnet20-*.th"))
    if not weights:
        pytest.skip(f"no ResNet-20 checkpoint under {checkpoint}")
    at = make_app(monkeypatch, tmp_path, cifar_folder.parent)
    mine_in_app(at, cifar_folder)  # with the bundled model
    at.sidebar.radio(key="model_source").set_value("upload").run()
    uploader = at.sidebar.file_uploader(key="model_upload")
    uploader.upload("garbage.pt", b"not a checkpoint").run()
    assert any("Cannot load model" in e and "ModelSpec(" not in e for e in errors(at))  # the spec, not its repr
    at.sidebar.file_uploader(key="model_upload").upload(weights[0].name, weights[0].read_bytes()).run()
    assert not at.exception and not errors(at), errors(at)  # the index chosen for the default model stays with it
    assert layer_picker(at).value == "layer3"  # the ResNet-20 loaded; its layers are listed
    mined = next(p for p in index_picker(at).options if Path(p).name.startswith("default_cifar_small"))
    index_picker(at).set_value(mined).run()
    assert any("was mined with default" in e for e in errors(at)), errors(at)  # an index from another model
    at.sidebar.radio(key="model_source").set_value("upload").run()
    at.sidebar.file_uploader(key="model_upload").upload("huge.tflite", b"\0" * (513 * 2**20)).run()
    assert any("limit for models is 512 MiB" in e for e in errors(at))


def test_paths_outside_the_app_folders_are_refused(monkeypatch, tmp_path, cifar_folder):
    at = make_app(monkeypatch, tmp_path, cifar_folder)
    at.radio(key="view").set_value("Data").run()
    for folder in ("/etc", str(cifar_folder / ".." / "..")):
        at.text_input(key="mine_folder").input(folder).run()
        at.button(key="mine").click().run()
        assert any("outside the folders this app may read" in e for e in errors(at)), errors(at)
    at.radio(key="view").set_value("Neuron").run()
    concept_data(at).input("/usr/share").run()
    assert any("outside the folders" in e for e in errors(at))
    index_picker(at).set_value("(path…)").run()
    at.sidebar.text_input(key="index_typed").input("/etc/hostname").run()
    assert any("outside the folders" in e for e in errors(at))


def test_sandbox_holes_stay_closed(monkeypatch, tmp_path):
    """Symlinked files and listed paths that lead out of the roots are skipped, an upper-case option
    value is still a path, and another program's SQLite file is refused without being changed."""
    from vizneuron.samples import SAMPLE_DIR

    from tflite_writer import small_classifier

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "cat").mkdir(parents=True)
    outside.mkdir()
    for name in ("0000.jpg", "0001.jpg", "0002.jpg"):
        (root / "cat" / name).write_bytes((SAMPLE_DIR / "cat" / name).read_bytes())
    (outside / "secret.jpg").write_bytes((SAMPLE_DIR / "dog" / "0000.jpg").read_bytes())
    (root / "cat" / "linked.jpg").symlink_to(outside / "secret.jpg")
    (root / "list.txt").write_text(f"cat/0000.jpg\n{outside / 'secret.jpg'}\n")
    tflite = small_classifier("float")
    (root / "m.tflite").write_bytes(tflite)
    (root / "broken.tflite").write_bytes(tflite[: len(tflite) // 2])
    (outside / "LABELS.TXT").write_text("\n".join(f"secret{i}" for i in range(10)))
    import sqlite3
    foreign = sqlite3.connect(root / "other.sqlite")
    foreign.execute("CREATE TABLE people(name TEXT)")
    foreign.commit()
    foreign.close()
    before = (root / "other.sqlite").read_bytes()
    (root / "folder.sqlite").mkdir()
    at = make_app(monkeypatch, tmp_path, root)

    def mined(folder: Path) -> tuple[str, list]:
        mine_in_app(at, folder)
        notes = at.dataframe[0].value
        return at.success[0].value, list(zip(notes["file"], notes["action"], notes["reason"]))

    summary, notes = mined(root)  # 1: a symlink inside a root folder
    assert "Mined 3 images" in summary and "1 skipped" in summary
    assert notes == [(str(root / "cat" / "linked.jpg"), "skipped", "outside the folders this app may read")]
    summary, notes = mined(root / "list.txt")  # 2: a list file naming a path outside
    assert "Mined 1 images" in summary
    assert notes == [(str(outside / "secret.jpg"), "skipped", "outside the folders this app may read")]
    at.radio(key="view").set_value("Neuron").run()
    assert not any("secret" in c for c in captions(at))

    at.sidebar.radio(key="model_source").set_value("model spec").run()
    spec = at.sidebar.text_input(key="model_spec")
    spec.input(f"tflite:{root / 'm.tflite'}?labels={outside / 'LABELS.TXT'}").run()  # 3: upper case is a path
    assert any("outside the folders" in e for e in errors(at)), errors(at)
    at.sidebar.text_input(key="model_spec").input(f"tflite:{root / 'broken.tflite'}").run()
    assert not at.exception and any("truncated or damaged" in e for e in errors(at)), errors(at)
    at.sidebar.text_input(key="model_spec").input("default").run()

    index_picker(at).set_value("(path…)").run()  # 4: another program's SQLite file as an index
    at.sidebar.text_input(key="index_typed").input(str(root / "other.sqlite")).run()
    assert not at.exception and any("another program" in e for e in errors(at)), errors(at)
    assert (root / "other.sqlite").read_bytes() == before
    assert sorted(p.name for p in root.glob("other.sqlite*")) == ["other.sqlite"]  # no -wal, no -shm
    at.sidebar.text_input(key="index_typed").input(str(root / "folder.sqlite")).run()
    assert not at.exception and any("is a folder" in e for e in errors(at)), errors(at)


def test_an_edited_sae_file_is_left_out_with_a_note(monkeypatch, tmp_path):
    import json

    from vizneuron.sae import SAE, SAEConfig

    saes = tmp_path / "home" / "saes"
    SAE(SAEConfig(d_in=128, d_sae=256, k=8, model="default", layer="layer3")).save(saes / "edited.safetensors")
    config = json.loads((saes / "edited.json").read_text())
    (saes / "edited.json").write_text(json.dumps(config | {"k": 2}))
    at = make_app(monkeypatch, tmp_path)
    assert not at.exception and any("edited.safetensors left out" in e for e in errors(at)), errors(at)
    assert "SAE feature" not in at.sidebar.radio(key="unit_kind").options



def test_a_feature_of_another_models_sae_blocks_only_the_neuron_view(monkeypatch, tmp_path):
    """An SAE of the same layer name and width, trained on another model, is listed for the layer;
    picking one of its features says why it cannot be shown, and the layer's own views still work."""
    from vizneuron.sae import SAE, SAEConfig

    SAE(SAEConfig(d_in=128, d_sae=256, k=8, model="another-model", layer="layer3")).save(
        tmp_path / "home" / "saes" / "foreign.safetensors")
    at = make_app(monkeypatch, tmp_path)
    at.sidebar.radio(key="unit_kind").set_value("SAE feature").run()
    assert not at.exception and any("Cannot show layer3/foreign:0" in e and "another-model" in e
                                    for e in errors(at)), errors(at)
    assert not at.title  # no neuron view of a unit that cannot be read
    at.radio(key="view").set_value("Layer").run()
    assert not at.exception and len(at.image) == 64  # the layer's grid of top examples, first page


@pytest.mark.slow
def test_a_second_model_gets_its_own_layer_its_layer_mined_alone_and_a_note_on_the_sample(monkeypatch, tmp_path):
    """Switching from the bundled model to an ImageNet one: the layer box shows the new model's
    default layer (not the last model's), only the shown layer is mined on the bundled sample (the
    next one when it is opened), and the examples say the 32 px sample says little about a 224 px
    model, with one click to the Data view."""
    at = make_app(monkeypatch, tmp_path)
    assert layer_picker(at).value == "layer3"
    at.sidebar.radio(key="model_source").set_value("model spec").run()
    at.sidebar.text_input(key="model_spec").input("torchvision:resnet18?weights=none").run()
    assert not at.exception and not errors(at), errors(at)
    assert layer_picker(at).value == "layer4" and "stem" not in layer_picker(at).options
    assert at.title[0].value.startswith("layer4:")
    samples = tmp_path / "home" / "indexes" / "sample"

    def mined_layers() -> list[set[str]]:
        return sorted(sorted({u.split(":")[0] for u in ExampleIndex(p).units()}) for p in samples.glob("*.sqlite"))

    assert mined_layers() == [["layer3"], ["layer4"]]  # the bundled model's layer3, this model's layer4
    warning = next(w.value for w in at.warning if "bundled sample" in w.value)
    assert "upsampled to this model's 224x224" in warning
    at.button(key="examples_to_data").click().run()
    assert at.radio(key="view").value == "Data"
    at.radio(key="view").set_value("Neuron").run()
    layer_picker(at).set_value("layer2").run()
    assert not errors(at) and at.title[0].value.startswith("layer2:")
    assert mined_layers() == [["layer2"], ["layer3"], ["layer4"]]
