"""Where images come from: an image folder, a text file of paths, WebDataset tar shards, or a
torchvision dataset (for mining, the probe's concepts and SAE training alike).

Every source numbers its images 0..N-1 in a fixed order (sorted paths, list order, dataset order);
that number is the image id the index stores and the tie-breaker of the rankings. `describe()`
fingerprints the source so an index refuses to mix results from another dataset.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import json
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import VizneuronError
from .imageio import IMAGE_SUFFIXES, MAX_PIXELS, ImageSkipped, image_files, pil_to_rgb, read_rgb
from .models.base import InputConfig


class ImageSource:
    """Base: a numbered collection of images with optional labels."""

    kind = "images"

    def __len__(self) -> int:
        raise NotImplementedError

    def key(self, i: int) -> str:
        """What a user reads to find the image again (a path, or `dataset[i]`)."""
        raise NotImplementedError

    def label(self, i: int) -> str | None:
        return None

    def read(self, i: int) -> tuple[np.ndarray, str | None]:
        """(H, W, 3) uint8 RGB and a note on any conversion; raises `ImageSkipped`."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


class JoinedSource(ImageSource):
    """Several sources numbered as one, one after another (e.g. every concept's images together)."""

    def __init__(self, sources: Sequence[ImageSource]) -> None:
        self.sources = list(sources)
        self.starts = [0]
        for source in self.sources:
            self.starts.append(self.starts[-1] + len(source))

    def _find(self, i: int) -> tuple[ImageSource, int]:
        part = bisect.bisect_right(self.starts, i) - 1
        return self.sources[part], i - self.starts[part]

    def __len__(self) -> int:
        return self.starts[-1]

    def key(self, i: int) -> str:
        source, j = self._find(i)
        return source.key(j)

    def label(self, i: int) -> str | None:
        source, j = self._find(i)
        return source.label(j)

    def read(self, i: int) -> tuple[np.ndarray, str | None]:
        source, j = self._find(i)
        return source.read(j)

    def describe(self) -> dict[str, Any]:
        return {"kind": "joined", "images": len(self), "of": [source.describe() for source in self.sources]}


class FileSource(ImageSource):
    """Image files; in a folder source, labels come from the first folder level below `root`."""

    def __init__(self, paths: list[Path], root: Path, kind: str, max_pixels: int | None = MAX_PIXELS,
                 labels: list[str | None] | None = None, within: Sequence[Path] | None = None) -> None:
        self.paths, self.root, self.kind, self.max_pixels = paths, root, kind, max_pixels
        self.within = None if within is None else tuple(Path(p).resolve() for p in within)
        self._labels = labels or ([_class_folder(p, root) for p in paths] if kind == "folder" else [None] * len(paths))

    def __len__(self) -> int:
        return len(self.paths)

    def key(self, i: int) -> str:
        return str(self.paths[i])

    def label(self, i: int) -> str | None:
        return self._labels[i]

    def read(self, i: int) -> tuple[np.ndarray, str | None]:
        if self.within is not None:  # a symlink or a listed path may lead out of the allowed folders
            real = self.paths[i].resolve()
            if not any(real.is_relative_to(folder) for folder in self.within):
                raise ImageSkipped("outside the folders this app may read")
        try:
            return read_rgb(self.paths[i], self.max_pixels)
        except FileNotFoundError:
            raise ImageSkipped("file not found") from None

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha1()
        for path in self.paths:
            try:
                size = path.stat().st_size
            except OSError:
                size = -1
            digest.update(f"{_relative(path, self.root)}\t{size}\n".encode())
        return {"kind": self.kind, "root": str(self.root), "images": len(self), "fingerprint": digest.hexdigest()}


