"""SAEs in the community's formats, against the real libraries: SAELens and dictionary_learning SAEs
written by them load in vizneuron with the same latents and reconstructions on real activations,
and ours written in SAELens format load in SAELens with the same numbers."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

import vizneuron as vz
from vizneuron.cli import main
from vizneuron.models.default import bundled_saes
from vizneuron.sae import SAE, SAEConfig, SAEError, find_saes, layer_activations, load_sae, read_sae_config
from vizneuron.sae.formats import layer_for_hook
from vizneuron.samples import SAMPLE_DIR
from vizneuron.shift.task import BIASED_MODEL, CUE_LAYER
from vizneuron.units import UnitError, parse_units

pytestmark = pytest.mark.slow  # importing sae_lens alone takes seconds
sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is not installed (the `formats` extra)")
dl_dictionary = pytest.importorskip("dictionary_learning.dictionary",
                                    reason="dictionary-learning is not installed (the `formats` extra)")
from dictionary_learning.trainers.batch_top_k import BatchTopKSAE  # noqa: E402
from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE  # noqa: E402
from dictionary_learning.trainers.top_k import AutoEncoderTopK  # noqa: E402

LAYER, D_SAE = "layer3", 512


@pytest.fixture(scope="module")
def model() -> vz.Model:
    return vz.load_model("default")


@pytest.fixture(scope="module")
def rows(model) -> torch.Tensor:
    """Real activations: the bundled model's layer3 at every position of 64 sample images."""
    return torch.cat(list(layer_activations(model, LAYER, SAMPLE_DIR, max_images=64, workers=0)))


def _randomise(module: torch.nn.Module, seed: int, scale: float) -> None:
    """Every float parameter random, so biases and thresholds matter in the comparison."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * scale)


def _same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max().clamp(min=1)))


def _fires(z: torch.Tensor) -> None:
    """A comparison that means something: latents fire, and not all of them everywhere."""
    active = (z > 0).float().mean()
    assert 0 < active < 0.9, f"fraction active {active:.3f}"


@pytest.mark.parametrize("architecture,apply_b_dec,rescale", [
    ("standard", True, False), ("standard", False, False), ("topk", True, False), ("topk", False, True),
    ("jumprelu", True, False), ("jumprelu", False, False)])
def test_saelens_saes_load_with_their_numbers(tmp_path, rows, architecture, apply_b_dec, rescale):
    d_in = rows.shape[1]
    extra = {"k": 24, "rescale_acts_by_decoder_norm": rescale} if architecture == "topk" else {}
    classes = {"standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig),
               "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig),
               "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig)}[architecture]
    theirs = classes[0](classes[1](d_in=d_in, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec, **extra))
    _randomise(theirs, 0, 0.05)
    with torch.no_grad():
        theirs.b_dec.copy_(rows.mean(0))  # a bias of the data's size, so applying it or not differs
        if architecture == "jumprelu":  # thresholds around the pre-activations' spread; some <= 0
            theirs.threshold.copy_(torch.linspace(-0.2, 1.5, D_SAE))
    theirs.cfg.metadata.hook_name = "blocks.3.hook_resid_post"
    theirs.save_model(tmp_path / "sae")
    ours = load_sae(tmp_path / "sae")  # found by its files
    assert ours.config.kind == {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}[architecture]
    with torch.no_grad():
        z_theirs = theirs.encode(rows)
        _fires(z_theirs)
        _same(ours.encode(rows), z_theirs)
        _same(ours.reconstruct(rows), theirs(rows))
    explicit = load_sae(f"saelens:{tmp_path / 'sae'}?layer={LAYER}")
    assert explicit.config.layer == LAYER and ours.config.layer == "blocks.3.hook_resid_post"
    assert read_sae_config(f"saelens:{tmp_path / 'sae'}").training["hook_name"] == "blocks.3.hook_resid_post"


def _our_sae(kind: str, d_in: int, rows: torch.Tensor, seed: int) -> SAE:
    """One of our SAEs with random weights, an input scale far from 1 and a threshold inside the
    pre-activations' range, so every term of the export is exercised."""
    sae = SAE(SAEConfig(d_in=d_in, d_sae=D_SAE, kind=kind, k=24, scale=0.37, model="default", layer=LAYER))
    _randomise(sae, seed, 0.05)
    with torch.no_grad():
        sae.b_dec.copy_(rows.mean(0) * 0.37)
        if kind == "jumprelu":
            sae.log_threshold.copy_(torch.linspace(-4, 0.5, D_SAE))
        if kind in ("batchtopk", "matryoshka"):
            sae.threshold.copy_(sae.pre_activations(rows).quantile(0.97))
    return sae.eval()


