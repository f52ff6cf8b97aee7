"""Circuits: planted circuits with known answers, completeness, the weights view on real layers, and
faithfulness (ablating the top contributors against random ones) on the bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import vizneuron as vz
from vizneuron.circuit import CircuitError, ablation_curve, circuit, expanded_weights
from vizneuron.models.base import InputConfig, Model
from vizneuron.probe import label_groups
from vizneuron.sae import train_sae
from vizneuron.units import Unit

from helpers import concept_means, planted_direction, shared_path

SAMPLES = Path(vz.__file__).parent / "samples" / "cifar10"
PLANTED = {2: 3.0, 5: -2.0, 6: 1.0}  # target channel 0 = 3 up2 - 2 up5 + up6; every other weight 0
HEAD = (2.0, -1.0)  # logit 0 += 2 x target channel 0, logit 1 -= 1 x it


class Planted(nn.Module):
    """Eight identical upstream channels (the image's grey level), so each one's contribution is
    exactly its planted weight times the same activation change."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU())
        self.mix = nn.Conv2d(8, 4, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.up[0].weight.fill_(1 / 3)
            self.up[0].bias.zero_()
            self.mix.weight.zero_()
            for channel, weight in PLANTED.items():
                self.mix.weight[0, channel, 1, 1] = weight
            self.mix.weight[1:].normal_()
            self.fc.weight.zero_()
            self.fc.weight[:, 0] = torch.tensor(HEAD)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.mix(self.up(x))).flatten(1))


@pytest.fixture(scope="module")
def planted() -> Model:
    return Model(Planted(), name="planted", inputs=InputConfig((16, 16)))


def test_planted_circuit_returns_exactly_the_planted_channels_in_order_with_signs(planted):
    found = circuit(planted, "mix:0", upstream="up", data=SAMPLES, k=8, examples=16)
    nonzero = [e for e in found.edges if abs(e.contribution) > 1e-6 * abs(found.value)]
    assert [e.unit for e in nonzero] == ["up:2", "up:5", "up:6"]  # in order of |weight|: 3, -2, 1
    assert [e.contribution > 0 for e in nonzero] == [True, False, True]
    ratios = [e.contribution / PLANTED[int(e.unit.split(":")[1])] for e in nonzero]
    assert max(ratios) - min(ratios) < 1e-4 * abs(ratios[0])  # contribution = weight x the same change
    assert found.completeness < 1e-4  # a linear path: integrated gradients add up exactly
    top3 = circuit(planted, "mix:0", upstream="up", data=SAMPLES, k=3, examples=16)
    assert [e.unit for e in top3.edges] == ["up:2", "up:5", "up:6"]


def test_planted_downstream_names_the_classes_the_unit_pushes_up_and_down(planted):
    found = circuit(planted, "mix:0", downstream="logits", data=SAMPLES, examples=16)
    effects = {e.unit: e.contribution for e in found.edges}
    assert effects["logit:0"] > 0 > effects["logit:1"]
    assert effects["logit:0"] == pytest.approx(-2 * effects["logit:1"], rel=1e-4)  # the head's 2 : -1
    mix1 = circuit(planted, "mix:1", downstream="logits", data=SAMPLES, examples=16)
    assert all(abs(e.contribution) < 1e-5 for e in mix1.edges)  # the head reads channel 0 only


def test_sae_upstream_has_an_error_node_and_still_adds_up(planted):
    from vizneuron.capture import capture
    from vizneuron.sources import ModelInputs, as_source

    inputs = ModelInputs(as_source(SAMPLES), InputConfig((16, 16)))
    with capture(planted, ["mix"]) as cap, torch.no_grad():
        act = cap.run(torch.stack([inputs[i][1] for i in range(200)]))["mix"]
    sae = train_sae(act.permute(0, 2, 3, 1).reshape(-1, 4), d_sae=8, k=1, epochs=2, progress=False,
                    provenance={"model": "planted", "layer": "mix"})
    found = circuit(planted, "logit:0", upstream="mix/feat", data=SAMPLES, examples=16, steps=16,
                    saes={"feat": sae})
    assert found.names[0] == "mix/feat:0" and len(found.names) == 8
    assert found.error is not None and abs(found.error) > 0  # k=1 of 4 dims: a real reconstruction error
    assert found.completeness < 0.02  # features + error + baseline = the logit (a linear head)


