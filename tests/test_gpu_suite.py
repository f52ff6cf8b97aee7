"""The prepared GPU benchmark runs: `bench/gpu_suite.py --device cpu --tiny` is the same code at small
sizes, so the suite is known to work before a GPU machine is lent to run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_suite_runs_on_the_cpu_at_tiny_sizes(tmp_path):
    pytest.importorskip("lucent", reason="the suite's render anchor is lucent's render_vis (the lucent extra)")
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "bench/gpu_suite.py", "--device", "cpu", "--tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(out.read_text())["parts"]["cpu (tiny)"]
    assert run["produced_by"]["script"] == "bench/gpu_suite.py"
    parts = run["results"]["parts"]
    renders, mining, sae = parts["renders"], parts["mining"], parts["sae"]
    ours = renders["vizneuron (mixed4e, every channel, defaults)"]
    assert ours["images"] == ours["units"] == 4 and renders["lucent render_vis (per unit)"]["seconds_per_unit"] > 0
    assert mining["vizneuron mine (default workers)"]["images_per_s"] > 0 and any(
        name.startswith("plain loop") for name in mining)
    assert sae["vizneuron TopK"]["vs_minimal"] > 0 and sae["minimal TopK step"]["rows"] == 20_000
    # on the CPU both decoders are libjpeg: the same pixels for every image
    assert parts["decoding"]["torchvision decode_jpeg, one batch on cpu"]["identical_to_pil"] == 64
    assert all(figures["peak_gpu_memory_gb"] is None for part in parts.values() for figures in part.values())