@pytest.mark.parametrize("kind", ["topk", "relu", "jumprelu", "batchtopk", "matryoshka"])
def test_ours_written_as_saelens_load_in_saelens_with_the_same_numbers(tmp_path, rows, kind):
    ours = _our_sae(kind, rows.shape[1], rows, 1)
    written = ours.save(tmp_path / "export", format="saelens")
    theirs = sae_lens.SAE.load_from_disk(written)
    assert theirs.cfg.metadata.hook_name == LAYER and theirs.cfg.metadata.model_name == "default"
    with torch.no_grad():
        z = ours.encode(rows)
        _fires(z)
        _same(theirs.encode(rows), z)
        _same(theirs(rows), ours.reconstruct(rows))
    back = load_sae(written)  # and back again
    with torch.no_grad():
        _same(back.encode(rows), z)


def _dictionary(dict_class: str, d_in: int, rows: torch.Tensor) -> torch.nn.Module:
    if dict_class == "AutoEncoderTopK":
        ae = AutoEncoderTopK(d_in, D_SAE, 24)
    elif dict_class == "BatchTopKSAE":
        ae = BatchTopKSAE(d_in, D_SAE, 24)
    elif dict_class == "MatryoshkaBatchTopKSAE":
        ae = MatryoshkaBatchTopKSAE(d_in, D_SAE, 24, [64, 64, 128, 256])
    else:
        ae = getattr(dl_dictionary, dict_class)(d_in, D_SAE)
    _randomise(ae, 2, 0.05)
    with torch.no_grad():
        for name in ("bias", "b_dec"):
            if hasattr(ae, name):
                getattr(ae, name).copy_(rows.mean(0))
        if isinstance(getattr(ae, "decoder", None), torch.nn.Linear) and ae.decoder.bias is not None:
            ae.decoder.bias.copy_(rows.mean(0))
        if dict_class == "JumpReluAutoEncoder":
            ae.threshold.copy_(torch.linspace(-0.2, 1.5, D_SAE))
        if dict_class in ("BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
            ae.threshold.fill_(0.4)
    return ae.eval()


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderNew", "AutoEncoderTopK", "BatchTopKSAE",
                                        "MatryoshkaBatchTopKSAE", "JumpReluAutoEncoder"])
def test_dictionary_learning_saes_load_with_their_numbers(tmp_path, rows, dict_class):
    ae = _dictionary(dict_class, rows.shape[1], rows)
    folder = tmp_path / "trainer_0"
    folder.mkdir()
    torch.save({k: v.cpu() for k, v in ae.state_dict().items()}, folder / "ae.pt")  # as their trainer saves
    config = {"dict_class": dict_class, "activation_dim": rows.shape[1], "dict_size": D_SAE, "lm_name": "default",
              "layer": 3, "submodule_name": LAYER}
    if "TopK" in dict_class:
        config["k"] = 24
    (folder / "config.json").write_text(json.dumps({"trainer": config}))
    ours = load_sae(f"dictionary_learning:{folder}")
    assert ours.config.layer == LAYER and ours.config.d_sae == D_SAE
    with torch.no_grad():
        z_theirs = ae.encode(rows)
        _fires(z_theirs)
        _same(ours.encode(rows), z_theirs)
        _same(ours.reconstruct(rows), ae(rows))


def test_a_pickled_object_in_ae_pt_is_refused_not_run(tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"trainer": {
        "dict_class": "AutoEncoder", "activation_dim": 4, "dict_size": 8}}))
    (folder / "ae.pt").write_bytes(pickle.dumps(_Boom(tmp_path / "ran")))
    with pytest.raises(SAEError, match="cannot read it as tensors"):
        load_sae(folder)
    assert not (tmp_path / "ran").exists()


