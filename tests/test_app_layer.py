"""The app's layer view: grids of top examples and of renders, a click through to a channel.

Driven through Streamlit's own testing API (AppTest), with a private home folder and real images."""

from __future__ import annotations

import pytest

from helpers import CIFAR_CLASSES, PER_CLASS, captions, errors, index_picker, layer_picker, make_app, mine_in_app

pytest.importorskip("streamlit")


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
    assert len(list((tmp_path / "home" / "indexes").glob("*.sqlite"))) == 1  # this one (resumed, not a second)
    assert len(list((tmp_path / "home" / "indexes" / "sample").glob("*.sqlite"))) == 1  # the sample, layer3 only


def test_layer_grid_of_renders_is_cached(monkeypatch, tmp_path):
    at = make_app(monkeypatch, tmp_path)
    layer_picker(at).set_value("layer1").run()
    at.radio(key="view").set_value("Layer").run()
    at.radio(key="grid_source").set_value("renders").run()
    at.number_input(key="grid_steps").set_value(16).run()
    at.button(key="render_layer").click().run()
    assert not at.exception and not errors(at)
    assert len(at.image) == 64  # layer1 has 64 channels: one page
    at.run()  # read back from the cache: no render button, same grid
    assert len(at.image) == 64 and "render_layer" not in [b.key for b in at.button]
    assert len(list((tmp_path / "home" / "renders").glob("*.safetensors"))) == 1

