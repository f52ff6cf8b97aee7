"""Plain helpers the tests share (no fixtures: those live in conftest.py): tiny models, the real
data in ../shared (skipped if absent), problem images, and index readers."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vizneuron.models.base import InputConfig, Model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the read-only ../shared folder beside the project); not present here")
    return path


class Tiny(nn.Module):
    """conv(8) -> relu -> conv(16) -> relu -> pool -> fc(5), with a tuple-returning probe module."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)
        self.pair = PairOut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        self.pair(x)
        return self.fc(self.pool(x).flatten(1))


class PairOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def make_tiny() -> Model:
    return Model(Tiny(), name="tiny", inputs=InputConfig((16, 16), labels=["cat", "car", "dog", "ship", "frog"]))


def hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def batched_forward(model: Model, images: torch.Tensor, layers: list[str], batch: int = 500) -> dict[str, torch.Tensor]:
    """Captured activations of `layers` over many images, concatenated."""
    from vizneuron import capture

    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with torch.no_grad(), capture(model, layers) as cap:
        for i in range(0, len(images), batch):
            for name, act in cap.run(images[i : i + batch]).items():
                out[name].append(act)
    return {name: torch.cat(chunks) for name, chunks in out.items()}


def write_problem_images(folder: Path) -> dict[str, str]:
    """Files a real dataset throws at a loader, beside two good ones; name -> expected fate."""
    import io
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    photo.save(folder / "good_a.png")
    photo.transpose(Image.FLIP_LEFT_RIGHT).save(folder / "good_b.jpg", quality=90)
    (folder / "zero.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    photo.save(jpeg, format="JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "text.png").write_text("this is not a picture")
    photo.convert("L").save(folder / "grey.png")
    photo.convert("RGBA").save(folder / "rgba.png")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65536, (40, 48))).astype(np.uint16)).save(folder / "sixteen.png")
    # a PNG whose header claims 30000 x 30000 pixels: the guard must refuse it before decoding
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = zlib.compress(b"\x00" * 64)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk + idat)
    return {"good_a.png": "ok", "good_b.jpg": "ok", "zero.jpg": "skipped: empty",
            "truncated.jpg": "skipped: truncated", "text.png": "skipped: not an image",
            "grey.png": "converted: L", "rgba.png": "converted: alpha", "cmyk.jpg": "converted: CMYK",
            "sixteen.png": "converted: 8-bit", "bomb.png": "skipped: too large"}


PER_CLASS = 12


CUE_PER_CLASS = 250  # training and test images per class in the tests' copy of the SHIFT cue task


def cifar_list(tmp_path: Path, n: int) -> Path:
    """A text file naming `n` CIFAR-10 test images spread over all classes."""
    files = sorted(shared_path("data", "cifar10", "test").rglob("*.jpg"))[:: 10_000 // n][:n]
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(str(f) for f in files) + "\n")
    return listing


def index_rows(path: Path) -> dict[str, list]:
    """Everything a finished index holds about results (not its run-specific metadata)."""
    db = sqlite3.connect(path)
    tables = {"examples": "SELECT unit, side, rank, image, value, y, x, box, heatmap FROM examples ORDER BY 1, 2, 3",
              "units": "SELECT name, count, min, max, active, histogram FROM units ORDER BY id",
              "means": "SELECT mean, std FROM units ORDER BY id",
              "images": "SELECT id, path, label, thumbnail FROM images ORDER BY id",
              "notes": "SELECT image, path, action, reason FROM notes ORDER BY image"}
    rows = {name: db.execute(sql).fetchall() for name, sql in tables.items()}
    db.close()
    return rows


def batches_done(path: Path) -> int:
    """Batches a (possibly running) mining job has committed to its index so far."""
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(path, timeout=0.1)
        row = db.execute("SELECT value FROM state WHERE key = 'done'").fetchone()
        db.close()
        return sum(stop - start for start, stop in json.loads(row[0].decode())) if row else 0
    except sqlite3.OperationalError:
        return 0


def assert_same_index(a: dict[str, list], b: dict[str, list]) -> None:
    """Two indexes' results are the same: bit for bit, statistics to float64 rounding."""
    for table in a:
        if table == "means":  # float64 sums added in another order: equal to rounding
            np.testing.assert_allclose(np.array(a[table]), np.array(b[table]), rtol=1e-12, atol=1e-12)
        else:
            assert a[table] == b[table], table


