"""The `vizneuron` command's parser: it reads defaults and choices from torch-free modules, and
loads `commands` (the library, torch) only once a command runs, so `--help` is instant."""

from __future__ import annotations

import argparse
import functools
import sys

from .choices import ENGINES, MODES, PARAMETERISATIONS, PRECISIONS, SCHEDULES, VERDICTS
from .errors import debug_requested, expected, user_message, warn_user
from .optim.config import AUTO_BATCH_MAX, AUTO_BATCH_MEMORY_SHARE, PRESETS, RenderConfig
from .sae.config import KINDS, SAETrainConfig


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine", "where the job runs (the index or files are identical either way)")
    group.add_argument("--engine", choices=list(ENGINES), default="local",
                       help="local: this process; ray: actors on a Ray cluster (pip install 'vizneuron[ray]')")
    group.add_argument("--address", default=None, help="Ray cluster HOST:PORT or 'auto' (default: a private local Ray)")
    group.add_argument("--actors", type=int, default=None, help="model replicas (default: as many as fit)")
    group.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs each actor reserves")
    group.add_argument("--cpus-per-actor", type=float, default=None,
                       help="CPUs each actor reserves (default 1; its torch threads; add --workers for decoding)")


def _concept_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say which concepts to probe with (probe and atlas)."""
    parser.add_argument("--data", default=None, help="labelled dataset for --concepts (class folders, or a list "
                                                     "file of PATH<TAB>LABEL lines)")
    parser.add_argument("--concepts", default=None, help="comma-separated: a label, NAME=LABEL+LABEL, or a ready-made "
                                                         "ImageNet group (domestic cat, big cat, car, snake, "
                                                         "...); with "
                                                         "--data, default: each class of a small label set, else the "
                                                         "ImageNet groups")
    parser.add_argument("--concept", action="append", default=[], help="NAME=FOLDER_OR_LIST (repeatable)")
    parser.add_argument("--per-concept", type=int, default=None, help="at most this many images per concept")


def _render_batch(text: str) -> int | str:
    """`--batch`: a number (checked by `RenderConfig`, like every setting), 'auto', or 'all'."""
    if text in ("auto", "all"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of units, 'auto' or 'all'") from None


WORKERS_HELP = ("processes decoding images beside the model (default: auto, what measured fastest on this kind of "
                "machine: none on 2 CPU cores, more with more cores or a GPU)")


SAE_REF_HELP = ("SAE: a vizneuron .safetensors file, a SAELens or dictionary_learning folder, or saelens:DIR / "
                "dictionary_learning:DIR (add ?layer=NAME when its hook name is not a layer of the model)")
MODEL_HELP = "model spec: default, torchvision:NAME, timm:NAME, tflite:PATH, ... (`vizneuron models` lists them)"
DEVICE_HELP = "torch device: cpu, cuda, cuda:1, mps (default: cpu)"
THREADS_HELP = "CPU threads for torch (default: torch's, one per core)"
QUIET_HELP = "no progress bars"
BATCH_HELP = "images per batch (default: auto, 64 on the CPU, from the GPU's memory on CUDA)"


def _count_or_auto(text: str, least: int, wanted: str) -> int | str:
    if text == "auto":
        return text
    try:
        if int(text) >= least:
            return int(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r}: give {wanted} or 'auto'")


def workers_arg(text: str) -> int | str:
    """`--workers`: a number of decoding processes, or 'auto'."""
    return _count_or_auto(text, 0, "a number of processes (0: decode in this one)")


def batch_arg(text: str) -> int | str:
    """`--batch` of the jobs that read images: a number of images, or 'auto'."""
    return _count_or_auto(text, 1, "a number of images (at least 1)")


def batches_per_file_arg(text: str) -> int | str:
    """`--batches-per-file` of `sae extract`: a number of image batches (its range is checked by
    `extract_activations`, so the message is the library's), or 'auto'."""
    try:
        return text if text == "auto" else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of image batches or 'auto'") from None


class DefaultsFormatter(argparse.HelpFormatter):
    """Every flag's help says its default, unless its text already does or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.default in (None, False, "", [])
                or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and every subcommand's parser under it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += parsers(child)
    return found


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error (also: VIZNEURON_DEBUG=1)")
    parser = argparse.ArgumentParser(prog="vizneuron", description="What does this neuron respond to?",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])  # --debug after the command too

    models_cmd = sub.add_parser("models", help="list the model sources a spec can name")
    models_cmd.set_defaults(func="models")

    layers = sub.add_parser("layers", help="list every hookable layer with its output shape")
    layers.add_argument("model", help="model spec, e.g. default, torchvision:resnet18?weights=none")
    layers.set_defaults(func="layers")

    rend = sub.add_parser("render", help="render feature visualisations into a gallery",
                          description="Settings left out come from --preset (default: the library's defaults).")
    rend.add_argument("model", help="model spec, e.g. default")
    rend.add_argument("--units", required=True,
                      help="e.g. 'layer3:0-15', 'layer3:3,7', 'layer3:*', 'logit:cat'; ';' separates specs")
    rend.add_argument("--preset", default="default", choices=list(PRESETS),
                      help="named settings to start from (quick-start: 2 samples pushed apart on layer2)")
    base = RenderConfig()
    rend.add_argument("--samples", type=int, default=None, help=f"images per unit (default {base.samples})")
    rend.add_argument("--diversity", type=float, default=None,
                      help=f"weight of the diversity term between a unit's samples (default {base.diversity:g}; "
                           "lucid uses 1e2 on InceptionV1, whose activations are far larger: too high a weight "
                           "kills renders of smaller models)")
    rend.add_argument("--diversity-weight", type=float, default=None, dest="diversity_weight",
                      help=argparse.SUPPRESS)  # deprecated spelling of --diversity
    rend.add_argument("--diversity-layer", default=None,
                      help="layer whose Gram matrices are pushed apart (default: the units' layer; a lower layer "
                           "keeps samples alive when the units' layer is small)")
    rend.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default {base.steps})")
    rend.add_argument("--size", type=int, default=None, help="image size in pixels (default: the model's input size)")
    rend.add_argument("--model-input-size", type=int, default=None, help="resize images to this before the model")
    rend.add_argument("--param", choices=list(PARAMETERISATIONS), default=None,
                      help=f"image parameterisation (default {base.param})")
    rend.add_argument("--lr", type=float, default=None, help=f"Adam's (peak) step size (default {base.lr:g})")
    rend.add_argument("--schedule", choices=list(SCHEDULES), default=None,
                      help=f"step size over the run (default {base.schedule}: warm-up to --lr over the first "
                           "eighth, then decay to 0; constant: --lr throughout, which wants lucent's 0.05)")
    rend.add_argument("--redirect-steps", type=int, default=None,
                      help=f"first steps in which ReLU/ReLU6 pass gradient to clipped units (default "
                           f"{base.redirect_steps}; 0: off)")
    rend.add_argument("--seed", type=int, default=None, help=f"(default {base.seed})")
    rend.add_argument("--batch", type=_render_batch, default=None,
                      help=f"units optimised together in one batch: a number, 'all', or 'auto' (as many as fit "
                           f"1/{AUTO_BATCH_MEMORY_SHARE} of the device's memory, at most {AUTO_BATCH_MAX}; "
                           f"default {base.batch})")
    rend.add_argument("--precision", choices=list(PRECISIONS), default=None,
                      help=f"number format of the passes (default {base.precision}: bfloat16 autocast where the "
                           "device multiplies bfloat16 in hardware, about 2x faster at equal quality; else float32)")
    rend.add_argument("--from", dest="seed_image", default=None, metavar="IMAGE",
                      help="feature accentuation: start from this image (e.g. a top example) instead of noise "
                           "and push it towards each unit, staying close to it")
    rend.add_argument("--stay-close", type=float, default=None,
                      help=f"with --from: price of drifting from the image, in units of the unit's value on it "
                           f"(default {base.stay_close:g}; 0: free)")
    rend.add_argument("--device", default=None, help="cpu, cuda, mps (default: cpu)")
    rend.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    rend.add_argument("--out", default="gallery", help="output folder")
    rend.add_argument("--quiet", action="store_true", help="no progress bars")
    rend.add_argument("--index", default=None, help="example index (from `vizneuron mine`): show each unit's "
                                                    "top dataset examples beside its renders; 'sample': the "
                                                    "300 CIFAR-10 images bundled with vizneuron, mined into "
                                                    "./indexes on first use")
    rend.add_argument("--cache", default=None, help="folder of cached renders: reuse a render made before with "
                                                    "the same model, units and settings (the app's cache too)")
    _add_engine_arguments(rend)
    rend.set_defaults(func="render")

    mine_cmd = sub.add_parser("mine", help="find the top and bottom dataset examples of whole layers")
    mine_cmd.add_argument("model", help="model spec, e.g. default")
    mine_cmd.add_argument("--layers", default="", help="layers whose every channel is mined, e.g. layer2,layer3")
    mine_cmd.add_argument("--units", default="", help="further unit specs, e.g. 'logit:*; layer3:5@2,2'")
    mine_cmd.add_argument("--data", required=True, help="image folder (class subfolders = labels), a text file of "
                                                        "paths, or WebDataset tar shards ('train-{0000..0099}.tar')")
    mine_cmd.add_argument("--k", type=int, default=32, help="top and bottom images kept per unit")
    mine_cmd.add_argument("--index", default=None, help="SQLite index to write (default: one named after the model, "
                                                    "data and settings under ./indexes); rerun to resume")
    mine_cmd.add_argument("--batch", type=batch_arg, default="auto", help=BATCH_HELP)
    mine_cmd.add_argument("--workers", type=workers_arg, default="auto", help=WORKERS_HELP)
    mine_cmd.add_argument("--shard", default="0/1", help="mine the I-th of N slices (I/N); combine with `merge`")
    mine_cmd.add_argument("--reduce", choices=["max", "mean"], default="max",
                      help="an image's value for a spatial unit: its max over positions, or the mean")
    mine_cmd.add_argument("--checkpoint-every", type=int, default=8, help="batches between checkpoints")
    mine_cmd.add_argument("--autocast", action="store_true", help="float16 autocast on CUDA")
    mine_cmd.add_argument("--device", default=None, help=DEVICE_HELP)
    mine_cmd.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    mine_cmd.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    _add_engine_arguments(mine_cmd)
    mine_cmd.set_defaults(func="mine")

    merge_cmd = sub.add_parser("merge", help="combine shard indexes into the result of one unsharded run")
    merge_cmd.add_argument("output", help="index to write")
    merge_cmd.add_argument("shards", nargs="+", help="the finished shard indexes 0/N .. N-1/N")
    merge_cmd.set_defaults(func="merge")

    top = sub.add_parser("top", help="print a unit's top (or bottom) dataset examples and write a small gallery")
    top.add_argument("model", help="the model spec the index was mined with")
    top.add_argument("unit", help="e.g. layer3:5")
    top.add_argument("--index", required=True, help="the SQLite index `vizneuron mine` wrote")
    top.add_argument("--k", type=int, default=None, help="how many (default: all kept)")
    top.add_argument("--bottom", action="store_true", help="the lowest-scoring images instead")
    top.add_argument("--json", action="store_true", help="print JSON: path, activation, position; best first")
    top.add_argument("--out", default="gallery/examples", help="folder for the HTML gallery")
    top.set_defaults(func="top")
    sae = sub.add_parser("sae", help="train and evaluate sparse autoencoders on a layer")
    sae_sub = sae.add_subparsers(dest="sae_command", required=True)
    sae_sub.add_parser = functools.partial(sae_sub.add_parser, parents=[common])
    train = sae_sub.add_parser("train", help="train an SAE on a layer's activations over a dataset")
    train.add_argument("model", help=MODEL_HELP)
    train.add_argument("--layer", required=True, help="a layer, or several separated by commas (the images are "
                                                       "read once, one SAE per layer)")
    train.add_argument("--data", required=True, help="image folder, text file of paths, tar shards, or a folder "
                                                     "written by `sae extract` (its rows are streamed)")
    train.add_argument("--out", required=True, help="SAE file (.safetensors, config beside it as .json; with several "
                                                     "layers OUT's name gets .LAYER before .safetensors); an "
                                                     "interrupted run resumes from OUT.ckpt")
    sae_base = SAETrainConfig()
    train.add_argument("--expansion", type=int, default=None,
                       help=f"latents per layer channel (default {sae_base.expansion})")
    train.add_argument("--d-sae", type=int, default=None, dest="d_sae", help="latents (default: expansion x channels)")
    train.add_argument("--k", type=int, default=None, help=f"active latents per sample, topk (default {sae_base.k})")
    train.add_argument("--kind", choices=list(KINDS), default=None, help=f"(default {sae_base.kind})")
    train.add_argument("--prefixes", type=int, default=None,
                       help=f"nested prefixes, matryoshka (default {sae_base.prefixes}: d_sae/16 ... d_sae)")
    train.add_argument("--l1", type=float, default=None,
                       help="relu's sparsity weight (default: steered during training to hold the mean L0 at --k)")
    train.add_argument("--lr", type=float, default=None, help=f"(default {sae_base.lr:g})")
    train.add_argument("--epochs", type=int, default=None,
                       help=f"passes over the data (default: until the FVU levels off, at least {sae_base.min_steps} "
                            "steps)")
    train.add_argument("--batch", type=int, default=None, dest="batch_size",
                       help="rows per optimiser step (default: about 1/100 of the data, 256-4096)")
    train.add_argument("--seed", type=int, default=None, help=f"(default {sae_base.seed})")
    train.add_argument("--pool", action="store_true", help="one sample per image (mean over positions)")
    train.add_argument("--max-images", type=int, default=None,
                       help="train on at most this many images, a seeded sample of all (default: every image)")
    train.add_argument("--eval-data", default=None, help="labelled images to evaluate on after training")
    train.add_argument("--eval-max-images", type=int, default=None,
                       help="evaluate on at most this many images of --eval-data (default: every image)")
    train.add_argument("--device", default=None, help=DEVICE_HELP)
    train.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    train.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    train.set_defaults(func="sae_train")
    extract = sae_sub.add_parser("extract", help="write a layer's activation rows to files that `sae train` streams")
    extract.add_argument("model", help=MODEL_HELP)
    extract.add_argument("--layer", required=True, help="the layer whose rows are written")
    extract.add_argument("--data", required=True, help="image folder, text file of paths, or tar shards")
    extract.add_argument("--pool", action="store_true", help="one row per image (the mean over positions)")
    extract.add_argument("--batch", type=batch_arg, default="auto", help=BATCH_HELP)
    extract.add_argument("--batches-per-file", type=batches_per_file_arg, default="auto",
                         help="image batches per file: what an interrupted run loses at most, and what is held in "
                              "memory while a file is written (default: auto, files of about 256 MB)")
    extract.add_argument("--max-images", type=int, default=None,
                         help="at most this many images, a seeded sample of all (default: every image)")
    extract.add_argument("--workers", type=workers_arg, default="auto", help=WORKERS_HELP)
    extract.add_argument("--device", default=None, help=DEVICE_HELP)
    extract.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    extract.add_argument("--out", required=True, help="folder for rows-*.safetensors and activations.json")
    _add_engine_arguments(extract)
    extract.set_defaults(func="sae_extract")
    evaluate = sae_sub.add_parser("eval", help="L0, FVU, dead latents and downstream accuracy; stored in the file")
    evaluate.add_argument("model", help=MODEL_HELP)
    evaluate.add_argument("sae", help=SAE_REF_HELP)
    evaluate.add_argument("--data", required=True, help="labelled images (class folders named like the model's labels)")
    evaluate.add_argument("--layer", default=None,
                          help="the layer the SAE reads, where its file records none or another library's hook name")
    evaluate.add_argument("--max-images", type=int, default=None,
                          help="at most this many images, a seeded sample of all (default: every image)")
    evaluate.add_argument("--device", default=None, help=DEVICE_HELP)
    evaluate.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    evaluate.set_defaults(func="sae_eval")
    export = sae_sub.add_parser("export", help="write an SAE in another library's format (SAELens: a folder it loads)")
    export.add_argument("sae", help=SAE_REF_HELP)
    export.add_argument("out", help="folder to write")
    export.add_argument("--format", choices=["saelens", "vizneuron"], default="saelens", help="the format to write")
    export.set_defaults(func="sae_export")
    pr = sub.add_parser("probe", help="does a unit fire on unrelated concepts? verdict, score and evidence")
    pr.add_argument("model", help=MODEL_HELP)
    pr.add_argument("unit", help="e.g. layer3:5, layer3/l3:12")
    _concept_arguments(pr)
    pr.add_argument("--index", default=None, help="example index of the unit: its distribution is the baseline")
    pr.add_argument("--sae", default=None, help="SAE of the unit's layer: split the unit into features")
    pr.add_argument("--renders", type=int, default=4, help="diverse renders to classify (0: none)")
    pr.add_argument("--upstream", default=None, help="an earlier layer: each driving concept's input path from it")
    pr.add_argument("--steps", type=int, default=128, help="render steps per render (default: 128)")
    pr.add_argument("--device", default=None, help=DEVICE_HELP)
    pr.add_argument("--out", default="probe", help="folder for index.html and report.json")
    pr.set_defaults(func="probe")
    at = sub.add_parser("atlas", help="probe every unit of a layer (or every feature of its SAE) with the same "
                                      "concepts: verdicts, scores, driving concepts")
    at.add_argument("model", help=MODEL_HELP)
    at.add_argument("--layer", required=True, help="the layer whose every unit is probed")
    at.add_argument("--sae", default=None, help="SAE file of the layer: its features instead of the channels")
    _concept_arguments(at)
    at.add_argument("--driven-by", default=None, help="list the units driven by all these concepts (comma-separated)")
    at.add_argument("--verdict", choices=list(VERDICTS), default=None, help="list only units with this verdict")
    at.add_argument("--show", type=int, default=20, help="units to list (most polysemantic first)")
    at.add_argument("--device", default=None, help=DEVICE_HELP)
    at.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    at.add_argument("--out", default="atlas", help="folder for index.html and atlas.json (and the cache)")
    at.set_defaults(func="atlas")
    si = sub.add_parser("site", help="a browsable static site of chosen layers: each layer's units with verdicts, "
                                     "each unit's renders, examples, evidence and circuits (opens from disk)")
    si.add_argument("model", help=MODEL_HELP)
    si.add_argument("--layers", required=True, help="comma-separated layers, e.g. layer2,layer3")
    si.add_argument("--data", default=None, help="images to mine and to measure circuits on; labelled (class "
                                                 "folders) for the default concepts (default: the bundled 300 "
                                                 "CIFAR-10 images)")
    si.add_argument("--concepts", default=None, help="as for probe (default: each class of --data)")
    si.add_argument("--concept", action="append", default=[], help="NAME=FOLDER_OR_LIST (repeatable)")
    si.add_argument("--per-concept", type=int, default=None, help="at most this many images per concept")
    si.add_argument("--sae", action="append", default=[], help="LAYER=FILE: that SAE's features as a layer of "
                                                               "their own (repeatable)")
    si.add_argument("--k", type=int, default=16, help="examples kept per unit")
    si.add_argument("--steps", type=int, default=None, help="render steps (default: the render default)")
    si.add_argument("--device", default=None, help=DEVICE_HELP)
    si.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    si.add_argument("--out", default="site", help="folder for the site (its cache in OUT/cache)")
    _add_engine_arguments(si)
    si.set_defaults(func="site")
    ci = sub.add_parser("circuit", help="which units of an earlier layer feed a unit, or which later units (or "
                                        "classes) it feeds, with signed weights and per-concept paths")
    ci.add_argument("model", help=MODEL_HELP)
    ci.add_argument("unit", help="e.g. layer3:5, layer3/l3:12")
    side = ci.add_mutually_exclusive_group(required=True)
    side.add_argument("--upstream", default=None, help="an earlier layer, or LAYER/SAE for an SAE's features")
    side.add_argument("--downstream", default=None, help="a later layer, LAYER/SAE, or logits")
    ci.add_argument("--data", default=None, help="images: the reference mean and, without --index, the unit's top "
                                                 "examples (default: the bundled 300 CIFAR-10 images)")
    ci.add_argument("--index", default=None, help="example index holding the unit: its top examples are the images")
    ci.add_argument("--sae", action="append", default=[], help="NAME=PATH of an SAE that specs name as LAYER/NAME "
                                                               "(repeatable)")
    ci.add_argument("--concept-data", default=None, help="labelled dataset for --concepts (per-concept paths)")
    ci.add_argument("--concepts", default=None, help="as for probe: per-concept paths over these concepts")
    ci.add_argument("--concept", action="append", default=[], help="NAME=FOLDER_OR_LIST (repeatable)")
    ci.add_argument("--per-concept", type=int, default=None, help="at most this many images per concept")
    ci.add_argument("--k", type=int, default=8, help="edges to keep")
    ci.add_argument("--examples", type=int, default=32, help="images to average the contributions over")
    ci.add_argument("--steps", type=int, default=128, help="render steps per unit (0: no renders)")
    ci.add_argument("--device", default=None, help=DEVICE_HELP)
    ci.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    ci.add_argument("--out", default="circuit", help="folder for index.html and circuit.json")
    ci.set_defaults(func="circuit")
    ct = sub.add_parser("cue-task", help="write the SHIFT cue task's image folders (cat vs dog with a stripe cue) "
                                         "for `vizneuron shift` and the bundled cue-biased model")
    ct.add_argument("out", help="folder to write the splits into")
    ct.add_argument("--cifar", default=None, help="CIFAR-10 JPEG folders (train/ and test/, a folder per class) for "
                                                  "the full task (default: the bundled sample's 30 cats and 30 dogs, "
                                                  "a miniature that needs no data)")
    ct.add_argument("--limit", type=int, default=None, help="with --cifar: at most this many training and test "
                                                            "images per class (default: all)")
    ct.add_argument("--seed", type=int, default=0, help="with --cifar: which images carry the cue (default: 0)")
    ct.set_defaults(func="cue_task")
    sh = sub.add_parser("shift", help="find the SAE features (or channels) a classifier uses for a cue it should "
                                      "ignore, ablate them and measure the fix on grouped test images")
    sh.add_argument("model", help=MODEL_HELP)
    sh.add_argument("--layer", required=True, help="the layer whose units (or SAE features) are ranked")
    sh.add_argument("--sae", default=None, help="SAE file of the layer (without: rank and ablate its channels)")
    sh.add_argument("--data", required=True, help="the classifier's training images, in folders named after classes")
    sh.add_argument("--concept", action="append", default=[], required=True,
                    help="NAME=FOLDER (repeatable): concept sets to judge units by, e.g. cue=... cat=... dog=...")
    sh.add_argument("--ignore", default=None, help="comma-separated concepts the classifier should ignore "
                                                   "(default: the concepts not named after a class)")
    sh.add_argument("--test", default=None, help="test images in class folders; a file name's WORD- prefix is its "
                                                 "group within the class (cue-001.png, plain-001.png)")
    sh.add_argument("--cuefree", default=None, help="cue-free test images in class folders")
    sh.add_argument("--top", type=int, default=None, help="units to judge, best first (default: every unit with a "
                                                           "positive attribution)")
    sh.add_argument("--accept", default=None, help="comma-separated units to ablate instead of the proposed ones")
    sh.add_argument("--drop", default=None, help="comma-separated proposed units not to ablate")
    sh.add_argument("--add", default=None, help="comma-separated units to ablate as well")
    sh.add_argument("--mode", choices=MODES, default="mean", help="hold ablated units at their mean over --data "
                                                                  "(default) or at zero")
    sh.add_argument("--no-retrain", action="store_true", help="skip refitting the head with the edit in place")
    sh.add_argument("--max-images", type=int, default=None, help="rank on at most this many training images")
    sh.add_argument("--steps", type=int, default=64, help="render steps per ranked unit (0: no renders)")
    sh.add_argument("--device", default=None, help=DEVICE_HELP)
    sh.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    sh.add_argument("--out", default="shift", help="folder for index.html, shift.json and edit.json")
    sh.set_defaults(func="shift")
    for each in parsers(parser):
        each.formatter_class = DefaultsFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. User errors print one line and exit 2, Ctrl-C exits 130; tracebacks only
    with --debug (or VIZNEURON_DEBUG=1), or for bugs."""
    args = build_parser().parse_args(argv)
    debug = debug_requested(getattr(args, "debug", False))
    if getattr(args, "diversity_weight", None) is not None:
        warn_user("--diversity-weight is deprecated: say --diversity for the weight (and --samples for the number "
              "of images per unit)")
        args.diversity = args.diversity if args.diversity is not None else args.diversity_weight
    try:
        from . import commands  # late: the library (and torch) loads only once a command runs
        getattr(commands, f"cmd_{args.func}")(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("vizneuron: interrupted (rerun the same command to resume a mine or an SAE training)", file=sys.stderr)
        return 130
    except expected() as err:
        if debug:
            raise
        print(f"vizneuron: error: {user_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
