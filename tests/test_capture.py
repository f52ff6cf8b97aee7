"""The capture context manager: exact layers, early stop, and no leaked hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vizneuron import capture, render
from vizneuron.models.base import InputConfig, Model
from vizneuron.optim.objectives import Objective

from helpers import hook_count


class Recorder(nn.Module):
    """Identity that counts how often it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def test_captures_requested_layers_only(tiny):
    x = torch.rand(2, 3, 16, 16)
    with capture(tiny, ["conv1", "act2"]) as cap:
        acts = cap.run(x)
    assert set(acts) == {"conv1", "act2"}
    assert acts["act2"].shape == (2, 16, 8, 8)
    full = tiny.module.act2(tiny.module.conv2(tiny.module.act1(tiny.module.conv1(tiny.preprocess(x)))))
    assert torch.allclose(acts["act2"], full)


def test_layers_after_the_deepest_target_do_not_run(tiny):
    tiny.module.fc = nn.Sequential(Recorder(), tiny.module.fc)
    recorder = tiny.module.fc[0]
    assert "fc.0" in tiny.layers  # measuring the layer table runs everything once
    recorder.calls = 0
    with capture(tiny, ["conv2"]) as cap:
        cap.run(torch.rand(1, 3, 16, 16))
    assert recorder.calls == 0
    with capture(tiny, ["conv2", "logits"]) as cap:
        acts = cap.run(torch.rand(1, 3, 16, 16))
    assert recorder.calls == 1 and acts["logits"].shape == (1, 5)
    render(tiny, "conv1:0", steps=3, progress=False)
    assert recorder.calls == 1, "render ran layers after its deepest target"


def test_module_called_twice_keeps_its_last_output_and_does_not_stop_early():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.relu(self.conv(self.relu(x)) - 1.0)

    model = Model(Twice(), name="twice", inputs=InputConfig((4, 4)))
    assert model.layers["relu"].calls == 2
    x = torch.rand(1, 3, 4, 4)
    with capture(model, ["relu"]) as cap:
        acts = cap.run(x)
    assert torch.allclose(acts["relu"], model(x))


def test_hooks_removed_after_renders_and_after_errors(tiny):
    before = hook_count(tiny.module)
    for seed in range(10):
        render(tiny, "conv2:1", steps=2, seed=seed, progress=False)
    assert hook_count(tiny.module) == before

    def explode(acts):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        render(tiny, [], objective=Objective(explode, ["conv2"]), steps=2, progress=False)
    with pytest.raises(KeyError):
        with capture(tiny, ["conv1"]):
            raise KeyError("inside the block")
    assert hook_count(tiny.module) == before


def test_unknown_layer_in_capture_names_closest(tiny):
    with pytest.raises(ValueError, match="closest: conv2"):
        with capture(tiny, ["conv22"]):
            pass


def test_lucent_style_alias_keys_work_in_objectives():
    from torchvision.models import resnet18

    from vizneuron import objectives as obj

    model = Model(resnet18(), name="r18", inputs=InputConfig((32, 32)))
    with capture(model, ["layer2_1"]) as cap:
        acts = cap.run(torch.rand(1, 3, 32, 32))
    assert acts["layer2_1"] is acts["layer2.1"]
    result = render(model, [], objective=obj.channel("layer2_1", 3), steps=2, progress=False)
    assert result.history.shape == (2, 1)


def test_activation_stream_reads_shards_lists_and_resumes_with_notes(tmp_path):
    from vizneuron import ActivationStream

    from helpers import make_tiny, write_problem_images

    fates = write_problem_images(tmp_path / "data")
    model = make_tiny()
    stream = ActivationStream(model, ["conv2"], tmp_path / "data", batch_size=3, full_pass=True)
    batches = list(stream)
    assert len(stream) == len(batches) == -(-len(fates) // 3) and [b.number for b in batches] == list(
        range(1, len(batches) + 1))
    read = torch.cat([b.ids for b in batches]).tolist()
    notes = {stream.source.key(i).rsplit("/", 1)[1]: (action, reason) for b in batches for i, action, reason in b.notes}
    for name, fate in fates.items():
        assert notes.get(name, ("ok",))[0] == fate.split(":")[0], name  # ok, skipped or converted
    assert len(read) == sum(not f.startswith("skipped") for f in fates.values())
    for b in batches:  # what the stream says it saw is what the model gives for those images
        if len(b.ids):
            with capture(model, ["conv2"]) as cap:
                assert torch.allclose(cap.run(b.images)["conv2"], b.activations["conv2"])
            assert b.output.shape == (len(b.ids), 5) and b.images.shape[0] == b.size - sum(
                action == "skipped" for _, action, _ in b.notes)
    assert [(b.number, b.size) for b in stream.select([2, 0])] == [(3, 3), (1, 3)]
    half = ActivationStream(model, ["conv2"], tmp_path / "data", batch_size=3, shard="1/2")
    assert half.span == (len(fates) // 2, len(fates)) and half.ids == list(range(len(fates) // 2, len(fates)))
    assert ActivationStream(model, ["conv2"], tmp_path / "data", ids=[5, 1]).ids == [5, 1]


def test_max_images_is_a_seeded_sample_of_every_class():
    """The bundled sample is sorted by class (30 each); its first 40 files are two classes only."""
    from vizneuron import ActivationStream
    from vizneuron.samples import SAMPLE_DIR

    from helpers import make_tiny

    capped = ActivationStream(make_tiny(), ["conv2"], SAMPLE_DIR, max_images=40)
    assert len(capped.ids) == 40 and capped.ids == sorted(capped.ids)
    assert {capped.source.label(i) for i in capped.ids} == {p.name for p in SAMPLE_DIR.iterdir()}  # all ten
    assert {capped.source.label(i) for i in range(40)} == {"airplane", "automobile"}  # what first-N gave
    assert ActivationStream(make_tiny(), ["conv2"], SAMPLE_DIR, max_images=40).ids == capped.ids  # seeded
    assert ActivationStream(make_tiny(), ["conv2"], SAMPLE_DIR, max_images=1000).ids == list(range(300))
