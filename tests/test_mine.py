"""The dataset-example miner: exact against brute force, resumable, shardable, robust to bad files."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vizneuron import ExampleIndex, IndexMismatch, load_model, merge, mine
from vizneuron.errors import VizneuronError
from vizneuron.mine.tracker import Tracker
from vizneuron.samples import SAMPLE_DIR
from vizneuron.sources import as_source, write_shards
from vizneuron.stream import ActivationStream, decode_workers, stream_batch

from helpers import (
    CIFAR_INDEX_SETTINGS,
    assert_equivalent_index,
    assert_same_index,
    batched_forward,
    batches_done,
    cifar_list,
    index_rows,
    make_tiny,
    shared_path,
    torch_threads,
    write_problem_images,
)


def _brute_force(values: np.ndarray, k: int, bottom: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per unit (columns of `values`), the k best image ids: by value, ties to the lower id."""
    ids = np.arange(len(values))
    order = [np.lexsort((ids, v if bottom else -v))[:k] for v in values.T]
    return np.stack(order), np.stack([values[o, u] for u, o in enumerate(order)])


def _model(name: str):
    if name == "default":
        return load_model("default")
    return load_model(f"cifar-resnet:{next(shared_path('models', 'cifar-resnet').glob('resnet20-*.th'))}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "resnet20"])
def test_top_and_bottom_k_equal_brute_force_on_cifar10(name, cifar_test, tmp_path, request):
    model = _model(name)
    images, labels = cifar_test
    layers = ["layer2", "layer3"]
    k = CIFAR_INDEX_SETTINGS["k"]
    if name == "default":  # the session's index, which the Ray engine is checked against too
        index = ExampleIndex(request.getfixturevalue("cifar_test_index"))
    else:
        index = mine(model, ",".join(layers), shared_path("data", "cifar10", "test"),
                     index=tmp_path / "examples.sqlite",
                     progress=False, **CIFAR_INDEX_SETTINGS)
    acts = batched_forward(model, images.contiguous(), layers, batch=500)  # same layout, same batches
    assert index.summary()["mined"] == len(images) == 10_000
    for layer in layers:
        peak = acts[layer].flatten(2).amax(2).numpy()  # (N, C): each image's strongest response
        spatial_w = acts[layer].shape[3]
        for bottom in (False, True):
            ids, values = _brute_force(peak, k, bottom)
            for c in range(peak.shape[1]):
                examples = index.examples(f"{layer}:{c}", bottom=bottom)
                assert [e.image for e in examples] == ids[c].tolist(), (layer, c, bottom)
                assert np.array_equal(np.array([e.value for e in examples], np.float32), values[c])
        # positions, labels and statistics of one unit, checked in full
        c = 3
        top = index.examples(f"{layer}:{c}")[0]
        flat = acts[layer][top.image, c].flatten().argmax().item()
        assert top.position == divmod(flat, spatial_w)
        assert top.label == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                             "truck"][labels[top.image]]
        stats = index.stats(f"{layer}:{c}")
        assert stats.count == 10_000 and stats.max == pytest.approx(peak[:, c].max())
        assert stats.mean == pytest.approx(peak[:, c].mean(dtype=np.float64), rel=1e-9)
        assert stats.std == pytest.approx(peak[:, c].std(dtype=np.float64), rel=1e-6)
        assert stats.active == pytest.approx((peak[:, c] > 0).mean())
        assert stats.histogram.sum() == 10_000
        assert top.heatmap.shape == acts[layer].shape[2:] and top.heatmap.max() == pytest.approx(top.value, rel=1e-2)
        crop = index.crop(top)
        assert 0 < crop.width <= 32 and crop.width == crop.height


