"""The polysemanticity probe on planted units with known answers, on real models and real images."""

from __future__ import annotations

import json

import pytest
import torch

from vizneuron import load_model, probe
from vizneuron.imageio import image_files
from vizneuron.probe import label_groups, layer_atlas, penultimate_layer, probe_units, verdict_of
from vizneuron.probe.concepts import ConceptImages
from vizneuron.probe.run import MIN_CONCEPT_IMAGES, measure
from vizneuron.samples import SAMPLE_CLASSES, SAMPLE_DIR
from vizneuron.units import Unit

from helpers import concept_means, planted_direction, shared_path

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _planted(layer: str, means: dict[str, torch.Tensor], members: tuple[str, ...]) -> Unit:
    return Unit(layer, "direction", direction=planted_direction(means, members), source="+".join(members))


def _planted_verdicts(model, layer: str, concepts: dict, member_sets: list[tuple[str, ...]]) -> list[tuple]:
    """The probe's (verdict, score, groups) on a unit planted on each set of member concepts."""
    means = concept_means(model, layer, concepts)
    units = [_planted(layer, means, members) for members in member_sets]
    penultimate = penultimate_layer(model)
    measured = {c: measure(model, units, s, penultimate) for c, s in concepts.items()}
    features = {c: f for c, (_, f) in measured.items()}
    return [verdict_of({c: v[:, j] for c, (v, _) in measured.items()}, features)[:3]
            for j in range(len(member_sets))]


def _check_planted(model, layer: str, concepts: dict, cases: list[tuple[tuple[str, ...], str]],
                   least: int = 40) -> None:
    """At least `least` planted units, and the probe's verdict right (naming every member) on >= 90 %."""
    assert len(cases) >= least
    right = 0
    for (members, expected), (verdict, score, groups) in zip(cases, _planted_verdicts(
            model, layer, concepts, [members for members, _ in cases])):
        named = all(any(any(m in c for c in g) for g in groups) for m in members)  # every member is found
        ok = verdict == expected and named and (expected != "polysemantic" or score > 0.1)
        right += ok
        if not ok:
            print("wrong:", members, expected, verdict, round(score, 2), groups)
    print(f"{model.name}: {right} of {len(cases)} planted verdicts right")
    assert right / len(cases) >= 0.9


@pytest.mark.slow
def test_planted_units_on_the_default_model_cifar10():
    model = load_model("default")
    concepts = label_groups(shared_path("data", "cifar10", "test"), {c: [c] for c in CIFAR}, per_concept=150)
    animals, vehicles = ["bird", "cat", "deer", "dog", "frog", "horse"], ["airplane", "automobile", "ship", "truck"]
    cases = [((c,), "monosemantic") for c in CIFAR]
    cases += [(pair, "monosemantic") for pair in [("cat", "dog"), ("automobile", "truck"), ("airplane", "ship"),
                                                  ("deer", "horse")]]
    cases += [((a, v), "polysemantic") for a in animals for v in vehicles]
    cases += [(t, "polysemantic") for t in [("cat", "dog", "automobile"), ("deer", "horse", "ship"),
                                            ("automobile", "truck", "bird"), ("airplane", "ship", "frog")]]
    _check_planted(model, "layer3", concepts, cases)