class TorchvisionSource(ImageSource):
    """A map-style dataset returning (image, target): PIL images, (3, H, W) tensors or HWC arrays."""

    kind = "dataset"

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def key(self, i: int) -> str:
        return f"{type(self.dataset).__name__}[{i}]"

    def _item(self, i: int):
        item = self.dataset[i]
        return item if isinstance(item, (tuple, list)) else (item, None)

    def label(self, i: int) -> str | None:
        target = self._item(i)[1]
        if target is None:
            return None
        target = int(target) if not isinstance(target, str) else target
        return self.classes[target] if self.classes is not None and isinstance(target, int) else str(target)

    def read(self, i: int) -> tuple[np.ndarray, str | None]:
        image = self._item(i)[0]
        if isinstance(image, Image.Image):
            return pil_to_rgb(image)
        array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.transpose(1, 2, 0)  # CHW -> HWC
        if array.dtype != np.uint8:
            array = np.clip(array * 255 + 0.5, 0, 255).astype(np.uint8)  # float images in [0, 1]
        if array.ndim == 2 or array.shape[-1] == 1:
            return np.repeat(array.reshape(*array.shape[:2], 1), 3, axis=2), "greyscale converted to RGB"
        return array, None

    def describe(self) -> dict[str, Any]:
        root = getattr(self.dataset, "root", None)
        return {"kind": self.kind, "root": f"{type(self.dataset).__name__}({root})" if root else
                type(self.dataset).__name__, "images": len(self), "fingerprint": None}


SHARD_LABELS = (".cls", ".txt")  # WebDataset members that hold an image's label


SHARD_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
MAX_SHARDS = 100_000  # shards one pattern may name: counted before anything is expanded


def expand_shards(pattern: str) -> list[Path]:
    """`shards/train-{0000..0099}.tar` -> the 100 paths, zero padding kept (WebDataset's notation;
    several ranges multiply); a pattern without braces is one shard. The count is worked out from
    the ranges first, and a pattern naming more than MAX_SHARDS shards, or with nested or listed
    braces, is refused before anything is expanded."""
    ranges = list(SHARD_RANGE.finditer(pattern))
    if not ranges:
        if "{" in pattern or "}" in pattern:
            raise VizneuronError(f"{pattern!r}: shard patterns take ranges like {{0000..0099}} only")
        return [Path(pattern).expanduser()]
    if "{" in SHARD_RANGE.sub("", pattern) or "}" in SHARD_RANGE.sub("", pattern):
        raise VizneuronError(f"{pattern!r}: shard patterns take ranges like {{0000..0099}} side by side, "
                             "not nested or listed braces")
    count = 1
    for match in ranges:
        first, last = int(match.group(1)), int(match.group(2))
        if first > last:
            raise VizneuronError(f"shard range {match.group(0)} in {pattern!r} is empty")
        count *= last - first + 1
        if count > MAX_SHARDS:
            raise VizneuronError(f"{pattern!r} names more than {MAX_SHARDS:,} shards: name fewer (several "
                                 "smaller patterns, one job each)")
    pieces = [pattern[start:end] for start, end in
              zip([0] + [m.end() for m in ranges], [m.start() for m in ranges] + [len(pattern)])]
    numbers = [[f"{n:0{len(m.group(1))}d}" for n in range(int(m.group(1)), int(m.group(2)) + 1)] for m in ranges]
    return [Path("".join(piece + number for piece, number in zip(pieces, (*chosen, "")))).expanduser()
            for chosen in itertools.product(*numbers)]


def shard_key(member: str) -> tuple[str, str]:
    """(key, extension) of a tar member, as WebDataset splits them: `cat/0001.cls` -> (`cat/0001`, `.cls`)."""
    folder, _, name = member.rpartition("/")
    stem, dot, extension = name.partition(".")
    return (f"{folder}/{stem}" if folder else stem), dot + extension.lower()


def _check_whole(shard: Path, images: dict[str, tuple[int, int]]) -> None:
    """A shard cut short (an interrupted copy) is refused, not mined in part: every member's data must
    lie inside the file, and a tar ends with zero blocks, which a file cut at a member boundary lacks."""
    size = shard.stat().st_size
    cut = [key for key, (offset, length) in images.items() if offset + length > size]
    with open(shard, "rb") as handle:
        handle.seek(max(0, size - 1024))
        ends_properly = size >= 1024 and not any(handle.read())
    if cut or not ends_properly:
        where = f" in member {cut[0]}" if cut else ""
        raise VizneuronError(f"shard {shard} is cut short{where} (an interrupted copy?): copy it again")


