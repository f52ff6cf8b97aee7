"""Unit grammar: parsing, ranges, and the errors a user sees for bad specs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vizneuron.units import Unit, UnitError, parse_unit, parse_units


def test_channel_neuron_logit_and_ranges(tiny):
    assert parse_unit("conv2:3", tiny) == Unit("conv2", "channel", 3)
    assert parse_unit("conv2:3@4,5", tiny) == Unit("conv2", "neuron", 3, (4, 5))
    assert parse_unit("logit:2", tiny) == Unit("logits", "logit", 2)
    assert parse_unit("logit:Car", tiny).index == 1
    assert [u.index for u in parse_units("conv2:0-3", tiny)] == [0, 1, 2, 3]
    assert [u.index for u in parse_units("conv2:3,7,9", tiny)] == [3, 7, 9]
    assert len(parse_units("conv2:*", tiny)) == 16
    assert len(parse_units("conv1:0-1;logit:*", tiny)) == 7
    assert parse_unit("conv2:3@4,5", tiny).name == "conv2:3@4,5"


def test_unit_activation_values(tiny):
    act = torch.arange(2 * 16 * 8 * 8, dtype=torch.float32).view(2, 16, 8, 8)
    acts = {"conv2": act}
    assert torch.equal(parse_unit("conv2:3", tiny).activation(acts), act[:, 3].mean((1, 2)))
    assert torch.equal(parse_unit("conv2:3@4,5", tiny).activation(acts), act[:, 3, 4, 5])


def test_direction_unit(tiny, tmp_path):
    vector = np.zeros(16, dtype=np.float32)
    vector[[2, 5]] = [1.0, -2.0]
    path = tmp_path / "d.npy"
    np.save(path, vector)
    unit = parse_unit(f"conv2:dir={path}", tiny)
    act = torch.rand(3, 16, 8, 8)
    expected = (act[:, 2] - 2 * act[:, 5]).mean((1, 2))
    assert torch.allclose(unit.activation({"conv2": act}), expected, atol=1e-6)
    np.save(path, np.zeros(7, dtype=np.float32))
    with pytest.raises(UnitError, match="7 values but conv2 has 16 channels"):
        parse_unit(f"conv2:dir={path}", tiny)


def test_token_layers_treat_last_dim_as_channels(tiny):
    unit = Unit("blocks", "channel", 2)
    tokens = torch.rand(2, 197, 8)  # (N, T, D) as a ViT block outputs
    assert torch.allclose(unit.activation({"blocks": tokens}), tokens[:, :, 2].mean(1))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("conv3:1", r"unknown layer 'conv3'.*closest: conv(1|2)"),
        ("cnv2:1", r"closest: conv2"),
        ("conv2:16", r"channel 16 out of range for conv2: valid channels are 0-15"),
        ("conv2:-1", r"not a channel number|out of range"),
        ("conv2:x", r"'x' is not a channel number"),
        ("conv2:3@9,9", r"outside conv2's 8x8 grid"),
        ("conv2:3@1", r"position must be Y,X"),
        ("pair:0", r"does not output a tensor"),
        ("logit:zebra", r"unknown class 'zebra'"),
        ("logit:cta", r"closest labels: cat"),
        ("logit:5", r"valid channels are 0-4"),
        ("conv2", r"LAYER:CHANNEL"),
        ("conv2:5-2", r"empty range"),
    ],
)
def test_bad_specs_say_what_is_wrong(tiny, spec, message):
    with pytest.raises(UnitError, match=message):
        parse_units(spec, tiny)


def test_lucent_style_names_resolve():
    from torchvision.models import resnet18

    from vizneuron.models.base import InputConfig, Model

    model = Model(resnet18(), name="r18", inputs=InputConfig((64, 64)))
    assert parse_unit("layer3_1:5", model).layer == "layer3.1"
    assert parse_unit("layer3.1.conv2:5", model).layer == "layer3.1.conv2"