@pytest.mark.slow
def test_planted_units_on_mobilenet_v2_imagenet_sample(tmp_path):
    from vizneuron.probe import IMAGENET_GROUPS

    model = load_model(f"tflite:{shared_path('models', 'coral', 'mobilenet_v2_1.0_224_quant.tflite')}")
    listing = tmp_path / "imagenet.txt"  # sorted file order is the class index
    files = image_files(shared_path("data", "imagenet-sample"))
    listing.write_text("".join(f"{p}\t{i}\n" for i, p in enumerate(files)))
    groups = {}
    for name, members in IMAGENET_GROUPS.items():  # groups of 16+ split in halves: two related concepts
        if len(members) >= 2 * MIN_CONCEPT_IMAGES:
            groups[f"{name} A"], groups[f"{name} B"] = members[: len(members) // 2], members[len(members) // 2 :]
        else:
            groups[name] = members
    concepts = label_groups(listing, groups, model)
    thin = [c for c, images in concepts.items() if len(images) < MIN_CONCEPT_IMAGES]  # one image per class
    assert sorted(thin) == ["domestic cat", "ferret-like", "fish"]
    judged = [c for c in concepts if c not in thin]
    pairs = {"snake": ("snake A", "snake B"), "dog": ("dog A", "dog B"), "bird": ("bird A", "bird B")}
    animals = [("big cat",), *pairs.values(), *((half,) for pair in pairs.values() for half in pair)]
    cases = [((c,), "monosemantic") for c in judged] + [(pair, "monosemantic") for pair in pairs.values()]
    cases += [(animal + (vehicle,), "polysemantic") for animal in animals for vehicle in ("car", "boat")]
    cases += [(("big cat", "car", "boat"), "polysemantic")] + [(pair + ("car", "boat"), "polysemantic")
                                                              for pair in pairs.values()]
    _check_planted(model, "Conv_1", concepts, cases, least=30)  # fewer: only the groups of 8+ images
    planted_on_thin = [(c,) for c in thin] + [(c, "car") for c in thin]
    for members, (_, _, groups) in zip(planted_on_thin, _planted_verdicts(model, "Conv_1", concepts,
                                                                          planted_on_thin)):
        assert not any(c in thin for g in groups for c in g), (members, groups)  # a thin concept never decides


@pytest.mark.slow
def test_probe_report_with_renders_index_and_sae_split(tmp_path):
    from vizneuron import mine
    from vizneuron.probe.report import write_report
    from vizneuron.sae import layer_activations, train_sae

    model = load_model("default")
    test = shared_path("data", "cifar10", "test")
    concepts = label_groups(test, {c: [c] for c in CIFAR}, per_concept=100)
    means = concept_means(model, "layer3", concepts)
    unit = _planted("layer3", means, ("cat", "automobile"))
    rows = torch.cat(list(layer_activations(model, "layer3", shared_path("data", "cifar10", "train"),
                                            max_images=3000, batch_size=500)))
    sae = train_sae(rows, expansion=8, k=16, epochs=4, batch_size=2048, progress=False)
    report = probe(model, unit, concepts, renders=4, render_steps=64, sae=sae, upstream="layer2")
    assert report.verdict == "polysemantic" and {"cat", "automobile"} <= set(report.concepts)
    assert 0.1 < report.score < 1 and "polysemantic (" in report.summary
    assert report.renders["summary"].count("renders read as") >= 1 and len(report.renders["classified_as"]) == 4
    assert len(report.sae_split) == 3 and sum(f["share"] for f in report.sae_split) <= 1
    assert all(f["verdict"] in ("monosemantic", "polysemantic", "unclear") for f in report.sae_split)
    assert all(len(f["top_examples"]) == 4 and f["render"].shape == (3, 32, 32) for f in report.sae_split)
    paths = report.paths  # one input path per driving concept; the unrelated two hardly agree
    assert set(paths["by_concept"]) == set(report.concepts) and len(paths["by_concept"]["cat"]) == 8
    cosine = next(v for pair, v in paths["agreement"].items() if set(pair.split(" | ")) == {"cat", "automobile"})
    print(f"cat | automobile paths: cosine {cosine:.2f}")
    assert cosine < 0.65
    page = write_report(report, tmp_path / "report")
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["verdict"] == "polysemantic" and "cat" in page.read_text()
    assert "Input paths by driving concept" in page.read_text() and data["paths"]["upstream"] == "layer2"
    # a real channel with an index as background: the verdict is one of the three, with evidence
    index = mine(model, "layer3:5", test, k=8, batch_size=500, progress=False)
    channel = probe(model, "layer3:5", concepts, index=index)
    assert channel.background["source"] == "index" and len(channel.evidence) == 10
    assert all(len(e.top_examples) == 4 for e in channel.evidence)
    groups = channel.example_clusters
    assert 1 <= len(groups) <= 4 and sorted(p for g in groups for p in g["members"]) == sorted(
        e.path for e in index.examples("layer3:5"))


def test_a_concept_too_thin_to_judge_decides_no_verdict_in_the_probe_or_the_atlas():
    """With all 30 sample automobiles, automobile drives some layer3 units; cut to 5 images (fewer
    than MIN_CONCEPT_IMAGES) it is still measured and listed, but drives no verdict, in the probe
    and the atlas alike, and both say why."""
    model = load_model("default")
    full = label_groups(SAMPLE_DIR, {c: [c] for c in SAMPLE_CLASSES}, model)
    thin = dict(full, automobile=ConceptImages(full["automobile"].source, full["automobile"].ids[:5], "automobile"))
    units = [f"layer3:{c}" for c in range(32)]
    driven = [u for u, r in zip(units, probe_units(model, units, full)) if "automobile" in r.concepts]
    assert driven, "no unit of layer3:0-31 is driven by automobile on the whole sample"
    for report in probe_units(model, driven, thin):
        assert "automobile" not in report.concepts
        evidence = {e.name: e for e in report.evidence}
        assert not evidence["automobile"].judged and evidence["automobile"].images == 5
        assert {row["concept"]: row["drives"] for row in report.evidence_table()}["automobile"] == \
            "too few images to judge"
        assert any("'automobile' has 5 readable images" in w and "left out of the verdict" in w
                   for w in report.warnings)
    atlas = layer_atlas(model, "layer3", thin, progress=False)
    assert not any("automobile" in entry.concepts for entry in atlas.entries)
    assert any("left out of the verdict" in note for note in atlas.notes)
