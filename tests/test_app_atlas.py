"""The app's atlas view.

Driven through Streamlit's own testing API (AppTest), with a private home folder and real images."""

from __future__ import annotations

import pytest

from helpers import errors, make_app

pytest.importorskip("streamlit")


@pytest.mark.slow  # trains an SAE, then builds two atlases: over the fast tier's 5 s
def test_layer_atlas_builds_once_filters_and_opens_units(monkeypatch, tmp_path):
    """Atlas view: every channel (or SAE feature) of the layer with its verdict, filterable by
    driving concepts, each opening the neuron view; built once, then read from disk. The channels'
    atlas on the default concepts (the bundled sample's classes) is the one the first screen built,
    so the view opens with it, no button."""
    from vizneuron import load_model
    from vizneuron.sae import train_layer_sae
    from vizneuron.samples import SAMPLE_DIR

    sae = train_layer_sae(load_model("default"), "layer3", SAMPLE_DIR, expansion=2, k=8, progress=False)
    (tmp_path / "home" / "saes").mkdir(parents=True)
    sae.save(tmp_path / "home" / "saes" / "small.safetensors")
    at = make_app(monkeypatch, tmp_path)
    at.radio(key="view").set_value("Atlas").run()
    assert "build_atlas" not in [b.key for b in at.button]  # built by the first screen, read back
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
    assert any("Not built yet" in c.value for c in at.caption)
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

