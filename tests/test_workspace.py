"""What the app may touch (Workspace), what it caches (RenderCache), and the hooks it relies on
in the library: progress callbacks, model checks on indexes, the files a model spec reads."""

from __future__ import annotations

import io
import os
import time

import pytest
import torch
from PIL import Image

from vizneuron import mine
from vizneuron.mine import IndexMismatch
from vizneuron.models import ModelSpec
from vizneuron.optim.cache import RenderCache
from vizneuron.optim.render import render
from vizneuron.sae import SAE, SAEConfig
from vizneuron.workspace import MAX_IMAGE_BYTES, PathNotAllowed, UploadRejected, Workspace

from helpers import make_tiny, write_problem_images


def png(size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def ws(tmp_path) -> Workspace:
    (tmp_path / "data" / "cats").mkdir(parents=True)
    (tmp_path / "data" / "cats" / "a.png").write_bytes(png())
    (tmp_path / "secret.txt").write_text("no")
    return Workspace.create([tmp_path / "data"], tmp_path / "home")


def test_resolve_keeps_paths_inside_the_roots(ws, tmp_path):
    assert ws.resolve("cats/a.png") == tmp_path / "data" / "cats" / "a.png"  # relative to the first root
    assert ws.resolve(str(tmp_path / "data" / "cats")) == tmp_path / "data" / "cats"
    for outside in ("../secret.txt", str(tmp_path / "secret.txt"), "/etc/passwd", "cats/../../secret.txt", "~"):
        with pytest.raises(PathNotAllowed, match="outside the folders this app may read"):
            ws.resolve(outside)
    os.symlink(tmp_path / "secret.txt", tmp_path / "data" / "link.txt")  # a symlink out is still out
    with pytest.raises(PathNotAllowed):
        ws.resolve("link.txt")
    with pytest.raises(PathNotAllowed, match="may write"):
        ws.resolve("cats/new.sqlite", write=True, must_exist=False)
    assert ws.resolve(str(ws.home / "indexes" / "x.sqlite"), write=True, must_exist=False).parent.name == "indexes"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ws.resolve("cats/none.png")
    with pytest.raises(PathNotAllowed, match="no path"):
        ws.resolve("  ")


def test_model_specs_are_checked_before_loading(ws, tmp_path):
    files = lambda text: ModelSpec.parse(text).files()  # noqa: E731
    assert files("default") == [] and files("torchvision:resnet18?weights=IMAGENET1K_V1") == []
    assert files("tflite:m.tflite?labels=l.txt") == ["m.tflite", "l.txt"]
    assert files("torchvision:resnet18?weights=w.pth") == ["w.pth"]
    # upper case is no escape from the check: only torchvision's real enum names are not files
    assert files("tflite:m.tflite?labels=/SOME/FILE.TXT") == ["m.tflite", "/SOME/FILE.TXT"]
    assert files("default?weights=WEIGHTS") == ["WEIGHTS"]
    assert files("torchvision:resnet18?weights=NOT_AN_ENUM") == ["NOT_AN_ENUM"]
    (tmp_path / "data" / "m.tflite").write_bytes(b"x")
    with pytest.raises(PathNotAllowed, match="outside"):
        ws.check_spec(f"tflite:m.tflite?labels={tmp_path.as_posix().upper()}/SECRET.TXT")
    assert str(ws.check_spec("torchvision:resnet18?weights=none")) == "torchvision:resnet18?weights=none"
    with pytest.raises(PathNotAllowed, match="arbitrary code"):
        ws.check_spec("python:os:system")
    with pytest.raises(PathNotAllowed, match="outside"):
        ws.check_spec(f"cifar-resnet:{tmp_path / 'secret.txt'}")
    (tmp_path / "data" / "w.pth").write_bytes(b"x")
    assert str(ws.check_spec("default?weights=w.pth")) == f"default?weights={tmp_path / 'data' / 'w.pth'}"
    for text in ("tflite:m.tflite?labels=l.txt", "torchvision:vit_b_16?weights=none&tokens=cls", "default"):
        assert str(ModelSpec.parse(text)) == text
    with pytest.raises(ValueError, match="did you mean torchvision"):
        ModelSpec.parse("torchvison:resnet18")
    assert ModelSpec.for_file("x/m.tflite") == ModelSpec("tflite", "x/m.tflite")
    assert str(ModelSpec.for_file("w.th")) == "cifar-resnet:w.th"
    assert str(ModelSpec.for_file("w.pth", "torchvision:resnet18")) == "torchvision:resnet18?weights=w.pth"


def test_uploads_are_checked_named_safely_and_pruned(ws):
    folder = ws.session_dir("abc")
    assert folder.parent == ws.home / "sessions" and folder != ws.session_dir("abc")  # unguessable, per session
    saved = ws.save_upload(folder, "../../evil name.png", png())
    assert saved.parent == folder and saved.name == "evil_name.png"
    with pytest.raises(UploadRejected, match="not an image"):
        ws.save_upload(folder, "notes.png", b"hello")
    with pytest.raises(UploadRejected, match="empty"):
        ws.save_upload(folder, "empty.png", b"")
    with pytest.raises(UploadRejected, match="limit for images is 16 MiB"):
        ws.save_upload(folder, "big.png", b"\0" * (MAX_IMAGE_BYTES + 1))
    with pytest.raises(UploadRejected, match="decompression-bomb"):
        ws.save_upload(folder, "bomb.png", png((12000, 12000)))
    with pytest.raises(UploadRejected, match="must be one of"):
        ws.save_upload(folder, "model.exe", b"MZ", kind="model")
    assert sorted(p.name for p in folder.iterdir()) == ["evil_name.png"]  # refused files are not kept
    with pytest.raises(PathNotAllowed):
        ws.save_upload(ws.roots[0], "a.png", png())
    old = time.time() - 2 * 24 * 3600
    os.utime(folder, (old, old))
    ws.prune_sessions()
    assert not folder.exists()


def test_render_cache_returns_the_same_render_and_keys_on_every_setting(tmp_path):
    model = make_tiny()
    cache = RenderCache(tmp_path / "renders")
    settings = {"samples": 2, "diversity": 1.0, "steps": 6, "seed": 3}
    calls = []
    first = cache.render(model, "conv2:0-1", on_progress=lambda s, n: calls.append((s, n)), **settings)
    assert calls[-1] == (6, 6) and len(calls) == 6  # progress after every step
    again = cache.render(model, "conv2:0-1", on_progress=lambda s, n: calls.append((s, n)), **settings)
    assert len(calls) == 6, "the second call must not optimise"
    assert torch.equal(again.images, first.images) and torch.equal(again.activations, first.activations)
    assert torch.equal(again.history, first.history) and again.samples == 2
    assert [u.name for u in again.units] == ["conv2:0", "conv2:1"]
    direct = render(model, "conv2:0-1", progress=False, **settings)
    assert torch.equal(direct.images, first.images)  # a cached render is the render
    for change in ({"seed": 4}, {"steps": 7}, {"param": "pixel"}, {"size": 20}):
        assert cache.get(model, "conv2:0-1", **(settings | change)) is None, change
    assert cache.get(model, "conv2:1", **settings) is None
    other = make_tiny()
    with torch.no_grad():
        other.module.conv1.weight.mul_(2)
    assert cache.get(other, "conv2:0-1", **settings) is None  # same name, other weights
    with pytest.raises(ValueError, match="cannot cache renders with objective"):
        cache.get(model, "conv2:0", objective=None)


def test_render_cache_keys_on_the_sae_weights(tmp_path):
    model = make_tiny()
    sae = SAE(SAEConfig(d_in=16, d_sae=32, k=4))
    cache = RenderCache(tmp_path)
    cache.render(model, "conv2/s:3", steps=4, saes={"s": sae})
    assert cache.get(model, "conv2/s:3", steps=4, saes={"s": sae}) is not None
    with torch.no_grad():
        sae.W_enc.mul_(-1)
    assert cache.get(model, "conv2/s:3", steps=4, saes={"s": sae}) is None


def test_mine_reports_progress_and_index_checks_its_model(tmp_path):
    folder = tmp_path / "data"
    write_problem_images(folder)
    seen = []
    index = mine(make_tiny(), "conv1", folder, k=2, batch_size=2, progress=False,
                 on_progress=lambda done, total: seen.append((done, total)))
    total = index.summary()["images"]
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    index.check_model(make_tiny())  # same name, same weights: fine
    other = make_tiny()
    with torch.no_grad():
        other.module.conv1.weight.add_(1)
    with pytest.raises(IndexMismatch, match="other weights"):
        index.check_model(other)
    other.name = "resnet"
    with pytest.raises(IndexMismatch, match="mined with tiny, not resnet"):
        index.check_model(other)


def test_a_hub_dataset_is_read_inside_the_roots_only(ws, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the formats extra's datasets brings it)")
    import pyarrow as pa  # with pyarrow.parquet above

    table = pa.table({"image": [png(), png((6, 6))], "label": ["cat", "dog"]})
    for folder in (tmp_path / "data" / "hub", tmp_path / "outside"):
        folder.mkdir()
        pq.write_table(table, folder / "train.parquet")
    source = ws.source("hf-dataset:hub?label=label")
    assert len(source) == 2 and source.label(1) == "dog" and ws.data_path("hf-dataset:hub") == tmp_path / "data" / "hub"
    with pytest.raises(PathNotAllowed, match="outside the folders this app may read"):
        ws.source(f"hf-dataset:{tmp_path / 'outside'}")


def test_files_under_a_root_that_lead_outside_are_skipped(ws, tmp_path):
    """Symlinked files in a mined folder and absolute paths in a list file are read only when
    they lie inside the app's folders; the rest are skipped with a note, never opened."""
    (tmp_path / "outside.png").write_bytes(png((9, 9)))
    os.symlink(tmp_path / "outside.png", tmp_path / "data" / "cats" / "linked.png")
    (tmp_path / "data" / "list.txt").write_text(f"cats/a.png\n{tmp_path / 'outside.png'}\n")
    for data, refused in ((tmp_path / "data", tmp_path / "data" / "cats" / "linked.png"),
                          (tmp_path / "data" / "list.txt", tmp_path / "outside.png")):
        index = mine(make_tiny(), "conv1", ws.source(data), k=1, progress=False)
        assert index.summary()["mined"] == 1  # cats/a.png
        assert index.notes() == [(str(refused), "skipped", "outside the folders this app may read")]
    plain = mine(make_tiny(), "conv1", tmp_path / "data", k=1, progress=False)  # the library, unsandboxed
    assert plain.summary()["mined"] == 2 and not plain.notes()


def test_indexes_are_read_without_writing_and_foreign_files_are_refused(tmp_path):
    import sqlite3

    from vizneuron.mine import ExampleIndex, NotAnIndex

    foreign = tmp_path / "other.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE people(name TEXT)")
    db.commit()
    db.close()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x00not sqlite" * 500)
    before = {p: p.read_bytes() for p in (foreign, garbage)}
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png())
    for path in (foreign, garbage):
        with pytest.raises(NotAnIndex):
            ExampleIndex(path)
        with pytest.raises(NotAnIndex):
            mine(make_tiny(), "conv1", tmp_path / "img", k=1, index=path, progress=False)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.glob("*.sqlite*")) == ["garbage.sqlite", "other.sqlite"]
    path = tmp_path / "index.sqlite"
    mine(make_tiny(), "conv1", tmp_path / "img", k=1, index=path, progress=False)
    stamp = (path.read_bytes(), path.stat().st_mtime_ns)
    index = ExampleIndex(path)
    assert index.db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # finished: one plain file
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        index.db.execute("DELETE FROM units")
    mine(make_tiny(), "conv1", tmp_path / "img", k=1, index=path, progress=False)  # finished: returned as is
    assert (path.read_bytes(), path.stat().st_mtime_ns) == stamp
    assert sorted(p.name for p in tmp_path.glob("index.sqlite*")) == ["index.sqlite"]