class _Boom:
    """Unpickling this runs code: it creates the file `ran`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_foreign_saes_it_cannot_map_are_refused_by_name(tmp_path):
    gated = sae_lens.GatedSAE(sae_lens.GatedSAEConfig(d_in=8, d_sae=16))
    gated.save_model(tmp_path / "gated")
    with pytest.raises(SAEError, match="architecture 'gated' is not one vizneuron reads"):
        load_sae(tmp_path / "gated")
    norm = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=8, d_sae=16, normalize_activations="layer_norm"))
    norm.save_model(tmp_path / "norm")
    with pytest.raises(SAEError, match="normalize_activations='layer_norm'"):
        load_sae(tmp_path / "norm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAEError, match="holds no SAE vizneuron reads"):
        load_sae(tmp_path / "empty")
    with pytest.raises(SAEError, match="ae.pt not found"):
        load_sae(f"dictionary_learning:{tmp_path / 'empty'}")
    with pytest.raises(SAEError, match="only option is layer"):
        load_sae(f"saelens:{tmp_path / 'norm'}?lyer=x")
    standard = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=8, d_sae=16))
    standard.save_model(tmp_path / "narrow")
    with pytest.raises(SAEError, match="8-wide layer"):
        load_sae(tmp_path / "narrow", d_in=128)


def test_a_saelens_sae_is_a_unit_like_ours(tmp_path, model, rows):
    """A SAELens folder named in a unit spec: its features mine like any unit, each example's value
    the feature's activation on that image (its maximum over positions)."""
    theirs = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=rows.shape[1], d_sae=D_SAE, k=24))
    _randomise(theirs, 3, 0.05)
    theirs.cfg.metadata.hook_name, theirs.cfg.metadata.model_name = LAYER, "default"
    theirs.save_model(tmp_path / "sae")
    spec = f"{LAYER}/{tmp_path / 'sae'}:0-3"
    units = parse_units(spec, model)
    assert [u.index for u in units] == [0, 1, 2, 3] and {u.kind for u in units} == {"sae"}
    index = vz.mine(model, spec, SAMPLE_DIR, k=4, index=tmp_path / "i.sqlite", progress=False, workers=0)
    first = index.examples(index.units()[0], k=1)[0]
    listing = tmp_path / "one.txt"
    listing.write_text(first.path + "\n")
    act = torch.cat(list(layer_activations(model, LAYER, listing, workers=0)))
    with torch.no_grad():
        best = theirs.encode(act)[:, 0].max()
    assert best > 0
    torch.testing.assert_close(torch.tensor(first.value), best, rtol=1e-4, atol=1e-5)


def test_the_cli_exports_the_bundled_sae_for_saelens(tmp_path, capsys):
    """`vizneuron sae export` on the bundled cue-biased SAE: SAELens loads the folder and encodes the
    bundled model's activations as we do; `sae eval` reads a foreign folder without rewriting it."""
    model = vz.load_model(BIASED_MODEL)
    [path] = bundled_saes(model.name, CUE_LAYER).values()
    assert main(["sae", "export", str(path), str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    theirs, ours = sae_lens.SAE.load_from_disk(tmp_path / "out"), load_sae(path)
    act = torch.cat(list(layer_activations(model, CUE_LAYER, SAMPLE_DIR, max_images=32, workers=0)))
    with torch.no_grad():
        _same(theirs.encode(act), ours.encode(act))
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert main(["sae", "eval", BIASED_MODEL, str(tmp_path / "out"), "--data", str(SAMPLE_DIR), "--layer", CUE_LAYER,
                 "--max-images", "40", "--quiet"]) == 0
    assert "metrics printed, not stored" in capsys.readouterr().out
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}


def test_a_transformerlens_hook_name_maps_to_the_models_block(tmp_path):
    """A SAELens SAE recorded on `blocks.11.hook_resid_post` reads block 11 of a timm ViT (no
    `?transfer` needed), is listed for that layer only, and is refused on another block."""
    model = vz.load_model("timm:vit_tiny_patch16_224?pretrained=false")
    theirs = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=192, d_sae=384, k=8))
    theirs.cfg.metadata.hook_name = "blocks.11.hook_resid_post"
    theirs.save_model(tmp_path / "saes" / "vit_sae")
    [unit] = parse_units(f"blocks.11/{tmp_path / 'saes' / 'vit_sae'}:5", model)
    assert unit.layer == "blocks.11" and unit.index == 5
    with pytest.raises(UnitError, match="trained on .*blocks.11"):
        parse_units(f"blocks.10/{tmp_path / 'saes' / 'vit_sae'}:5", model)
    assert find_saes([tmp_path / "saes"], "blocks.11", 192, model.layers) == {"vit_sae": tmp_path / "saes" / "vit_sae"}
    assert find_saes([tmp_path / "saes"], "blocks.10", 192, model.layers) == {}
    assert layer_for_hook(model.layers, "blocks.11.hook_resid_pre") == "blocks.10"
    assert layer_for_hook(model.layers, "blocks.0.hook_resid_pre") is None
    assert layer_for_hook(model.layers, "blocks.3.hook_mlp_out") is None
