"""Every input a hostile or careless user can give, through the real CLI entry point: each must end
with exit code 2 (130 for Ctrl-C), one line naming the problem, no traceback, and every input file
byte-identical afterwards. Grow the CASES table whenever a new way to break the tool turns up."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import vizneuron as vz
from vizneuron.cli import main
from vizneuron.mine import ExampleIndex, mine
from vizneuron.models import load_model
from vizneuron.sae.model import SAE, SAEConfig
from vizneuron.samples import SAMPLE_DIR
from vizneuron.sources import write_shards

from tflite_writer import small_classifier

CATS = SAMPLE_DIR / "cat"


def _sae(layer: str) -> SAE:
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=128, d_sae=256, k=8, model="default", layer=layer))
    for p in sae.parameters():
        p.data.normal_()
    sae.normalise_decoder()
    return sae


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    """A folder of bad (and a few good) inputs, made once."""
    kit = tmp_path_factory.mktemp("kit")
    model = load_model("default")
    mine(model, "layer3:0-3", CATS, k=4, index=kit / "index.sqlite", progress=False)
    data = (kit / "index.sqlite").read_bytes()
    (kit / "truncated.sqlite").write_bytes(data[: len(data) // 3])
    (kit / "garbage.sqlite").write_bytes(np.random.default_rng(0).bytes(20000))
    foreign = sqlite3.connect(kit / "foreign.sqlite")
    foreign.execute("CREATE TABLE people(name TEXT)")
    foreign.execute("INSERT INTO people VALUES ('ada')")
    foreign.commit()
    foreign.close()
    (kit / "a_folder.sqlite").mkdir()
    tflite = small_classifier("float")
    (kit / "ok.tflite").write_bytes(tflite)
    (kit / "empty.tflite").write_bytes(b"")
    (kit / "truncated.tflite").write_bytes(tflite[: len(tflite) // 2])
    flipped = bytearray(tflite)
    for i in np.random.default_rng(1).choice(np.arange(8, len(flipped)), 40, replace=False):
        flipped[i] ^= 0xFF
    (kit / "flipped.tflite").write_bytes(bytes(flipped))
    np.save(kit / "nan.npy", np.full(128, np.nan, np.float32))
    np.save(kit / "inf.npy", np.full(128, np.inf, np.float32))
    np.save(kit / "empty.npy", np.zeros(0, np.float32))
    np.save(kit / "zero.npy", np.zeros(128, np.float32))
    np.save(kit / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (kit / "text.npy").write_text("not an array")
    _sae("layer2").save(kit / "layer2_sae.safetensors")
    _sae("layer3").save(kit / "good_sae.safetensors")
    tensors = load_file(kit / "good_sae.safetensors")
    config = json.loads((kit / "good_sae.json").read_text())
    with open(kit / "good_sae.safetensors", "rb") as f:  # the checksum the file was saved with
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    save_file(tensors, kit / "tampered_sae.safetensors",
              metadata={"vizneuron_sae": json.dumps(config | {"scale": 40.0}),
                        "vizneuron_sha256": header["vizneuron_sha256"]})
    save_file(tensors, kit / "badjson_sae.safetensors", metadata={"vizneuron_sae": "{not json"})
    _sae("layer3").save(kit / "sidecar_sae.safetensors")
    (kit / "sidecar_sae.json").write_text(json.dumps(config | {"d_sae": 512}))
    (kit / "one").mkdir()
    (kit / "one" / "only.jpg").write_bytes((CATS / "0000.jpg").read_bytes())
    (kit / "afile").write_text("a file, not a folder")
    (kit / "tampered_edit.json").write_text(json.dumps({  # names good_sae.safetensors with another digest
        "vizneuron_edit": 1, "model": "default", "mode": "zero", "ablate": [{"unit": "layer3/s:0", "value": 0}],
        "saes": {"s": {"file": "good_sae.safetensors", "sha256": "0" * 64}}}))
    edit_base = {"vizneuron_edit": 1, "model": "default", "mode": "zero", "ablate": [{"unit": "layer3:0", "value": 0}]}
    bad_edits = {"python_edit.json": {"model": "python:evil_module:factory"},
                 "self_edit.json": {"model": f"edit:{kit / 'self_edit.json'}"},
                 "huge_edit.json": {"ablate": [{"unit": f"layer3:{i % 128}", "value": 0} for i in range(1_000_000)]},
                 "twice_edit.json": {"ablate": [{"unit": "layer3:0", "value": 0}, {"unit": "layer3:0", "value": 1}]},
                 "list_saes_edit.json": {"saes": [{"file": "good_sae.safetensors"}]},
                 "no_modules_edit.json": {"weights": {"file": "w.safetensors", "sha256": "0" * 64}}}
    for name, change in bad_edits.items():
        (kit / name).write_text(json.dumps({**edit_base, **change}))
    (kit / "nan_edit.json").write_text(json.dumps(edit_base).replace('"value": 0}', '"value": NaN}'))
    (kit / "zero_bytes.npy").write_bytes(b"")
    (kit / "no_images").mkdir()
    (kit / "oneclass" / "cat").mkdir(parents=True)
    for name in ("0000.jpg", "0001.jpg", "0002.jpg"):
        (kit / "oneclass" / "cat" / name).write_bytes((CATS / name).read_bytes())
    (shard,) = write_shards(SAMPLE_DIR / "dog", kit / "wds", per_shard=1000, prefix="dogs")
    whole = shard.read_bytes()
    (kit / "wds" / "cut-000000.tar").write_bytes(whole[: len(whole) // 2 + 100])  # mid-member
    with tarfile.open(shard) as tar:  # at a member boundary: the first ten images' members, whole
        boundary = tar.getmembers()[20].offset
    (kit / "wds" / "boundary-000000.tar").write_bytes(whole[:boundary])
    (kit / "label.txt").write_text("cat")
    with tarfile.open(kit / "wds" / "labels-000000.tar", "w") as tar:  # labels, no images
        tar.add(kit / "label.txt", arcname="0000.txt")
    (kit / "evil_module.py").write_text("raise SystemExit('ran code from an edit file')\n")
    return kit


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


R = ["render", "default", "--units", "layer3:0", "--steps", "2", "--quiet"]
#: (id, argv with {kit} and {out}, words the one-line message must hold)
CASES = [
    ("steps 0", R + ["--steps", "0"], ["steps"]),
    ("steps negative", R + ["--steps", "-5"], ["steps"]),
    ("size 0", R + ["--size", "0"], ["size"]),
    ("size 1", R + ["--size", "1"], ["size"]),
    ("size negative", R + ["--size", "-3"], ["size"]),
    ("size huge", R + ["--size", "100000"], ["size"]),
    ("diversity negative", R + ["--diversity", "-2"], ["diversity"]),
    ("batch 0", R + ["--batch", "0"], ["batch"]),
    ("seed huge", R + ["--seed", str(2**80)], ["seed"]),
    ("samples 0", R + ["--samples", "0"], ["samples"]),
    ("lr 0", R + ["--lr", "0"], ["lr"]),
    ("units empty", ["render", "default", "--units", ";;"], ["no units"]),
    ("units huge range", ["render", "default", "--units", "layer3:0-99999999"], ["out of range"]),
    ("units enormous range", ["render", "default", "--units", "layer3:0-999999999999"], ["out of range"]),
    ("unknown layer", ["render", "default", "--units", "layer9:0"], ["layer9", "closest"]),
    ("unknown class", ["render", "default", "--units", "logit:kitten"], ["kitten"]),
    ("direction nan", ["render", "default", "--units", "layer3:dir={kit}/nan.npy"], ["nan"]),
    ("direction inf", ["render", "default", "--units", "layer3:dir={kit}/inf.npy"], ["infinite"]),
    ("direction empty", ["render", "default", "--units", "layer3:dir={kit}/empty.npy"], ["0 values"]),
    ("direction zero", ["render", "default", "--units", "layer3:dir={kit}/zero.npy"], ["zeros"]),
    ("direction pickled", ["render", "default", "--units", "layer3:dir={kit}/pickled.npy"], ["npy"]),
    ("direction not npy", ["render", "default", "--units", "layer3:dir={kit}/text.npy"], ["npy"]),
    ("out is a file", R + ["--out", "{kit}/afile"], ["afile", "not a folder"]),
    ("out under a file", R + ["--out", "{kit}/afile/sub"], ["afile/sub", "file"]),
    ("out not writable", R + ["--out", "/sys/vizneuron-gallery"], ["/sys/vizneuron-gallery"]),
    ("index missing", R + ["--index", "{kit}/nope.sqlite"], ["not found"]),
    ("index garbage", R + ["--index", "{kit}/garbage.sqlite"], ["not a vizneuron index"]),
    ("index foreign", R + ["--index", "{kit}/foreign.sqlite"], ["another program", "people"]),
    ("index folder", R + ["--index", "{kit}/a_folder.sqlite"], ["folder"]),
    ("top garbage", ["top", "default", "layer3:0", "--index", "{kit}/garbage.sqlite", "--out", "{out}"],
     ["not a vizneuron index"]),
    ("top foreign", ["top", "default", "layer3:0", "--index", "{kit}/foreign.sqlite", "--out", "{out}"],
     ["another program"]),
    ("top truncated", ["top", "default", "layer3:0", "--index", "{kit}/truncated.sqlite", "--out", "{out}"],
     ["index"]),
    ("top unit not mined", ["top", "default", "layer3:99", "--index", "{kit}/index.sqlite", "--out", "{out}"],
     ["layer3:99"]),
    ("mine into foreign", ["mine", "default", "--layers", "layer3", "--data", str(CATS), "--index",
                           "{kit}/foreign.sqlite", "--quiet"], ["another program"]),
    ("mine into garbage", ["mine", "default", "--layers", "layer3", "--data", str(CATS), "--index",
                           "{kit}/garbage.sqlite", "--quiet"], ["not a vizneuron index"]),
    ("mine other run's index", ["mine", "default", "--layers", "layer2", "--data", str(CATS), "--index",
                                "{kit}/index.sqlite", "--quiet"], ["different run"]),
    ("mine shard 0/0", ["mine", "default", "--layers", "layer3", "--data", str(CATS), "--shard", "0/0"],
     ["shard", "at least 1"]),
    ("mine shard text", ["mine", "default", "--layers", "layer3", "--data", str(CATS), "--shard", "x"],
     ["shard", "I/N"]),
    ("mine k 0", ["mine", "default", "--layers", "layer3", "--data", str(CATS), "--k", "0"], ["k"]),
    ("mine missing data", ["mine", "default", "--layers", "layer3", "--data", "{kit}/nowhere"], ["not found"]),
    ("mine binary as list", ["mine", "default", "--layers", "layer3", "--data", "{kit}/ok.tflite"],
     ["neither a folder nor a text file"]),
    ("merge into an input", ["merge", "{kit}/index.sqlite", "{kit}/index.sqlite"], ["one of the shards"]),
    ("merge a shard twice", ["merge", "{out}/m.sqlite", "{kit}/index.sqlite", "{kit}/index.sqlite"],
     ["more than once"]),
    ("merge garbage", ["merge", "{out}/m.sqlite", "{kit}/garbage.sqlite"], ["not a vizneuron index"]),
    ("tflite empty", ["layers", "tflite:{kit}/empty.tflite"], ["empty.tflite", "empty"]),
    ("tflite truncated", ["layers", "tflite:{kit}/truncated.tflite"], ["truncated.tflite", "damaged"]),
    ("tflite bit-flipped", ["layers", "tflite:{kit}/flipped.tflite"], ["flipped.tflite", "damaged"]),
    ("tflite missing", ["layers", "tflite:{kit}/none.tflite"], ["not found"]),
    ("tflite upper-case labels path", ["layers", "tflite:{kit}/ok.tflite?labels={kit}/NOPE.TXT"], ["nope.txt"]),
    ("unknown source", ["layers", "torchvison:resnet18"], ["torchvison", "torchvision"]),
    ("python module missing", ["layers", "python:no_such_module_xyz:build"], ["cannot import"]),
    ("python factory missing", ["layers", "python:json:no_such_factory"], ["has no"]),
    ("python factory not callable", ["layers", "python:os:sep"], ["not a function"]),
    ("python factory wants arguments", ["layers", "python:json:dumps"], ["without arguments"]),
    ("python factory returns junk", ["layers", "python:os:getcwd"], ["not an nn.module"]),
    ("sae tampered config", ["render", "default", "--units", "layer3/{kit}/tampered_sae.safetensors:0"],
     ["modified after it was saved"]),
    ("sae metadata not json", ["render", "default", "--units", "layer3/{kit}/badjson_sae.safetensors:0"],
     ["not valid json"]),
    ("sae sidecar edited", ["render", "default", "--units", "layer3/{kit}/sidecar_sae.safetensors:0"],
     ["does not match"]),
    ("sae of another layer", ["render", "default", "--units", "layer3/{kit}/layer2_sae.safetensors:0"],
     ["trained on default layer2", "?transfer"]),
    ("sae feature out of range", ["render", "default", "--units", "layer3/{kit}/good_sae.safetensors:999"],
     ["out of range"]),
    ("sae not safetensors", ["render", "default", "--units", "layer3/{kit}/garbage.sqlite:0"],
     ["not a safetensors file"]),
    ("probe duplicate concepts", ["probe", "default", "layer3:0", "--concept", f"a={CATS}", "--concept",
                                  f"b={CATS}", "--renders", "0", "--out", "{out}"], ["same", "images"]),
    ("probe one concept", ["probe", "default", "layer3:0", "--concept", f"a={CATS}", "--renders", "0",
                           "--out", "{out}"], ["two concepts"]),
    ("sae train bad expansion", ["sae", "train", "default", "--layer", "layer3", "--data", str(CATS), "--out",
                                 "{out}/s.safetensors", "--expansion", "0"], ["expansion"]),
    ("sae train k over d_sae", ["sae", "train", "default", "--layer", "layer3", "--data", str(CATS), "--out",
                                "{out}/s.safetensors", "--d-sae", "8", "--k", "16"], ["k=16"]),
    ("sae train seed", ["sae", "train", "default", "--layer", "layer3", "--data", str(CATS), "--out",
                        "{out}/s.safetensors", "--seed", "-1"], ["seed"]),
    ("sae train unknown layer", ["sae", "train", "default", "--layer", "layer33", "--data", str(CATS), "--out",
                                 "{out}/s.safetensors"], ["layer33"]),
    ("sae train out not writable", ["sae", "train", "default", "--layer", "layer3", "--data", str(CATS),
                                    "--out", "/sys/vz/s.safetensors"], ["/sys/vz"]),
    ("edit file not json", ["layers", "edit:{kit}/garbage.sqlite"], ["not readable json"]),
    ("edit file missing", ["layers", "edit:{kit}/nope.json"], ["not found"]),
    ("edit file names a tampered sae", ["layers", "edit:{kit}/tampered_edit.json"], ["changed since"]),
    ("mine a shard cut mid-member", ["mine", "default", "--layers", "layer3", "--data",
                                     "{kit}/wds/cut-{000000..000000}.tar", "--index", "{out}/i.sqlite"], ["cut short"]),
    ("mine a shard cut at a member", ["mine", "default", "--layers", "layer3", "--data",
                                      "{kit}/wds/boundary-000000.tar", "--index", "{out}/i.sqlite"], ["cut short"]),
    ("mine shards without images", ["mine", "default", "--layers", "layer3", "--data",
                                    "{kit}/wds/labels-000000.tar", "--index", "{out}/i.sqlite"], ["no images"]),
    ("shift of one class", ["shift", "default", "--layer", "layer3", "--data", "{kit}/oneclass", "--concept",
                            f"cue={CATS}", "--concept", f"dog={SAMPLE_DIR / 'dog'}", "--steps", "0", "--out", "{out}"],
     ["one class", "cat"]),
    ("shift empty test folder", ["shift", "default", "--layer", "layer3", "--data", str(SAMPLE_DIR), "--concept",
                                 f"cue={CATS}", "--concept", f"dog={SAMPLE_DIR / 'dog'}", "--test", "{kit}/no_images",
                                 "--out", "{out}"], ["no image files"]),
    ("circuit steps negative", ["circuit", "default", "layer3:0", "--upstream", "layer2", "--steps", "-1",
                                "--out", "{out}"], ["steps"]),
    ("direction file empty", R + ["--units", "layer3:dir={kit}/zero_bytes.npy"], ["zero_bytes.npy", "numeric .npy"]),
    ("shift top 0", ["shift", "default", "--layer", "layer3", "--data", str(SAMPLE_DIR), "--concept", f"cue={CATS}",
                     "--concept", f"dog={SAMPLE_DIR / 'dog'}", "--top", "0", "--steps", "0", "--out", "{out}"],
     ["top", "at least 1"]),
    ("mine a hundred million shards", ["mine", "default", "--layers", "layer3", "--data",
                                       "{kit}/wds/good-{0..99999999}.tar"], ["more than 100,000 shards"]),
    ("sae extract nested braces", ["sae", "extract", "default", "--layer", "layer3", "--data",
                                   "{kit}/w-{0..{0..9}9}.tar", "--out", "{out}/rows"], ["nested"]),
    ("sae train six ranges", ["sae", "train", "default", "--layer", "layer3", "--data",
                              "{kit}/w-{0..9}{0..9}{0..9}{0..9}{0..9}{0..9}.tar", "--out", "{out}/s.safetensors"],
     ["more than 100,000 shards"]),
    ("sae extract batches per file 0", ["sae", "extract", "default", "--layer", "layer3", "--data", str(CATS),
                                        "--batches-per-file", "0", "--out", "{out}/rows"], ["batches-per-file"]),
    ("edit file runs code", ["layers", "edit:{kit}/python_edit.json"], ["runs code", "run_code"]),
    ("edit file names itself", ["layers", "edit:{kit}/self_edit.json"], ["another edit"]),
    ("edit file of a million units", ["layers", "edit:{kit}/huge_edit.json"], ["at most 65,536"]),
    ("edit file repeats a unit", ["layers", "edit:{kit}/twice_edit.json"], ["layer3:0", "more than once"]),
    ("edit file holds NaN", ["layers", "edit:{kit}/nan_edit.json"], ["finite number"]),
    ("edit file saes as a list", ["layers", "edit:{kit}/list_saes_edit.json"], ["saes"]),
    ("edit file weights without modules", ["layers", "edit:{kit}/no_modules_edit.json"], ["modules"]),
    ("shift no concept to ignore", ["shift", "default", "--layer", "layer3", "--data", str(SAMPLE_DIR), "--concept",
                                    f"cat={CATS}", "--concept", f"dog={SAMPLE_DIR / 'dog'}", "--out", "{out}"],
     ["ignore"]),
    ("shift unknown layer", ["shift", "default", "--layer", "layer33", "--data", str(SAMPLE_DIR), "--concept",
                             f"cue={CATS}", "--concept", f"dog={SAMPLE_DIR / 'dog'}", "--out", "{out}"], ["layer33"]),
    ("shift unknown bundled model", ["shift", "default:cue-biassed", "--layer", "layer3", "--data", str(SAMPLE_DIR),
                                     "--concept", f"cue={CATS}", "--out", "{out}"], ["cue-biased"]),
    ("shift out not writable", ["shift", "default", "--layer", "layer3", "--data", str(SAMPLE_DIR), "--concept",
                                f"cue={CATS}", "--concept", f"dog={SAMPLE_DIR / 'dog'}", "--out", "/sys/vz"],
     ["/sys/vz"]),
]


@pytest.mark.parametrize("argv, words", [pytest.param(a, w, id=i) for i, a, w in CASES])
def test_hostile_input_is_one_clear_line(kit, tmp_path, capsys, argv, words):
    before = digests(kit)
    argv = [a.replace("{kit}", str(kit)).replace("{out}", str(tmp_path)) for a in argv]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = [line for line in err.splitlines() if line.startswith("vizneuron: error:")]
    assert len(lines) == 1 and "Traceback" not in out + err, err
    assert all(w.lower() in lines[0].lower() for w in words), lines[0]
    assert digests(kit) == before  # inputs untouched (no tables added, no journal files left beside them)


def test_debug_shows_the_traceback(kit, monkeypatch):
    with pytest.raises(ValueError, match="steps"):
        main(R + ["--steps", "0", "--debug"])
    monkeypatch.setenv("VIZNEURON_DEBUG", "1")
    with pytest.raises(ValueError, match="steps"):
        main(R + ["--steps", "0"])


def test_bugs_keep_their_traceback_and_user_errors_are_one_line(monkeypatch, capsys):
    """Only errors meant for users (`VizneuronError`, files, disks, memory) become one line: a
    RuntimeError from inside torch, or a plain ValueError from a library, is a bug and propagates with
    its traceback, so it is never mistaken for bad input; a GPU running out of memory is the user's."""
    from vizneuron import commands
    from vizneuron.errors import VizneuronError, expected, user_message

    def torch_fails(args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")

    monkeypatch.setattr(commands, "cmd_render", torch_fails)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        main(R + ["--steps", "1"])
    monkeypatch.setattr(commands, "cmd_render", lambda args: int("not a number"))
    with pytest.raises(ValueError, match="invalid literal"):
        main(R + ["--steps", "1"])

    def user_fails(args):
        raise VizneuronError("layer 'layer9' not found; closest: layer3")

    monkeypatch.setattr(commands, "cmd_render", user_fails)
    assert main(R + ["--steps", "1"]) == 2
    assert capsys.readouterr().err.strip() == "vizneuron: error: layer 'layer9' not found; closest: layer3"
    assert not isinstance(RuntimeError("x"), expected()) and user_message(RuntimeError("x")) is None

    def gpu_full(args):  # what a CUDA allocation that does not fit raises (a RuntimeError)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(commands, "cmd_render", gpu_full)
    assert main(R + ["--steps", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("vizneuron: error: out of memory on the GPU: ask for fewer units, "
                                               "smaller images or a smaller batch")
    for error in (vz.UnitError, vz.EditError, vz.CircuitError, vz.RenderError, vz.LayerError, vz.IndexMismatch):
        assert issubclass(error, VizneuronError), error


def test_ctrl_c_says_interrupted_and_exits_130(tmp_path):
    """A real SIGINT to the real console script, mid-render."""
    proc = subprocess.Popen([sys.executable, "-m", "vizneuron.cli", "render", "default", "--units", "layer3:0-31",
                             "--steps", "100000", "--out", str(tmp_path / "g")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            # a test run earlier in this process may leave SIGINT ignored, and a child inherits that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "%|" not in seen and proc.poll() is None:  # wait for the progress bar: the render is under way
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)  # 5 s on a quiet machine; minutes when the CPU is shared
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err


def test_settings_that_used_to_fail_obscurely_now_work(tmp_path):
    """`--diversity 0` with several samples: no diversity term (it used to fail inside capture)."""
    assert main(R + ["--samples", "2", "--diversity", "0", "--out", str(tmp_path)]) == 0


def test_bad_sae_of_another_layer_can_be_used_on_purpose(kit, tmp_path, capsys):
    assert main(R[:3] + [f"layer3/{kit}/layer2_sae.safetensors?transfer:0"] + R[4:] + ["--out", str(tmp_path)]) == 0
    assert main(R[:3] + [f"layer3/{kit}/good_sae.safetensors:0"] + R[4:] + ["--out", str(tmp_path)]) == 0


def test_probe_warns_when_a_concept_is_too_small(kit, tmp_path, capsys):
    code = main(["probe", "default", "layer3:0", "--concept", f"cats={CATS}", "--concept", f"one={kit}/one",
                 "--renders", "0", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0 and "'one' has 1 readable image: too few to judge" in err, err


def test_written_files_follow_the_umask(tmp_path):
    """Galleries are meant to be served and SAEs, activation rows and edits to be shared: files get
    the permissions a plain open() gives, not the 0600 safetensors would create them with."""
    import vizneuron as vz
    from vizneuron.sae.data import extract_activations

    old = os.umask(0o022)
    try:
        assert main(R + ["--out", str(tmp_path / "g")]) == 0
        _sae("layer3").save(tmp_path / "s" / "sae.safetensors")
        extract_activations(load_model("default"), "layer3", CATS, tmp_path / "rows", batches_per_file=1,
                            progress=False)
        vz.edit("default", ["layer3:1"]).with_weights({"fc": {"weight": torch.zeros(10, 128),
                                                              "bias": torch.zeros(10)}}).save(tmp_path / "e" / "x.json")
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path): p.stat().st_mode & 0o777 for p in tmp_path.rglob("*") if p.is_file()}
    assert len(modes) > 8 and any(p.suffix == ".safetensors" for p in modes), modes
    assert set(modes.values()) == {0o644}, modes


def _mount_tmpfs(where: Path, options: str, request) -> bool:
    """Mount a size-limited tmpfs at `where` and say True. Without the right to (not root), rerun this
    test inside a new user and mount namespace (`unshare --map-root-user --mount`), where an
    unprivileged user may mount a tmpfs of their own, and say False: the rerun made the assertions."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode == 0:
        return True
    if os.environ.get("VIZNEURON_TEST_NAMESPACE"):
        pytest.fail(f"cannot mount a tmpfs even in a user namespace: {done.stderr.decode().strip()}")
    if shutil.which("unshare") is None:
        pytest.skip("cannot mount a tmpfs (not root) and `unshare` is missing to make a namespace for it")
    rerun = subprocess.run(["unshare", "--map-root-user", "--mount", sys.executable, "-m", "pytest", "-q", "-p",
                            "no:cacheprovider", "-p", "no:randomly", request.node.nodeid],
                           capture_output=True, text=True, cwd=request.config.rootpath,
                           env={**os.environ, "VIZNEURON_TEST_NAMESPACE": "1"})
    if "unshare failed" in rerun.stderr:
        pytest.skip(f"cannot mount a tmpfs: not root, and user namespaces are off ({rerun.stderr.strip()})")
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-2000:]
    return False


def test_full_disk_stops_with_a_message_and_resumes(tmp_path, capsys, request):
    """A 4 MB tmpfs: render and mine stop with one line; after space is freed the same mine resumes
    and ends with the examples of an uninterrupted run."""
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "size=4m", request):
        return
    try:
        filler = small / "filler"
        filler.write_bytes(b"\0" * (4 * 2**20 - 16 * 1024))
        assert main(R + ["--units", "layer3:0-7", "--out", str(small / "g")]) == 2
        err = capsys.readouterr().err
        assert "no space left" in err and "Traceback" not in err, err
        filler.write_bytes(b"\0" * (4 * 2**20 - 400 * 1024))
        argv = ["mine", "default", "--units", "layer3:0-7", "--data", str(SAMPLE_DIR), "--quiet",
                "--checkpoint-every", "1", "--index"]
        assert main(argv + [str(small / "cats.sqlite")]) == 2
        err = capsys.readouterr().err
        assert "full" in err and "Traceback" not in err, err
        filler.unlink()
        assert main(argv + [str(small / "cats.sqlite")]) == 0  # resumes
        assert main(argv + [str(tmp_path / "whole.sqlite")]) == 0
        resumed, whole = (ExampleIndex(p) for p in (small / "cats.sqlite", tmp_path / "whole.sqlite"))
        assert [(e.path, e.value) for e in resumed.examples("layer3:5")] == \
            [(e.path, e.value) for e in whole.examples("layer3:5")]
        resumed.db.close()
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_an_index_on_read_only_storage_is_read_without_writing(kit, tmp_path, capsys, request):
    shelf = tmp_path / "ro"
    if not _mount_tmpfs(shelf, "size=16m", request):
        return
    try:
        (shelf / "index.sqlite").write_bytes((kit / "index.sqlite").read_bytes())
        subprocess.run(["mount", "-o", "remount,ro", str(shelf)], check=True)
        assert main(["top", "default", "layer3:0", "--index", str(shelf / "index.sqlite"), "--out",
                     str(tmp_path / "top")]) == 0
        assert "layer3" not in capsys.readouterr().err
        assert sorted(p.name for p in shelf.iterdir()) == ["index.sqlite"]
    finally:
        subprocess.run(["umount", "-l", str(shelf)])


def test_files_that_do_not_fit_are_messages_and_a_damaged_cache_entry_is_redone(tmp_path, capsys):
    """Weights of another architecture (torch's RuntimeError inside load_state_dict), a damaged
    safetensors file and a damaged render cache entry: one line each, or a redo with a warning."""
    from safetensors.torch import save_file as save

    from vizneuron.optim.cache import RenderCache

    save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    assert main(["layers", f"default?weights={tmp_path / 'other.safetensors'}"]) == 2
    assert "do not fit" in capsys.readouterr().err
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes()[:20])
    assert main(["layers", f"default?weights={tmp_path / 'cut.safetensors'}"]) == 2
    assert "could not read" in capsys.readouterr().err
    cache, model = RenderCache(tmp_path / "renders"), load_model("default")
    first = cache.render(model, "layer3:0", steps=2)
    (entry,) = (tmp_path / "renders").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match="damaged"):
        again = cache.render(model, "layer3:0", steps=2)
    assert torch.equal(again.images, first.images) and cache.get(model, "layer3:0", steps=2) is not None


def test_sae_extract_and_train_on_a_full_disk_or_damaged_rows_say_so(tmp_path, capsys, request):
    """A full disk during `sae extract` or under `sae train`'s checkpoint, and a rows file cut short:
    one line each, no traceback, no temporary file left behind."""
    rows = tmp_path / "rows"
    argv = ["sae", "extract", "default", "--layer", "layer3", "--data", str(SAMPLE_DIR), "--batches-per-file", "1",
            "--quiet", "--out"]
    assert main(argv + [str(rows)]) == 0
    first = sorted(rows.glob("rows-*.safetensors"))[0]
    first.write_bytes(first.read_bytes()[:200])
    train = ["sae", "train", "default", "--layer", "layer3", "--data", str(rows), "--quiet", "--out"]
    assert main(train + [str(tmp_path / "s.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and first.name in err and "Traceback" not in err, err
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "size=1m", request):
        return
    try:
        (small / "filler").write_bytes(b"\0" * (2**20 - 64 * 1024))
        assert main(argv + [str(small / "rows")]) == 2
        err = capsys.readouterr().err
        assert "no space left" in err and "Traceback" not in err, err
        assert main(["sae", "train", "default", "--layer", "layer3", "--data", str(SAMPLE_DIR), "--quiet",
                     "--out", str(small / "s.safetensors")]) == 2
        err = capsys.readouterr().err
        assert "no space left" in err and "Traceback" not in err, err
        assert not [p.name for p in small.rglob(".*")], "temporary files left behind"
    finally:
        subprocess.run(["umount", "-l", str(small)])