class ShardSource(ImageSource):
    """WebDataset tar shards: each key (a member path up to the first dot of its file name, as
    webdataset splits them) is one image, numbered in shard and member order (`KEY.jpg`, `.png`, ...;
    a field such as `KEY.mask.png` only when the sample has no plain image; a sample with several
    images is read once, with a note naming them all); a `.txt` (class name) or `.cls` (class index)
    member is its label.
    Members are located once; each image is then read straight from its byte range."""

    kind = "webdataset"

    def __init__(self, shards: list[Path], max_pixels: int | None = MAX_PIXELS,
                 within: Sequence[Path] | None = None) -> None:
        self.shards, self.max_pixels = [Path(s).resolve() for s in shards], max_pixels
        missing = [shard for shard in self.shards if not shard.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of {len(self.shards)} shards not found: {missing[0]}"
                                    + (f" .. {missing[-1].name}" if len(missing) > 1 else ""))
        self.entries: list[tuple[int, str, int, int]] = []  # (shard, key, offset, size) of each image
        self._labels: list[str | None] = []
        self._notes: list[str | None] = []  # a sample with several images says which one was read
        for number, shard in enumerate(self.shards):
            if within is not None and not any(shard.is_relative_to(Path(f).resolve()) for f in within):
                raise VizneuronError(f"shard {shard} is outside the folders this app may read")
            images: dict[str, tuple[int, int]] = {}
            chosen: dict[str, str] = {}
            fields: dict[str, list[str]] = {}
            labels: dict[str, dict[str, str]] = {}
            try:
                with tarfile.open(shard, "r:") as tar:
                    for member in tar:
                        if not member.isfile():
                            continue
                        key, extension = shard_key(member.name)
                        if Path("x" + extension).suffix in IMAGE_SUFFIXES:
                            # the image is `KEY.jpg` (one extension); `KEY.mask.png` is another field of the
                            # sample, used only when there is no plain one
                            fields.setdefault(key, []).append(extension)
                            plain = extension.count(".") == 1
                            if key not in images or (plain and chosen[key].count(".") > 1):
                                images[key], chosen[key] = (member.offset_data, member.size), extension
                        elif extension in SHARD_LABELS and member.size < 1024:
                            text = tar.extractfile(member).read().decode("utf-8", "replace").strip()
                            labels.setdefault(key, {})[extension] = text
            except (tarfile.TarError, EOFError) as err:
                raise VizneuronError(f"shard {shard} is not a readable tar file, or is cut short ({err})") from None
            _check_whole(shard, images)
            for key, (offset, size) in images.items():
                self.entries.append((number, key, offset, size))
                found = labels.get(key, {})
                self._labels.append(found.get(".txt") or found.get(".cls"))  # a class name over its index
                several = fields[key]
                self._notes.append(None if len(several) == 1 else
                                   f"the sample holds {len(several)} images ({', '.join(several)}): read {chosen[key]}")
        if not self.entries:
            raise VizneuronError(f"no images in {len(self.shards)} shard(s) ({self.shards[0]}"
                                 f"{' ..' if len(self.shards) > 1 else ''}): WebDataset members named KEY.jpg, "
                                 "KEY.png, ... hold the images")

    def __len__(self) -> int:
        return len(self.entries)

    def key(self, i: int) -> str:
        number, key, _, _ = self.entries[i]
        return f"{self.shards[number].name}:{key}"

    def label(self, i: int) -> str | None:
        return self._labels[i]

    def read(self, i: int) -> tuple[np.ndarray, str | None]:
        number, _, offset, size = self.entries[i]
        try:
            with open(self.shards[number], "rb") as handle:
                handle.seek(offset)
                data = handle.read(size)
        except OSError as err:
            raise ImageSkipped(f"shard unreadable ({err})") from None
        if len(data) < size:
            raise ImageSkipped("truncated in its shard")
        rgb, note = read_rgb(io.BytesIO(data), self.max_pixels)
        return rgb, "; ".join(n for n in (self._notes[i], note) if n) or None

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha1()
        for shard in self.shards:
            digest.update(f"{shard.name}\t{shard.stat().st_size}\n".encode())
        digest.update(str(len(self)).encode())
        return {"kind": self.kind, "root": str(self.shards[0].parent), "images": len(self),
                "fingerprint": digest.hexdigest()}


# -- Hugging Face Hub datasets ------------------------------------------------------------------
# `hf-dataset:PATH[?image=COLUMN&label=COLUMN]`: a Hub dataset saved to disk by `datasets`
# (`save_to_disk`: Arrow files, state.json, dataset_info.json) or a folder of Parquet files as the Hub
# serves them. The image column holds encoded image bytes (the `datasets.Image` feature's
# {bytes, path} struct, or plain binary); the label column integers (named by the dataset's
# ClassLabel feature when it has one) or strings. Rows are read as mining asks for them, one Parquet
# row group at a time and Arrow files memory-mapped, so a dataset larger than RAM streams; a broken
# image is skipped with its reason, as a broken file in a folder is.

