"""The Streamlit app, driven through Streamlit's own testing API (AppTest): every flow of the issue.

The app gets a private home folder and, as its readable root, a small labelled CIFAR-10 folder made
from ../shared (plus a corrupt file), so mining, the probe and the SAE split run on real images.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from conftest import PER_CLASS, shared_path

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
pytestmark = pytest.mark.slow  # the bundled model, real renders and CIFAR-10 images


def make_app(monkeypatch, tmp_path: Path, *roots: Path) -> AppTest:
    monkeypatch.setenv("VIZNEURON_APP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIZNEURON_APP_ROOTS", ":".join(str(r) for r in roots or (tmp_path,)))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def captions(at: AppTest) -> list[str]:
    return [c for element in at.image for c in (img.caption for img in element.proto.imgs)]


def render_captions(at: AppTest) -> list[str]:
    """Captions of the neuron view's renders (the bundled sample's examples are shown below them)."""
    return [c for c in captions(at) if c.startswith("activation")]


def index_picker(at: AppTest):
    return next(box for box in at.sidebar.selectbox if box.label == "Index")


def mine_in_app(at: AppTest, folder: Path) -> None:
    at.radio(key="view").set_value("Data").run()
    at.text_input(key="mine_folder").input(str(folder)).run()
    at.button(key="mine").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))


def test_opens_on_default_model_renders_with_progress_and_caches(monkeypatch, tmp_path):
    at = make_app(monkeypatch, tmp_path)
    assert at.title[0].value == "layer3:0"  # the deepest spatial layer of the bundled model
    assert "128 channels" in at.sidebar.selectbox(key="layer").format_func("layer3")
    assert "Not rendered with these settings yet." in [c.value for c in at.caption]
    at.number_input(key="steps").set_value(64)
    at.button(key="render").click().run()
    assert not at.exception and not errors(at)
    shown = render_captions(at)
    assert len(shown) == 4 and all("x best example)" in c for c in shown)  # 4 samples, beside the sample's best
    assert len(list((tmp_path / "home" / "renders").glob("*.safetensors"))) == 1
    at.run()  # a rerun reads the render back: the button is off and the images are still there
    assert at.button(key="render").disabled and render_captions(at) == shown
    at.number_input(key="seed").set_value(1).run()  # another setting, another render
    assert not at.button(key="render").disabled and not render_captions(at)


def test_mine_then_examples_layer_grid_and_click_through(monkeypatch, tmp_path, cifar_folder):
    at = make_app(monkeypatch, tmp_path, cifar_folder.parent)
    mine_in_app(at, cifar_folder)
    assert f"Mined {10 * PER_CLASS}" in at.success[0].value and "1 skipped" in at.success[0].value
    notes = at.dataframe[0].value
    assert len(notes) == 1 and notes["file"][0].endswith("cat/broken.jpg") and notes["action"][0] == "skipped"
    # the index is now the selected one; the neuron view shows top and bottom examples
    at.radio(key="view").set_value("Neuron").run()
    assert index_picker(at).value.endswith(".sqlite")
    example_images = [c for c in captions(at) if c.endswith(".jpg")]
    assert len(example_images) == 16  # 8 top + 8 bottom, each with its heatmap picture
    # channel search: the channel picker labels each channel with its top examples' commonest label
    picker = next(box for box in at.sidebar.selectbox if box.label.startswith("Channel"))
    label = picker.format_func(3)
    assert label.startswith("3  · top: ") and label.split("top: ")[1].split()[0] in CIFAR_CLASSES
    picker.set_value(9).run()
    assert at.title[0].value == "layer3:9"
    # layer view: a grid of all 128 channels' top crops, in pages of 64; a click opens the channel
    at.radio(key="view").set_value("Layer").run()
    assert len(at.image) == 64 and at.number_input(key="grid_page").value == 1
    assert at.button(key="open_37").label.split()[1] in CIFAR_CLASSES  # "#37 cat": its top examples' label
    at.button(key="open_37").click().run()
    assert at.radio(key="view").value == "Neuron" and at.title[0].value == "layer3:37"
    assert next(box for box in at.sidebar.selectbox if box.label.startswith("Channel")).value == 37
    assert not at.warning and not at.sidebar.warning  # no "default value but also set via Session State"
    # mining again with the same settings reuses (resumes) the same index file
    mine_in_app(at, cifar_folder)
    assert len(list((tmp_path / "home" / "indexes").glob("*.sqlite"))) == 2  # the bundled sample's and this


def test_layer_grid_of_renders_is_cached(monkeypatch, tmp_path):
    at = make_app(monkeypatch, tmp_path)
    at.sidebar.selectbox(key="layer").set_value("layer1").run()
    at.radio(key="view").set_value("Layer").run()
    at.radio(key="grid_source").set_value("renders").run()
    at.number_input(key="grid_steps").set_value(16).run()
    at.button(key="render_layer").click().run()
    assert not at.exception and not errors(at)
    assert len(at.image) == 64  # layer1 has 64 channels: one page
    at.run()  # read back from the cache: no render button, same grid
    assert len(at.image) == 64 and "render_layer" not in [b.key for b in at.button]
    assert len(list((tmp_path / "home" / "renders").glob("*.safetensors"))) == 1


def test_probe_verdict_with_label_groups_uploads_and_sae_split(monkeypatch, tmp_path, cifar_folder):
    from vizneuron import load_model
    from vizneuron.sae import train_layer_sae

    model = load_model("default")
    sae = train_layer_sae(model, "layer3", cifar_folder, expansion=2, k=8, epochs=2, batch_size=256, progress=False)
    (tmp_path / "home" / "saes").mkdir(parents=True)
    sae.save(tmp_path / "home" / "saes" / "small.safetensors")

    at = make_app(monkeypatch, tmp_path, cifar_folder.parent)
    at.text_input(key="concept_data").input(str(cifar_folder))
    at.text_area(key="concept_groups").input("cat, dog, automobile, truck")
    at.number_input(key="probe_renders").set_value(2)
    at.number_input(key="probe_steps").set_value(32)
    at.run()
    assert at.selectbox(key="probe_sae").options == ["(no SAE)", "small"]
    at.selectbox(key="probe_sae").set_value("small")
    at.button(key="probe").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    verdict = [m.value for m in [*at.success, *at.warning, *at.info] if "Verdict:" in m.value]
    assert len(verdict) == 1 and any(v in verdict[0] for v in ("monosemantic", "polysemantic", "unclear"))
    evidence = at.dataframe[0].value
    assert sorted(evidence["concept"]) == ["automobile", "cat", "dog", "truck"]
    assert (evidence["images"] == PER_CLASS).all()  # the corrupt cat file is not an image of the concept
    assert any(c.startswith("model: ") for c in captions(at))  # renders classified by the model
    split = at.dataframe[1].value
    assert len(split) == 3 and all(f.startswith("layer3/small:") for f in split["feature"])
    at.number_input(key="steps").set_value(32).run()  # another widget: the report stays (no recompute)
    assert [m.value for m in [*at.success, *at.warning, *at.info] if "Verdict:" in m.value] == verdict

    # a concept from uploaded images; a non-image upload is refused with a message
    jpgs = sorted((cifar_folder / "ship").glob("*.jpg"))[:4]
    at.text_input(key="upload_concept_name").input("my ships")
    at.file_uploader(key="upload_concept_files").set_value(
        [(p.name, p.read_bytes(), "image/jpeg") for p in jpgs] + [("notes.txt", b"hello", "text/plain")])
    at.button(key="add_concept").click().run()
    assert any("notes.txt" in e and "not an image" in e for e in errors(at))
    assert "my ships: 4 images" in [c.value for c in at.caption]
    at.button(key="probe").click().run()
    assert "my ships" in list(at.dataframe[0].value["concept"])

    # SAE features are units too
    at.sidebar.radio(key="unit_kind").set_value("SAE feature").run()
    assert at.title[0].value == "layer3/small:0" and not errors(at)


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
    assert not errors(at) and at.title[0].value == "layer3:0"


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
    assert any("Cannot load model" in e for e in errors(at))
    at.sidebar.file_uploader(key="model_upload").upload(weights[0].name, weights[0].read_bytes()).run()
    assert not at.exception and not errors(at), errors(at)  # the index chosen for the default model stays with it
    assert at.sidebar.selectbox(key="layer").value == "layer3"  # the ResNet-20 loaded; its layers are listed
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
    at.text_input(key="concept_data").input("/usr/share").run()
    assert any("outside the folders" in e for e in errors(at))
    index_picker(at).set_value("(path…)").run()
    at.sidebar.text_input(key="index_typed").input("/etc/hostname").run()
    assert any("outside the folders" in e for e in errors(at))


def test_render_cache_is_shared_by_the_app_and_the_cli_both_ways(monkeypatch, tmp_path):
    """The app (widgets: size 32, 4 samples, ...) and `vizneuron render --cache` (size left to the
    model, --samples 4) ask for the same render in different words; each reads the other's."""
    from vizneuron.cli import main

    renders = tmp_path / "home" / "renders"
    at = make_app(monkeypatch, tmp_path)
    at.number_input(key="steps").set_value(32)
    at.button(key="render").click().run()  # the app renders layer3:0 ...
    assert not at.exception and len(render_captions(at)) == 4

    def must_not_render(*args, **kwargs):
        raise AssertionError("rendered again although the other side had cached it")

    with monkeypatch.context() as patch:
        patch.setattr("vizneuron.optim.cache.render", must_not_render)
        cli = ["render", "default", "--units", "layer3:0", "--samples", "4", "--steps", "32", "--quiet",
               "--cache", str(renders)]
        assert main(cli + ["--out", str(tmp_path / "a")]) == 0  # ... and the CLI reads it back
        assert main(cli[:4] + ["--preset", "neuron-view"] + cli[6:] + ["--out", str(tmp_path / "b")]) == 0
    assert len(list(renders.glob("*.safetensors"))) == 1

    # the other way: the CLI renders a unit first, and the app shows it without a render button
    cli = ["render", "default", "--units", "layer3:1", "--samples", "4", "--steps", "48", "--quiet",
           "--cache", str(renders), "--out", str(tmp_path / "c")]
    assert main(cli) == 0 and len(list(renders.glob("*.safetensors"))) == 2
    monkeypatch.setattr("vizneuron.optim.cache.render", must_not_render)
    picker = next(box for box in at.sidebar.selectbox if box.label.startswith("Channel"))
    picker.set_value(1).run()
    at.number_input(key="steps").set_value(48).run()
    assert at.title[0].value == "layer3:1" and at.button(key="render").disabled and len(render_captions(at)) == 4


