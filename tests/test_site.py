"""The static site of a whole model (`vz.site`, `vizneuron site`): built from the bundled model and
sample, with an SAE whose features are planted on known concepts; every link and image checked in
real Chromium from file://; a rerun with nothing changed computes nothing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

import vizneuron as vz
from vizneuron.cli import main
from vizneuron.probe.concepts import build_concepts
from vizneuron.samples import SAMPLE_DIR
from vizneuron.site import SiteError

from helpers import CHROMIUM, CHROMIUM_FLAGS, concept_means, planted_direction

PLANTED = [("cat", "automobile"), ("horse", "ship"), ("frog",)]  # feature i fires on exactly these classes
FAST = vz.RenderConfig(steps=16, samples=2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The site of layer2 and layer3 of the bundled model over the bundled sample, plus the planted
    SAE's features of layer3."""
    from vizneuron.sae import SAE, SAEConfig

    model = vz.load_model("default")
    folder = tmp_path_factory.mktemp("site")
    means = concept_means(model, "layer3", build_concepts(model, data=SAMPLE_DIR))
    sae = SAE(SAEConfig(128, len(PLANTED), kind="relu", model="default", layer="layer3"))
    with torch.no_grad():
        sae.W_enc.copy_(torch.stack([planted_direction(means, members) for members in PLANTED]).T)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.b_dec.zero_()
        sae.b_enc.zero_()
    sae.save(folder / "planted.safetensors")
    result = vz.site(model, "layer2,layer3", SAMPLE_DIR, out=folder / "out", saes={"layer3": folder /
                     "planted.safetensors"}, k=8, renders=FAST, progress=False)
    return model, folder, result


@pytest.mark.slow
def test_the_site_holds_every_layer_unit_and_planted_feature(built):
    model, folder, result = built
    assert result.layers == ["layer2", "layer3", "layer3/planted"] and result.units == 128 + 128 + 3
    assert result.work == {"mine": 3, "probe": 3, "render": 259, "circuit": 256}
    pages = sorted((folder / "out" / "units").glob("*.html"))
    assert len(pages) == result.units and result.pages == result.units + 4
    # the planted features: polysemantic where two unrelated classes were planted, naming them both
    for i, members in enumerate(PLANTED):
        page = (folder / "out" / "units" / f"layer3_planted_{i}.html").read_text()
        verdict = re.search(r"<span class='badge (\w+)'>", page).group(1)
        driven = re.search(r"driven by ([^;]+);", page).group(1)
        assert verdict == ("polysemantic" if len(members) == 2 else "monosemantic"), (members, verdict, driven)
        assert all(member in driven for member in members), (members, driven)
    # a channel's page lists what feeds it from layer2, linked to those units' own pages
    page = (folder / "out" / "units" / "layer3_5.html").read_text()
    assert "What feeds it from layer2" in page and "href='../units/layer2_" in page
    assert "What it pushes in logits" in page and re.search(r"logit:\d \((cat|dog|truck|ship|airplane|automobile|"
                                                            r"bird|deer|frog|horse)\)", page)
    # below the last layer, the next layer's units it pushes and, past them, the classes
    page = (folder / "out" / "units" / "layer2_0.html").read_text()
    assert "What it pushes in layer3" in page and "Which classes it pushes" in page
    assert max(path.stat().st_size for path in (folder / "out").rglob("*.html")) < 2_000_000


@pytest.mark.slow
def test_a_rerun_with_nothing_changed_computes_nothing(built, monkeypatch):
    model, folder, _ = built

    def refuse(*args, **kwargs):
        raise AssertionError("a rerun with nothing changed must not compute this")

    modules = sys.modules  # by module: `vizneuron.mine` and friends read as the functions of their name
    monkeypatch.setattr(modules["vizneuron.optim.cache"], "render", refuse)  # the render cache's only way to render
    monkeypatch.setattr(modules["vizneuron.site.build"], "circuit", refuse)
    monkeypatch.setattr(modules["vizneuron.mine.run"], "save_checkpoint", refuse)  # called only while streaming
    monkeypatch.setattr(modules["vizneuron.probe.atlas"], "probe_units", refuse)
    again = vz.site(model, "layer2,layer3", SAMPLE_DIR, out=folder / "out",
                    saes={"layer3": folder / "planted.safetensors"}, k=8, renders=FAST, progress=False)
    assert again.work == {} and again.units == 259
    assert again.bytes < 500_000  # only the model and layer pages are written again


@pytest.mark.slow
def test_every_link_and_image_works_in_chromium_from_disk(built):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium package (apt-get install chromium; .ci/run installs it)")
    _, folder, _ = built
    root = folder / "out"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        visited = ["index.html", "layer_layer3.html", "units/layer3_planted_0.html", "units/layer3_5.html",
                   "units/layer2_0.html", "units/layer3_67.html", "units/layer3_120.html"]
        for name in visited:
            page.goto((root / name).as_uri())
            links = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
            assert links, name
            missing = [href for href in links if not Path(href.removeprefix("file://").split("#")[0]).is_file()]
            assert not missing, (name, missing[:5])
            # every image, lazy ones included, loads
            page.eval_on_selector_all("img", "images => images.forEach(i => i.loading = 'eager')")
            page.wait_for_function("[...document.images].every(i => i.complete)")
            broken = page.eval_on_selector_all("img", "images => images.filter(i => !i.naturalWidth)"
                                                      ".map(i => i.src)")
            assert not broken, (name, broken[:5])
        # the search box finds the planted polysemantic feature by its two concepts
        page.goto((root / "index.html").as_uri())
        page.fill("#q", "cat automobile")
        hits = page.eval_on_selector_all("#hits a", "links => links.map(a => a.textContent)")
        assert "layer3/planted:0" in hits, hits
        # the layer page's filter keeps only the chosen verdict
        page.goto((root / "layer_layer3.html").as_uri())
        page.select_option("#verdict", "polysemantic")
        shown = page.eval_on_selector_all(".card:not([hidden])", "cards => cards.map(c => c.dataset.verdict)")
        assert shown and set(shown) == {"polysemantic"}
        browser.close()
    assert not errors, errors


def test_bad_site_requests_say_why(tmp_path, capsys):
    model = vz.load_model("default")
    with pytest.raises(SiteError, match="at least one layer"):
        vz.site(model, " , ", SAMPLE_DIR, out=tmp_path)
    with pytest.raises(vz.LayerError, match="layer3"):
        vz.site(model, "layer33", SAMPLE_DIR, out=tmp_path)
    with pytest.raises(SiteError, match="not one of the site's layers"):
        vz.site(model, "layer2", SAMPLE_DIR, out=tmp_path, saes={"layer3": tmp_path / "x.safetensors"})
    assert main(["site", "default", "--layers", "layer9", "--out", str(tmp_path / "cli")]) != 0
    assert "layer" in capsys.readouterr().err
