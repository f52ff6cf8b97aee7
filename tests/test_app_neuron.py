"""The app's neuron view: renders (cached, shared with the CLI), examples, accentuation, the probe and
the circuit panel.

Driven through Streamlit's own testing API (AppTest), with a private home folder and real images."""

from __future__ import annotations

import pytest

from helpers import (
    PER_CLASS,
    captions,
    concept_data,
    concept_groups,
    errors,
    first_unit,
    index_picker,
    layer_picker,
    make_app,
    render_captions,
)

pytest.importorskip("streamlit")


def test_opens_on_default_model_renders_with_progress_and_caches(monkeypatch, tmp_path):
    at = make_app(monkeypatch, tmp_path)
    assert at.title[0].value == first_unit()  # in the deepest spatial layer of the bundled model
    assert "128 channels" in layer_picker(at).format_func("layer3")
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


def test_the_first_screen_answers_the_question_without_a_click(monkeypatch, tmp_path):
    """Opened as a new user would: a unit the bundled sample's atlas calls polysemantic, its verdict,
    the concepts that drive it and each one's top examples, and a strip of the layer's other
    polysemantic units that opens each."""
    from vizneuron.models import load_model
    from vizneuron.probe import most_polysemantic, sample_atlas

    ranked = most_polysemantic(sample_atlas(load_model("default"), "layer3"))
    at = make_app(monkeypatch, tmp_path)
    first = ranked[0]
    assert at.title[0].value == first.unit and not errors(at)
    verdict = next(m.value for m in at.markdown if m.value.startswith("**Polysemantic**"))
    assert all(concept in verdict for concept in first.concepts), verdict
    shown = [m.value for m in at.markdown if m.value.startswith("*") and not m.value.startswith("**")]
    assert [s.strip("*") for s in shown] == first.concepts[:3]  # a column of top examples per driving concept
    at.button(key=f"poly_{ranked[1].unit}").click().run()
    assert at.title[0].value == ranked[1].unit and not errors(at)
    assert at.button(key=f"poly_{ranked[1].unit}").disabled


def test_first_start_shows_the_bundled_sample_and_a_probe_verdict(monkeypatch, tmp_path):
    """No data of the user's: the bundled 300 CIFAR-10 images are mined on first start."""
    at = make_app(monkeypatch, tmp_path)
    picker = index_picker(at)
    assert picker.format_func(picker.value).startswith("bundled sample")
    assert len([c for c in captions(at) if c.endswith(".jpg")]) == 16  # 8 top + 8 bottom examples
    assert "images" in [m.label for m in at.metric] and at.metric[0].value == "300"
    at.number_input(key="probe_renders").set_value(0)
    at.button(key="probe").click().run()
    assert not at.exception and not errors(at), errors(at)
    banners = [b.value for b in (*at.success, *at.warning, *at.info) if b.value.startswith("Verdict")]
    assert len(banners) == 1 and "score" in banners[0]
    assert len(at.dataframe[0].value) == 10  # one evidence row per CIFAR-10 class of the sample


def test_render_cache_is_shared_by_the_app_and_the_cli_both_ways(monkeypatch, tmp_path):
    """The app (widgets: size 32, 4 samples, ...) and `vizneuron render --cache` (size left to the
    model, --samples 4) ask for the same render in different words; each reads the other's."""
    from vizneuron.cli import main

    renders = tmp_path / "home" / "renders"
    at = make_app(monkeypatch, tmp_path)
    at.number_input(key="steps").set_value(32)
    at.button(key="render").click().run()  # the app renders the unit it opened on ...
    assert not at.exception and len(render_captions(at)) == 4

    def must_not_render(*args, **kwargs):
        raise AssertionError("rendered again although the other side had cached it")

    with monkeypatch.context() as patch:
        patch.setattr("vizneuron.optim.cache.render", must_not_render)
        cli = ["render", "default", "--units", first_unit(), "--samples", "4", "--steps", "32", "--quiet",
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


def test_probe_verdict_with_label_groups_uploads_and_sae_split(monkeypatch, tmp_path, cifar_folder):
    from vizneuron import load_model
    from vizneuron.sae import train_layer_sae

    model = load_model("default")
    sae = train_layer_sae(model, "layer3", cifar_folder, expansion=2, k=8, epochs=2, batch_size=256, progress=False)
    (tmp_path / "home" / "saes").mkdir(parents=True)
    sae.save(tmp_path / "home" / "saes" / "small.safetensors")

    at = make_app(monkeypatch, tmp_path, cifar_folder.parent)
    concept_data(at).input(str(cifar_folder))
    concept_groups(at).input("cat, dog, automobile, truck")
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


def test_probe_refuses_the_same_images_twice_in_the_app(monkeypatch, tmp_path):
    from vizneuron.samples import SAMPLE_DIR

    at = make_app(monkeypatch, tmp_path)
    at.text_area(key="concept_folders").input(f"a={SAMPLE_DIR / 'dog'}\nb={SAMPLE_DIR / 'dog'}").run()
    at.number_input(key="probe_renders").set_value(0)
    at.button(key="probe").click().run()
    assert not at.exception and any("are the same 30 images" in e for e in errors(at)), errors(at)


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

