"""The Ray engine: a job spread over actors on a local Ray (started once per test session) ends with
what the local engine gives, also after a worker or the driver is killed mid-run. The local runs use
torch's default thread count (every core) and the actors one thread each, so indexes are compared to
float32 rounding (a CPU may split a sum by thread); renders and extracted files are compared bit for
bit against a local run at the actors' thread count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vizneuron import ExampleIndex, load_model, mine, render, train_layer_saes
from vizneuron.cli import main
from vizneuron.distributed import EngineError, RayEngine, as_engine, connect
from vizneuron.sae.data import ActivationFolder, extract_activations
from vizneuron.samples import SAMPLE_DIR
from vizneuron.sources import write_shards

from helpers import (
    CIFAR_INDEX_SETTINGS,
    assert_equivalent_index,
    batches_done,
    cifar_list,
    fresh_python,
    index_rows,
    shared_path,
    torch_threads,
    write_problem_images,
)

pytestmark = pytest.mark.usefixtures("local_ray")


def _mine(data, index: Path, engine="local", **settings):
    common = dict(k=8, batch_size=16, progress=False)
    return mine(load_model("default"), "layer2:0-15;layer3:*", data, index=index, engine=engine,
                **{**common, **settings})


@pytest.fixture(scope="module")
def listing(tmp_path_factory) -> tuple[Path, Path]:
    """800 CIFAR-10 test images (50 batches of 16) and their index from the local engine."""
    folder = tmp_path_factory.mktemp("ray-listing")
    images = cifar_list(folder, 800)
    _mine(images, folder / "local.sqlite")
    return images, folder / "local.sqlite"


@pytest.mark.slow
def test_ray_index_equals_local_on_the_cifar10_test_split(tmp_path, cifar_test_index):
    """All 10,000 test images, every channel of layer2 and layer3: two actors, blocks of 3 batches."""
    on_ray = mine(load_model("default"), "layer2,layer3", shared_path("data", "cifar10", "test"),
                  index=tmp_path / "ray.sqlite", engine=RayEngine(actors=2, block_batches=3), progress=False,
                  **CIFAR_INDEX_SETTINGS)
    assert on_ray.summary() == ExampleIndex(cifar_test_index).summary() and on_ray.summary()["mined"] == 10_000
    assert_equivalent_index(index_rows(cifar_test_index), index_rows(tmp_path / "ray.sqlite"))


@pytest.mark.slow
@pytest.mark.parametrize("actors, block", [(1, 7), (2, 1)])
def test_any_actor_count_and_block_size_gives_the_local_index(tmp_path, listing, actors, block):
    images, local = listing
    _mine(images, tmp_path / "ray.sqlite", RayEngine(actors=actors, block_batches=block))
    assert_equivalent_index(index_rows(local), index_rows(tmp_path / "ray.sqlite"))


def test_skipped_files_and_webdataset_shards_on_ray(tmp_path):
    """Corrupt, empty and odd files: the same notes as a local run, from a folder or from tar shards."""
    folder = tmp_path / "data"
    write_problem_images(folder)
    shards = write_shards(folder, tmp_path / "shards", per_shard=4)
    pattern = str(tmp_path / "shards" / f"shard-{{000000..{len(shards) - 1:06d}}}.tar")
    _mine(folder, tmp_path / "local.sqlite", batch_size=3)
    _mine(pattern, tmp_path / "shards.sqlite", RayEngine(actors=2, block_batches=1), batch_size=3)
    local, on_ray = index_rows(tmp_path / "local.sqlite"), index_rows(tmp_path / "shards.sqlite")
    assert len(local["notes"]) >= 6
    for rows in (local, on_ray):  # paths differ: a folder against tar members
        rows["notes"] = [(image, action, reason) for image, _, action, reason in rows["notes"]]
        rows["images"] = [(image, label, thumbnail) for image, _, label, thumbnail in rows["images"]]
    assert_equivalent_index(local, on_ray)


def _actor_processes() -> list[int]:
    """PIDs of this machine's vizneuron Ray actor processes (Ray names them in their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"_RayWorker" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes through /proc (Linux)")