MINE_SCRIPT = """
import sys
from vizneuron import load_model, mine
mine(load_model("default"), "layer2:0-15;layer3:*", sys.argv[1], k=8, batch_size=16, checkpoint_every=2,
     index=sys.argv[2], progress=False)
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    listing = cifar_list(tmp_path, 800)
    script = tmp_path / "mine.py"
    script.write_text(MINE_SCRIPT)
    whole, killed = tmp_path / "whole.sqlite", tmp_path / "killed.sqlite"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(script), str(listing), str(whole)], check=True, env=env)
    for attempt in range(3):  # kill -9 mid-run (a few times), then let it finish
        proc = subprocess.Popen([sys.executable, str(script), str(listing), str(killed)], env=env)
        deadline = time.time() + 60
        while time.time() < deadline and batches_done(killed) < 4 * (attempt + 1):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 0 < batches_done(killed) < 50  # it really was cut short (800 images = 50 batches)
    subprocess.run([sys.executable, str(script), str(listing), str(killed)], check=True, env=env)
    assert_same_index(index_rows(whole), index_rows(killed))


def test_an_error_mid_run_keeps_the_last_checkpoint_and_resume_finishes(tmp_path, monkeypatch):
    """The in-process version of a crash: an exception between checkpoints loses nothing committed."""
    from PIL import Image

    from vizneuron.mine import run

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    whole = mine(make_tiny(), "conv2;logits", folder, k=5, batch_size=4, index=tmp_path / "whole.sqlite",
                 progress=False)
    calls = {"n": 0}
    original = run.save_checkpoint

    def crash_after_three(*args, **kwargs):
        calls["n"] += 1
        original(*args, **kwargs)
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C right after the third checkpoint

    monkeypatch.setattr(run, "save_checkpoint", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        mine(make_tiny(), "conv2;logits", folder, k=5, batch_size=4, checkpoint_every=2,
             index=tmp_path / "cut.sqlite", progress=False)
    with pytest.raises(ValueError, match="not finished"):
        ExampleIndex(tmp_path / "cut.sqlite")
    monkeypatch.setattr(run, "save_checkpoint", original)
    mine(make_tiny(), "conv2;logits", folder, k=5, batch_size=4, checkpoint_every=2, index=tmp_path / "cut.sqlite",
         progress=False)
    assert_same_index(index_rows(tmp_path / "whole.sqlite"), index_rows(tmp_path / "cut.sqlite"))
    assert whole.examples("logit:2")[0].position is None


@pytest.mark.slow
def test_sharded_and_merged_equals_unsharded(tmp_path):
    listing = cifar_list(tmp_path, 1000)
    model = load_model("default")
    common = dict(k=8, batch_size=50, progress=False)
    mine(model, "layer2,layer3", listing, index=tmp_path / "whole.sqlite", **common)
    shards = [tmp_path / f"shard{i}.sqlite" for i in range(3)]
    for i, path in enumerate(shards):
        mine(model, "layer2,layer3", listing, index=path, shard=f"{i}/3", **common)
    with pytest.raises(ValueError, match="every shard"):
        merge(tmp_path / "partial.sqlite", shards[:2])
    merged = merge(tmp_path / "merged.sqlite", shards)
    assert_same_index(index_rows(tmp_path / "whole.sqlite"), index_rows(tmp_path / "merged.sqlite"))
    assert merged.summary()["mined"] == 1000


def test_one_thread_and_every_core_give_the_same_index_to_float32_rounding(tmp_path):
    """What engines with other thread counts are held to (Ray's one-thread actors against a local run):
    the comparison passes across thread counts, and fails on a real difference or a swap that is no tie."""
    write_problem_images(tmp_path / "data")
    settings = dict(k=8, batch_size=3, progress=False)
    mine(load_model("default"), "layer3:*", tmp_path / "data", index=tmp_path / "every-core.sqlite", **settings)
    with torch_threads(1):
        mine(load_model("default"), "layer3:*", tmp_path / "data", index=tmp_path / "one.sqlite", **settings)
    every_core, one = index_rows(tmp_path / "every-core.sqlite"), index_rows(tmp_path / "one.sqlite")
    assert_equivalent_index(every_core, one)

    rows = one["examples"]
    best = max((i for i, r in enumerate(rows) if r[1] == "top"), key=lambda i: rows[i][4])  # some unit's rank 0
    assert rows[best][2] == 0 and rows[best + 1][2] == 1 and rows[best + 1][4] < 0.99 * rows[best][4]

    def edited(changes: dict[int, dict[int, object]]) -> dict[str, list]:
        new_rows = [tuple(changes[i].get(c, v) for c, v in enumerate(r)) if i in changes else r
                    for i, r in enumerate(rows)]
        return dict(one, examples=new_rows)

    assert_equivalent_index(every_core, edited({best: {4: rows[best][4] * (1 + 1e-7)}}))  # float32 rounding
    with pytest.raises(AssertionError):
        assert_equivalent_index(every_core, edited({best: {4: rows[best][4] * (1 + 1e-3)}}))
    with pytest.raises(AssertionError, match="no near-tie"):  # ranks 0 and 1 swap images: their values differ
        assert_equivalent_index(every_core, edited({best: {3: rows[best + 1][3]}, best + 1: {3: rows[best][3]}}))


def test_bad_files_are_skipped_or_converted_and_reported(tmp_path):
    expected = write_problem_images(tmp_path / "data")
    index = mine(make_tiny(), "conv2", tmp_path / "data", k=3, batch_size=3, index=tmp_path / "i.sqlite",
                 progress=False)
    notes = {Path(path).name: (action, reason) for path, action, reason in index.notes()}
    for name, fate in expected.items():
        if fate == "ok":
            assert name not in notes
        else:
            action, reason = fate.split(": ")
            assert notes[name][0] == action and reason in notes[name][1], (name, notes[name])
    summary = index.summary()
    assert summary["skipped"] == 4 and summary["converted"] == 4 and summary["mined"] == 6
    skipped_ids = {i for i, name in enumerate(sorted(expected)) if expected[name].startswith("skipped")}
    assert not skipped_ids & {e.image for e in index.examples("conv2:0", k=None)}


def test_index_refuses_another_model_or_dataset_and_reports_bad_specs(tmp_path):
    folder = tmp_path / "data"
    write_problem_images(folder)
    path = tmp_path / "i.sqlite"
    mine(make_tiny(), "conv1", folder, k=2, index=path, progress=False)
    other = make_tiny()
    with torch.no_grad():
        other.module.conv1.weight.add_(1)
    with pytest.raises(IndexMismatch, match="weights"):
        mine(other, "conv1", folder, k=2, index=path, progress=False)
    with pytest.raises(IndexMismatch, match="k: index has 2, this run 3"):
        mine(make_tiny(), "conv1", folder, k=3, index=path, progress=False)
    (folder / "extra.png").write_bytes((folder / "good_a.png").read_bytes())
    with pytest.raises(IndexMismatch, match="dataset"):
        mine(make_tiny(), "conv1", folder, k=2, index=path, progress=False)
    with pytest.raises(Exception, match="conv_1|conv1"):
        mine(make_tiny(), "conv_9", folder, k=2, progress=False)
    with pytest.raises(KeyError, match="closest: conv1:1"):
        ExampleIndex(path).examples("conv1:11")
    with pytest.raises(ValueError, match="I/N"):
        mine(make_tiny(), "conv1", folder, shard="2of3", progress=False)


def test_tracker_is_independent_of_batching_and_ties_go_to_the_lower_id():
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 4, (50, 3), generator=gen).float()  # many ties
    values[7, 0] = float("nan")
    where = torch.randint(0, 9, (50, 3), generator=gen)
    ids = torch.arange(50)
    heat = torch.randn(50, 3, 4, generator=gen).half()  # each example's heatmap travels with it
    one = Tracker.from_batch(values, where, ids, heat).merge(Tracker.empty(3, 4), 6)
    parts = Tracker.empty(3, 4)
    for chunk in (slice(30, 50), slice(0, 11), slice(11, 30)):  # out of order, uneven
        parts = parts.merge(Tracker.from_batch(values[chunk], where[chunk], ids[chunk], heat[chunk], k=6), 6)
    for field in ("top_value", "top_id", "top_where", "top_heat", "bottom_value", "bottom_id", "bottom_heat",
                  "histogram", "count", "active"):
        assert torch.equal(getattr(one, field), getattr(parts, field)), field
    for side in ("top", "bottom"):
        kept = getattr(one, f"{side}_id")
        assert torch.equal(getattr(one, f"{side}_heat"), heat[kept, torch.arange(3)[:, None]])
    expected_ids, _ = _brute_force(np.nan_to_num(values.numpy(), nan=-np.inf), 6, False)
    assert one.top_id.tolist() == expected_ids.tolist()
    assert one.count.tolist() == [49, 50, 50] and 7 not in one.bottom_id[0].tolist()


def test_equal_values_are_ordered_by_the_second_key_then_the_lower_id():
    gen = torch.Generator().manual_seed(1)
    values = torch.randint(0, 3, (40, 2), generator=gen).float()  # saturated: few distinct values
    tie = torch.randint(0, 4, (40, 2), generator=gen).float()  # a second key with ties of its own
    ids = torch.arange(40)
    where = torch.zeros(40, 2, dtype=torch.long)
    parts = Tracker.empty(2)
    for chunk in (slice(25, 40), slice(0, 9), slice(9, 25)):
        parts = parts.merge(Tracker.from_batch(values[chunk], where[chunk], ids[chunk], k=5, tie=tie[chunk]), 5)
    for unit in range(2):
        v, t, i = values[:, unit].numpy(), tie[:, unit].numpy(), ids.numpy()
        assert parts.top_id[unit].tolist() == np.lexsort((i, -t, -v))[:5].tolist()
        assert parts.bottom_id[unit].tolist() == np.lexsort((i, t, v))[:5].tolist()
        assert parts.top_tie[unit].tolist() == t[np.lexsort((i, -t, -v))[:5]].tolist()


@pytest.mark.slow
def test_a_relu6_models_saturated_top_examples_are_ordered_by_their_mean(tmp_path):
    """MobileNet-v1 (Coral, ReLU6) clips many top examples at exactly 6: those are ordered by the
    unit's mean over positions on each image (what the index records as its tie key), not by file."""
    model_file = shared_path("models", "coral", "mobilenet_v1_0.25_128_quant.tflite")
    if not model_file.exists():
        pytest.skip(f"no Coral MobileNet at {model_file}")
    model = load_model(f"tflite:{model_file}")
    data = shared_path("data", "imagenet-sample")
    layer = "MobilenetV1_Conv2d_13_pointwise"
    index = mine(model, f"{layer}:0-31", data, k=8, progress=False)
    assert index.meta["ties"] == "mean over positions"
    saturated = 0
    for channel in range(32):
        top = index.examples(f"{layer}:{channel}")
        clipped = [e for e in top if e.value == top[0].value]
        if len(clipped) < 2:
            continue
        saturated += 1
        stream = ActivationStream(model, [layer], data, ids=sorted(e.image for e in clipped))
        means = {}
        for batch in stream:
            for image, act in zip(batch.ids.tolist(), batch.activations[layer][:, channel]):
                means[image] = float(act.mean())
        order = [means[e.image] for e in clipped]
        assert order == sorted(order, reverse=True), (channel, order)
        assert "equal values are ordered by the unit's mean over positions" in index.tie_note(top)
    assert saturated >= 16  # most of the layer's units clip several of their top images at 6


def test_heatmaps_kept_while_streaming_equal_a_forward_pass_of_each_example_alone():
    """The index's heatmaps come from the streaming pass (no second forward): each equals the unit's
    map on a forward pass of that one image, pooled to at most 16x16 (the stem's 32x32 grid is pooled,
    layer3's 4x4 is not), to float16 rounding; a top example's position is that map's peak."""
    model = load_model("default")
    index = mine(model, "stem,layer3", SAMPLE_DIR, k=4, batch_size=48, progress=False)
    source = as_source(SAMPLE_DIR)
    checked = 0
    for unit in ("stem:3", "stem:30", "layer3:0", "layer3:77"):
        layer, channel = unit.split(":")
        for bottom in (False, True):
            for example in index.examples(unit, bottom=bottom):
                alone = next(iter(ActivationStream(model, [layer], source, ids=[example.image]))).activations[layer]
                alone = alone[0, int(channel)]
                pooled = torch.nn.functional.adaptive_avg_pool2d(alone[None, None], example.heatmap.shape)[0, 0]
                scale = 2e-3 * float(alone.abs().max())
                assert np.allclose(example.heatmap, pooled.numpy(), rtol=2e-3, atol=scale), unit
                assert example.heatmap.shape == ((16, 16) if layer == "stem" else (4, 4))
                if not bottom:
                    assert example.position == divmod(int(alone.argmax()), alone.shape[1]), unit
                    assert float(alone.max()) == pytest.approx(example.value, rel=1e-4)
                checked += 1
    assert checked == 32


def test_auto_workers_follow_the_machine_and_bad_counts_are_refused(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert decode_workers("auto", gpu, 2) == 0  # a stream of a few batches: a worker's start costs more
    assert decode_workers("auto", gpu, 100) == 8 and decode_workers("auto", cpu, 100) == 7
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert decode_workers("auto", cpu, 100) == 0 and decode_workers("auto", gpu, 100) == 1  # 2 cores
    assert decode_workers(3, cpu, 1) == 3  # a number is kept as given
    for bad in (-1, "many", 1.5):
        with pytest.raises(VizneuronError, match="workers must be"):
            decode_workers(bad, cpu, 100)


def test_auto_batches_are_64_on_the_cpu_and_follow_the_card_on_a_gpu(monkeypatch):
    model = load_model("torchvision:resnet50?weights=none")
    assert stream_batch(model, "auto") == 64 and stream_batch(model, 48) == 48
    with pytest.raises(VizneuronError, match="batch size must be positive"):
        stream_batch(model, 0)
    assert model.layers  # traced on the CPU, before the model claims a card
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("cuda")))
    for card_gib, batch in ((80, 256), (8, 64), (1000, 512)):  # conv1's 64x112x112 output leads; 64 to 512
        monkeypatch.setattr(type(model), "memory_bytes", property(lambda self, gib=card_gib: gib * 2**30))
        assert stream_batch(model, "auto") == batch, card_gib


