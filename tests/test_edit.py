"""Edits: units held at a value inside the forward pass, the SAE error term kept, saved and read back."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import vizneuron as vz
from vizneuron.capture import capture
from vizneuron.edit import EditError, unit_means
from vizneuron.sae.model import SAE, SAEConfig
from vizneuron.samples import SAMPLE_DIR
from vizneuron.units import parse_units

from helpers import fresh_python


def _sae(d_in: int = 16, d_sae: int = 64, k: int = 4, layer: str = "act2") -> SAE:
    sae = SAE(SAEConfig(d_in, d_sae, k=k, model="tiny", layer=layer))
    sae.initialise(torch.Generator().manual_seed(0), torch.zeros(d_in))
    return sae


def _layer(model, images, layer="act2"):
    with capture(model, [layer]) as cap, torch.no_grad():
        return cap.run(images)[layer]


def test_nothing_ablated_or_an_idle_feature_leaves_outputs_unchanged(tiny):
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(vz.edit(tiny, [])(images), tiny(images))
    sae = _sae()
    (unit,) = parse_units("act2/s:0-63", tiny, {"s": sae})[:1]
    features = sae.encode(tiny.inputs.tokens.rows(_layer(tiny, images)).detach())  # (N * S, F)
    per_image = features.reshape(6, -1, 64).amax(1)  # (N, F): where each feature fires
    idle = [f for f in range(64) if (per_image[:, f] == 0).any() and (per_image[:, f] > 0).any()]
    assert idle, "some feature must fire on some images and not on others"
    f = idle[0]
    edited = vz.edit(tiny, f"act2/s:{f}", saes={"s": sae})
    quiet = per_image[:, f] == 0
    with torch.no_grad():
        before, after = tiny(images), edited(images)
    # error term kept: images where the feature is already zero pass through exactly
    assert torch.allclose(after[quiet], before[quiet], atol=1e-6)
    assert not torch.allclose(after[~quiet], before[~quiet], atol=1e-4)
    assert unit.kind == "sae"


def test_zero_ablating_every_feature_leaves_the_error_term_and_the_bias(tiny):
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    sae = _sae()
    edited = vz.edit(tiny, "act2/s:*", saes={"s": sae})
    rows = tiny.inputs.tokens.rows(_layer(tiny, images))
    expected = rows - sae.reconstruct(rows) + sae.decode(torch.zeros(1, 64))
    assert torch.allclose(tiny.inputs.tokens.rows(_layer(edited, images)), expected.detach(), atol=1e-5)


def test_channels_directions_and_neurons_are_held_at_their_values(tiny, tmp_path):
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    direction = torch.randn(16, generator=torch.Generator().manual_seed(4))
    direction[[3, 5]] = 0  # no overlap with the channel and the neuron held below
    path = tmp_path / "d.npy"
    np.save(path, direction.numpy())
    edited = vz.edit(tiny, ["act2:3", f"act2:dir={path}", "act2:5@2,1"], values=[0.25, -1.0, 2.0])
    act = _layer(edited, images)
    assert torch.allclose(act[:, 3], torch.full_like(act[:, 3], 0.25))
    assert torch.allclose(torch.einsum("nchw,c->nhw", act, direction), torch.full((4, 8, 8), -1.0), atol=1e-4)
    assert torch.allclose(act[:, 5, 2, 1], torch.full((4,), 2.0))
    assert edited.edits[0] == {"unit": "act2:3", "value": 0.25}


def test_mean_ablation_holds_units_at_their_mean_over_the_data(tmp_path):
    model = vz.load_model("default")
    units = parse_units("layer3:7", model)
    (mean,) = unit_means(model, units, SAMPLE_DIR)
    edited = vz.edit(model, "layer3:7", mode="mean", data=SAMPLE_DIR)
    assert edited.edits == [{"unit": "layer3:7", "value": pytest.approx(mean)}] and mean > 0
    act = _layer(edited, torch.rand(2, 3, 32, 32), "layer3")
    assert torch.allclose(act[:, 7], torch.full_like(act[:, 7], mean))


def test_edit_file_round_trips_and_pins_its_sae(tmp_path):
    model = vz.load_model("default")
    sae = SAE(SAEConfig(128, 256, k=8, model="default", layer="layer3"))
    sae.initialise(torch.Generator().manual_seed(0), torch.zeros(128))
    sae.save(tmp_path / "l3.safetensors")
    edited = vz.edit("default", ["layer3/l3:4", "layer3/l3:9", "layer2:1"], saes={"l3": tmp_path / "l3.safetensors"})
    head = {"weight": torch.randn(10, 128), "bias": torch.randn(10)}
    retrained = edited.with_weights({"fc": head})
    path = retrained.save(tmp_path / "out" / "fix.json")
    saved = json.loads(path.read_text())
    assert saved["model"] == "default" and saved["saes"]["l3"]["file"].endswith("l3.safetensors")
    assert [a["unit"] for a in saved["ablate"]] == ["layer3/l3:4", "layer3/l3:9", "layer2:1"]
    loaded = vz.load_model(f"edit:{path}")
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(images), retrained(images), atol=1e-6)
        assert not torch.allclose(loaded(images), model(images), atol=1e-3)
    assert loaded.fingerprint == retrained.fingerprint != edited.fingerprint != model.fingerprint
    assert torch.equal(loaded.module.fc.weight, head["weight"])
    # renders run the edited network: the held channel stays at its value whatever the image, while
    # the same render on the base model drives it up; an unedited unit downstream renders differently
    held = next(a["value"] for a in saved["ablate"] if a["unit"] == "layer2:1")
    assert torch.allclose(vz.render(loaded, "layer2:1", steps=8, progress=False).activations, torch.tensor([held]))
    assert vz.render(model, "layer2:1", steps=8, progress=False).activations[0] > held + 0.5
    assert not torch.equal(vz.render(loaded, "layer3:1", steps=8, progress=False).images,
                           vz.render(model, "layer3:1", steps=8, progress=False).images)
    (tmp_path / "l3.safetensors").write_bytes((tmp_path / "l3.safetensors").read_bytes() + b" ")
    with pytest.raises(EditError, match="changed since the edit was saved"):
        vz.load_model(f"edit:{path}")


def test_bad_edits_say_why(tiny, tmp_path):
    with pytest.raises(EditError, match="class logit"):
        vz.edit(tiny, "logit:cat")
    with pytest.raises(EditError, match="zero or mean"):
        vz.edit(tiny, "act2:1", mode="half")
    with pytest.raises(EditError, match="closest"):
        vz.edit(tiny, "act3:1")
    with pytest.raises(EditError, match="needs data="):
        vz.edit(tiny, "act2:1", mode="mean")
    with pytest.raises(EditError, match="in memory"):
        vz.edit(tiny, "act2/s:1", saes={"s": _sae()}).save(tmp_path / "e.json")
    with pytest.raises(EditError, match="already edited"):
        vz.edit(vz.edit(tiny, "act2:1"), "act2:2")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EditError, match="not readable JSON"):
        vz.load_model(f"edit:{tmp_path / 'bad.json'}")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(EditError, match="not a vizneuron edit file"):
        vz.load_model(f"edit:{tmp_path / 'other.json'}")
    with pytest.raises(EditError, match="not found"):
        vz.load_model(f"edit:{tmp_path / 'missing.json'}")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EditError, match="cannot write the edit"):
        vz.edit(tiny, "act2:1").save(blocker / "e.json")


def test_an_edited_model_mines_probes_and_traces_circuits_like_any_model(tmp_path):
    edited = vz.edit("default", "layer2:11")
    index = vz.mine(edited, "layer3:0-3", SAMPLE_DIR, k=4, index=tmp_path / "edited.sqlite", progress=False)
    base = vz.mine(vz.load_model("default"), "layer3:0-3", SAMPLE_DIR, k=4, index=tmp_path / "base.sqlite",
                   progress=False)
    assert [e.value for e in index.examples("layer3:0")] != [e.value for e in base.examples("layer3:0")]
    found = vz.circuit(edited, "layer3:0", upstream="layer2", data=SAMPLE_DIR, examples=8, steps=2,
                       reference_images=64)
    ablated = next(i for i, name in enumerate(found.names) if name == "layer2:11")
    assert found.contributions[ablated] == 0  # a channel held fixed contributes nothing
    concepts = {"cat": SAMPLE_DIR / "cat", "truck": SAMPLE_DIR / "truck", "ship": SAMPLE_DIR / "ship"}
    held = vz.probe(edited, "layer2:11", concepts, renders=0)  # held at zero: no concept drives it
    assert held.verdict == "unclear" and held.concepts == []
    assert all(e.mean == 0 and e.firing == 0 and not e.drives for e in held.evidence)
    assert vz.probe(vz.load_model("default"), "layer2:11", concepts, renders=0).verdict != "unclear"


def test_an_edit_file_loads_in_a_fresh_interpreter(tmp_path):
    """`edit:` is a source of the registry itself: nothing has to import `vizneuron.edit` first."""

    path = vz.edit("default", ["layer3:7"], values=[0.5]).save(tmp_path / "fix.json")
    code = ("import sys, torch\nimport vizneuron as vz\n"
            f"model = vz.load_model('edit:{path}')\nassert 'vizneuron.edit' in sys.modules\n"
            "from vizneuron.capture import capture\n"
            "with capture(model, ['layer3']) as cap, torch.no_grad():\n"
            "    act = cap.run(torch.rand(2, 3, 32, 32))['layer3']\n"
            "print(model.name, float(act[:, 7].min()), float(act[:, 7].max()))\n")
    run = fresh_python(code)
    assert run.returncode == 0, run.stderr
    name, low, high = run.stdout.split()
    assert name == f"edit:{path}" and float(low) == float(high) == 0.5


def test_hold_at_a_reference_sets_each_unit_to_its_reference_map(tiny, tmp_path):
    """Held at a reference output (mean ablation as circuits use it), each unit takes its value on
    the reference position by position, whatever its kind; the rest of the layer is untouched, and
    an SAE feature moves the layer only along its decoder row, by (reference code - code)."""
    from vizneuron.ablate import hold

    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    act = _layer(tiny, images)
    reference = _layer(tiny, torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(2))).mean(0, True)
    direction = torch.zeros(16)
    direction[[1, 2]] = torch.tensor([1.0, -2.0])
    np.save(tmp_path / "d.npy", direction.numpy())
    units = parse_units(["act2:3", "act2:5@2,1", f"act2:dir={tmp_path / 'd.npy'}"], tiny)
    held = hold(act, units, reference)
    assert torch.allclose(held[:, 3], reference[:, 3].expand(3, -1, -1))
    assert torch.allclose(held[:, 5, 2, 1], reference[0, 5, 2, 1].expand(3))
    untouched = [c for c in range(16) if c not in (1, 2, 3, 5)]
    assert torch.equal(held[:, untouched], act[:, untouched])
    along = lambda t: torch.einsum("nchw,c->nhw", t, direction)  # noqa: E731
    assert torch.allclose(along(held), along(reference).expand(3, -1, -1), atol=1e-5)
    assert torch.allclose(hold(act, units, [-1.0, 1.0, 0.0])[:, 3], -torch.ones(3, 8, 8))

    sae = _sae()
    rows = tiny.inputs.tokens.rows
    with torch.no_grad():
        codes, start = sae.encode(rows(act)), sae.encode(rows(reference.expand_as(act)))
    f = int((codes - start).abs().sum(0).argmax())  # the feature that moves most: the check is not empty
    assert not torch.equal(codes[:, f], start[:, f])
    moved = hold(act, parse_units(f"act2/s:{f}", tiny, {"s": sae}), reference)
    expected = rows(act) + (start - codes)[:, f, None] * sae.directions([f])
    assert torch.allclose(rows(moved), expected, atol=1e-5)
    with pytest.raises(vz.errors.VizneuronError, match="2 values for 3 units"):
        hold(act, units, [0.0, 1.0])


def test_edit_files_are_untrusted_data_checked_whole_before_loading(tmp_path):
    """An edit file is shared as data: a base that runs code, a base that is itself an edit, too many
    or repeated units, NaN values or weights, and misshapen fields are each one clear error, and
    nothing is imported or loaded first."""
    import sys

    path = vz.edit("default", ["layer3:7"], values=[0.5]).with_weights(
        {"fc": {"weight": torch.zeros(10, 128), "bias": torch.zeros(10)}}).save(tmp_path / "good.json")
    good = json.loads(path.read_text())
    (tmp_path / "evil_module.py").write_text("raise SystemExit('ran code from an edit file')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        cases = {
            "imports and runs code": {"model": "python:evil_module:factory"},
            "another edit": {"model": f"edit:{tmp_path / 'self.json'}"},
            "at most 65,536": {"ablate": [{"unit": f"layer3:{i % 128}", "value": 0.0} for i in range(70_000)]},
            "more than once": {"ablate": [{"unit": "layer3:1", "value": 0.0}, {"unit": "layer3:1", "value": 1.0}]},
            "a finite number": {"ablate": [{"unit": "layer3:1", "value": float("nan")}]},
            "must map each SAE name": {"saes": [{"file": "x"}]},
            '"modules": [MODULE, ...]': {"weights": {"file": "w.safetensors", "sha256": "0"}},
            "must be zero or mean": {"mode": "half"},
        }
        for words, change in cases.items():
            name = tmp_path / "self.json"
            name.write_text(json.dumps({**good, **change}))
            with pytest.raises(EditError, match=re.escape(words)):
                vz.load_model(f"edit:{name}")
        assert "evil_module" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))
    weights = path.with_suffix(".weights.safetensors")
    tensors = {"fc.weight": torch.full((10, 128), float("nan")), "fc.bias": torch.zeros(10)}
    from safetensors.torch import save_file

    save_file(tensors, str(weights))
    (tmp_path / "nan.json").write_text(json.dumps({**good, "weights": {**good["weights"],
                                                                       "sha256": _digest(weights)}}))
    with pytest.raises(EditError, match="NaN or infinite"):
        vz.load_model(f"edit:{tmp_path / 'nan.json'}")
    with pytest.raises(EditError, match="more than once"):
        vz.edit("default", ["layer3:1", "layer3:0-2"])


def _digest(path) -> str:
    from vizneuron.edit import file_digest

    return file_digest(path)