def test_a_worker_killed_mid_run_is_replaced_and_the_index_is_identical(tmp_path, listing):
    images, local = listing
    killed: list[int] = []

    def kill_one_actor(done: int, total: int) -> None:
        if not killed and done < total:
            pids = _actor_processes()
            assert pids, "no Ray actor process found to kill"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            deadline = time.time() + 10
            while pids[0] in _actor_processes() and time.time() < deadline:
                time.sleep(0.05)
            assert pids[0] not in _actor_processes(), "the actor survived kill -9"

    _mine(images, tmp_path / "ray.sqlite", RayEngine(actors=2, block_batches=2), on_progress=kill_one_actor)
    assert killed
    assert_equivalent_index(index_rows(local), index_rows(tmp_path / "ray.sqlite"))


DRIVER = """
import sys
from vizneuron import load_model, mine, render, train_layer_saes
from vizneuron.distributed import RayEngine
mine(load_model("default"), "layer2:0-15;layer3:*", sys.argv[1], k=8, batch_size=16, index=sys.argv[2],
     progress=False, engine=RayEngine(address=sys.argv[3], actors=2, block_batches=2))
"""


@pytest.mark.slow
def test_a_killed_driver_resumes_from_its_committed_blocks(tmp_path, local_ray, listing):
    images, local = listing  # 50 batches of 16
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    index = tmp_path / "ray.sqlite"
    address = local_ray.get_runtime_context().gcs_address
    driver = subprocess.Popen([sys.executable, str(script), str(images), str(index), address])
    deadline = time.time() + 120
    while time.time() < deadline and batches_done(index) < 10 and driver.poll() is None:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert 10 <= batches_done(index) < 50  # cut short after some blocks were committed
    _mine(images, index, RayEngine(actors=2, block_batches=3))  # rerun (other blocks): resumes
    assert_equivalent_index(index_rows(local), index_rows(index))