def test_bad_requests_say_why(planted):
    with pytest.raises(CircuitError, match="does not come before"):
        circuit(planted, "up:0", upstream="mix", data=SAMPLES)
    with pytest.raises(CircuitError, match="exactly one of"):
        circuit(planted, "mix:0", data=SAMPLES)
    with pytest.raises(CircuitError, match="nothing comes after"):
        circuit(planted, "logit:0", downstream="mix", data=SAMPLES)
    with pytest.raises(vz.UnitError, match="closest"):
        circuit(planted, "mix:0", upstream="upp", data=SAMPLES)


def test_weights_view_on_a_linear_path_and_why_not_elsewhere(planted):
    kernels, why = expanded_weights(planted, "mix:0", "up")
    assert kernels is not None, why
    assert expanded_weights(planted, "mix:0", "up.0")[0] is None  # the ReLU lies between
    assert kernels["up:2"].shape == (1, 1) and kernels["up:2"][0, 0] == pytest.approx(3.0)  # only the centre tap
    assert kernels["up:4"].abs().max() == 0
    model = vz.load_model("default")  # bundled: layer2 -> conv -> batch norm is linear
    kernels, why = expanded_weights(model, "layer3.conv.1:5", "layer2")
    conv, norm = model.module.layer3.conv[0], model.module.layer3.conv[1]
    scale = norm.weight[5] / (norm.running_var[5] + norm.eps).sqrt()
    assert torch.allclose(kernels["layer2:7"], conv.weight[5, 7] * scale, atol=1e-5)
    kernels, why = expanded_weights(model, "layer3:5", "layer2")
    assert kernels is None and "not linear" in why


def _planted_direction(model, concepts, members):
    """The probe's planted unit: a layer3 direction that fires equally on exactly `members`."""
    direction = planted_direction(concept_means(model, "layer3", concepts), members)
    return Unit("layer3", "direction", direction=direction, source="+".join(members))


@pytest.mark.slow
def test_per_concept_paths_differ_for_a_planted_polysemantic_unit_and_agree_for_a_single_concept_one():
    """Planted units of the probe's kind: two unrelated classes (polysemantic) against two classes of
    one concept (cat + dog; the probe calls these monosemantic). Measured: cosine 0.02-0.52 and top-8
    overlap 0-1 for unrelated pairs, 0.89-0.94 and 4-6 for related ones."""
    model = vz.load_model("default")
    test = shared_path("data", "cifar10", "test")
    names = ["cat", "automobile", "dog", "horse", "ship", "deer"]
    concepts = label_groups(test, {c: [c] for c in names}, per_concept=100)
    for members, same in [(("cat", "automobile"), False), (("horse", "ship"), False), (("cat", "dog"), True),
                          (("deer", "horse"), True)]:
        unit = _planted_direction(model, concepts, members)
        found = circuit(model, unit, upstream="layer2", data=SAMPLES, per_concept=16,
                        concepts={c: concepts[c] for c in members})
        cosine = next(iter(found.path_agreement().values()))
        overlap = len({e.unit for e in found.paths[members[0]]} & {e.unit for e in found.paths[members[1]]})
        print(members, f"cosine {cosine:.2f}, top-8 overlap {overlap}")
        assert (cosine > 0.8 and overlap >= 3) if same else (cosine < 0.65 and overlap <= 2)


def _faithfulness(model, layer: str, upstream: str, channels, data, gap: float, **options) -> None:
    """Top-8 ablation removes over 3x what 8 random channels do (and over 20 %), and contributions add
    up to the unit's value within `gap` on average (at most twice that on any unit)."""
    removed, random_removed, gaps = [], [], []
    for channel in channels:
        found = circuit(model, f"{layer}:{channel}", upstream=upstream, data=data, **options)
        gaps.append(found.completeness)
        curves = ablation_curve(model, found, counts=(8,), random_draws=3)
        removed.append(1 - curves["contribution"][0])
        random_removed.append(1 - curves["random"][0])
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    print(f"top-8 removes {mean(removed):.0%}, random 8 {mean(random_removed):.0%}; completeness gap {mean(gaps):.1%}")
    assert mean(removed) > 3 * mean(random_removed) and mean(removed) > 0.2
    assert mean(gaps) < gap and max(gaps) < 2 * gap, gaps


@pytest.mark.slow
def test_ablating_top_contributors_removes_far_more_than_random_ones_on_the_bundled_model():
    """bench/results/circuit.json has the figures (bench_circuit.py, the same units and settings)."""
    _faithfulness(vz.load_model("default"), "layer3", "layer2", range(0, 128, 12),
                  shared_path("data", "cifar10", "test"), gap=0.01)


