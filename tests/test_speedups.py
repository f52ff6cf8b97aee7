"""What makes renders fast must not change what they compute: BatchNorm folding and channels-last
weights are exact and undone, bfloat16 is used only where the hardware has it and renders as well,
and the automatic batch size follows the model's memory."""

import pytest
import torch
from torch import nn

from vizneuron import capture, load_model, render
from vizneuron.cli import build_parser
from vizneuron.commands import _render_config
from vizneuron.models.base import InputConfig, Model
from vizneuron.optim.config import AUTO_BATCH_MAX, RenderConfig
from vizneuron.optim.speedups import channels_last, folded_batchnorm

from helpers import make_tiny


class ConvBN(nn.Module):
    """conv1 -> bn1 -> relu; conv2 -> bn2 whose conv output is also added back (read twice: not
    foldable); bn3 in training mode (batch statistics: not foldable)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        for bn in (self.bn1, self.bn2, self.bn3):  # statistics far from the identity
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
            bn.bias.data.uniform_(-1, 1)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        x = self.bn2(y) + y
        return self.bn3(self.conv3(x))


def _conv_bn_model() -> Model:
    model = Model(ConvBN(), name="convbn", inputs=InputConfig((12, 12)))
    model.module.bn3.train()
    return model


def test_batchnorm_folding_is_exact_skips_what_it_must_and_puts_the_model_back():
    model = _conv_bn_model()
    x = torch.rand(2, 3, 12, 12)
    weights = {name: (p, p.clone()) for name, p in model.module.named_parameters()}
    with torch.no_grad(), capture(model, ["bn1", "bn2"]) as cap:
        before = {k: v.clone() for k, v in cap.run(x).items()}
        with folded_batchnorm(model.module) as folded:
            after = cap.run(x)  # the hooks on the folded BatchNorm see the same values
            assert folded == 1  # bn2's conv is read twice, bn3 uses batch statistics
            assert model.module.conv1.weight is not weights["conv1.weight"][0]
        for name in before:
            assert torch.allclose(after[name], before[name], atol=1e-5), name
    for name, (param, value) in weights.items():  # the very same objects, bit for bit
        assert dict(model.module.named_parameters())[name] is param and torch.equal(param, value), name
    assert "forward" not in vars(model.module.bn1)
    with folded_batchnorm(model.module, keep=["conv1"]) as folded:
        assert folded == 0  # a layer the caller reads keeps its own output


def test_untraceable_models_are_not_folded_and_still_render():
    class Dynamic(ConvBN):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = self.bn1(self.conv1(x))
            return x

    with folded_batchnorm(Dynamic()) as folded:
        assert folded == 0


def test_bundled_model_folds_every_pair_and_renders_what_it_measures():
    model = load_model("default")
    with capture(model, ["layer3"]), folded_batchnorm(model.module) as folded, channels_last(model.module):
        # (a render's capture hooks are in place when it folds: the deepest would end a tracing pass)
        assert folded == sum(isinstance(m, nn.BatchNorm2d) for m in model.module.modules()) == 8
    result = render(model, "layer3:0-3", steps=8, progress=False)
    with torch.no_grad(), capture(model, ["layer3"]) as cap:  # unfolded, contiguous: the real model
        again = cap.run(result.images)["layer3"][torch.arange(4), torch.arange(4)].mean((1, 2))
    assert torch.allclose(result.activations, again, rtol=1e-5, atol=1e-5)


def test_precision_auto_follows_the_hardware(monkeypatch):
    model = load_model("default")
    expected = "bfloat16" if model.native_bfloat16 else "float32"
    assert RenderConfig().normalised(model).precision == expected
    assert RenderConfig(precision="float32").normalised(model).precision == "float32"
    monkeypatch.setattr(Model, "native_bfloat16", property(lambda self: False))
    assert RenderConfig().normalised(model).precision == "float32"
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        RenderConfig(precision="half")


@pytest.mark.slow
def test_bfloat16_renders_as_strongly_as_float32():
    """bench/whole_layer.py: 0.99 of float32's mean activation over all 128 channels at 256 steps.
    Single renders differ by up to 2x either way at short runs, so 16 channels, 96 steps, bar 0.9.
    (On CPUs without AVX512-BF16 or AMX bfloat16 is emulated: slow, but it runs.)"""
    model = load_model("default")
    units = [f"layer3:{c}" for c in range(0, 128, 8)]
    full = render(model, units, steps=96, precision="float32", progress=False).activations
    half = render(model, units, steps=96, precision="bfloat16", progress=False).activations
    assert half.mean() >= 0.9 * full.mean() > 0, (half, full)
    assert not torch.equal(half, full)  # bfloat16 really ran


def test_auto_batch_follows_the_model_and_the_memory(tiny, monkeypatch):
    monkeypatch.setattr(Model, "memory_bytes", property(lambda self: 24 * 2**30))
    default = load_model("default")
    assert RenderConfig().normalised(default, 128).batch == AUTO_BATCH_MAX  # 2 MiB per image: the cap
    assert RenderConfig().normalised(default, 10).batch == 10  # never more than the units
    assert RenderConfig(batch=None).normalised(default, 128).batch == 128
    resnet = load_model("torchvision:resnet18?weights=none")
    assert RenderConfig().normalised(resnet, 128).batch == 16  # 26 MiB per 224 px image
    assert RenderConfig(samples=4).normalised(resnet, 128).batch == 4  # slots, not units, fill memory
    assert RenderConfig(size=64).normalised(resnet, 128).batch == AUTO_BATCH_MAX
    monkeypatch.setattr(Model, "memory_bytes", property(lambda self: 2**30))
    assert RenderConfig().normalised(resnet, 128).batch == 1
    with pytest.raises(ValueError, match="batch"):
        RenderConfig(batch="some")


@pytest.mark.parametrize("flag, batch", [(["--batch", "all"], None), (["--batch", "auto"], "auto"), ([], "auto"),
                                         (["--batch", "8"], 8)])
def test_cli_batch_and_precision_flags(flag, batch):
    args = build_parser().parse_args(["render", "default", "--units", "layer3:*", "--precision", "float32", *flag])
    config = _render_config(args)
    assert config.batch == batch and config.precision == "float32"
    assert config.normalised(make_tiny(), 3).batch == 3