def test_first_start_shows_the_bundled_sample_and_a_probe_verdict(monkeypatch, tmp_path):
    """No data of the user's: the bundled 300 CIFAR-10 images are mined on first start."""
    at = make_app(monkeypatch, tmp_path)
    picker = index_picker(at)
    assert picker.format_func(picker.value).startswith("bundled sample")
    assert len([c for c in captions(at) if c.endswith(".jpg")]) == 16  # 8 top + 8 bottom examples of layer3:0
    assert "images" in [m.label for m in at.metric] and at.metric[0].value == "300"
    at.number_input(key="probe_renders").set_value(0)
    at.button(key="probe").click().run()
    assert not at.exception and not errors(at), errors(at)
    banners = [b.value for b in (*at.success, *at.warning, *at.info) if b.value.startswith("Verdict")]
    assert len(banners) == 1 and "score" in banners[0]
    assert len(at.dataframe[0].value) == 10  # one evidence row per CIFAR-10 class of the sample


def test_sandbox_holes_stay_closed(monkeypatch, tmp_path):
    """Symlinked files and listed paths that lead out of the roots are skipped, an upper-case option
    value is still a path, and another program's SQLite file is refused without being changed."""
    from tflite_writer import small_classifier

    from vizneuron.samples import SAMPLE_DIR

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