@pytest.mark.slow
def test_ablating_top_contributors_removes_far_more_than_random_ones_on_mobilenet_v2():
    model = vz.load_model(f"tflite:{shared_path('models', 'coral', 'mobilenet_v2_1.0_224_quant.tflite')}")
    _faithfulness(model, "Conv_1", "expanded_conv_16_project", range(0, 1280, 128),
                  shared_path("data", "imagenet-sample"), gap=0.02,
                  examples=16, steps=4, reference_images=128)

def test_cli_writes_the_circuit_page_and_json(tmp_path, capsys):
    from vizneuron.cli import main

    out = tmp_path / "c"
    assert main(["circuit", "default", "layer3.conv.1:5", "--upstream", "layer2", "--steps", "4", "--k", "3",
                 "--examples", "8", "--quiet", "--out", str(out)]) == 0
    data = __import__("json").loads((out / "circuit.json").read_text())
    assert len(data["edges"]) == 3 and data["side"] == "upstream" and data["completeness"] < 1e-3  # a linear path
    assert set(data["files"][data["edges"][0]["unit"]]) == {"render", "kernel"}  # a linear path: a weights view
    assert "layer3.conv.1:5 fed by layer2" in (out / "index.html").read_text()
    assert main(["circuit", "default", "layer3:5", "--upstream", "layer4", "--out", str(out)]) == 2
    assert "closest: layer3" in capsys.readouterr().err


def test_too_few_images_for_a_reference_and_its_examples_is_refused(tmp_path):
    """Contributions are relative to the mean over `data`; averaged over most of those same images
    they cancel towards zero, so ranking and signs would be noise: refused, saying what to give."""
    folder = tmp_path / "ten.txt"
    folder.write_text("".join(f"{path}\n" for path in sorted(Path(SAMPLES).rglob("*.jpg"))[:10]))
    with pytest.raises(CircuitError, match="only 10 readable images.*give at least 64 images"):
        circuit(vz.load_model("default"), "layer3:5", upstream="layer2", data=folder)
    found = circuit(vz.load_model("default"), "layer3:5", upstream="layer2", data=folder, examples=2, steps=2)
    assert found.reference_count == 10 and len(found.images) == 2 and found.to_dict()["reference_images"] == 10


def test_vit_token_layers_circuit_adds_up_and_has_no_weights_view():
    """Token layers (N, T, D): contributions per channel summed over patch tokens; the CLS and
    register tokens are not channels of the upstream layer, so they stay as they were."""
    torch.manual_seed(0)  # timm draws the random init from the global generator
    model = vz.load_model("timm:vit_tiny_patch16_224?weights=none")
    found = circuit(model, "blocks.2:5", upstream="blocks.1", data=SAMPLES, examples=4, reference_images=16,
                    steps=16, k=4)
    assert len(found.names) == 192 and len(found.edges) == 4
    assert found.completeness < 0.05, found.completeness
    kernels, why = expanded_weights(model, "blocks.2:5", "blocks.1")
    assert kernels is None and "spatial" in why


def test_a_shared_reference_gives_each_unit_the_circuit_it_would_get_alone(tmp_path):
    """The site measures one reference per layer for all its units: the same edges and values as each
    unit's own pass, and a reference of the wrong layer (or of another unit, without an index) refused."""
    from vizneuron.circuit.run import reference

    model = vz.load_model("default")
    index = vz.mine(model, "layer3", SAMPLES, k=8, index=tmp_path / "index.sqlite", progress=False)
    shared = reference(model, vz.parse_unit("layer3:0", model), ["layer2"], SAMPLES)
    for unit in ("layer3:0", "layer3:7"):
        alone = circuit(model, unit, upstream="layer2", data=SAMPLES, index=index, examples=8)
        together = circuit(model, unit, upstream="layer2", data=SAMPLES, index=index, examples=8, shared=shared)
        assert [e.unit for e in together.edges] == [e.unit for e in alone.edges]
        assert torch.allclose(together.contributions, alone.contributions, rtol=1e-5, atol=1e-6)
    with pytest.raises(CircuitError, match="needs layer1"):
        circuit(model, "layer3:7", upstream="layer1", data=SAMPLES, index=index, shared=shared)
    with pytest.raises(CircuitError, match="index"):
        circuit(model, "layer3:7", upstream="layer2", data=SAMPLES, examples=8, shared=shared)