def test_the_local_engine_resumes_what_ray_left_and_engines_are_checked(tmp_path, monkeypatch):
    images = cifar_list(tmp_path, 96)
    _mine(images, tmp_path / "local.sqlite")
    from vizneuron.mine import run

    original = run.save_checkpoint
    calls = []

    def stop_after_two(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(run, "save_checkpoint", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        _mine(images, tmp_path / "mixed.sqlite", RayEngine(actors=2, block_batches=1))
    monkeypatch.setattr(run, "save_checkpoint", original)
    assert batches_done(tmp_path / "mixed.sqlite") == 2
    _mine(images, tmp_path / "mixed.sqlite", "local")
    assert_equivalent_index(index_rows(tmp_path / "local.sqlite"), index_rows(tmp_path / "mixed.sqlite"))
    with pytest.raises(EngineError, match="unknown engine 'spark'"):
        as_engine("spark")
    with pytest.raises(EngineError, match="actors must be at least 1"):
        RayEngine(actors=0)


def test_actors_are_fitted_to_the_cluster(local_ray):
    """The session's Ray has 2 CPUs and no GPU: more actors than fit would wait forever."""
    with pytest.warns(UserWarning, match="fits 2 of the 5 actors"):
        assert RayEngine(actors=5)._actors(local_ray, blocks=10) == 2
    assert RayEngine()._actors(local_ray, blocks=10) == 2 and RayEngine()._actors(local_ray, blocks=1) == 1
    with pytest.raises(EngineError, match="no room for one actor of 1 CPUs and 1 GPUs"):
        RayEngine(gpus_per_actor=1)._actors(local_ray, blocks=10)


def test_missing_ray_and_an_unreachable_cluster_say_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(EngineError, match=r"pip install 'vizneuron\[ray\]'"):
        connect(None)
    code = ("from vizneuron.distributed import connect\n"
            "try:\n    connect('127.0.0.1:9')\nexcept Exception as err:\n    print(type(err).__name__, err)\n")
    started = time.time()
    out = fresh_python(code).stdout
    assert out.startswith("EngineError cannot reach a Ray cluster at 127.0.0.1:9") and "ray start --head" in out
    assert time.time() - started < 60
    for address, says in (("not-an-address", "must look like HOST:PORT"), ("127.0.0.1:9", "cannot reach")):
        bad = subprocess.run([sys.executable, "-m", "vizneuron.cli", "mine", "default", "--layers", "layer3",
                              "--data", str(SAMPLE_DIR), "--engine", "ray", "--address", address,
                              "--index", "unused.sqlite"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr
    assert not list(tmp_path.iterdir())  # nothing half-made
    assert main(["mine", "default", "--layers", "layer3", "--data", str(SAMPLE_DIR), "--actors", "2"]) == 2
    assert "need --engine ray" in capsys.readouterr().err


def test_a_render_on_ray_writes_the_gallery_of_the_local_render_byte_for_byte(tmp_path, local_ray):
    """Six units in three batches of two, spread over two actors; then the CLI joins the same cluster."""
    model = load_model("default")
    settings = dict(samples=2, steps=48, batch=2, diversity_layer="layer2")
    with torch_threads(1):  # each actor's thread count
        local = render(model, "layer3:0-5", **settings, progress=False)
    on_ray = render(model, "layer3:0-5", **settings, engine=RayEngine(actors=2), progress=False)
    assert torch.equal(local.images, on_ray.images) and torch.equal(local.history, on_ray.history)
    assert [u.name for u in on_ray.units] == [f"layer3:{c}" for c in range(6)]
    address = local_ray.get_runtime_context().gcs_address
    on_cluster = ["--engine", "ray", "--address", address, "--actors", "2"]
    for name, engine in (("local", ["--threads", "1"]), ("ray", on_cluster)):
        subprocess.run([sys.executable, "-m", "vizneuron.cli", "render", "default", "--units", "layer3:0-3",
                        "--samples", "2", "--steps", "32", "--batch", "2", "--diversity-layer", "layer2",
                        "--out", str(tmp_path / name), "--quiet", *engine],
                       check=True, capture_output=True, timeout=300)
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file())
    assert len(files) >= 5
    for path in files:
        assert (tmp_path / "local" / path).read_bytes() == (tmp_path / "ray" / path).read_bytes(), path


@pytest.mark.filterwarnings("ignore:SAE training stopped")
def test_activation_files_extracted_on_ray_equal_the_local_ones_and_train_an_sae(tmp_path):
    model = load_model("default")
    common = dict(batch_size=32, batches_per_file=3, progress=False)
    with torch_threads(1):  # each actor's thread count
        local = extract_activations(model, "layer2", SAMPLE_DIR, tmp_path / "local", **common)
    on_ray = extract_activations(model, "layer2", SAMPLE_DIR, tmp_path / "ray", engine=RayEngine(actors=2), **common)
    assert on_ray.complete and on_ray.manifest == local.manifest and len(local.manifest["files"]) == 4
    for entry in local.manifest["files"]:
        assert (tmp_path / "local" / entry["file"]).read_bytes() == (tmp_path / "ray" / entry["file"]).read_bytes()
    (tmp_path / "ray" / "rows-000002.safetensors").unlink()  # as if the driver died before writing file 2
    manifest = json.loads((tmp_path / "ray" / "activations.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["file"] != "rows-000002.safetensors"]
    (tmp_path / "ray" / "activations.json").write_text(json.dumps(manifest))
    assert not ActivationFolder(tmp_path / "ray").complete
    again = extract_activations(model, "layer2", SAMPLE_DIR, tmp_path / "ray", engine="ray", **common)
    assert again.manifest == local.manifest and torch.equal(torch.cat(list(again)), torch.cat(list(local)))
    sae = train_layer_saes(model, ["layer2"], tmp_path / "ray", expansion=2, k=8, epochs=1, progress=False)["layer2"]
    assert sae.config.training["steps"] > 0