def test_probe_refuses_the_same_images_twice_in_the_app(monkeypatch, tmp_path):
    from vizneuron.samples import SAMPLE_DIR

    at = make_app(monkeypatch, tmp_path)
    at.text_area(key="concept_folders").input(f"a={SAMPLE_DIR / 'dog'}\nb={SAMPLE_DIR / 'dog'}").run()
    at.number_input(key="probe_renders").set_value(0)
    at.button(key="probe").click().run()
    assert not at.exception and any("are the same 30 images" in e for e in errors(at)), errors(at)


def test_fetching_cifar10_offline_says_so(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    at = make_app(monkeypatch, tmp_path)
    at.radio(key="view").set_value("Data").run()
    at.radio(key="mine_what").set_value(at.radio(key="mine_what").options[1]).run()
    at.button(key="mine").click().run()
    assert not at.exception and any("could not fetch CIFAR-10" in e and "offline" in e for e in errors(at)), errors(at)


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


def test_layer_atlas_builds_once_filters_and_opens_units(monkeypatch, tmp_path):
    """Atlas view: every channel (or SAE feature) of the layer with its verdict, filterable by
    driving concepts, each opening the neuron view; built once, then read from disk."""
    from vizneuron import load_model
    from vizneuron.sae import train_layer_sae
    from vizneuron.samples import SAMPLE_DIR

    sae = train_layer_sae(load_model("default"), "layer3", SAMPLE_DIR, expansion=2, k=8, progress=False)
    (tmp_path / "home" / "saes").mkdir(parents=True)
    sae.save(tmp_path / "home" / "saes" / "small.safetensors")
    at = make_app(monkeypatch, tmp_path)
    at.radio(key="view").set_value("Atlas").run()
    assert any("Not built yet" in c.value for c in at.caption)
    at.button(key="build_atlas").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    counts = {m.label: int(m.value) for m in at.metric}
    assert sum(counts.values()) == 128 and counts["monosemantic"] > 0 and counts["polysemantic"] > 0
    assert len(at.dataframe[0].value) == 128
    at.multiselect(key="atlas_driven_by").set_value(["cat", "automobile"]).run()
    table = at.dataframe[0].value
    assert 0 < len(table) < 128 and all("cat" in c and "automobile" in c for c in table["concepts"])
    assert list(table["score"]) == sorted(table["score"], reverse=True)
    unit = table["unit"].iloc[0]
    at.selectbox(key="atlas_open").set_value(unit)
    at.button(key="atlas_open_button").click().run()
    assert at.title[0].value == unit and not errors(at)  # the neuron view of that channel
    assert len(list((tmp_path / "home" / "atlases").glob("atlas_*.json"))) == 1

    at.radio(key="view").set_value("Atlas").run()
    at.radio(key="atlas_units").set_value("SAE small").run()
    at.button(key="build_atlas").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    assert sum(int(m.value) for m in at.metric) == 256
    feature = at.dataframe[0].value["unit"].iloc[0]
    at.selectbox(key="atlas_open").set_value(feature)
    at.button(key="atlas_open_button").click().run()
    assert at.title[0].value == feature and feature.startswith("layer3/small:")

    fresh = make_app(monkeypatch, tmp_path)  # a new session: the atlas comes from disk, no button
    fresh.radio(key="view").set_value("Atlas").run()
    assert "build_atlas" not in [b.key for b in fresh.button]
    assert sum(int(m.value) for m in fresh.metric) == 128


def test_circuit_panel_traces_upstream_and_opens_an_upstream_unit(monkeypatch, tmp_path):
    """Neuron view: the Circuit panel lists the units of the layer before that feed the unit, with
    signed contributions that add up; one click opens one of them in its own layer."""
    at = make_app(monkeypatch, tmp_path)
    at.button(key="circuit").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    table = at.dataframe[0].value
    assert len(table) == 8 and all(u.startswith("layer2:") for u in table["unit"])
    assert any("add up within" in c.value for c in at.caption)
    upstream = table["unit"].iloc[0]
    at.selectbox(key="circuit_open").set_value(upstream)
    at.button(key="circuit_open_button").click().run()
    assert at.title[0].value == upstream and not errors(at)
    at.radio(key="circuit_side").set_value("downstream").run()
    at.button(key="circuit").click().run()
    assert not errors(at) and len(at.dataframe[0].value) > 0


def test_edit_view_ranks_ticks_applies_and_opens_the_edited_model(monkeypatch, tmp_path, cue_task):
    from vizneuron.models.default import WEIGHTS_DIR

    (cue_task / "saes").mkdir(exist_ok=True)
    (cue_task / "saes" / "cue.safetensors").write_bytes((WEIGHTS_DIR / "cue_biased_layer3_sae.safetensors").read_bytes())
    at = make_app(monkeypatch, tmp_path, cue_task)
    at.sidebar.radio(key="model_source").set_value("model spec").run()
    at.sidebar.text_input(key="model_spec").input("default:cue-biased").run()
    at.radio(key="view").set_value("Edit").run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    at.radio(key="edit_units").set_value("SAE cue").run()
    at.text_input(key="edit_train").input(str(cue_task / "train-biased"))
    at.text_area(key="edit_concepts").input("\n".join(f"{c}={cue_task / 'concepts' / c}" for c in ("cue", "cat", "dog")))
    at.number_input(key="edit_top").set_value(64)
    at.number_input(key="edit_rank_images").set_value(200).run()
    at.button(key="edit_rank").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    picks = [box for box in at.checkbox if box.key.startswith("edit_pick_")]
    assert len(picks) == 64 and any(box.value for box in picks)  # the proposed ones come ticked
    first = next(box for box in picks if box.value)
    first.uncheck().run()  # a person drops one
    ticked = sum(box.value for box in at.checkbox if box.key.startswith("edit_pick_"))
    at.text_input(key="edit_test").input(str(cue_task / "test-balanced"))
    at.checkbox(key="edit_retrain").check().run()
    at.button(key="edit_apply").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    table = at.dataframe[-1].value
    assert list(table["model"]) == ["original", "edited"] and "cat/plain" in table.columns
    assert f"{ticked} units ablated" in " ".join(c.value for c in at.caption)
    at.button(key="edit_explore").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    assert at.radio(key="view").value == "Neuron" and at.sidebar.text_input(key="model_spec").value.startswith("edit:")
    assert any("edit:" in c.value for c in at.caption)  # the neuron view now shows the edited network


def test_accentuates_the_best_top_example_of_each_label(monkeypatch, tmp_path):
    at = make_app(monkeypatch, tmp_path)  # opens on the bundled sample's index
    at.number_input(key="accent_steps").set_value(16)
    at.button(key="accentuate").click().run()
    assert not at.exception and not errors(at), errors(at)
    shown = [c for c in captions(at) if c.startswith("accentuated")]
    assert 2 <= len(shown) <= 4 and all("moved" in c for c in shown)
    labels = [c.split(":")[0] for c in captions(at) if c.split(":")[0] in
              ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    assert len(labels) == len(set(labels)) == len(shown)  # one seed per label
    at.run()  # read back from the cache, seed figures included
    assert at.button(key="accentuate").disabled and [c for c in captions(at) if c.startswith("accentuated")] == shown