HUB_PREFIX = "hf-dataset:"
OPTIONS = ("image", "label")


def parse_hub_spec(text: str) -> tuple[Path, dict[str, str]]:
    """`hf-dataset:PATH?image=img&label=label` -> (path as written, options)."""
    body = text[len(HUB_PREFIX):]
    path, _, query = body.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key not in OPTIONS or not eq or not value:
            raise VizneuronError(f"{text!r}: options are image=COLUMN and label=COLUMN, not {item!r}")
        options[key] = value
    if not path:
        raise VizneuronError(f"{text!r}: give the dataset's folder, e.g. hf-dataset:data/my-dataset")
    return Path(path).expanduser(), options


def _data_files(folder: Path) -> tuple[str, list[Path]]:
    """("arrow", files) for a `save_to_disk` folder, ("parquet", files) for Parquet files under it."""
    state = folder / "state.json"
    if state.is_file():
        try:
            names = [entry["filename"] for entry in json.loads(state.read_text())["_data_files"]]
        except (ValueError, KeyError, TypeError) as err:
            raise VizneuronError(f"{state} is not a datasets state file ({err})") from None
        return "arrow", [folder / name for name in names]
    parquet = sorted(folder.rglob("*.parquet")) if folder.is_dir() else [folder] if folder.suffix == ".parquet" else []
    if not parquet:
        raise VizneuronError(f"{folder}: no Hub dataset there (neither a save_to_disk folder with state.json nor "
                             "Parquet files)")
    return "parquet", parquet


def _features(kind: str, folder: Path, schema) -> dict[str, Any]:
    """The dataset's `datasets` features (column -> feature dict), from dataset_info.json or the
    Parquet schema's metadata; empty when neither says."""
    try:
        if kind == "arrow" and (folder / "dataset_info.json").is_file():
            return json.loads((folder / "dataset_info.json").read_text()).get("features") or {}
        meta = (schema.metadata or {}).get(b"huggingface")
        return (json.loads(meta).get("info") or {}).get("features") or {} if meta else {}
    except (ValueError, AttributeError):
        return {}