def assert_equivalent_index(a: dict[str, list], b: dict[str, list], rtol: float = 1e-5) -> None:
    """Two indexes from runs whose float32 sums may be split differently (other torch thread counts or
    CPU kernels: the Ray engine's one-thread actors against a local run on every core) hold the same
    results to float32 rounding: at each rank a value within `rtol` (relative to the unit's largest),
    the same image unless the two ranks it moved between hold values that close (a near-tie), the same
    position and heatmap (float16, to rounding) for the same image; counts exact, the other
    statistics within `rtol`, histograms off by at most a value or two per bin edge crossed."""
    assert a["notes"] == b["notes"] and a["images"] == b["images"]
    tolerance = rtol * max(abs(row[4]) for row in a["examples"])
    groups_a, groups_b = _by_unit_side(a["examples"]), _by_unit_side(b["examples"])
    assert groups_a.keys() == groups_b.keys()
    for key, rows in groups_a.items():
        others = groups_b[key]
        assert len(rows) == len(others), key
        values = [row[4] for row in rows]
        for rank, (row, other) in enumerate(zip(rows, others)):
            assert abs(row[4] - other[4]) <= tolerance, (key, rank, row[4], other[4])
            if row[3] != other[3]:
                near = [values[r] for r in (rank - 1, rank + 1) if 0 <= r < len(values)]
                tied = any(abs(v - row[4]) <= 2 * tolerance for v in near) or rank == len(rows) - 1
                assert tied, f"{key} rank {rank}: image {row[3]} against {other[3]}, no near-tie"
            else:
                assert row[5:8] == other[5:8], (key, rank)
                if row[8] is not None:
                    np.testing.assert_allclose(np.frombuffer(row[8], np.float16), np.frombuffer(other[8], np.float16),
                                               rtol=1e-2, atol=tolerance + 1e-3)
    for row, other in zip(a["units"], b["units"], strict=True):
        assert row[:2] == other[:2]
        np.testing.assert_allclose(row[2:5], other[2:5], rtol=rtol, atol=tolerance)
        counts, other_counts = np.frombuffer(row[5], np.int64), np.frombuffer(other[5], np.int64)
        assert counts.sum() == other_counts.sum() and np.abs(counts - other_counts).sum() <= 4, row[0]
    np.testing.assert_allclose(np.array(a["means"]), np.array(b["means"]), rtol=rtol, atol=tolerance)


def _by_unit_side(rows: list) -> dict[tuple, list]:
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault(row[:2], []).append(row)
    return groups


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` torch threads (the Ray actors' count, for bit-for-bit comparisons)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


CIFAR_INDEX_SETTINGS = dict(k=16, batch_size=500)


# --- the app, driven through Streamlit's testing API (AppTest) ---

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_app(monkeypatch, tmp_path: Path, *roots: Path):
    """The app (streamlit_app.py) with a private home under `tmp_path`, reading `roots`, run once."""
    monkeypatch.setenv("VIZNEURON_APP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIZNEURON_APP_ROOTS", ":".join(str(r) for r in roots or (tmp_path,)))
    from streamlit.testing.v1 import AppTest  # the app's tests skip without streamlit; other tests need none

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def first_unit() -> str:
    """The unit the app opens on with the bundled model: the one the bundled sample's atlas of its
    default layer calls most polysemantic."""
    from vizneuron.models import load_model
    from vizneuron.probe import most_polysemantic, sample_atlas

    model = load_model("default")
    return most_polysemantic(sample_atlas(model, model.default_layer))[0].unit


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def captions(at) -> list[str]:
    return [c for element in at.image for c in (img.caption for img in element.proto.imgs)]


def render_captions(at) -> list[str]:
    """Captions of the neuron view's renders (the bundled sample's examples are shown below them)."""
    return [c for c in captions(at) if c.startswith("activation")]


def concept_data(at):
    return next(box for box in at.text_input if box.label == "Labelled folder (class subfolders)")


def concept_groups(at):
    return next(box for box in at.text_area if box.label.startswith("Label groups"))


def layer_picker(at):
    return next(box for box in at.sidebar.selectbox if box.label == "Layer (type to search)")


def index_picker(at):
    return next(box for box in at.sidebar.selectbox if box.label == "Index")


def mine_in_app(at, folder: Path) -> None:
    at.radio(key="view").set_value("Data").run()
    at.text_input(key="mine_folder").input(str(folder)).run()
    at.button(key="mine").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))



def fresh_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`code` run by a new interpreter (nothing imported before it), its output captured as text."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


# --- planted units: directions whose answer is known (the probe's, the atlas's, circuits' tests) ---

def concept_means(model: Model, layer: str, concepts: dict) -> dict[str, torch.Tensor]:
    """Each concept's mean activation vector at `layer` (pooled over positions)."""
    from vizneuron.capture import capture
    from vizneuron.sources import ModelInputs

    means = {}
    with capture(model, [layer]) as cap, torch.no_grad():
        for name, source in concepts.items():
            inputs = ModelInputs(source, model.inputs)
            act = cap.run(torch.stack([inputs[i][1] for i in range(len(source))]))[layer]
            means[name] = act.mean((0, 2, 3))
    return means


def planted_direction(means: dict[str, torch.Tensor], members: tuple[str, ...]) -> torch.Tensor:
    """A unit-norm direction on which every member concept's mean (centred on all concepts) scores the
    same, of minimum norm: a unit along it fires equally on exactly these concepts."""
    centre = torch.stack(list(means.values())).mean(0)
    rows = torch.stack([means[c] - centre for c in members])
    direction = rows.T @ torch.linalg.solve(rows @ rows.T, torch.ones(len(members)))
    return direction / direction.norm()


#: Debian's chromium (never a downloaded browser) and the flags it needs on a closed network
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