def test_torchvision_dataset_source_and_worker_processes_agree(tmp_path):
    from torchvision.datasets import FakeData

    dataset = FakeData(size=24, image_size=(3, 20, 20), num_classes=3, random_offset=5)
    one = mine(make_tiny(), "conv2", dataset, k=4, batch_size=5, index=tmp_path / "a.sqlite", progress=False)
    mine(make_tiny(), "conv2", dataset, k=4, batch_size=5, workers=2, index=tmp_path / "b.sqlite",
         progress=False)
    assert_same_index(index_rows(tmp_path / "a.sqlite"), index_rows(tmp_path / "b.sqlite"))
    top = one.examples("conv2:0")[0]
    assert top.path == f"FakeData[{top.image}]" and top.label == str(int(dataset[top.image][1]))
    assert one.meta["dataset"]["kind"] == "dataset" and one.summary()["mined"] == 24
    again = mine(make_tiny(), "conv2", dataset, k=4, batch_size=5, index=tmp_path / "a.sqlite", progress=False)
    assert [(e.image, e.value) for e in again.examples("conv2:0")] == \
        [(e.image, e.value) for e in one.examples("conv2:0")]


def test_webdataset_shards_mine_exactly_as_the_folder_they_were_written_from(tmp_path):
    folder = tmp_path / "data"
    write_problem_images(folder)  # corrupt, empty, greyscale, CMYK, ... files: all kept in the shards
    images = len(as_source(folder))
    shards = write_shards(folder, tmp_path / "shards", per_shard=4)
    assert len(shards) == -(-images // 4) >= 3
    pattern = str(tmp_path / "shards" / f"shard-{{000000..{len(shards) - 1:06d}}}.tar")
    source = as_source(pattern)
    assert len(source) == images and source.key(0).startswith("shard-000000.tar:")
    common = dict(k=3, batch_size=3, progress=False)
    from_folder = mine(make_tiny(), "conv2", folder, index=tmp_path / "folder.sqlite", **common)
    from_shards = mine(make_tiny(), "conv2", pattern, index=tmp_path / "shards.sqlite", **common)
    for unit in ("conv2:0", "conv2:5"):
        for bottom in (False, True):
            a, b = from_folder.examples(unit, bottom), from_shards.examples(unit, bottom)
            assert [(e.image, e.value, e.position) for e in a] == [(e.image, e.value, e.position) for e in b]
        fields = lambda stats: (stats.count, stats.mean, stats.std, stats.min, stats.max)  # noqa: E731
        assert fields(from_folder.stats(unit)) == fields(from_shards.stats(unit))
    assert [(a, r) for _, a, r in from_folder.notes()] == [(a, r) for _, a, r in from_shards.notes()]
    assert from_folder.summary()["skipped"] == from_shards.summary()["skipped"] == 4


def test_shards_written_by_webdataset_read_as_webdataset_reads_them(tmp_path):
    """Shards from the `webdataset` library's own writer (not vizneuron's), read back by its own
    reader as the reference: keys with folders and dots, JPEG, PNG and WebP images, an image beside
    a mask (`KEY.mask.png`, written first), class indices (`.cls`), a sample with no image at all. The
    same keys in the same order, the same labels, the same pixels (JPEG decoded alike)."""
    wds = pytest.importorskip("webdataset", reason="the reference WebDataset writer and reader: pip install webdataset")
    rng = np.random.default_rng(0)
    (tmp_path / "shards").mkdir()
    samples = []
    for shard in range(2):
        with wds.TarWriter(str(tmp_path / "shards" / f"part-{shard:06d}.tar")) as sink:
            for i in range(5):
                key = f"train/n{shard}/img{i}" if i != 3 else f"train/n{shard}.v1/img{i}"  # a dot in a folder
                extension = ("jpg", "png", "webp", "jpg", "png")[i]
                sample = {"__key__": key, extension: _encoded(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8),
                                                              extension), "cls": 3 * shard + i}
                if i == 1:
                    sample["mask.png"] = _encoded(np.zeros((24, 20), dtype=np.uint8), "png")  # written first
                sink.write(sample)
                samples.append(key)
            sink.write({"__key__": f"train/n{shard}/meta", "json": {"note": "no image in this sample"}})
    pattern = str(tmp_path / "shards" / "part-{000000..000001}.tar")
    reference = [s for s in wds.WebDataset(pattern, shardshuffle=False).decode("rgb8")
                 if any(k in s for k in ("jpg", "png", "webp"))]
    source = as_source(pattern)
    assert len(source) == len(reference) == len(samples) == 10
    for i, expected in enumerate(reference):
        assert source.key(i).split(":", 1)[1] == expected["__key__"]
        assert source.label(i) == str(expected["cls"])
        image = next(expected[k] for k in ("jpg", "png", "webp") if k in expected)
        assert np.array_equal(source.read(i)[0], image), expected["__key__"]


def _encoded(pixels: np.ndarray, extension: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format={"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[extension])
    return out.getvalue()


def test_shards_with_labels_feed_the_probe_and_bad_shards_say_why(tmp_path):
    shards = write_shards(SAMPLE_DIR, tmp_path / "s", per_shard=100)
    source = as_source(str(tmp_path / "s" / "shard-{000000..000002}.tar"))
    assert [source.label(i) for i in (0, 299)] == ["airplane", "truck"]
    assert [source.label(i) for i in range(300)] == [as_source(SAMPLE_DIR).label(i) for i in range(300)]
    with pytest.raises(FileNotFoundError, match="7 of 10 shards not found: .*shard-000003.tar .. shard-000009.tar"):
        as_source(str(tmp_path / "s" / "shard-{000000..000009}.tar"))
    (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ValueError, match="not a readable tar"):
        as_source(str(tmp_path / "bad.tar"))
    with pytest.raises(ValueError, match="empty"):
        as_source(str(tmp_path / "s" / "shard-{000009..000001}.tar"))
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(shards[0].read_bytes()[: shards[0].stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable tar"):
        as_source(str(truncated))