class HubSource(ImageSource):
    """Rows of a Hub dataset's files, numbered in file and row order; labels read once up front (one
    small column), images when asked."""

    kind = "hf-dataset"

    def __init__(self, path: Path, options: dict[str, str] | None = None, max_pixels: int | None = MAX_PIXELS,
                 within: list[Path] | None = None) -> None:
        import pyarrow.parquet as pq  # optional: comes with the `formats` extra (datasets)

        options, path = options or {}, Path(path).resolve()
        self.root, self.max_pixels = path, max_pixels
        if within is not None and not any(path.is_relative_to(Path(f).resolve()) for f in within):
            raise VizneuronError(f"dataset {path} is outside the folders this app may read")
        if not path.exists():
            raise FileNotFoundError(f"dataset {path} not found")
        self.format, self.files = _data_files(path)
        missing = [f for f in self.files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of the dataset's files are missing: {missing[0]}")
        schema = (pq.read_schema(self.files[0]) if self.format == "parquet"
                  else self._open_arrow(self.files[0]).schema)
        features = _features(self.format, path, schema)
        self.image_column = options.get("image") or _image_column(schema, features, path)
        self.label_column = options.get("label") or ("label" if "label" in schema.names else None)
        for role, column in (("image", self.image_column), ("label", self.label_column)):
            if column is not None and column not in schema.names:
                raise VizneuronError(f"{path}: no {role} column {column!r}; columns: {', '.join(schema.names)}")
        names = (features.get(self.label_column) or {}).get("names") if self.label_column else None
        self.groups: list[tuple[int, int, int]] = []  # (file, row group or -1, rows), in order
        labels: list[Any] = []
        for number, file in enumerate(self.files):
            if self.format == "parquet":
                meta = pq.ParquetFile(file).metadata
                self.groups += [(number, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
                column = pq.read_table(file, columns=[self.label_column]).column(0) if self.label_column else None
                rows = meta.num_rows
            else:
                table = self._open_arrow(file)
                self.groups.append((number, -1, table.num_rows))
                column = table.column(self.label_column) if self.label_column else None
                rows = table.num_rows
            labels += column.to_pylist() if column is not None else [None] * rows
        self._labels = [_label_name(value, names) for value in labels]
        self.starts = np.cumsum([0] + [rows for _, _, rows in self.groups])
        # the first row of each file, counted over the whole dataset: keys number rows within their file
        self.file_starts = [int(self.starts[next((g for g, (n, _, _) in enumerate(self.groups) if n == number),
                                                    len(self.groups))])
                            for number in range(len(self.files))]
        self._cache: tuple[int, Any] | None = None

    @staticmethod
    def _open_arrow(file: Path):
        """A `save_to_disk` Arrow file (the IPC stream format) as a table over a memory map: rows are
        paged in as read, not loaded."""
        import pyarrow as pa  # see __init__

        return pa.ipc.open_stream(pa.memory_map(str(file))).read_all()

    def __getstate__(self) -> dict[str, Any]:  # to worker processes: without the open tables
        return {**self.__dict__, "_cache": None}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        group = int(np.searchsorted(self.starts, i, side="right")) - 1
        return group, i - int(self.starts[group])

    def key(self, i: int) -> str:
        number = self.groups[self._locate(i)[0]][0]
        return f"{self.files[number].name}:{i - self.file_starts[number]}"

    def label(self, i: int) -> str | None:
        return self._labels[i]

    def _group(self, group: int):
        if self._cache is None or self._cache[0] != group:
            import pyarrow.parquet as pq  # see __init__

            number, row_group, _ = self.groups[group]
            table = (pq.ParquetFile(self.files[number]).read_row_group(row_group, columns=[self.image_column])
                     if row_group >= 0 else self._open_arrow(self.files[number]))
            self._cache = (group, table.column(self.image_column))
        return self._cache[1]

    def read(self, i: int) -> tuple[np.ndarray, str | None]:
        group, row = self._locate(i)
        value = self._group(group)[row].as_py()
        data = value.get("bytes") if isinstance(value, dict) else value
        if data is None:
            where = value.get("path") if isinstance(value, dict) else None
            raise ImageSkipped(f"no image bytes in the row{f' (it names a file, {where})' if where else ''}")
        if not isinstance(data, (bytes, bytearray)):
            raise ImageSkipped(f"the image column holds {type(data).__name__}, not encoded image bytes")
        return read_rgb(io.BytesIO(data), self.max_pixels)

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha1(f"{self.image_column}\t{self.label_column}\n".encode())
        for file in self.files:
            digest.update(f"{file.relative_to(self.root) if file != self.root else file.name}\t"
                          f"{file.stat().st_size}\n".encode())
        return {"kind": self.kind, "root": str(self.root), "images": len(self), "fingerprint": digest.hexdigest()}


def _image_column(schema, features: dict[str, Any], path: Path) -> str:
    """The one column that holds images: a `datasets.Image` feature, else the one {bytes, path}
    struct or binary column."""
    by_feature = [name for name, feature in features.items()
                  if isinstance(feature, dict) and feature.get("_type") == "Image"]
    if len(by_feature) == 1:
        return by_feature[0]
    candidates = [field.name for field in schema if _holds_bytes(field.type)]
    if len(candidates) == 1:
        return candidates[0]
    which = f"several could be ({', '.join(candidates)})" if candidates else "none holds image bytes"
    raise VizneuronError(f"{path}: say which column holds the images, {which}: hf-dataset:{path}?image=COLUMN")


def _holds_bytes(kind) -> bool:
    import pyarrow as pa  # see HubSource

    if pa.types.is_struct(kind):
        return any(kind.field(i).name == "bytes" for i in range(kind.num_fields))
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _label_name(value: Any, names: list[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and names and 0 <= value < len(names):
        return names[value]
    return str(value)


def write_shards(data: Any, out: str | Path, per_shard: int = 1000, prefix: str = "shard") -> list[Path]:
    """Write the images of any source into WebDataset tar shards (`PREFIX-000000.tar`, ...), each
    image's file bytes as `KEY.EXT` beside its label as `KEY.txt`; keys follow the source's order."""
    source, out = as_source(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for start in range(0, len(source), per_shard):
        path = out / f"{prefix}-{start // per_shard:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(start, min(start + per_shard, len(source))):
                if isinstance(source, FileSource):
                    data_bytes, extension = source.paths[i].read_bytes(), source.paths[i].suffix.lower()
                else:
                    buffer = io.BytesIO()
                    Image.fromarray(source.read(i)[0]).save(buffer, format="PNG")
                    data_bytes, extension = buffer.getvalue(), ".png"
                members = [(extension, data_bytes)]
                if source.label(i) is not None:
                    members.append((".txt", source.label(i).encode()))
                key = f"{i:08d}"
                if isinstance(source, FileSource):  # the file's path, without dots a key may not hold
                    key = str(Path(_relative(source.paths[i], source.root)).with_suffix("")).replace(".", "_")
                for suffix, payload in members:
                    info = tarfile.TarInfo(key + suffix)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        written.append(path)
    return written


def fetch_cifar10(folder: str | Path) -> TorchvisionSource:
    """CIFAR-10's 10,000 test images through torchvision's own download (needs a network, about
    170 MB, once; later calls find the files)."""
    from torchvision.datasets import CIFAR10  # heavy (about 2 s to import); only this download needs it

    try:
        return TorchvisionSource(CIFAR10(str(folder), train=False, download=True))
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise OSError(f"could not fetch CIFAR-10 into {folder} ({err}); offline, mine a folder of your own images, "
                      "or use the bundled sample") from None


def as_source(data: Any, max_pixels: int | None = MAX_PIXELS, within: Sequence[Path] | None = None) -> ImageSource:
    """A folder, a text file listing image paths (one per line, relative to the file), WebDataset tar
    shards (`shards/train-{0000..0099}.tar`), a Hub dataset (`hf-dataset:PATH?image=COL&label=COL`),
    a torchvision dataset, or an `ImageSource`. `within`:
    the only folders whose files may be read (a server's sandbox); files found or listed elsewhere,
    symlinks leading out included, are skipped with a note."""
    if isinstance(data, ImageSource):
        return data
    if isinstance(data, (str, Path)) and str(data).startswith(HUB_PREFIX):  # a Hub dataset
        path, options = parse_hub_spec(str(data))
        return HubSource(path, options, max_pixels, within)
    if isinstance(data, (str, Path)) and str(data).endswith(".tar"):  # WebDataset shards
        return ShardSource(expand_shards(str(data)), max_pixels, within)
    if isinstance(data, (str, Path)):
        path = Path(data).expanduser().resolve()
        if path.is_dir():
            files = image_files(path)
            if not files:
                hint = f" (a Hub dataset? hf-dataset:{path})" if any(path.rglob("*.parquet")) else ""
                raise VizneuronError(f"no image files under {path}{hint}")
            return FileSource(files, path, "folder", max_pixels, within=within)
        if path.is_file():  # lines "PATH" or "PATH<TAB>LABEL" (a class name or index)
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                raise VizneuronError(f"{path} is neither a folder nor a text file listing image paths") from None
            rows = [line.rstrip("\n").split("\t") for line in text.splitlines()]
            rows = [row for row in rows if row[0].strip() and not row[0].startswith("#")]
            if not rows:
                raise VizneuronError(f"{path} lists no image paths")
            return FileSource([(path.parent / row[0].strip()).resolve() for row in rows], path.parent, "list",
                              max_pixels, [row[1].strip() if len(row) > 1 else None for row in rows], within)
        raise FileNotFoundError(f"dataset {path} not found (give a folder, a text file of paths, or a dataset)")
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return TorchvisionSource(data)
    raise VizneuronError(f"cannot mine {type(data).__name__}: give a folder, a text file of paths, or a dataset")


class ModelInputs(torch.utils.data.Dataset):
    """Images as the model takes them, for a DataLoader: (id, image, note, skip reason)."""

    def __init__(self, source: ImageSource, inputs: InputConfig) -> None:
        self.source, self.inputs = source, inputs

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, str, str]:
        try:
            rgb, note = self.source.read(i)
            return i, self.inputs.to_input(rgb), note or "", ""
        except ImageSkipped as err:
            return i, torch.zeros(3, *self.inputs.size), "", str(err)


def _class_folder(path: Path, root: Path) -> str | None:
    parts = Path(_relative(path, root)).parts
    return parts[0] if len(parts) > 1 else None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
