"""Shared fixtures: tiny models for fast tests, the real data in ../shared (skipped if absent), and
the rule that sorts tests into tiers (`slow` for the CIFAR-10 test set, the cue task, Ray and the
browser). Plain helpers are in helpers.py."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest
import torch

from vizneuron.models.base import Model

from helpers import CIFAR_INDEX_SETTINGS, CUE_PER_CLASS, PER_CLASS, make_tiny, shared_path

#: fixtures whose tests belong to the slow tier: the CIFAR-10 test set, the cue task, a Ray cluster
SLOW_FIXTURES = {"cifar_test", "cifar_test_index", "cue_task", "local_ray"}
#: words in a test's own code that mean the same: the whole CIFAR-10 test split named directly, a browser
SLOW_WORDS = ('"cifar10", "test")', "chromium")
FAST_LIMIT_S = 5.0  # a fast-tier test slower than this is listed at the end of the run
_slow_fast_tests: list[tuple[str, float]] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tier rule: tests that use the CIFAR-10 test set, the cue task, Ray or a browser are slow,
    whether or not they say so (`python -m pytest -m "not slow"` is the fast tier)."""
    for item in items:
        function = getattr(item, "function", None)
        code = inspect.getsource(function) if function is not None else ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(word in code for word in SLOW_WORDS):
            item.add_marker(pytest.mark.slow)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.duration > FAST_LIMIT_S and "slow" not in report.keywords:
        _slow_fast_tests.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter) -> None:
    """Fast-tier tests over FAST_LIMIT_S, as a warning: mark them slow or make them faster."""
    if _slow_fast_tests:
        terminalreporter.write_sep("=", f"fast-tier tests over {FAST_LIMIT_S:g} s (mark them slow or make them "
                                        "faster)", yellow=True)
        for nodeid, seconds in sorted(_slow_fast_tests, key=lambda found: -found[1]):
            terminalreporter.write_line(f"WARNING {seconds:6.1f} s  {nodeid}", yellow=True)


@pytest.fixture
def tiny() -> Model:
    return make_tiny()


@pytest.fixture(scope="session")
def cifar_test() -> tuple[torch.Tensor, torch.Tensor]:
    """All 10,000 CIFAR-10 test JPEGs as float (N, 3, 32, 32) in [0, 1], and their labels."""
    import numpy as np
    from PIL import Image

    from vizneuron.models.default import CIFAR10_CLASSES

    root = shared_path("data", "cifar10", "test")
    images, labels = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        for path in sorted((root / name).glob("*.jpg")):
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB")))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
    return x, torch.tensor(labels)


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory) -> Path:
    """12 CIFAR-10 test images per class in class folders, and one corrupt file."""
    source = shared_path("data", "cifar10", "test")
    root = tmp_path_factory.mktemp("data") / "cifar_small"
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:PER_CLASS]:
            shutil.copy(image, root / folder.name / image.name)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="session")
def cue_task(tmp_path_factory) -> Path:
    """The SHIFT benchmark's cue task (vizneuron/shift/task.py), 250 images per class and split."""
    from vizneuron.shift.task import build_cue_task

    return build_cue_task(shared_path("data", "cifar10"), tmp_path_factory.mktemp("cue") / "task", limit=CUE_PER_CLASS)


@pytest.fixture(scope="session")
def local_ray():
    """One small Ray on this machine for the whole test session (its start costs seconds)."""
    ray = pytest.importorskip("ray", reason="the Ray engine's tests need the optional extra: "
                                            "pip install 'vizneuron[ray]'")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def cifar_test_index(tmp_path_factory) -> Path:
    """Every channel of the bundled model's layer2 and layer3 mined over all 10,000 CIFAR-10 test
    images (the local engine), once per session: checked against brute force and against Ray."""
    from vizneuron import load_model, mine

    path = tmp_path_factory.mktemp("cifar-index") / "local.sqlite"
    mine(load_model("default"), "layer2,layer3", shared_path("data", "cifar10", "test"), index=path,
         progress=False, **CIFAR_INDEX_SETTINGS).db.close()
    return path

