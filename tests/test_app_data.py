"""The app's data view: mining, fetching offline.

Driven through Streamlit's own testing API (AppTest), with a private home folder and real images."""

from __future__ import annotations

import urllib.error

import pytest

from helpers import errors, make_app

pytest.importorskip("streamlit")


def test_fetching_cifar10_offline_says_so(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    at = make_app(monkeypatch, tmp_path)
    at.radio(key="view").set_value("Data").run()
    at.radio(key="mine_what").set_value(at.radio(key="mine_what").options[1]).run()
    at.button(key="mine").click().run()
    assert not at.exception and any("could not fetch CIFAR-10" in e and "offline" in e for e in errors(at)), errors(at)

