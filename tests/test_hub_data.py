"""Images where the community keeps them: Hub datasets (saved to disk by `datasets`, or Parquet files
as the Hub serves them) and WebDataset shards written by the `webdataset` library mine exactly like
the same images in a folder, broken files skipped alike."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vizneuron.errors import VizneuronError
from vizneuron.mine import mine
from vizneuron.samples import SAMPLE_DIR
from vizneuron.sources import as_source

from helpers import make_tiny, write_problem_images

COMMON = dict(k=3, batch_size=7, progress=False, workers=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Class folders of photos (bundled CIFAR-10 cats and dogs) and hostile files (corrupt, empty,
    greyscale, CMYK, ...)."""
    root = tmp_path_factory.mktemp("folder") / "data"
    write_problem_images(root / "odd")
    for name in ("cat", "dog"):
        (root / name).mkdir()
        for file in sorted((SAMPLE_DIR / name).glob("*.jpg"))[:12]:
            shutil.copy(file, root / name / file.name)
    return root


def _mined(data, path: Path):
    return mine(make_tiny(), "conv2", data, index=path, **COMMON)


def assert_mined_alike(a, b) -> None:
    """Same examples (image number, value, position), statistics, labels and notes."""
    for unit in ("conv2:0", "conv2:5"):
        for bottom in (False, True):
            assert [(e.image, e.value, e.position, e.label) for e in a.examples(unit, bottom)] == \
                [(e.image, e.value, e.position, e.label) for e in b.examples(unit, bottom)]
        stats = lambda s: (s.count, s.mean, s.std, s.min, s.max)  # noqa: E731
        assert stats(a.stats(unit)) == stats(b.stats(unit))
    assert [(n, r) for _, n, r in a.notes()] == [(n, r) for _, n, r in b.notes()]
    assert a.summary()["skipped"] == b.summary()["skipped"]


def _records(folder: Path) -> tuple[list[dict], list[str]]:
    """The folder's files in the order a folder source numbers them, as rows of bytes and labels."""
    source = as_source(folder)
    names = sorted({source.label(i) for i in range(len(source))})
    rows = [{"image": {"bytes": Path(source.key(i)).read_bytes(), "path": None},
             "label": names.index(source.label(i))} for i in range(len(source))]
    return rows, names


def test_a_hub_dataset_mines_like_the_folder(folder, tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (the `formats` extra)")
    rows, names = _records(folder)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    dataset = datasets.Dataset.from_list(rows, features=features)
    dataset.save_to_disk(tmp_path / "saved")
    (tmp_path / "hub" / "data").mkdir(parents=True)
    half = len(dataset) // 2  # two files, small row groups: reading crosses files and groups
    dataset.select(range(half)).to_parquet(tmp_path / "hub" / "data" / "train-00000-of-00002.parquet", batch_size=4)
    dataset.select(range(half, len(dataset))).to_parquet(tmp_path / "hub" / "data" / "train-00001-of-00002.parquet",
                                                         batch_size=4)
    from_folder = _mined(folder, tmp_path / "folder.sqlite")
    for name in ("saved", "hub"):
        source = as_source(f"hf-dataset:{tmp_path / name}")
        assert len(source) == len(rows) and source.label(0) == as_source(folder).label(0)
        assert_mined_alike(from_folder, _mined(f"hf-dataset:{tmp_path / name}", tmp_path / f"{name}.sqlite"))
    assert as_source(f"hf-dataset:{tmp_path / 'hub'}").key(half) == "train-00001-of-00002.parquet:0"


def test_hub_dataset_columns_are_found_or_asked_for(tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (the `formats` extra)")
    two = datasets.Dataset.from_dict({"a": [b"x"], "b": [b"y"], "caption": ["z"]})
    two.to_parquet(tmp_path / "two.parquet")
    with pytest.raises(VizneuronError, match=r"say which column holds the images, several could be \(a, b\)"):
        as_source(f"hf-dataset:{tmp_path / 'two.parquet'}")
    with pytest.raises(VizneuronError, match="no label column 'nope'; columns: a, b, caption"):
        as_source(f"hf-dataset:{tmp_path / 'two.parquet'}?image=a&label=nope")
    with pytest.raises(VizneuronError, match="options are image=COLUMN and label=COLUMN"):
        as_source(f"hf-dataset:{tmp_path / 'two.parquet'}?img=a")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(VizneuronError, match="no Hub dataset there"):
        as_source(f"hf-dataset:{tmp_path / 'nothing'}")
    source = as_source(f"hf-dataset:{tmp_path / 'two.parquet'}?image=a&label=caption")
    assert source.label(0) == "z"
    with pytest.raises(Exception, match="not an image PIL can read"):
        source.read(0)


def test_webdataset_written_shards_mine_like_the_folder(folder, tmp_path):
    """Shards the `webdataset` library wrote from the folder's files (keys in dotted folders, class
    names and indices): the same examples, labels and notes as the folder. A sample holding two
    images under one key is read once and reported."""
    wds = pytest.importorskip("webdataset", reason="the reference WebDataset writer: pip install webdataset")
    source = as_source(folder)
    names = sorted({source.label(i) for i in range(len(source))})
    (tmp_path / "shards").mkdir()
    with wds.ShardWriter(str(tmp_path / "shards" / "part-%06d.tar"), maxcount=5) as sink:
        for i in range(len(source)):
            path = Path(source.key(i))
            extension = path.suffix.lstrip(".").lower() or "jpg"
            sink.write({"__key__": f"set.v2/{source.label(i)}/{i:04d}", extension: path.read_bytes(),
                        "cls": names.index(source.label(i)), "txt": source.label(i)})
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    pattern = str(tmp_path / "shards" / f"part-{{000000..{len(shards) - 1:06d}}}.tar")
    assert_mined_alike(_mined(folder, tmp_path / "folder.sqlite"), _mined(pattern, tmp_path / "shards.sqlite"))
    two = tmp_path / "two"
    two.mkdir()
    first = Path(source.key(0)).read_bytes()
    with wds.TarWriter(str(two / "x.tar")) as sink:
        sink.write({"__key__": "pair", "left.jpg": first, "jpg": first, "cls": 1})
    shard = as_source(str(two / "x.tar"))
    assert len(shard) == 1 and shard.label(0) == "1"
    note = shard.read(0)[1]
    assert note.startswith("the sample holds 2 images (") and ".left.jpg" in note and note.endswith("read .jpg")


def test_labels_prefer_class_names_to_indices(tmp_path):
    wds = pytest.importorskip("webdataset", reason="the reference WebDataset writer: pip install webdataset")
    with wds.TarWriter(str(tmp_path / "x.tar")) as sink:
        sink.write({"__key__": "a", "cls": 3, "txt": "cat", "png": _png()})
        sink.write({"__key__": "b", "cls": 4, "png": _png()})
    source = as_source(str(tmp_path / "x.tar"))
    assert [source.label(0), source.label(1)] == ["cat", "4"]


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, format="PNG")
    return out.getvalue()
